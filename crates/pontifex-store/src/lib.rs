//! A revisioned key-value store with watch, shaped like etcd's API so that an etcd backend fits the
//! same trait: one global, strictly increasing revision (the API's `resourceVersion`), multi-key
//! transactions guarded by comparisons, prefix ranges, and watches that resume from a revision.
//!
//! Backends: [`memory`] (for tests; nothing survives the process) and [`redb_backend`] (the default: a
//! log-structured file that is fsynced before a write is acknowledged, with group commit). Both
//! share one in-process engine that keeps the current state, a bounded window of history for
//! watches, and the live fan-out to watchers; tune them with [`StoreOptions`].
//! See `docs/store.md` for tasks, channels, buffer sizes and what happens to a slow watcher.
//!
//! The store knows nothing about Kubernetes objects: keys are strings, values are bytes.
#![forbid(unsafe_code)]

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

/// A store revision. Revision 0 is "nothing written yet"; every committed transaction that writes
/// gets the next revision.
pub type Revision = i64;

/// A key with its value and the revisions that created and last modified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision that created this key (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the last change to this key.
    pub mod_revision: Revision,
}

/// A condition a transaction checks before it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key exists and was last modified at exactly this revision.
    ModRevision(String, Revision),
}

/// One write inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Bytes },
    Delete { key: String },
}

/// How a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Every comparison held and every op was applied at `revision` (durably, for durable backends).
    Committed { revision: Revision },
    /// Comparison number `failed` did not hold; nothing was written. `current` is that key's present
    /// state, so callers can report the conflict without another read.
    Failed {
        failed: usize,
        current: Option<KeyValue>,
    },
}

/// What happened to a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as a watcher sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put, the new state. For a delete, the key's last value with `mod_revision` set to the
    /// revision of the delete.
    pub kv: KeyValue,
    /// The state before this change, if the key existed.
    pub prev: Option<KeyValue>,
}

/// An item of a watch stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    /// A change under the watched prefix, in revision order.
    Event(Event),
    /// Every change under the prefix up to this revision has been delivered (used for bookmarks).
    Progress(Revision),
}

/// The stream a watch returns. It ends with `Err(StoreError::Compacted)` if the watcher fell behind the
/// kept history, and ends (returns `None`) when the store shuts down.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchItem, StoreError>> + Send>>;

/// One page of a range read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// The store revision the page was read at.
    pub revision: Revision,
    /// More keys follow the last one returned.
    pub more: bool,
}

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The requested revision is older than the oldest kept in history.
    #[error("required revision {requested} has been compacted; oldest available is {oldest}")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    /// The requested revision is newer than the store's current one.
    #[error("required revision {requested} is a future revision; current is {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The backend failed to read or write (disk full, corrupt file, I/O error).
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The store has been shut down.
    #[error("the store is shut down")]
    Closed,
}

/// The store every API server component talks to.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The revision of the last committed write.
    fn current_revision(&self) -> Revision;

    /// The oldest revision a watch may start after (older ones are compacted).
    fn oldest_revision(&self) -> Revision;

    /// The current value of one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys starting with `prefix`, in key order, strictly after `start_after` when given, at most
    /// `limit` (0 = no limit).
    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<RangeResult, StoreError>;

    /// Check every comparison; if all hold, apply every op atomically at one new revision.
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnOutcome, StoreError>;

    /// Every change under `prefix` with a revision greater than `after`, then live changes, in order.
    /// Fails at once with `Compacted` if `after` is older than the kept history. An `after` newer
    /// than the current revision is not an error: the watch starts there, as etcd's does.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;
}

/// Tuning knobs shared by both backends. Build with `StoreOptions::default()` and the `with_*`
/// methods; `docs/store.md` explains what each one bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreOptions {
    /// How many committed revisions the store keeps for watches (in memory, and at least this many in
    /// the redb log). A watch may start after any of the last `history_window` revisions; older ones
    /// fail with [`StoreError::Compacted`]. Default 10,000.
    pub history_window: usize,
    /// Capacity of the live fan-out channel, in committed revisions. A watcher that falls further
    /// behind than this catches up from the history window (or gets `Compacted`). Default 1,024.
    pub watch_buffer: usize,
    /// A watcher that sees no events for its prefix while the store revision moves on is sent
    /// [`WatchItem::Progress`] at most this often. Default 1 s.
    pub progress_interval: Duration,
    /// The most transactions one group commit (one fsync) takes. Default 1,024.
    pub max_batch: usize,
    /// How many transactions may wait for the redb writer before callers are held back. Default 4,096.
    pub queue_depth: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            history_window: 10_000,
            watch_buffer: 1_024,
            progress_interval: Duration::from_secs(1),
            max_batch: 1_024,
            queue_depth: 4_096,
        }
    }
}

impl StoreOptions {
    /// Sets [`StoreOptions::history_window`].
    pub fn with_history_window(mut self, revisions: usize) -> Self {
        self.history_window = revisions;
        self
    }

    /// Sets [`StoreOptions::watch_buffer`] (at least 1).
    pub fn with_watch_buffer(mut self, revisions: usize) -> Self {
        self.watch_buffer = revisions.max(1);
        self
    }

    /// Sets [`StoreOptions::progress_interval`].
    pub fn with_progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }

    /// Sets [`StoreOptions::max_batch`] (at least 1).
    pub fn with_max_batch(mut self, txns: usize) -> Self {
        self.max_batch = txns.max(1);
        self
    }

    /// Sets [`StoreOptions::queue_depth`] (at least 1).
    pub fn with_queue_depth(mut self, txns: usize) -> Self {
        self.queue_depth = txns.max(1);
        self
    }
}

mod codec;
mod engine;
pub mod memory;
pub mod redb_backend;
mod watch;

pub use memory::MemoryStore;
pub use redb_backend::RedbStore;
