//! Discovery documents, built from the registry: the legacy forms (`APIVersions`, `APIGroupList`,
//! `APIGroup`, `APIResourceList`) and aggregated discovery (`apidiscovery.k8s.io` v2 and v2beta1),
//! chosen by the `Accept` header exactly as the real server negotiates (an old kubectl that asks only
//! for v2beta1 must not get v2).

use pontifex_api::registry::{self, RESOURCES, ResourceType};
use serde_json::{Value, json};

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Which aggregated discovery version the client accepts, if any (v2 preferred).
pub(crate) fn aggregated_version(accept: &str) -> Option<&'static str> {
    let offers = |v: &str| {
        accept.split(',').any(|part| {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            params.first() == Some(&"application/json")
                && params.contains(&"g=apidiscovery.k8s.io")
                && params.contains(&v)
                && params.contains(&"as=APIGroupDiscoveryList")
        })
    };
    if offers("v=v2") {
        Some("v2")
    } else if offers("v=v2beta1") {
        Some("v2beta1")
    } else {
        None
    }
}

pub(crate) fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

/// A subresource: its name, the (group, version, kind) it answers with, and its verbs.
struct Subresource {
    name: &'static str,
    kind: (&'static str, &'static str, &'static str),
    verbs: &'static [&'static str],
}

fn subresources(r: &ResourceType) -> Vec<Subresource> {
    let own = (r.group, r.version, r.kind);
    let mut out = Vec::new();
    if r.status_subresource {
        out.push(Subresource {
            name: "status",
            kind: own,
            verbs: &["get", "patch", "update"],
        });
    }
    if r.kind == "Namespace" {
        out.push(Subresource {
            name: "finalize",
            kind: own,
            verbs: &["update"],
        });
    }
    if r.kind == "Pod" && r.group.is_empty() {
        out.push(Subresource {
            name: "binding",
            kind: ("", "v1", "Binding"),
            verbs: &["create"],
        });
        out.push(Subresource {
            name: "log",
            kind: ("", "v1", "Pod"),
            verbs: &["get"],
        });
    }
    if r.scale_subresource() {
        // Scale speaks autoscaling/v1, whatever its parent's group: the scale client finds it here.
        out.push(Subresource {
            name: "scale",
            kind: ("autoscaling", "v1", "Scale"),
            verbs: &["get", "patch", "update"],
        });
    }
    out
}

fn resource_entry(r: &ResourceType) -> Value {
    let kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let subs: Vec<Value> = subresources(r)
        .into_iter()
        .map(|s| {
            let (group, version, kind) = s.kind;
            json!({"subresource": s.name, "responseKind": {"group": group, "version": version, "kind": kind}, "verbs": s.verbs})
        })
        .collect();
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": kind,
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !subs.is_empty() {
        entry["subresources"] = json!(subs);
    }
    entry
}

/// `/api` (core = true) or `/apis` (the named groups) as an `APIGroupDiscoveryList`.
pub(crate) fn aggregated(core: bool, version: &str) -> Value {
    let items: Vec<Value> = registry::groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(group, v)| {
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|r| r.group == group && r.version == v)
                .map(resource_entry)
                .collect();
            json!({
                "metadata": {"name": group, "creationTimestamp": null},
                "versions": [{"version": v, "resources": resources, "freshness": "Current"}],
            })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// `/api` in the legacy form.
pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv], "preferredVersion": gv})
}

/// `/apis` in the legacy form.
pub(crate) fn group_list() -> Value {
    let groups: Vec<Value> = registry::groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| group_entry(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub(crate) fn group(name: &str) -> Option<Value> {
    let (g, v) = registry::groups().into_iter().find(|(g, _)| *g == name)?;
    let mut doc = group_entry(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `/api/v1` or `/apis/{group}/{version}`: an `APIResourceList`.
pub(crate) fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for s in subresources(r) {
            let (sub_group, sub_version, kind) = s.kind;
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": s.verbs,
            });
            if (sub_group, sub_version) != (r.group, r.version) {
                entry["group"] = json!(sub_group);
                entry["version"] = json!(sub_version);
            }
            resources.push(entry);
        }
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_accept() {
        let kubectl_132 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(kubectl_132), Some("v2"));
        let kubectl_129 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(kubectl_129), Some("v2beta1"));
        assert_eq!(aggregated_version("application/json, */*"), None);
    }

    #[test]
    fn core_and_named_groups_are_split() {
        let core = aggregated(true, "v2");
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        let svc = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "services")
            .unwrap()
            .clone();
        assert_eq!(svc["shortNames"], json!(["svc"]));
        assert_eq!(svc["categories"], json!(["all"]));
        assert_eq!(svc["scope"], "Namespaced");
        assert_eq!(svc["subresources"][0]["subresource"], "status");
        let named = aggregated(false, "v2");
        assert!(
            named["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["metadata"]["name"] != "")
        );
        let legacy = resource_list("", "v1");
        assert!(
            legacy["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "services/status")
        );
        let binding = legacy["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/binding")
            .expect("pods/binding is discoverable");
        assert_eq!(binding["kind"], "Binding");
        assert_eq!(binding["verbs"], json!(["create"]));
    }
}
