//! Cross-node pod routes, kept in step with the Node list: every Node with a podCIDR and an
//! InternalIP of the same family gets a route (host-gw) or VXLAN entries on this node — on a
//! dual-stack cluster one per family. VXLAN encapsulates IPv4 only: IPv6 podCIDRs get host-gw
//! routes even then (said once in the log), which needs the nodes on one link.

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use pontifex_node::net::routes::{self, NodeRoute};
use tokio_util::sync::CancellationToken;

use crate::Backend;

/// The routes the Node list asks for: per node and family, its first InternalIP and its podCIDR of
/// that family (a family missing either is skipped), sorted by name then family.
pub(crate) fn node_routes<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Vec<NodeRoute> {
    let mut out: Vec<NodeRoute> = Vec::new();
    for n in nodes {
        let Some(name) = n.metadata.name.clone() else {
            continue;
        };
        let ips: Vec<std::net::IpAddr> = n
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        let cidrs = crate::node::node_pod_cidrs(n);
        for v6 in [false, true] {
            let ip = ips.iter().find(|ip| ip.is_ipv6() == v6);
            let cidr = cidrs.iter().find(|c| c.addr().is_ipv6() == v6);
            if let (Some(ip), Some(cidr)) = (ip, cidr) {
                out.push(NodeRoute {
                    name: name.clone(),
                    node_ip: *ip,
                    pod_cidr: *cidr,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.name, a.node_ip.is_ipv6()).cmp(&(&b.name, b.node_ip.is_ipv6())));
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
    let mut said_vxlan_v6 = false;
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
        if backend == Backend::Vxlan
            && !said_vxlan_v6
            && wanted.iter().any(|r| r.pod_cidr.addr().is_ipv6())
        {
            said_vxlan_v6 = true;
            tracing::warn!(
                "backend vxlan encapsulates IPv4 only: IPv6 podCIDRs are routed host-gw style \
                 (via each node's IPv6 InternalIP), which needs the nodes on one link"
            );
        }
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

#[cfg(test)]
mod tests;
