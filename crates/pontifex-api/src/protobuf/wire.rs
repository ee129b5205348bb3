//! The protobuf wire format, read-only: field keys, varints, fixed 64/32-bit values and length-delimited
//! byte strings. Every read checks the remaining length first, so malformed input is an error.

use super::{Path, ProtobufError};

/// The wire types Kubernetes messages use (groups, 3 and 4, are refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WireType {
    Varint = 0,
    I64 = 1,
    Len = 2,
    I32 = 5,
}

/// A cursor over one message's bytes.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next field key, or `None` at the end of the message.
    pub(super) fn key(&mut self, path: &Path) -> Result<Option<(u64, WireType)>, ProtobufError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint(path)?;
        let field = key >> 3;
        let wire_type = (key & 7) as u8;
        let wt = match wire_type {
            0 => WireType::Varint,
            1 => WireType::I64,
            2 => WireType::Len,
            5 => WireType::I32,
            _ => {
                return Err(ProtobufError::InvalidKey {
                    path: path.to_string(),
                    field,
                    wire_type,
                });
            }
        };
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(ProtobufError::InvalidKey {
                path: path.to_string(),
                field,
                wire_type,
            });
        }
        Ok(Some((field, wt)))
    }

    /// A base-128 varint of at most 10 bytes.
    pub(super) fn varint(&mut self, path: &Path) -> Result<u64, ProtobufError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.buf.split_first() else {
                return Err(ProtobufError::Truncated {
                    path: path.to_string(),
                });
            };
            self.buf = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::InvalidVarint {
            path: path.to_string(),
        })
    }

    pub(super) fn fixed64(&mut self, path: &Path) -> Result<u64, ProtobufError> {
        let b = self.take(8, path)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length-delimited value.
    pub(super) fn bytes(&mut self, path: &Path) -> Result<&'a [u8], ProtobufError> {
        let len = self.varint(path)?;
        let len = usize::try_from(len).map_err(|_| ProtobufError::Truncated {
            path: path.to_string(),
        })?;
        self.take(len, path)
    }

    /// Skip a value of an unknown field.
    pub(super) fn skip(&mut self, wt: WireType, path: &Path) -> Result<(), ProtobufError> {
        match wt {
            WireType::Varint => self.varint(path).map(drop),
            WireType::I64 => self.take(8, path).map(drop),
            WireType::Len => self.bytes(path).map(drop),
            WireType::I32 => self.take(4, path).map(drop),
        }
    }

    fn take(&mut self, n: usize, path: &Path) -> Result<&'a [u8], ProtobufError> {
        if n > self.buf.len() {
            return Err(ProtobufError::Truncated {
                path: path.to_string(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
}
