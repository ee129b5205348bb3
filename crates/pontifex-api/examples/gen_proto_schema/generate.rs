//! The generator's logic, kept free of `pontifex_api` paths so that the library's staleness test can
//! include this file with `#[path]` and run it on the same inputs.
//!
//! Inputs:
//! - the Rust sources of the `k8s-pb` crate (prost-generated Kubernetes types): for every message, its
//!   fields' protobuf tag numbers, wire kinds (`string`, `int32`, `message`, `btree_map = "string, bytes"`,
//!   ...), cardinality and message types;
//! - the OpenAPI documents the server serves (`pontifex_api::openapi::documents()`): the JSON property
//!   name of each field (matched to the snake_case Rust name after lower-casing both and dropping `_`),
//!   and the `x-kubernetes-group-version-kind` of each served kind (the roots);
//! - [`KEEP_ZERO`] below: the scalar fields whose zero value Kubernetes' JSON keeps.
//!
//! Output: the Rust source of `src/protobuf/schema.rs`, one table row per message reachable from a served
//! kind, sorted by name, each with its fields sorted by tag.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

/// Messages the decoder handles itself (their JSON form is not an object of their fields), by their
/// OpenAPI name. The generator does not descend into them.
pub(crate) const SPECIAL: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Duration",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "io.k8s.apimachinery.pkg.runtime.RawExtension",
];

/// The k8s-pb modules that hold the messages reachable from the served kinds.
const MODULES: &[&str] = &[
    "api/core/v1",
    "api/apps/v1",
    "api/networking/v1",
    "api/discovery/v1",
    "api/coordination/v1",
    "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/api/resource",
    "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/runtime",
];

/// Scalar fields (`<message>.<jsonName>`) whose value is kept even when it is the zero value (`""`, `0`,
/// `false`). In Kubernetes' Go types these are the pointer fields (`*int32`, `*bool`, `*string`, or a
/// pointer to a named string type: set means set, even to zero) and the non-pointer fields whose JSON tag
/// has no `omitempty` (Go's encoder writes them even when zero). Every other scalar is a non-pointer
/// `omitempty` field, which Go's protobuf encoder writes even when zero and Go's JSON encoder then drops:
/// there a zero value means "unset". The list was derived once from the struct tags in Kubernetes'
/// `types.go` files (core, apps, networking, discovery, coordination, meta v1), restricted to the messages
/// reachable from the served kinds; the generator fails if an entry names no such field.
pub(crate) const KEEP_ZERO: &[&str] = &[
    "io.k8s.api.apps.v1.DeploymentCondition.status",
    "io.k8s.api.apps.v1.DeploymentCondition.type",
    "io.k8s.api.apps.v1.DeploymentSpec.progressDeadlineSeconds",
    "io.k8s.api.apps.v1.DeploymentSpec.replicas",
    "io.k8s.api.apps.v1.DeploymentSpec.revisionHistoryLimit",
    "io.k8s.api.apps.v1.DeploymentStatus.collisionCount",
    "io.k8s.api.apps.v1.DeploymentStatus.terminatingReplicas",
    "io.k8s.api.apps.v1.ReplicaSetCondition.status",
    "io.k8s.api.apps.v1.ReplicaSetCondition.type",
    "io.k8s.api.apps.v1.ReplicaSetSpec.replicas",
    "io.k8s.api.apps.v1.ReplicaSetStatus.replicas",
    "io.k8s.api.apps.v1.ReplicaSetStatus.terminatingReplicas",
    "io.k8s.api.coordination.v1.LeaseSpec.holderIdentity",
    "io.k8s.api.coordination.v1.LeaseSpec.leaseDurationSeconds",
    "io.k8s.api.coordination.v1.LeaseSpec.leaseTransitions",
    "io.k8s.api.coordination.v1.LeaseSpec.preferredHolder",
    "io.k8s.api.coordination.v1.LeaseSpec.strategy",
    "io.k8s.api.core.v1.AWSElasticBlockStoreVolumeSource.volumeID",
    "io.k8s.api.core.v1.AppArmorProfile.localhostProfile",
    "io.k8s.api.core.v1.AppArmorProfile.type",
    "io.k8s.api.core.v1.AttachedVolume.devicePath",
    "io.k8s.api.core.v1.AttachedVolume.name",
    "io.k8s.api.core.v1.AzureDiskVolumeSource.cachingMode",
    "io.k8s.api.core.v1.AzureDiskVolumeSource.diskName",
    "io.k8s.api.core.v1.AzureDiskVolumeSource.diskURI",
    "io.k8s.api.core.v1.AzureDiskVolumeSource.fsType",
    "io.k8s.api.core.v1.AzureDiskVolumeSource.kind",
    "io.k8s.api.core.v1.AzureDiskVolumeSource.readOnly",
    "io.k8s.api.core.v1.AzureFileVolumeSource.secretName",
    "io.k8s.api.core.v1.AzureFileVolumeSource.shareName",
    "io.k8s.api.core.v1.CSIVolumeSource.driver",
    "io.k8s.api.core.v1.CSIVolumeSource.fsType",
    "io.k8s.api.core.v1.CSIVolumeSource.readOnly",
    "io.k8s.api.core.v1.CinderVolumeSource.volumeID",
    "io.k8s.api.core.v1.ClientIPConfig.timeoutSeconds",
    "io.k8s.api.core.v1.ClusterTrustBundleProjection.name",
    "io.k8s.api.core.v1.ClusterTrustBundleProjection.optional",
    "io.k8s.api.core.v1.ClusterTrustBundleProjection.path",
    "io.k8s.api.core.v1.ClusterTrustBundleProjection.signerName",
    "io.k8s.api.core.v1.ConfigMap.immutable",
    "io.k8s.api.core.v1.ConfigMapEnvSource.optional",
    "io.k8s.api.core.v1.ConfigMapKeySelector.key",
    "io.k8s.api.core.v1.ConfigMapKeySelector.optional",
    "io.k8s.api.core.v1.ConfigMapNodeConfigSource.kubeletConfigKey",
    "io.k8s.api.core.v1.ConfigMapNodeConfigSource.name",
    "io.k8s.api.core.v1.ConfigMapNodeConfigSource.namespace",
    "io.k8s.api.core.v1.ConfigMapProjection.optional",
    "io.k8s.api.core.v1.ConfigMapVolumeSource.defaultMode",
    "io.k8s.api.core.v1.ConfigMapVolumeSource.optional",
    "io.k8s.api.core.v1.Container.name",
    "io.k8s.api.core.v1.Container.restartPolicy",
    "io.k8s.api.core.v1.ContainerPort.containerPort",
    "io.k8s.api.core.v1.ContainerResizePolicy.resourceName",
    "io.k8s.api.core.v1.ContainerResizePolicy.restartPolicy",
    "io.k8s.api.core.v1.ContainerStateTerminated.exitCode",
    "io.k8s.api.core.v1.ContainerStatus.image",
    "io.k8s.api.core.v1.ContainerStatus.imageID",
    "io.k8s.api.core.v1.ContainerStatus.name",
    "io.k8s.api.core.v1.ContainerStatus.ready",
    "io.k8s.api.core.v1.ContainerStatus.restartCount",
    "io.k8s.api.core.v1.ContainerStatus.started",
    "io.k8s.api.core.v1.ContainerStatus.stopSignal",
    "io.k8s.api.core.v1.DaemonEndpoint.Port",
    "io.k8s.api.core.v1.DownwardAPIVolumeFile.mode",
    "io.k8s.api.core.v1.DownwardAPIVolumeFile.path",
    "io.k8s.api.core.v1.DownwardAPIVolumeSource.defaultMode",
    "io.k8s.api.core.v1.EndpointAddress.ip",
    "io.k8s.api.core.v1.EndpointAddress.nodeName",
    "io.k8s.api.core.v1.EndpointPort.appProtocol",
    "io.k8s.api.core.v1.EndpointPort.port",
    "io.k8s.api.core.v1.EnvVar.name",
    "io.k8s.api.core.v1.EphemeralContainerCommon.name",
    "io.k8s.api.core.v1.EphemeralContainerCommon.restartPolicy",
    "io.k8s.api.core.v1.Event.reportingComponent",
    "io.k8s.api.core.v1.Event.reportingInstance",
    "io.k8s.api.core.v1.FCVolumeSource.lun",
    "io.k8s.api.core.v1.FlexVolumeSource.driver",
    "io.k8s.api.core.v1.GCEPersistentDiskVolumeSource.pdName",
    "io.k8s.api.core.v1.GRPCAction.port",
    "io.k8s.api.core.v1.GRPCAction.service",
    "io.k8s.api.core.v1.GitRepoVolumeSource.repository",
    "io.k8s.api.core.v1.GlusterfsVolumeSource.endpoints",
    "io.k8s.api.core.v1.GlusterfsVolumeSource.path",
    "io.k8s.api.core.v1.HTTPHeader.name",
    "io.k8s.api.core.v1.HTTPHeader.value",
    "io.k8s.api.core.v1.HostAlias.ip",
    "io.k8s.api.core.v1.HostIP.ip",
    "io.k8s.api.core.v1.HostPathVolumeSource.path",
    "io.k8s.api.core.v1.HostPathVolumeSource.type",
    "io.k8s.api.core.v1.ISCSIVolumeSource.initiatorName",
    "io.k8s.api.core.v1.ISCSIVolumeSource.iqn",
    "io.k8s.api.core.v1.ISCSIVolumeSource.lun",
    "io.k8s.api.core.v1.ISCSIVolumeSource.targetPortal",
    "io.k8s.api.core.v1.KeyToPath.key",
    "io.k8s.api.core.v1.KeyToPath.mode",
    "io.k8s.api.core.v1.KeyToPath.path",
    "io.k8s.api.core.v1.Lifecycle.stopSignal",
    "io.k8s.api.core.v1.LinuxContainerUser.gid",
    "io.k8s.api.core.v1.LinuxContainerUser.uid",
    "io.k8s.api.core.v1.LoadBalancerIngress.ipMode",
    "io.k8s.api.core.v1.NFSVolumeSource.path",
    "io.k8s.api.core.v1.NFSVolumeSource.server",
    "io.k8s.api.core.v1.NamespaceCondition.status",
    "io.k8s.api.core.v1.NamespaceCondition.type",
    "io.k8s.api.core.v1.NodeAddress.address",
    "io.k8s.api.core.v1.NodeAddress.type",
    "io.k8s.api.core.v1.NodeCondition.status",
    "io.k8s.api.core.v1.NodeCondition.type",
    "io.k8s.api.core.v1.NodeFeatures.supplementalGroupsPolicy",
    "io.k8s.api.core.v1.NodeRuntimeHandler.name",
    "io.k8s.api.core.v1.NodeRuntimeHandlerFeatures.recursiveReadOnlyMounts",
    "io.k8s.api.core.v1.NodeRuntimeHandlerFeatures.userNamespaces",
    "io.k8s.api.core.v1.NodeSelectorRequirement.key",
    "io.k8s.api.core.v1.NodeSelectorRequirement.operator",
    "io.k8s.api.core.v1.NodeSwapStatus.capacity",
    "io.k8s.api.core.v1.NodeSystemInfo.architecture",
    "io.k8s.api.core.v1.NodeSystemInfo.bootID",
    "io.k8s.api.core.v1.NodeSystemInfo.containerRuntimeVersion",
    "io.k8s.api.core.v1.NodeSystemInfo.kernelVersion",
    "io.k8s.api.core.v1.NodeSystemInfo.kubeProxyVersion",
    "io.k8s.api.core.v1.NodeSystemInfo.kubeletVersion",
    "io.k8s.api.core.v1.NodeSystemInfo.machineID",
    "io.k8s.api.core.v1.NodeSystemInfo.operatingSystem",
    "io.k8s.api.core.v1.NodeSystemInfo.osImage",
    "io.k8s.api.core.v1.NodeSystemInfo.systemUUID",
    "io.k8s.api.core.v1.ObjectFieldSelector.fieldPath",
    "io.k8s.api.core.v1.PersistentVolumeClaimSpec.storageClassName",
    "io.k8s.api.core.v1.PersistentVolumeClaimSpec.volumeAttributesClassName",
    "io.k8s.api.core.v1.PersistentVolumeClaimSpec.volumeMode",
    "io.k8s.api.core.v1.PersistentVolumeClaimVolumeSource.claimName",
    "io.k8s.api.core.v1.PhotonPersistentDiskVolumeSource.pdID",
    "io.k8s.api.core.v1.PodAffinityTerm.topologyKey",
    "io.k8s.api.core.v1.PodCondition.status",
    "io.k8s.api.core.v1.PodCondition.type",
    "io.k8s.api.core.v1.PodDNSConfigOption.value",
    "io.k8s.api.core.v1.PodIP.ip",
    "io.k8s.api.core.v1.PodOS.name",
    "io.k8s.api.core.v1.PodReadinessGate.conditionType",
    "io.k8s.api.core.v1.PodResourceClaim.name",
    "io.k8s.api.core.v1.PodResourceClaim.resourceClaimName",
    "io.k8s.api.core.v1.PodResourceClaim.resourceClaimTemplateName",
    "io.k8s.api.core.v1.PodResourceClaimStatus.name",
    "io.k8s.api.core.v1.PodResourceClaimStatus.resourceClaimName",
    "io.k8s.api.core.v1.PodSchedulingGate.name",
    "io.k8s.api.core.v1.PodSecurityContext.fsGroup",
    "io.k8s.api.core.v1.PodSecurityContext.fsGroupChangePolicy",
    "io.k8s.api.core.v1.PodSecurityContext.runAsGroup",
    "io.k8s.api.core.v1.PodSecurityContext.runAsNonRoot",
    "io.k8s.api.core.v1.PodSecurityContext.runAsUser",
    "io.k8s.api.core.v1.PodSecurityContext.seLinuxChangePolicy",
    "io.k8s.api.core.v1.PodSecurityContext.supplementalGroupsPolicy",
    "io.k8s.api.core.v1.PodSpec.activeDeadlineSeconds",
    "io.k8s.api.core.v1.PodSpec.automountServiceAccountToken",
    "io.k8s.api.core.v1.PodSpec.enableServiceLinks",
    "io.k8s.api.core.v1.PodSpec.hostUsers",
    "io.k8s.api.core.v1.PodSpec.preemptionPolicy",
    "io.k8s.api.core.v1.PodSpec.priority",
    "io.k8s.api.core.v1.PodSpec.runtimeClassName",
    "io.k8s.api.core.v1.PodSpec.setHostnameAsFQDN",
    "io.k8s.api.core.v1.PodSpec.shareProcessNamespace",
    "io.k8s.api.core.v1.PodSpec.terminationGracePeriodSeconds",
    "io.k8s.api.core.v1.PortStatus.error",
    "io.k8s.api.core.v1.PortStatus.port",
    "io.k8s.api.core.v1.PortStatus.protocol",
    "io.k8s.api.core.v1.PortworxVolumeSource.volumeID",
    "io.k8s.api.core.v1.PreferredSchedulingTerm.weight",
    "io.k8s.api.core.v1.Probe.terminationGracePeriodSeconds",
    "io.k8s.api.core.v1.ProjectedVolumeSource.defaultMode",
    "io.k8s.api.core.v1.QuobyteVolumeSource.registry",
    "io.k8s.api.core.v1.QuobyteVolumeSource.volume",
    "io.k8s.api.core.v1.RBDVolumeSource.image",
    "io.k8s.api.core.v1.ResourceClaim.name",
    "io.k8s.api.core.v1.ResourceFieldSelector.resource",
    "io.k8s.api.core.v1.ResourceHealth.resourceID",
    "io.k8s.api.core.v1.ResourceStatus.name",
    "io.k8s.api.core.v1.ScaleIOVolumeSource.gateway",
    "io.k8s.api.core.v1.ScaleIOVolumeSource.system",
    "io.k8s.api.core.v1.SeccompProfile.localhostProfile",
    "io.k8s.api.core.v1.SeccompProfile.type",
    "io.k8s.api.core.v1.Secret.immutable",
    "io.k8s.api.core.v1.SecretEnvSource.optional",
    "io.k8s.api.core.v1.SecretKeySelector.key",
    "io.k8s.api.core.v1.SecretKeySelector.optional",
    "io.k8s.api.core.v1.SecretProjection.optional",
    "io.k8s.api.core.v1.SecretVolumeSource.defaultMode",
    "io.k8s.api.core.v1.SecretVolumeSource.optional",
    "io.k8s.api.core.v1.SecurityContext.allowPrivilegeEscalation",
    "io.k8s.api.core.v1.SecurityContext.privileged",
    "io.k8s.api.core.v1.SecurityContext.procMount",
    "io.k8s.api.core.v1.SecurityContext.readOnlyRootFilesystem",
    "io.k8s.api.core.v1.SecurityContext.runAsGroup",
    "io.k8s.api.core.v1.SecurityContext.runAsNonRoot",
    "io.k8s.api.core.v1.SecurityContext.runAsUser",
    "io.k8s.api.core.v1.ServiceAccountTokenProjection.expirationSeconds",
    "io.k8s.api.core.v1.ServiceAccountTokenProjection.path",
    "io.k8s.api.core.v1.ServicePort.appProtocol",
    "io.k8s.api.core.v1.ServicePort.port",
    "io.k8s.api.core.v1.ServiceSpec.allocateLoadBalancerNodePorts",
    "io.k8s.api.core.v1.ServiceSpec.internalTrafficPolicy",
    "io.k8s.api.core.v1.ServiceSpec.ipFamilyPolicy",
    "io.k8s.api.core.v1.ServiceSpec.loadBalancerClass",
    "io.k8s.api.core.v1.ServiceSpec.trafficDistribution",
    "io.k8s.api.core.v1.SleepAction.seconds",
    "io.k8s.api.core.v1.Sysctl.name",
    "io.k8s.api.core.v1.Sysctl.value",
    "io.k8s.api.core.v1.Taint.effect",
    "io.k8s.api.core.v1.Taint.key",
    "io.k8s.api.core.v1.Toleration.tolerationSeconds",
    "io.k8s.api.core.v1.TopologySpreadConstraint.maxSkew",
    "io.k8s.api.core.v1.TopologySpreadConstraint.minDomains",
    "io.k8s.api.core.v1.TopologySpreadConstraint.nodeAffinityPolicy",
    "io.k8s.api.core.v1.TopologySpreadConstraint.nodeTaintsPolicy",
    "io.k8s.api.core.v1.TopologySpreadConstraint.topologyKey",
    "io.k8s.api.core.v1.TopologySpreadConstraint.whenUnsatisfiable",
    "io.k8s.api.core.v1.TypedLocalObjectReference.apiGroup",
    "io.k8s.api.core.v1.TypedLocalObjectReference.kind",
    "io.k8s.api.core.v1.TypedLocalObjectReference.name",
    "io.k8s.api.core.v1.TypedObjectReference.apiGroup",
    "io.k8s.api.core.v1.TypedObjectReference.kind",
    "io.k8s.api.core.v1.TypedObjectReference.name",
    "io.k8s.api.core.v1.TypedObjectReference.namespace",
    "io.k8s.api.core.v1.Volume.name",
    "io.k8s.api.core.v1.VolumeDevice.devicePath",
    "io.k8s.api.core.v1.VolumeDevice.name",
    "io.k8s.api.core.v1.VolumeMount.mountPath",
    "io.k8s.api.core.v1.VolumeMount.mountPropagation",
    "io.k8s.api.core.v1.VolumeMount.name",
    "io.k8s.api.core.v1.VolumeMount.recursiveReadOnly",
    "io.k8s.api.core.v1.VolumeMountStatus.mountPath",
    "io.k8s.api.core.v1.VolumeMountStatus.name",
    "io.k8s.api.core.v1.VolumeMountStatus.recursiveReadOnly",
    "io.k8s.api.core.v1.VsphereVirtualDiskVolumeSource.volumePath",
    "io.k8s.api.core.v1.WeightedPodAffinityTerm.weight",
    "io.k8s.api.core.v1.WindowsSecurityContextOptions.gmsaCredentialSpec",
    "io.k8s.api.core.v1.WindowsSecurityContextOptions.gmsaCredentialSpecName",
    "io.k8s.api.core.v1.WindowsSecurityContextOptions.hostProcess",
    "io.k8s.api.core.v1.WindowsSecurityContextOptions.runAsUserName",
    "io.k8s.api.discovery.v1.Endpoint.hostname",
    "io.k8s.api.discovery.v1.Endpoint.nodeName",
    "io.k8s.api.discovery.v1.Endpoint.zone",
    "io.k8s.api.discovery.v1.EndpointConditions.ready",
    "io.k8s.api.discovery.v1.EndpointConditions.serving",
    "io.k8s.api.discovery.v1.EndpointConditions.terminating",
    "io.k8s.api.discovery.v1.EndpointPort.appProtocol",
    "io.k8s.api.discovery.v1.EndpointPort.name",
    "io.k8s.api.discovery.v1.EndpointPort.port",
    "io.k8s.api.discovery.v1.EndpointPort.protocol",
    "io.k8s.api.discovery.v1.EndpointSlice.addressType",
    "io.k8s.api.discovery.v1.ForNode.name",
    "io.k8s.api.discovery.v1.ForZone.name",
    "io.k8s.api.networking.v1.HTTPIngressPath.pathType",
    "io.k8s.api.networking.v1.IPBlock.cidr",
    "io.k8s.api.networking.v1.IngressClassParametersReference.apiGroup",
    "io.k8s.api.networking.v1.IngressClassParametersReference.kind",
    "io.k8s.api.networking.v1.IngressClassParametersReference.name",
    "io.k8s.api.networking.v1.IngressClassParametersReference.namespace",
    "io.k8s.api.networking.v1.IngressClassParametersReference.scope",
    "io.k8s.api.networking.v1.IngressPortStatus.error",
    "io.k8s.api.networking.v1.IngressPortStatus.port",
    "io.k8s.api.networking.v1.IngressPortStatus.protocol",
    "io.k8s.api.networking.v1.IngressServiceBackend.name",
    "io.k8s.api.networking.v1.IngressSpec.ingressClassName",
    "io.k8s.api.networking.v1.NetworkPolicyPort.endPort",
    "io.k8s.api.networking.v1.NetworkPolicyPort.protocol",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Condition.message",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Condition.reason",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Condition.status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Condition.type",
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement.key",
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement.operator",
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta.deletionGracePeriodSeconds",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference.apiVersion",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference.blockOwnerDeletion",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference.controller",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference.kind",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference.name",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference.uid",
];

/// A field as read from k8s-pb.
#[derive(Debug, Clone)]
struct PbField {
    rust_name: String,
    tag: u32,
    /// `string`, `int32`, `int64`, `bool`, `bytes`, `double`, `message`, `map_string`, `map_bytes`,
    /// `map_message`.
    kind: String,
    repeated: bool,
    /// Message type, as an OpenAPI-style name before case alignment (`io.k8s.api.core.v1.PodSpec`).
    message: Option<String>,
}

/// Read every `pub struct` of the modules in [`MODULES`]: name (OpenAPI-style, k8s-pb's casing) → fields.
fn read_k8s_pb(src: &Path) -> Result<BTreeMap<String, Vec<PbField>>, String> {
    let mut out = BTreeMap::new();
    for module in MODULES {
        let path = src.join(module).join("mod.rs");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let module_path: Vec<&str> = module.split('/').collect();
        parse_module(&text, &module_path, &mut out)?;
    }
    Ok(out)
}

/// `io.k8s.` + the module path joined with dots + `.` + the type name.
fn openapi_name(module_path: &[&str], name: &str) -> String {
    format!("io.k8s.{}.{name}", module_path.join("."))
}

fn parse_module(
    text: &str,
    module_path: &[&str],
    out: &mut BTreeMap<String, Vec<PbField>>,
) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let Some(rest) = line.strip_prefix("pub struct ") else {
            i += 1;
            continue;
        };
        let Some(name) = rest.strip_suffix(" {") else {
            i += 1;
            continue;
        };
        let mut fields = Vec::new();
        i += 1;
        while i < lines.len() && lines[i] != "}" {
            let l = lines[i].trim();
            if let Some(attr) = l
                .strip_prefix("#[prost(")
                .and_then(|a| a.strip_suffix(")]"))
            {
                // The field declaration follows, possibly over several lines.
                let mut decl = String::new();
                i += 1;
                while i < lines.len() {
                    decl.push_str(lines[i].trim());
                    decl.push(' ');
                    if lines[i].trim_end().ends_with(',') && balanced(&decl) {
                        break;
                    }
                    i += 1;
                }
                fields.push(parse_field(attr, &decl, module_path, name)?);
            }
            i += 1;
        }
        out.insert(openapi_name(module_path, name), fields);
        i += 1;
    }
    Ok(())
}

fn balanced(s: &str) -> bool {
    s.matches('<').count() == s.matches('>').count()
}

fn parse_field(
    attr: &str,
    decl: &str,
    module_path: &[&str],
    owner: &str,
) -> Result<PbField, String> {
    let err = |what: &str| format!("{owner}: cannot parse field ({what}): #[prost({attr})] {decl}");
    let tag = attr
        .split("tag = \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .and_then(|t| t.parse::<u32>().ok())
        .ok_or_else(|| err("tag"))?;
    let rust_name = decl
        .strip_prefix("pub ")
        .and_then(|d| d.split(':').next())
        .map(|n| n.trim().trim_start_matches("r#").to_owned())
        .ok_or_else(|| err("name"))?;
    let ty = decl
        .split_once(':')
        .map(|(_, t)| t.trim().trim_end_matches(',').trim())
        .ok_or_else(|| err("type"))?;
    let repeated = attr.contains(", repeated");
    let (kind, message) = if let Some(map) = attr.strip_prefix("btree_map = \"") {
        let value = map.split('"').next().unwrap_or_default();
        match value {
            "string, string" => ("map_string".to_owned(), None),
            "string, bytes" => ("map_bytes".to_owned(), None),
            "string, message" => {
                // `BTreeMap<String, Path>`, possibly with a trailing comma inside the brackets.
                let inner = ty
                    .trim_end_matches('>')
                    .trim()
                    .trim_end_matches(',')
                    .rsplit_once(',')
                    .map(|(_, v)| v.trim())
                    .ok_or_else(|| err("map value"))?;
                ("map_message".to_owned(), Some(resolve(inner, module_path)))
            }
            _ => return Err(err("map kind")),
        }
    } else {
        let kind = attr
            .split([',', ' '])
            .next()
            .ok_or_else(|| err("kind"))?
            .to_owned();
        match kind.as_str() {
            "string" | "int32" | "int64" | "bool" | "bytes" | "double" => (kind, None),
            "message" => {
                let inner = ty
                    .rsplit_once('<')
                    .map(|(_, v)| v.trim_end_matches('>').trim().trim_end_matches(',').trim())
                    .ok_or_else(|| err("message type"))?;
                (kind, Some(resolve(inner, module_path)))
            }
            _ => return Err(err("kind")),
        }
    };
    Ok(PbField {
        rust_name,
        tag,
        kind,
        repeated,
        message,
    })
}

/// Resolve a Rust type path written inside `module_path` (`Container`,
/// `super::super::super::apimachinery::pkg::apis::meta::v1::ObjectMeta`) to an OpenAPI-style name.
fn resolve(path: &str, module_path: &[&str]) -> String {
    let mut base: Vec<&str> = module_path.to_vec();
    let mut segments: Vec<&str> = path.split("::").collect();
    while segments.first() == Some(&"super") {
        segments.remove(0);
        base.pop();
    }
    let name = segments.pop().unwrap_or_default();
    base.extend(segments);
    openapi_name(&base, name)
}

fn normalise(name: &str) -> String {
    name.replace('_', "").to_lowercase()
}

/// Generate `schema.rs` from k8s-pb's sources and the served OpenAPI documents.
pub(crate) fn generate(k8s_pb_src: &Path, openapi_docs: &[Value]) -> Result<String, String> {
    let pb = read_k8s_pb(k8s_pb_src)?;
    // OpenAPI schemas by lower-cased name: (canonical name, JSON property names).
    let mut schemas: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let mut roots: Vec<(String, String, String)> = Vec::new();
    for doc in openapi_docs {
        let Some(all) = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (name, schema) in all {
            let props = schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            schemas.insert(name.to_lowercase(), (name.clone(), props));
            // Served kinds carry exactly one GVK and are not lists.
            if let Some([gvk]) = schema
                .get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                && !name.ends_with("List")
                && name.starts_with("io.k8s.api.")
                && pb.keys().any(|k| k.eq_ignore_ascii_case(name))
            {
                let group = gvk["group"].as_str().unwrap_or_default();
                let version = gvk["version"].as_str().unwrap_or_default();
                let api_version = if group.is_empty() {
                    version.to_owned()
                } else {
                    format!("{group}/{version}")
                };
                let kind = gvk["kind"].as_str().unwrap_or_default().to_owned();
                if !roots.iter().any(|r| r.2 == *name) {
                    roots.push((api_version, kind, name.clone()));
                }
            }
        }
    }
    roots.sort();
    let pb_by_lower: BTreeMap<String, &Vec<PbField>> =
        pb.iter().map(|(k, v)| (k.to_lowercase(), v)).collect();

    let keep: BTreeSet<&str> = KEEP_ZERO.iter().copied().collect();
    let mut used_keep: BTreeSet<String> = BTreeSet::new();
    let mut messages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut skipped: Vec<String> = Vec::new();
    // A queue of (message, the JSON properties to name its fields by). A Go embedded struct that
    // OpenAPI flattens into its parent (`VolumeSource`, `ProbeHandler`, ...) has no schema of its own:
    // its fields take their names from the parent's properties.
    let mut queue: VecDeque<(String, Option<Vec<String>>)> =
        roots.iter().map(|r| (r.2.clone(), None)).collect();
    while let Some((name, inherited)) = queue.pop_front() {
        if messages.contains_key(&name) || SPECIAL.contains(&name.as_str()) {
            continue;
        }
        let fields = pb_by_lower
            .get(&name.to_lowercase())
            .ok_or_else(|| format!("k8s-pb has no message {name}"))?;
        let props = match (&inherited, schemas.get(&name.to_lowercase())) {
            (Some(p), _) => p.clone(),
            (None, Some((_, p))) => p.clone(),
            (None, None) => return Err(format!("no OpenAPI schema for {name}")),
        };
        let mut fields: Vec<&PbField> = fields.iter().collect();
        fields.sort_by_key(|f| f.tag);
        let mut rows = Vec::new();
        for f in fields {
            let json = props
                .iter()
                .find(|p| normalise(p) == normalise(&f.rust_name))
                .cloned();
            // The message type's canonical name: OpenAPI's casing, or k8s-pb's for a type OpenAPI
            // flattens away.
            let message = f.message.as_deref().map(|m| {
                schemas
                    .get(&m.to_lowercase())
                    .map(|(n, _)| (n.clone(), true))
                    .unwrap_or_else(|| (m.to_owned(), false))
            });
            let (json, inherit) = match (json, &message) {
                (Some(j), Some((_, true)) | None) => (j, None),
                (Some(_), Some((m, false))) => {
                    skipped.push(format!(
                        "{name}.{} (no OpenAPI schema for {m})",
                        f.rust_name
                    ));
                    continue;
                }
                // A message field with no property of its own is a Go embedded struct whose JSON is
                // inlined (`Probe.handler`, `Volume.volumeSource`, `SecretKeySelector`'s
                // `LocalObjectReference`): its fields are the parent's.
                (None, Some((m, has_schema))) if f.kind == "message" && !f.repeated => {
                    let sub: Vec<String> = if *has_schema {
                        schemas[&m.to_lowercase()].1.clone()
                    } else {
                        pb_by_lower
                            .get(&m.to_lowercase())
                            .map(|fs| fs.iter().map(|f| normalise(&f.rust_name)).collect())
                            .unwrap_or_default()
                    };
                    // With a schema, every property must be the parent's; without one (OpenAPI
                    // flattened the type away), most fields must be: k8s-pb may be newer than v1.33.
                    let known = sub
                        .iter()
                        .filter(|p| props.iter().any(|q| normalise(q) == normalise(p)))
                        .count();
                    let inlined = if *has_schema {
                        !sub.is_empty() && known == sub.len()
                    } else {
                        known * 2 > sub.len()
                    };
                    if !inlined {
                        skipped.push(format!("{name}.{} (not in OpenAPI)", f.rust_name));
                        continue;
                    }
                    (String::new(), (!has_schema).then(|| props.clone()))
                }
                (None, _) => {
                    skipped.push(format!("{name}.{} (not in OpenAPI)", f.rust_name));
                    continue;
                }
            };
            let message = message.map(|(m, _)| m);
            if let Some(m) = &message {
                queue.push_back((m.clone(), inherit));
            }
            let kind = match (f.kind.as_str(), &message) {
                ("string", _) => "Kind::String".to_owned(),
                ("int32", _) => "Kind::Int32".to_owned(),
                ("int64", _) => "Kind::Int64".to_owned(),
                ("bool", _) => "Kind::Bool".to_owned(),
                ("bytes", _) => "Kind::Bytes".to_owned(),
                ("double", _) => "Kind::Double".to_owned(),
                ("map_string", _) => "Kind::MapString".to_owned(),
                ("map_bytes", _) => "Kind::MapBytes".to_owned(),
                ("message", Some(m)) => format!("Kind::Message({m:?})"),
                ("map_message", Some(m)) => format!("Kind::MapMessage({m:?})"),
                (k, _) => return Err(format!("{name}.{}: unexpected kind {k}", f.rust_name)),
            };
            let key = format!("{name}.{json}");
            let keep_zero = keep.contains(key.as_str());
            if keep_zero {
                used_keep.insert(key);
            }
            rows.push(format!(
                "f({}, {json:?}, {kind}){}{}",
                f.tag,
                if f.repeated { ".repeated()" } else { "" },
                if keep_zero { ".keep_zero()" } else { "" },
            ));
        }
        messages.insert(name, rows);
    }
    let unused: Vec<&&str> = KEEP_ZERO
        .iter()
        .filter(|k| !used_keep.contains(**k))
        .collect();
    if !unused.is_empty() {
        return Err(format!(
            "KEEP_ZERO entries that name no reachable field: {unused:?}"
        ));
    }

    let fields: usize = messages.values().map(Vec::len).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @generated by `cargo run -p pontifex-api --example gen_proto_schema` — do not edit.\n\
         //\n\
         // Protobuf field numbers and wire kinds: the Rust sources of the `k8s-pb` crate (kube-rs' prost-generated\n\
         // Kubernetes types). JSON names: the served OpenAPI documents. Zero-keeping fields: the generator's\n\
         // KEEP_ZERO list. {} messages, {fields} fields, reachable from {} kinds.",
        messages.len(),
        roots.len()
    );
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "//\n// Fields k8s-pb has and Kubernetes v1.33's OpenAPI does not (ignored when decoding):"
        );
        for s in &skipped {
            let _ = writeln!(out, "// - {s}");
        }
    }
    let _ = writeln!(out, "\nuse super::{{Field, Kind, f}};\n");
    let _ = writeln!(
        out,
        "/// Served kinds: (apiVersion, kind, message).\npub(super) static ROOTS: &[(&str, &str, &str)] = &["
    );
    for (api_version, kind, name) in &roots {
        let _ = writeln!(out, "    ({api_version:?}, {kind:?}, {name:?}),");
    }
    let _ = writeln!(out, "];\n");
    let _ = writeln!(
        out,
        "/// Every message reachable from [`ROOTS`], sorted by name; fields sorted by tag.\n\
         pub(super) static MESSAGES: &[(&str, &[Field])] = &["
    );
    for (name, rows) in &messages {
        let _ = writeln!(out, "    ({name:?}, &[");
        for r in rows {
            let _ = writeln!(out, "        {r},");
        }
        let _ = writeln!(out, "    ]),");
    }
    let _ = writeln!(out, "];");
    Ok(out)
}

/// Where `cargo fetch` unpacks k8s-pb: `$K8S_PB_SRC`, else `$CARGO_HOME/registry/src/*/k8s-pb-<version>/src`
/// (`CARGO_HOME` defaulting to `~/.cargo`).
pub(crate) fn find_k8s_pb_src(version: &str) -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("K8S_PB_SRC") {
        return Some(dir.into());
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    let registry = cargo_home.join("registry").join("src");
    let mut candidates: Vec<_> = std::fs::read_dir(registry)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join(format!("k8s-pb-{version}")).join("src"))
        .filter(|p| p.is_dir())
        .collect();
    candidates.sort();
    candidates.pop()
}
