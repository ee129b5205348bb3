use serde_json::json;

use super::*;

#[test]
fn unchanged_ignores_field_order_and_resource_version() {
    // As stored after allocation added `nodePort` behind the defaulted fields.
    let stored = br#"{"metadata":{"name":"nginx"},"spec":{"ports":[{"port":443,"protocol":"TCP","nodePort":31517}]}}"#;
    let same = json!({"metadata": {"name": "nginx", "resourceVersion": "12"},
        "spec": {"ports": [{"nodePort": 31517, "port": 443, "protocol": "TCP"}]}});
    assert!(unchanged(&same, stored));
    assert_ne!(encode(&same).as_ref(), stored.as_slice(), "the byte forms differ; only the meaning is the same");

    let changed = json!({"metadata": {"name": "nginx"}, "spec": {"ports": [{"nodePort": 31518, "port": 443, "protocol": "TCP"}]}});
    assert!(!unchanged(&changed, stored));
    // List order is meaning: reordered ports are a change.
    let two = br#"{"spec":{"ports":[{"port":1},{"port":2}]}}"#;
    assert!(!unchanged(&json!({"spec": {"ports": [{"port": 2}, {"port": 1}]}}), two));
}
