//! The `paths` of one group-version document: for each kind its collection, item, `/status` and
//! all-namespaces paths, with the real server's operation ids, actions and parameters.
//!
//! The one operation kubectl really reads is the item PATCH: its `x-kubernetes-group-version-kind`
//! must be a single object and its parameters must include `fieldValidation`, and it must have no
//! `requestBody` (see the module docs of [`super`]).

use serde_json::{Map, Value, json};

use super::schemas::{self, DELETE_OPTIONS, REF_PREFIX, STATUS};
use crate::registry::ResourceType;

/// The operations of every resource in one group-version, keyed by path template.
pub(super) fn paths(group: &str, version: &str, resources: &[&ResourceType]) -> Map<String, Value> {
    let mut out = Map::new();
    for r in resources {
        let Some(kind_name) = schemas::schema_name(r.group, r.version, r.kind) else {
            continue;
        };
        let Some(list_name) = schemas::list_schema_name(r.group, r.version, r.kind) else {
            continue;
        };
        let ctx = Ctx::new(group, version, r, kind_name, list_name);
        ctx.add_paths(&mut out);
    }
    out
}

/// Everything the operations of one resource share.
struct Ctx<'a> {
    resource: &'a ResourceType,
    prefix: String,
    /// `CoreV1`, `AppsV1`, `NetworkingV1`: the middle of operation ids.
    id_group: String,
    tag: String,
    kind_ref: Value,
    list_ref: Value,
    gvk: Value,
}

impl<'a> Ctx<'a> {
    fn new(
        group: &str,
        version: &str,
        resource: &'a ResourceType,
        kind: String,
        list: String,
    ) -> Self {
        let group_words = if group.is_empty() {
            "Core".to_owned()
        } else {
            // `networking.k8s.io` → `Networking`, `rbac.authorization.k8s.io` → `RbacAuthorization`.
            group
                .trim_end_matches(".k8s.io")
                .split('.')
                .map(capitalize)
                .collect()
        };
        let mut tag = group_words.clone();
        if let Some(first) = tag.get_mut(0..1) {
            first.make_ascii_lowercase();
        }
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        Ctx {
            resource,
            prefix,
            id_group: format!("{group_words}{}", capitalize(version)),
            tag: format!("{tag}_{version}"),
            kind_ref: schema_ref(&kind),
            list_ref: schema_ref(&list),
            gvk: json!({ "group": resource.group, "kind": resource.kind, "version": resource.version }),
        }
    }

    fn add_paths(&self, out: &mut Map<String, Value>) {
        let r = self.resource;
        let kind = r.kind;
        let (scope, base) = if r.namespaced {
            (
                "Namespaced",
                format!("{}/namespaces/{{namespace}}/{}", self.prefix, r.plural),
            )
        } else {
            ("", format!("{}/{}", self.prefix, r.plural))
        };
        let id = |verb: &str, suffix: &str| format!("{verb}{}{scope}{kind}{suffix}", self.id_group);

        let mut collection_params = Vec::new();
        if r.namespaced {
            collection_params.push(namespace_param());
        }
        collection_params.push(pretty_param());
        let mut item_params = vec![name_param(kind)];
        item_params.extend(collection_params.iter().cloned());

        out.insert(
            base.clone(),
            json!({
                "get": self.list_op(&id("list", ""), &format!("list or watch objects of kind {kind}")),
                "parameters": collection_params,
                "post": self.op("post", &id("create", ""), &format!("create a {kind}"),
                    write_params(false), Some(self.kind_ref.clone()),
                    vec![("200", "OK", &self.kind_ref), ("201", "Created", &self.kind_ref),
                         ("202", "Accepted", &self.kind_ref)]),
            }),
        );
        out.insert(
            format!("{base}/{{name}}"),
            json!({
                "delete": self.op("delete", &id("delete", ""), &format!("delete a {kind}"),
                    delete_params(), Some(schema_ref(DELETE_OPTIONS)),
                    vec![("200", "OK", &self.kind_ref), ("202", "Accepted", &schema_ref(STATUS))]),
                "get": self.op("get", &id("read", ""), &format!("read the specified {kind}"),
                    vec![], None, vec![("200", "OK", &self.kind_ref)]),
                "parameters": item_params,
                "patch": self.op("patch", &id("patch", ""), &format!("partially update the specified {kind}"),
                    write_params(true), None,
                    vec![("200", "OK", &self.kind_ref), ("201", "Created", &self.kind_ref)]),
                "put": self.op("put", &id("replace", ""), &format!("replace the specified {kind}"),
                    write_params(false), Some(self.kind_ref.clone()),
                    vec![("200", "OK", &self.kind_ref), ("201", "Created", &self.kind_ref)]),
            }),
        );
        if r.status_subresource {
            out.insert(
                format!("{base}/{{name}}/status"),
                json!({
                    "get": self.op("get", &id("read", "Status"), &format!("read status of the specified {kind}"),
                        vec![], None, vec![("200", "OK", &self.kind_ref)]),
                    "parameters": item_params,
                    "patch": self.op("patch", &id("patch", "Status"),
                        &format!("partially update status of the specified {kind}"),
                        write_params(true), None,
                        vec![("200", "OK", &self.kind_ref), ("201", "Created", &self.kind_ref)]),
                    "put": self.op("put", &id("replace", "Status"), &format!("replace status of the specified {kind}"),
                        write_params(false), Some(self.kind_ref.clone()),
                        vec![("200", "OK", &self.kind_ref), ("201", "Created", &self.kind_ref)]),
                }),
            );
        }
        if r.namespaced {
            out.insert(
                format!("{}/{}", self.prefix, r.plural),
                json!({
                    "get": self.list_op(
                        &format!("list{}{kind}ForAllNamespaces", self.id_group),
                        &format!("list or watch objects of kind {kind}")),
                    "parameters": [pretty_param()],
                }),
            );
        }
    }

    fn list_op(&self, id: &str, description: &str) -> Value {
        let mut op = self.op(
            "list",
            id,
            description,
            list_params(),
            None,
            vec![("200", "OK", &self.list_ref)],
        );
        // A list with `watch=true` streams WatchEvents; the real document says so this way.
        op["responses"]["200"]["content"]["application/json;stream=watch"] =
            json!({ "schema": schema_ref(schemas::WATCH_EVENT) });
        op
    }

    fn op(
        &self,
        action: &str,
        id: &str,
        description: &str,
        params: Vec<Value>,
        body: Option<Value>,
        responses: Vec<(&str, &str, &Value)>,
    ) -> Value {
        let mut op = json!({
            "description": description,
            "operationId": id,
            "responses": responses.into_iter().map(|(code, desc, schema)| {
                (code.to_owned(), json!({
                    "content": { "application/json": { "schema": schema } },
                    "description": desc,
                }))
            }).collect::<Map<String, Value>>(),
            "tags": [self.tag],
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": self.gvk,
        });
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if let Some(schema) = body {
            op["requestBody"] = json!({ "content": { "application/json": { "schema": schema } } });
        }
        op
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

fn param(location: &str, name: &str, ty: &str, description: &str) -> Value {
    let mut p = json!({
        "description": description,
        "in": location,
        "name": name,
        "schema": { "type": ty },
    });
    if location == "path" {
        p["required"] = Value::Bool(true);
    }
    p
}

fn query(name: &str, ty: &str, description: &str) -> Value {
    param("query", name, ty, description)
}

fn namespace_param() -> Value {
    param(
        "path",
        "namespace",
        "string",
        "The namespace of the object.",
    )
}

fn name_param(kind: &str) -> Value {
    param(
        "path",
        "name",
        "string",
        &format!("The name of the {kind}."),
    )
}

fn pretty_param() -> Value {
    query("pretty", "string", "If 'true', the output is indented.")
}

fn dry_run_param() -> Value {
    query(
        "dryRun",
        "string",
        "If present, the request is processed but not persisted. The only valid value is 'All'.",
    )
}

/// The parameters of create, replace and patch; `patch` adds `force` (server-side apply only).
fn write_params(patch: bool) -> Vec<Value> {
    let mut params = vec![
        dry_run_param(),
        query(
            "fieldManager",
            "string",
            "The name of the actor making the change, recorded for field ownership. Required for apply patches.",
        ),
        query(
            "fieldValidation",
            "string",
            "How the server treats unknown or duplicate fields in the request: 'Ignore' drops them, \
             'Warn' drops them and returns a warning for each, 'Strict' fails the request.",
        ),
    ];
    if patch {
        params.insert(
            1,
            query(
                "force",
                "boolean",
                "Server-side apply only: take ownership of fields that conflict with other managers.",
            ),
        );
    }
    params
}

fn delete_params() -> Vec<Value> {
    vec![
        query(
            "gracePeriodSeconds",
            "integer",
            "Seconds to wait before the object is deleted; zero deletes at once.",
        ),
        query(
            "orphanDependents",
            "boolean",
            "Deprecated in favour of propagationPolicy: whether dependents are orphaned.",
        ),
        query(
            "propagationPolicy",
            "string",
            "How dependents are garbage collected: 'Orphan', 'Background' or 'Foreground'.",
        ),
        dry_run_param(),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "boolean",
            "Ask for BOOKMARK events in a watch; the server may send them at its discretion.",
        ),
        query(
            "continue",
            "string",
            "The continue token from a previous paged list response, to fetch the next page.",
        ),
        query(
            "fieldSelector",
            "string",
            "Only return objects whose fields match this selector. Defaults to everything.",
        ),
        query(
            "labelSelector",
            "string",
            "Only return objects whose labels match this selector. Defaults to everything.",
        ),
        query(
            "limit",
            "integer",
            "The maximum number of objects to return in one page; the response's continue token fetches the rest.",
        ),
        query(
            "resourceVersion",
            "string",
            "For a list, the resource version to serve from; for a watch, the version after which changes are sent.",
        ),
        query(
            "resourceVersionMatch",
            "string",
            "How resourceVersion is applied to a list: 'Exact' or 'NotOlderThan'.",
        ),
        query(
            "sendInitialEvents",
            "boolean",
            "For a watch: start with synthetic ADDED events for the current objects, then a BOOKMARK.",
        ),
        query(
            "timeoutSeconds",
            "integer",
            "End the list or watch call after this many seconds.",
        ),
        query(
            "watch",
            "boolean",
            "Stream changes to the matching objects (added, modified, deleted) instead of listing them.",
        ),
    ]
}
