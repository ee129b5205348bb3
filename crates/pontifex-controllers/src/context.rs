//! What every controller loop shares: the API client, the settings, and the error type.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;
use pontifex_api::cidr::DualStackCidrs;

use crate::events::{Aggregator, Key};

/// Settings, named after kube-controller-manager's flags.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--cluster-cidr`: where node pod CIDRs come from; one CIDR, or one per IP family on a
    /// dual-stack cluster (nodes get one pod CIDR from each, the primary's first). Parse with
    /// [`crate::parse_cluster_cidr`].
    pub cluster_cidr: DualStackCidrs,
    /// `--node-cidr-mask-size`: the prefix length of each node's pod CIDR on a single-stack cluster
    /// (`None`: unset; refused on a dual-stack cluster, as upstream).
    pub node_cidr_mask_size: Option<u8>,
    /// `--node-cidr-mask-size-ipv4` (`None`: 24).
    pub node_cidr_mask_size_ipv4: Option<u8>,
    /// `--node-cidr-mask-size-ipv6` (`None`: 64).
    pub node_cidr_mask_size_ipv6: Option<u8>,
    /// `--max-endpoints-per-slice`.
    pub max_endpoints_per_slice: usize,
    /// `--node-monitor-grace-period`: how long a node may go without a heartbeat before it is NotReady.
    pub node_monitor_grace_period: Duration,
    /// `--lb-pool`: where LoadBalancer Services' ingress IPs come from.
    pub lb_pool: Ipv4Net,
    /// `--leader-elect`: take the `kube-system/pontifex-controllers` Lease before acting.
    pub leader_elect: bool,
    /// `--leader-elect-lease-duration`.
    pub leader_elect_lease_duration: Duration,
    /// `--leader-elect-renew-deadline`.
    pub leader_elect_renew_deadline: Duration,
    /// `--leader-elect-retry-period`.
    pub leader_elect_retry_period: Duration,
    /// This process's identity in the leader Lease (hostname and pid by default).
    pub identity: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster_cidr: "10.244.0.0/16".parse().expect("valid default CIDR"),
            node_cidr_mask_size: None,
            node_cidr_mask_size_ipv4: None,
            node_cidr_mask_size_ipv6: None,
            max_endpoints_per_slice: 100,
            node_monitor_grace_period: Duration::from_secs(50),
            lb_pool: "172.31.255.0/24".parse().expect("valid default CIDR"),
            leader_elect: true,
            leader_elect_lease_duration: Duration::from_secs(15),
            leader_elect_renew_deadline: Duration::from_secs(10),
            leader_elect_retry_period: Duration::from_secs(2),
            identity: format!("pontifex-controllers-{}", std::process::id()),
        }
    }
}

impl Config {
    /// The node mask size of each `cluster_cidr` entry, in order, or why the mask flags are refused
    /// (kube-controller-manager's `setNodeCIDRMaskSizes`).
    pub fn node_cidr_mask_sizes(&self) -> Result<Vec<u8>, crate::NodeIpamFlagError> {
        crate::nodeipam::node_cidr_mask_sizes(
            &self.cluster_cidr,
            self.node_cidr_mask_size,
            self.node_cidr_mask_size_ipv4,
            self.node_cidr_mask_size_ipv6,
        )
    }
}

/// Shared by every controller loop.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub config: Config,
    /// The shared watch caches every loop reads.
    pub(crate) informers: Arc<crate::informer::Informers>,
    /// Events recorded recently, to bump their count on a repeat.
    events: Arc<Mutex<Aggregator>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose watches stop with `shutdown`.
    pub fn new(
        client: kube::Client,
        config: Config,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        Context {
            informers: Arc::new(crate::informer::Informers::new(client.clone(), shutdown)),
            client,
            config,
            events: Arc::default(),
        }
    }
}

/// Why a controller loop failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The API server refused or failed a request (kube-rs error).
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// An object could not be turned into what the controller needs (bad selector, bad JSON).
    #[error("{0}")]
    Invalid(String),
    /// This process was the leader but could not renew the leader Lease within the renew deadline.
    #[error("leaderelection lost")]
    LeadershipLost,
}

impl Context {
    /// Record a core/v1 Event about `object` (what `kubectl describe` shows). The same Event again within
    /// ten minutes bumps the count of the one written (see `events`). Best effort: a failure to record
    /// is logged, never fatal to the controller that reports it.
    pub async fn event(
        &self,
        object: &k8s_openapi::api::core::v1::ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        use k8s_openapi::api::core::v1::Event;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
        let ns = object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let now = jiff::Timestamp::now();
        let api: kube::Api<Event> = kube::Api::namespaced(self.client.clone(), &ns);
        let key = Key {
            object: format!(
                "{}/{}/{}/{}/{}",
                object.api_version.as_deref().unwrap_or(""),
                object.kind.as_deref().unwrap_or(""),
                ns,
                object.name.as_deref().unwrap_or(""),
                object.uid.as_deref().unwrap_or("")
            ),
            type_: type_.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
        };
        let repeat = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .observe(&key, now);
        if let Some(r) = repeat {
            let patch = serde_json::json!({
                "count": r.count,
                "lastTimestamp": Time(now),
            });
            let api: kube::Api<Event> = kube::Api::namespaced(self.client.clone(), &r.namespace);
            let patched = api
                .patch(
                    &r.name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await;
            match patched {
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(error = %e, reason, "could not update an event; writing a new one");
                    self.events
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .forget(&key);
                }
            }
        }
        let name = format!(
            "{}.{:x}",
            object.name.as_deref().unwrap_or("object"),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..ObjectMeta::default()
            },
            involved_object: object.clone(),
            type_: Some(type_.to_owned()),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            reporting_component: Some(self.config.identity.clone()),
            reporting_instance: Some(self.config.identity.clone()),
            action: Some(reason.to_owned()),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some("pontifex-controllers".to_owned()),
                host: None,
            }),
            ..Event::default()
        };
        match api.create(&kube::api::PostParams::default(), &event).await {
            Ok(_) => self
                .events
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .recorded(key, &ns, &name, now),
            Err(e) => tracing::debug!(error = %e, reason, "could not record an event"),
        }
    }
}
