use super::*;

fn resource(path: &str) -> ResourceRequest {
    match parse_path(path).unwrap() {
        Target::Resource(r) => r,
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn namespaced_collections_and_objects() {
    let r = resource("/api/v1/namespaces/default/services");
    assert_eq!(
        (r.resource.plural, r.namespace.as_deref(), r.name.as_deref()),
        ("services", Some("default"), None)
    );
    let r = resource("/api/v1/namespaces/default/services/nginx/status");
    assert_eq!(
        (r.name.as_deref(), r.subresource.as_deref()),
        (Some("nginx"), Some("status"))
    );
    let r = resource("/apis/apps/v1/namespaces/demo/deployments/web");
    assert_eq!(
        (r.resource.kind, r.namespace.as_deref()),
        ("Deployment", Some("demo"))
    );
}

#[test]
fn all_namespaces_and_cluster_scoped() {
    let r = resource("/api/v1/services");
    assert_eq!(r.namespace, None);
    let r = resource("/api/v1/namespaces/kube-system");
    assert_eq!(
        (r.resource.kind, r.name.as_deref(), r.namespace),
        ("Namespace", Some("kube-system"), None)
    );
    let r = resource("/api/v1/namespaces/kube-system/status");
    assert_eq!(
        (r.name.as_deref(), r.subresource.as_deref()),
        (Some("kube-system"), Some("status"))
    );
    let r = resource("/api/v1/namespaces");
    assert_eq!((r.resource.kind, r.name), ("Namespace", None));
}

#[test]
fn legacy_watch_prefix() {
    let r = resource("/api/v1/watch/namespaces/default/pods");
    assert!(r.legacy_watch);
    assert_eq!(
        (r.resource.plural, r.namespace.as_deref()),
        ("pods", Some("default"))
    );
}

#[test]
fn discovery_and_unknown_paths() {
    assert_eq!(parse_path("/api").unwrap(), Target::CoreGroup);
    assert_eq!(parse_path("/apis/").unwrap(), Target::Groups);
    assert_eq!(
        parse_path("/apis/apps").unwrap(),
        Target::Group("apps".into())
    );
    assert_eq!(
        parse_path("/apis/networking.k8s.io/v1").unwrap(),
        Target::GroupVersion {
            group: "networking.k8s.io".into(),
            version: "v1".into()
        }
    );
    assert_eq!(
        parse_path("/openapi/v3/api/v1").unwrap(),
        Target::OpenApiV3(Some("api/v1".into()))
    );
    for bad in [
        "/api/v2/pods",
        "/apis/apps/v1/bogus",
        "/apis/nope/v1",
        "/api/v1/services/a/b/c/d",
        "/x",
    ] {
        assert!(parse_path(bad).is_err(), "{bad}");
    }
    assert!(parse_path("/api/v1/namespaces/default/services/x/scale").is_err());
}

#[test]
fn query_parameters() {
    let q = Query::parse(Some("watch=true&labelSelector=app%3Dnginx&limit=500&x="));
    assert!(q.flag("watch"));
    assert_eq!(q.get("labelSelector"), Some("app=nginx"));
    assert_eq!(q.get("x"), None);
}

#[test]
fn pods_have_a_binding_subresource_and_services_do_not() {
    let r = resource("/api/v1/namespaces/default/pods/x/binding");
    assert_eq!(
        (r.resource.kind, r.name.as_deref(), r.subresource.as_deref()),
        ("Pod", Some("x"), Some("binding"))
    );
    assert!(parse_path("/api/v1/namespaces/default/services/x/binding").is_err());
}
