//! Processes inside a pod: spawn a program in the pod's network namespace under the pod's hostname, in its
//! own session (so the whole process group can be signalled), with its output going to a kubelet-format
//! log file; signal and stop it.
//!
//! This is the one module of pontifex that uses `unsafe`: the child must call `setns`, `unshare`,
//! `sethostname` and `setsid` between `fork` and `exec`, and the parent sends signals with `kill`. It does
//! not decide anything (restarts are [`super::supervisor`]'s) and does not create namespaces.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::logs;

/// The PATH a container gets when its environment has none (an image would normally set it).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to start. Serializable: the agent hands it to the container shim (see [`super::shim`]).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SpawnSpec {
    /// The program and its arguments; `argv[0]` is looked up in the `PATH` of `env`.
    pub argv: Vec<OsString>,
    /// The whole environment (nothing is inherited from the agent). `PATH` defaults to [`DEFAULT_PATH`].
    pub env: Vec<(String, String)>,
    /// The working directory; the agent's own when `None`.
    pub working_dir: Option<PathBuf>,
    /// The network namespace to enter, by path (`/run/netns/NAME`); `None` stays in the caller's
    /// (hostNetwork pods).
    pub netns: Option<PathBuf>,
    /// When set, the process gets its own UTS namespace with this hostname (the pod name).
    pub hostname: Option<String>,
    /// Where stdout and stderr go, as kubelet-format lines; `None` discards them.
    pub log_path: Option<PathBuf>,
    /// Files bind-mounted over paths of this machine in a private mount namespace of the process (the
    /// pod's `/etc/resolv.conf` and `/etc/hosts`); empty: the caller's mount namespace.
    #[serde(default)]
    pub mounts: Vec<BindMount>,
}

/// One file bind-mounted over another inside the process's own mount namespace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BindMount {
    /// The file shown (e.g. `<pod dir>/resolv.conf`).
    pub source: PathBuf,
    /// Where it is shown (e.g. `/etc/resolv.conf`); must exist.
    pub target: PathBuf,
}

/// Why a process could not be started or signalled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// `argv` is empty.
    #[error("no command to run")]
    EmptyCommand,
    /// The network namespace file could not be opened.
    #[error("open network namespace {path}: {source}")]
    Netns {
        /// The path given.
        path: PathBuf,
        /// The open error.
        source: std::io::Error,
    },
    /// The log file could not be created.
    #[error("open log file {path}: {source}")]
    Log {
        /// The log path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// fork/exec failed, or one of the namespace calls in the child did (the error says which).
    #[error("start {program:?}: {source}")]
    Spawn {
        /// `argv[0]`.
        program: OsString,
        /// The error from the child set-up or exec.
        source: std::io::Error,
    },
    /// Waiting for the process failed.
    #[error("wait for process {pid}: {source}")]
    Wait {
        /// The process id.
        pid: u32,
        /// The error.
        source: std::io::Error,
    },
    /// A command run to completion did not finish in time (it was killed).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// A started process, leader of its own process group.
#[derive(Debug)]
pub struct Process {
    child: tokio::process::Child,
    pid: u32,
    log_tasks: Vec<JoinHandle<()>>,
}

/// How a process ended, in container-runtime terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code; 128 + the signal number when a signal ended it (as container runtimes report).
    pub code: i32,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
}

impl From<ExitStatus> for Exit {
    fn from(s: ExitStatus) -> Self {
        match (s.code(), s.signal()) {
            (Some(code), _) => Exit { code, signal: None },
            (None, Some(sig)) => Exit {
                code: 128 + sig,
                signal: Some(sig),
            },
            (None, None) => Exit {
                code: 255,
                signal: None,
            },
        }
    }
}

fn path_cstring(p: &std::path::Path) -> Result<std::ffi::CString, std::io::Error> {
    use std::os::unix::ffi::OsStrExt as _;
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other(format!("{} has a NUL byte", p.display())))
}

/// Builds the command for `spec`. The returned files (namespace handles) must stay open until the
/// command is spawned: the child enters them by descriptor.
pub(crate) fn build_command(
    spec: &SpawnSpec,
) -> Result<(std::process::Command, Vec<std::fs::File>), ProcessError> {
    use std::os::unix::process::CommandExt as _;
    let program = spec.argv.first().ok_or(ProcessError::EmptyCommand)?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(&spec.argv[1..]).env_clear();
    // std looks argv[0] up in the child's PATH once one is set, so a container's PATH decides.
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        cmd.env("PATH", DEFAULT_PATH);
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    let netns = match &spec.netns {
        Some(path) => Some(
            std::fs::File::open(path).map_err(|source| ProcessError::Netns {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let netns_fd = netns.as_ref().map(|f| f.as_raw_fd());
    let hostname = spec.hostname.clone().map(String::into_bytes);
    let spawn_err = |source| ProcessError::Spawn {
        program: program.clone(),
        source,
    };
    let mut mounts = Vec::with_capacity(spec.mounts.len());
    for m in &spec.mounts {
        mounts.push((
            path_cstring(&m.source).map_err(spawn_err)?,
            path_cstring(&m.target).map_err(spawn_err)?,
        ));
    }
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe calls are
    // allowed. It calls only raw system calls (setns, unshare, mount, sethostname, setsid) on data
    // prepared before the fork (an fd kept open by the returned files until spawn returns, owned
    // C strings and byte buffers), and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = netns_fd
                && libc::setns(fd, libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(name) = &hostname {
                if libc::unshare(libc::CLONE_NEWUTS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::sethostname(name.as_ptr().cast(), name.len()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if !mounts.is_empty() {
                // A mount namespace of its own whose mounts do not propagate back to the machine's.
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                for (source, target) in &mounts {
                    if libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.stdin(Stdio::null());
    Ok((cmd, netns.into_iter().collect()))
}

/// A command that runs `argv` inside the namespaces (network, UTS, mount) of the running process
/// `pid`, with its environment and working directory: what `pontifex exec` runs. Standard input and
/// outputs are inherited; the command gets no session of its own (it stays in the caller's, so the
/// terminal's Ctrl-C reaches it).
pub fn command_in_process(
    pid: u32,
    argv: &[OsString],
) -> Result<std::process::Command, ProcessError> {
    use std::os::unix::process::CommandExt as _;
    let program = argv.first().ok_or(ProcessError::EmptyCommand)?.clone();
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let err = |source| ProcessError::Spawn {
        program: program.clone(),
        source,
    };
    let environ = std::fs::read(proc_dir.join("environ")).map_err(err)?;
    let cwd = std::fs::read_link(proc_dir.join("cwd")).map_err(err)?;
    let mut files = Vec::new();
    for (ns, flag) in [
        ("net", libc::CLONE_NEWNET),
        ("uts", libc::CLONE_NEWUTS),
        ("mnt", libc::CLONE_NEWNS),
    ] {
        let f = std::fs::File::open(proc_dir.join("ns").join(ns)).map_err(err)?;
        files.push((f, flag));
    }
    let mut cmd = std::process::Command::new(&program);
    cmd.args(&argv[1..]).env_clear();
    for var in environ.split(|b| *b == 0).filter(|v| !v.is_empty()) {
        use std::os::unix::ffi::OsStrExt as _;
        let var = std::ffi::OsStr::from_bytes(var);
        let bytes = var.as_bytes();
        if let Some(eq) = bytes.iter().position(|b| *b == b'=') {
            cmd.env(
                std::ffi::OsStr::from_bytes(&bytes[..eq]),
                std::ffi::OsStr::from_bytes(&bytes[eq + 1..]),
            );
        }
    }
    let fds: Vec<(i32, i32)> = files
        .iter()
        .map(|(f, flag)| (f.as_raw_fd(), *flag))
        .collect();
    let cwd = path_cstring(&cwd).map_err(err)?;
    // The files must outlive the fork: the closure owns them (closed in the parent when the command
    // is dropped, in the child by exec's close-on-exec).
    let keep = files;
    // SAFETY: runs in the forked child before exec; only setns and chdir system calls on descriptors
    // and a C string prepared before the fork; nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            let _ = &keep;
            for (fd, flag) in &fds {
                if libc::setns(*fd, *flag) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Entering a mount namespace resets the working directory to its root.
            if libc::chdir(cwd.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Starts `spec`. Its output is copied to `spec.log_path` (appended) until the process and everything
/// holding its pipes has exited.
pub fn spawn(spec: &SpawnSpec) -> Result<Process, ProcessError> {
    let (cmd, netns) = build_command(spec)?;
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(false);
    let log = match &spec.log_path {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| ProcessError::Log {
                    path: path.clone(),
                    source,
                })?;
            }
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| ProcessError::Log {
                        path: path.clone(),
                        source,
                    })
            };
            Some((open()?, open()?))
        }
        None => None,
    };
    if log.is_some() {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let program = spec.argv[0].clone();
    let mut child = cmd
        .spawn()
        .map_err(|source| ProcessError::Spawn { program, source })?;
    drop(netns);
    let pid = child.id().unwrap_or(0);
    let mut log_tasks = Vec::new();
    if let Some((out_file, err_file)) = log {
        if let Some(out) = child.stdout.take() {
            log_tasks.push(tokio::spawn(logs::copy_stream(
                out,
                out_file,
                logs::Stream::Stdout,
            )));
        }
        if let Some(err) = child.stderr.take() {
            log_tasks.push(tokio::spawn(logs::copy_stream(
                err,
                err_file,
                logs::Stream::Stderr,
            )));
        }
    }
    Ok(Process {
        child,
        pid,
        log_tasks,
    })
}

impl Process {
    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to the whole process group. A group that is already gone is not an error.
    pub fn signal_group(&self, signal: i32) {
        signal_group(self.pid, signal);
    }

    /// Waits for the process to exit, then kills whatever is left of its group (as a container's
    /// processes die with its init) and lets the log copiers drain.
    pub async fn wait(&mut self) -> Result<Exit, ProcessError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|source| ProcessError::Wait {
                pid: self.pid,
                source,
            })?;
        signal_group(self.pid, libc::SIGKILL);
        for t in self.log_tasks.drain(..) {
            let _ = t.await;
        }
        Ok(status.into())
    }

    /// Graceful stop: SIGTERM to the group, SIGKILL once `grace` has passed. Returns how it ended.
    pub async fn stop(&mut self, grace: Duration) -> Result<Exit, ProcessError> {
        self.signal_group(libc::SIGTERM);
        let pid = self.pid;
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(r) => {
                r.map_err(|source| ProcessError::Wait { pid, source })?;
            }
            Err(_) => {
                tracing::info!(pid, ?grace, "grace period over, sending SIGKILL");
                self.signal_group(libc::SIGKILL);
            }
        }
        self.wait().await
    }
}

pub(crate) fn signal_group(pid: u32, signal: i32) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pgid <= 1 {
        return; // never signal "every process" (-1) or our own group (0)
    }
    // SAFETY: kill(2) takes plain integers and touches no memory; a negative pid addresses the process
    // group the child created with setsid, which only holds the container's processes.
    let rc = unsafe { libc::kill(-pgid, signal) };
    if rc != 0 {
        tracing::trace!(pid, signal, error = %std::io::Error::last_os_error(), "kill process group");
    }
}

/// Output of a command run to completion.
#[derive(Debug, Clone)]
pub struct Output {
    /// How it ended.
    pub exit: Exit,
    /// Standard output and standard error, interleaved as they arrived (at most 10 KiB kept, like
    /// kubelet's probe output).
    pub output: Vec<u8>,
}

/// Runs `spec` (its `log_path` is ignored) to completion with a time limit, capturing its output; on
/// timeout the group is killed. Used by exec probes and `pontifex exec`.
pub async fn run(spec: &SpawnSpec, timeout: Duration) -> Result<Output, ProcessError> {
    let (cmd, netns) = build_command(spec)?;
    let mut cmd = tokio::process::Command::from(cmd);
    let (reader, writer) = std::io::pipe().map_err(|source| ProcessError::Spawn {
        program: spec.argv[0].clone(),
        source,
    })?;
    let writer2 = writer.try_clone().map_err(|source| ProcessError::Spawn {
        program: spec.argv[0].clone(),
        source,
    })?;
    cmd.stdout(writer).stderr(writer2);
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: spec.argv[0].clone(),
        source,
    })?;
    drop(cmd); // closes our copies of the pipe's write end
    drop(netns);
    let pid = child.id().unwrap_or(0);
    let read = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        // Read everything (a full pipe would block the child), keep the first 10 KiB.
        let mut reader = reader;
        let mut buf = Vec::new();
        let _ = reader.read_to_end(&mut buf);
        buf.truncate(10 * 1024);
        buf
    });
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => {
            let status = status.map_err(|source| ProcessError::Wait { pid, source })?;
            signal_group(pid, libc::SIGKILL);
            let output = read.await.unwrap_or_default();
            Ok(Output {
                exit: status.into(),
                output,
            })
        }
        Err(_) => {
            signal_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
            Err(ProcessError::Timeout(timeout))
        }
    }
}
