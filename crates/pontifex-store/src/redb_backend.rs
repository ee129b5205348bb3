//! The redb backend: the shared engine over a redb file, fsynced before any write is acknowledged.
//!
//! Layout (see `codec.rs` for the record encoding):
//! - `log`: revision -> every event of that revision (with previous values), the last
//!   `history_window` revisions at least (compacted on write, in steps of 1/8 of the window);
//! - `current`: key -> value, create and mod revision: the whole present state, so start-up reads it
//!   directly instead of replaying the log;
//! - `meta`: `"revision"` -> the last committed revision (so it survives even an empty window).
//!
//! Group commit: `txn` queues the request to one writer thread, which drains the queue (up to
//! `max_batch`), evaluates the batch in order, writes it in ONE redb write transaction with
//! `Durability::Immediate`, and only after that commit returns publishes the batch and answers all
//! callers. One fsync thus serves every caller that arrived while the previous one was running.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use crate::codec;
use crate::engine::{Committed, Engine, Loaded, Persist, TxnRequest};
use crate::{
    Compare, KeyValue, Op, RangeResult, Revision, Store, StoreError, StoreOptions, TxnOutcome,
    WatchStream,
};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const CURRENT: TableDefinition<&str, &[u8]> = TableDefinition::new("current");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";

/// The longest the writer waits for stragglers of the previous batch (a redb commit with fsync takes
/// about 2 ms on the development VM).
const LINGER: Duration = Duration::from_micros(300);
const LINGER_STEP: Duration = Duration::from_micros(20);

type Reply = oneshot::Sender<Result<TxnOutcome, StoreError>>;

/// A [`Store`] persisted in one redb file.
pub struct RedbStore {
    engine: Arc<Engine>,
    /// `None` once shut down. Callers clone it only for the duration of one `send`, so dropping
    /// this one lets the writer see the end of the queue.
    queue: Mutex<Option<mpsc::Sender<(TxnRequest, Reply)>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("revision", &self.engine.current_revision())
            .finish_non_exhaustive()
    }
}

fn commit_error(err: impl Into<redb::Error>) -> StoreError {
    backend_error("commit", err)
}

fn backend_error(context: &str, err: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(format!("{context}: {}", err.into()))
}

impl RedbStore {
    /// Opens (or creates) the store file at `path` and loads the current state and the last
    /// `history_window` revisions, so watches from before the restart resume. Blocking: call it
    /// before serving, or from `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StoreError> {
        let db = Database::create(path.as_ref()).map_err(|e| backend_error("open", e))?;
        let loaded = load(&db, options.history_window)?;
        let disk_oldest = loaded.revision - loaded.history.len() as Revision + 1;
        let engine = Engine::new(options.clone(), loaded);

        let (tx, rx) = mpsc::channel(options.queue_depth.max(1));
        let mut persist = RedbPersist {
            db,
            disk_oldest,
            window: options.history_window,
        };
        let writer_engine = engine.clone();
        let max_batch = options.max_batch.max(1);
        let writer = std::thread::Builder::new()
            .name("pontifex-store-writer".into())
            .spawn(move || run_writer(&writer_engine, &mut persist, rx, max_batch))
            .map_err(|e| StoreError::Backend(format!("spawn writer thread: {e}")))?;
        Ok(RedbStore {
            engine,
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Stops accepting writes, lets the writer finish what is queued (blocking the calling thread
    /// for at most one group commit), closes the file and ends every watch stream. Later calls fail
    /// with [`StoreError::Closed`]. Dropping the store does the same.
    pub fn shutdown(&self) {
        drop(self.queue.lock().unwrap_or_else(|e| e.into_inner()).take());
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer
            && writer.join().is_err()
        {
            tracing::error!("the store writer thread panicked");
        }
        self.engine.close();
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads the state a restart needs: the whole `current` table and the tail of the log.
fn load(db: &Database, window: usize) -> Result<Loaded, StoreError> {
    // Create the tables on first open so the read below never meets a missing table.
    let wtx = db.begin_write().map_err(|e| backend_error("open", e))?;
    wtx.open_table(LOG).map_err(|e| backend_error("open", e))?;
    wtx.open_table(CURRENT)
        .map_err(|e| backend_error("open", e))?;
    wtx.open_table(META).map_err(|e| backend_error("open", e))?;
    wtx.commit().map_err(|e| backend_error("open", e))?;

    let rtx = db.begin_read().map_err(|e| backend_error("load", e))?;
    let meta = rtx.open_table(META).map_err(|e| backend_error("load", e))?;
    let revision = match meta
        .get(META_REVISION)
        .map_err(|e| backend_error("load", e))?
    {
        Some(rev) => rev.value() as Revision,
        None => 0,
    };

    let current = rtx
        .open_table(CURRENT)
        .map_err(|e| backend_error("load", e))?;
    let mut kvs = std::collections::BTreeMap::new();
    for entry in current.iter().map_err(|e| backend_error("load", e))? {
        let (key, record) = entry.map_err(|e| backend_error("load", e))?;
        let kv = codec::decode_current(key.value(), record.value())
            .map_err(|e| StoreError::Backend(format!("corrupt record for {}: {e}", key.value())))?;
        if kv.mod_revision > revision {
            return Err(StoreError::Backend(format!(
                "corrupt store: key {} modified at {} after the store revision {revision}",
                kv.key, kv.mod_revision
            )));
        }
        kvs.insert(kv.key.clone(), kv);
    }

    let log = rtx.open_table(LOG).map_err(|e| backend_error("load", e))?;
    let mut history = Vec::new();
    let mut expected = revision;
    for entry in log
        .iter()
        .map_err(|e| backend_error("load", e))?
        .rev()
        .take(window)
    {
        let (rev, record) = entry.map_err(|e| backend_error("load", e))?;
        let rev = rev.value() as Revision;
        // The log must be consecutive and end at the store revision; otherwise watches would
        // silently miss events.
        if rev != expected {
            return Err(StoreError::Backend(format!(
                "corrupt store: log entry {rev} where {expected} was expected"
            )));
        }
        expected -= 1;
        let events = codec::decode_events(rev, record.value())
            .map_err(|e| StoreError::Backend(format!("corrupt log entry {rev}: {e}")))?;
        history.push(Arc::new(Committed {
            revision: rev,
            events,
        }));
    }
    history.reverse();
    Ok(Loaded {
        kvs,
        revision,
        history,
    })
}

fn run_writer(
    engine: &Engine,
    persist: &mut RedbPersist,
    mut rx: mpsc::Receiver<(TxnRequest, Reply)>,
    max_batch: usize,
) {
    let mut requests = Vec::with_capacity(max_batch);
    let mut replies = Vec::with_capacity(max_batch);
    let mut previous_batch = 0;
    while let Some((request, reply)) = rx.blocking_recv() {
        requests.push(request);
        replies.push(reply);
        // Callers answered by the previous commit come back a moment later. Without waiting for
        // them, batches alternate between "the one caller that was quick" and "everyone else",
        // halving throughput. So when the previous batch was bigger than what is queued now, linger
        // briefly (far below one fsync) for the rest; a lone caller never waits.
        let linger_until = Instant::now() + LINGER;
        while requests.len() < max_batch {
            match rx.try_recv() {
                Ok((request, reply)) => {
                    requests.push(request);
                    replies.push(reply);
                }
                Err(TryRecvError::Empty)
                    if requests.len() < previous_batch && Instant::now() < linger_until =>
                {
                    std::thread::sleep(LINGER_STEP);
                }
                Err(_) => break,
            }
        }
        previous_batch = requests.len();
        match engine.commit_batch(persist, &requests) {
            Ok(outcomes) => {
                for (reply, outcome) in replies.drain(..).zip(outcomes) {
                    // The caller may have given up waiting; the write stands regardless.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, txns = replies.len(), "group commit failed");
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
        requests.clear();
    }
}

struct RedbPersist {
    db: Database,
    /// The first revision still in the on-disk log (or the next revision when it is empty).
    disk_oldest: Revision,
    window: usize,
}

impl Persist for RedbPersist {
    fn persist(&mut self, commits: &[Arc<Committed>]) -> Result<(), StoreError> {
        let Some(last) = commits.last().map(|c| c.revision) else {
            return Ok(());
        };
        // `Durability::Immediate` is redb's default: `commit` returns only once the data is fsynced.
        let wtx = self.db.begin_write().map_err(commit_error)?;
        let mut new_oldest = self.disk_oldest;
        {
            let mut log = wtx.open_table(LOG).map_err(commit_error)?;
            let mut current = wtx.open_table(CURRENT).map_err(commit_error)?;
            let mut meta = wtx.open_table(META).map_err(commit_error)?;
            for commit in commits {
                let record = codec::encode_events(&commit.events);
                log.insert(commit.revision as u64, record.as_slice())
                    .map_err(commit_error)?;
                for ev in &commit.events {
                    match ev.kind {
                        crate::EventKind::Put => {
                            let record = codec::encode_current(&ev.kv);
                            current
                                .insert(ev.kv.key.as_str(), record.as_slice())
                                .map_err(commit_error)?;
                        }
                        crate::EventKind::Delete => {
                            current.remove(ev.kv.key.as_str()).map_err(commit_error)?;
                        }
                    }
                }
            }
            meta.insert(META_REVISION, last as u64)
                .map_err(commit_error)?;

            // Keep between `window` and `window + window/8` revisions on disk, so trimming is
            // an occasional range delete rather than one delete per commit.
            let window = self.window as Revision;
            let kept = last - self.disk_oldest + 1;
            if kept > window + window / 8 {
                let cut = last - window; // delete revisions <= cut
                log.retain_in(..=(cut.max(0) as u64), |_, _| false)
                    .map_err(commit_error)?;
                new_oldest = cut + 1;
            }
        }
        wtx.commit().map_err(|e| backend_error("commit", e))?;
        self.disk_oldest = new_oldest;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for RedbStore {
    fn current_revision(&self) -> Revision {
        self.engine.current_revision()
    }

    fn oldest_revision(&self) -> Revision {
        self.engine.oldest_revision()
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.engine.get(key)
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<RangeResult, StoreError> {
        self.engine.range(prefix, start_after, limit)
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply_tx, reply_rx) = oneshot::channel();
        queue
            .send((TxnRequest { compares, ops }, reply_tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        drop(queue);
        reply_rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.engine.watch(prefix, after)
    }
}
