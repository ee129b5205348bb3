//! Concurrent compare-and-swap increments: no lost updates.

use std::sync::Arc;

use pontifex_store::{Compare, Store, StoreOptions, TxnOutcome};

use crate::{commit, memory, put, redb};

async fn increments(store: Arc<dyn Store>, tasks: usize, attempts: usize) {
    commit(&*store, vec![put("/counter", "0")]).await;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for _ in 0..attempts {
                let kv = store.get("/counter").await.unwrap().unwrap();
                let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                let out = store
                    .txn(
                        vec![Compare::ModRevision("/counter".into(), kv.mod_revision)],
                        vec![put("/counter", &(n + 1).to_string())],
                    )
                    .await
                    .unwrap();
                match out {
                    TxnOutcome::Committed { revision } => won.push(revision),
                    TxnOutcome::Failed { current, .. } => {
                        assert!(current.unwrap().mod_revision > kv.mod_revision);
                    }
                }
            }
            won
        }));
    }
    let mut revisions = Vec::new();
    for h in handles {
        revisions.extend(h.await.unwrap());
    }
    let kv = store.get("/counter").await.unwrap().unwrap();
    let value: usize = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
    assert!(!revisions.is_empty());
    assert_eq!(value, revisions.len(), "lost updates");
    revisions.sort();
    revisions.dedup();
    assert_eq!(revisions.len(), value, "two CAS winners shared a revision");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cas_increments_lose_nothing() {
    increments(memory(StoreOptions::default()), 32, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_cas_increments_lose_nothing() {
    let (store, _dir) = redb(StoreOptions::default());
    increments(store, 32, 30).await;
}
