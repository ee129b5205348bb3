use std::time::{Duration, Instant};

use pontifex_node::workload::logs::{self, LogLine, Stream};
use pontifex_node::workload::process::{self, SpawnSpec};
use pontifex_node::workload::supervisor::{
    BackoffConfig, Container, ContainerConfig, ContainerState, Phase, RestartPolicy,
};

use super::Netns;

fn sh(script: &str) -> Vec<std::ffi::OsString> {
    vec!["sh".into(), "-c".into(), script.into()]
}

#[tokio::test]
async fn a_command_runs_in_the_pod_netns_with_the_pod_hostname_and_logs() {
    let ns = Netns::new("proc");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    let spec = SpawnSpec {
        argv: sh(
            "hostname; echo \"$GREETING\"; echo oops >&2; ls /proc/self/ns/net -l | sed 's/.*-> //'; pwd",
        ),
        env: vec![("GREETING".into(), "hello pod".into())],
        working_dir: Some(dir.path().to_path_buf()),
        netns: Some(ns.path()),
        hostname: Some("web-7d4b9-abcde".into()),
        log_path: Some(log.clone()),
        mounts: Vec::new(),
    };
    let mut p = process::spawn(&spec).unwrap();
    let exit = p.wait().await.unwrap();
    assert_eq!(exit.code, 0);
    let raw = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<LogLine> = raw.lines().map(|l| logs::parse_entry(l).unwrap()).collect();
    let out: Vec<&str> = lines
        .iter()
        .filter(|l| l.stream == Stream::Stdout)
        .map(|l| l.content.as_str())
        .collect();
    assert_eq!(out[0], "web-7d4b9-abcde");
    assert_eq!(out[1], "hello pod");
    // The child's network namespace is the test's, not ours.
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    // /run/netns/NAME is a bind mount of the namespace: its inode is the namespace's.
    use std::os::unix::fs::MetadataExt;
    let ns_ino = std::fs::metadata(ns.path()).unwrap().ino();
    assert_eq!(out[2], format!("net:[{ns_ino}]"));
    assert_ne!(out[2], ours.to_string_lossy());
    assert_eq!(out[3], dir.path().to_string_lossy());
    assert!(
        lines
            .iter()
            .any(|l| l.stream == Stream::Stderr && l.content == "oops" && !l.partial)
    );
    // Our own hostname is untouched.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "web-7d4b9-abcde"
    );
}

#[tokio::test]
async fn a_missing_netns_or_program_is_an_error() {
    let spec = SpawnSpec {
        argv: sh("true"),
        netns: Some("/run/netns/does-not-exist-pontifex".into()),
        ..Default::default()
    };
    assert!(matches!(
        process::spawn(&spec),
        Err(process::ProcessError::Netns { .. })
    ));
    let spec = SpawnSpec {
        argv: vec!["no-such-program-pontifex".into()],
        ..Default::default()
    };
    assert!(matches!(
        process::spawn(&spec),
        Err(process::ProcessError::Spawn { .. })
    ));
}

#[tokio::test]
async fn graceful_stop_escalates_to_sigkill() {
    let spec = SpawnSpec {
        argv: sh("trap '' TERM; while true; do sleep 0.05; done"),
        ..Default::default()
    };
    let mut p = process::spawn(&spec).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // let the trap be installed
    let t = Instant::now();
    let exit = p.stop(Duration::from_millis(500)).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "stopped before the grace period: {:?}",
        t.elapsed()
    );
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    assert_eq!(exit.code, 137);

    // A program that honours SIGTERM ends at once with 143.
    let mut p = process::spawn(&SpawnSpec {
        argv: vec!["sleep".into(), "30".into()],
        ..Default::default()
    })
    .unwrap();
    let t = Instant::now();
    let exit = p.stop(Duration::from_secs(10)).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!((exit.code, exit.signal), (143, Some(libc::SIGTERM)));
}

#[tokio::test]
async fn run_captures_output_and_times_out() {
    let out = process::run(
        &SpawnSpec {
            argv: sh("echo a; echo b >&2; exit 3"),
            ..Default::default()
        },
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(out.exit.code, 3);
    assert_eq!(String::from_utf8_lossy(&out.output), "a\nb\n");
    let r = process::run(
        &SpawnSpec {
            argv: sh("sleep 10"),
            ..Default::default()
        },
        Duration::from_millis(200),
    )
    .await;
    assert!(matches!(r, Err(process::ProcessError::Timeout(_))));
}

fn config(dir: &std::path::Path, script: &str, policy: RestartPolicy) -> ContainerConfig {
    ContainerConfig {
        spawn: SpawnSpec {
            argv: sh(script),
            ..Default::default()
        },
        log_dir: dir.to_path_buf(),
        restart_policy: policy,
        backoff: BackoffConfig {
            base: Duration::from_millis(200),
            cap: Duration::from_millis(800),
        },
        id_prefix: "pontifex://uid/c".into(),
        restart_grace: Duration::from_secs(1),
        shim: super::shim_argv(),
    }
}

#[tokio::test]
async fn a_crashing_command_is_restarted_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let c = Container::start(config(
        dir.path(),
        "echo run; exit 2",
        RestartPolicy::Always,
    ));
    let mut rx = c.state();
    let t0 = Instant::now();
    let mut seen_backoff = Vec::new();
    let mut starts = Vec::new();
    while starts.len() < 4 {
        rx.changed().await.unwrap();
        let s = rx.borrow().clone();
        match s.phase {
            Phase::Running { .. } if starts.len() as i32 == s.restart_count => {
                starts.push(t0.elapsed())
            }
            Phase::BackOff { delay } => {
                assert_eq!(
                    s.last_termination.as_ref().unwrap().exit_code,
                    2,
                    "{:?}",
                    s.last_termination
                );
                assert_eq!(s.last_termination.as_ref().unwrap().reason, "Error");
                if seen_backoff.last() != Some(&delay) {
                    seen_backoff.push(delay);
                }
            }
            _ => {}
        }
    }
    // Immediate restart, then 200 ms, then 400 ms (a 800 ms cap not reached yet).
    let ms = |d: u64| Duration::from_millis(d);
    assert_eq!(seen_backoff[..3], [ms(0), ms(200), ms(400)]);
    assert!(starts[3] >= ms(600), "restarts came too early: {starts:?}");
    let last = c.stop(Duration::from_secs(1)).await;
    assert!(last.restart_count >= 3);
    // Each instance has its own log file.
    for n in 0..3 {
        let raw = std::fs::read_to_string(logs::log_path(dir.path(), n)).unwrap();
        assert!(raw.ends_with(" stdout F run\n"), "{raw}");
    }
}

#[tokio::test]
async fn restart_policies_on_success_and_failure() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (policy, script, restarts)) in [
        (RestartPolicy::OnFailure, "exit 0", false),
        (RestartPolicy::Never, "exit 1", false),
        (RestartPolicy::OnFailure, "exit 1", true),
    ]
    .into_iter()
    .enumerate()
    {
        let c = Container::start(config(&dir.path().join(i.to_string()), script, policy));
        let mut rx = c.state();
        let s = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                rx.changed().await.unwrap();
                let s = rx.borrow().clone();
                if matches!(s.phase, Phase::Exited | Phase::BackOff { .. }) {
                    return s;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(
            matches!(s.phase, Phase::BackOff { .. }),
            restarts,
            "{policy:?} {script}"
        );
        let t = s.last_termination.unwrap();
        assert_eq!(
            t.reason,
            if script == "exit 0" {
                "Completed"
            } else {
                "Error"
            }
        );
        c.stop(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn a_liveness_restart_kills_and_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let c = Container::start(config(dir.path(), "exec sleep 30", RestartPolicy::Always));
    let mut rx = c.state();
    rx.wait_for(|s| matches!(s.phase, Phase::Running { .. }))
        .await
        .unwrap();
    c.restart().await;
    let s = tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|s| s.restart_count == 1 && matches!(s.phase, Phase::Running { .. })),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert_eq!(s.last_termination.unwrap().exit_code, 143);
    let end = c.stop(Duration::from_secs(1)).await;
    assert_eq!(end.phase, Phase::Exited);
}

/// Runs a supervisor in a runtime of its own on a thread until `until` holds, then drops the runtime
/// with the task in it: what an agent killed with SIGKILL leaves behind (the shim's child handle is
/// dropped, nothing is stopped).
fn agent_that_dies(
    config: ContainerConfig,
    until: impl Fn(&ContainerState) -> bool + Send + 'static,
) -> ContainerState {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let c = Container::start(config);
            let mut rx = c.state();
            let s = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| until(s)))
                .await
                .expect("state reached")
                .unwrap()
                .clone();
            std::mem::forget(c);
            s
        })
    })
    .join()
    .unwrap()
}

fn running(s: &ContainerState) -> Option<(u32, jiff::Timestamp, String)> {
    match &s.phase {
        Phase::Running {
            pid,
            started_at,
            id,
            ..
        } => Some((*pid, *started_at, id.clone())),
        _ => None,
    }
}

#[tokio::test]
async fn a_restarted_supervisor_adopts_the_running_container_and_its_logs_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let script = "while true; do echo tick; sleep 0.05; done";
    let cfg = config(dir.path(), script, RestartPolicy::Always);
    let before = agent_that_dies(cfg.clone(), |s| matches!(s.phase, Phase::Running { .. }));
    let (pid, started_at, id) = running(&before).unwrap();
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "container outlived its agent"
    );
    let log = logs::log_path(dir.path(), 0);
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        std::fs::metadata(&log).unwrap().len() > size,
        "the shim keeps logging while no agent runs"
    );

    // A new agent adopts it: same pid, start time, id and restart count; nothing was restarted.
    let c = Container::start(cfg);
    let mut rx = c.state();
    let s = rx
        .wait_for(|s| matches!(s.phase, Phase::Running { .. }))
        .await
        .unwrap()
        .clone();
    assert_eq!(running(&s).unwrap(), (pid, started_at, id));
    assert_eq!(s.restart_count, 0);

    // It keeps supervising: the adopted process dies, the exit is read from the shim's record and the
    // container restarts.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let s = tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|s| s.restart_count == 1 && matches!(s.phase, Phase::Running { .. })),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    let t = s.last_termination.clone().unwrap();
    assert_eq!((t.exit_code, t.signal), (137, Some(9)));
    assert_ne!(running(&s).unwrap().0, pid);
    let end = c.stop(Duration::from_secs(1)).await;
    assert_eq!(end.phase, Phase::Exited);
    // Stopped for good: nothing is left running.
    assert!(
        !std::path::Path::new(&format!("/proc/{}", running(&s).unwrap().0)).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", running(&s).unwrap().0))
                .is_ok_and(|st| st.contains(") Z "))
    );
}

#[tokio::test]
async fn a_container_that_ended_while_no_agent_ran_is_judged_by_its_exit_record() {
    let dir = tempfile::tempdir().unwrap();
    // Never: an exit while the agent is away must not start it again, and must not be lost.
    let cfg = config(dir.path(), "sleep 0.3; exit 3", RestartPolicy::Never);
    let before = agent_that_dies(cfg.clone(), |s| matches!(s.phase, Phase::Running { .. }));
    let (_, started_at, id) = running(&before).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let c = Container::start(cfg.clone());
    let mut rx = c.state();
    let s = tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|s| s.phase == Phase::Exited),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    let t = s.last_termination.unwrap();
    assert_eq!((t.exit_code, t.reason.as_str()), (3, "Error"));
    assert_eq!((t.id, t.started_at), (id, started_at));
    assert_eq!(s.restart_count, 0);
    // And a third agent still knows it finished.
    drop(c);
    let c = Container::start(cfg);
    let mut rx = c.state();
    let s = rx
        .wait_for(|s| s.phase == Phase::Exited)
        .await
        .unwrap()
        .clone();
    assert_eq!(s.last_termination.unwrap().exit_code, 3);
}
