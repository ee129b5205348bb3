//! The trait-level suite every backend must pass.

use std::sync::Arc;

use pontifex_store::{Compare, EventKind, Store, StoreOptions, TxnOutcome};

use crate::{commit, del, memory, next_events, put, redb};

#[tokio::test]
async fn memory_backend_passes_the_suite() {
    run_suite(memory(StoreOptions::default())).await;
}

#[tokio::test]
async fn redb_backend_passes_the_suite() {
    let (store, _dir) = redb(StoreOptions::default());
    run_suite(store).await;
}

async fn run_suite(store: Arc<dyn Store>) {
    assert_eq!(store.current_revision(), 0);
    assert_eq!(store.oldest_revision(), 0);
    create_if_absent(&*store).await;
    cas_update(&*store).await;
    conflicting_compares_write_nothing(&*store).await;
    delete_and_recreate(&*store).await;
    multi_op_atomicity(&*store).await;
    empty_txn(&*store).await;
    range_pages(&*store).await;
    revisions_strictly_increase(&*store).await;
}

async fn create_if_absent(store: &dyn Store) {
    let absent = || vec![Compare::Absent("/k".into())];
    let out = store.txn(absent(), vec![put("/k", "v1")]).await.unwrap();
    assert_eq!(out, TxnOutcome::Committed { revision: 1 });
    let kv = store.get("/k").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_ref(), kv.create_revision, kv.mod_revision),
        (&b"v1"[..], 1, 1)
    );

    let out = store.txn(absent(), vec![put("/k", "v2")]).await.unwrap();
    match out {
        TxnOutcome::Failed {
            failed: 0,
            current: Some(cur),
        } => assert_eq!(cur, kv),
        other => panic!("create of an existing key: {other:?}"),
    }
    assert_eq!(store.current_revision(), 1);
    assert_eq!(store.get("/k").await.unwrap().unwrap().value, "v1");
}

async fn cas_update(store: &dyn Store) {
    let out = store
        .txn(
            vec![Compare::ModRevision("/k".into(), 1)],
            vec![put("/k", "v2")],
        )
        .await
        .unwrap();
    assert_eq!(out, TxnOutcome::Committed { revision: 2 });
    let kv = store.get("/k").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_ref(), kv.create_revision, kv.mod_revision),
        (&b"v2"[..], 1, 2)
    );

    // A stale CAS fails and reports the present state.
    let out = store
        .txn(
            vec![Compare::ModRevision("/k".into(), 1)],
            vec![put("/k", "v3")],
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        TxnOutcome::Failed {
            failed: 0,
            current: Some(kv)
        }
    );
    // CAS on an absent key fails with no current value.
    let out = store
        .txn(
            vec![Compare::ModRevision("/none".into(), 2)],
            vec![put("/none", "x")],
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        TxnOutcome::Failed {
            failed: 0,
            current: None
        }
    );
    assert_eq!(store.current_revision(), 2);
}

async fn conflicting_compares_write_nothing(store: &dyn Store) {
    let out = store
        .txn(
            vec![
                Compare::Absent("/other".into()),
                Compare::ModRevision("/k".into(), 99),
            ],
            vec![put("/other", "x"), del("/k")],
        )
        .await
        .unwrap();
    match out {
        TxnOutcome::Failed {
            failed: 1,
            current: Some(cur),
        } => assert_eq!(cur.mod_revision, 2),
        other => panic!("second compare should fail: {other:?}"),
    }
    assert_eq!(store.get("/other").await.unwrap(), None);
    assert!(store.get("/k").await.unwrap().is_some());
    assert_eq!(store.current_revision(), 2);
}

async fn delete_and_recreate(store: &dyn Store) {
    let out = store
        .txn(vec![Compare::ModRevision("/k".into(), 2)], vec![del("/k")])
        .await
        .unwrap();
    assert_eq!(out, TxnOutcome::Committed { revision: 3 });
    assert_eq!(store.get("/k").await.unwrap(), None);
    assert_eq!(commit(store, vec![put("/k", "again")]).await, 4);
    let kv = store.get("/k").await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision),
        (4, 4),
        "create_revision restarts"
    );
}

async fn multi_op_atomicity(store: &dyn Store) {
    let before = store.current_revision();
    commit(store, vec![put("/m/c", "c")]).await;
    let mut watch = store.watch("/m/", before + 1).await.unwrap();
    let rev = commit(store, vec![put("/m/a", "a"), put("/m/b", "b"), del("/m/c")]).await;
    assert_eq!(rev, before + 2);
    for key in ["/m/a", "/m/b"] {
        assert_eq!(store.get(key).await.unwrap().unwrap().mod_revision, rev);
    }
    assert_eq!(store.get("/m/c").await.unwrap(), None);
    let events = next_events(&mut watch, 3).await;
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.kind.clone(), e.kv.key.as_str(), e.kv.mod_revision))
        .collect();
    assert_eq!(
        seen,
        vec![
            (EventKind::Put, "/m/a", rev),
            (EventKind::Put, "/m/b", rev),
            (EventKind::Delete, "/m/c", rev),
        ]
    );
    let deleted = &events[2];
    assert_eq!(deleted.kv.value, "c");
    assert_eq!(deleted.prev.as_ref().unwrap().mod_revision, before + 1);
}

async fn empty_txn(store: &dyn Store) {
    let rev = store.current_revision();
    assert_eq!(
        store.txn(vec![], vec![]).await.unwrap(),
        TxnOutcome::Committed { revision: rev }
    );
    assert_eq!(
        store.txn(vec![], vec![del("/never")]).await.unwrap(),
        TxnOutcome::Committed { revision: rev },
        "deleting an absent key takes no revision"
    );
    assert_eq!(store.current_revision(), rev);
}

async fn range_pages(store: &dyn Store) {
    for key in ["/p/c", "/p/a", "/q/x", "/p/b", "/p", "/pz"] {
        commit(store, vec![put(key, key)]).await;
    }
    let keys =
        |r: &pontifex_store::RangeResult| r.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
    let page = store.range("/p/", None, 2).await.unwrap();
    assert_eq!(keys(&page), ["/p/a", "/p/b"]);
    assert!(page.more);
    assert_eq!(page.revision, store.current_revision());
    let page = store.range("/p/", Some("/p/b"), 2).await.unwrap();
    assert_eq!(keys(&page), ["/p/c"]);
    assert!(!page.more);
    let page = store.range("/p/", Some("/p/a"), 2).await.unwrap();
    assert_eq!(keys(&page), ["/p/b", "/p/c"]);
    assert!(!page.more, "exactly `limit` keys left is not `more`");
    let page = store.range("/p/", None, 0).await.unwrap();
    assert_eq!(keys(&page), ["/p/a", "/p/b", "/p/c"]);
    // A start before the prefix starts at the prefix; one past the end gives nothing.
    let page = store.range("/p/", Some("/a"), 0).await.unwrap();
    assert_eq!(keys(&page), ["/p/a", "/p/b", "/p/c"]);
    let page = store.range("/p/", Some("/p/zzz"), 0).await.unwrap();
    assert!(page.kvs.is_empty() && !page.more);
    let page = store.range("/nothing/", None, 10).await.unwrap();
    assert!(page.kvs.is_empty() && !page.more);
    let all = store.range("", None, 0).await.unwrap();
    let mut sorted = keys(&all);
    sorted.sort();
    assert_eq!(keys(&all), sorted);
}

async fn revisions_strictly_increase(store: &dyn Store) {
    let mut last = store.current_revision();
    for i in 0..20 {
        let rev = commit(store, vec![put(&format!("/r/{}", i % 3), "x")]).await;
        assert_eq!(rev, last + 1);
        assert_eq!(store.current_revision(), rev);
        last = rev;
    }
}
