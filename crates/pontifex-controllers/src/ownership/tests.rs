use super::*;
use serde_json::json;

fn sel(v: serde_json::Value) -> LabelSelector {
    serde_json::from_value(v).unwrap()
}

#[test]
fn selectors_match_labels_and_expressions() {
    let labels: BTreeMap<String, String> =
        [("app".into(), "web".into()), ("tier".into(), "fe".into())].into();
    assert!(selects(
        Some(&sel(json!({"matchLabels": {"app": "web"}}))),
        &labels
    ));
    assert!(!selects(
        Some(&sel(json!({"matchLabels": {"app": "db"}}))),
        &labels
    ));
    let expr = |op: &str, values: serde_json::Value| {
        sel(json!({"matchExpressions": [{"key": "tier", "operator": op, "values": values}]}))
    };
    assert!(selects(Some(&expr("In", json!(["fe", "be"]))), &labels));
    assert!(!selects(Some(&expr("NotIn", json!(["fe"]))), &labels));
    assert!(selects(Some(&expr("Exists", json!([]))), &labels));
    assert!(!selects(Some(&expr("DoesNotExist", json!([]))), &labels));
    assert!(!selects(None, &labels), "no selector selects nothing");
    assert!(selects_everything(Some(&sel(json!({})))));
}
