//! The store's integration tests: one binary (it links once), one module per concern.

mod concurrency;
mod crash;
mod props;
mod restart;
mod suite;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use pontifex_store::{
    Event, MemoryStore, Op, RedbStore, Revision, Store, StoreError, StoreOptions, WatchItem,
    WatchStream,
};

pub(crate) fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

pub(crate) fn del(key: &str) -> Op {
    Op::Delete { key: key.into() }
}

pub(crate) fn memory(options: StoreOptions) -> Arc<dyn Store> {
    Arc::new(MemoryStore::new(options))
}

/// A redb store in a fresh temporary directory (kept alive by the returned guard).
pub(crate) fn redb(options: StoreOptions) -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("store.redb"), options).unwrap();
    (Arc::new(store), dir)
}

/// Commits `ops` unconditionally and returns the revision.
pub(crate) async fn commit(store: &dyn Store, ops: Vec<Op>) -> Revision {
    match store.txn(vec![], ops).await.unwrap() {
        pontifex_store::TxnOutcome::Committed { revision } => revision,
        other => panic!("unconditional txn failed: {other:?}"),
    }
}

/// The next item of a watch, failing the test after 5 s.
pub(crate) async fn next_item(stream: &mut WatchStream) -> Option<Result<WatchItem, StoreError>> {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("watch stream stalled")
}

/// The next `n` events of a watch, skipping progress items.
pub(crate) async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        match next_item(stream).await {
            Some(Ok(WatchItem::Event(ev))) => events.push(ev),
            Some(Ok(WatchItem::Progress(_))) => {}
            other => panic!("watch ended early after {} events: {other:?}", events.len()),
        }
    }
    events
}
