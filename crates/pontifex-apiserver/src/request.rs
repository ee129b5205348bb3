//! Parsing a request's path and query into what it asks for — a pure function, like kube-apiserver's
//! `RequestInfoFactory`. The Kubernetes URL grammar (`/api/v1` vs `/apis/{group}/{version}`, an optional
//! `namespaces/{ns}`, `{resource}/{name}/{subresource}`, the legacy `/watch/` prefix) does not fit route
//! templates, so it is parsed here and nowhere else.

use std::collections::HashMap;

use pontifex_api::registry::{self, ResourceType};
use pontifex_api::status::ApiError;

/// What a request addresses.
#[derive(Debug, PartialEq)]
pub(crate) enum Target {
    Version,
    Health,
    /// `/api`: the core group's versions.
    CoreGroup,
    /// `/apis`: every named group.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`: the resource list of a group-version.
    GroupVersion {
        group: String,
        version: String,
    },
    /// `/openapi/v3` (None) or `/openapi/v3/{gv-path}`.
    OpenApiV3(Option<String>),
    /// `/openapi/v2`: deliberately not served (kubectl asks for protobuf there).
    OpenApiV2,
    /// A resource collection or object.
    Resource(ResourceRequest),
}

impl PartialEq for ResourceRequest {
    /// Registry entries are static: the same entry is the same resource.
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.resource, other.resource)
            && (
                &self.namespace,
                &self.name,
                &self.subresource,
                self.legacy_watch,
            ) == (
                &other.namespace,
                &other.name,
                &other.subresource,
                other.legacy_watch,
            )
    }
}

/// A request on a resource: which one, where, and with which verb.
#[derive(Debug)]
pub(crate) struct ResourceRequest {
    pub(crate) resource: &'static ResourceType,
    /// The namespace from the path; None for cluster-scoped kinds and all-namespaces requests.
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
    /// The path used the legacy `/watch/` prefix.
    pub(crate) legacy_watch: bool,
}

/// Parse a URL path (already percent-decoded per segment) into a target.
pub(crate) fn parse_path(path: &str) -> Result<Target, ApiError> {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["version"] => Ok(Target::Version),
        ["healthz" | "livez" | "readyz", ..] => Ok(Target::Health),
        ["api"] => Ok(Target::CoreGroup),
        ["apis"] => Ok(Target::Groups),
        ["openapi", "v3"] => Ok(Target::OpenApiV3(None)),
        ["openapi", "v3", rest @ ..] => Ok(Target::OpenApiV3(Some(rest.join("/")))),
        ["openapi", "v2"] | ["swagger.json"] => Ok(Target::OpenApiV2),
        ["api", version, rest @ ..] => parse_group_version("", version, rest),
        ["apis", group] => {
            if registry::groups().iter().any(|(g, _)| g == group) {
                Ok(Target::Group((*group).to_owned()))
            } else {
                Err(ApiError::NoSuchResource)
            }
        }
        ["apis", group, version, rest @ ..] => parse_group_version(group, version, rest),
        _ => Err(ApiError::NoSuchResource),
    }
}

fn parse_group_version(group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    if !registry::groups()
        .iter()
        .any(|(g, v)| *g == group && *v == version)
    {
        return Err(ApiError::NoSuchResource);
    }
    if rest.is_empty() {
        return Ok(Target::GroupVersion {
            group: group.to_owned(),
            version: version.to_owned(),
        });
    }
    let (legacy_watch, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    // `namespaces/{ns}/{resource}...` addresses a namespaced collection; `namespaces/{name}` alone (or
    // with a subresource such as `status`/`finalize`) is the Namespace object itself.
    let (namespace, rest): (Option<String>, &[&str]) = match rest {
        ["namespaces", ns, resource, ..]
            if lookup(group, version, resource).is_some_and(|r| r.namespaced) =>
        {
            (Some((*ns).to_owned()), &rest[2..])
        }
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::NoSuchResource),
    };
    let resource = lookup(group, version, plural).ok_or(ApiError::NoSuchResource)?;
    if let Some(sub) = subresource {
        let known = (sub == "status" && resource.status_subresource)
            || (sub == "finalize" && resource.kind == "Namespace")
            || (sub == "binding" && resource.kind == "Pod" && resource.group.is_empty())
            || (sub == "log" && resource.kind == "Pod" && resource.group.is_empty())
            || (sub == "scale" && resource.scale_subresource());
        if !known {
            return Err(ApiError::NoSuchResource);
        }
    }
    Ok(Target::Resource(ResourceRequest {
        resource,
        namespace: if resource.namespaced { namespace } else { None },
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
        legacy_watch,
    }))
}

fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    registry::lookup(group, version, plural)
}

/// The query parameters, decoded. Unknown parameters are kept but ignored, as kube-apiserver does.
#[derive(Debug, Default)]
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    pub(crate) fn parse(query: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Query(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

#[cfg(test)]
mod tests;
