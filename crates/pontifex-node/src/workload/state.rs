//! What a node agent remembers of each container across its own restarts: the running instance (the
//! shim's and the container's pids, each with its start time from `/proc/<pid>/stat` so a reused pid is
//! never mistaken for ours), the restart count, the container's start time and its last termination.
//!
//! One JSON file per container, `<container dir>/state.json`, replaced atomically (write, fsync,
//! rename) on every change. The container dir also holds the kubelet-format logs `<n>.log` and the
//! exit records `<n>.exit` the shim writes. Parsing and the pid-reuse check are pure; reading and writing
//! the files is the thin rest. It decides nothing about restarts (see [`super::supervisor`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state file of a container dir.
pub fn state_path(container_dir: &Path) -> PathBuf {
    container_dir.join("state.json")
}

/// The exit record the shim of instance `restart_count` writes when its container ends.
pub fn exit_path(container_dir: &Path, restart_count: i32) -> PathBuf {
    container_dir.join(format!("{restart_count}.exit"))
}

/// A process, identified so that a later reuse of its pid is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// The process id.
    pub pid: u32,
    /// Its start time, in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
    pub start_ticks: u64,
}

impl ProcessId {
    /// The process `pid` as it is now; `None` when it does not exist.
    pub fn of(pid: u32) -> Option<ProcessId> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (state, start_ticks) = parse_stat(&stat)?;
        (state != 'Z' && state != 'X').then_some(ProcessId { pid, start_ticks })
    }

    /// Whether this very process still runs (not a zombie, and the pid not reused since).
    pub fn alive(&self) -> bool {
        ProcessId::of(self.pid).is_some_and(|now| now.start_ticks == self.start_ticks)
    }
}

/// The state letter (field 3) and start time (field 22) of a `/proc/<pid>/stat` line. The command
/// name (field 2) is in parentheses and may itself hold spaces and parentheses, so fields are counted
/// from the last `)`.
pub fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3) come fields 4..; the start time is field 22, the 19th of those.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// A running container instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The container id (`pontifex://<uid>/<container>-<n>`).
    pub id: String,
    /// The shim that owns the container's output and records its exit.
    pub shim: ProcessId,
    /// The container's main process, leader of its process group.
    pub process: ProcessId,
    /// When it started (the status's `startedAt`).
    pub started_at: jiff::Timestamp,
}

/// How an instance ended (what the status's `lastState.terminated` shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// The container id.
    pub id: String,
    /// Exit code (128 + signal for a signal).
    pub exit_code: i32,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `StartError`, or `Unknown` when its exit could not be learnt.
    pub reason: String,
    /// A message for `StartError`/`Unknown`.
    pub message: Option<String>,
    /// When it started.
    pub started_at: jiff::Timestamp,
    /// When it ended.
    pub finished_at: jiff::Timestamp,
}

/// Everything remembered of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// How many times it was started again (the current or next instance's number).
    pub restart_count: i32,
    /// The instance running now, if any.
    pub running: Option<Instance>,
    /// The last instance that ended.
    pub last_termination: Option<Ended>,
    /// `true` once the restart policy said "no more": a restarted agent must not start it again.
    #[serde(default)]
    pub finished: bool,
}

/// What the shim writes when its container ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code (128 + signal for a signal).
    pub code: i32,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// When it ended.
    pub finished_at: jiff::Timestamp,
}

/// Why a state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading, writing or renaming the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file holds something else than a record (a torn write cannot happen; a foreign file can).
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Reads a JSON record; `Ok(None)` when the file does not exist.
pub fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Parse {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes a JSON record atomically: a reader (or a restarted agent after a crash) sees the old file or
/// the new one, never a mix.
pub fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(value).expect("records always serialize");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests;
