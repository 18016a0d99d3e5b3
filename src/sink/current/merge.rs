//! Lake Parquet files → the last row per key: the merge behind `{table}_current`.
//!
//! Reads the files through the lake's [`Storage`] (ranges on demand, so HDFS files are not
//! copied whole), in two passes so that memory holds keys, never rows: pass 1 reads only the
//! key columns, `__kafka_offset` and `__deleted`; pass 2 copies each key's winning row,
//! projected (and, where the type only widened, cast) to the latest layout.
//!
//! Invariant: per key the row with the highest `__kafka_offset` wins, whatever the order of
//! the inputs; a winning delete removes the key; a column whose type narrowed is an error
//! naming it, never a truncation.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};
use arrow_array::{new_null_array, Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::file::reader::{ChunkReader, Length};

use crate::config::{SinkCompression, SinkFormat};
use crate::error::{Error, Result};
use crate::sink::format::LakeFile;
use crate::sink::schema::{LakeSchema, Target};
use crate::sink::storage::Storage;

use super::{BATCH, UPTO};

/// One input file of a merge.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: String,
    pub len: u64,
}

/// Parquet's view of a file in the lake: ranges read on demand.
pub(super) struct StorageFile {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) path: String,
    pub(super) len: u64,
}

impl Length for StorageFile {
    fn len(&self) -> u64 {
        self.len
    }
}

pub(super) struct RangeRead {
    storage: Arc<dyn Storage>,
    path: String,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
}

impl Read for RangeRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.buf.len() {
            if self.pos >= self.end {
                return Ok(0);
            }
            let n = (self.end - self.pos).min(1 << 20);
            self.buf = self
                .storage
                .read_range(&self.path, self.pos, n)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if self.buf.is_empty() {
                return Ok(0);
            }
            self.pos += self.buf.len() as u64;
            self.at = 0;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl ChunkReader for StorageFile {
    type T = RangeRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<RangeRead> {
        Ok(RangeRead {
            storage: self.storage.clone(),
            path: self.path.clone(),
            pos: start,
            end: self.len,
            buf: Vec::new(),
            at: 0,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let v = self
            .storage
            .read_range(&self.path, start, length as u64)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
        if v.len() != length {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "{}: {} bytes at {start}, {} read",
                self.path,
                length,
                v.len()
            )));
        }
        Ok(Bytes::from(v))
    }
}

pub(super) fn perr(path: &str) -> impl FnOnce(parquet::errors::ParquetError) -> Error + '_ {
    move |e| Error::Storage {
        context: format!("reading {path}"),
        detail: e.to_string(),
    }
}

/// Batches of `input` with only the columns named in `names` that it has (all when None).
pub(super) fn read_batches(
    storage: &Arc<dyn Storage>,
    input: &Input,
    names: Option<&[&str]>,
) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    let file = StorageFile {
        storage: storage.clone(),
        path: input.path.clone(),
        len: input.len,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(perr(&input.path))?;
    let builder = match names {
        Some(names) => {
            let fields = builder.schema().fields();
            let roots: Vec<usize> = (0..fields.len())
                .filter(|&i| names.contains(&fields[i].name().as_str()))
                .collect();
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            builder.with_projection(mask)
        }
        None => builder,
    };
    let reader = builder
        .with_batch_size(BATCH)
        .build()
        .map_err(perr(&input.path))?;
    let path = input.path.clone();
    Ok(reader.map(move |b| {
        b.map_err(|e| Error::Storage {
            context: format!("reading {path}"),
            detail: e.to_string(),
        })
    }))
}

/// Appends the bytes of one key cell (type-independent for integers, so a widened key
/// column still matches).
fn encode_cell(col: &dyn Array, row: usize, out: &mut Vec<u8>) -> Result<()> {
    if col.is_null(row) {
        out.push(0);
        return Ok(());
    }
    out.push(1);
    let bytes = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    match col.data_type() {
        DataType::Boolean => out.push(col.as_boolean().value(row) as u8),
        DataType::Int32 => out.extend_from_slice(
            &i64::from(col.as_primitive::<Int32Type>().value(row)).to_le_bytes(),
        ),
        DataType::Int64 => {
            out.extend_from_slice(&col.as_primitive::<Int64Type>().value(row).to_le_bytes())
        }
        DataType::Date32 => out.extend_from_slice(
            &i64::from(col.as_primitive::<Date32Type>().value(row)).to_le_bytes(),
        ),
        DataType::Timestamp(..) => out.extend_from_slice(
            &col.as_primitive::<TimestampMicrosecondType>()
                .value(row)
                .to_le_bytes(),
        ),
        DataType::Float32 => out.extend_from_slice(
            &col.as_primitive::<Float32Type>()
                .value(row)
                .to_bits()
                .to_le_bytes(),
        ),
        DataType::Float64 => out.extend_from_slice(
            &col.as_primitive::<Float64Type>()
                .value(row)
                .to_bits()
                .to_le_bytes(),
        ),
        DataType::Decimal128(..) => out.extend_from_slice(
            &col.as_primitive::<Decimal128Type>()
                .value(row)
                .to_le_bytes(),
        ),
        DataType::Utf8 => bytes(out, col.as_string::<i32>().value(row).as_bytes()),
        DataType::Binary => bytes(out, col.as_binary::<i32>().value(row)),
        other => {
            return Err(Error::Unsupported(format!(
                "a key column of type {other} in a lake file"
            )))
        }
    }
    Ok(())
}

/// The winning row of a key.
#[derive(Clone, Copy)]
struct Winner {
    offset: i64,
    deleted: bool,
    file: u32,
    row: u32,
}

/// A column of an older file as the wider type of the latest layout (INT → BIGINT, FLOAT →
/// DOUBLE, a decimal's precision raised at the same scale); None for other changes.
fn widen(c: &ArrayRef, to: &DataType) -> Option<ArrayRef> {
    use arrow_array::{Decimal128Array, Float64Array, Int64Array};
    Some(match (c.data_type(), to) {
        (DataType::Int32, DataType::Int64) => Arc::new(Int64Array::from_iter(
            c.as_primitive::<Int32Type>()
                .iter()
                .map(|v| v.map(i64::from)),
        )),
        (DataType::Float32, DataType::Float64) => Arc::new(Float64Array::from_iter(
            c.as_primitive::<Float32Type>()
                .iter()
                .map(|v| v.map(f64::from)),
        )),
        (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)) if s1 == s2 && p2 >= p1 => {
            Arc::new(
                Decimal128Array::from_iter(c.as_primitive::<Decimal128Type>().iter())
                    .with_precision_and_scale(*p2, *s2)
                    .ok()?,
            )
        }
        _ => return None,
    })
}

/// Rows of `batch` as the columns of `schema` (by name; missing ones null, widened numbers
/// converted).
pub(super) fn project(batch: &RecordBatch, schema: &LakeSchema, path: &str) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.arrow.fields().len());
    for f in schema.arrow.fields() {
        match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => cols.push(c.clone()),
            Some(c) if widen(c, f.data_type()).is_some() => {
                cols.extend(widen(c, f.data_type()));
            }
            Some(c) => {
                return Err(Error::Unsupported(format!(
                    "{path}: column {} is {} there and {} in the table's latest layout; \
                     {{table}}_current follows added and dropped columns and widened numbers \
                     only",
                    f.name(),
                    c.data_type(),
                    f.data_type()
                )))
            }
            None => cols.push(new_null_array(f.data_type(), n)),
        }
    }
    RecordBatch::try_new(schema.arrow.clone(), cols).map_err(|e| Error::Storage {
        context: format!("projecting the rows of {path}"),
        detail: e.to_string(),
    })
}

/// What a merge wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    pub keys: usize,
    pub rows: usize,
}

/// Merges `inputs` (in any order) into a new Parquet file at `out` (a temporary path): per
/// key of `schema`, the row with the highest `__kafka_offset`, unless it is a delete; in
/// `schema`'s layout. `upto` goes into the footer.
pub fn merge(
    storage: &Arc<dyn Storage>,
    inputs: &[Input],
    schema: &LakeSchema,
    compression: SinkCompression,
    out: &str,
    upto: i64,
) -> Result<Merged> {
    let key_names: Vec<&str> = schema
        .key_steps
        .iter()
        .filter_map(|s| match s.target {
            Target::Column(i) => schema.columns.get(i).map(|c| c.name.as_str()),
            _ => None,
        })
        .collect();
    let mut pass1 = key_names.clone();
    pass1.extend(["__kafka_offset", "__deleted"]);
    // Pass 1: keys only.
    let mut winners: HashMap<Box<[u8]>, Winner> = HashMap::new();
    let mut key = Vec::new();
    for (fi, input) in inputs.iter().enumerate() {
        let mut row_base = 0usize;
        for batch in read_batches(storage, input, Some(&pass1))? {
            let batch = batch?;
            let missing = |name: &str| Error::Storage {
                context: format!("reading {}", input.path),
                detail: format!("no column {name}"),
            };
            let keys: Vec<&ArrayRef> = key_names
                .iter()
                .map(|n| batch.column_by_name(n).ok_or_else(|| missing(n)))
                .collect::<Result<_>>()?;
            let offsets = batch
                .column_by_name("__kafka_offset")
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| missing("__kafka_offset"))?;
            let deleted = batch
                .column_by_name("__deleted")
                .and_then(|c| c.as_boolean_opt())
                .ok_or_else(|| missing("__deleted"))?;
            for row in 0..batch.num_rows() {
                key.clear();
                for k in &keys {
                    encode_cell(k.as_ref(), row, &mut key)?;
                }
                let w = Winner {
                    offset: offsets.value(row),
                    deleted: deleted.value(row),
                    file: fi as u32,
                    row: (row_base + row) as u32,
                };
                match winners.get_mut(key.as_slice()) {
                    Some(old) if old.offset >= w.offset => {}
                    Some(old) => *old = w,
                    None => {
                        winners.insert(key.clone().into_boxed_slice(), w);
                    }
                }
            }
            row_base += batch.num_rows();
        }
    }
    let keys = winners.len();
    let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); inputs.len()];
    for w in winners.into_values() {
        if !w.deleted {
            rows_of[w.file as usize].push(w.row);
        }
    }
    // Pass 2: copy the winning rows, file by file (only the columns the layout has).
    let names: Vec<&str> = schema
        .arrow
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let mut file = LakeFile::create(
        storage.as_ref(),
        out,
        schema,
        SinkFormat::Parquet,
        compression,
    )?;
    let mut written = 0usize;
    for (input, rows) in inputs.iter().zip(rows_of.iter_mut()) {
        if rows.is_empty() {
            continue;
        }
        rows.sort_unstable();
        let mut next = 0usize;
        let mut row_base = 0usize;
        for batch in read_batches(storage, input, Some(&names))? {
            let batch = batch?;
            let n = batch.num_rows();
            let mut mask = vec![false; n];
            while next < rows.len() && (rows[next] as usize) < row_base + n {
                mask[rows[next] as usize - row_base] = true;
                next += 1;
            }
            row_base += n;
            let keep = mask.iter().filter(|&&m| m).count();
            if keep == 0 {
                continue;
            }
            let kept = arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(mask))
                .map_err(|e| Error::Storage {
                    context: format!("filtering the rows of {}", input.path),
                    detail: e.to_string(),
                })?;
            file.write(&project(&kept, schema, &input.path)?)?;
            written += keep;
        }
    }
    file.finish_with(storage.as_ref(), &[(UPTO, &upto.to_string())])?;
    Ok(Merged {
        keys,
        rows: written,
    })
}
