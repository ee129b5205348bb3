//! Cross-node pod routes, kept in step with the Node list: every Node with a podCIDR and an
//! InternalIP gets a route (host-gw) or VXLAN entries on this node.

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use pontifex_node::net::routes::{self, NodeRoute};
use tokio_util::sync::CancellationToken;

use crate::Backend;

/// The routes the Node list asks for: one per node with an InternalIP and an IPv4 podCIDR, by name.
fn node_routes<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Vec<NodeRoute> {
    let mut out: Vec<NodeRoute> = nodes
        .into_iter()
        .filter_map(|n| {
            let ip = n
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .parse()
                .ok()?;
            let cidr = n.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok()?;
            Some(NodeRoute {
                name: n.metadata.name.clone()?,
                node_ip: ip,
                pod_cidr: cidr,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Keep the pod routes of namespace `netns` (`None`: this one) in step with the Node list until
/// `shutdown`: the routes of node `self_name` to every other node. A name that is no Node (the lab's
/// host passes `""`) gets routes to all of them; VXLAN needs `self_name` to be a Node.
pub async fn keep_routes(
    client: kube::Client,
    netns: Option<String>,
    self_name: String,
    backend: Backend,
    shutdown: CancellationToken,
) {
    let (reader, writer) = reflector::store::<Node>();
    let mut stream = std::pin::pin!(
        watcher(Api::<Node>::all(client), watcher::Config::default())
            .default_backoff()
            .reflect(writer)
    );
    let mut last: Option<Vec<NodeRoute>> = None;
    let mut listed = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            e = stream.next() => match e {
                None => return,
                Some(Err(e)) => { tracing::warn!(error = %e, "node watch failed; retrying"); continue; }
                Some(Ok(watcher::Event::InitDone)) => listed = true,
                Some(Ok(_)) => {}
            },
        }
        // Only from a complete list: routes to a node missing from half a list would be removed.
        if !listed {
            continue;
        }
        let wanted = node_routes(reader.state().iter().map(|n| &**n));
        if last.as_ref() == Some(&wanted) {
            continue;
        }
        let ns = netns.as_deref();
        let result = match backend {
            Backend::HostGw => routes::sync_host_gw(ns, &self_name, &wanted).await,
            Backend::Vxlan if wanted.iter().any(|r| r.name == self_name) => {
                routes::sync_vxlan(ns, &self_name, &wanted).await
            }
            Backend::Vxlan => continue,
        };
        match result {
            Ok(report) => {
                tracing::info!(?report, "pod routes synced");
                last = Some(wanted);
            }
            Err(e) => {
                tracing::warn!(error = %e, "syncing pod routes failed; retrying on the next change")
            }
        }
    }
}
