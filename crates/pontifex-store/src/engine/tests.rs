use bytes::Bytes;

use super::*;

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

fn req(compares: Vec<Compare>, ops: Vec<Op>) -> TxnRequest {
    TxnRequest { compares, ops }
}

#[test]
fn a_batch_sees_its_own_earlier_effects() {
    let engine = Engine::new(StoreOptions::default(), Loaded::default());
    let outcomes = engine
        .commit_batch(
            &mut Volatile,
            &[
                req(vec![Compare::Absent("a".into())], vec![put("a", "1")]),
                // Same compare again: now fails because the first txn created the key.
                req(vec![Compare::Absent("a".into())], vec![put("a", "2")]),
                req(
                    vec![Compare::ModRevision("a".into(), 1)],
                    vec![put("a", "3")],
                ),
                req(vec![], vec![]),
            ],
        )
        .unwrap();
    assert_eq!(outcomes[0], TxnOutcome::Committed { revision: 1 });
    match &outcomes[1] {
        TxnOutcome::Failed {
            failed: 0,
            current: Some(kv),
        } => assert_eq!(kv.value, "1"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(outcomes[2], TxnOutcome::Committed { revision: 2 });
    // An empty txn commits at the current revision without taking a new one.
    assert_eq!(outcomes[3], TxnOutcome::Committed { revision: 2 });
    let kv = engine.get("a").unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (1, 2));
    assert_eq!(engine.current_revision(), 2);
}

struct Failing;

impl Persist for Failing {
    fn persist(&mut self, _commits: &[Arc<Committed>]) -> Result<(), StoreError> {
        Err(StoreError::Backend("disk full".into()))
    }
}

#[test]
fn a_failed_persist_publishes_nothing() {
    let engine = Engine::new(StoreOptions::default(), Loaded::default());
    let err = engine
        .commit_batch(&mut Failing, &[req(vec![], vec![put("a", "1")])])
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)));
    assert_eq!(engine.current_revision(), 0);
    assert_eq!(engine.get("a").unwrap(), None);
    assert!(engine.read().history.is_empty());
}

#[test]
fn history_window_bounds_memory_and_sets_oldest() {
    let engine = Engine::new(
        StoreOptions::default().with_history_window(3),
        Loaded::default(),
    );
    for i in 0..10 {
        engine
            .commit_batch(
                &mut Volatile,
                &[req(vec![], vec![put("k", &i.to_string())])],
            )
            .unwrap();
    }
    let st = engine.read();
    assert_eq!(st.history.len(), 3);
    assert_eq!(st.compacted, 7);
    assert_eq!(
        st.history_after(8).map(|c| c.revision).collect::<Vec<_>>(),
        vec![9, 10]
    );
    drop(st);
    assert_eq!(engine.oldest_revision(), 7);
}

#[test]
fn deleting_an_absent_key_takes_no_revision() {
    let engine = Engine::new(StoreOptions::default(), Loaded::default());
    let out = engine
        .commit_batch(
            &mut Volatile,
            &[req(vec![], vec![Op::Delete { key: "nope".into() }])],
        )
        .unwrap();
    assert_eq!(out, vec![TxnOutcome::Committed { revision: 0 }]);
    assert_eq!(engine.current_revision(), 0);
}
