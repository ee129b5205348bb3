//! UDP forwarding: a flow table from client address to a connected upstream socket.
//!
//! One task reads the service socket; the first datagram of a client picks an endpoint and opens a
//! flow (an ephemeral socket connected to it, plus a reply task). Replies are sent from the service
//! socket, so the client sees them come from the address it talked to. A flow ends after
//! `udp_idle_timeout` without traffic either way, or at once when its endpoint leaves the snapshot (the
//! client's next datagram opens a flow to a remaining endpoint). Memory: one 64 KiB receive buffer per
//! service; reply tasks allocate a buffer per datagram only; at most `max_udp_flows` flows.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::model::ProxyConfig;
use super::service::{Service, Traffic};

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

#[derive(Debug)]
struct Flow {
    id: u64,
    endpoint: SocketAddr,
    upstream: Arc<UdpSocket>,
    traffic: Arc<Traffic>,
    /// Last activity, in nanoseconds since `Flows::base`.
    last: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

/// The flow table of one UDP service.
#[derive(Debug)]
pub(crate) struct Flows {
    map: Mutex<HashMap<SocketAddr, Flow>>,
    next_id: AtomicU64,
    base: Instant,
}

impl Flows {
    pub(crate) fn new() -> Self {
        Flows {
            map: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            base: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, Flow>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stamp(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// End every flow whose endpoint `keep` rejects (all of them when the service goes away).
    pub(crate) fn prune(&self, svc: &Service, keep: impl Fn(SocketAddr) -> bool) {
        let gone: Vec<Flow> = {
            let mut map = self.lock();
            let doomed: Vec<SocketAddr> = map
                .iter()
                .filter(|(_, f)| !keep(f.endpoint))
                .map(|(c, _)| *c)
                .collect();
            doomed.into_iter().filter_map(|c| map.remove(&c)).collect()
        };
        for f in gone {
            f.task.abort();
            svc.flow_closed(f.endpoint);
        }
    }
}

/// Serve the service socket until the task is aborted.
pub(crate) async fn serve(
    socket: Arc<UdpSocket>,
    svc: Arc<Service>,
    flows: Arc<Flows>,
    config: Arc<ProxyConfig>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors reported on the shared socket concern one peer; keep serving.
                tracing::debug!(service = %svc.listen, error = %e, "recv failed");
                continue;
            }
        };
        let existing = flows
            .lock()
            .get(&client)
            .map(|f| (f.upstream.clone(), f.traffic.clone(), f.last.clone()));
        let (upstream, traffic, last) = match existing {
            Some(f) => f,
            // Outside loadBalancerSourceRanges: dropped, as kube-proxy's firewall rule does.
            None if !svc.admits(client.ip()) => continue,
            None => match open(&socket, &svc, &flows, &config, client).await {
                Some(f) => f,
                None => continue,
            },
        };
        last.store(flows.stamp(), Ordering::Relaxed);
        traffic.add_in(n);
        svc.totals.add_in(n);
        if let Err(e) = upstream.send(&buf[..n]).await {
            tracing::debug!(service = %svc.listen, error = %e, "send upstream failed");
        }
    }
}

type FlowParts = (Arc<UdpSocket>, Arc<Traffic>, Arc<AtomicU64>);

async fn open(
    socket: &Arc<UdpSocket>,
    svc: &Arc<Service>,
    flows: &Arc<Flows>,
    config: &Arc<ProxyConfig>,
    client: SocketAddr,
) -> Option<FlowParts> {
    if flows.lock().len() >= config.max_udp_flows {
        tracing::debug!(service = %svc.listen, %client, "flow table full, dropping datagram");
        return None;
    }
    let (ep, traffic) = svc.pick(client, &[], Instant::now())?;
    let upstream = match connect(ep).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::warn!(service = %svc.listen, endpoint = %ep, error = %e, "cannot open flow");
            svc.connect_failed(ep, Instant::now());
            return None;
        }
    };
    svc.connected(ep, &traffic);
    let id = flows.next_id.fetch_add(1, Ordering::Relaxed);
    let last = Arc::new(AtomicU64::new(flows.stamp()));
    let task = tokio::spawn(replies(
        socket.clone(),
        upstream.clone(),
        client,
        svc.clone(),
        flows.clone(),
        traffic.clone(),
        last.clone(),
        id,
        ep,
        config.udp_idle_timeout,
    ));
    flows.lock().insert(
        client,
        Flow {
            id,
            endpoint: ep,
            upstream: upstream.clone(),
            traffic: traffic.clone(),
            last: last.clone(),
            task,
        },
    );
    Some((upstream, traffic, last))
}

async fn connect(ep: SocketAddr) -> io::Result<UdpSocket> {
    let any: IpAddr = match ep {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let s = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    s.connect(ep).await?;
    Ok(s)
}

/// Relay the endpoint's datagrams to the client until the flow is idle for `idle`.
#[allow(clippy::too_many_arguments)]
async fn replies(
    socket: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    svc: Arc<Service>,
    flows: Arc<Flows>,
    traffic: Arc<Traffic>,
    last: Arc<AtomicU64>,
    id: u64,
    ep: SocketAddr,
    idle: Duration,
) {
    loop {
        let since =
            Duration::from_nanos(flows.stamp().saturating_sub(last.load(Ordering::Relaxed)));
        if since >= idle {
            break;
        }
        tokio::select! {
            r = upstream.readable() => {
                if r.is_err() { break; }
                let mut buf = Vec::with_capacity(MAX_DATAGRAM);
                match upstream.try_recv_buf(&mut buf) {
                    Ok(n) => {
                        last.store(flows.stamp(), Ordering::Relaxed);
                        traffic.add_out(n);
                        svc.totals.add_out(n);
                        let _ = socket.send_to(&buf[..n], client).await;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // ECONNREFUSED from an earlier datagram (nobody listens there): the client will
                    // retry or time out, as it would without a proxy.
                    Err(e) => tracing::debug!(endpoint = %ep, error = %e, "upstream recv failed"),
                }
            }
            () = tokio::time::sleep(idle - since) => {}
        }
    }
    let removed = {
        let mut map = flows.lock();
        match map.get(&client) {
            Some(f) if f.id == id => map.remove(&client),
            _ => None,
        }
    };
    if removed.is_some() {
        svc.flow_closed(ep);
    }
}
