//! One container's life: start its process, restart it per the pod's `restartPolicy` with the kubelet's
//! CrashLoopBackOff delays, restart it on request (liveness/startup failure), stop it gracefully.
//!
//! The decisions — restart or not, how long to back off — are the pure [`should_restart`] and [`Backoff`];
//! [`Container`] is a thin task around them that publishes a [`ContainerState`] on a `watch` channel for
//! the status computation. Probes are not run here: the agent runs them and calls [`Container::restart`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::logs;
use super::process::{self, Exit, SpawnSpec};

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
    /// Directory of this container's logs (see [`logs::log_path`]).
    pub log_dir: PathBuf,
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

fn termination(id: String, exit: Exit, started_at: jiff::Timestamp) -> Termination {
    Termination {
        id,
        exit_code: exit.code,
        signal: exit.signal,
        reason: if exit.code == 0 { "Completed" } else { "Error" }.into(),
        message: None,
        started_at,
        finished_at: jiff::Timestamp::now(),
    }
}

async fn supervise(
    config: ContainerConfig,
    state: watch::Sender<ContainerState>,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut backoff = Backoff::new(config.backoff);
    let mut restart_count = 0;
    loop {
        let id = format!("{}-{restart_count}", config.id_prefix);
        let mut spec = config.spawn.clone();
        spec.log_path = Some(logs::log_path(&config.log_dir, restart_count));
        let started_at = jiff::Timestamp::now();
        let started = Instant::now();
        let ended = match process::spawn(&spec) {
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "container failed to start");
                let mut t = termination(
                    id,
                    Exit {
                        code: 128,
                        signal: None,
                    },
                    started_at,
                );
                t.reason = "StartError".into();
                t.message = Some(e.to_string());
                t
            }
            Ok(mut proc) => {
                let pid = proc.pid();
                state.send_modify(|s| {
                    s.phase = Phase::Running {
                        id: id.clone(),
                        pid,
                        started_at,
                        started,
                    };
                    s.restart_count = restart_count;
                });
                let exit = tokio::select! {
                    r = proc.wait() => r,
                    cmd = commands.recv() => match cmd {
                        Some(Command::Restart) => proc.stop(config.restart_grace).await,
                        Some(Command::Stop { grace, done }) => {
                            let r = proc.stop(grace).await;
                            let exit = r.unwrap_or(Exit { code: 137, signal: Some(libc::SIGKILL) });
                            state.send_modify(|s| {
                                s.phase = Phase::Exited;
                                s.last_termination = Some(termination(id.clone(), exit, started_at));
                            });
                            let _ = done.send(());
                            return;
                        }
                        None => proc.wait().await,
                    },
                };
                let exit = exit.unwrap_or(Exit {
                    code: 255,
                    signal: None,
                });
                termination(id, exit, started_at)
            }
        };
        let finished = Instant::now();
        let code = ended.exit_code;
        state.send_modify(|s| s.last_termination = Some(ended));
        if !should_restart(config.restart_policy, code) {
            state.send_modify(|s| s.phase = Phase::Exited);
            // Wait for the stop that removes the pod.
            while let Some(cmd) = commands.recv().await {
                if let Command::Stop { done, .. } = cmd {
                    let _ = done.send(());
                    return;
                }
            }
            return;
        }
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
        restart_count += 1;
    }
}

#[cfg(test)]
mod tests;
