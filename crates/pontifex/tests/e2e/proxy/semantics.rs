//! The proxy semantics beyond the seed, with real packets in the proxy lab (both modes): externalIPs
//! and `loadBalancerSourceRanges` from the host, hairpin, `internalTrafficPolicy: Local`, kube-proxy's
//! masquerade matrix (`conformance/kube-proxy/iptables-04`, its base variant: a local-traffic detector
//! by cluster CIDR, no `--masquerade-all`) judged by the source address each endpoint sees, and a UDP
//! stream with a fixed source port that moves to another endpoint when its endpoint's pod is deleted.
//!
//! The matrix runs from three sources — a pod on node-1, node-1's own namespace and the host (the
//! "external" client) — to node-1's ClusterIP, NodePort and LoadBalancer addresses. Not expressed:
//! `localhost to NodePort` (nftables mode has no localhost NodePorts) and the `masqueradeAll` and
//! no-detector variants (agent flags the lab does not set).

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::DeleteParams;

use super::HOST_IP;
use crate::lab::{LabRun, NODE_IPS, http_get, until};

/// Two endpoint pods (mx-1 on node-1, mx-2 on node-2), a client pod on node-1, Services of the three
/// traffic policies, hairpin, externalIPs, source ranges and a UDP Deployment.
pub(super) const MATRIX: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: mx-1, labels: {app: matrix, hair: "yes"}}
spec:
  nodeName: node-1
  containers: [{name: srv, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: mx-2, labels: {app: matrix}}
spec:
  nodeName: node-2
  containers: [{name: srv, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  nodeName: node-1
  containers: [{name: srv, image: nginx, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: m-cluster}
spec:
  type: LoadBalancer
  selector: {app: matrix}
  ports: [{port: 80, nodePort: 30020}]
---
apiVersion: v1
kind: Service
metadata: {name: m-etp}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: matrix}
  ports: [{port: 80, nodePort: 30021}]
---
apiVersion: v1
kind: Service
metadata: {name: m-itp}
spec:
  type: LoadBalancer
  internalTrafficPolicy: Local
  selector: {app: matrix}
  ports: [{port: 80, nodePort: 30022}]
---
apiVersion: v1
kind: Service
metadata: {name: hair}
spec:
  selector: {hair: "yes"}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: itl}
spec:
  internalTrafficPolicy: Local
  selector: {hair: "yes"}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  externalIPs: [172.31.255.250]
  selector: {app: matrix}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: lbdeny}
spec:
  type: LoadBalancer
  loadBalancerSourceRanges: [10.0.0.0/8]
  selector: {app: matrix}
  ports: [{port: 80, nodePort: 30023}]
---
apiVersion: v1
kind: Service
metadata: {name: lballow}
spec:
  type: LoadBalancer
  loadBalancerSourceRanges: [172.31.0.0/24]
  selector: {app: matrix}
  ports: [{port: 80, nodePort: 30024}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: udp}
spec:
  replicas: 2
  selector: {matchLabels: {app: udp}}
  template:
    metadata: {labels: {app: udp}}
    spec:
      containers:
      - name: srv
        image: nginx
        ports: [{containerPort: 80}, {containerPort: 8081, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: udp}
spec:
  selector: {app: udp}
  ports: [{port: 8081, protocol: UDP}]
"#;

/// Where a probe starts.
#[derive(Clone, Copy, Debug)]
enum Src<'a> {
    /// A pod (agnhost `/dial` from its IP).
    Pod(&'a str),
    /// A node's own namespace (`curl` inside it).
    Node(&'a str),
    /// The host, outside the cluster.
    Host,
}

/// `n` answers of `GET /<what>` at `target` (`ip:port`) from `src`, or `None` if any failed.
fn answers(src: Src<'_>, target: &str, what: &str, n: usize) -> Option<Vec<String>> {
    let out: Vec<String> = match src {
        Src::Pod(ip) => {
            let (host, port) = target.rsplit_once(':')?;
            let body = http_get(
                &format!("{ip}:80"),
                &format!("/dial?request={what}&protocol=http&host={host}&port={port}&tries={n}"),
            )?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            v["responses"]
                .as_array()?
                .iter()
                .filter_map(|x| x.as_str().map(|s| s.trim().to_owned()))
                .collect()
        }
        Src::Node(ns) => {
            let url = format!("http://{target}/{what}");
            let mut args = vec![
                "netns",
                "exec",
                ns,
                "curl",
                "-s",
                "-m",
                "3",
                "-H",
                "Connection: close",
                "-w",
                "\\n",
            ];
            args.extend(std::iter::repeat_n(url.as_str(), n));
            let out = Command::new("ip").args(&args).output().ok()?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        }
        Src::Host => (0..n)
            .map(|_| http_get(target, &format!("/{what}")).map(|b| b.trim().to_owned()))
            .collect::<Option<_>>()?,
    };
    (out.len() == n).then_some(out)
}

/// `10.244.1.7:41234` → `10.244.1.7`.
fn ip_of(client: &str) -> &str {
    client.rsplit_once(':').map_or(client, |(ip, _)| ip)
}

/// A Service's ClusterIP and first LoadBalancer ingress IP (waits for it when `lb`).
async fn addresses(services: &Api<Service>, name: &str, lb: bool) -> (String, String) {
    until(30, &format!("{name}'s addresses"), async || {
        let s = services.get(name).await.ok()?;
        let cip = s.spec.as_ref()?.cluster_ip.clone()?;
        if !lb {
            return Some((cip, String::new()));
        }
        let ip = s.status?.load_balancer?.ingress?.first()?.ip.clone()?;
        Some((cip, ip))
    })
    .await
}

/// The addresses the checks need, gathered once the pods are ready and the LoadBalancer IPs are set.
pub(super) struct Matrix {
    node1_ns: String,
    client_ip: String,
    mx1_ip: String,
    mx2_ip: String,
    /// node-1's `cni0` address: the masquerade source towards a pod on node-1.
    gw1: String,
    /// (ClusterIP, LoadBalancer IP) of m-cluster, m-etp, m-itp.
    policies: [(String, String); 3],
    hair: String,
    itl: String,
    lbdeny: String,
    lballow: String,
    udp: String,
}

impl Matrix {
    pub(super) async fn new(lab: &LabRun, prefix: &str) -> Matrix {
        let (mx1_ip, node) = lab.ready("mx-1").await;
        assert_eq!(node, "node-1");
        let (mx2_ip, _) = lab.ready("mx-2").await;
        let (client_ip, _) = lab.ready("client").await;
        let gw1 = format!("{}.1", mx1_ip.rsplit_once('.').unwrap().0);
        let svcs = lab.services();
        let policies = [
            addresses(&svcs, "m-cluster", true).await,
            addresses(&svcs, "m-etp", true).await,
            addresses(&svcs, "m-itp", true).await,
        ];
        // The host has no route to the Service CIDR; a router in front of the cluster would send
        // these ClusterIPs to node-1 (`external to ClusterIP` rows). The routes use the lab bridge
        // and go with it.
        for (cip, _) in &policies {
            let st = Command::new("ip")
                .args(["route", "replace", &format!("{cip}/32"), "via", NODE_IPS[0]])
                .status()
                .unwrap();
            assert!(st.success(), "route {cip} via node-1");
        }
        Matrix {
            node1_ns: format!("{prefix}-node-node-1"),
            client_ip,
            mx1_ip,
            mx2_ip,
            gw1,
            policies,
            hair: addresses(&svcs, "hair", false).await.0,
            itl: addresses(&svcs, "itl", false).await.0,
            lbdeny: addresses(&svcs, "lbdeny", true).await.1,
            lballow: addresses(&svcs, "lballow", true).await.1,
            udp: addresses(&svcs, "udp", false).await.0,
        }
    }

    /// An externalIP answers from the host; a source range that leaves the host out blocks it (but
    /// lets a pod in), one that includes it lets it in.
    pub(super) async fn external_ips_and_source_ranges(&self, _lab: &LabRun) {
        let body = until(20, "the externalIP from the host", async || {
            http_get("172.31.255.250:80", "/hostname")
        })
        .await;
        assert!(["mx-1", "mx-2"].contains(&body.trim()), "{body}");
        let seen = http_get("172.31.255.250:80", "/clientip").expect("externalIP clientip");
        assert_ne!(
            ip_of(&seen),
            HOST_IP,
            "external to externalIP is masqueraded"
        );

        let allowed = format!("{}:80", self.lballow);
        until(
            20,
            "the LB IP whose source range includes the host",
            async || http_get(&allowed, "/hostname"),
        )
        .await;
        // The blocked Service works: from a pod inside its range, and through its NodePort.
        let denied = format!("{}:80", self.lbdeny);
        until(
            20,
            "the range-limited LB IP from a pod inside the range",
            async || answers(Src::Pod(&self.client_ip), &denied, "hostname", 1),
        )
        .await;
        until(20, "the range-limited Service's NodePort", async || {
            http_get(&format!("{}:30023", NODE_IPS[0]), "/hostname")
        })
        .await;
        let err = TcpStream::connect_timeout(&denied.parse().unwrap(), Duration::from_secs(1));
        assert!(
            err.is_err(),
            "loadBalancerSourceRanges 10.0.0.0/8 blocks {HOST_IP}"
        );
    }

    /// A pod reaching itself through its Service is masqueraded to its node's bridge address;
    /// `internalTrafficPolicy: Local` gives a pod on a node without a local endpoint no answer.
    pub(super) async fn hairpin_and_internal_traffic_policy(&self) {
        let hair = format!("{}:80", self.hair);
        let seen = until(20, "the hairpin Service", async || {
            answers(Src::Pod(&self.mx1_ip), &hair, "clientip", 3)
        })
        .await;
        for s in &seen {
            assert_eq!(ip_of(s), self.gw1, "hairpin masqueraded to cni0: {seen:?}");
        }
        let itl = format!("{}:80", self.itl);
        let local = until(20, "iTP Local from the endpoint's node", async || {
            answers(Src::Pod(&self.client_ip), &itl, "hostname", 2)
        })
        .await;
        assert_eq!(local, ["mx-1", "mx-1"]);
        assert_eq!(
            answers(Src::Pod(&self.mx2_ip), &itl, "hostname", 1),
            None,
            "iTP Local from node-2 (no local endpoint): no answer"
        );
    }

    /// The base variant of iptables-04, row by row: the endpoints reached and whether the source is
    /// masqueraded.
    pub(super) async fn masquerade_matrix(&self, mode: &str) {
        let node1 = NODE_IPS[0];
        let pod = Src::Pod(&self.client_ip);
        let node = Src::Node(&self.node1_ns);
        let mut failures = Vec::new();
        let policy_names = ["", " with eTP:Local", " with iTP:Local"];
        // (masq, local-only) per policy and target, for (pod, node, external) sources, from
        // flows.yaml's baseFlows.
        type Row = [(bool, bool); 3];
        let table: [[Row; 3]; 3] = [
            // Cluster: ClusterIP, NodePort, LB
            [
                [(false, false), (true, false), (true, false)],
                [(true, false), (true, false), (true, false)],
                [(true, false), (true, false), (true, false)],
            ],
            // eTP Local: pods short-circuit to every endpoint; the node is masqueraded to every
            // endpoint; external traffic to NodePort / LB only to the local one, unmasqueraded.
            [
                [(false, false), (false, false), (false, false)],
                [(true, false), (true, false), (true, false)],
                [(true, false), (false, true), (false, true)],
            ],
            // iTP Local: the ClusterIP only to the local endpoint, for every source.
            [
                [(false, true), (true, false), (true, false)],
                [(true, true), (true, false), (true, false)],
                [(true, true), (true, false), (true, false)],
            ],
        ];
        for (p, rows) in table.iter().enumerate() {
            let (cip, lb) = &self.policies[p];
            let node_port = 30020 + p;
            let targets = [
                ("ClusterIP", format!("{cip}:80")),
                ("NodePort", format!("{node1}:{node_port}")),
                ("LB", format!("{lb}:80")),
            ];
            for (s, (src_name, src)) in [("pod", pod), ("node", node), ("external", Src::Host)]
                .into_iter()
                .enumerate()
            {
                for (t, (target_name, target)) in targets.iter().enumerate() {
                    let (masq, local_only) = rows[s][t];
                    let name = format!("{src_name} to {target_name}{}", policy_names[p]);
                    if let Err(e) = self.row(src, target, masq, local_only).await {
                        failures.push(format!("{name}: {e}"));
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{mode}: masquerade matrix rows failed:\n{}",
            failures.join("\n")
        );
    }

    async fn row(
        &self,
        src: Src<'_>,
        target: &str,
        masq: bool,
        local_only: bool,
    ) -> Result<(), String> {
        let names = until(20, &format!("{src:?} to {target}"), async || {
            answers(src, target, "hostname", 8)
        })
        .await;
        let allowed: &[&str] = if local_only {
            &["mx-1"]
        } else {
            &["mx-1", "mx-2"]
        };
        if let Some(n) = names.iter().find(|n| !allowed.contains(&n.as_str())) {
            return Err(format!("reached {n}; only {allowed:?} allowed ({names:?})"));
        }
        let seen: BTreeSet<String> = answers(src, target, "clientip", 12)
            .ok_or("clientip failed")?
            .iter()
            .map(|s| ip_of(s).to_owned())
            .collect();
        let node_addrs = [self.gw1.as_str(), NODE_IPS[0]];
        let masqueraded = match src {
            // The node's own source is its underlay address; masquerading shows only towards
            // the pod on node-1 (cni0's address instead).
            Src::Node(_) => seen.contains(&self.gw1),
            Src::Pod(ip) => !seen.contains(ip),
            Src::Host => !seen.contains(HOST_IP),
        };
        let consistent = if masqueraded || matches!(src, Src::Node(_)) {
            seen.iter().all(|s| node_addrs.contains(&s.as_str()))
        } else {
            seen.len() == 1
        };
        if masqueraded != masq || !consistent {
            return Err(format!(
                "expected masquerade={masq}, the endpoints saw sources {seen:?}"
            ));
        }
        Ok(())
    }

    /// A UDP stream with one source port from node-1 through a ClusterIP; its endpoint's pod is
    /// deleted; the stream answers from another endpoint within a second (stale conntrack entries
    /// are deleted, not left to time out).
    pub(super) async fn udp_stream_moves_when_its_endpoint_goes(&self, lab: &LabRun) {
        lab.ready_n("app=udp", 2).await;
        let port = (40_000 + std::process::id() % 1000).to_string();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.node1_ns, "perl", "-e", UDP_STREAM])
            .args([self.udp.as_str(), "8081", &port, "30"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("perl in node-1");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<(f64, String)>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some((t, a)) = line.split_once(' ') {
                    let _ = tx.send((t.parse().unwrap_or(0.0), a.to_owned()));
                }
            }
        });
        let _kill = super::KillOnDrop(child);
        let next = || {
            rx.recv_timeout(Duration::from_secs(5))
                .expect("the stream runs")
        };
        // The first answers: the stream's endpoint.
        let first = loop {
            let (_, a) = next();
            if a != "-" {
                break a;
            }
        };
        for _ in 0..5 {
            let (_, a) = next();
            assert_eq!(a, first, "one source port sticks to one endpoint");
        }
        let pods = lab.pods();
        pods.delete(&first, &DeleteParams::default())
            .await
            .expect("deleting the stream's pod");
        let deleted = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let mut trace = Vec::new();
        let moved_at = loop {
            let (t, a) = next();
            trace.push(format!("{:+.3} {a}", t - deleted));
            if t > deleted && a != "-" && a != first {
                break t;
            }
            assert!(t - deleted < 10.0, "the stream never moved: {trace:?}");
        };
        let gap = moved_at - deleted;
        eprintln!("udp stream moved {gap:.3}s after the delete");
        assert!(gap < 1.0, "moved after {gap:.3}s: {trace:?}");
        // And it stays on the new endpoint.
        let now: String = next().1;
        assert!(now != first && now != "-", "{now} after moving");
    }
}

/// A UDP client with one source port: sends `hostname` every 50 ms and prints `<epoch> <answer>`
/// (`-` for none within 100 ms). Args: address, port, source port, seconds.
const UDP_STREAM: &str = r#"
use strict; use IO::Socket::INET; use IO::Select; use Time::HiRes qw(time sleep);
$| = 1;
my ($ip, $port, $lport, $secs) = @ARGV;
my $s = IO::Socket::INET->new(Proto => 'udp', LocalPort => $lport, PeerAddr => $ip, PeerPort => $port)
  or die "socket: $!";
my $sel = IO::Select->new($s);
my $end = time + $secs;
while (time < $end) {
  $s->send("hostname");
  my $got = "-";
  if ($sel->can_read(0.1)) { my $buf; if (defined $s->recv($buf, 2048) && length $buf) { $got = $buf; } }
  $got =~ s/\s+//g;
  printf "%.3f %s\n", time, $got;
  sleep 0.05;
}
"#;
