use super::*;
use crate::endpointslice::placement::Action;
use serde_json::json;

fn service(selector: bool) -> Service {
    let mut spec = json!({"ports": [{"name": "work", "port": 6180}]});
    if selector {
        spec["selector"] = json!({"app": "x"});
    }
    serde_json::from_value(
        json!({"metadata": {"name": "service-test", "namespace": "kube-system"}, "spec": spec}),
    )
    .unwrap()
}

fn endpoints(ips: &[&str], labels: serde_json::Value) -> Endpoints {
    let addresses: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({"metadata": {"name": "service-test", "namespace": "kube-system", "uid": "ep-uid",
        "labels": labels}, "subsets": [{"addresses": addresses, "notReadyAddresses": [{"ip": "10.1.21.99"}],
        "ports": [{"name": "work", "port": 6180}]}]}))
    .unwrap()
}

fn created(actions: Vec<Action>) -> Arc<EndpointSlice> {
    match &actions[..] {
        [Action::Create(s)] => {
            let mut s = s.clone();
            s.metadata.name = Some("service-test-abc".into());
            Arc::new(s)
        }
        other => panic!("expected one create, got {other:?}"),
    }
}

#[test]
fn hand_written_endpoints_are_mirrored_and_kept_in_step() {
    let svc = service(false);
    let ep = endpoints(&["10.1.21.32", "bogus"], json!({"app": "service-test"}));
    let slice = created(reconcile(Some(&svc), Some(&ep), &[]));
    let labels = slice.metadata.labels.clone().unwrap();
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(labels["kubernetes.io/service-name"], "service-test");
    assert_eq!(labels["app"], "service-test");
    assert_eq!(
        slice.metadata.owner_references.as_ref().unwrap()[0].kind,
        "Endpoints"
    );
    let eps: Vec<(&str, bool)> = slice
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addresses[0].as_str(),
                e.conditions.as_ref().unwrap().ready.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        eps,
        [("10.1.21.32", true), ("10.1.21.99", false)],
        "invalid IPs are skipped"
    );
    let port = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("work"), Some(6180))
    );
    let slices = [slice];
    assert_eq!(
        reconcile(Some(&svc), Some(&ep), &slices),
        [],
        "no-op resync"
    );

    let changed = endpoints(&["10.1.21.33"], json!({"app": "service-test"}));
    let actions = reconcile(Some(&svc), Some(&changed), &slices);
    assert!(
        matches!(&actions[..], [Action::Update(s)] if s.endpoints[0].addresses == ["10.1.21.99"] || s.endpoints.iter().any(|e| e.addresses == ["10.1.21.33"])),
        "{actions:?}"
    );

    // The Endpoints or Service goes, or the Service gets a selector: the slice goes.
    let delete = [Action::Delete("service-test-abc".into())];
    assert_eq!(reconcile(Some(&svc), None, &slices), delete);
    assert_eq!(reconcile(None, Some(&ep), &slices), delete);
    assert_eq!(reconcile(Some(&service(true)), Some(&ep), &slices), delete);
}

#[test]
fn endpoints_marked_skip_mirror_are_not_mirrored() {
    let ep = endpoints(
        &["10.1.21.32"],
        json!({"endpointslice.kubernetes.io/skip-mirror": "true"}),
    );
    assert_eq!(reconcile(Some(&service(false)), Some(&ep), &[]), []);
}
