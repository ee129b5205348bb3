//! The pod status the kubelet would report, computed from the runtime state (pure: the caller passes
//! `now` and the pod with its previous status).
//!
//! - `phase` by the kubelet's `getPhase`: Pending while a container waits for its first start, Running
//!   while one runs (or all exited and will restart), Succeeded when all exited 0 and none restarts, Failed
//!   when all exited, one with an error, under `restartPolicy: Never`.
//! - conditions PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled; a
//!   condition keeps its `lastTransitionTime` while its status does not change. Ready also needs every
//!   `readinessGate` condition True. A terminating pod (deletionTimestamp) keeps reporting readiness from
//!   its probes as the kubelet does; its endpoints become `serving`+`terminating` until containers exit.
//! - containerStatuses with ids `pontifex://…`, waiting (ContainerCreating, CrashLoopBackOff), running,
//!   terminated (Completed, Error, StartError), lastState, ready, started, restartCount.
//!
//! Not modelled: init and ephemeral containers, resize status, exact QoS class (BestEffort or Burstable only).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::supervisor::{ContainerState, Phase, RestartPolicy, Termination};

/// What the runtime knows about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    /// The supervisor's state.
    pub state: ContainerState,
    /// Ready (see [`super::probe::container_ready`]).
    pub ready: bool,
    /// Started: running and past its startup probe.
    pub started: bool,
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct StatusInput<'a> {
    /// The pod: spec, metadata and its current status (for transition times and startTime).
    pub pod: &'a Pod,
    /// Whether the pod's sandbox (network namespace, address) is set up.
    pub sandbox_ready: bool,
    /// Containers by name; a container not listed has not been created yet.
    pub containers: BTreeMap<String, ContainerView>,
    /// The pod's IPs, primary first.
    pub pod_ips: Vec<String>,
    /// The node's IPs, primary first.
    pub host_ips: Vec<String>,
    /// Now.
    pub now: jiff::Timestamp,
}

/// A duration as Go prints it (`10s`, `1m20s`, `5m0s`, `200ms`), for kubelet-identical messages.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    let whole = d.as_secs();
    let (h, m) = (whole / 3600, (whole % 3600) / 60);
    let s = secs - (h * 3600 + m * 60) as f64;
    let s = if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{}s", s)
    };
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

fn terminated(t: &Termination) -> ApiState {
    ApiState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(t.id.clone()),
            exit_code: t.exit_code,
            signal: t.signal,
            reason: Some(t.reason.clone()),
            message: t.message.clone(),
            started_at: Some(Time(t.started_at)),
            finished_at: Some(Time(t.finished_at)),
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: Option<String>) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

fn container_status(
    pod: &Pod,
    name: &str,
    image: &str,
    view: Option<&ContainerView>,
) -> ContainerStatus {
    let mut cs = ContainerStatus {
        name: name.into(),
        image: image.into(),
        image_id: image.into(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(waiting("ContainerCreating", None)),
        ..Default::default()
    };
    let Some(view) = view else { return cs };
    let s = &view.state;
    cs.restart_count = s.restart_count;
    let last = s.last_termination.as_ref();
    match &s.phase {
        Phase::Creating => {}
        Phase::Running { id, started_at, .. } => {
            cs.container_id = Some(id.clone());
            cs.state = Some(ApiState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..Default::default()
            });
            cs.last_state = last.map(terminated);
            cs.ready = view.ready;
            cs.started = Some(view.started);
        }
        Phase::BackOff { delay } if !delay.is_zero() => {
            let meta = &pod.metadata;
            let message = format!(
                "back-off {} restarting failed container={name} pod={}_{}({})",
                go_duration(*delay),
                meta.name.as_deref().unwrap_or(""),
                meta.namespace.as_deref().unwrap_or(""),
                meta.uid.as_deref().unwrap_or(""),
            );
            cs.container_id = last.map(|t| t.id.clone());
            cs.state = Some(waiting("CrashLoopBackOff", Some(message)));
            cs.last_state = last.map(terminated);
        }
        Phase::BackOff { .. } | Phase::Exited => {
            if let Some(t) = last {
                cs.container_id = Some(t.id.clone());
                cs.state = Some(terminated(t));
            }
        }
    }
    cs
}

/// The kubelet's `getPhase` for regular containers.
fn phase(statuses: &[ContainerStatus], policy: RestartPolicy) -> &'static str {
    let (mut running, mut waiting_n, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for cs in statuses {
        let st = cs.state.as_ref();
        if st.is_some_and(|s| s.running.is_some()) {
            running += 1;
        } else if let Some(t) = st.and_then(|s| s.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if cs
            .last_state
            .as_ref()
            .is_some_and(|l| l.terminated.is_some())
        {
            stopped += 1; // waiting to restart after a run
        } else {
            waiting_n += 1;
        }
    }
    if waiting_n > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if policy == RestartPolicy::Always {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == RestartPolicy::Never {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

fn condition(
    old: &[PodCondition],
    now: jiff::Timestamp,
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    let status = if status { "True" } else { "False" };
    let kept = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone());
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(String::from),
        message,
        last_transition_time: Some(kept.unwrap_or(Time(now))),
        last_probe_time: None,
        observed_generation: None,
    }
}

/// Computes the pod's status.
pub fn pod_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let policy = RestartPolicy::from_spec(spec.restart_policy.as_deref());

    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            container_status(
                pod,
                &c.name,
                c.image.as_deref().unwrap_or(""),
                input.containers.get(&c.name),
            )
        })
        .collect();
    let phase = phase(&statuses, policy);

    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let now = input.now;
    let completed = phase == "Succeeded";
    let (cr_ok, cr_reason, cr_message) = if completed {
        (false, Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let gates_unready: Vec<&str> = spec
        .readiness_gates
        .iter()
        .flatten()
        .map(|g| g.condition_type.as_str())
        .filter(|t| {
            !old_conditions
                .iter()
                .any(|c| &c.type_ == t && c.status == "True")
        })
        .collect();
    let (ready_ok, ready_reason, ready_message) = if !cr_ok || gates_unready.is_empty() {
        (cr_ok, cr_reason, cr_message.clone())
    } else {
        (
            false,
            Some("ReadinessGatesNotReady"),
            Some(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                gates_unready[0]
            )),
        )
    };

    let mut conditions = vec![
        condition(
            &old_conditions,
            now,
            "PodReadyToStartContainers",
            input.sandbox_ready,
            None,
            None,
        ),
        condition(&old_conditions, now, "Initialized", true, None, None),
        condition(
            &old_conditions,
            now,
            "Ready",
            ready_ok,
            ready_reason,
            ready_message,
        ),
        condition(
            &old_conditions,
            now,
            "ContainersReady",
            cr_ok,
            cr_reason,
            cr_message,
        ),
    ];
    match old_conditions.iter().find(|c| c.type_ == "PodScheduled") {
        Some(c) => conditions.push(c.clone()),
        None => conditions.push(condition(
            &old_conditions,
            now,
            "PodScheduled",
            true,
            None,
            None,
        )),
    }
    // Conditions written by others (readiness gates' own types) are kept as they are.
    let ours = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    conditions.extend(
        old_conditions
            .iter()
            .filter(|c| !ours.contains(&c.type_.as_str()))
            .cloned(),
    );

    let best_effort = spec.containers.iter().all(|c| {
        c.resources.as_ref().is_none_or(|r| {
            r.requests.as_ref().is_none_or(|m| m.is_empty())
                && r.limits.as_ref().is_none_or(|m| m.is_empty())
        })
    });

    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        container_statuses: Some(statuses),
        pod_ip: input.pod_ips.first().cloned(),
        pod_ips: (!input.pod_ips.is_empty()).then(|| {
            input
                .pod_ips
                .iter()
                .map(|ip| PodIP { ip: ip.clone() })
                .collect()
        }),
        host_ip: input.host_ips.first().cloned(),
        host_ips: (!input.host_ips.is_empty()).then(|| {
            input
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect()
        }),
        start_time: old.start_time.clone().or(Some(Time(now))),
        qos_class: Some(
            if best_effort {
                "BestEffort"
            } else {
                "Burstable"
            }
            .into(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
