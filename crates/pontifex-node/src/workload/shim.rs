//! The container shim (what conmon is to CRI-O): a small process per container instance, the `pontifex`
//! binary re-executed as a hidden subcommand, that starts the container and then owns everything that
//! must not depend on the agent being alive:
//!
//! - the container's stdout and stderr pipes, copied to the kubelet-format log file
//!   (`<n>.log`, see [`super::logs`]);
//! - the container's exit status, which only its parent can learn: the shim waits for it, ends what is
//!   left of the container's process group (as a container's processes die with its init) and writes
//!   it to `<n>.exit` (see [`super::state`]) before it exits itself.
//!
//! The agent starts the shim in a session of its own, with nothing of the agent's open, no
//! parent-death signal and no process group shared with the agent, so `kill -9` of the agent (or of
//! its process group) leaves shim and container running; a restarted agent finds them again by the
//! pids it recorded. The container gets its own session too (see [`super::process`]), so signals for
//! the container never reach the shim.
//!
//! Protocol: the agent writes a [`ShimRequest`] as JSON on the shim's stdin and closes it; the shim
//! answers one line on stdout, `pontifex-shim started <pid> <start ticks>` or
//! `pontifex-shim failed <message>`, and closes stdout. Whatever precedes the prefix is ignored (the
//! test harness that stands in for the binary in tests prints its own).
//!
//! `unsafe` here is one `setsid` between fork and exec of the shim (see [`start`]).
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use super::logs::{self, Stream};
use super::process::{self, Exit, SpawnSpec};
use super::state::{self, ExitRecord, ProcessId};

const PREFIX: &str = "pontifex-shim ";

/// What one shim runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimRequest {
    /// The container process; its `log_path` is where its output goes (required).
    pub spawn: SpawnSpec,
    /// Where the exit record goes ([`state::exit_path`]).
    pub exit_path: PathBuf,
}

/// Why a shim could not start its container.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShimError {
    /// The shim process itself could not be started or talked to.
    #[error("container shim: {0}")]
    Io(#[from] std::io::Error),
    /// The shim started but the container did not (bad command, namespace, mount...).
    #[error("{0}")]
    Start(String),
    /// The shim ended or answered nonsense before reporting.
    #[error("container shim: {0}")]
    Protocol(String),
}

/// A container started by a shim.
#[derive(Debug)]
pub struct Started {
    /// The shim (its exit means the container's).
    pub shim: ProcessId,
    /// The container's main process.
    pub process: ProcessId,
    /// The shim as our child, to reap it.
    pub child: tokio::process::Child,
}

/// Agent side: runs `shim_argv` (e.g. `[pontifex, container-shim]`) for `request` and waits for its
/// report. `stderr_path` receives the shim's own diagnostics.
pub async fn start(
    shim_argv: &[OsString],
    request: &ShimRequest,
    stderr_path: &std::path::Path,
) -> Result<Started, ShimError> {
    use std::os::unix::process::CommandExt as _;
    let (program, args) = shim_argv
        .split_first()
        .ok_or_else(|| ShimError::Protocol("no shim program".into()))?;
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_path)?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr);
    // SAFETY: setsid is async-signal-safe and touches no memory; it runs in the forked child before
    // exec. It gives the shim a session (and process group) of its own: neither a signal to the
    // agent's group nor its terminal's hang-up reaches it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(false)
        .spawn()?;
    let shim_pid = child.id().unwrap_or(0);
    let shim = ProcessId::of(shim_pid)
        .ok_or_else(|| ShimError::Protocol("the shim exited at once".into()))?;
    let mut stdin = child.stdin.take().expect("piped");
    let json = serde_json::to_vec(request).expect("requests serialize");
    stdin.write_all(&json).await?;
    drop(stdin);
    let stdout = child.stdout.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let report = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(at) = line.find(PREFIX) {
                return Ok::<_, std::io::Error>(Some(line[at + PREFIX.len()..].to_owned()));
            }
        }
        Ok(None)
    })
    .await
    .map_err(|_| ShimError::Protocol("no report within 30 s".into()))??;
    let Some(report) = report else {
        let _ = child.wait().await;
        return Err(ShimError::Protocol(
            "the shim ended without a report".into(),
        ));
    };
    if let Some(msg) = report.strip_prefix("failed ") {
        let _ = child.wait().await;
        return Err(ShimError::Start(msg.to_owned()));
    }
    let mut it = report.strip_prefix("started ").unwrap_or("").split(' ');
    let (Some(Ok(pid)), Some(Ok(start_ticks))) = (
        it.next().map(str::parse::<u32>),
        it.next().map(str::parse::<u64>),
    ) else {
        return Err(ShimError::Protocol(format!("bad report {report:?}")));
    };
    Ok(Started {
        shim,
        process: ProcessId { pid, start_ticks },
        child,
    })
}

/// Shim side: the whole life of the `container-shim` subcommand. Returns the shim's exit code (0 once
/// the exit record is written).
pub fn main() -> i32 {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        report(&format!("failed reading the request: {e}"));
        return 1;
    }
    let request: ShimRequest = match serde_json::from_slice(&input) {
        Ok(r) => r,
        Err(e) => {
            report(&format!("failed bad request: {e}"));
            return 1;
        }
    };
    match run(&request) {
        Ok(()) => 0,
        Err(msg) => {
            report(&format!("failed {msg}"));
            1
        }
    }
}

fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    // One line, then the pipe is no longer used (the agent may be gone by the time we exit).
    let _ = writeln!(out, "{PREFIX}{}", line.replace('\n', " "));
    let _ = out.flush();
}

fn run(request: &ShimRequest) -> Result<(), String> {
    let spec = &request.spawn;
    let log_path = spec.log_path.as_ref().ok_or("no log path")?;
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| format!("open log file {}: {e}", log_path.display()))
    };
    let (out_file, err_file) = (open()?, open()?);
    let (mut cmd, ns_files) = process::build_command(spec).map_err(|e| e.to_string())?;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "start {:?}: {e}",
            spec.argv.first().cloned().unwrap_or_default()
        )
    })?;
    drop(ns_files);
    let pid = child.id();
    // Read now: the container may exit at once, and then the (still unreaped) zombie's start time is
    // what the agent records.
    let start_ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| state::parse_stat(&s))
        .map_or(0, |(_, t)| t);
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let copiers = [
        std::thread::spawn(move || logs::copy_stream_blocking(out, out_file, Stream::Stdout)),
        std::thread::spawn(move || logs::copy_stream_blocking(err, err_file, Stream::Stderr)),
    ];
    report(&format!("started {pid} {start_ticks}"));
    let status = child.wait();
    process::signal_group(pid, libc::SIGKILL);
    for c in copiers {
        let _ = c.join();
    }
    let exit: Exit = match status {
        Ok(s) => s.into(),
        Err(_) => Exit {
            code: 255,
            signal: None,
        },
    };
    let record = ExitRecord {
        code: exit.code,
        signal: exit.signal,
        finished_at: jiff::Timestamp::now(),
    };
    state::write(&request.exit_path, &record).map_err(|e| e.to_string())?;
    Ok(())
}
