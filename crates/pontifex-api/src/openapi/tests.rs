use serde_json::Value;

use super::*;

const SERVED: &[&str] = &[
    "api/v1",
    "apis/apps/v1",
    "apis/discovery.k8s.io/v1",
    "apis/networking.k8s.io/v1",
    "apis/coordination.k8s.io/v1",
];

fn parsed(gv_path: &str) -> Value {
    let doc = group_version_document(gv_path).unwrap_or_else(|| panic!("{gv_path} not served"));
    serde_json::from_slice(doc.json()).unwrap()
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.pointer(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("no schema {name}"))
}

/// Follow `{"$ref"}` or `{"allOf":[{"$ref"}]}` to the named schema.
fn deref<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    let r = s
        .get("$ref")
        .or_else(|| s.pointer("/allOf/0/$ref"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("not a reference: {s}"));
    schema(doc, r.strip_prefix(REF).unwrap())
}

const REF: &str = "#/components/schemas/";

#[test]
fn index_lists_exactly_the_served_group_versions_with_hashed_urls() {
    let index = index();
    let paths = index["paths"].as_object().unwrap();
    let mut listed: Vec<&str> = paths.keys().map(String::as_str).collect();
    listed.sort_unstable();
    let mut want = SERVED.to_vec();
    want.sort_unstable();
    assert_eq!(listed, want);
    for (gv, entry) in paths {
        let doc = group_version_document(gv).unwrap();
        let url = entry["serverRelativeURL"].as_str().unwrap();
        assert_eq!(url, format!("/openapi/v3/{gv}?hash={}", doc.hash()));
        assert_eq!(doc.hash().len(), 16);
        assert!(doc.hash().chars().all(|c| c.is_ascii_hexdigit()));
    }
    assert!(group_version_document("apis/batch/v1").is_none());
    assert!(group_version_document("api/v2").is_none());
    assert!(group_version_document("").is_none());
}

#[test]
fn every_registry_kind_has_a_schema() {
    for r in RESOURCES {
        let name = schemas::schema_name(r.group, r.version, r.kind)
            .unwrap_or_else(|| panic!("{} has no schema entry", r.kind));
        let doc = parsed(&gv_path(r.group, r.version));
        let s = schema(&doc, &name);
        assert_eq!(
            s["x-kubernetes-group-version-kind"],
            serde_json::json!([{"group": r.group, "kind": r.kind, "version": r.version}]),
            "{name}"
        );
        let list = schema(&doc, &format!("{name}List"));
        assert_eq!(
            list["x-kubernetes-group-version-kind"][0]["kind"],
            format!("{}List", r.kind)
        );
        assert!(kind_schema(r.group, r.version, r.kind).is_some());
    }
    assert!(kind_schema("", "v1", "ReplicaSet").is_none());
}

/// kubectl's `--validate=strict` check (cli-runtime's QueryParamVerifierV3): one PATCH per kind
/// with the object-form GVK and a `fieldValidation` parameter; no PATCH may have a requestBody.
#[test]
fn each_kind_has_a_patch_with_object_gvk_and_field_validation_and_no_request_body() {
    for gv in SERVED {
        let doc = parsed(gv);
        let kinds: Vec<&registry::ResourceType> = RESOURCES
            .iter()
            .filter(|r| gv_path(r.group, r.version) == *gv)
            .collect();
        assert!(!kinds.is_empty());
        for r in kinds {
            let item = if r.namespaced {
                format!("/{gv}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
            } else {
                format!("/{gv}/{}/{{name}}", r.plural)
            };
            let patch = &doc["paths"][&item]["patch"];
            assert_eq!(
                patch["x-kubernetes-group-version-kind"],
                serde_json::json!({"group": r.group, "kind": r.kind, "version": r.version}),
                "{item}"
            );
            assert_eq!(patch["x-kubernetes-action"], "patch");
            let names: Vec<&str> = patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for want in ["fieldValidation", "fieldManager", "dryRun", "force"] {
                assert!(names.contains(&want), "{item} lacks {want}");
            }
            for verb in ["get", "put", "delete"] {
                let op = &doc["paths"][&item][verb];
                assert!(
                    op["x-kubernetes-group-version-kind"].is_object(),
                    "{item} {verb}"
                );
                assert_eq!(op["x-kubernetes-action"], verb);
            }
            let collection = item.trim_end_matches("/{name}");
            assert_eq!(
                doc["paths"][collection]["get"]["x-kubernetes-action"],
                "list"
            );
            assert_eq!(
                doc["paths"][collection]["post"]["x-kubernetes-action"],
                "post"
            );
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            if let Some(patch) = item.get("patch") {
                assert!(
                    patch.get("requestBody").is_none(),
                    "{path} PATCH has a requestBody"
                );
            }
        }
    }
}

#[test]
fn real_paths_and_operation_ids() {
    let core = parsed("api/v1");
    let paths = core["paths"].as_object().unwrap();
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/services/{name}"]["patch"]["operationId"],
        "patchCoreV1NamespacedService"
    );
    assert_eq!(
        paths["/api/v1/services"]["get"]["operationId"],
        "listCoreV1ServiceForAllNamespaces"
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/services/{name}/status"]["put"]["operationId"],
        "replaceCoreV1NamespacedServiceStatus"
    );
    assert_eq!(
        paths["/api/v1/namespaces/{name}"]["get"]["operationId"],
        "readCoreV1Namespace"
    );
    // No status subresource, no /status path; cluster-scoped kinds have no all-namespaces path.
    assert!(!paths.contains_key("/api/v1/namespaces/{namespace}/configmaps/{name}/status"));
    assert!(!paths.contains_key("/api/v1/namespaces/{namespace}/namespaces"));
    let net = parsed("apis/networking.k8s.io/v1");
    let op = &net["paths"]["/apis/networking.k8s.io/v1/ingressclasses/{name}"]["get"];
    assert_eq!(op["operationId"], "readNetworkingV1IngressClass");
    assert_eq!(op["tags"][0], "networking_v1");
}

#[test]
fn service_spec_ports_resolves_to_service_port_with_integer_port() {
    let doc = parsed("api/v1");
    let svc = schema(&doc, "io.k8s.api.core.v1.Service");
    assert!(
        svc.get("required").is_none(),
        "metadata is not required by the API"
    );
    let meta = &svc["properties"]["metadata"];
    assert!(meta["description"].is_string());
    assert_eq!(
        meta["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(
        meta.get("$ref").is_none(),
        "a described reference is wrapped in allOf"
    );
    let spec = deref(&doc, &svc["properties"]["spec"]);
    assert_eq!(spec["type"], "object");
    assert_eq!(
        spec["properties"]["type"]["enum"],
        serde_json::json!(["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"])
    );
    let ports = &spec["properties"]["ports"];
    assert_eq!(ports["type"], "array");
    assert!(ports["description"].as_str().unwrap().contains("ports"));
    let port = deref(&doc, &ports["items"]);
    assert_eq!(port["properties"]["port"]["type"], "integer");
    assert_eq!(port["properties"]["port"]["format"], "int32");
    assert_eq!(port["required"], serde_json::json!(["port"]));
    assert_eq!(
        port["properties"]["protocol"]["enum"],
        serde_json::json!(["SCTP", "TCP", "UDP"])
    );
    let target = deref(&doc, &port["properties"]["targetPort"]);
    assert_eq!(target["x-kubernetes-int-or-string"], true);
}

#[test]
fn deployment_reaches_the_pod_template_containers() {
    let doc = parsed("apis/apps/v1");
    let d = schema(&doc, "io.k8s.api.apps.v1.Deployment");
    let spec = deref(&doc, &d["properties"]["spec"]);
    assert_eq!(
        spec["required"],
        serde_json::json!(["selector", "template"])
    );
    let template = deref(&doc, &spec["properties"]["template"]);
    let pod_spec = deref(&doc, &template["properties"]["spec"]);
    let container = deref(&doc, &pod_spec["properties"]["containers"]["items"]);
    assert_eq!(container["properties"]["image"]["type"], "string");
    let strategy = deref(&doc, &spec["properties"]["strategy"]);
    assert_eq!(
        strategy["properties"]["type"]["enum"],
        serde_json::json!(["Recreate", "RollingUpdate"])
    );
}

#[test]
fn every_enum_entry_lands_on_a_string_field() {
    for (schema_name, property, values) in schemas::ENUMS {
        let hit = documents().iter().any(|d| {
            let doc: Value = serde_json::from_slice(d.json()).unwrap();
            let Some(prop) = doc.pointer(&format!(
                "/components/schemas/{schema_name}/properties/{property}"
            )) else {
                return false;
            };
            let target = if prop["type"] == "array" {
                &prop["items"]
            } else {
                prop
            };
            target["type"] == "string" && target["enum"] == serde_json::json!(values)
        });
        assert!(hit, "{schema_name}.{property} not found or not a string");
    }
}

fn walk_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "$ref" {
                    // kubectl explain ignores a $ref's siblings, so the real server wraps a
                    // described reference in allOf; so must we.
                    assert_eq!(map.len(), 1, "$ref with siblings: {v}");
                    out.push(child.as_str().expect("$ref is a string"));
                } else {
                    walk_refs(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|c| walk_refs(c, out)),
        _ => {}
    }
}

#[test]
fn every_ref_resolves_inside_its_document_and_refs_have_no_siblings() {
    for d in documents() {
        let doc: Value = serde_json::from_slice(d.json()).unwrap();
        let mut refs = Vec::new();
        walk_refs(&doc, &mut refs);
        assert!(refs.len() > 10, "{}: only {} refs", d.gv_path(), refs.len());
        for r in refs {
            let name = r
                .strip_prefix(REF)
                .unwrap_or_else(|| panic!("{}: foreign ref {r}", d.gv_path()));
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{}: dangling {r}",
                d.gv_path()
            );
        }
    }
}

#[test]
fn documents_are_deterministic_and_sorted() {
    let a = build_documents();
    let b = build_documents();
    assert_eq!(a, b);
    assert_eq!(a, documents());
    for d in &a {
        // Keys are sorted at the top level (and recursively, by construction).
        let doc: Value = serde_json::from_slice(d.json()).unwrap();
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["components", "info", "openapi", "paths", "security"]);
        // Hashes differ between documents (they are content hashes).
        assert_eq!(d.hash(), format!("{:016X}", fnv1a64(d.json())));
    }
    let mut hashes: Vec<&str> = a.iter().map(GroupVersionDocument::hash).collect();
    hashes.dedup();
    assert_eq!(hashes.len(), a.len());
}

#[test]
fn fnv1a64_matches_reference_vectors() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn sizes() {
    for d in documents() {
        eprintln!(
            "{:32} {:>8} bytes  hash {}",
            d.gv_path(),
            d.json().len(),
            d.hash()
        );
    }
}
