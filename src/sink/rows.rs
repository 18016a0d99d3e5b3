//! Kafka records → rows of the lake, decoded from Avro binary straight into Arrow column
//! builders (no value tree in between).
//!
//! Invariant: a row is appended whole or the record is an error naming its topic, partition
//! and offset (the sink then stops; nothing of the open files is made visible). A tombstone
//! becomes a delete row: its key columns from the record key, every other column null.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::i256;

use crate::avro::wire::{read_bytes, read_long};
use crate::error::{Error, Result};

use super::schema::{LakeSchema, LakeType, Prim, Step, Target};

/// Where a record came from, for its metadata columns and error messages.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (ms): a tombstone's `__ts_ms`.
    pub timestamp_ms: i64,
}

enum Col {
    Bool(BooleanBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Str(StringBuilder),
    Bin(BinaryBuilder),
    Dec(Decimal128Builder),
    DecText(StringBuilder, i8),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
}

/// One decoded field value (key fields of tombstones).
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Long(i64),
    F32(f32),
    F64(f64),
    Bytes(&'a [u8]),
}

/// Rows of one file not yet handed to its writer.
pub struct RowBuffer {
    pub schema: Arc<LakeSchema>,
    cols: Vec<Col>,
    op: StringBuilder,
    deleted: BooleanBuilder,
    pos: StringBuilder,
    ts: Int64Builder,
    partition: Int32Builder,
    offset: Int64Builder,
    rows: usize,
    bytes: usize,
}

fn corrupt(o: &Origin<'_>, what: &str) -> Error {
    Error::Corrupt {
        file: format!("{}[{}]", o.topic, o.partition),
        offset: o.offset as u64,
        detail: format!("{what} does not decode with its registered schema"),
    }
}

impl RowBuffer {
    pub fn new(schema: Arc<LakeSchema>) -> RowBuffer {
        let cols = schema
            .columns
            .iter()
            .map(|c| match c.ty {
                LakeType::Boolean => Col::Bool(BooleanBuilder::new()),
                LakeType::Int => Col::I32(Int32Builder::new()),
                LakeType::Long => Col::I64(Int64Builder::new()),
                LakeType::Float => Col::F32(Float32Builder::new()),
                LakeType::Double => Col::F64(Float64Builder::new()),
                LakeType::String => Col::Str(StringBuilder::new()),
                LakeType::Bytes => Col::Bin(BinaryBuilder::new()),
                LakeType::Decimal { precision, scale } => Col::Dec(
                    Decimal128Builder::new()
                        .with_precision_and_scale(precision, scale)
                        .unwrap_or_default(),
                ),
                LakeType::DecimalText { scale } => Col::DecText(StringBuilder::new(), scale),
                LakeType::Date => Col::Date(Date32Builder::new()),
                LakeType::LocalMicros => Col::Ts(TimestampMicrosecondBuilder::new()),
                LakeType::UtcMicros => {
                    Col::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
                }
            })
            .collect();
        RowBuffer {
            schema,
            cols,
            op: StringBuilder::new(),
            deleted: BooleanBuilder::new(),
            pos: StringBuilder::new(),
            ts: Int64Builder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            rows: 0,
            bytes: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// About how much memory the buffered rows take.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends a decoded row (see [`decode_value`], [`decode_tombstone`]).
    pub fn push(&mut self, d: Decoded<'_>, o: &Origin<'_>) -> Result<()> {
        for (i, cell) in d.cells.into_iter().enumerate() {
            self.append(i, cell, o)?;
        }
        self.finish_row(d.op, d.deleted, d.pos, d.ts, o, d.size);
        Ok(())
    }

    fn finish_row(
        &mut self,
        op: &str,
        deleted: bool,
        pos: Option<&str>,
        ts: i64,
        o: &Origin<'_>,
        size: usize,
    ) {
        self.op.append_value(op);
        self.deleted.append_value(deleted);
        self.pos.append_option(pos);
        self.ts.append_value(ts);
        self.partition.append_value(o.partition);
        self.offset.append_value(o.offset);
        self.rows += 1;
        self.bytes += size + 64;
    }

    fn append(&mut self, i: usize, cell: Cell<'_>, o: &Origin<'_>) -> Result<()> {
        let bad = || corrupt(o, "a column value");
        let Some(col) = self.cols.get_mut(i) else {
            return Err(bad());
        };
        match (col, cell) {
            (Col::Bool(b), Cell::Null) => b.append_null(),
            (Col::I32(b), Cell::Null) => b.append_null(),
            (Col::I64(b), Cell::Null) => b.append_null(),
            (Col::F32(b), Cell::Null) => b.append_null(),
            (Col::F64(b), Cell::Null) => b.append_null(),
            (Col::Str(b), Cell::Null) => b.append_null(),
            (Col::Bin(b), Cell::Null) => b.append_null(),
            (Col::Dec(b), Cell::Null) => b.append_null(),
            (Col::DecText(b, _), Cell::Null) => b.append_null(),
            (Col::Date(b), Cell::Null) => b.append_null(),
            (Col::Ts(b), Cell::Null) => b.append_null(),
            (Col::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Col::I32(b), Cell::Long(v)) => b.append_value(i32::try_from(v).map_err(|_| bad())?),
            (Col::Date(b), Cell::Long(v)) => b.append_value(i32::try_from(v).map_err(|_| bad())?),
            (Col::I64(b), Cell::Long(v)) => b.append_value(v),
            (Col::Ts(b), Cell::Long(v)) => b.append_value(v),
            (Col::F32(b), Cell::F32(v)) => b.append_value(v),
            (Col::F64(b), Cell::F64(v)) => b.append_value(v),
            (Col::Str(b), Cell::Bytes(v)) => {
                b.append_value(std::str::from_utf8(v).map_err(|_| bad())?)
            }
            (Col::Bin(b), Cell::Bytes(v)) => b.append_value(v),
            (Col::Dec(b), Cell::Bytes(v)) => b.append_value(decimal_i128(v).ok_or_else(bad)?),
            (Col::DecText(b, scale), Cell::Bytes(v)) => {
                b.append_value(decimal_text(v, *scale).ok_or_else(bad)?)
            }
            _ => return Err(bad()),
        }
        Ok(())
    }

    /// The buffered rows as one batch; the buffer is empty afterwards.
    pub fn take_batch(&mut self) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Col::Bool(b) => Arc::new(b.finish()),
                    Col::I32(b) => Arc::new(b.finish()),
                    Col::I64(b) => Arc::new(b.finish()),
                    Col::F32(b) => Arc::new(b.finish()),
                    Col::F64(b) => Arc::new(b.finish()),
                    Col::Str(b) => Arc::new(b.finish()),
                    Col::Bin(b) => Arc::new(b.finish()),
                    Col::Dec(b) => Arc::new(b.finish()),
                    Col::DecText(b, _) => Arc::new(b.finish()),
                    Col::Date(b) => Arc::new(b.finish()),
                    Col::Ts(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        arrays.push(Arc::new(self.op.finish()));
        arrays.push(Arc::new(self.deleted.finish()));
        arrays.push(Arc::new(self.pos.finish()));
        arrays.push(Arc::new(self.ts.finish()));
        arrays.push(Arc::new(self.partition.finish()));
        arrays.push(Arc::new(self.offset.finish()));
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(self.schema.arrow.clone(), arrays).map_err(|e| {
            Error::Unsupported(format!(
                "internal: building a batch of {}: {e}",
                self.schema.table
            ))
        })
    }
}

/// One record decoded against its table's layout, not yet appended anywhere.
pub struct Decoded<'a> {
    pub cells: Vec<Cell<'a>>,
    pub op: &'a str,
    pub deleted: bool,
    pub pos: Option<&'a str>,
    pub ts: i64,
    size: usize,
}

/// Decodes a value record (Avro binary after the 5-byte Confluent header), whole, checking
/// that every value fits its column.
pub fn decode_value<'a>(
    schema: &LakeSchema,
    mut data: &'a [u8],
    o: &Origin<'_>,
) -> Result<Decoded<'a>> {
    let size = data.len();
    let mut op: &[u8] = b"";
    let mut ts = 0i64;
    let mut pos: Option<&[u8]> = None;
    let mut cells: Vec<Cell<'a>> = Vec::with_capacity(schema.columns.len());
    for step in &schema.value_steps {
        let cell = match step.null_branch {
            Some(null) if read_long(&mut data).ok_or_else(|| corrupt(o, "the value"))? == null => {
                Cell::Null
            }
            _ => read(step, &mut data).ok_or_else(|| corrupt(o, "the value"))?,
        };
        match (step.target, cell) {
            (Target::Column(_), cell) => cells.push(cell),
            (Target::Op, Cell::Bytes(b)) => op = b,
            (Target::TsMs, Cell::Long(v)) => ts = v,
            (Target::Pos, Cell::Bytes(b)) => pos = Some(b),
            (Target::Pos, Cell::Null) => pos = None,
            _ => return Err(corrupt(o, "the value")),
        }
    }
    if !data.is_empty() || cells.len() != schema.columns.len() {
        return Err(corrupt(o, "the value (length)"));
    }
    let op = std::str::from_utf8(op).map_err(|_| corrupt(o, "__op"))?;
    let pos = pos
        .map(std::str::from_utf8)
        .transpose()
        .map_err(|_| corrupt(o, "__pos"))?;
    check(schema, &cells, o)?;
    Ok(Decoded {
        cells,
        op,
        deleted: op == "d",
        pos,
        ts,
        size,
    })
}

/// Decodes a tombstone's key into a delete row: key columns filled, the rest null.
pub fn decode_tombstone<'a>(
    schema: &LakeSchema,
    mut key: &'a [u8],
    o: &Origin<'_>,
) -> Result<Decoded<'a>> {
    let size = key.len();
    let mut cells: Vec<Cell<'a>> = (0..schema.columns.len()).map(|_| Cell::Null).collect();
    for step in &schema.key_steps {
        let Target::Column(i) = step.target else {
            continue;
        };
        let cell = match step.null_branch {
            Some(null) if read_long(&mut key).ok_or_else(|| corrupt(o, "the key"))? == null => {
                Cell::Null
            }
            _ => read(step, &mut key).ok_or_else(|| corrupt(o, "the key"))?,
        };
        if let Some(slot) = cells.get_mut(i) {
            *slot = cell;
        }
    }
    check(schema, &cells, o)?;
    Ok(Decoded {
        cells,
        op: "d",
        deleted: true,
        pos: None,
        ts: o.timestamp_ms,
        size,
    })
}

/// Fails when a cell would not fit its column.
fn check(schema: &LakeSchema, cells: &[Cell<'_>], o: &Origin<'_>) -> Result<()> {
    for (col, cell) in schema.columns.iter().zip(cells) {
        let ok = match (col.ty, cell) {
            (_, Cell::Null) => true,
            (LakeType::Int | LakeType::Date, Cell::Long(v)) => i32::try_from(*v).is_ok(),
            (LakeType::String, Cell::Bytes(b)) => std::str::from_utf8(b).is_ok(),
            (LakeType::Decimal { .. }, Cell::Bytes(b)) => decimal_i128(b).is_some(),
            (LakeType::DecimalText { .. }, Cell::Bytes(b)) => b.len() <= 32,
            (LakeType::Boolean, Cell::Bool(_))
            | (LakeType::Long | LakeType::LocalMicros | LakeType::UtcMicros, Cell::Long(_))
            | (LakeType::Float, Cell::F32(_))
            | (LakeType::Double, Cell::F64(_))
            | (LakeType::Bytes, Cell::Bytes(_)) => true,
            _ => false,
        };
        if !ok {
            return Err(corrupt(
                o,
                &format!("column {} (value of the wrong type)", col.name),
            ));
        }
    }
    Ok(())
}

impl<'a> Decoded<'a> {
    /// The row in another layout of its table: column `i` of the result is column `map[i]`
    /// of this one, or null (a column this row's schema did not have).
    pub fn project(mut self, map: &[Option<usize>]) -> Decoded<'a> {
        let mut taken: Vec<Option<Cell<'a>>> = self.cells.drain(..).map(Some).collect();
        self.cells = map
            .iter()
            .map(|m| {
                m.and_then(|i| taken.get_mut(i)?.take())
                    .unwrap_or(Cell::Null)
            })
            .collect();
        self
    }

    #[cfg(test)]
    pub fn for_test(cells: Vec<Cell<'a>>, ts: i64) -> Decoded<'a> {
        Decoded {
            cells,
            op: "c",
            deleted: false,
            pos: None,
            ts,
            size: 0,
        }
    }
}

impl Cell<'_> {
    /// The value as text for a Hive partition path (`None`: SQL NULL).
    pub fn text(&self, ty: LakeType) -> Option<String> {
        Some(match (self, ty) {
            (Cell::Null, _) => return None,
            (Cell::Bool(b), _) => b.to_string(),
            (Cell::Long(v), LakeType::Date) => chrono::DateTime::from_timestamp(v * 86_400, 0)?
                .format("%Y-%m-%d")
                .to_string(),
            (Cell::Long(v), LakeType::LocalMicros | LakeType::UtcMicros) => {
                chrono::DateTime::from_timestamp_micros(*v)?
                    .format("%Y-%m-%d %H:%M:%S%.6f")
                    .to_string()
            }
            (Cell::Long(v), _) => v.to_string(),
            (Cell::F32(v), _) => v.to_string(),
            (Cell::F64(v), _) => v.to_string(),
            (Cell::Bytes(b), LakeType::Decimal { scale, .. } | LakeType::DecimalText { scale }) => {
                decimal_text(b, scale)?
            }
            (Cell::Bytes(b), LakeType::String) => String::from_utf8_lossy(b).into_owned(),
            (Cell::Bytes(b), _) => b.iter().map(|x| format!("{x:02X}")).collect(),
        })
    }

    /// Microseconds since the epoch of a DATE/DATETIME/TIMESTAMP value, and whether it is a
    /// wall-clock time (no time zone).
    pub fn micros(&self, ty: LakeType) -> Option<(i64, bool)> {
        match (self, ty) {
            (Cell::Long(v), LakeType::Date) => Some((v.checked_mul(86_400_000_000)?, true)),
            (Cell::Long(v), LakeType::LocalMicros) => Some((*v, true)),
            (Cell::Long(v), LakeType::UtcMicros) => Some((*v, false)),
            _ => None,
        }
    }
}

fn read<'a>(step: &Step, data: &mut &'a [u8]) -> Option<Cell<'a>> {
    Some(match step.prim {
        Prim::Boolean => {
            let (&b, rest) = data.split_first()?;
            *data = rest;
            Cell::Bool(b != 0)
        }
        Prim::Int | Prim::Long => Cell::Long(read_long(data)?),
        Prim::Float => {
            let (b, rest) = data.split_at_checked(4)?;
            *data = rest;
            Cell::F32(f32::from_le_bytes(b.try_into().ok()?))
        }
        Prim::Double => {
            let (b, rest) = data.split_at_checked(8)?;
            *data = rest;
            Cell::F64(f64::from_le_bytes(b.try_into().ok()?))
        }
        Prim::String | Prim::Bytes => Cell::Bytes(read_bytes(data)?),
    })
}

/// Big-endian two's complement → i128.
fn decimal_i128(b: &[u8]) -> Option<i128> {
    if b.is_empty() || b.len() > 16 {
        return (b.is_empty()).then_some(0);
    }
    let fill = if b[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut raw = [fill; 16];
    raw[16 - b.len()..].copy_from_slice(b);
    Some(i128::from_be_bytes(raw))
}

/// Big-endian two's complement with `scale` → exact decimal text.
fn decimal_text(b: &[u8], scale: i8) -> Option<String> {
    if b.len() > 32 {
        return None;
    }
    let fill = if b.first().is_some_and(|x| x & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut raw = [fill; 32];
    raw[32 - b.len()..].copy_from_slice(b);
    let v = i256::from_be_bytes(raw);
    let digits = v.wrapping_abs().to_string();
    let scale = scale.max(0) as usize;
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    let sign = if v < i256::ZERO { "-" } else { "" };
    Some(if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int64Type};
    use arrow_array::Array;

    #[test]
    fn decimals_decode_exactly() {
        assert_eq!(decimal_i128(&[0xff]), Some(-1));
        assert_eq!(decimal_i128(&[0x00, 0xff]), Some(255));
        assert_eq!(decimal_text(&[0xff, 0x85], 2).as_deref(), Some("-1.23"));
        assert_eq!(decimal_text(&[0x05], 3).as_deref(), Some("0.005"));
        assert_eq!(decimal_text(&[0x7b], 0).as_deref(), Some("123"));
    }

    #[test]
    fn values_and_tombstones_become_rows() {
        let key = r#"{"type":"record","name":"Key","fields":[{"name":"id","type":"long"}]}"#;
        let value = r#"{"type":"record","name":"Value","binlake.table":"app.t","fields":[
            {"name":"id","type":"long"},
            {"name":"amount","type":["null",{"type":"bytes","logicalType":"decimal","precision":20,"scale":2}],"default":null},
            {"name":"__op","type":"string"},{"name":"__ts_ms","type":"long"},{"name":"__pos","type":"string"}]}"#;
        let s = Arc::new(LakeSchema::derive("cdc.app.t", key, value).expect("derive"));
        let mut buf = RowBuffer::new(s);
        let o = Origin {
            topic: "cdc.app.t",
            partition: 1,
            offset: 7,
            timestamp_ms: 99,
        };
        let mut rec = Vec::new();
        crate::avro::wire::long(&mut rec, 42);
        crate::avro::wire::long(&mut rec, 1);
        crate::avro::wire::bytes(&mut rec, &[0x30, 0x39]); // 12345 -> 123.45
        crate::avro::wire::bytes(&mut rec, b"c");
        crate::avro::wire::long(&mut rec, 1000);
        crate::avro::wire::bytes(&mut rec, b"f:1:0");
        let schema = buf.schema.clone();
        buf.push(decode_value(&schema, &rec, &o).expect("value"), &o)
            .expect("push");
        let mut k = Vec::new();
        crate::avro::wire::long(&mut k, 42);
        buf.push(decode_tombstone(&schema, &k, &o).expect("tombstone"), &o)
            .expect("push");
        assert!(decode_value(&schema, &rec[..3], &o).is_err());
        let b = buf.take_batch().expect("batch");
        assert_eq!(b.num_rows(), 2);
        let ids = b.column(0).as_primitive::<Int64Type>();
        assert_eq!((ids.value(0), ids.value(1)), (42, 42));
        let amounts = b.column(1).as_primitive::<Decimal128Type>();
        assert_eq!(amounts.value(0), 12345);
        assert!(amounts.is_null(1));
        let deleted = b.column(3).as_boolean();
        assert!(!deleted.value(0) && deleted.value(1));
        assert_eq!(b.column(4).as_string::<i32>().value(0), "f:1:0");
    }
}
