//! Patch metadata: which lists merge by key, which fields carry `retainKeys`, for each served kind.
//!
//! Kubernetes reads this from the `patchStrategy` / `patchMergeKey` struct tags of its Go types
//! (`k8s.io/api/core/v1/types.go`, `apps/v1`, `networking/v1`, `discovery/v1`, `metav1.ObjectMeta`).
//! We have no Go types, so the same facts are written down here once, as a tree of static tables.
//!
//! A field that is not listed has no patch metadata: maps under it merge recursively and lists under
//! it are replaced wholesale. That is also what a kind without an entry gets ([`PatchSchema::EMPTY`]).
//! Only fields whose subtree contains a tagged field need to be listed.
//!
//! Not covered: fields of kinds we do not serve, and lists nested under atomic lists (for example
//! `status.containerStatuses[*].volumeMounts`: `containerStatuses` has no merge key, so the whole
//! list is replaced and its elements' metadata never matters).

/// How a field is patched, as its `patchStrategy` tag says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// No tag: maps merge recursively, lists are replaced.
    Default,
    /// `patchStrategy:"merge"`: a list of objects merges element-wise by its merge key; a list of
    /// scalars merges as a set.
    Merge,
    /// `patchStrategy:"replace"`: the value is replaced even when it is a map.
    #[allow(dead_code)]
    // No served kind uses it today; kept so the table can say it when one does.
    Replace,
}

/// Patch metadata of one field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldPatch {
    pub(crate) strategy: Strategy,
    /// `patchMergeKey`: the field of each element that identifies it. `None` for scalar sets.
    pub(crate) merge_key: Option<&'static str>,
    /// The field's strategy includes `retainKeys` (the `$retainKeys` directive is meaningful).
    /// Applying a patch does not need it (the directive carries its own list); it documents the
    /// schema and serves whoever builds patches.
    #[allow(dead_code)]
    pub(crate) retain_keys: bool,
    /// The schema of the value: of the map itself, or of each element of a list.
    pub(crate) schema: &'static PatchSchema,
}

impl FieldPatch {
    /// A field without any tag.
    pub(crate) const NONE: FieldPatch = FieldPatch {
        strategy: Strategy::Default,
        merge_key: None,
        retain_keys: false,
        schema: &PatchSchema::EMPTY,
    };
}

/// The patch metadata of one object type: its fields that carry tags or lead to fields that do.
#[derive(Debug)]
pub struct PatchSchema {
    fields: &'static [(&'static str, FieldPatch)],
}

impl PatchSchema {
    /// No metadata at all: every map merges, every list is replaced.
    pub const EMPTY: PatchSchema = PatchSchema { fields: &[] };

    /// The metadata of field `name` (the JSON name), [`FieldPatch::NONE`] when it has none.
    pub(crate) fn field(&self, name: &str) -> FieldPatch {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(FieldPatch::NONE, |(_, f)| *f)
    }

    /// The merge key of the list at `path` (JSON field names from this type down, list elements
    /// crossed implicitly), or `None` if that list is not a keyed merge list. For tests and for
    /// callers that want to publish `x-kubernetes-patch-merge-key`.
    pub fn merge_key(&self, path: &[&str]) -> Option<&'static str> {
        let (last, parents) = path.split_last()?;
        let mut schema = self;
        for name in parents {
            schema = schema.field(name).schema;
        }
        let field = schema.field(last);
        match field.strategy {
            Strategy::Merge => field.merge_key,
            _ => None,
        }
    }
}

/// The patch schema of a served kind; [`PatchSchema::EMPTY`] for a kind we do not know.
pub fn schema_for(group: &str, kind: &str) -> &'static PatchSchema {
    match (group, kind) {
        ("", "Namespace") => &NAMESPACE,
        ("", "Node") => &NODE,
        ("", "Pod") => &POD,
        ("", "Service") => &SERVICE,
        ("apps", "Deployment") => &DEPLOYMENT,
        ("apps", "ReplicaSet") => &REPLICA_SET,
        // These kinds have no tagged list of their own (EndpointSlice and Endpoints lists, Ingress
        // rules, NetworkPolicy peers, ... are all atomic): only `metadata` matters.
        ("", "Endpoints" | "Secret" | "ConfigMap" | "Event")
        | ("discovery.k8s.io", "EndpointSlice")
        | ("networking.k8s.io", "Ingress" | "IngressClass" | "NetworkPolicy")
        | ("coordination.k8s.io", "Lease") => &METADATA_ONLY,
        _ => &PatchSchema::EMPTY,
    }
}

// Shorthands for the tables below.

/// `patchStrategy:"merge" patchMergeKey:"<key>"` over elements of `schema`.
const fn merge(key: &'static str, schema: &'static PatchSchema) -> FieldPatch {
    FieldPatch {
        strategy: Strategy::Merge,
        merge_key: Some(key),
        retain_keys: false,
        schema,
    }
}

/// `patchStrategy:"merge,retainKeys" patchMergeKey:"<key>"`.
const fn merge_retain(key: &'static str, schema: &'static PatchSchema) -> FieldPatch {
    FieldPatch {
        strategy: Strategy::Merge,
        merge_key: Some(key),
        retain_keys: true,
        schema,
    }
}

/// `patchStrategy:"merge"` on a list of scalars: a set.
const SET: FieldPatch = FieldPatch {
    strategy: Strategy::Merge,
    merge_key: None,
    retain_keys: false,
    schema: &PatchSchema::EMPTY,
};

/// An untagged field whose value has tagged fields below it.
const fn nested(schema: &'static PatchSchema) -> FieldPatch {
    FieldPatch {
        strategy: Strategy::Default,
        merge_key: None,
        retain_keys: false,
        schema,
    }
}

/// `patchStrategy:"retainKeys"` on a struct.
const fn retain(schema: &'static PatchSchema) -> FieldPatch {
    FieldPatch {
        strategy: Strategy::Default,
        merge_key: None,
        retain_keys: true,
        schema,
    }
}

const EMPTY: &PatchSchema = &PatchSchema::EMPTY;

/// `metav1.ObjectMeta`: ownerReferences by uid, finalizers as a set.
static OBJECT_META: PatchSchema = PatchSchema {
    fields: &[
        ("ownerReferences", merge("uid", EMPTY)),
        ("finalizers", SET),
    ],
};

static METADATA_ONLY: PatchSchema = PatchSchema {
    fields: &[("metadata", nested(&OBJECT_META))],
};

/// A status whose only tagged field is `conditions`, merged by `type` (Namespace, Service,
/// Deployment, ReplicaSet statuses; `metav1.Condition` lists too).
static CONDITIONS_STATUS: PatchSchema = PatchSchema {
    fields: &[("conditions", merge("type", EMPTY))],
};

static NAMESPACE: PatchSchema = PatchSchema {
    fields: &[
        ("metadata", nested(&OBJECT_META)),
        ("status", nested(&CONDITIONS_STATUS)),
    ],
};

static NODE_SPEC: PatchSchema = PatchSchema {
    fields: &[("podCIDRs", SET)],
};

static NODE_STATUS: PatchSchema = PatchSchema {
    fields: &[
        ("conditions", merge("type", EMPTY)),
        ("addresses", merge("type", EMPTY)),
    ],
};

static NODE: PatchSchema = PatchSchema {
    fields: &[
        ("metadata", nested(&OBJECT_META)),
        ("spec", nested(&NODE_SPEC)),
        ("status", nested(&NODE_STATUS)),
    ],
};

/// `Container` and `EphemeralContainer` (their common fields are the same).
static CONTAINER: PatchSchema = PatchSchema {
    fields: &[
        ("ports", merge("containerPort", EMPTY)),
        ("env", merge("name", EMPTY)),
        ("volumeMounts", merge("mountPath", EMPTY)),
        ("volumeDevices", merge("devicePath", EMPTY)),
    ],
};

static POD_SPEC: PatchSchema = PatchSchema {
    fields: &[
        // Each volume is a one-of (VolumeSource inline): retainKeys lets a patch switch the source.
        ("volumes", merge_retain("name", EMPTY)),
        ("initContainers", merge("name", &CONTAINER)),
        ("containers", merge("name", &CONTAINER)),
        ("ephemeralContainers", merge("name", &CONTAINER)),
        ("imagePullSecrets", merge("name", EMPTY)),
        ("hostAliases", merge("ip", EMPTY)),
        ("topologySpreadConstraints", merge("topologyKey", EMPTY)),
        ("schedulingGates", merge("name", EMPTY)),
        ("resourceClaims", merge_retain("name", EMPTY)),
    ],
};

static POD_STATUS: PatchSchema = PatchSchema {
    fields: &[
        ("conditions", merge("type", EMPTY)),
        ("podIPs", merge("ip", EMPTY)),
        ("hostIPs", merge("ip", EMPTY)),
        ("resourceClaimStatuses", merge_retain("name", EMPTY)),
    ],
};

static POD: PatchSchema = PatchSchema {
    fields: &[
        ("metadata", nested(&OBJECT_META)),
        ("spec", nested(&POD_SPEC)),
        ("status", nested(&POD_STATUS)),
    ],
};

static POD_TEMPLATE_SPEC: PatchSchema = PatchSchema {
    fields: &[
        ("metadata", nested(&OBJECT_META)),
        ("spec", nested(&POD_SPEC)),
    ],
};

static SERVICE_SPEC: PatchSchema = PatchSchema {
    fields: &[("ports", merge("port", EMPTY))],
};

static SERVICE: PatchSchema = PatchSchema {
    fields: &[
        ("metadata", nested(&OBJECT_META)),
        ("spec", nested(&SERVICE_SPEC)),
        ("status", nested(&CONDITIONS_STATUS)),
    ],
};

static DEPLOYMENT_SPEC: PatchSchema = PatchSchema {
    fields: &[
        ("template", nested(&POD_TEMPLATE_SPEC)),
        // One-of between Recreate and RollingUpdate: retainKeys drops `rollingUpdate` on a switch.
        ("strategy", retain(EMPTY)),
    ],
};

static DEPLOYMENT: PatchSchema = PatchSchema {
    fields: &[
        ("metadata", nested(&OBJECT_META)),
        ("spec", nested(&DEPLOYMENT_SPEC)),
        ("status", nested(&CONDITIONS_STATUS)),
    ],
};

static REPLICA_SET_SPEC: PatchSchema = PatchSchema {
    fields: &[("template", nested(&POD_TEMPLATE_SPEC))],
};

static REPLICA_SET: PatchSchema = PatchSchema {
    fields: &[
        ("metadata", nested(&OBJECT_META)),
        ("spec", nested(&REPLICA_SET_SPEC)),
        ("status", nested(&CONDITIONS_STATUS)),
    ],
};
