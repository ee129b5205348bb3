//! Every kind the cluster serves, found by discovery, so that the namespace and garbage collectors
//! work against any API server (pontifex's or a real cluster's) without a compiled-in list.

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};

use crate::Error;

/// A listable, deletable resource.
#[derive(Clone, Debug)]
pub(crate) struct Resource {
    pub(crate) ar: ApiResource,
    pub(crate) namespaced: bool,
}

/// The preferred version of every listable and deletable resource.
pub(crate) async fn resources(client: &kube::Client) -> Result<Vec<Resource>, Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if usable(&caps) {
                out.push(Resource {
                    namespaced: caps.scope == Scope::Namespaced,
                    ar,
                });
            }
        }
    }
    Ok(out)
}

fn usable(caps: &ApiCapabilities) -> bool {
    caps.supports_operation(verbs::LIST) && caps.supports_operation(verbs::DELETE)
}

/// The API of `r`, in `namespace` when it is namespaced and one is given, else cluster-wide.
pub(crate) fn api(
    client: &kube::Client,
    r: &Resource,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) if r.namespaced => Api::namespaced_with(client.clone(), ns, &r.ar),
        _ => Api::all_with(client.clone(), &r.ar),
    }
}

/// Every object of `r` (in `namespace`, if given).
pub(crate) async fn list(
    client: &kube::Client,
    r: &Resource,
    namespace: Option<&str>,
) -> Result<Vec<DynamicObject>, Error> {
    Ok(api(client, r, namespace)
        .list(&ListParams::default())
        .await?
        .items)
}

/// Whether a kube error is the API server saying 404 or 409 (both mean "someone else got there").
pub(crate) fn is_gone_or_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}
