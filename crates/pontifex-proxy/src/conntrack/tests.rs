use std::net::SocketAddr;

use super::*;
use crate::nfnetlink::conntrack::Tuple;

fn flush(target: ConntrackTarget, endpoint: Option<&str>) -> ConntrackFlush {
    ConntrackFlush {
        target,
        endpoint: endpoint.map(|e| e.parse().unwrap()),
    }
}

/// A DNATed flow: `client` sent to `service`, which went to `endpoint`.
fn flow(proto: u8, client: &str, service: &str, endpoint: &str) -> Flow {
    let (c, s, e): (SocketAddr, SocketAddr, SocketAddr) = (
        client.parse().unwrap(),
        service.parse().unwrap(),
        endpoint.parse().unwrap(),
    );
    Flow {
        orig: Tuple {
            src: c.ip(),
            dst: s.ip(),
            proto,
            src_port: c.port(),
            dst_port: s.port(),
            zone: None,
        },
        reply: Tuple {
            src: e.ip(),
            dst: c.ip(),
            proto,
            src_port: e.port(),
            dst_port: c.port(),
            zone: None,
        },
        zone: None,
        id: Some(7),
    }
}

fn udp(client: &str, service: &str, endpoint: &str) -> Flow {
    flow(IPPROTO_UDP, client, service, endpoint)
}

fn ip(s: &str, port: u16) -> ConntrackTarget {
    ConntrackTarget::Ip(s.parse().unwrap(), port)
}

#[test]
fn service_ip_and_port() {
    let f = flush(ip("10.96.0.10", 53), None);
    assert!(matches(
        &f,
        &udp("10.244.0.2:4000", "10.96.0.10:53", "10.244.0.5:5353")
    ));
    // Same address, another port; another address, same port.
    assert!(!matches(
        &f,
        &udp("10.244.0.2:4000", "10.96.0.10:54", "10.244.0.5:5353")
    ));
    assert!(!matches(
        &f,
        &udp("10.244.0.2:4000", "10.96.0.11:53", "10.244.0.5:5353")
    ));
}

#[test]
fn only_udp() {
    let f = flush(ip("10.96.0.10", 53), None);
    assert!(!matches(
        &f,
        &flow(6, "10.244.0.2:4000", "10.96.0.10:53", "10.244.0.5:5353")
    ));
    assert!(!matches(
        &f,
        &flow(132, "10.244.0.2:4000", "10.96.0.10:53", "10.244.0.5:5353")
    ));
}

#[test]
fn removed_endpoint_matches_reply_source_address_and_port() {
    let f = flush(ip("10.96.0.10", 53), Some("10.244.0.5:5353"));
    assert!(matches(
        &f,
        &udp("10.244.0.2:4000", "10.96.0.10:53", "10.244.0.5:5353")
    ));
    // Flows of the same service to the endpoints that stay are kept.
    assert!(!matches(
        &f,
        &udp("10.244.0.2:4000", "10.96.0.10:53", "10.244.0.6:5353")
    ));
    assert!(!matches(
        &f,
        &udp("10.244.0.2:4000", "10.96.0.10:53", "10.244.0.5:5354")
    ));
    // An un-NATed flow (the reply comes from the service address itself) is not the endpoint's.
    assert!(!matches(
        &f,
        &udp("10.244.0.2:4000", "10.96.0.10:53", "10.96.0.10:53")
    ));
}

#[test]
fn node_port_any_address() {
    let f = flush(ConntrackTarget::NodePort(30053), None);
    assert!(matches(
        &f,
        &udp("172.31.0.1:4000", "172.31.0.10:30053", "10.244.0.5:53")
    ));
    assert!(matches(
        &f,
        &udp("172.31.0.1:4000", "192.168.1.1:30053", "10.244.1.5:53")
    ));
    assert!(!matches(
        &f,
        &udp("172.31.0.1:4000", "172.31.0.10:30054", "10.244.0.5:53")
    ));
    let f = flush(ConntrackTarget::NodePort(30053), Some("10.244.0.5:53"));
    assert!(matches(
        &f,
        &udp("172.31.0.1:4000", "172.31.0.10:30053", "10.244.0.5:53")
    ));
    assert!(!matches(
        &f,
        &udp("172.31.0.1:4000", "172.31.0.10:30053", "10.244.0.6:53")
    ));
}

#[test]
fn ipv6_and_mapped_addresses() {
    let f = flush(ip("fd00::10", 53), Some("[fd00:244::5]:53"));
    assert!(matches(
        &f,
        &udp("[fd00:244::2]:4000", "[fd00::10]:53", "[fd00:244::5]:53")
    ));
    assert!(!matches(
        &f,
        &udp("[fd00:244::2]:4000", "[fd00::11]:53", "[fd00:244::5]:53")
    ));
    let f = flush(ip("10.96.0.10", 53), None);
    assert!(matches(
        &f,
        &udp("10.244.0.2:4000", "[::ffff:10.96.0.10]:53", "10.244.0.5:53")
    ));
}

#[test]
fn select_keeps_order_and_takes_each_once() {
    let flows = vec![
        udp("10.244.0.2:1", "10.96.0.10:53", "10.244.0.5:53"),
        udp("10.244.0.2:2", "10.96.0.11:53", "10.244.0.5:53"),
        udp("10.244.0.2:3", "10.96.0.10:53", "10.244.0.6:53"),
        flow(6, "10.244.0.2:4", "10.96.0.10:53", "10.244.0.5:53"),
    ];
    // Two flushes both naming flow 0: it is selected once.
    let flushes = [
        flush(ip("10.96.0.10", 53), None),
        flush(ip("10.96.0.10", 53), Some("10.244.0.5:53")),
    ];
    let got: Vec<u16> = select(&flushes, &flows)
        .iter()
        .map(|f| f.orig.src_port)
        .collect();
    assert_eq!(got, vec![1, 3]);
    assert!(select(&[], &flows).is_empty());
}

#[test]
fn families_of_flushes() {
    let v4 = flush(ip("10.96.0.10", 53), None);
    let v6 = flush(ip("fd00::10", 53), None);
    let bare = flush(ConntrackTarget::NodePort(30053), None);
    let np6 = flush(ConntrackTarget::NodePort(30053), Some("[fd00::5]:53"));
    assert_eq!(families(IpFamily::V4, &[]), vec![]);
    assert_eq!(
        families(IpFamily::V4, &[v4.clone(), bare.clone()]),
        vec![IpFamily::V4]
    );
    assert_eq!(families(IpFamily::V6, &[bare]), vec![IpFamily::V6]);
    assert_eq!(
        families(IpFamily::V4, &[v6, v4, np6]),
        vec![IpFamily::V6, IpFamily::V4]
    );
}
