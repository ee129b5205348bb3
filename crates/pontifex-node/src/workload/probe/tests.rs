use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, HTTPGetAction, HTTPHeader, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

const S: Duration = Duration::from_secs(1);

fn probe(delay: i32, period: i32, success: i32, failure: i32) -> Probe {
    Probe {
        initial_delay_seconds: Some(delay),
        period_seconds: Some(period),
        success_threshold: Some(success),
        failure_threshold: Some(failure),
        ..Default::default()
    }
}

#[test]
fn defaults_are_the_apis() {
    let t = Timings::of(&Probe::default());
    assert_eq!(
        (
            t.initial_delay,
            t.period,
            t.timeout,
            t.success_threshold,
            t.failure_threshold
        ),
        (Duration::ZERO, 10 * S, S, 1, 3)
    );
}

#[test]
fn readiness_starts_false_and_waits_for_the_initial_delay() {
    let t0 = Instant::now();
    let mut w = ProbeWorker::new(ProbeKind::Readiness, &probe(5, 2, 2, 3));
    assert!(!w.result());
    assert!(!w.due(t0 + 4 * S, t0, true));
    assert!(w.due(t0 + 5 * S, t0, true));
    assert_eq!(w.next_check(t0, t0), t0 + 5 * S);
    assert_eq!(w.record(t0 + 5 * S, true), ProbeEvent::None); // 1 of 2 successes
    assert!(!w.due(t0 + 6 * S, t0, true)); // period
    assert!(w.due(t0 + 7 * S, t0, true));
    assert_eq!(w.record(t0 + 7 * S, true), ProbeEvent::Changed(true));
    assert_eq!(w.record(t0 + 9 * S, true), ProbeEvent::None);
    // Failures flip it back only after three in a row; a success in between resets the count.
    assert_eq!(w.record(t0 + 11 * S, false), ProbeEvent::None);
    assert_eq!(w.record(t0 + 13 * S, false), ProbeEvent::None);
    assert_eq!(w.record(t0 + 15 * S, true), ProbeEvent::None);
    assert_eq!(w.record(t0 + 17 * S, false), ProbeEvent::None);
    assert_eq!(w.record(t0 + 19 * S, false), ProbeEvent::None);
    assert_eq!(w.record(t0 + 21 * S, false), ProbeEvent::Changed(false));
    // Readiness never asks for a restart and keeps probing.
    assert_eq!(w.record(t0 + 23 * S, false), ProbeEvent::None);
    assert!(w.due(t0 + 25 * S, t0, true));
}

#[test]
fn liveness_starts_true_and_restarts_after_the_failure_threshold() {
    let t0 = Instant::now();
    let mut w = ProbeWorker::new(ProbeKind::Liveness, &probe(0, 1, 5, 2));
    assert!(w.result());
    assert_eq!(w.timings().success_threshold, 1);
    assert_eq!(w.record(t0, false), ProbeEvent::None);
    assert_eq!(w.record(t0 + S, false), ProbeEvent::Restart);
    assert!(
        !w.due(t0 + 10 * S, t0, true),
        "held until the next instance"
    );
}

#[test]
fn startup_gates_the_others_and_stops_once_done() {
    let t0 = Instant::now();
    let mut startup = ProbeWorker::new(ProbeKind::Startup, &probe(0, 1, 1, 3));
    let readiness = ProbeWorker::new(ProbeKind::Readiness, &probe(0, 1, 1, 3));
    assert!(!readiness.due(t0, t0, startup.result()));
    assert!(startup.due(t0, t0, false));
    assert_eq!(startup.record(t0, true), ProbeEvent::Changed(true));
    assert!(!startup.due(t0 + 5 * S, t0, true));
    assert!(readiness.due(t0, t0, startup.result()));
    let mut failing = ProbeWorker::new(ProbeKind::Startup, &probe(0, 1, 1, 2));
    assert_eq!(failing.record(t0, false), ProbeEvent::None);
    assert_eq!(failing.record(t0 + S, false), ProbeEvent::Restart);
}

#[test]
fn ready_is_running_started_and_readiness() {
    let ready = {
        let mut w = ProbeWorker::new(ProbeKind::Readiness, &probe(0, 1, 1, 1));
        w.record(Instant::now(), true);
        w
    };
    let not_ready = ProbeWorker::new(ProbeKind::Readiness, &Probe::default());
    assert!(container_ready(true, None, None));
    assert!(!container_ready(false, None, None));
    assert!(container_ready(true, None, Some(&ready)));
    assert!(!container_ready(true, None, Some(&not_ready)));
    let unstarted = ProbeWorker::new(ProbeKind::Startup, &Probe::default());
    assert!(!container_ready(true, Some(&unstarted), None));
}

fn web() -> Container {
    Container {
        name: "web".into(),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[test]
fn checks_resolve_named_ports_hosts_and_headers() {
    let ip: IpAddr = "10.244.0.5".parse().unwrap();
    let p = Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::String("http".into()),
            path: Some("healthz".into()),
            http_headers: Some(vec![
                HTTPHeader {
                    name: "Host".into(),
                    value: "example".into(),
                },
                HTTPHeader {
                    name: "user-agent".into(),
                    value: "me".into(),
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        check_for(&p, &web(), ip, None, &[]).unwrap(),
        Check::Http {
            addr: "10.244.0.5:8080".parse().unwrap(),
            host: "example".into(),
            path: "/healthz".into(),
            headers: vec![
                ("Accept".into(), "*/*".into()),
                ("user-agent".into(), "me".into())
            ],
        }
    );
    let tcp = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(53),
            host: Some("127.0.0.1".into()),
        }),
        ..Default::default()
    };
    assert_eq!(
        check_for(&tcp, &web(), ip, None, &[]).unwrap(),
        Check::Tcp {
            addr: "127.0.0.1:53".parse().unwrap()
        }
    );
    let unknown = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("grpc".into()),
            host: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        check_for(&unknown, &web(), ip, None, &[]),
        Err(ProbeError::UnknownPort("grpc".into()))
    );
    let exec = Probe {
        exec: Some(ExecAction {
            command: Some(vec!["true".into()]),
        }),
        ..Default::default()
    };
    assert!(matches!(
        check_for(&exec, &web(), ip, None, &[]).unwrap(),
        Check::Exec { .. }
    ));
    assert!(matches!(
        check_for(&Probe::default(), &web(), ip, None, &[]),
        Err(ProbeError::Unsupported(_))
    ));
}
