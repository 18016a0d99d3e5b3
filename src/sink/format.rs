//! Lake files: Parquet (streamed to storage row group by row group) and Avro object container
//! files (assembled in memory, bounded by `[sink] buffer_mb`, written whole when closed).
//!
//! Invariant: every finished file carries, in its own metadata (`binlake.last_pos`: the
//! Parquet footer, the Avro header), the greatest `binlake.pos` its Kafka partition had applied
//! when the file's window closed; a restarted sink reads it back to seed the position filter.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::avro::wire;
use crate::config::{SinkCompression, SinkFormat};
use crate::error::{Error, Result};

use super::schema::LakeSchema;
use super::storage::{FileSink, Storage};

/// The metadata key of the partition's last applied position.
pub const LAST_POS: &str = "binlake.last_pos";
const AVRO_MAGIC: &[u8; 4] = b"Obj\x01";
const AVRO_BLOCK: usize = 256 * 1024;

/// A `Write` whose bytes the caller takes out between writes.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut v) => v.extend_from_slice(buf),
            Err(p) => p.into_inner().extend_from_slice(buf),
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn take(&self) -> Vec<u8> {
        match self.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

/// One lake file being written under a temporary path.
pub enum LakeFile {
    Parquet {
        writer: Box<ArrowWriter<Shared>>,
        out: Shared,
        sink: Box<dyn FileSink>,
        written: u64,
    },
    Avro {
        schema: String,
        codec: SinkCompression,
        sync: [u8; 16],
        blocks: Vec<u8>,
        block: Vec<u8>,
        block_rows: i64,
        path: String,
    },
}

fn perr(what: &str) -> impl FnOnce(parquet::errors::ParquetError) -> Error + '_ {
    move |e| Error::Storage {
        context: what.to_string(),
        detail: e.to_string(),
    }
}

impl LakeFile {
    /// Starts a file at `path` (a temporary name) for rows of `schema`.
    pub fn create(
        storage: &dyn Storage,
        path: &str,
        schema: &LakeSchema,
        format: SinkFormat,
        codec: SinkCompression,
    ) -> Result<LakeFile> {
        match format {
            SinkFormat::Parquet => {
                let compression = match codec {
                    SinkCompression::Snappy => Compression::SNAPPY,
                    SinkCompression::Zstd => {
                        Compression::ZSTD(ZstdLevel::try_new(3).map_err(perr("zstd level"))?)
                    }
                    _ => Compression::UNCOMPRESSED,
                };
                let props = WriterProperties::builder()
                    .set_compression(compression)
                    .set_max_row_group_row_count(Some(1 << 20))
                    .set_max_row_group_bytes(Some(64 << 20))
                    .set_created_by(format!("binlake {}", env!("CARGO_PKG_VERSION")))
                    .build();
                let out = Shared::default();
                let writer = ArrowWriter::try_new(out.clone(), schema.arrow.clone(), Some(props))
                    .map_err(perr(path))?;
                let sink = storage.create(path)?;
                Ok(LakeFile::Parquet {
                    writer: Box::new(writer),
                    out,
                    sink,
                    written: 0,
                })
            }
            SinkFormat::Avro => {
                let mut sync = [0u8; 16];
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let seed = nanos ^ (path.len() as u128) << 64 ^ u128::from(std::process::id());
                let mut x = seed as u64 | 1;
                for b in sync.iter_mut() {
                    // xorshift: the marker only has to be unlikely to occur in the data.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
                Ok(LakeFile::Avro {
                    schema: schema.avro.clone(),
                    codec,
                    sync,
                    blocks: Vec::new(),
                    block: Vec::new(),
                    block_rows: 0,
                    path: path.to_string(),
                })
            }
        }
    }

    /// Appends a batch of rows.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            LakeFile::Parquet {
                writer,
                out,
                sink,
                written,
            } => {
                writer.write(batch).map_err(perr("encoding Parquet"))?;
                drain(out, sink.as_mut(), written)
            }
            LakeFile::Avro {
                block,
                block_rows,
                blocks,
                codec,
                sync,
                ..
            } => {
                encode_avro_rows(batch, block)?;
                *block_rows += batch.num_rows() as i64;
                if block.len() >= AVRO_BLOCK {
                    close_block(block, block_rows, blocks, *codec, sync)?;
                }
                Ok(())
            }
        }
    }

    /// Bytes of the file so far (written plus encoded in memory).
    pub fn size(&self) -> u64 {
        match self {
            LakeFile::Parquet {
                writer, written, ..
            } => *written + writer.in_progress_size() as u64,
            LakeFile::Avro { blocks, block, .. } => (blocks.len() + block.len()) as u64,
        }
    }

    /// Bytes held in memory.
    pub fn memory(&self) -> u64 {
        match self {
            LakeFile::Parquet { writer, .. } => writer.memory_size() as u64,
            LakeFile::Avro { blocks, block, .. } => (blocks.len() + block.len()) as u64,
        }
    }

    /// Parquet: encodes the rows in memory as a row group and writes it out (frees memory).
    pub fn flush(&mut self) -> Result<()> {
        if let LakeFile::Parquet {
            writer,
            out,
            sink,
            written,
        } = self
        {
            writer.flush().map_err(perr("encoding Parquet"))?;
            drain(out, sink.as_mut(), written)?;
        }
        Ok(())
    }

    /// Completes the file at its temporary path, with `last_pos` in its metadata.
    pub fn finish(self, storage: &dyn Storage, last_pos: &str) -> Result<u64> {
        self.finish_with(storage, &[(LAST_POS, last_pos)])
    }

    /// Completes the file with these key/value pairs in its metadata (Parquet footer, Avro
    /// header). Returns the file's size in bytes.
    pub fn finish_with(self, storage: &dyn Storage, meta: &[(&str, &str)]) -> Result<u64> {
        match self {
            LakeFile::Parquet {
                mut writer,
                out,
                mut sink,
                mut written,
            } => {
                for (k, v) in meta {
                    writer.append_key_value_metadata(KeyValue::new(k.to_string(), v.to_string()));
                }
                writer.close().map_err(perr("closing Parquet"))?;
                drain(&out, sink.as_mut(), &mut written)?;
                sink.finish()?;
                Ok(written)
            }
            LakeFile::Avro {
                schema,
                codec,
                sync,
                mut blocks,
                mut block,
                mut block_rows,
                path,
            } => {
                close_block(&mut block, &mut block_rows, &mut blocks, codec, &sync)?;
                let mut head = Vec::with_capacity(schema.len() + 128);
                head.extend_from_slice(AVRO_MAGIC);
                let codec_name = match codec {
                    SinkCompression::Snappy => "snappy",
                    SinkCompression::Deflate => "deflate",
                    _ => "null",
                };
                let mut all: Vec<(&str, &[u8])> = vec![
                    ("avro.schema", schema.as_bytes()),
                    ("avro.codec", codec_name.as_bytes()),
                ];
                all.extend(meta.iter().map(|(k, v)| (*k, v.as_bytes())));
                wire::long(&mut head, all.len() as i64);
                for (k, v) in all {
                    wire::bytes(&mut head, k.as_bytes());
                    wire::bytes(&mut head, v);
                }
                wire::long(&mut head, 0);
                head.extend_from_slice(&sync);
                let mut sink = storage.create(&path)?;
                sink.write(&head)?;
                sink.write(&blocks)?;
                sink.finish()?;
                Ok((head.len() + blocks.len()) as u64)
            }
        }
    }
}

fn drain(out: &Shared, sink: &mut dyn FileSink, written: &mut u64) -> Result<()> {
    let bytes = out.take();
    if !bytes.is_empty() {
        *written += bytes.len() as u64;
        sink.write(&bytes)?;
    }
    Ok(())
}

fn close_block(
    block: &mut Vec<u8>,
    rows: &mut i64,
    blocks: &mut Vec<u8>,
    codec: SinkCompression,
    sync: &[u8; 16],
) -> Result<()> {
    if *rows == 0 {
        return Ok(());
    }
    let data = match codec {
        SinkCompression::Snappy => {
            let mut c = snap::raw::Encoder::new()
                .compress_vec(block)
                .map_err(|e| Error::storage("snappy")(e))?;
            c.extend_from_slice(&crc32fast::hash(block).to_be_bytes());
            c
        }
        SinkCompression::Deflate => {
            let mut e =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(block).map_err(Error::storage("deflate"))?;
            e.finish().map_err(Error::storage("deflate"))?
        }
        _ => std::mem::take(block),
    };
    wire::long(blocks, *rows);
    wire::long(blocks, data.len() as i64);
    blocks.extend_from_slice(&data);
    blocks.extend_from_slice(sync);
    block.clear();
    *rows = 0;
    Ok(())
}

/// Minimal big-endian two's complement bytes of `v`.
fn decimal_bytes(v: i128, out: &mut Vec<u8>) {
    let b = v.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (x, next) = (b[start], b[start + 1]);
        if (x == 0 && next & 0x80 == 0) || (x == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    wire::bytes(out, &b[start..]);
}

/// Rows of `batch` as Avro binary records of the lake's Avro schema (columns nullable unions,
/// then the metadata fields; see `schema.rs`).
fn encode_avro_rows(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
    let cols = batch.columns();
    let fields = batch.schema();
    let n_meta = super::schema::META.len();
    let n_cols = cols.len().saturating_sub(n_meta);
    for row in 0..batch.num_rows() {
        for (i, (col, field)) in cols.iter().zip(fields.fields().iter()).enumerate() {
            let is_meta = i >= n_cols;
            let nullable = !is_meta || field.name() == "__pos";
            if nullable {
                if col.is_null(row) {
                    wire::long(out, 0);
                    continue;
                }
                wire::long(out, 1);
            }
            match col.data_type() {
                DataType::Boolean => out.push(col.as_boolean().value(row) as u8),
                DataType::Int32 => {
                    wire::long(out, col.as_primitive::<Int32Type>().value(row).into())
                }
                DataType::Int64 => wire::long(out, col.as_primitive::<Int64Type>().value(row)),
                DataType::Float32 => out
                    .extend_from_slice(&col.as_primitive::<Float32Type>().value(row).to_le_bytes()),
                DataType::Float64 => out
                    .extend_from_slice(&col.as_primitive::<Float64Type>().value(row).to_le_bytes()),
                DataType::Utf8 => wire::bytes(out, col.as_string::<i32>().value(row).as_bytes()),
                DataType::Binary => wire::bytes(out, col.as_binary::<i32>().value(row)),
                DataType::Decimal128(..) => {
                    decimal_bytes(col.as_primitive::<Decimal128Type>().value(row), out)
                }
                DataType::Date32 => {
                    wire::long(out, col.as_primitive::<Date32Type>().value(row).into())
                }
                DataType::Timestamp(TimeUnit::Microsecond, _) => wire::long(
                    out,
                    col.as_primitive::<TimestampMicrosecondType>().value(row),
                ),
                other => {
                    return Err(Error::Unsupported(format!(
                        "internal: no Avro encoding for {other}"
                    )))
                }
            }
        }
    }
    Ok(())
}

/// Reads `binlake.last_pos` back from a finished lake file.
pub fn read_last_pos(storage: &dyn Storage, path: &str, len: u64) -> Result<Option<String>> {
    let bad = |what: &str| Error::Storage {
        context: format!("reading the metadata of {path}"),
        detail: what.to_string(),
    };
    if path.ends_with(".parquet") {
        if len < 12 {
            return Err(bad("too short for Parquet"));
        }
        let tail = storage.read_range(path, len - 8, 8)?;
        if tail.len() != 8 || &tail[4..] != b"PAR1" {
            return Err(bad("no Parquet footer"));
        }
        let footer_len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
        if footer_len + 8 > len {
            return Err(bad("Parquet footer length out of range"));
        }
        let footer = storage.read_range(path, len - 8 - footer_len, footer_len)?;
        let meta = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&footer)
            .map_err(|e| bad(&e.to_string()))?;
        return Ok(meta
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == LAST_POS))
            .and_then(|k| k.value.clone()));
    }
    let head = storage.read_range(path, 0, 64 * 1024)?;
    let mut input = head.as_slice();
    if input.len() < 4 || &input[..4] != AVRO_MAGIC {
        return Err(bad("not an Avro container file"));
    }
    input = &input[4..];
    loop {
        let mut count = wire::read_long(&mut input).ok_or_else(|| bad("header"))?;
        if count == 0 {
            return Ok(None);
        }
        if count < 0 {
            count = -count;
            wire::read_long(&mut input).ok_or_else(|| bad("header"))?;
        }
        for _ in 0..count {
            let k = wire::read_bytes(&mut input).ok_or_else(|| bad("header"))?;
            let v = wire::read_bytes(&mut input).ok_or_else(|| bad("header"))?;
            if k == LAST_POS.as_bytes() {
                return Ok(Some(String::from_utf8_lossy(v).into_owned()));
            }
        }
    }
}
