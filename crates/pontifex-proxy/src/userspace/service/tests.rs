use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::*;

fn vs(eps: &[(&str, u32)]) -> VirtualService {
    VirtualService {
        listen: "10.96.0.1:80".parse().unwrap(),
        protocol: Protocol::Tcp,
        scheduler: "rr".into(),
        affinity_timeout: None,
        endpoints: eps.iter().map(|(a, w)| (a.parse().unwrap(), *w)).collect(),
        source_ranges: Vec::new(),
    }
}

fn client() -> SocketAddr {
    "10.0.0.9:40000".parse().unwrap()
}

#[test]
fn counters_follow_the_ipvs_connection_states() {
    let svc = Service::new(
        &vs(&[("10.244.0.2:80", 1)]),
        Arc::new(ProxyConfig::default()),
    );
    let t0 = Instant::now();
    let (ep, traffic) = svc.pick(client(), &[], t0).unwrap();
    let c = |s: &Service| {
        let e = &s.stats(t0).endpoints[0];
        (e.active_conns, e.inactive_conns)
    };
    assert_eq!(c(&svc), (0, 1), "opening counts as inactive");
    svc.connected(ep, &traffic);
    assert_eq!(c(&svc), (1, 0));
    svc.half_closed(ep);
    assert_eq!(c(&svc), (0, 1));
    svc.closed(ep, true, true, t0);
    assert_eq!(c(&svc), (0, 1), "TIME_WAIT still counts");
    let later = t0 + ProxyConfig::default().tcp_time_wait;
    assert_eq!(svc.stats(later).endpoints[0].inactive_conns, 0);
    assert_eq!(svc.stats(later).conns, 1);
}

#[test]
fn refusing_endpoint_is_ejected_then_forgiven() {
    let config = ProxyConfig::default();
    let svc = Service::new(
        &vs(&[("10.244.0.2:80", 1), ("10.244.0.3:80", 1)]),
        Arc::new(config.clone()),
    );
    let bad: SocketAddr = "10.244.0.2:80".parse().unwrap();
    let t0 = Instant::now();
    for _ in 0..config.eject_after {
        svc.connect_failed(bad, t0);
    }
    for _ in 0..10 {
        let (ep, _) = svc.pick(client(), &[], t0).unwrap();
        assert_ne!(ep, bad, "ejected endpoint chosen");
    }
    // Only the ejected endpoint is left untried: it is still tried rather than failing the client.
    let good: SocketAddr = "10.244.0.3:80".parse().unwrap();
    assert_eq!(svc.pick(client(), &[good], t0).map(|p| p.0), Some(bad));
    let after = t0 + config.eject_for;
    let picks: Vec<SocketAddr> = (0..2)
        .map(|_| svc.pick(client(), &[], after).unwrap().0)
        .collect();
    assert!(picks.contains(&bad), "ejection ends after eject_for");
}

#[test]
fn removed_endpoint_keeps_draining_counters() {
    let svc = Service::new(
        &vs(&[("10.244.0.2:80", 1)]),
        Arc::new(ProxyConfig::default()),
    );
    let t0 = Instant::now();
    let (ep, traffic) = svc.pick(client(), &[], t0).unwrap();
    svc.connected(ep, &traffic);
    svc.update(&vs(&[("10.244.0.3:80", 1)]));
    assert!(!svc.accepts(ep));
    assert_eq!(
        svc.pick(client(), &[], t0).unwrap().0,
        "10.244.0.3:80".parse().unwrap()
    );
    // The old connection closes later; nothing underflows and the new endpoint is untouched.
    svc.closed(ep, false, true, t0);
    let st = svc.stats(t0);
    assert_eq!(st.endpoints.len(), 1);
    assert_eq!(
        st.endpoints[0].inactive_conns, 1,
        "only the new pick's opening"
    );
}

#[test]
fn source_ranges_admit_only_their_clients() {
    let none: [ipnet::IpNet; 0] = [];
    assert!(
        admitted(&none, "203.0.113.1".parse().unwrap()),
        "no ranges: everyone"
    );
    let ranges: Vec<ipnet::IpNet> = vec![
        "192.0.2.0/24".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    assert!(admitted(&ranges, "192.0.2.77".parse().unwrap()));
    assert!(!admitted(&ranges, "192.0.3.1".parse().unwrap()));
    assert!(admitted(&ranges, "2001:db8::5".parse().unwrap()));
    assert!(
        admitted(&ranges, "::ffff:192.0.2.1".parse().unwrap()),
        "v4-mapped"
    );
    assert!(!admitted(&ranges, "::ffff:10.0.0.1".parse().unwrap()));

    let mut v = vs(&[("10.244.0.2:80", 1)]);
    let svc = Service::new(&v, Arc::new(ProxyConfig::default()));
    assert!(svc.admits("10.0.0.9".parse().unwrap()));
    v.source_ranges = ranges;
    svc.update(&v);
    assert!(
        !svc.admits("10.0.0.9".parse().unwrap()),
        "ranges apply on update"
    );
    assert!(svc.admits("192.0.2.1".parse().unwrap()));
    v.source_ranges.clear();
    svc.update(&v);
    assert!(svc.admits("10.0.0.9".parse().unwrap()), "and go away again");
}
