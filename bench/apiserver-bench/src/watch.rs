//! Watch delivery latency: W watchers, each on its own HTTP/1.1 connection (like W separate agents),
//! watch the ConfigMaps of one namespace; one writer creates ConfigMaps one at a time at a steady
//! pace. For every (event, watcher) pair we take the time from just before the writer sent the
//! create, and from when the writer read its 201, to when that watcher read the event's line.
//!
//! Client and server share this machine's cores, so the figures include the client's own scheduling
//! of 100 readers; they are an upper bound on the server's part.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use http::Method;
use http_body_util::BodyExt as _;
use serde_json::json;

use crate::client::{Endpoint, Proto};
use crate::creates;
use crate::stats::Samples;

#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) watchers: usize,
    pub(crate) events: usize,
    pub(crate) interval: Duration,
    /// Deliveries expected and seen.
    pub(crate) expected: usize,
    pub(crate) delivered: usize,
    /// From just before the create was sent to the watcher reading the event.
    pub(crate) from_write: Samples,
    /// From the writer reading the 201 to the watcher reading the event (0 when it came first).
    pub(crate) from_ack: Samples,
    /// Deliveries that reached a watcher before the writer had read its own 201.
    pub(crate) before_ack: usize,
    /// The creates themselves (send to 201).
    pub(crate) write: Samples,
}

/// Event `i` was read by a watcher at this instant.
type Seen = Vec<(usize, Instant)>;

pub(crate) async fn run(
    ep: &Endpoint,
    watchers: usize,
    events: usize,
    interval: Duration,
) -> anyhow::Result<Outcome> {
    let ns = "watchbench";
    creates::namespace(ep, ns).await?;
    let path = format!("/api/v1/namespaces/{ns}/configmaps?watch=true&timeoutSeconds=120");
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mut conn = ep.connect(Proto::H1).await?;
        // The response head comes once the server has registered the watch with the store, so
        // after this every later write reaches this watcher.
        let resp = conn.send(Method::GET, &path, None, None).await?;
        if resp.status() != 200 {
            bail!("watch: {}", resp.status());
        }
        let mut body = resp.into_body();
        tasks.push(tokio::spawn(async move {
            // Keep the connection alive while reading.
            let _conn = conn;
            let mut seen: Seen = Vec::with_capacity(events);
            let mut buf: Vec<u8> = Vec::new();
            while seen.len() < events {
                let Some(frame) = body.frame().await else {
                    break;
                };
                let now = Instant::now();
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let ev: serde_json::Value =
                        serde_json::from_slice(&line).context("a watch event")?;
                    if ev["type"] != "ADDED" {
                        continue;
                    }
                    let name = ev["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default();
                    if let Some(i) = name.strip_prefix("w-").and_then(|i| i.parse().ok()) {
                        seen.push((i, now));
                    }
                }
            }
            anyhow::Ok(seen)
        }));
    }

    // The writer: one create at a time, paced, on its own HTTP/2 connection.
    let mut marks: Vec<(Instant, Instant)> = Vec::with_capacity(events);
    let mut writer = ep.connect(Proto::H2).await?;
    let cm_path = format!("/api/v1/namespaces/{ns}/configmaps");
    let mut next = Instant::now();
    for i in 0..events {
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("w-{i}")}, "data": {"i": i.to_string()}});
        let t0 = Instant::now();
        let (status, text) = writer
            .call(Method::POST, &cm_path, None, Some(body.to_string().into()))
            .await?;
        let acked = Instant::now();
        if status != 201 {
            bail!("create w-{i}: {status} {}", String::from_utf8_lossy(&text));
        }
        marks.push((t0, acked));
    }

    let (mut from_write, mut from_ack, mut before_ack, mut delivered) =
        (Vec::new(), Vec::new(), 0, 0);
    for t in tasks {
        let seen = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .context("a watcher did not get every event within 30 s")???;
        for (i, at) in seen {
            let Some(&(t0, acked)) = marks.get(i) else {
                continue;
            };
            delivered += 1;
            from_write.push(at.saturating_duration_since(t0));
            if at < acked {
                before_ack += 1;
            }
            from_ack.push(at.saturating_duration_since(acked));
        }
    }
    Ok(Outcome {
        watchers,
        events,
        interval,
        expected: watchers * events,
        delivered,
        from_write: Samples::new(from_write),
        from_ack: Samples::new(from_ack),
        before_ack,
        write: Samples::new(marks.iter().map(|(t0, a)| *a - *t0).collect()),
    })
}
