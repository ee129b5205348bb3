use std::collections::BTreeMap;

use super::*;

#[test]
fn name_formats() {
    assert!(is_dns1123_label("my-name").is_empty());
    assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
    assert_eq!(
        is_dns1123_label(&"a".repeat(64)),
        vec!["must be no more than 63 characters"]
    );
    assert!(is_dns1123_subdomain("a.b-c.d").is_empty());
    assert!(!is_dns1123_subdomain("a..b").is_empty());
    assert!(!is_dns1123_subdomain("-a").is_empty());
    assert!(is_dns1035_label("abc-1").is_empty());
    assert!(!is_dns1035_label("1abc").is_empty());
    assert!(is_wildcard_dns1123_subdomain("*.foo.com").is_empty());
    assert!(!is_wildcard_dns1123_subdomain("*").is_empty());
    assert!(!is_wildcard_dns1123_subdomain("f*.foo.com").is_empty());
}

#[test]
fn qualified_names_and_label_values() {
    assert!(is_qualified_name("app.kubernetes.io/name").is_empty());
    assert!(is_qualified_name("MyName").is_empty());
    assert_eq!(
        is_qualified_name("/x"),
        vec!["prefix part must be non-empty"]
    );
    assert_eq!(
        is_qualified_name("a/b/c"),
        vec![
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    );
    assert_eq!(
        is_qualified_name("x/"),
        vec![
            "name part must be non-empty",
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        ]
    );
    assert!(is_valid_label_value("").is_empty());
    assert!(!is_valid_label_value("-x").is_empty());
}

#[test]
fn metadata_labels_and_annotations() {
    let mut labels = BTreeMap::new();
    labels.insert("bad key!".to_owned(), "ok".to_owned());
    let meta = ObjectMeta {
        name: Some("x".into()),
        labels: Some(labels),
        ..Default::default()
    };
    let errs = object_meta(&meta, NameFormat::Dns1123Subdomain);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .to_string()
            .starts_with("metadata.labels: Invalid value: \"bad key!\": name part must consist")
    );

    // Annotations: keys are case-insensitive; the total is capped at 256 KiB.
    let mut ann = BTreeMap::new();
    ann.insert(
        "Example.com/Key".to_owned(),
        "v".repeat(TOTAL_ANNOTATION_SIZE),
    );
    let errs = annotations(Some(&ann), &Path::new("metadata").child("annotations"));
    assert_eq!(
        errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
    );
    ann.insert("example.com/key".to_owned(), String::new());
    ann.remove("Example.com/Key");
    assert!(annotations(Some(&ann), &Path::new("metadata").child("annotations")).is_empty());
}

#[test]
fn metadata_update_immutables() {
    let old = ObjectMeta {
        name: Some("a".into()),
        namespace: Some("default".into()),
        uid: Some("1".into()),
        ..Default::default()
    };
    let new = ObjectMeta {
        uid: Some("2".into()),
        ..old.clone()
    };
    let errs: Vec<String> = object_meta_update(&new, &old)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        vec!["metadata.uid: Invalid value: \"2\": field is immutable"]
    );
}

#[test]
fn ips_and_cidrs() {
    assert!(parse_ip_sloppy("010.001.002.003").is_some());
    assert!(parse_ip_sloppy("256.1.1.1").is_none());
    assert!(parse_cidr_sloppy("10.0.0.1/8").is_some());
    assert!(parse_cidr_sloppy("10.0.0.0/33").is_none());
    assert!(parse_cidr_sloppy("10.0.0.0").is_none());
    assert!(non_special_ip("10.0.0.1", &Path::new("x")).is_empty());
    assert_eq!(non_special_ip("fe80::1", &Path::new("x")).len(), 1);
    assert_eq!(non_special_ip("224.0.0.5", &Path::new("x")).len(), 1);
    assert_eq!(non_special_ip("::1", &Path::new("x")).len(), 1);
}

#[test]
fn port_names() {
    assert!(is_valid_port_name("http").is_empty());
    assert_eq!(
        is_valid_port_name("-a--b-"),
        vec![
            "must not contain consecutive hyphens",
            "must not begin or end with a hyphen"
        ]
    );
}

#[test]
fn go_literals() {
    let sel = LabelSelector {
        match_labels: Some(BTreeMap::from([("a".to_owned(), "b".to_owned())])),
        match_expressions: None,
    };
    assert_eq!(
        go_label_selector(Some(&sel)),
        "v1.LabelSelector{MatchLabels:map[string]string{\"a\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
    );
}
