//! The garbage collector: deletes objects whose owners are gone, and carries out the `Foreground` and
//! `Orphan` cascades the API server records as the `foregroundDeletion` and `orphan` finalizers. The
//! decision is in [`reconcile`]; this is the loop.
//!
//! Unlike upstream's graph kept up to date by one informer per kind, each pass lists every listable,
//! deletable kind found by discovery (every two seconds) and decides over that snapshot. Simpler, and
//! fine at pontifex's scale; a pass costs one list per kind.

mod reconcile;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{
    DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::dynamic::{self, Resource};
use crate::{Context, Error};
use reconcile::{Action, Node, OwnerRef};

const PERIOD: Duration = Duration::from_secs(2);

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    loop {
        if let Err(e) = pass(&ctx).await {
            tracing::info!(error = %e, "garbage collection pass failed; retrying");
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(PERIOD) => {}
        }
    }
}

/// Where an object lives, to act on it by uid.
struct Located<'a> {
    resource: &'a Resource,
    obj: DynamicObject,
}

async fn pass(ctx: &Context) -> Result<(), Error> {
    let resources = dynamic::resources(&ctx.client).await?;
    let mut objects: BTreeMap<String, Located<'_>> = BTreeMap::new();
    for r in &resources {
        for obj in dynamic::list(&ctx.client, r, None).await? {
            if let Some(uid) = obj.metadata.uid.clone() {
                objects.insert(uid, Located { resource: r, obj });
            }
        }
    }
    let nodes: Vec<Node> = objects
        .iter()
        .map(|(uid, l)| Node {
            uid: uid.clone(),
            owners: l
                .obj
                .metadata
                .owner_references
                .iter()
                .flatten()
                .map(|o| OwnerRef {
                    uid: o.uid.clone(),
                    block_owner_deletion: o.block_owner_deletion == Some(true),
                })
                .collect(),
            finalizers: l.obj.metadata.finalizers.clone().unwrap_or_default(),
            deleting: l.obj.metadata.deletion_timestamp.is_some(),
        })
        .collect();
    for action in reconcile::reconcile(&nodes) {
        let uid = match &action {
            Action::Delete { uid, .. }
            | Action::RemoveOwners { uid, .. }
            | Action::RemoveFinalizer { uid, .. } => uid.clone(),
        };
        let Some(l) = objects.get(&uid) else { continue };
        let ns = l.obj.metadata.namespace.as_deref();
        let name = l.obj.metadata.name.clone().unwrap_or_default();
        let api = dynamic::api(&ctx.client, l.resource, ns);
        let result = match action {
            Action::Delete { foreground, .. } => {
                let orphaned = l
                    .obj
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .all(|o| !objects.contains_key(&o.uid));
                // The snapshot may predate a just-created owner: ask the server before deleting.
                if orphaned && any_owner_live(ctx, &resources, &l.obj).await {
                    continue;
                }
                let dp = DeleteParams {
                    propagation_policy: Some(if foreground {
                        PropagationPolicy::Foreground
                    } else {
                        PropagationPolicy::Background
                    }),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                tracing::info!(kind = %l.resource.ar.kind, namespace = ?ns, %name, "garbage collecting");
                api.delete(&name, &dp).await.map(|_| ())
            }
            Action::RemoveOwners { owners, .. } => {
                let left: Vec<_> = l
                    .obj
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .filter(|o| !owners.contains(&o.uid))
                    .collect();
                // An empty list is sent as null: removed, as Kubernetes never stores an empty one.
                let left = if left.is_empty() {
                    json!(null)
                } else {
                    json!(left)
                };
                let patch = json!({ "metadata": {
                    "ownerReferences": left,
                    "resourceVersion": l.obj.metadata.resource_version,
                }});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            Action::RemoveFinalizer { finalizer, .. } => {
                let left: Vec<&String> = l
                    .obj
                    .metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .filter(|f| *f != finalizer)
                    .collect();
                let left = if left.is_empty() {
                    json!(null)
                } else {
                    json!(left)
                };
                let patch = json!({ "metadata": {
                    "finalizers": left,
                    "resourceVersion": l.obj.metadata.resource_version,
                }});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => {}
            // Changed or gone since the snapshot: the next pass sees the new state.
            Err(e) if dynamic::is_gone_or_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether some owner of `obj` exists now with the uid the reference names. An owner whose kind
/// discovery does not know, and any error other than 404, count as live: as upstream, the collector
/// does not delete what it cannot prove orphaned (it retries on the next pass).
async fn any_owner_live(ctx: &Context, resources: &[Resource], obj: &DynamicObject) -> bool {
    for o in obj.metadata.owner_references.iter().flatten() {
        // Any served version of the owner's group and kind will do: the uid is the same in each.
        let group = o.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let Some(r) = resources
            .iter()
            .find(|r| r.ar.group == group && r.ar.kind == o.kind)
        else {
            return true;
        };
        let api = dynamic::api(&ctx.client, r, obj.metadata.namespace.as_deref());
        match api.get_opt(&o.name).await {
            Ok(Some(owner)) if owner.metadata.uid.as_deref() == Some(o.uid.as_str()) => {
                return true;
            }
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    false
}
