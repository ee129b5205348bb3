//! Measures group-commit throughput of the redb backend: N concurrent callers each doing small
//! create-if-absent transactions for a few seconds, every one fsynced before it is acknowledged.
//!
//! `cargo run -p pontifex-store --example txn_throughput [callers] [seconds]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pontifex_store::{Compare, MemoryStore, Op, RedbStore, Store, StoreOptions, TxnOutcome};

async fn run(store: Arc<dyn Store>, callers: usize, seconds: u64) -> f64 {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let key = format!("/registry/configmaps/bench/c{caller}-{done}");
                let out = store
                    .txn(
                        vec![Compare::Absent(key.clone())],
                        vec![Op::Put {
                            key,
                            value: Bytes::from_static(&[b'x'; 200]),
                        }],
                    )
                    .await
                    .expect("txn");
                assert!(matches!(out, TxnOutcome::Committed { .. }));
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let callers: usize = args.next().map_or(32, |a| a.parse().expect("callers"));
    let seconds: u64 = args.next().map_or(3, |a| a.parse().expect("seconds"));

    let dir = tempfile::tempdir().expect("tempdir");
    let redb =
        RedbStore::open(dir.path().join("bench.redb"), StoreOptions::default()).expect("open");
    let redb_rate = run(Arc::new(redb), callers, seconds).await;
    println!("redb:   {redb_rate:>10.0} txn/s with {callers} callers (fsync per group commit)");
    let redb1 =
        RedbStore::open(dir.path().join("bench1.redb"), StoreOptions::default()).expect("open");
    let single = run(Arc::new(redb1), 1, seconds).await;
    println!("redb:   {single:>10.0} txn/s with 1 caller (one fsync per txn)");
    let memory_rate = run(
        Arc::new(MemoryStore::new(StoreOptions::default())),
        callers,
        seconds,
    )
    .await;
    println!("memory: {memory_rate:>10.0} txn/s with {callers} callers");
}
