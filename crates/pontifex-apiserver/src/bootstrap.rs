//! What exists before any client arrives: the standard namespaces, the `default/kubernetes` Service with
//! its Endpoints and EndpointSlice pointing at this server, and a repair pass over the allocation keys.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use jiff::Timestamp;
use pontifex_api::registry;
use pontifex_api::status::ApiError;
use pontifex_store::{Compare, Op, TxnOutcome};
use serde_json::{Value, json};

use crate::admission::{self, IP_PREFIX, PORT_PREFIX};
use crate::handler::ensure_object;
use crate::objects;
use crate::server::State;

pub(crate) async fn run(state: &Arc<State>, advertise: IpAddr, port: u16) -> Result<(), ApiError> {
    repair_allocations(state).await?;
    let namespaces = registry::lookup("", "v1", "namespaces").expect("registered");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure_object(
            state,
            namespaces,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    let services = registry::lookup("", "v1", "services").expect("registered");
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": state.allocator.first_ip().to_string(),
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                 "sessionAffinity": "None"},
    });
    ensure_object(state, services, service).await?;

    // The endpoints name this server, which may be a loopback address in the one-machine lab; user
    // writes may not use loopback, so these are written directly, as kube-apiserver's own reconciler does.
    let endpoints = registry::lookup("", "v1", "endpoints").expect("registered");
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertise.to_string()}],
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    upsert_raw(
        state,
        objects::key(endpoints, Some("default"), "kubernetes"),
        ep,
    )
    .await?;
    let slices = registry::lookup("discovery.k8s.io", "v1", "endpointslices").expect("registered");
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": if advertise.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [advertise.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    upsert_raw(
        state,
        objects::key(slices, Some("default"), "kubernetes"),
        slice,
    )
    .await?;
    Ok(())
}

/// Write `obj` at `key` unless the stored version already says the same (ignoring server metadata).
async fn upsert_raw(state: &Arc<State>, key: String, mut obj: Value) -> Result<(), ApiError> {
    let current = state.store.get(&key).await.map_err(objects::store_error)?;
    let guard = match &current {
        Some(kv) => {
            let stored = objects::decode(kv)?;
            let same = |field: &str| stored.get(field) == obj.get(field);
            if same("subsets") && same("endpoints") && same("ports") {
                return Ok(());
            }
            let meta = objects::meta_mut(&mut obj);
            meta.insert("uid".into(), stored["metadata"]["uid"].clone());
            meta.insert(
                "creationTimestamp".into(),
                stored["metadata"]["creationTimestamp"].clone(),
            );
            Compare::ModRevision(key.clone(), kv.mod_revision)
        }
        None => {
            let meta = objects::meta_mut(&mut obj);
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert(
                "creationTimestamp".into(),
                json!(objects::timestamp(Timestamp::now())),
            );
            Compare::Absent(key.clone())
        }
    };
    let outcome = state
        .store
        .txn(
            vec![guard],
            vec![Op::Put {
                key,
                value: objects::encode(&obj),
            }],
        )
        .await
        .map_err(objects::store_error)?;
    match outcome {
        TxnOutcome::Committed { .. } => Ok(()),
        // Another API server wrote it meanwhile; theirs is as good as ours.
        TxnOutcome::Failed { .. } => Ok(()),
    }
}

/// Make the allocation keys agree with the Services: drop keys no Service holds (a leak), add keys a
/// Service holds but the store lacks (from an older layout or a hand-edited store). Both should be rare,
/// since allocations are written in the same transaction as their Service.
async fn repair_allocations(state: &Arc<State>) -> Result<(), ApiError> {
    let services = registry::lookup("", "v1", "services").expect("registered");
    let all = state
        .store
        .range(&objects::base(services), None, 0)
        .await
        .map_err(objects::store_error)?;
    let mut wanted: Vec<(String, String)> = Vec::new();
    for kv in &all.kvs {
        let svc = objects::decode(kv)?;
        let owner = format!(
            "{}/{}",
            objects::namespace(&svc).unwrap_or(""),
            objects::name(&svc).unwrap_or("")
        );
        wanted.extend(
            admission::owned_keys(&svc)
                .into_iter()
                .map(|k| (k, owner.clone())),
        );
    }
    let wanted_keys: HashSet<&str> = wanted.iter().map(|(k, _)| k.as_str()).collect();
    for prefix in [IP_PREFIX, PORT_PREFIX] {
        let held = state
            .store
            .range(prefix, None, 0)
            .await
            .map_err(objects::store_error)?;
        for kv in held.kvs {
            if wanted_keys.contains(kv.key.as_str()) {
                state.allocator.observe(&kv.key, true);
                continue;
            }
            tracing::warn!(key = %kv.key, owner = %String::from_utf8_lossy(&kv.value), "releasing leaked allocation");
            let guard = Compare::ModRevision(kv.key.clone(), kv.mod_revision);
            state
                .store
                .txn(vec![guard], vec![Op::Delete { key: kv.key }])
                .await
                .map_err(objects::store_error)?;
        }
    }
    for (key, owner) in wanted {
        let outcome = state
            .store
            .txn(
                vec![Compare::Absent(key.clone())],
                vec![Op::Put {
                    key: key.clone(),
                    value: Bytes::from(owner.clone()),
                }],
            )
            .await
            .map_err(objects::store_error)?;
        if let TxnOutcome::Committed { .. } = outcome {
            tracing::warn!(%key, %owner, "restored missing allocation");
        }
        state.allocator.observe(&key, true);
    }
    Ok(())
}
