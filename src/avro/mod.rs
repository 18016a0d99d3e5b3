//! Avro for table records: the schemas derived from a table's metadata and the binary
//! encoding of its rows.
//!
//! Invariant: a schema is a function of the [`TableSchema`](crate::schema::TableSchema) alone,
//! never of the data, so every row of one table version is encoded against the same schema;
//! and the mapping is lossless: a value that does not fit its column's Avro type is an error,
//! never a rounding. The schemas binlake itself defines (the metadata fields of every value,
//! the offsets record) are the files in `schemas/`, compiled in.

mod encode;
mod schema;

pub use encode::{EncodeError, Encoder};
pub use schema::{avro_name, TableSchemas};

/// `schemas/change_metadata.avsc`: the fields appended to every value record.
pub const CHANGE_METADATA: &str = include_str!("../../schemas/change_metadata.avsc");
/// `schemas/offsets.avsc`: the record of `{topic_prefix}.offsets`.
pub const OFFSETS: &str = include_str!("../../schemas/offsets.avsc");

/// Avro binary primitives (zig-zag varints, length-prefixed bytes).
pub mod wire {
    pub fn long(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        long(out, b.len() as i64);
        out.extend_from_slice(b);
    }

    /// Reads a zig-zag varint; `None` on truncated or over-long input.
    pub fn read_long(input: &mut &[u8]) -> Option<i64> {
        let mut z: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = input.split_first()?;
            *input = rest;
            z |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        None
    }

    /// Reads length-prefixed bytes.
    pub fn read_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
        let n = usize::try_from(read_long(input)?).ok()?;
        if n > input.len() {
            return None;
        }
        let (b, rest) = input.split_at(n);
        *input = rest;
        Some(b)
    }
}
