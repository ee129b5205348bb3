//! Pod start latency: create → Ready, for pods that run the built-in server (no image pull, no probe),
//! on whatever nodes the scheduler picks.
//!
//! One watch (label `bench=podstart`) stamps, on this machine's clock, when each pod is first seen
//! bound to a node, with a pod IP, and Ready. `burst` issues every create at once (32 in flight);
//! `serial` creates the next pod only once the previous one is Ready. Latencies count from just
//! before the create request. The pod's own timestamps (`Ready.lastTransitionTime −
//! creationTimestamp`) are whole seconds on the wire, so they only bound the figure.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Notify;

use crate::quantile;

/// When the watch first saw each step of one pod.
#[derive(Default, Clone)]
struct Seen {
    created: Option<Instant>,
    scheduled: Option<Instant>,
    ip: Option<Instant>,
    ready: Option<Instant>,
    /// `Ready.lastTransitionTime − creationTimestamp`, whole seconds.
    reported_secs: Option<i64>,
}

type Board = Arc<(Mutex<HashMap<String, Seen>>, Notify)>;

pub(crate) async fn run(kubeconfig: &Path, pods: usize, mode: &str) -> anyhow::Result<()> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = Client::try_from(config)?;
    let api: Api<Pod> = Api::namespaced(client, "default");
    let board: Board = Arc::new((Mutex::new(HashMap::new()), Notify::new()));
    let watch = tokio::spawn(watch_pods(api.clone(), board.clone()));
    println!(
        "| mode | pods | wall | scheduled p50 / p99 | pod IP p50 / p99 | **Ready p50 / p99** | max | lastTransitionTime − creationTimestamp |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for m in match mode {
        "both" => vec!["burst", "serial"],
        other => vec![other],
    } {
        clean(&api, &board).await?;
        let started = Instant::now();
        match m {
            "burst" => burst(&api, &board, pods).await?,
            "serial" => serial(&api, &board, pods).await?,
            other => bail!("--mode {other}: expected burst, serial or both"),
        }
        report(m, pods, started.elapsed(), &board);
    }
    clean(&api, &board).await?;
    watch.abort();
    Ok(())
}

fn manifest(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "podstart"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}],
        },
    }))?)
}

async fn create(api: &Api<Pod>, board: &Board, name: String) -> anyhow::Result<()> {
    board
        .0
        .lock()
        .unwrap()
        .entry(name.clone())
        .or_default()
        .created = Some(Instant::now());
    api.create(&PostParams::default(), &manifest(&name)?)
        .await
        .with_context(|| format!("creating {name}"))?;
    Ok(())
}

async fn burst(api: &Api<Pod>, board: &Board, pods: usize) -> anyhow::Result<()> {
    futures::stream::iter((0..pods).map(|i| create(api, board, format!("ps-burst-{i}"))))
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    wait_ready(board, pods, Duration::from_secs(120)).await
}

async fn serial(api: &Api<Pod>, board: &Board, pods: usize) -> anyhow::Result<()> {
    for i in 0..pods {
        create(api, board, format!("ps-serial-{i}")).await?;
        wait_ready(board, i + 1, Duration::from_secs(30)).await?;
    }
    Ok(())
}

async fn wait_ready(board: &Board, n: usize, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let notified = board.1.notified();
        let ready = board
            .0
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.ready.is_some())
            .count();
        if ready >= n {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            bail!("only {ready} of {n} pods Ready within {limit:?}");
        }
    }
}

async fn watch_pods(api: Api<Pod>, board: Board) {
    let cfg = watcher::Config::default().labels("bench=podstart");
    let mut s = std::pin::pin!(watcher(api, cfg));
    while let Some(ev) = s.next().await {
        let now = Instant::now();
        let pod = match ev {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
            _ => continue,
        };
        let Some(name) = pod.metadata.name.clone() else {
            continue;
        };
        let mut map = board.0.lock().unwrap();
        let Some(seen) = map.get_mut(&name) else {
            continue;
        };
        let st = pod.status.as_ref();
        if seen.scheduled.is_none()
            && pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
        {
            seen.scheduled = Some(now);
        }
        if seen.ip.is_none() && st.and_then(|s| s.pod_ip.as_ref()).is_some() {
            seen.ip = Some(now);
        }
        let ready = st
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"));
        if seen.ready.is_none()
            && let Some(c) = ready
        {
            seen.ready = Some(now);
            if let (Some(t), Some(created)) =
                (&c.last_transition_time, &pod.metadata.creation_timestamp)
            {
                seen.reported_secs = Some(t.0.as_second() - created.0.as_second());
            }
        }
        drop(map);
        board.1.notify_waiters();
    }
}

/// Deletes every bench pod (grace 0) and waits until none is left; clears the board.
async fn clean(api: &Api<Pod>, board: &Board) -> anyhow::Result<()> {
    let lp = ListParams::default().labels("bench=podstart");
    let _ = api
        .delete_collection(&DeleteParams::default().grace_period(0), &lp)
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !api.list(&lp).await?.items.is_empty() {
        if Instant::now() > deadline {
            bail!("bench pods still present 60 s after deleting them");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    board.0.lock().unwrap().clear();
    Ok(())
}

fn report(mode: &str, pods: usize, wall: Duration, board: &Board) {
    let map = board.0.lock().unwrap();
    let step = |f: fn(&Seen) -> Option<Instant>| -> Vec<f64> {
        let mut v: Vec<f64> = map
            .values()
            .filter_map(|s| Some(f(s)?.duration_since(s.created?).as_secs_f64() * 1e3))
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let pair = |v: &[f64]| format!("{:.0} / {:.0} ms", quantile(v, 0.5), quantile(v, 0.99));
    let scheduled = step(|s| s.scheduled);
    let ip = step(|s| s.ip);
    let ready = step(|s| s.ready);
    let mut reported: Vec<i64> = map.values().filter_map(|s| s.reported_secs).collect();
    reported.sort_unstable();
    let zero = reported.iter().filter(|s| **s == 0).count();
    println!(
        "| {mode} | {pods} | {:.1} s | {} | {} | **{}** | {:.0} ms | {zero}/{} within the same second, max {} s |",
        wall.as_secs_f64(),
        pair(&scheduled),
        pair(&ip),
        pair(&ready),
        ready.last().copied().unwrap_or(f64::NAN),
        reported.len(),
        reported.last().copied().unwrap_or(-1),
    );
}
