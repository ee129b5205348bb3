use std::time::{Duration, Instant};

use pontifex_node::workload::agnhost;
use pontifex_node::workload::probe::{Check, run_check};
use tokio_util::sync::CancellationToken;

use super::Netns;

fn http(port: u16, path: &str) -> Check {
    Check::Http {
        addr: ([127, 0, 0, 1], port).into(),
        host: format!("127.0.0.1:{port}"),
        path: path.into(),
        headers: vec![("X-Probe".into(), "1".into())],
    }
}

#[tokio::test]
async fn http_and_tcp_probes_against_a_real_server() {
    let port = super::agnhost::free_port();
    let stop = CancellationToken::new();
    let server = tokio::spawn(agnhost::run(
        vec![
            "netexec".into(),
            format!("--http-port={port}"),
            "--udp-port=-1".into(),
        ],
        stop.clone(),
    ));
    let t = Duration::from_secs(1);
    let mut up = false;
    for _ in 0..100 {
        if run_check(
            &Check::Tcp {
                addr: ([127, 0, 0, 1], port).into(),
            },
            t,
        )
        .await
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up);
    assert!(run_check(&http(port, "/healthz"), t).await);
    assert!(
        run_check(&http(port, "/redirect?location=/x&code=302"), t).await,
        "3xx is success"
    );
    assert!(!run_check(&http(port, "/echo?msg=x&code=500"), t).await);
    assert!(!run_check(&http(port, "/echo?msg=x&code=404"), t).await);
    assert!(run_check(&http(port, "/echo?msg=x&code=399"), t).await);
    stop.cancel();
    server.await.unwrap().unwrap();
    assert!(!run_check(&http(port, "/healthz"), t).await, "closed port");
    assert!(
        !run_check(
            &Check::Tcp {
                addr: ([127, 0, 0, 1], port).into()
            },
            t
        )
        .await
    );

    // A server that accepts but never answers: the probe times out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sport = silent.local_addr().unwrap().port();
    let start = Instant::now();
    assert!(!run_check(&http(sport, "/"), Duration::from_millis(300)).await);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn exec_probes_run_in_the_pod_netns() {
    let ns = Netns::new("probe");
    let exec = |script: &str| Check::Exec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        netns: Some(ns.path()),
        env: vec![("WANT".into(), "lo".into())],
    };
    let t = Duration::from_secs(2);
    // Only lo exists in the fresh namespace (the host has more links); /proc/net is per network namespace.
    assert!(
        run_check(
            &exec("test \"$(grep : /proc/net/dev | cut -d: -f1 | tr -d ' ')\" = \"$WANT\""),
            t
        )
        .await
    );
    assert!(!run_check(&exec("exit 1"), t).await);
    let start = Instant::now();
    assert!(!run_check(&exec("sleep 5"), Duration::from_millis(300)).await);
    assert!(start.elapsed() < Duration::from_secs(2));
}
