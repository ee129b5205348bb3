//! The userspace proxy, black box (root, the lab): `up --nodes 2 --proxy-mode userspace` with the
//! seed manifest — NodePort 30002 from the host on both node IPs reaches all three pods, the ClusterIP
//! answers from a pod, the service addresses sit on each node's `kube-ipvs0` and follow Services
//! coming and going, and `pontifex ipvsadm` lists the virtual services with counters that move.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use test_support::examples_dir;

use crate::lab::{
    LabRun, NODE_IPS, hostnames, http_get, links_and_namespaces, seed_nodeport_reaches, until,
};

/// `pontifex ipvsadm <args> --data-dir <dir>`'s output.
fn ipvsadm(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pontifex"))
        .arg("ipvsadm")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The Conns column of `--stats` output for the virtual service `addr`.
fn conns(stats: &str, addr: &str) -> u64 {
    stats
        .lines()
        .find(|l| l.starts_with(&format!("TCP  {addr} ")))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {addr} in\n{stats}"))
}

/// The addresses on `kube-ipvs0` in namespace `ns`.
fn device_addresses(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "addr", "show", "dev", "kube-ipvs0"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userspace_proxy_lab_seed_and_ipvsadm() {
    let prefix = format!("pxu{}", std::process::id() % 100);
    let manifest = examples_dir().join("nginx-nodeport.yaml");
    let Some(mut lab) = LabRun::start(
        &prefix,
        &[
            "--nodes",
            "2",
            "--proxy-mode",
            "userspace",
            "-f",
            manifest.to_str().unwrap(),
        ],
    )
    .await
    else {
        return;
    };
    let data_dir = lab.data_dir();
    let nginx: Vec<(String, String)> = lab
        .ready_n("app=nginx", 3)
        .await
        .into_iter()
        .map(|(name, ip, _)| (name, ip))
        .collect();
    let names: BTreeSet<String> = nginx.iter().map(|p| p.0.clone()).collect();

    // The seed: NodePort 30002 on either node reaches all three pods from the host.
    seed_nodeport_reaches(&names, 60).await;

    // The ClusterIP from a pod (agnhost's /dial in its namespace), and on each node's device.
    let cluster_ip = lab
        .services()
        .get("nginx")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let dial = until(30, "a pod reaching the ClusterIP", async || {
        http_get(
            &format!("{}:80", nginx[0].1),
            &format!("/dial?request=hostname&protocol=http&host={cluster_ip}&port=80&tries=1"),
        )
        .filter(|d| names.iter().any(|n| d.contains(n.as_str())))
    })
    .await;
    assert!(!dial.is_empty());
    for n in ["node-1", "node-2"] {
        let ns = format!("{prefix}-node-{n}");
        assert!(
            device_addresses(&ns).contains(&format!("inet {cluster_ip}/32")),
            "{ns}: {}",
            device_addresses(&ns)
        );
    }

    // Service addresses follow Services: a new one appears on the device, and leaves with it.
    let k = lab.server.kubectl("1.33").unwrap();
    k.run(&["create", "service", "clusterip", "extra", "--tcp=81"])
        .ok();
    let extra_ip = k
        .run(&["get", "svc", "extra", "-o", "jsonpath={.spec.clusterIP}"])
        .ok()
        .stdout;
    let node1 = format!("{prefix}-node-node-1");
    let line = format!("inet {extra_ip}/32");
    until(20, "the new ClusterIP on kube-ipvs0", async || {
        device_addresses(&node1).contains(&line).then_some(())
    })
    .await;
    k.run(&["delete", "service", "extra"]).ok();
    until(20, "the deleted ClusterIP off kube-ipvs0", async || {
        (!device_addresses(&node1).contains(&line)).then_some(())
    })
    .await;

    // kube-proxy's ports in the node namespace say which mode runs.
    let mode = Command::new("ip")
        .args(["netns", "exec", &node1, "curl", "-sf", "-m", "3"])
        .arg("http://127.0.0.1:10249/proxyMode")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&mode.stdout), "userspace");

    // `pontifex ipvsadm`: the seed's view, endpoints included, and counters that move.
    let list = ipvsadm(&data_dir, &["-L", "-n", "--node", "node-1"]);
    assert!(
        list.contains(&format!("TCP  {}:30002 rr", NODE_IPS[0])),
        "{list}"
    );
    assert!(list.contains(&format!("TCP  {cluster_ip}:80 rr")), "{list}");
    for (_, ip) in &nginx {
        assert!(list.contains(&format!("  -> {ip}:80 ")), "{list}");
    }
    let nodeport = format!("{}:30002", NODE_IPS[0]);
    let before = conns(
        &ipvsadm(&data_dir, &["-L", "-n", "--stats", "--node", "node-1"]),
        &nodeport,
    );
    for _ in 0..5 {
        assert!(http_get(&nodeport, "/hostname").is_some());
    }
    let after = conns(
        &ipvsadm(&data_dir, &["-L", "-n", "--stats", "--node", "node-1"]),
        &nodeport,
    );
    assert!(after >= before + 5, "Conns {before} → {after}");
    // A pod annotated with weight 0 is drained: the proxy sends it nothing new.
    let drained = &nginx[0].0;
    k.run(&["annotate", "pod", drained, "pontifex.io/weight=0"])
        .ok();
    let ep = format!("{}:80", nginx[0].1);
    until(20, "weight 0 in ipvsadm", async || {
        let list = ipvsadm(&data_dir, &["-L", "-n", "--node", "node-1"]);
        // `  -> 10.244.1.2:80   Masq    0      0   0`: the weight is the fourth word.
        list.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .any(|w| w.len() > 3 && w[0] == "->" && w[1] == ep && w[3] == "0")
            .then_some(())
    })
    .await;
    let now = hostnames(&nodeport, 12);
    assert!(!now.contains(drained) && now.len() == 2, "{now:?}");

    // Several nodes: without --node the command asks which.
    let out = Command::new(env!("CARGO_BIN_EXE_pontifex"))
        .args(["ipvsadm", "-L", "-n", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node"));

    assert!(lab.stop(), "up exits cleanly");
    drop(lab);
    assert_eq!(links_and_namespaces(&prefix), Vec::<String>::new());
}
