//! Test helpers for pontifex: run the real `pontifex` binary as a server on a throw-away data directory,
//! and drive it with the real kubectl. Black-box tests use only these and outside tools, so they
//! survive rewrites of everything inside.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The kubectl versions the API server is tested against.
pub const KUBECTL_VERSIONS: [&str; 2] = ["1.32", "1.33"];

/// A `pontifex apiserver` (or `pontifex up`) process on a loopback port, with its own data directory.
#[derive(Debug)]
pub struct TestServer {
    bin: PathBuf,
    /// `apiserver`, or `up` (the API server with the controllers in-process).
    command: &'static str,
    child: Option<Child>,
    data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    port: u16,
    extra: Vec<String>,
}

/// A port that was free a moment ago (the server binds it itself, so a restart keeps the same URL).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl TestServer {
    /// Start `bin apiserver` on a new temporary data directory with `extra` flags.
    pub fn start(bin: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_command(bin, "apiserver", extra)
    }

    /// Start `bin up` (API server and controllers) on a new temporary data directory.
    /// Without `--nodes` in `extra`, with `--nodes 0`: no lab, so such servers can run side by side.
    pub fn start_up(bin: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let mut extra = extra.to_vec();
        if !extra.contains(&"--nodes") {
            extra.extend(["--nodes", "0"]);
        }
        Self::start_command(bin, "up", &extra)
    }

    fn start_command(bin: &Path, command: &'static str, extra: &[&str]) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let mut s = TestServer {
            bin: bin.to_owned(),
            command,
            child: None,
            data_dir: tmp.path().join("data"),
            _tmp: Some(tmp),
            port: free_port()?,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let kubeconfig = self.kubeconfig();
        let _ = std::fs::remove_file(&kubeconfig);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(&self.bin)
            .arg(self.command)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--secure-port")
            .arg(self.port.to_string())
            .args(&self.extra)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kubeconfig.exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("the server exited with {status}: {}", self.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not write its kubeconfig within 30 s: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.with_file_name("server.log")
    }

    /// Everything the server printed so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The bearer token from the data directory.
    pub fn token(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.data_dir.join("pki/token"))?
            .trim()
            .to_owned())
    }

    /// SIGKILL the server: no shutdown path runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the server and wait for it to exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> anyhow::Result<bool> {
        let Some(mut c) = self.child.take() else {
            return Ok(true);
        };
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                bail!("the server did not stop within 15 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start again on the same data directory and port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// A kubectl of `version` ("1.32" or "1.33") pointed at this server, with its own cache.
    pub fn kubectl(&self, version: &str) -> anyhow::Result<Kubectl> {
        Kubectl::new(version, &self.kubeconfig())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The real kubectl of one version, with its own discovery cache so tests never see stale discovery.
#[derive(Debug)]
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

/// What a kubectl run printed.
#[derive(Debug)]
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
}

impl Run {
    fn from(o: Output) -> Self {
        Run {
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            success: o.status.success(),
        }
    }

    /// Panic with both streams unless the command succeeded.
    pub fn ok(self) -> Self {
        assert!(
            self.success,
            "kubectl failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panic with both streams unless the command failed.
    pub fn failed(self) -> Self {
        assert!(
            !self.success,
            "kubectl unexpectedly succeeded:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Where the versioned kubectl binaries live (the gcloud SDK's); `PONTIFEX_KUBECTL_DIR` overrides.
pub fn kubectl_path(version: &str) -> PathBuf {
    let dir = std::env::var_os("PONTIFEX_KUBECTL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/google-cloud-sdk/bin"));
    dir.join(format!("kubectl.{version}"))
}

impl Kubectl {
    pub fn new(version: &str, kubeconfig: &Path) -> anyhow::Result<Self> {
        let bin = kubectl_path(version);
        if !bin.exists() {
            bail!(
                "{} is missing: the black-box tests need the real kubectl",
                bin.display()
            );
        }
        Ok(Kubectl {
            bin,
            kubeconfig: kubeconfig.to_owned(),
            cache: tempfile::tempdir()?,
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args);
        c.env_remove("KUBECONFIG");
        c
    }

    /// Run kubectl with `args`.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("running kubectl"))
    }

    /// Run kubectl with `args`, feeding `stdin` (for `-f -`).
    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        use std::io::Write as _;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(stdin.as_bytes())
            .expect("writing stdin");
        Run::from(child.wait_with_output().expect("waiting for kubectl"))
    }

    /// Start kubectl in the background (for `get -w`); its output goes to pipes.
    pub fn spawn(&self, args: &[&str]) -> std::io::Result<Child> {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }
}

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Poll `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
