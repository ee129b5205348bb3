//! Watch: replay + live hand-over, compaction, lag, progress, shutdown.

use std::sync::Arc;
use std::time::Duration;

use pontifex_store::{Store, StoreError, StoreOptions, WatchItem};

use crate::{commit, memory, next_events, next_item, put, redb};

/// Watches started while a writer runs see exactly the revisions after their start, once each.
async fn replay_then_live_without_gap(store: Arc<dyn Store>, writes: usize) {
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..writes {
                commit(&*store, vec![put(&format!("/w/{}", i % 7), &i.to_string())]).await;
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut watchers = Vec::new();
    for _ in 0..5 {
        let after = store.current_revision();
        watchers.push((after, store.watch("/w/", after).await.unwrap()));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    writer.await.unwrap();
    let last = store.current_revision();
    assert_eq!(last, writes as i64);
    for (after, mut stream) in watchers {
        let events = next_events(&mut stream, (last - after) as usize).await;
        let revs: Vec<_> = events.iter().map(|e| e.kv.mod_revision).collect();
        let expected: Vec<_> = (after + 1..=last).collect();
        assert_eq!(revs, expected, "watch from {after}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_replay_then_live_without_gap() {
    replay_then_live_without_gap(memory(StoreOptions::default()), 3000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_replay_then_live_without_gap() {
    let (store, _dir) = redb(StoreOptions::default());
    replay_then_live_without_gap(store, 300).await;
}

#[tokio::test]
async fn too_old_a_revision_is_compacted() {
    let store = memory(StoreOptions::default().with_history_window(5));
    for i in 0..10 {
        commit(&*store, vec![put("/c/k", &i.to_string())]).await;
    }
    assert_eq!(store.oldest_revision(), 5);
    match store.watch("/c/", 4).await {
        Err(StoreError::Compacted {
            requested: 4,
            oldest: 5,
        }) => {}
        Err(other) => panic!("expected Compacted, got {other:?}"),
        Ok(_) => panic!("expected Compacted, got a stream"),
    }
    let mut stream = store.watch("/c/", 5).await.unwrap();
    let revs: Vec<_> = next_events(&mut stream, 5)
        .await
        .iter()
        .map(|e| e.kv.mod_revision)
        .collect();
    assert_eq!(revs, [6, 7, 8, 9, 10]);
}

#[tokio::test]
async fn a_lagging_watcher_recovers_from_history() {
    let store = memory(
        StoreOptions::default()
            .with_watch_buffer(4)
            .with_history_window(1000),
    );
    let mut stream = store.watch("/l/", 0).await.unwrap();
    for i in 0..100 {
        commit(&*store, vec![put("/l/k", &i.to_string())]).await;
    }
    let events = next_events(&mut stream, 100).await;
    let revs: Vec<_> = events.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(revs, (1..=100).collect::<Vec<_>>());
    // And it is live again afterwards.
    commit(&*store, vec![put("/l/k", "live")]).await;
    assert_eq!(next_events(&mut stream, 1).await[0].kv.value, "live");
}

#[tokio::test]
async fn a_watcher_lagging_past_the_window_gets_compacted() {
    let store = memory(
        StoreOptions::default()
            .with_watch_buffer(4)
            .with_history_window(10),
    );
    let mut stream = store.watch("/l/", 0).await.unwrap();
    for i in 0..100 {
        commit(&*store, vec![put("/l/k", &i.to_string())]).await;
    }
    match next_item(&mut stream).await {
        Some(Err(StoreError::Compacted {
            requested: 0,
            oldest: 90,
        })) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(next_item(&mut stream).await.is_none(), "the stream ends");
}

#[tokio::test]
async fn progress_reports_revisions_of_other_prefixes() {
    let store = memory(StoreOptions::default().with_progress_interval(Duration::from_millis(50)));
    commit(&*store, vec![put("/a/1", "x")]).await;
    let mut stream = store.watch("/a/", 0).await.unwrap();
    let first = next_events(&mut stream, 1).await;
    assert_eq!(first[0].kv.key, "/a/1");

    // One write elsewhere: the timer path reports it.
    let rev = commit(&*store, vec![put("/b/1", "x")]).await;
    assert_eq!(
        next_item(&mut stream).await.unwrap().unwrap(),
        WatchItem::Progress(rev)
    );

    // A burst elsewhere: progress at most once per interval, never going backwards, reaching the end.
    let started = tokio::time::Instant::now();
    let mut last = rev;
    for i in 0..20 {
        last = commit(&*store, vec![put("/b/1", &i.to_string())]).await;
    }
    let mut progress = Vec::new();
    while progress.last() != Some(&last) {
        match next_item(&mut stream).await.unwrap().unwrap() {
            WatchItem::Progress(r) => progress.push(r),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert!(progress.len() <= 1 + (started.elapsed().as_millis() / 50) as usize);

    // An event under the prefix still arrives as an event.
    let rev = commit(&*store, vec![put("/a/2", "y")]).await;
    match next_item(&mut stream).await.unwrap().unwrap() {
        WatchItem::Event(ev) => assert_eq!(ev.kv.mod_revision, rev),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn no_progress_without_store_movement() {
    let store = memory(StoreOptions::default().with_progress_interval(Duration::from_millis(20)));
    commit(&*store, vec![put("/a/1", "x")]).await;
    let mut stream = store.watch("/a/", 1).await.unwrap();
    let quiet = tokio::time::timeout(
        Duration::from_millis(150),
        futures::StreamExt::next(&mut stream),
    );
    assert!(quiet.await.is_err(), "an idle store sends nothing");
}

#[tokio::test]
async fn a_future_revision_starts_there() {
    let store = memory(StoreOptions::default());
    commit(&*store, vec![put("/f/a", "0")]).await;
    let mut stream = store.watch("/f/", 3).await.unwrap();
    for i in 0..4 {
        commit(&*store, vec![put("/f/a", &i.to_string())]).await;
    }
    let revs: Vec<_> = next_events(&mut stream, 2)
        .await
        .iter()
        .map(|e| e.kv.mod_revision)
        .collect();
    assert_eq!(revs, [4, 5]);
}

#[tokio::test]
async fn streams_end_when_the_store_is_dropped() {
    let store = memory(StoreOptions::default());
    let mut stream = store.watch("/", 0).await.unwrap();
    commit(&*store, vec![put("/x", "1")]).await;
    drop(store);
    // What was sent before the drop is still delivered, then the stream ends.
    assert_eq!(next_events(&mut stream, 1).await[0].kv.key, "/x");
    assert!(next_item(&mut stream).await.is_none());

    let (store, _dir) = redb(StoreOptions::default());
    let mut stream = store.watch("/", 0).await.unwrap();
    drop(store);
    assert!(next_item(&mut stream).await.is_none());
}

#[tokio::test]
async fn shutdown_closes_the_store() {
    let store = pontifex_store::MemoryStore::new(StoreOptions::default());
    let mut stream = store.watch("/", 0).await.unwrap();
    store.shutdown();
    assert!(next_item(&mut stream).await.is_none());
    assert!(matches!(
        store.txn(vec![], vec![put("/a", "b")]).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(store.watch("/", 0).await, Err(StoreError::Closed)));
}
