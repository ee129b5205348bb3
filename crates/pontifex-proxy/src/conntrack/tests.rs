use super::*;

fn flush(target: ConntrackTarget, endpoint: Option<&str>) -> ConntrackFlush {
    ConntrackFlush {
        target,
        endpoint: endpoint.map(|e| e.parse().unwrap()),
    }
}

#[test]
fn service_ip_and_port() {
    let f = flush(ConntrackTarget::Ip("10.96.0.10".parse().unwrap(), 53), None);
    assert_eq!(
        delete_args(&f).join(" "),
        "-D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53"
    );
}

#[test]
fn removed_endpoint_matches_reply_source() {
    let f = flush(
        ConntrackTarget::Ip("10.96.0.10".parse().unwrap(), 53),
        Some("10.244.0.5:5353"),
    );
    assert_eq!(
        delete_args(&f).join(" "),
        "-D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.0.5 --reply-port-src 5353"
    );
}

#[test]
fn node_port_any_address() {
    let f = flush(ConntrackTarget::NodePort(30053), None);
    assert_eq!(delete_args(&f).join(" "), "-D -p udp --orig-port-dst 30053");
    let f = flush(ConntrackTarget::NodePort(30053), Some("[fd00::5]:53"));
    assert_eq!(
        delete_args(&f).join(" "),
        "-D -p udp -f ipv6 --orig-port-dst 30053 --reply-src fd00::5 --reply-port-src 53"
    );
}

#[test]
fn ipv6_service_sets_family() {
    let f = flush(ConntrackTarget::Ip("fd00::10".parse().unwrap(), 53), None);
    assert!(
        delete_args(&f)
            .join(" ")
            .starts_with("-D -p udp -f ipv6 --orig-dst fd00::10")
    );
}

#[test]
fn zero_deleted_is_success_other_errors_are_not() {
    assert!(nothing_deleted(
        "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n"
    ));
    assert!(!nothing_deleted(
        "conntrack v1.4.7 (conntrack-tools): 10 flow entries have been deleted.\n"
    ));
    assert!(!nothing_deleted(
        "conntrack v1.4.7 (conntrack-tools): Operation failed: invalid parameters"
    ));
}
