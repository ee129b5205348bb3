//! Crash safety: every write acknowledged before a SIGKILL is in the file afterwards.
//!
//! The test re-executes this test binary in "child" mode (selected by an environment variable),
//! where `crash_child` writes in a loop and prints each acknowledged revision; the parent kills it
//! mid-stream and reopens the file.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use pontifex_store::{RedbStore, Store, StoreOptions};

use crate::{commit, put};

const CHILD_ENV: &str = "PONTIFEX_STORE_CRASH_CHILD";

/// Child mode only: a no-op unless the parent set the environment variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path, StoreOptions::default()).unwrap());
    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/crash/{task}/{i}");
                let rev = commit(&*store, vec![put(&key, &i.to_string())]).await;
                // One write per line, so a kill never leaves half a line that parses.
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {key} {rev}").unwrap();
                out.flush().unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < 400 {
        let line = lines.next().expect("child exited early").unwrap();
        if let Some(rest) = line.strip_prefix("ack ") {
            let (key, rev) = rest.split_once(' ').unwrap();
            acked.push((key.to_owned(), rev.parse::<i64>().unwrap()));
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Lines already written before the kill were acknowledged too.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some((key, rev)) = line.strip_prefix("ack ").and_then(|r| r.split_once(' '))
            && let Ok(rev) = rev.parse::<i64>()
        {
            acked.push((key.to_owned(), rev));
        }
    }

    let store = RedbStore::open(&path, StoreOptions::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let max = acked.iter().map(|(_, r)| *r).max().unwrap();
    assert!(store.current_revision() >= max);
    runtime.block_on(async {
        for (key, rev) in &acked {
            let kv = store.get(key).await.unwrap();
            let kv = kv.unwrap_or_else(|| panic!("acknowledged {key} at {rev} is lost"));
            assert_eq!(kv.mod_revision, *rev, "{key}");
        }
        // The reopened store keeps working.
        let rev = commit(&store, vec![put("/after-crash", "x")]).await;
        assert_eq!(rev, store.current_revision());
    });
}
