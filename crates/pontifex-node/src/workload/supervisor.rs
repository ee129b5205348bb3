//! One container's life: start its process, restart it per the pod's `restartPolicy` with the kubelet's
//! CrashLoopBackOff delays, restart it on request (liveness/startup failure), stop it gracefully.
//!
//! The decisions — restart or not, how long to back off — are the pure [`should_restart`] and [`Backoff`];
//! [`Container`] is a thin task around them that publishes a [`ContainerState`] on a `watch` channel for
//! the status computation. Probes are not run here: the agent runs them and calls [`Container::restart`].
//!
//! Each instance runs under a [`shim`] and every change is recorded in the container's state file
//! ([`state`]). A supervisor started where a record already exists (the agent restarted) adopts the
//! instance still running — same pid, same `startedAt`, same restart count — or, when it ended
//! meanwhile, reads its exit record and lets the restart policy decide, as if it had been watching.
//! The back-off history is not recorded: after an agent restart the next restart is immediate (the
//! kubelet's back-off is in memory too).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use std::ffi::OsString;

use super::logs;
use super::process::{self, SpawnSpec};
use super::shim::{self, ShimRequest};
use super::state::{self, ContainerRecord, Ended, ExitRecord, Instance};

/// A pod's `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Restart whatever the exit code (the default).
    #[default]
    Always,
    /// Restart after a non-zero exit only.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// From the API string; anything unknown is the default, `Always`.
    pub fn from_spec(s: Option<&str>) -> Self {
        match s {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }
}

/// Whether a container that exited with `exit_code` is started again.
pub fn should_restart(policy: RestartPolicy, exit_code: i32) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => exit_code != 0,
        RestartPolicy::Never => false,
    }
}

/// CrashLoopBackOff timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first delay (kubelet: 10 s).
    pub base: Duration,
    /// The longest delay (kubelet: 5 min).
    pub cap: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(300),
        }
    }
}

/// The kubelet's per-container back-off (its `flowcontrol.Backoff`): the first restart is immediate, the
/// next waits `base`, then the wait doubles up to `cap`; a container that ran for more than twice the cap
/// since its last restart (10 min by default) starts over with an immediate restart.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    /// The current delay and when it was last raised (a restart).
    entry: Option<(Duration, Instant)>,
}

impl Backoff {
    /// A back-off with no history.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            entry: None,
        }
    }

    fn expired(&self, at: Instant, last: Instant) -> bool {
        at.saturating_duration_since(last) > self.config.cap * 2
    }

    /// How long to wait, counted from `finished_at`, before restarting a container that exited then.
    pub fn delay(&self, finished_at: Instant) -> Duration {
        match self.entry {
            Some((d, last)) if !self.expired(finished_at, last) => d,
            _ => Duration::ZERO,
        }
    }

    /// Records a restart at `now`, raising the next delay.
    pub fn record_restart(&mut self, now: Instant) {
        let next = match self.entry {
            Some((d, last)) if !self.expired(now, last) => (d * 2).min(self.config.cap),
            _ => self.config.base.min(self.config.cap),
        };
        self.entry = Some((next, now));
    }
}

/// A finished container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The instance's container id (`pontifex://…`).
    pub id: String,
    /// Exit code (128 + signal for a signal).
    pub exit_code: i32,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// `Completed` (exit 0), `Error`, or `StartError` when the program could not be started.
    pub reason: String,
    /// Why it could not start, for `StartError`.
    pub message: Option<String>,
    /// When it started.
    pub started_at: jiff::Timestamp,
    /// When it ended.
    pub finished_at: jiff::Timestamp,
}

/// Where a container is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet.
    Creating,
    /// Running.
    Running {
        /// The instance's container id.
        id: String,
        /// Its process id.
        pid: u32,
        /// When it started (wall clock, for the status).
        started_at: jiff::Timestamp,
        /// When it started (monotonic, for probe delays).
        started: Instant,
    },
    /// Exited; waiting `delay` before the next start (CrashLoopBackOff when non-zero).
    BackOff {
        /// The delay being waited.
        delay: Duration,
    },
    /// Exited for good (policy) or stopped.
    Exited,
}

/// What the status computation needs of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// Now.
    pub phase: Phase,
    /// How many times it was started again.
    pub restart_count: i32,
    /// The previous instance's end (also the final one's when `phase` is `Exited`).
    pub last_termination: Option<Termination>,
}

/// What a container runs and how it is restarted.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// Process settings; `log_path` is replaced by `<log_dir>/<restart count>.log`.
    pub spawn: SpawnSpec,
    /// Directory of this container's logs (see [`logs::log_path`]), state file and exit records (see
    /// [`state`]); what a restarted agent adopts from.
    pub log_dir: PathBuf,
    /// The program and arguments that run the container shim ([`shim::main`]), e.g.
    /// `[pontifex, container-shim]`.
    pub shim: Vec<OsString>,
    /// The pod's restart policy.
    pub restart_policy: RestartPolicy,
    /// Back-off timings.
    pub backoff: BackoffConfig,
    /// Container ids are `<id_prefix>-<restart count>`, e.g. `pontifex://<pod uid>/<container>`.
    pub id_prefix: String,
    /// Grace period used when a liveness failure restarts the container.
    pub restart_grace: Duration,
}

enum Command {
    Restart,
    Stop {
        grace: Duration,
        done: oneshot::Sender<()>,
    },
}

/// A running container supervisor (a tokio task). Dropping it leaves the task running; call
/// [`Container::stop`].
#[derive(Debug)]
pub struct Container {
    state: watch::Receiver<ContainerState>,
    commands: mpsc::Sender<Command>,
}

impl Container {
    /// Starts the supervisor (must be called inside a tokio runtime).
    pub fn start(config: ContainerConfig) -> Container {
        let (tx, rx) = watch::channel(ContainerState {
            phase: Phase::Creating,
            restart_count: 0,
            last_termination: None,
        });
        let (ctx, crx) = mpsc::channel(8);
        tokio::spawn(supervise(config, tx, crx));
        Container {
            state: rx,
            commands: ctx,
        }
    }

    /// The state, updated on every change.
    pub fn state(&self) -> watch::Receiver<ContainerState> {
        self.state.clone()
    }

    /// Kills the running instance (graceful, with `restart_grace`) and lets the restart policy decide, as
    /// the kubelet does on a liveness or startup probe failure.
    pub async fn restart(&self) {
        let _ = self.commands.send(Command::Restart).await;
    }

    /// Stops the container (SIGTERM, SIGKILL after `grace`) and ends the supervisor. Returns the final state.
    pub async fn stop(self, grace: Duration) -> ContainerState {
        let (done, wait) = oneshot::channel();
        if self
            .commands
            .send(Command::Stop { grace, done })
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
        self.state.borrow().clone()
    }
}

impl From<Ended> for Termination {
    fn from(e: Ended) -> Self {
        Termination {
            id: e.id,
            exit_code: e.exit_code,
            signal: e.signal,
            reason: e.reason,
            message: e.message,
            started_at: e.started_at,
            finished_at: e.finished_at,
        }
    }
}

/// What an instance's exit record (or its absence) says about how it ended.
fn ended_from(instance: &Instance, exit: Option<ExitRecord>) -> Ended {
    match exit {
        Some(x) => Ended {
            id: instance.id.clone(),
            exit_code: x.code,
            signal: x.signal,
            reason: if x.code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: instance.started_at,
            finished_at: x.finished_at,
        },
        // The shim was killed before it could record the exit (the kubelet's ContainerStatusUnknown).
        None => Ended {
            id: instance.id.clone(),
            exit_code: 137,
            signal: None,
            reason: "ContainerStatusUnknown".into(),
            message: Some("the container's exit status could not be learnt".into()),
            started_at: instance.started_at,
            finished_at: jiff::Timestamp::now(),
        },
    }
}

/// The monotonic instant that lies as far back as the wall-clock `at` (for adopted instances).
fn instant_of(at: jiff::Timestamp) -> Instant {
    let ago = Duration::try_from(jiff::Timestamp::now().duration_since(at)).unwrap_or_default();
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

/// A watched instance: our child (reaped by waiting), or adopted from an earlier agent (polled).
struct Watched {
    instance: Instance,
    restart_count: i32,
    child: Option<tokio::process::Child>,
}

impl Watched {
    /// Waits for the shim to exit, then reads how the container ended.
    async fn ended(&mut self, dir: &std::path::Path) -> Ended {
        match &mut self.child {
            Some(c) => {
                let _ = c.wait().await;
            }
            None => {
                while self.instance.shim.alive() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let exit = state::read::<ExitRecord>(&state::exit_path(dir, self.restart_count))
            .ok()
            .flatten();
        if exit.is_none() && self.instance.process.alive() {
            // No shim any more to collect its output or exit: end the orphaned container.
            process::signal_group(self.instance.process.pid, libc::SIGKILL);
        }
        ended_from(&self.instance, exit)
    }

    /// SIGTERM to the container's group, SIGKILL after `grace`; returns how it ended.
    async fn stop(&mut self, dir: &std::path::Path, grace: Duration) -> Ended {
        if self.instance.process.alive() {
            process::signal_group(self.instance.process.pid, libc::SIGTERM);
        }
        match tokio::time::timeout(grace, self.ended(dir)).await {
            Ok(e) => e,
            Err(_) => {
                tracing::info!(container = %self.instance.id, ?grace, "grace period over, sending SIGKILL");
                if self.instance.process.alive() {
                    process::signal_group(self.instance.process.pid, libc::SIGKILL);
                }
                self.ended(dir).await
            }
        }
    }
}

enum Next {
    /// Start instance number `record.restart_count`.
    Start,
    /// Watch a running instance.
    Watch(Watched),
    /// An instance ended: record it, and restart or not.
    Ended(Ended),
    /// Nothing runs any more; wait for the stop.
    Finished,
}

fn save(dir: &std::path::Path, record: &ContainerRecord) {
    if let Err(e) = state::write(&state::state_path(dir), record) {
        tracing::warn!(error = %e, "recording container state failed");
    }
}

/// Where to begin from what an earlier agent recorded.
fn resume(config: &ContainerConfig, record: &ContainerRecord) -> Next {
    if let Some(instance) = record.running.clone() {
        if instance.shim.alive() {
            tracing::info!(container = %instance.id, pid = instance.process.pid, "adopting a running container");
            return Next::Watch(Watched {
                instance,
                restart_count: record.restart_count,
                child: None,
            });
        }
        let exit =
            state::read::<ExitRecord>(&state::exit_path(&config.log_dir, record.restart_count))
                .ok()
                .flatten();
        return Next::Ended(ended_from(&instance, exit));
    }
    let current = format!("{}-{}", config.id_prefix, record.restart_count);
    match &record.last_termination {
        _ if record.finished => Next::Finished,
        // The agent went away during a back-off: decide (and wait) again.
        Some(last) if last.id == current => Next::Ended(last.clone()),
        // Never started, or the count was raised but the instance not started yet.
        _ => Next::Start,
    }
}

async fn wait_for_stop(commands: &mut mpsc::Receiver<Command>) {
    while let Some(cmd) = commands.recv().await {
        if let Command::Stop { done, .. } = cmd {
            let _ = done.send(());
            return;
        }
    }
}

async fn supervise(
    config: ContainerConfig,
    state: watch::Sender<ContainerState>,
    mut commands: mpsc::Receiver<Command>,
) {
    let dir = config.log_dir.clone();
    let mut record: ContainerRecord = match state::read(&state::state_path(&dir)) {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable container state; starting afresh");
            ContainerRecord::default()
        }
    };
    state.send_modify(|s| {
        s.restart_count = record.restart_count;
        s.last_termination = record.last_termination.clone().map(Termination::from);
    });
    let mut backoff = Backoff::new(config.backoff);
    let mut next = resume(&config, &record);
    loop {
        next = match next {
            Next::Start => {
                let n = record.restart_count;
                let id = format!("{}-{n}", config.id_prefix);
                let mut spec = config.spawn.clone();
                spec.log_path = Some(logs::log_path(&dir, n));
                let request = ShimRequest {
                    spawn: spec,
                    exit_path: state::exit_path(&dir, n),
                };
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::remove_file(&request.exit_path);
                let started_at = jiff::Timestamp::now();
                match shim::start(&config.shim, &request, &dir.join("shim.log")).await {
                    Ok(started) => {
                        let instance = Instance {
                            id,
                            shim: started.shim,
                            process: started.process,
                            started_at,
                        };
                        record.running = Some(instance.clone());
                        save(&dir, &record);
                        Next::Watch(Watched {
                            instance,
                            restart_count: n,
                            child: Some(started.child),
                        })
                    }
                    Err(e) => {
                        tracing::warn!(container = %id, error = %e, "container failed to start");
                        Next::Ended(Ended {
                            id,
                            exit_code: 128,
                            signal: None,
                            reason: "StartError".into(),
                            message: Some(e.to_string()),
                            started_at,
                            finished_at: jiff::Timestamp::now(),
                        })
                    }
                }
            }
            Next::Watch(mut w) => {
                let instance = w.instance.clone();
                state.send_modify(|s| {
                    s.phase = Phase::Running {
                        id: instance.id.clone(),
                        pid: instance.process.pid,
                        started_at: instance.started_at,
                        started: instant_of(instance.started_at),
                    };
                    s.restart_count = record.restart_count;
                });
                let ended = tokio::select! {
                    e = w.ended(&dir) => e,
                    cmd = commands.recv() => match cmd {
                        Some(Command::Restart) => w.stop(&dir, config.restart_grace).await,
                        Some(Command::Stop { grace, done }) => {
                            let ended = w.stop(&dir, grace).await;
                            record.running = None;
                            record.last_termination = Some(ended.clone());
                            record.finished = true;
                            save(&dir, &record);
                            state.send_modify(|s| {
                                s.phase = Phase::Exited;
                                s.last_termination = Some(ended.into());
                            });
                            let _ = done.send(());
                            return;
                        }
                        None => w.ended(&dir).await,
                    },
                };
                Next::Ended(ended)
            }
            Next::Ended(ended) => {
                let finished = instant_of(ended.finished_at);
                let code = ended.exit_code;
                record.running = None;
                record.last_termination = Some(ended.clone());
                state.send_modify(|s| s.last_termination = Some(ended.into()));
                if !should_restart(config.restart_policy, code) {
                    record.finished = true;
                    save(&dir, &record);
                    Next::Finished
                } else {
                    save(&dir, &record);
                    let delay = backoff.delay(finished);
                    state.send_modify(|s| s.phase = Phase::BackOff { delay });
                    let wake = tokio::time::Instant::from_std(finished + delay);
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(wake) => break,
                            cmd = commands.recv() => match cmd {
                                Some(Command::Restart) => continue,
                                Some(Command::Stop { done, .. }) => {
                                    state.send_modify(|s| s.phase = Phase::Exited);
                                    let _ = done.send(());
                                    return;
                                }
                                None => break,
                            },
                        }
                    }
                    backoff.record_restart(Instant::now());
                    record.restart_count += 1;
                    save(&dir, &record);
                    Next::Start
                }
            }
            Next::Finished => {
                state.send_modify(|s| s.phase = Phase::Exited);
                wait_for_stop(&mut commands).await;
                return;
            }
        };
    }
}

#[cfg(test)]
mod tests;
