use super::*;
use k8s_openapi::api::core::v1::{
    Container as ContainerSpec, ContainerPort, GRPCAction, HTTPGetAction, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

const SHIFT: rootless::PortShift = rootless::PortShift {
    unprivileged_start: 1024,
    shift: 10_000,
};

fn container() -> ContainerSpec {
    ContainerSpec {
        name: "web".into(),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: 80,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: 8081,
                ..ContainerPort::default()
            },
        ]),
        ..ContainerSpec::default()
    }
}

#[test]
fn rootless_probes_follow_shifted_numeric_and_named_ports() {
    let probe = Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(80),
            ..HTTPGetAction::default()
        }),
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("http".into()),
            ..TCPSocketAction::default()
        }),
        grpc: Some(GRPCAction {
            port: 8081,
            service: None,
        }),
        ..Probe::default()
    };
    let (p, c) = shift_probe(&probe, &container(), SHIFT);
    assert_eq!(p.http_get.unwrap().port, IntOrString::Int(10_080));
    // A named port stays a name; the container's port it names moved.
    assert_eq!(
        p.tcp_socket.unwrap().port,
        IntOrString::String("http".into())
    );
    let ports: Vec<i32> = c.ports.unwrap().iter().map(|p| p.container_port).collect();
    assert_eq!(ports, [10_080, 8081]);
    // Unprivileged ports are left alone.
    assert_eq!(p.grpc.unwrap().port, 8081);
}

#[test]
fn a_rootless_sandbox_is_reached_at_the_loopback_image() {
    let s = Sandbox {
        netns: None,
        ip: Ipv4Addr::new(10, 244, 0, 7),
        ip6: None,
        owned: true,
        rootless: Some(SHIFT),
    };
    assert_eq!(s.reach_ip(), Ipv4Addr::new(127, 244, 0, 7));
    let lab = Sandbox {
        rootless: None,
        netns: Some("pfx-pod-x".into()),
        ..s
    };
    assert_eq!(lab.reach_ip(), Ipv4Addr::new(10, 244, 0, 7));
}

#[test]
fn a_dual_stack_sandbox_lists_its_ipv4_address_first() {
    let s = Sandbox {
        netns: Some("pfx-pod-x".into()),
        ip: Ipv4Addr::new(10, 244, 0, 7),
        ip6: Some("fd00:10:244::7".parse().unwrap()),
        owned: true,
        rootless: None,
    };
    assert_eq!(s.ips(), ["10.244.0.7", "fd00:10:244::7"]);
    let single = Sandbox { ip6: None, ..s };
    assert_eq!(single.ips(), ["10.244.0.7"]);
}
