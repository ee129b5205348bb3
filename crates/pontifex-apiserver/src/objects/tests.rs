use serde_json::json;

use super::*;

#[test]
fn same_ignores_field_order_and_resource_version() {
    // As stored after allocation added `nodePort` behind the defaulted fields.
    let stored = json!({"metadata": {"name": "nginx", "resourceVersion": "11"},
        "spec": {"ports": [{"port": 443, "protocol": "TCP", "nodePort": 31517}]}});
    let again = json!({"metadata": {"name": "nginx", "resourceVersion": "12"},
        "spec": {"ports": [{"nodePort": 31517, "port": 443, "protocol": "TCP"}]}});
    assert!(same(&again, &stored));
    assert_ne!(
        encode(&again),
        encode(&stored),
        "the byte forms differ; only the meaning is the same"
    );

    let changed = json!({"metadata": {"name": "nginx"}, "spec": {"ports": [{"nodePort": 31518, "port": 443, "protocol": "TCP"}]}});
    assert!(!same(&changed, &stored));
    // List order is meaning: reordered ports are a change.
    let two = json!({"spec": {"ports": [{"port": 1}, {"port": 2}]}});
    assert!(!same(
        &json!({"spec": {"ports": [{"port": 2}, {"port": 1}]}}),
        &two
    ));
}

fn kv(value: &Value, rev: i64) -> KeyValue {
    KeyValue {
        key: "/k".into(),
        value: encode(value),
        create_revision: 1,
        mod_revision: rev,
    }
}

#[test]
fn stamping_the_stored_bytes_equals_decoding_them() {
    let cases = [
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "\"metadata\":{"}},
               "data": {"metadata": "{\"metadata\":{}}"}}),
        // Top-level metadata after a nested one (a Deployment's template comes first here).
        json!({"spec": {"template": {"metadata": {"labels": {"app": "x"}}}}, "metadata": {"name": "d"}}),
        json!({"metadata": {}, "kind": "Namespace"}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s\\\"q"}, "data": {"k": "dg=="}}),
    ];
    for (i, obj) in cases.iter().enumerate() {
        let stored = kv(obj, 40 + i as i64);
        let mut out = Vec::new();
        write_stamped(&stored, &mut out).unwrap();
        let spliced: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(spliced, decode(&stored).unwrap(), "case {i}");
        assert_eq!(spliced["metadata"]["resourceVersion"], (40 + i).to_string());
    }
}

#[test]
fn objects_without_metadata_fall_back_to_decoding() {
    let stored = kv(&json!({"kind": "X", "spec": {"metadata": {"a": 1}}}), 7);
    let mut out = Vec::new();
    write_stamped(&stored, &mut out).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v, decode(&stored).unwrap());
    assert!(v["spec"]["metadata"].get("resourceVersion").is_none());
}

#[test]
fn stored_metadata_carries_the_resource_version() {
    let stored = kv(
        &json!({"kind": "Service", "metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {}}),
        9,
    );
    assert_eq!(
        stored_metadata(&stored).unwrap(),
        json!({"name": "a", "labels": {"x": "y"}, "resourceVersion": "9"})
    );
}
