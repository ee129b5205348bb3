//! The in-memory backend: the shared engine with nothing persisted. For tests and throw-away labs;
//! nothing survives the process. Transactions are applied inline on the caller's task (there is no
//! fsync to amortise, so no writer queue).

use std::sync::Arc;

use crate::engine::{Engine, Loaded, TxnRequest, Volatile};
use crate::{
    Compare, KeyValue, Op, RangeResult, Revision, Store, StoreError, StoreOptions, TxnOutcome,
    WatchStream,
};

/// A [`Store`] that keeps everything in memory.
pub struct MemoryStore {
    engine: Arc<Engine>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("revision", &self.engine.current_revision())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new(options: StoreOptions) -> Self {
        MemoryStore {
            engine: Engine::new(options, Loaded::default()),
        }
    }

    /// Ends every watch stream; later calls fail with [`StoreError::Closed`]. Dropping the store
    /// does the same.
    pub fn shutdown(&self) {
        self.engine.close();
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        self.engine.close();
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    fn current_revision(&self) -> Revision {
        self.engine.current_revision()
    }

    fn oldest_revision(&self) -> Revision {
        self.engine.oldest_revision()
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.engine.get(key)
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<RangeResult, StoreError> {
        self.engine.range(prefix, start_after, limit)
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        let request = TxnRequest { compares, ops };
        let mut outcomes = self
            .engine
            .commit_batch(&mut Volatile, std::slice::from_ref(&request))?;
        outcomes.pop().ok_or(StoreError::Closed)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.engine.watch(prefix, after)
    }
}
