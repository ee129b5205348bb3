//! The in-process core both backends share: the current state, the global revision, a bounded
//! window of history, live fan-out to watchers, and transaction evaluation.
//!
//! Durability is not decided here. A backend hands a batch of transactions to
//! [`Engine::commit_batch`] together with a [`Persist`] implementation; the engine evaluates the
//! batch against the current state, asks the backend to make the resulting commits durable, and only
//! then makes them visible (state, history, watchers). So no reader or watcher ever sees a revision
//! that could be lost in a crash.
//!
//! Not here: queueing and group commit (the redb backend does that), the watch stream itself
//! (`watch.rs`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::broadcast;

use crate::{
    Compare, Event, EventKind, KeyValue, Op, RangeResult, Revision, StoreError, StoreOptions,
    TxnOutcome, WatchStream,
};

/// One transaction as a caller submitted it.
#[derive(Clone, Debug)]
pub(crate) struct TxnRequest {
    pub(crate) compares: Vec<Compare>,
    pub(crate) ops: Vec<Op>,
}

/// Everything one revision changed: the unit of history, persistence and fan-out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Committed {
    pub(crate) revision: Revision,
    /// In op order. Never empty: a transaction that changes nothing gets no revision.
    pub(crate) events: Vec<Event>,
}

/// Makes commits durable before they become visible. The memory backend persists nothing.
pub(crate) trait Persist {
    /// Persist `commits` (consecutive revisions, oldest first) atomically; on error none of them may
    /// be considered written.
    fn persist(&mut self, commits: &[Arc<Committed>]) -> Result<(), StoreError>;
}

/// The memory backend's "persistence".
pub(crate) struct Volatile;

impl Persist for Volatile {
    fn persist(&mut self, _commits: &[Arc<Committed>]) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The state a backend loaded at start-up.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) kvs: BTreeMap<String, KeyValue>,
    pub(crate) revision: Revision,
    /// The most recent commits, consecutive and ending at `revision` (may be empty).
    pub(crate) history: Vec<Arc<Committed>>,
}

pub(crate) struct State {
    pub(crate) kvs: BTreeMap<String, KeyValue>,
    pub(crate) revision: Revision,
    /// Every revision in `compacted + 1 ..= revision` is in `history` (the invariant that makes
    /// `compacted` the oldest revision a watch may start after).
    pub(crate) compacted: Revision,
    pub(crate) history: VecDeque<Arc<Committed>>,
    /// Live fan-out. `None` once the store is shut down: receivers then drain and end.
    pub(crate) tx: Option<broadcast::Sender<Arc<Committed>>>,
}

impl State {
    /// The history entries with a revision greater than `after` (which must be `>= compacted`).
    pub(crate) fn history_after(&self, after: Revision) -> impl Iterator<Item = &Arc<Committed>> {
        // History is consecutive, so the position of `after + 1` is arithmetic.
        let skip = usize::try_from(after.saturating_sub(self.compacted)).unwrap_or(usize::MAX);
        self.history.iter().skip(skip)
    }
}

pub(crate) struct Engine {
    state: RwLock<State>,
    /// Serialises evaluate → persist → publish, so evaluation sees every earlier commit.
    writer: Mutex<()>,
    current: AtomicI64,
    oldest: AtomicI64,
    pub(crate) options: StoreOptions,
}

impl Engine {
    pub(crate) fn new(options: StoreOptions, loaded: Loaded) -> Arc<Self> {
        let (tx, _) = broadcast::channel(options.watch_buffer.max(1));
        let mut history: VecDeque<Arc<Committed>> = loaded.history.into();
        while history.len() > options.history_window {
            history.pop_front();
        }
        let compacted = loaded.revision - history.len() as Revision;
        debug_assert!(
            history
                .iter()
                .enumerate()
                .all(|(i, c)| c.revision == compacted + 1 + i as Revision)
        );
        Arc::new(Engine {
            state: RwLock::new(State {
                kvs: loaded.kvs,
                revision: loaded.revision,
                compacted,
                history,
                tx: Some(tx),
            }),
            writer: Mutex::new(()),
            current: AtomicI64::new(loaded.revision),
            oldest: AtomicI64::new(compacted),
            options,
        })
    }

    // A poisoned lock means a panic while mutating plain data structures that are always left
    // consistent between statements; carrying on is safer than taking the whole server down.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn current_revision(&self) -> Revision {
        self.current.load(Ordering::Acquire)
    }

    pub(crate) fn oldest_revision(&self) -> Revision {
        self.oldest.load(Ordering::Acquire)
    }

    /// Stops fan-out: every watch stream ends once it has drained what it was sent. Reads and writes
    /// fail with `Closed` from now on.
    pub(crate) fn close(&self) {
        self.write().tx = None;
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let st = self.read();
        if st.tx.is_none() {
            return Err(StoreError::Closed);
        }
        Ok(st.kvs.get(key).cloned())
    }

    pub(crate) fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<RangeResult, StoreError> {
        let st = self.read();
        if st.tx.is_none() {
            return Err(StoreError::Closed);
        }
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut iter = st
            .kvs
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv);
        let limit = if limit == 0 { usize::MAX } else { limit };
        let kvs: Vec<KeyValue> = iter.by_ref().take(limit).cloned().collect();
        let more = iter.next().is_some();
        Ok(RangeResult {
            kvs,
            revision: st.revision,
            more,
        })
    }

    /// Evaluates `requests` in order (each sees the effects of the earlier ones), persists the
    /// resulting commits in one call, then publishes them. Returns one outcome per request, or the
    /// persistence error for all of them (then nothing was written or published).
    pub(crate) fn commit_batch(
        &self,
        persist: &mut dyn Persist,
        requests: &[TxnRequest],
    ) -> Result<Vec<TxnOutcome>, StoreError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (outcomes, commits) = {
            let st = self.read();
            if st.tx.is_none() {
                return Err(StoreError::Closed);
            }
            evaluate(&st, requests)
        };
        if commits.is_empty() {
            return Ok(outcomes);
        }
        persist.persist(&commits)?;
        self.publish(commits);
        Ok(outcomes)
    }

    /// Makes commits visible: state, history, revision, then fan-out, all under one write lock so a
    /// watcher that subscribes under the read lock sees each commit either in history or live,
    /// never both and never neither.
    fn publish(&self, commits: Vec<Arc<Committed>>) {
        let mut st = self.write();
        let window = self.options.history_window;
        for commit in commits {
            debug_assert_eq!(commit.revision, st.revision + 1);
            for ev in &commit.events {
                match ev.kind {
                    EventKind::Put => {
                        st.kvs.insert(ev.kv.key.clone(), ev.kv.clone());
                    }
                    EventKind::Delete => {
                        st.kvs.remove(&ev.kv.key);
                    }
                }
            }
            st.revision = commit.revision;
            st.history.push_back(commit.clone());
            while st.history.len() > window {
                if let Some(old) = st.history.pop_front() {
                    st.compacted = old.revision;
                }
            }
            if window == 0 {
                st.compacted = st.revision;
            }
            if let Some(tx) = &st.tx {
                // An error only means nobody is watching right now.
                let _ = tx.send(commit);
            }
        }
        self.current.store(st.revision, Ordering::Release);
        self.oldest.store(st.compacted, Ordering::Release);
    }

    pub(crate) fn watch(
        self: &Arc<Self>,
        prefix: &str,
        after: Revision,
    ) -> Result<WatchStream, StoreError> {
        crate::watch::start(self, prefix, after)
    }
}

/// Evaluates a batch against `st` plus the batch's own earlier effects. Pure: nothing is applied.
fn evaluate(st: &State, requests: &[TxnRequest]) -> (Vec<TxnOutcome>, Vec<Arc<Committed>>) {
    // Keys changed by earlier transactions of this batch; `None` = deleted.
    let mut overlay: HashMap<String, Option<KeyValue>> = HashMap::new();
    let mut revision = st.revision;
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut commits = Vec::new();
    let lookup = |overlay: &HashMap<String, Option<KeyValue>>, key: &str| match overlay.get(key) {
        Some(v) => v.clone(),
        None => st.kvs.get(key).cloned(),
    };

    for req in requests {
        let failed = req.compares.iter().enumerate().find_map(|(i, c)| {
            let (key, holds) = match c {
                Compare::Absent(key) => (key, lookup(&overlay, key).is_none()),
                Compare::ModRevision(key, rev) => (
                    key,
                    lookup(&overlay, key).is_some_and(|kv| kv.mod_revision == *rev),
                ),
            };
            (!holds).then_some((i, key))
        });
        if let Some((failed, key)) = failed {
            outcomes.push(TxnOutcome::Failed {
                failed,
                current: lookup(&overlay, key),
            });
            continue;
        }

        let next = revision + 1;
        let mut events = Vec::with_capacity(req.ops.len());
        for op in &req.ops {
            match op {
                Op::Put { key, value } => {
                    let prev = lookup(&overlay, key);
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(next, |p| p.create_revision),
                        mod_revision: next,
                    };
                    overlay.insert(key.clone(), Some(kv.clone()));
                    events.push(Event {
                        kind: EventKind::Put,
                        kv,
                        prev,
                    });
                }
                Op::Delete { key } => {
                    // Deleting an absent key changes nothing and produces no event (as etcd).
                    if let Some(prev) = lookup(&overlay, key) {
                        let kv = KeyValue {
                            mod_revision: next,
                            ..prev.clone()
                        };
                        overlay.insert(key.clone(), None);
                        events.push(Event {
                            kind: EventKind::Delete,
                            kv,
                            prev: Some(prev),
                        });
                    }
                }
            }
        }
        if events.is_empty() {
            // Nothing changed: the transaction succeeds at the current revision without a new one.
            outcomes.push(TxnOutcome::Committed { revision });
        } else {
            revision = next;
            outcomes.push(TxnOutcome::Committed { revision });
            commits.push(Arc::new(Committed { revision, events }));
        }
    }
    (outcomes, commits)
}

#[cfg(test)]
mod tests;
