//! Event aggregation, as client-go's recorder does it: the same Event (involved object, type, reason,
//! message) recorded again within ten minutes bumps `count` and `lastTimestamp` of the Event already
//! written instead of writing a new one. Pure bookkeeping; [`crate::Context::event`] does the IO.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};

/// How long an Event stays open for repeats.
const WINDOW: SignedDuration = SignedDuration::from_secs(600);
/// Bound on remembered Events (client-go's cache holds 4096).
const CAPACITY: usize = 4096;

/// What makes two Events the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) object: String,
    pub(crate) type_: String,
    pub(crate) reason: String,
    pub(crate) message: String,
}

#[derive(Clone, Debug)]
struct Entry {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

/// A repeat: patch this Event to this count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Repeat {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) count: i32,
}

#[derive(Debug, Default)]
pub(crate) struct Aggregator {
    seen: HashMap<Key, Entry>,
}

impl Aggregator {
    /// A repeat of an Event recorded within the window, or `None` for a new one (then call
    /// [`Aggregator::recorded`] once it is written).
    pub(crate) fn observe(&mut self, key: &Key, now: Timestamp) -> Option<Repeat> {
        let e = self.seen.get_mut(key)?;
        if now.duration_since(e.last) > WINDOW {
            self.seen.remove(key);
            return None;
        }
        e.count += 1;
        e.last = now;
        Some(Repeat {
            namespace: e.namespace.clone(),
            name: e.name.clone(),
            count: e.count,
        })
    }

    /// A new Event was written under `namespace/name`.
    pub(crate) fn recorded(&mut self, key: Key, namespace: &str, name: &str, now: Timestamp) {
        if self.seen.len() >= CAPACITY && !self.seen.contains_key(&key) {
            // Forget the stalest: it is the least likely to repeat.
            if let Some(old) = self
                .seen
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| k.clone())
            {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(
            key,
            Entry {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                count: 1,
                last: now,
            },
        );
    }

    /// The Event could not be patched (deleted meanwhile): the next one starts afresh.
    pub(crate) fn forget(&mut self, key: &Key) {
        self.seen.remove(key);
    }
}

#[cfg(test)]
mod tests;
