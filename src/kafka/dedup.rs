//! Exactly-once effect without transactions: the `binlake.pos` header and the filter that
//! drops replayed records.
//!
//! After a crash, `binlake run` resumes from its last committed position and re-sends the
//! records between that position and the crash (a prefix of what follows). Every record's
//! header `binlake.pos` encodes its source position in a fixed-width form whose byte order is
//! the position order; within one Kafka partition those positions strictly increase, across
//! restarts too (a restarted run emits no snapshot row at or before what the previous run may
//! have written: `Merger::fence`). So a consumer that remembers, per partition, the greatest
//! `binlake.pos` it applied, and drops every record whose `binlake.pos` is not greater, applies
//! each source change exactly once, in source order. [`PositionFilter`] is that consumer side.

use std::collections::HashMap;

use crate::position::Position;

/// Which record of one row change (a primary-key update writes three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Part {
    /// The change's record: insert, update, snapshot read, or the delete record.
    Main = 0,
    /// The tombstone that follows a delete (or the old key of a key update).
    Tombstone = 1,
    /// The new key's record of a primary-key update.
    NewKey = 2,
}

/// The name of the record header that carries a record's source position.
pub const HEADER: &str = "binlake.pos";

/// Length of an encoded position: 22 bytes as 44 hex digits.
pub const POS_LEN: usize = 44;

/// The `binlake.pos` header of `pos` (and `part`): hex of file sequence (8 bytes), offset (8),
/// class (1: snapshot 0, binlog 1), index (4), part (1), big-endian, so that comparing the
/// strings compares the positions.
pub fn encode(pos: &Position, part: Part) -> [u8; POS_LEN] {
    let mut raw = [0u8; 22];
    raw[0..8].copy_from_slice(&pos.file_seq().to_be_bytes());
    raw[8..16].copy_from_slice(&pos.offset.to_be_bytes());
    raw[16] = pos.snapshot.is_none() as u8;
    raw[17..21].copy_from_slice(&pos.snapshot.unwrap_or(pos.row).to_be_bytes());
    raw[21] = part as u8;
    let mut out = [0u8; POS_LEN];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in raw.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

/// The position a `binlake.pos` header encodes (the file is named `binlog.{seq}`: only its
/// sequence number is carried). `None` when the header is not one.
pub fn decode(header: &[u8]) -> Option<Position> {
    if header.len() != POS_LEN {
        return None;
    }
    let mut raw = [0u8; 22];
    for (i, r) in raw.iter_mut().enumerate() {
        let s = std::str::from_utf8(&header[2 * i..2 * i + 2]).ok()?;
        *r = u8::from_str_radix(s, 16).ok()?;
    }
    let seq = u64::from_be_bytes(raw[0..8].try_into().ok()?);
    let offset = u64::from_be_bytes(raw[8..16].try_into().ok()?);
    let index = u32::from_be_bytes(raw[17..21].try_into().ok()?);
    let binlog = raw[16] == 1;
    Some(Position {
        file: format!("binlog.{seq:06}").into(),
        offset,
        row: if binlog { index } else { 0 },
        gtid: None,
        snapshot: (!binlog).then_some(index),
    })
}

/// Drops records already applied: per (topic, partition), a record passes only if its
/// `binlake.pos` is greater than every one seen before. Records without the header pass.
#[derive(Debug, Default)]
pub struct PositionFilter {
    last: HashMap<(String, i32), [u8; POS_LEN]>,
}

impl PositionFilter {
    /// Starts from known high marks (e.g. restored with the consumer's offsets).
    pub fn with_marks(marks: impl IntoIterator<Item = ((String, i32), [u8; POS_LEN])>) -> Self {
        PositionFilter {
            last: marks.into_iter().collect(),
        }
    }

    /// True if the record should be applied; remembers its position when it is.
    pub fn accept(&mut self, topic: &str, partition: i32, pos: Option<&[u8]>) -> bool {
        let Some(pos) = pos.and_then(|p| <[u8; POS_LEN]>::try_from(p).ok()) else {
            return true;
        };
        match self.last.get_mut(&(topic.to_string(), partition)) {
            Some(last) if pos <= *last => false,
            Some(last) => {
                *last = pos;
                true
            }
            None => {
                self.last.insert((topic.to_string(), partition), pos);
                true
            }
        }
    }

    /// Sets (or, with `None`, forgets) the greatest position applied in a partition, e.g.
    /// when a consumer takes the partition over from what it wrote before.
    pub fn set_mark(&mut self, topic: &str, partition: i32, mark: Option<[u8; POS_LEN]>) {
        let k = (topic.to_string(), partition);
        match mark {
            Some(m) => {
                self.last.insert(k, m);
            }
            None => {
                self.last.remove(&k);
            }
        }
    }

    /// The greatest position applied in one partition.
    pub fn mark(&self, topic: &str, partition: i32) -> Option<&[u8; POS_LEN]> {
        self.last.get(&(topic.to_string(), partition))
    }

    /// The greatest position applied per partition.
    pub fn marks(&self) -> impl Iterator<Item = (&(String, i32), &[u8; POS_LEN])> {
        self.last.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(seq: u64, offset: u64, row: u32, snapshot: Option<u32>) -> Position {
        Position {
            file: format!("mysql-bin.{seq:06}").into(),
            offset,
            row,
            gtid: None,
            snapshot,
        }
    }

    #[test]
    fn encoding_order_is_position_order() {
        let ps = [
            pos(2, 4, 0, None),
            pos(2, 900, 0, Some(0)),
            pos(2, 900, 0, Some(7)),
            pos(2, 900, 0, None),
            pos(2, 900, 3, None),
            pos(10, 4, 0, None),
            pos(1_000_000, 4, 0, None),
        ];
        for w in ps.windows(2) {
            assert!(w[0] < w[1]);
            assert!(
                encode(&w[0], Part::Main) < encode(&w[1], Part::Main),
                "{:?}",
                w
            );
            assert!(encode(&w[0], Part::NewKey) < encode(&w[1], Part::Main));
        }
        let p = pos(3, 120, 2, None);
        assert!(encode(&p, Part::Main) < encode(&p, Part::Tombstone));
        assert!(encode(&p, Part::Tombstone) < encode(&p, Part::NewKey));
        let back = decode(&encode(&p, Part::Main)).unwrap();
        assert_eq!((back.file_seq(), back.offset, back.row), (3, 120, 2));
        assert_eq!(
            decode(&encode(&ps[2], Part::Main)).unwrap().snapshot,
            Some(7)
        );
        assert!(decode(b"nope").is_none());
    }

    #[test]
    fn filter_drops_replayed_records_per_partition() {
        let mut f = PositionFilter::default();
        let a = encode(&pos(1, 10, 0, None), Part::Main);
        let b = encode(&pos(1, 20, 0, None), Part::Main);
        assert!(f.accept("t", 0, Some(&a)));
        assert!(f.accept("t", 0, Some(&b)));
        // A replay of the prefix is dropped; another partition keeps its own mark.
        assert!(!f.accept("t", 0, Some(&a)));
        assert!(!f.accept("t", 0, Some(&b)));
        assert!(f.accept("t", 1, Some(&a)));
        assert!(f.accept("t", 0, None));
    }
}
