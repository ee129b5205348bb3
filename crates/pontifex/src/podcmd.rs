//! `pontifex exec` and `pontifex logs`: find a pod through the API (its uid, node and containers), then
//! work on this machine's files and processes — the container's state record and kubelet-format logs
//! under the node agent's data dir, and the namespaces of the container's running process. The lab runs
//! every node on this machine, so any lab pod is local; on a real cluster it works on the pod's node.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Pod;
use pontifex_node::workload::state::{self, ContainerRecord};

/// Where to look for a pod's files, and the pod.
pub(crate) struct Target {
    /// The pod's container dir (`<agent data dir>/pods/<ns>_<name>_<uid>/<container>`).
    pub(crate) dir: PathBuf,
    /// The container's record.
    pub(crate) record: ContainerRecord,
}

/// Finds the container `container` (default: the pod's first) of pod `namespace/name` on this machine.
/// `data_dir` is an agent's data dir, or the `up` data dir whose `nodes/<node>` are the lab agents'.
pub(crate) async fn find(
    client: kube::Client,
    data_dir: &Path,
    namespace: &str,
    name: &str,
    container: Option<&str>,
) -> anyhow::Result<Target> {
    let api: kube::Api<Pod> = kube::Api::namespaced(client, namespace);
    let pod = api
        .get(name)
        .await
        .with_context(|| format!("pod {namespace}/{name}"))?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let container = match container {
        Some(c) => {
            if !spec.containers.iter().any(|x| x.name == c) {
                bail!("container {c} is not valid for pod {name}");
            }
            c.to_owned()
        }
        None => spec
            .containers
            .first()
            .map(|c| c.name.clone())
            .context("the pod has no containers")?,
    };
    let node = spec
        .node_name
        .clone()
        .context("the pod is not scheduled yet")?;
    let pod_dir = format!("{namespace}_{name}_{uid}");
    let candidates = [
        data_dir
            .join("nodes")
            .join(&node)
            .join("pods")
            .join(&pod_dir),
        data_dir.join("pods").join(&pod_dir),
    ];
    let Some(dir) = candidates.iter().find(|d| d.is_dir()) else {
        bail!(
            "pod {namespace}/{name} runs on node {node}, whose files are not on this machine under {}",
            data_dir.display()
        );
    };
    let dir = dir.join(&container);
    let record = state::read::<ContainerRecord>(&state::state_path(&dir))?
        .with_context(|| format!("container {container} has not started yet"))?;
    Ok(Target { dir, record })
}

/// Runs `argv` in the container's namespaces with its environment; returns its exit code.
pub(crate) fn exec(target: &Target, argv: &[OsString]) -> anyhow::Result<i32> {
    let running = target
        .record
        .running
        .as_ref()
        .filter(|r| r.process.alive())
        .context("the container is not running")?;
    let mut cmd = pontifex_node::workload::process::command_in_process(running.process.pid, argv)?;
    let status = cmd
        .status()
        .with_context(|| format!("running {:?}", argv[0]))?;
    use std::os::unix::process::ExitStatusExt as _;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Writes the container's log (the previous instance's with `previous`), following it with `follow`.
pub(crate) async fn logs(target: &Target, follow: bool, previous: bool) -> anyhow::Result<()> {
    let n = target.record.restart_count;
    let n = if previous {
        if target.record.last_termination.is_none() || (n == 0 && target.record.running.is_some()) {
            bail!("previous terminated container not found");
        }
        // While an instance runs (or waits to), the previous one is the last that ended.
        if target.record.running.is_some() {
            n - 1
        } else {
            n
        }
    } else {
        n
    };
    let path = pontifex_node::workload::logs::log_path(&target.dir, n);
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.cancel();
    });
    let mut out = tokio::io::stdout();
    pontifex_node::workload::logs::read_logs(&path, follow, &mut out, &stop)
        .await
        .with_context(|| format!("reading {}", path.display()))
}
