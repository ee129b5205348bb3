//! redb restart: state, revision and history survive; the on-disk log stays bounded.

use std::path::Path;

use pontifex_store::{RedbStore, Store, StoreError, StoreOptions, TxnOutcome};
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};

use crate::{commit, del, next_events, put};

fn open(path: &Path, options: StoreOptions) -> RedbStore {
    RedbStore::open(path, options).unwrap()
}

#[tokio::test]
async fn state_revision_and_history_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");

    let store = open(&path, StoreOptions::default());
    for i in 0..20 {
        let key = format!("/r/{}", i % 6);
        if i % 5 == 4 {
            // Delete the key the previous iteration wrote, so every iteration is one revision.
            commit(&store, vec![del(&format!("/r/{}", (i - 1) % 6))]).await;
        } else {
            commit(&store, vec![put(&key, &i.to_string()), put("/other", "x")]).await;
        }
    }
    let revision = store.current_revision();
    let state = store.range("", None, 0).await.unwrap();
    let mut full = store.watch("/r/", 0).await.unwrap();
    let history = next_events(&mut full, 20).await;
    drop(full);
    drop(store);

    let store = open(&path, StoreOptions::default());
    assert_eq!(store.current_revision(), revision);
    assert_eq!(store.oldest_revision(), 0);
    assert_eq!(store.range("", None, 0).await.unwrap(), state);
    // A watch from a pre-restart revision replays the same events, then goes live.
    let mut resumed = store.watch("/r/", 5).await.unwrap();
    let replayed = next_events(&mut resumed, 15).await;
    assert_eq!(replayed, history[5..]);
    let rev = commit(&store, vec![put("/r/new", "n")]).await;
    assert_eq!(rev, revision + 1);
    let live = next_events(&mut resumed, 1).await;
    assert_eq!(
        (live[0].kv.key.as_str(), live[0].kv.mod_revision),
        ("/r/new", rev)
    );

    // CAS against a pre-restart mod revision still works.
    let kv = store.get("/other").await.unwrap().unwrap();
    let out = store
        .txn(
            vec![pontifex_store::Compare::ModRevision(
                "/other".into(),
                kv.mod_revision,
            )],
            vec![put("/other", "cas")],
        )
        .await
        .unwrap();
    assert_eq!(out, TxnOutcome::Committed { revision: rev + 1 });
}

#[tokio::test]
async fn the_window_is_kept_across_restart_and_the_log_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let options = StoreOptions::default().with_history_window(16);

    let store = open(&path, options.clone());
    for i in 0..100 {
        commit(&store, vec![put("/k", &i.to_string())]).await;
    }
    assert_eq!(store.oldest_revision(), 84);
    drop(store);

    // The on-disk log holds between the window and the window plus an eighth.
    {
        const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
        let db = redb::Database::open(&path).unwrap();
        let rtx = db.begin_read().unwrap();
        let len = rtx.open_table(LOG).unwrap().len().unwrap();
        assert!((16..=18).contains(&len), "log has {len} entries");
    }

    let store = open(&path, options);
    assert_eq!(store.current_revision(), 100);
    assert_eq!(store.oldest_revision(), 84);
    assert!(matches!(
        store.watch("/", 83).await,
        Err(StoreError::Compacted {
            requested: 83,
            oldest: 84
        })
    ));
    let mut stream = store.watch("/", 84).await.unwrap();
    let revs: Vec<_> = next_events(&mut stream, 16)
        .await
        .iter()
        .map(|e| e.kv.mod_revision)
        .collect();
    assert_eq!(revs, (85..=100).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_empty_store_reopens_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    drop(open(&path, StoreOptions::default()));
    let store = open(&path, StoreOptions::default());
    assert_eq!(store.current_revision(), 0);
    assert_eq!(commit(&store, vec![put("/a", "1")]).await, 1);
}

#[tokio::test]
async fn a_gap_in_the_log_is_reported_as_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = open(&path, StoreOptions::default());
    for i in 0..5 {
        commit(&store, vec![put("/k", &i.to_string())]).await;
    }
    drop(store);
    {
        const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
        let db = redb::Database::open(&path).unwrap();
        let wtx = db.begin_write().unwrap();
        wtx.open_table(LOG).unwrap().remove(3).unwrap();
        wtx.commit().unwrap();
    }
    match RedbStore::open(&path, StoreOptions::default()) {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("log entry"), "{msg}"),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[tokio::test]
async fn shutdown_stops_writes_and_releases_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = open(&path, StoreOptions::default());
    commit(&store, vec![put("/k", "1")]).await;
    let mut stream = store.watch("/", 1).await.unwrap();
    store.shutdown();
    assert!(matches!(
        store.txn(vec![], vec![put("/k", "2")]).await,
        Err(StoreError::Closed)
    ));
    assert!(crate::next_item(&mut stream).await.is_none());
    // The file is closed: it can be opened again while the old handle still exists.
    let again = open(&path, StoreOptions::default());
    assert_eq!(again.current_revision(), 1);
    drop(store);
}
