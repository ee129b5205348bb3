use super::*;
use crate::model::IpFamily;
use std::time::UNIX_EPOCH;

fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

#[test]
fn healthy_while_starting_and_until_pending_is_late() {
    let h = ProxyHealth::new(Duration::from_secs(30));
    // Nothing applied, something queued long ago: still starting → healthy.
    h.queued_update(at(1000));
    assert!(h.is_healthy(at(5000)).0);
    h.updated(at(5000));
    assert!(h.is_healthy(at(5001)).0);
    h.queued_update(at(5010));
    h.queued_update(at(5050)); // the oldest pending one counts
    assert!(h.is_healthy(at(5069)).0);
    assert!(!h.is_healthy(at(5070)).0, "60 s = 2 × sync period");
    h.updated(at(5071));
    assert!(h.is_healthy(at(9999)).0, "no pending update");
}

#[test]
fn dual_stack_is_unhealthy_when_either_family_is_late() {
    let h = ProxyHealth::new(Duration::from_secs(30));
    h.updated_for(IpFamily::V4, at(1000));
    h.updated_for(IpFamily::V6, at(1010));
    assert_eq!(
        h.is_healthy(at(1020)),
        (true, Some(at(1010))),
        "newest update"
    );
    // IPv6 falls behind while IPv4 keeps syncing.
    h.queued_update_for(IpFamily::V6, at(2000));
    h.queued_update_for(IpFamily::V4, at(2000));
    h.updated_for(IpFamily::V4, at(2001));
    assert!(h.is_healthy(at(2059)).0);
    assert!(
        !h.is_healthy(at(2060)).0,
        "IPv4's update does not clear IPv6's pending one"
    );
    h.updated_for(IpFamily::V6, at(2061));
    assert!(h.is_healthy(at(2062)).0);
    // A family that never applied anything (still starting) is not late.
    let h = ProxyHealth::new(Duration::from_secs(30));
    h.updated_for(IpFamily::V4, at(1000));
    h.queued_update_for(IpFamily::V6, at(1000));
    assert!(h.is_healthy(at(5000)).0);
}

#[test]
fn answers_use_kube_proxy_json() {
    let h = ProxyHealth::new(Duration::from_secs(30));
    h.updated(at(1_700_000_000));
    let (code, body) = h.answer(at(1_700_000_001), true);
    assert_eq!(code, 200);
    assert_eq!(
        body,
        r#"{"lastUpdated": "2023-11-14 22:13:21 +0000 UTC","currentTime": "2023-11-14 22:13:21 +0000 UTC", "nodeEligible": true}"#
    );
    h.set_node_eligible(false);
    assert_eq!(h.answer(at(1_700_000_001), true).0, 503);
    let (code, body) = h.answer(at(1_700_000_001), false);
    assert_eq!(code, 200, "livez ignores node eligibility");
    assert!(!body.contains("nodeEligible"));
    h.queued_update(at(1_700_000_002));
    let (code, body) = h.answer(at(1_700_000_100), false);
    assert_eq!(code, 503);
    assert!(
        body.starts_with(r#"{"lastUpdated": "2023-11-14 22:13:20 +0000 UTC""#),
        "{body}"
    );
}

#[test]
fn go_time_trims_fraction() {
    let t = UNIX_EPOCH + Duration::from_nanos(1_500_000_000);
    assert_eq!(go_time(Some(t)), "1970-01-01 00:00:01.5 +0000 UTC");
    assert_eq!(go_time(None), "0001-01-01 00:00:00 +0000 UTC");
}

#[test]
fn service_health_codes() {
    let k = ServiceKey::new("ns1", "svc1");
    let (c, b) = service_health_answer(&k, 2, true);
    assert_eq!(c, 200);
    assert_eq!(
        b,
        r#"{"service":{"namespace":"ns1","name":"svc1"},"localEndpoints":2,"serviceProxyHealthy":true}"#
    );
    assert_eq!(service_health_answer(&k, 0, true).0, 503);
    assert_eq!(service_health_answer(&k, 3, false).0, 503);
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (code, body)
}

#[tokio::test]
async fn servers_answer_over_http() {
    let health = Arc::new(ProxyHealth::new(Duration::from_secs(30)));
    let metrics = Arc::new(ProxyMetrics::default());
    let cancel = CancellationToken::new();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hz = l.local_addr().unwrap();
    tokio::spawn(serve_healthz(l, health.clone(), cancel.clone()));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ma = l.local_addr().unwrap();
    tokio::spawn(serve_metrics(
        l,
        metrics,
        health.clone(),
        "nftables",
        cancel.clone(),
    ));
    let (c, b) = get(hz, "/healthz").await;
    assert_eq!(c, 200);
    assert!(b.contains("\"nodeEligible\": true"), "{b}");
    assert_eq!(get(hz, "/livez").await.0, 200);
    assert_eq!(get(hz, "/nope").await.0, 404);
    let (c, b) = get(ma, "/metrics").await;
    assert_eq!(c, 200);
    assert!(b.contains("kubeproxy_sync_proxy_rules_duration_seconds_count 0"));
    assert_eq!(get(ma, "/proxyMode").await.1, "nftables");
    cancel.cancel();
}

#[tokio::test]
async fn health_check_servers_open_update_and_close() {
    let health = Arc::new(ProxyHealth::new(Duration::from_secs(30)));
    // Bind on loopback port 0 whatever port is asked, and remember the real one.
    let real: Arc<Mutex<BTreeMap<u16, u16>>> = Arc::default();
    let r2 = real.clone();
    let binder: Binder = Arc::new(move |port| {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        r2.lock().unwrap().insert(port, l.local_addr()?.port());
        Ok(l)
    });
    let mut hc = HealthCheckServers::new(binder, health);
    let a = ServiceKey::new("ns1", "a");
    let b = ServiceKey::new("ns1", "b");
    let mut want = BTreeMap::from([(a.clone(), (31000, 1)), (b.clone(), (31001, 0))]);
    assert!(hc.sync(&want).is_empty());
    let port = |p: u16| SocketAddr::from(([127, 0, 0, 1], real.lock().unwrap()[&p]));
    let (c, body) = get(port(31000), "/").await;
    assert_eq!(c, 200);
    assert!(body.contains("\"localEndpoints\":1"), "{body}");
    assert_eq!(get(port(31001), "/").await.0, 503);
    want.insert(b.clone(), (31001, 4));
    want.remove(&a);
    hc.sync(&want);
    let (c, body) = get(port(31001), "/").await;
    assert_eq!(c, 200);
    assert!(body.contains("\"localEndpoints\":4"));
    assert_eq!(hc.ports(), BTreeMap::from([(b, 31001)]));
    // a's server was closed.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(port(31000)).await.is_err());
}
