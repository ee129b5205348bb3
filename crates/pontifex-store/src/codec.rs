//! The on-disk encoding of the redb backend's records. Hand-written and versioned (first byte), so
//! the file format does not depend on a serialisation library's choices.
//!
//! Current record (`key -> record`): `[1][create_rev i64][mod_rev i64][value…]`.
//! Log record (`revision -> record`): `[1][count u32]` then per event
//! - put: `[1][key][create i64][value]` then `[0]`, or `[1][prev create i64][prev mod i64][prev value]`
//! - delete: `[2][key][prev create i64][prev mod i64][prev value]` (the event's own `kv` is the
//!   previous value with `mod_revision` = the log revision, so it is not stored twice)
//!
//! Strings and byte strings are `[len u32][bytes]`; integers are little-endian.

use bytes::Bytes;

use crate::{Event, EventKind, KeyValue, Revision};

const VERSION: u8 = 1;
const PUT: u8 = 1;
const DELETE: u8 = 2;

/// A record that cannot be decoded (a corrupt or foreign file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DecodeError(&'static str);

pub(crate) fn encode_current(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + kv.value.len());
    out.push(VERSION);
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

pub(crate) fn decode_current(key: &str, record: &[u8]) -> Result<KeyValue, DecodeError> {
    let mut r = Reader(record);
    r.version()?;
    let create_revision = r.i64()?;
    let mod_revision = r.i64()?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(r.0),
        create_revision,
        mod_revision,
    })
}

pub(crate) fn encode_events(events: &[Event]) -> Vec<u8> {
    let size: usize = events
        .iter()
        .map(|e| {
            40 + e.kv.key.len() + e.kv.value.len() + e.prev.as_ref().map_or(0, |p| p.value.len())
        })
        .sum();
    let mut out = Vec::with_capacity(5 + size);
    out.push(VERSION);
    put_len(&mut out, events.len());
    for ev in events {
        match ev.kind {
            EventKind::Put => {
                out.push(PUT);
                put_bytes(&mut out, ev.kv.key.as_bytes());
                out.extend_from_slice(&ev.kv.create_revision.to_le_bytes());
                put_bytes(&mut out, &ev.kv.value);
                match &ev.prev {
                    None => out.push(0),
                    Some(prev) => {
                        out.push(1);
                        put_prev(&mut out, prev);
                    }
                }
            }
            EventKind::Delete => {
                out.push(DELETE);
                put_bytes(&mut out, ev.kv.key.as_bytes());
                // A delete always has a previous state (deleting an absent key is no event).
                let prev = ev.prev.as_ref().unwrap_or(&ev.kv);
                put_prev(&mut out, prev);
            }
        }
    }
    out
}

pub(crate) fn decode_events(revision: Revision, record: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let mut r = Reader(record);
    r.version()?;
    let count = r.len()?;
    // Each event takes at least 10 bytes; refuse absurd counts before allocating.
    if count > record.len() / 10 {
        return Err(DecodeError("event count larger than the record"));
    }
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        let kind = r.u8()?;
        let key = r.string()?;
        match kind {
            PUT => {
                let create_revision = r.i64()?;
                let value = r.bytes()?;
                let prev = match r.u8()? {
                    0 => None,
                    1 => Some(r.prev(&key)?),
                    _ => return Err(DecodeError("bad previous-value flag")),
                };
                events.push(Event {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key,
                        value,
                        create_revision,
                        mod_revision: revision,
                    },
                    prev,
                });
            }
            DELETE => {
                let prev = r.prev(&key)?;
                events.push(Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        mod_revision: revision,
                        ..prev.clone()
                    },
                    prev: Some(prev),
                });
            }
            _ => return Err(DecodeError("unknown event kind")),
        }
    }
    if !r.0.is_empty() {
        return Err(DecodeError("trailing bytes after the last event"));
    }
    Ok(events)
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Keys and values are far below 4 GiB (API objects are limited to a few MiB).
    let len = u32::try_from(len).expect("record field longer than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_prev(out: &mut Vec<u8>, prev: &KeyValue) {
    out.extend_from_slice(&prev.create_revision.to_le_bytes());
    out.extend_from_slice(&prev.mod_revision.to_le_bytes());
    put_bytes(out, &prev.value);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("record truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn version(&mut self) -> Result<(), DecodeError> {
        match self.u8()? {
            VERSION => Ok(()),
            _ => Err(DecodeError("unknown record version")),
        }
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        let mut buf = [0; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(buf))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let mut buf = [0; 4];
        buf.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(buf) as usize)
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.len()?;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.len()?;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| DecodeError("key is not UTF-8"))
    }

    fn prev(&mut self, key: &str) -> Result<KeyValue, DecodeError> {
        let create_revision = self.i64()?;
        let mod_revision = self.i64()?;
        let value = self.bytes()?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision,
        })
    }
}

#[cfg(test)]
mod tests;
