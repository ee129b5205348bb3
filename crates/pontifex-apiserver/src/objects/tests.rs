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
