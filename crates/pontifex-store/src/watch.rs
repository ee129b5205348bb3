//! The watch stream: replay from the history window, then live events from the fan-out channel,
//! with lag recovery and progress notifications.
//!
//! Gap-free hand-over: the watcher subscribes to the fan-out channel and snapshots the history while
//! holding the engine's read lock, and commits are published (state + history + send) under the
//! write lock. So every commit is either in the snapshot or will arrive on the channel, never both.
//! The watcher still drops any live commit at or below the last revision it processed, which makes
//! the same hand-over safe again when it recovers from lag.
//!
//! The stream holds only a `Weak` reference to the engine: a forgotten watch never keeps a store
//! alive, and the stream ends when the store is shut down or dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use crate::engine::{Committed, Engine, State};
use crate::{Event, Revision, StoreError, WatchItem, WatchStream};

pub(crate) fn start(
    engine: &Arc<Engine>,
    prefix: &str,
    after: Revision,
) -> Result<WatchStream, StoreError> {
    let st = engine.read();
    let Some(tx) = &st.tx else {
        return Err(StoreError::Closed);
    };
    if after < st.compacted {
        return Err(StoreError::Compacted {
            requested: after,
            oldest: st.compacted,
        });
    }
    let rx = tx.subscribe();
    let mut pending = VecDeque::new();
    replay(&st, prefix, after, &mut pending);
    // A watch from a future revision starts there (as etcd's does): nothing is replayed and live
    // commits up to `after` are skipped.
    let last_rev = after.max(st.revision);
    drop(st);

    let watcher = Watcher {
        engine: Arc::downgrade(engine),
        prefix: prefix.to_owned(),
        rx,
        pending,
        last_rev,
        reported: after,
        last_progress: Instant::now(),
        interval: engine.options.progress_interval,
        done: false,
    };
    Ok(Box::pin(futures::stream::unfold(
        watcher,
        |mut w| async move { w.next().await.map(|item| (item, w)) },
    )))
}

/// Queues the events under `prefix` of every history entry after `after`.
fn replay(st: &State, prefix: &str, after: Revision, pending: &mut VecDeque<Event>) {
    for commit in st.history_after(after) {
        push_matching(commit, prefix, pending);
    }
}

fn push_matching(commit: &Committed, prefix: &str, pending: &mut VecDeque<Event>) {
    pending.extend(
        commit
            .events
            .iter()
            .filter(|ev| ev.kv.key.starts_with(prefix))
            .cloned(),
    );
}

struct Watcher {
    engine: Weak<Engine>,
    prefix: String,
    rx: broadcast::Receiver<Arc<Committed>>,
    /// Events taken from history or the channel, not yet handed out.
    pending: VecDeque<Event>,
    /// Every commit up to here has been looked at (its matching events are in `pending` or gone).
    last_rev: Revision,
    /// The highest revision the client has been told about, by an event or a progress item.
    reported: Revision,
    last_progress: Instant,
    interval: std::time::Duration,
    done: bool,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchItem, StoreError>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                self.reported = ev.kv.mod_revision;
                return Some(Ok(WatchItem::Event(ev)));
            }
            if self.done {
                return None;
            }
            // The store moved past the last thing the client heard about: tell it, at most once
            // per interval, so bookmarks advance even when nothing under the prefix changes.
            let progress_due = self.last_rev > self.reported;
            let deadline = self.last_progress + self.interval;
            if progress_due && Instant::now() >= deadline {
                self.reported = self.last_rev;
                self.last_progress = Instant::now();
                return Some(Ok(WatchItem::Progress(self.last_rev)));
            }
            tokio::select! {
                biased;
                received = self.rx.recv() => match received {
                    Ok(commit) => {
                        if commit.revision > self.last_rev {
                            push_matching(&commit, &self.prefix, &mut self.pending);
                            self.last_rev = commit.revision;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        if let Err(err) = self.recover() {
                            self.done = true;
                            return err.map(Err);
                        }
                    }
                    Err(RecvError::Closed) => {
                        self.done = true;
                    }
                },
                // Lazy, so no timer is created (or required) unless progress is due.
                () = async { tokio::time::sleep_until(deadline).await }, if progress_due => {}
            }
        }
    }

    /// The channel dropped commits this watcher had not read: re-subscribe and take the missed
    /// commits from the history window, atomically (same hand-over as at start). When that is
    /// impossible the stream ends: with the error, or quietly (`None`) if the store is gone.
    fn recover(&mut self) -> Result<(), Option<StoreError>> {
        let Some(engine) = self.engine.upgrade() else {
            return Err(None);
        };
        let st = engine.read();
        let Some(tx) = &st.tx else {
            return Err(None);
        };
        if self.last_rev < st.compacted {
            return Err(Some(StoreError::Compacted {
                requested: self.last_rev,
                oldest: st.compacted,
            }));
        }
        tracing::debug!(
            prefix = %self.prefix,
            from = self.last_rev,
            to = st.revision,
            "watcher lagged behind the fan-out channel; catching up from history"
        );
        self.rx = tx.subscribe();
        replay(&st, &self.prefix, self.last_rev, &mut self.pending);
        self.last_rev = self.last_rev.max(st.revision);
        Ok(())
    }
}
