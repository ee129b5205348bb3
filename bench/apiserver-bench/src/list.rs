//! Memory per 10k Services and list latency: on a fresh server, read the server's RSS, create the
//! Services, read it again, then time whole lists (JSON and Table) of that namespace.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use http::Method;

use crate::client::{Endpoint, Proto};
use crate::creates::{self, Kind, Load, Point};
use crate::procs::Server;
use crate::stats::Samples;

/// What kubectl sends for `kubectl get`: a Table, falling back to v1beta1 and then to a plain list.
pub(crate) const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

/// kubectl's default `--chunk-size`.
pub(crate) const KUBECTL_CHUNK: usize = 500;

/// `(VmRSS, VmHWM)` in bytes at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mem {
    pub(crate) rss: u64,
    pub(crate) hwm: u64,
}

#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) objects: usize,
    pub(crate) fill: Point,
    /// Memory before the Services, after them, and after the lists.
    pub(crate) mem: Option<(Mem, Mem, Mem)>,
    pub(crate) json: Samples,
    pub(crate) json_bytes: usize,
    pub(crate) table: Samples,
    pub(crate) table_bytes: usize,
    /// Table in pages of [`KUBECTL_CHUNK`], continue token after continue token: one `kubectl get`.
    pub(crate) paged: Samples,
}

fn mem(server: Option<&Server>) -> anyhow::Result<Option<Mem>> {
    server
        .map(|s| s.memory().map(|(rss, hwm)| Mem { rss, hwm }))
        .transpose()
}

/// Fill namespace `listbench` with `objects` Services and time `lists` lists of each flavour (after
/// one untimed warm-up list each). `server` is the process to read memory from, when we started it.
pub(crate) async fn run(
    ep: &Endpoint,
    server: Option<&Server>,
    objects: usize,
    lists: usize,
) -> anyhow::Result<Outcome> {
    let ns = "listbench";
    creates::namespace(ep, ns).await?;
    // Let the allocator and the runtime settle after start-up before the baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = mem(server)?;
    let load = Load {
        kind: Kind::Service,
        proto: Proto::H2,
        clients: 32,
        duration: Duration::from_secs(120),
        limit: Some(objects),
    };
    let fill = creates::run(ep, load, ns, "svc").await?;
    if fill.ok != objects {
        bail!(
            "created {} of {objects} Services within {:?}",
            fill.ok,
            fill.elapsed
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = mem(server)?;

    let mut conn = ep.connect(Proto::H2).await?;
    let path = format!("/api/v1/namespaces/{ns}/services");
    let mut flavour = async |accept: Option<&str>| -> anyhow::Result<(Samples, usize)> {
        // Warm-up, and the check that the list is whole.
        let (status, body) = conn.call(Method::GET, &path, accept, None).await?;
        if status != 200 {
            bail!("list: {status} {}", String::from_utf8_lossy(&body));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).context("parsing the list")?;
        let n = v["items"]
            .as_array()
            .or(v["rows"].as_array())
            .map_or(0, Vec::len);
        if n != objects {
            bail!("the list had {n} entries, expected {objects}");
        }
        let mut samples = Vec::with_capacity(lists);
        for _ in 0..lists {
            let t0 = Instant::now();
            let (status, body) = conn.call(Method::GET, &path, accept, None).await?;
            samples.push(t0.elapsed());
            if status != 200 {
                bail!("list: {status}");
            }
            drop(body);
        }
        Ok((Samples::new(samples), body.len()))
    };
    let (json, json_bytes) = flavour(None).await?;
    let (table, table_bytes) = flavour(Some(TABLE_ACCEPT)).await?;
    let paged = paged_tables(&mut conn, &path, objects, lists).await?;
    let end = mem(server)?;
    let mem = match (before, after, end) {
        (Some(a), Some(b), Some(c)) => Some((a, b, c)),
        _ => None,
    };
    Ok(Outcome {
        objects,
        fill,
        mem,
        json,
        json_bytes,
        table,
        table_bytes,
        paged,
    })
}

/// Time `lists` whole paged Table lists (after one warm-up), the way `kubectl get` reads: pages of
/// [`KUBECTL_CHUNK`] rows, each asking for the next with the previous page's continue token.
async fn paged_tables(
    conn: &mut crate::client::Conn,
    path: &str,
    objects: usize,
    lists: usize,
) -> anyhow::Result<Samples> {
    let mut samples = Vec::with_capacity(lists);
    for round in 0..=lists {
        let t0 = Instant::now();
        let (mut rows, mut cont) = (0, None::<String>);
        loop {
            let url = match &cont {
                Some(c) => format!("{path}?limit={KUBECTL_CHUNK}&continue={c}"),
                None => format!("{path}?limit={KUBECTL_CHUNK}"),
            };
            let (status, body) = conn
                .call(Method::GET, &url, Some(TABLE_ACCEPT), None)
                .await?;
            if status != 200 {
                bail!("paged list: {status} {}", String::from_utf8_lossy(&body));
            }
            let v: serde_json::Value = serde_json::from_slice(&body).context("parsing a page")?;
            rows += v["rows"].as_array().map_or(0, Vec::len);
            match v["metadata"]["continue"].as_str() {
                // Continue tokens are URL-safe base64 (as pontifex and kube-apiserver issue them).
                Some(c) if !c.is_empty() => cont = Some(c.to_owned()),
                _ => break,
            }
        }
        if rows != objects {
            bail!("the paged list had {rows} rows, expected {objects}");
        }
        if round > 0 {
            samples.push(t0.elapsed());
        }
    }
    Ok(Samples::new(samples))
}
