use super::*;

#[test]
fn paths_print_like_kubernetes() {
    let p = Path::new("spec").child("ports").index(0).child("nodePort");
    assert_eq!(p.as_str(), "spec.ports[0].nodePort");
    assert_eq!(
        Path::new("metadata").child("labels").key("app").as_str(),
        "metadata.labels[app]"
    );
}

#[test]
fn messages_match_kubectl_output() {
    let p = Path::new("spec").child("ports").index(0).child("port");
    let e = FieldError::invalid(p, 0, "must be between 1 and 65535, inclusive");
    assert_eq!(
        e.to_string(),
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
    );
    assert_eq!(
        FieldError::required(Path::new("spec").child("ports"), "").to_string(),
        "spec.ports: Required value"
    );
    let ns = FieldError::not_supported(
        Path::new("spec").child("type"),
        "Bogus",
        &["ClusterIP", "NodePort"],
    );
    assert_eq!(
        ns.to_string(),
        "spec.type: Unsupported value: \"Bogus\": supported values: \"ClusterIP\", \"NodePort\""
    );
    let ips = FieldError::invalid(Path::new("spec").child("clusterIPs"), vec!["10.0.0.2"], "x");
    assert_eq!(
        ips.cause_message(),
        "Invalid value: []string{\"10.0.0.2\"}: x"
    );
}
