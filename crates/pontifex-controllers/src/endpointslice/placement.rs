//! Placing endpoints into EndpointSlices with little churn, shared by the EndpointSlice controller
//! and the mirroring controller (both decide *which* endpoints and ports exist, then hand the set to
//! [`place`]).
//!
//! The rules follow the upstream reconciler: endpoints are grouped by address type and port set (one
//! slice carries one port set); an existing slice is updated in place (endpoints that changed are
//! replaced, those that went are dropped), slices that must be written anyway are filled with new
//! endpoints first, then new slices are created, and a last partly filled new slice is folded into an
//! untouched existing slice with room rather than created. A slice left empty is deleted, unless a
//! create can reuse it (it becomes an update); a Service with no endpoints keeps one empty placeholder
//! slice. Nothing is written for a slice whose content did not change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::pods::TRIGGER_TIME_ANNOTATION;

/// One write the controller must make.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// Create this slice (named by `generateName`).
    Create(EndpointSlice),
    /// Replace this slice (carries the observed name and resourceVersion).
    Update(EndpointSlice),
    /// Delete the slice of this name.
    Delete(String),
}

/// The endpoints of one address type and port set.
#[derive(Clone, Debug, Default)]
pub(crate) struct Group {
    pub(crate) address_type: &'static str,
    pub(crate) ports: Vec<EndpointPort>,
    pub(crate) endpoints: Vec<Endpoint>,
}

/// Everything the slices of one owner should be.
#[derive(Clone, Debug)]
pub(crate) struct Desired {
    pub(crate) namespace: String,
    pub(crate) generate_name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) owner: OwnerReference,
    /// Address types the owner has; the first is the placeholder's.
    pub(crate) address_types: Vec<&'static str>,
    pub(crate) groups: Vec<Group>,
    /// Written to the trigger-time annotation of slices this pass creates or changes.
    pub(crate) trigger_time: Option<String>,
    pub(crate) max_per_slice: usize,
}

type PortKey = Vec<(String, i32, String, String)>;
type GroupKey = (String, PortKey);

/// Order-independent identity of a port set.
fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut key: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    key.sort();
    key
}

/// The identity of an endpoint across passes: its first address and what it refers to.
fn endpoint_key(e: &Endpoint) -> (String, String, String) {
    let r = e.target_ref.as_ref();
    (
        e.addresses.first().cloned().unwrap_or_default(),
        r.and_then(|r| r.namespace.clone()).unwrap_or_default(),
        r.and_then(|r| r.name.clone()).unwrap_or_default(),
    )
}

impl Desired {
    fn slice(
        &self,
        address_type: &str,
        ports: &[EndpointPort],
        eps: Vec<Endpoint>,
    ) -> EndpointSlice {
        let mut s = EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(self.generate_name.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            address_type: address_type.to_owned(),
            endpoints: eps,
            ports: Some(ports.to_vec()),
        };
        self.stamp(&mut s);
        s
    }

    /// Labels, owner and trigger time on a slice about to be written.
    fn stamp(&self, s: &mut EndpointSlice) {
        s.metadata.labels = Some(self.labels.clone());
        s.metadata.owner_references = Some(vec![self.owner.clone()]);
        let annotations = s.metadata.annotations.get_or_insert_with(BTreeMap::new);
        match &self.trigger_time {
            Some(t) => {
                annotations.insert(TRIGGER_TIME_ANNOTATION.to_owned(), t.clone());
            }
            None => {
                annotations.remove(TRIGGER_TIME_ANNOTATION);
            }
        }
        if annotations.is_empty() {
            s.metadata.annotations = None;
        }
    }

    /// The slice's metadata is what this pass wants (labels and sole controller owner).
    fn metadata_current(&self, s: &EndpointSlice) -> bool {
        s.metadata.labels.as_ref() == Some(&self.labels)
            && s.metadata.owner_references.as_deref() == Some(std::slice::from_ref(&self.owner))
    }
}

/// Work out the writes that bring `existing` (the owner's slices) to `desired`.
pub(crate) fn place(desired: &Desired, existing: &[Arc<EndpointSlice>]) -> Vec<Action> {
    let max = desired.max_per_slice.max(1);
    let mut wanted: BTreeMap<GroupKey, &Group> = BTreeMap::new();
    for g in &desired.groups {
        wanted.insert((g.address_type.to_owned(), port_key(&g.ports)), g);
    }
    let mut have: BTreeMap<GroupKey, Vec<&EndpointSlice>> = BTreeMap::new();
    let mut sorted: Vec<&EndpointSlice> = existing.iter().map(|s| &**s).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for s in sorted {
        let key = (
            s.address_type.clone(),
            port_key(s.ports.as_deref().unwrap_or(&[])),
        );
        have.entry(key).or_default().push(s);
    }

    let mut creates: Vec<EndpointSlice> = Vec::new();
    let mut updates: Vec<EndpointSlice> = Vec::new();
    let mut deletes: Vec<&EndpointSlice> = Vec::new();
    let empty = Group::default();
    let mut keys: Vec<&GroupKey> = wanted.keys().chain(have.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let group = wanted.get(key).copied().unwrap_or(&empty);
        let slices = have.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let address_type = desired
            .address_types
            .iter()
            .copied()
            .find(|t| *t == key.0)
            .unwrap_or(group.address_type);
        place_group(
            desired,
            address_type,
            group,
            slices,
            max,
            &mut creates,
            &mut updates,
            &mut deletes,
        );
    }

    // A create that can take over a slice about to be deleted becomes an update of it.
    let mut i = 0;
    while i < deletes.len() && !creates.is_empty() {
        let last = creates.last().map(|c| c.address_type.clone());
        if last.as_deref() == Some(deletes[i].address_type.as_str()) {
            let mut slice = creates.pop().unwrap_or_default();
            let old = deletes.remove(i);
            slice.metadata.name = old.metadata.name.clone();
            slice.metadata.generate_name = old.metadata.generate_name.clone();
            slice.metadata.resource_version = old.metadata.resource_version.clone();
            slice.metadata.uid = old.metadata.uid.clone();
            updates.push(slice);
        } else {
            i += 1;
        }
    }

    // An owner without endpoints keeps one empty placeholder slice.
    if creates.is_empty() && deletes.len() == existing.len() {
        let placeholder = desired.slice(
            desired.address_types.first().copied().unwrap_or("IPv4"),
            &[],
            Vec::new(),
        );
        let same = |s: &EndpointSlice| {
            s.address_type == placeholder.address_type
                && s.endpoints.is_empty()
                && s.ports.as_deref().unwrap_or(&[]).is_empty()
                && desired.metadata_current(s)
        };
        if deletes.len() == 1 && same(deletes[0]) {
            deletes.clear();
        } else {
            creates.push(placeholder);
        }
    }

    let mut actions: Vec<Action> = Vec::new();
    actions.extend(updates.into_iter().map(Action::Update));
    actions.extend(creates.into_iter().map(Action::Create));
    actions.extend(
        deletes
            .into_iter()
            .filter_map(|s| s.metadata.name.clone())
            .map(Action::Delete),
    );
    actions
}

#[allow(clippy::too_many_arguments)] // the three output lists are the point
fn place_group<'a>(
    desired: &Desired,
    address_type: &'static str,
    group: &Group,
    slices: &[&'a EndpointSlice],
    max: usize,
    creates: &mut Vec<EndpointSlice>,
    updates: &mut Vec<EndpointSlice>,
    deletes: &mut Vec<&'a EndpointSlice>,
) {
    let allowed = desired.address_types.contains(&address_type);
    let mut pending: HashMap<(String, String, String), &Endpoint> = HashMap::new();
    if allowed {
        for e in &group.endpoints {
            pending.entry(endpoint_key(e)).or_insert(e);
        }
    }
    let mut to_update: Vec<EndpointSlice> = Vec::new();
    let mut untouched: Vec<&EndpointSlice> = Vec::new();
    for &slice in slices {
        let mut changed = false;
        let mut kept: Vec<Endpoint> = Vec::with_capacity(slice.endpoints.len());
        for e in &slice.endpoints {
            match pending.remove(&endpoint_key(e)) {
                Some(want) => {
                    if want != e {
                        changed = true;
                    }
                    kept.push(want.clone());
                }
                None => changed = true,
            }
        }
        if kept.is_empty() {
            deletes.push(slice);
        } else if changed || !desired.metadata_current(slice) {
            let mut s = slice.clone();
            s.endpoints = kept;
            s.ports = Some(group.ports.clone());
            to_update.push(s);
        } else {
            untouched.push(slice);
        }
    }
    // New endpoints, in the order the caller gave them.
    let mut fresh: Vec<Endpoint> = group
        .endpoints
        .iter()
        .filter(|e| pending.remove(&endpoint_key(e)).is_some())
        .cloned()
        .collect();
    fresh.reverse(); // pop from the end in the caller's order

    // Slices written anyway take new endpoints first, fullest first.
    to_update.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
    for s in &mut to_update {
        while s.endpoints.len() < max {
            match fresh.pop() {
                Some(e) => s.endpoints.push(e),
                None => break,
            }
        }
    }
    let mut new_slices: Vec<EndpointSlice> = Vec::new();
    while !fresh.is_empty() {
        let mut eps = Vec::with_capacity(max.min(fresh.len()));
        while eps.len() < max {
            match fresh.pop() {
                Some(e) => eps.push(e),
                None => break,
            }
        }
        new_slices.push(desired.slice(address_type, &group.ports, eps));
    }
    // A partly filled last new slice goes into the fullest untouched slice it fits in instead.
    if let Some(last) = new_slices.last() {
        let n = last.endpoints.len();
        if n < max {
            untouched.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
            if let Some(pos) = untouched.iter().position(|s| s.endpoints.len() + n <= max) {
                let host = untouched.remove(pos);
                let mut s = host.clone();
                let last = new_slices.pop().unwrap_or_default();
                s.endpoints.extend(last.endpoints);
                to_update.push(s);
            }
        }
    }
    for mut s in to_update {
        desired.stamp(&mut s);
        updates.push(s);
    }
    creates.extend(new_slices);
}
