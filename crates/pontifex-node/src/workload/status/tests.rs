use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, Pod, PodCondition, PodReadinessGate, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;
use crate::workload::supervisor::{ContainerState, Phase, Termination};

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn pod(containers: &[&str], policy: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-1".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            containers: containers
                .iter()
                .map(|n| Container {
                    name: n.to_string(),
                    image: Some("nginx:1.19".into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn running(restarts: i32) -> ContainerState {
    ContainerState {
        phase: Phase::Running {
            id: format!("pontifex://u1/c-{restarts}"),
            pid: 42,
            started_at: ts("2025-01-01T00:00:10Z"),
            started: Instant::now(),
        },
        restart_count: restarts,
        last_termination: (restarts > 0).then(|| term(1)),
    }
}

fn term(code: i32) -> Termination {
    Termination {
        id: "pontifex://u1/c-0".into(),
        exit_code: code,
        signal: None,
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
        message: None,
        started_at: ts("2025-01-01T00:00:01Z"),
        finished_at: ts("2025-01-01T00:00:02Z"),
    }
}

fn view(state: ContainerState, ready: bool) -> ContainerView {
    ContainerView {
        started: matches!(state.phase, Phase::Running { .. }),
        state,
        ready,
    }
}

fn input<'a>(pod: &'a Pod, containers: Vec<(&str, ContainerView)>, now: &str) -> StatusInput<'a> {
    StatusInput {
        pod,
        sandbox_ready: true,
        containers: containers
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
        pod_ips: vec!["10.244.1.5".into()],
        host_ips: vec!["172.31.0.2".into()],
        now: ts(now),
    }
}

fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
    s.conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == t)
        .unwrap()
}

#[test]
fn pending_while_creating() {
    let p = pod(&["a", "b"], "Always");
    let s = pod_status(&input(
        &p,
        vec![("a", view(running(0), true))],
        "2025-01-01T00:01:00Z",
    ));
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let b = &s.container_statuses.as_ref().unwrap()[1];
    assert_eq!(
        b.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("ContainerCreating")
    );
    let ready = cond(&s, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("False", Some("ContainersNotReady"))
    );
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [b]")
    );
    assert_eq!(s.pod_ip.as_deref(), Some("10.244.1.5"));
    assert_eq!(s.host_ips.as_ref().unwrap()[0].ip, "172.31.0.2");
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
}

#[test]
fn running_and_ready_with_transition_times_kept() {
    let mut p = pod(&["a"], "Always");
    let s1 = pod_status(&input(
        &p,
        vec![("a", view(running(0), false))],
        "2025-01-01T00:01:00Z",
    ));
    assert_eq!(s1.phase.as_deref(), Some("Running"));
    assert_eq!(cond(&s1, "Ready").status, "False");
    p.status = Some(s1.clone());
    let s2 = pod_status(&input(
        &p,
        vec![("a", view(running(0), true))],
        "2025-01-01T00:02:00Z",
    ));
    let ready = cond(&s2, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.last_transition_time.clone()),
        ("True", Some(Time(ts("2025-01-01T00:02:00Z"))))
    );
    // Unchanged conditions keep their time; startTime is kept.
    assert_eq!(
        cond(&s2, "Initialized").last_transition_time,
        Some(Time(ts("2025-01-01T00:01:00Z")))
    );
    assert_eq!(
        cond(&s2, "PodScheduled").last_transition_time,
        Some(Time(ts("2025-01-01T00:01:00Z")))
    );
    assert_eq!(s2.start_time, Some(Time(ts("2025-01-01T00:01:00Z"))));
    let cs = &s2.container_statuses.as_ref().unwrap()[0];
    assert_eq!(cs.container_id.as_deref(), Some("pontifex://u1/c-0"));
    assert!(cs.ready && cs.started == Some(true));
    assert_eq!(
        cs.state
            .as_ref()
            .unwrap()
            .running
            .as_ref()
            .unwrap()
            .started_at,
        Some(Time(ts("2025-01-01T00:00:10Z")))
    );
}

#[test]
fn crash_loop_is_running_with_waiting_reason_and_last_state() {
    let p = pod(&["a"], "Always");
    let state = ContainerState {
        phase: Phase::BackOff {
            delay: Duration::from_secs(20),
        },
        restart_count: 2,
        last_termination: Some(term(1)),
    };
    let s = pod_status(&input(
        &p,
        vec![("a", view(state, false))],
        "2025-01-01T00:01:00Z",
    ));
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    let w = cs.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        w.message.as_deref(),
        Some("back-off 20s restarting failed container=a pod=web-1_default(u1)")
    );
    let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(cs.restart_count, 2);
    // A restarted, running container shows its previous end too.
    let s = pod_status(&input(
        &p,
        vec![("a", view(running(1), true))],
        "2025-01-01T00:01:00Z",
    ));
    assert!(
        s.container_statuses.unwrap()[0]
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .is_some()
    );
}

#[test]
fn terminal_phases_follow_the_restart_policy() {
    let exited = |code| ContainerState {
        phase: Phase::Exited,
        restart_count: 0,
        last_termination: Some(term(code)),
    };
    for (policy, codes, want) in [
        ("Never", vec![0, 0], "Succeeded"),
        ("OnFailure", vec![0, 0], "Succeeded"),
        ("Never", vec![0, 1], "Failed"),
        ("OnFailure", vec![0, 1], "Running"),
        ("Always", vec![0, 0], "Running"),
    ] {
        let p = pod(&["a", "b"], policy);
        let views = vec![
            ("a", view(exited(codes[0]), false)),
            ("b", view(exited(codes[1]), false)),
        ];
        let s = pod_status(&input(&p, views, "2025-01-01T00:01:00Z"));
        assert_eq!(s.phase.as_deref(), Some(want), "{policy} {codes:?}");
        if want == "Succeeded" {
            assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
            let t = s.container_statuses.as_ref().unwrap()[0]
                .state
                .clone()
                .unwrap()
                .terminated
                .unwrap();
            assert_eq!((t.reason.as_deref(), t.exit_code), (Some("Completed"), 0));
        }
    }
}

#[test]
fn readiness_gates_hold_ready_but_not_containers_ready() {
    let mut p = pod(&["a"], "Always");
    p.spec.as_mut().unwrap().readiness_gates = Some(vec![PodReadinessGate {
        condition_type: "example.com/lb".into(),
    }]);
    let s = pod_status(&input(
        &p,
        vec![("a", view(running(0), true))],
        "2025-01-01T00:01:00Z",
    ));
    assert_eq!(cond(&s, "ContainersReady").status, "True");
    assert_eq!(
        (
            cond(&s, "Ready").status.as_str(),
            cond(&s, "Ready").reason.as_deref()
        ),
        ("False", Some("ReadinessGatesNotReady"))
    );
    p.status = Some(PodStatus {
        conditions: Some(vec![PodCondition {
            type_: "example.com/lb".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let s = pod_status(&input(
        &p,
        vec![("a", view(running(0), true))],
        "2025-01-01T00:01:00Z",
    ));
    assert_eq!(cond(&s, "Ready").status, "True");
    assert_eq!(
        cond(&s, "example.com/lb").status,
        "True",
        "foreign conditions are kept"
    );
}

#[test]
fn go_durations() {
    assert_eq!(go_duration(Duration::from_secs(10)), "10s");
    assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
    assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
    assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
}
