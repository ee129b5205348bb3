//! Watch: a chunked stream of JSON lines `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}`.
//!
//! One task per watch reads the store's watch stream, filters by the selectors, and writes events into
//! a small channel (`WATCH_BUFFER` events) that the HTTP body drains. A client that stops reading fills
//! the channel, the task waits, and the store's own buffer for it fills next; the store then ends that
//! stream with `Compacted` once the events it needs leave the history window, and the client gets a 410
//! ERROR event and re-lists — the same bargain kube-apiserver's watch cache makes with slow watchers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use jiff::Timestamp;
use pontifex_api::registry::ResourceType;
use pontifex_api::status::ApiError;
use pontifex_store::{EventKind, Revision, StoreError, WatchItem};
use serde_json::{Value, json};

use crate::handler::{Request, read_matching};
use crate::objects::{self, decode};
use crate::select::Selectors;
use crate::server::State;
use crate::table::{self, Include, TableOpts};
use crate::{Reply, ReplyBody};

const WATCH_BUFFER: usize = 64;

/// How events are rendered: as objects, or as one-row Tables.
#[derive(Clone, Copy)]
struct Render {
    table: Option<&'static str>,
    include: Include,
}

pub(crate) async fn serve(req: &Request<'_>, name: Option<&str>) -> Result<Reply, ApiError> {
    let mut selectors = Selectors::parse(&req.query, req.r())?;
    if let Some(name) = name {
        selectors.pin_name(name);
    }
    let r = req.r();
    let prefix = objects::prefix(r, selectors.narrow_namespace(req.ns()));
    let rv = req.query.get("resourceVersion");
    let send_initial = match req.query.get("sendInitialEvents") {
        Some(v) => v == "true",
        None => matches!(rv, None | Some("0")),
    };
    let bookmark_initial_end = req.query.get("sendInitialEvents") == Some("true");
    let bookmarks = req.query.flag("allowWatchBookmarks");
    let timeout = req
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let render = Render {
        table: table::requested(
            req.headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        ),
        include: Include::parse(req.query.get("includeObject")),
    };

    // The initial state and the revision it was read at; the watch continues from there without a gap.
    let (initial, after) = if send_initial {
        let (items, rev, _) = read_matching(req, &prefix, &selectors, 0, None).await?;
        let items = items.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        (items, rev)
    } else {
        let after: Revision = match rv {
            Some(s) => s
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {s}")))?,
            None => req.state.store.current_revision(),
        };
        (Vec::new(), after)
    };
    let stream = req.state.store.watch(&prefix, after).await;
    let (tx, rx) = futures::channel::mpsc::channel::<Bytes>(WATCH_BUFFER);
    let task = WatchTask {
        state: req.state.clone(),
        r,
        selectors,
        render,
        bookmarks,
        first: true,
        last_rev: after,
        tx,
    };
    tokio::spawn(task.run(stream, initial, bookmark_initial_end, timeout));
    Ok(Reply {
        status: 200,
        content_type: "application/json".into(),
        body: ReplyBody::Stream(rx),
        warnings: Vec::new(),
        cache_immutable: false,
    })
}

struct WatchTask {
    state: Arc<State>,
    r: &'static ResourceType,
    selectors: Selectors,
    render: Render,
    bookmarks: bool,
    first: bool,
    last_rev: Revision,
    tx: futures::channel::mpsc::Sender<Bytes>,
}

impl WatchTask {
    async fn run(
        mut self,
        stream: Result<pontifex_store::WatchStream, StoreError>,
        initial: Vec<Value>,
        initial_end_bookmark: bool,
        timeout: Option<Duration>,
    ) {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                self.send_error(objects::store_error(e)).await;
                return;
            }
        };
        for obj in initial {
            if !self.send("ADDED", obj).await {
                return;
            }
        }
        if initial_end_bookmark && !self.send_bookmark(true).await {
            return;
        }
        // The ticker notices clients that went away on a quiet watch, and paces bookmarks.
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.tick().await;
        let mut last_bookmark = tokio::time::Instant::now();
        let shutdown = self.state.shutdown.clone();
        loop {
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(WatchItem::Event(ev))) => {
                        if !self.on_event(ev).await {
                            return;
                        }
                    }
                    Some(Ok(WatchItem::Progress(rev))) => self.last_rev = self.last_rev.max(rev),
                    Some(Err(e)) => {
                        self.send_error(objects::store_error(e)).await;
                        return;
                    }
                    None => return,
                },
                _ = ticker.tick() => {
                    if self.tx.is_closed() {
                        return;
                    }
                    if self.bookmarks && last_bookmark.elapsed() >= self.state.bookmark_interval {
                        last_bookmark = tokio::time::Instant::now();
                        if !self.send_bookmark(false).await {
                            return;
                        }
                    }
                }
                () = sleep => return,
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn on_event(&mut self, ev: pontifex_store::Event) -> bool {
        self.last_rev = ev.kv.mod_revision;
        let decode_or_skip = |kv: &pontifex_store::KeyValue| decode(kv).ok();
        let prev = ev.prev.as_ref().and_then(decode_or_skip);
        let prev_matches = prev
            .as_ref()
            .is_some_and(|p| self.selectors.matches(self.r, p).unwrap_or(false));
        match ev.kind {
            EventKind::Put => {
                let Some(cur) = decode_or_skip(&ev.kv) else {
                    return true;
                };
                let cur_matches = self.selectors.matches(self.r, &cur).unwrap_or(false);
                match (prev.is_some() && prev_matches, cur_matches) {
                    (true, true) => self.send("MODIFIED", cur).await,
                    (false, true) => self.send("ADDED", cur).await,
                    (true, false) => {
                        // It left the selection: to this watcher, it is gone.
                        let mut gone = prev.unwrap_or_default();
                        objects::set_resource_version(&mut gone, ev.kv.mod_revision);
                        self.send("DELETED", gone).await
                    }
                    (false, false) => true,
                }
            }
            EventKind::Delete => {
                let Some(last) = decode_or_skip(&ev.kv) else {
                    return true;
                };
                if self.selectors.matches(self.r, &last).unwrap_or(false) {
                    self.send("DELETED", last).await
                } else {
                    true
                }
            }
        }
    }

    fn render(&mut self, obj: Value) -> Value {
        let Some(api_version) = self.render.table else {
            return objects::with_type(obj, self.r);
        };
        let rv = objects::resource_version(&obj).unwrap_or("").to_owned();
        let opts = TableOpts {
            api_version,
            include: self.render.include,
            resource_version: &rv,
            continue_token: None,
            now: Timestamp::now(),
            with_columns: self.first,
        };
        self.first = false;
        table::build(self.r, std::slice::from_ref(&obj), &opts)
            .unwrap_or_else(|_| objects::with_type(obj, self.r))
    }

    /// Send one event; false when the client is gone.
    async fn send(&mut self, kind: &str, obj: Value) -> bool {
        let object = self.render(obj);
        self.write(&json!({"type": kind, "object": object})).await
    }

    async fn send_bookmark(&mut self, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": self.last_rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object =
            json!({"kind": self.r.kind, "apiVersion": self.r.api_version(), "metadata": meta});
        self.write(&json!({"type": "BOOKMARK", "object": object}))
            .await
    }

    async fn send_error(&mut self, e: ApiError) {
        self.write(&json!({"type": "ERROR", "object": e.to_status()}))
            .await;
    }

    async fn write(&mut self, event: &Value) -> bool {
        let mut line = serde_json::to_vec(event).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }
}
