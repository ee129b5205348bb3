//! The servers under test as child processes on loopback: `pontifex apiserver` on a fresh data
//! directory, and etcd (the comparison for the write path). Both are killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::client::Endpoint;

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process that is killed (SIGKILL) when dropped, with the directory it keeps its data in.
pub(crate) struct Server {
    child: Child,
    pub(crate) endpoint: Endpoint,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `bin apiserver` on a new data directory under `tmp_root` (the disk is part of what is measured:
    /// the store fsyncs there).
    pub(crate) fn pontifex(bin: &Path, tmp_root: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("pontifex-bench-")
            .tempdir_in(tmp_root)?;
        let data = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let port = free_port()?;
        let mut child = Command::new(bin)
            .args([
                "apiserver",
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &port.to_string(),
            ])
            .arg("--data-dir")
            .arg(&data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let kubeconfig = data.join("kubeconfig");
        wait_for(&mut child, dir.path(), || kubeconfig.exists())?;
        let endpoint = Endpoint::from_kubeconfig(&std::fs::read_to_string(&kubeconfig)?)?;
        Ok(Server {
            child,
            endpoint,
            dir,
        })
    }

    /// etcd alone on loopback with a fresh data directory (its defaults: WAL fsynced before a put is
    /// acknowledged). Its JSON gateway speaks plain HTTP here.
    pub(crate) fn etcd(bin: &Path, tmp_root: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("etcd-bench-")
            .tempdir_in(tmp_root)?;
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let (client, peer) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut child = Command::new(bin)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", "bench"])
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("bench={peer_url}")])
            .args(["--log-level", "warn"])
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let addr: SocketAddr = format!("127.0.0.1:{client}").parse()?;
        wait_for(&mut child, dir.path(), || {
            std::net::TcpStream::connect(addr).is_ok()
        })?;
        Ok(Server {
            child,
            endpoint: Endpoint::plain(addr),
            dir,
        })
    }

    /// `(VmRSS, VmHWM)` of the process in bytes, from /proc.
    /// The server's data directory (its kubeconfig is there).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name}"))?;
            let kb: u64 = line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()?;
            Ok(kb * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// The server's log so far (for error messages).
    fn log_of(dir: &Path) -> String {
        ["server.log", "etcd.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn wait_for(child: &mut Child, dir: &Path, ready: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if let Some(status) = child.try_wait()? {
            bail!("the server exited with {status}: {}", Server::log_of(dir));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "the server was not ready within 30 s: {}",
                Server::log_of(dir)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `name` on PATH, if it is there.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
