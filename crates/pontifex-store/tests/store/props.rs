//! Property test: random transactions against a model of etcd's semantics.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use pontifex_store::{
    Compare, Event, EventKind, KeyValue, Op, Revision, Store, StoreOptions, TxnOutcome,
};
use proptest::prelude::*;

use crate::{memory, next_events, put, redb};

const KEYS: [&str; 5] = ["a/1", "a/2", "b/1", "b/2", "c"];

#[derive(Default)]
struct Model {
    kvs: BTreeMap<String, KeyValue>,
    revision: Revision,
    events: Vec<Event>,
}

impl Model {
    fn txn(&mut self, compares: &[Compare], ops: &[Op]) -> TxnOutcome {
        for (i, c) in compares.iter().enumerate() {
            let (key, ok) = match c {
                Compare::Absent(k) => (k, !self.kvs.contains_key(k)),
                Compare::ModRevision(k, r) => {
                    (k, self.kvs.get(k).is_some_and(|kv| kv.mod_revision == *r))
                }
            };
            if !ok {
                return TxnOutcome::Failed {
                    failed: i,
                    current: self.kvs.get(key).cloned(),
                };
            }
        }
        let rev = self.revision + 1;
        let mut changed = false;
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    let prev = self.kvs.get(key).cloned();
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                    };
                    self.kvs.insert(key.clone(), kv.clone());
                    self.events.push(Event {
                        kind: EventKind::Put,
                        kv,
                        prev,
                    });
                    changed = true;
                }
                Op::Delete { key } => {
                    if let Some(prev) = self.kvs.remove(key) {
                        let mut kv = prev.clone();
                        kv.mod_revision = rev;
                        self.events.push(Event {
                            kind: EventKind::Delete,
                            kv,
                            prev: Some(prev),
                        });
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.revision = rev;
        }
        TxnOutcome::Committed {
            revision: self.revision,
        }
    }
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(&KEYS[..]).prop_map(str::to_owned)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (key(), "[a-z]{0,3}").prop_map(|(key, v)| Op::Put { key, value: Bytes::from(v) }),
        1 => key().prop_map(|key| Op::Delete { key }),
    ]
}

fn compare() -> impl Strategy<Value = Compare> {
    prop_oneof![
        key().prop_map(Compare::Absent),
        (key(), 0i64..12).prop_map(|(k, r)| Compare::ModRevision(k, r)),
    ]
}

type Txn = (Vec<Compare>, Vec<Op>);

fn txns() -> impl Strategy<Value = Vec<Txn>> {
    prop::collection::vec(
        (
            prop::collection::vec(compare(), 0..2),
            prop::collection::vec(op(), 0..4),
        ),
        1..25,
    )
}

/// Runs `txns` on `store` and the model, then checks state and a watch from `watch_from`.
async fn check(store: Arc<dyn Store>, txns: Vec<Txn>, watch_from: usize, prefix: &str) {
    let mut model = Model::default();
    for (compares, ops) in txns {
        // Bias ModRevision compares towards revisions that exist, so CAS often succeeds.
        let compares: Vec<Compare> = compares
            .into_iter()
            .map(|c| match c {
                Compare::ModRevision(k, r) if r % 2 == 0 => {
                    let actual = model.kvs.get(&k).map_or(r, |kv| kv.mod_revision);
                    Compare::ModRevision(k, actual)
                }
                other => other,
            })
            .collect();
        let expected = model.txn(&compares, &ops);
        let got = store.txn(compares, ops).await.unwrap();
        assert_eq!(got, expected);
        assert_eq!(store.current_revision(), model.revision);
    }
    let all = store.range("", None, 0).await.unwrap();
    assert_eq!(all.kvs, model.kvs.values().cloned().collect::<Vec<_>>());
    assert_eq!(all.revision, model.revision);

    let after = (watch_from as Revision) % (model.revision + 1);
    let expected: Vec<Event> = model
        .events
        .iter()
        .filter(|e| e.kv.mod_revision > after && e.kv.key.starts_with(prefix))
        .cloned()
        .collect();
    let mut stream = store.watch(prefix, after).await.unwrap();
    let got = next_events(&mut stream, expected.len()).await;
    assert_eq!(got, expected);
    // Nothing extra: the next event is a sentinel written now.
    let sentinel = format!("{prefix}zz-sentinel");
    crate::commit(&*store, vec![put(&sentinel, "s")]).await;
    assert_eq!(next_events(&mut stream, 1).await[0].kv.key, sentinel);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn memory_matches_the_model(txns in txns(), from in 0usize..30, prefix in prop::sample::select(&["", "a/", "b/"][..])) {
        runtime().block_on(check(memory(StoreOptions::default()), txns, from, prefix));
    }
}

proptest! {
    // Each case pays for fsyncs; fewer cases, same generator.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn redb_matches_the_model(txns in txns(), from in 0usize..30, prefix in prop::sample::select(&["", "a/", "b/"][..])) {
        let (store, _dir) = redb(StoreOptions::default());
        runtime().block_on(check(store, txns, from, prefix));
    }
}
