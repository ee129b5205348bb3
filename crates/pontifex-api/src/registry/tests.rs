use serde_json::json;

use super::*;

#[test]
fn every_kind_is_found_by_path_and_by_kind() {
    for r in RESOURCES {
        assert!(std::ptr::eq(
            lookup(r.group, r.version, r.plural).unwrap(),
            r
        ));
        assert!(std::ptr::eq(by_kind(&r.api_version(), r.kind).unwrap(), r));
    }
    assert_eq!(lookup("", "v1", "services").unwrap().kind, "Service");
    assert_eq!(groups()[0], ("", "v1"));
}

#[test]
fn strict_decoding_names_unknown_fields_with_kubernetes_paths() {
    let svc = lookup("", "v1", "services").unwrap();
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
        "spec": {"bogus": 1, "ports": [{"port": 80, "extra": true}]}});
    let d = svc.strategy.decode(&body).unwrap();
    assert_eq!(
        d.unknown_fields,
        vec!["spec.bogus".to_owned(), "spec.ports[0].extra".to_owned()]
    );
    assert!(d.object["spec"].get("bogus").is_none());
}

#[test]
fn type_errors_are_bad_requests() {
    let svc = lookup("", "v1", "services").unwrap();
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
        "spec": {"ports": [{"port": "eighty"}]}});
    let err = svc.strategy.decode(&body).unwrap_err();
    assert_eq!(err.code(), 400);
    assert!(
        err.to_string()
            .starts_with("Service in version \"v1\" cannot be handled as a Service:"),
        "{err}"
    );
}

#[test]
fn field_selector_labels() {
    let pods = lookup("", "v1", "pods").unwrap();
    let pod = json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"nodeName": "n1"}});
    assert_eq!(
        pods.field_value(&pod, "spec.nodeName").as_deref(),
        Some("n1")
    );
    assert_eq!(
        pods.field_value(&pod, "metadata.namespace").as_deref(),
        Some("ns")
    );
    assert_eq!(pods.field_value(&pod, "status.phase").as_deref(), Some(""));
    assert_eq!(pods.field_value(&pod, "spec.bogus"), None);
}
