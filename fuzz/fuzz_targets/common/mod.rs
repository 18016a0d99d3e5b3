//! Shared by the fuzz targets: the binlog decode pipeline with its invariant checks, the CRC
//! fix-up, and an Avro round-trip oracle that is written independently of `src/avro`.
//!
//! Every check here panics on a violation, so libFuzzer reports it as a crash.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::types::Value as A;
use binlake::avro::{Encoder, TableSchemas};
use binlake::change::{Change, Value};
use binlake::config::{CaptureConfig, Filter, KeyMode};
use binlake::mysql::binlog_file::decode_bytes;
use binlake::mysql::charset::Collations;
use binlake::mysql::decoder::Decoder;
use binlake::schema::{Charset, Column, SqlType, TableSchema};
use binlake::Error;

/// The file name the fuzzed bytes are decoded as.
pub const NAME: &str = "fuzz-bin.000001";

/// `binlake decode` on `bytes` (as if they were the file [`NAME`]), checking that an error
/// names the file and an offset inside it, and that the changes keep the decoder's
/// invariants; every change is then encoded to Avro as `binlake run` would and read back.
pub fn decode_pipeline(bytes: &[u8], key: KeyMode) {
    let capture = CaptureConfig {
        key,
        ..Default::default()
    };
    let mut decoder = Decoder::new(Collations::default(), Filter::new(&capture), key);
    let mut changes: Vec<Change> = Vec::new();
    let r = decode_bytes(NAME, bytes, &mut decoder, &mut |batch| {
        changes.append(batch);
        Ok(())
    });
    if let Err(e) = r {
        check_error(&e, bytes.len() as u64, decoder.file());
    }
    check_changes(&changes, bytes.len() as u64);
    let mut encoders: HashMap<*const TableSchema, Option<Checked>> = HashMap::new();
    for c in &changes {
        let checked = encoders
            .entry(Arc::as_ptr(&c.table))
            .or_insert_with(|| Checked::new(&c.table));
        let Some(checked) = checked else { continue };
        for row in [&c.after, &c.before].into_iter().flatten() {
            checked.key(row);
            checked.value(row, c.op.code(), c.ts_ms as i64, &c.pos.to_string());
        }
    }
}

/// An error of `decode_bytes` must say which file and where.
fn check_error(e: &Error, len: u64, current_file: &str) {
    let named = |file: &str| file == NAME || file == current_file;
    match e {
        Error::Corrupt { file, offset, .. }
        | Error::Decode { file, offset, .. }
        | Error::Checksum { file, offset, .. } => {
            assert!(named(file), "error names file {file:?}: {e}");
            assert!(
                *offset <= len,
                "error offset {offset} past the input ({len}): {e}"
            );
        }
        Error::Unsupported(m) => {
            assert!(
                (m.contains(NAME) || m.contains(current_file)) && m.contains(" at offset "),
                "unsupported-error without file and offset: {m}"
            );
        }
        other => panic!("decode_bytes returned an error of an unexpected kind: {other:?}"),
    }
}

/// Invariants of the decoder's output (see `src/mysql/decoder.rs` and `src/change.rs`).
fn check_changes(changes: &[Change], len: u64) {
    let mut last: Option<(u64, u32)> = None;
    for c in changes {
        let t = &c.table;
        for row in [&c.before, &c.after].into_iter().flatten() {
            assert_eq!(
                row.len(),
                t.columns.len(),
                "row is not aligned with its columns"
            );
        }
        assert!(
            c.before.is_some() || c.after.is_some(),
            "a change without an image"
        );
        assert!(
            t.key.iter().all(|&k| k < t.columns.len()),
            "key index out of range"
        );
        assert!(c.pos.offset < len, "change position past the input");
        let here = (c.pos.offset, c.pos.row);
        if let Some(prev) = last {
            assert!(
                here > prev,
                "positions do not increase: {prev:?} then {here:?}"
            );
        }
        last = Some(here);
    }
}

/// An [`Encoder`] with the parsed Avro schemas to read its output back.
pub struct Checked {
    pub table: Arc<TableSchema>,
    pub encoder: Encoder,
    pub key_schema: apache_avro::Schema,
    pub value_schema: apache_avro::Schema,
}

impl Checked {
    /// `None` for a table `binlake run` refuses before encoding (no key).
    pub fn new(table: &Arc<TableSchema>) -> Option<Checked> {
        if table.key.is_empty() {
            return None;
        }
        let topic = format!("binlake.{}.{}", table.db, table.table);
        Some(Checked::new_with_namespace(table, &topic))
    }

    /// Derives the schemas of `table` in `namespace` (a topic name); they must parse.
    pub fn new_with_namespace(table: &Arc<TableSchema>, namespace: &str) -> Checked {
        let schemas = TableSchemas::derive(table, namespace);
        let key_schema = parse_cached(&schemas.key);
        let value_schema = parse_cached(&schemas.value);
        Checked {
            table: table.clone(),
            encoder: Encoder::new(schemas, table.full_name()),
            key_schema,
            value_schema,
        }
    }

    /// Encodes the key of `row`; when the encoder accepts it, checks it reads back exactly.
    pub fn key(&self, row: &[Value]) {
        let mut out = Vec::new();
        let r = self.encoder.key(row, &mut out);
        let cols: Vec<(&Column, &Value)> = self
            .table
            .key
            .iter()
            .map(|&i| (&self.table.columns[i], row.get(i).unwrap_or(&Value::Absent)))
            .collect();
        let want = expect_record(&cols);
        self.compare(&self.key_schema, r.is_ok(), &out, want, "key", r.err());
    }

    /// Encodes the value record of `row`; when accepted, checks it reads back exactly.
    pub fn value(&self, row: &[Value], op: &str, ts_ms: i64, pos: &str) {
        let mut out = Vec::new();
        let r = self.encoder.value(row, op, ts_ms, pos, &mut out);
        let cols: Vec<(&Column, &Value)> = self
            .table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c, row.get(i).unwrap_or(&Value::Absent)))
            .collect();
        let want = expect_record(&cols).map(|mut v| {
            v.push(A::String(op.into()));
            v.push(A::Long(ts_ms));
            v.push(A::String(pos.into()));
            v
        });
        self.compare(&self.value_schema, r.is_ok(), &out, want, "value", r.err());
    }

    fn compare(
        &self,
        schema: &apache_avro::Schema,
        ok: bool,
        out: &[u8],
        want: Result<Vec<A>, String>,
        what: &str,
        err: Option<binlake::avro::EncodeError>,
    ) {
        if std::env::var_os("FUZZ_TRACE").is_some() {
            eprintln!("trace: {what} {}", if ok { "encoded" } else { "refused" });
        }
        let want = match (ok, want) {
            (true, Ok(w)) => w,
            (false, Err(_)) => return,
            (true, Err(why)) => panic!(
                "{what}: the encoder accepted a row that cannot round-trip ({why}); table {:?}",
                self.table
            ),
            (false, Ok(_)) => panic!(
                "{what}: the encoder refused a row that fits its schema: {}",
                err.map(|e| e.to_string()).unwrap_or_default()
            ),
        };
        let mut rest = out;
        let got = apache_avro::from_avro_datum(schema, &mut rest, None)
            .unwrap_or_else(|e| panic!("{what}: encoded bytes do not read back: {e}"));
        assert!(
            rest.is_empty(),
            "{what}: {} bytes left after the record",
            rest.len()
        );
        let A::Record(fields) = got else {
            panic!("{what}: not a record: {got:?}")
        };
        assert_eq!(fields.len(), want.len(), "{what}: field count");
        for ((name, got), want) in fields.iter().zip(&want) {
            assert!(
                same(got, want),
                "{what}: field {name} reads back as {got:?}, expected {want:?}"
            );
        }
    }
}

thread_local! {
    /// Parsed derived schemas by their text: the same tables recur from input to input, and
    /// apache-avro's parser (name validation by regex) dominated the run time.
    static PARSED: std::cell::RefCell<HashMap<String, apache_avro::Schema>> = Default::default();
}

/// A derived schema, parsed (it must parse).
fn parse_cached(text: &str) -> apache_avro::Schema {
    PARSED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(s) = cache.get(text) {
            return s.clone();
        }
        let s = apache_avro::Schema::parse_str(text)
            .unwrap_or_else(|e| panic!("derived schema does not parse: {e}\n{text}"));
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(text.to_string(), s.clone());
        s
    })
}

/// Avro values compare by bits for floats (NaN == NaN), and decimals by their unscaled bytes.
fn same(a: &A, b: &A) -> bool {
    match (a, b) {
        (A::Float(x), A::Float(y)) => x.to_bits() == y.to_bits(),
        (A::Double(x), A::Double(y)) => x.to_bits() == y.to_bits(),
        (A::Union(i, x), A::Union(j, y)) => i == j && same(x, y),
        (A::Array(x), A::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (A::Decimal(d), A::Bytes(want)) => {
            let got: Vec<u8> = d.clone().try_into().unwrap_or_default();
            signed_decimal_string(&got) == signed_decimal_string(want)
        }
        _ => a == b,
    }
}

/// What each column of a record must read back as, or why the encoder must refuse the row.
/// Decimals are given as `A::Bytes` of their unscaled two's complement (compared by value).
pub fn expect_record(cols: &[(&Column, &Value)]) -> Result<Vec<A>, String> {
    cols.iter().map(|(c, v)| expect_field(c, v)).collect()
}

fn expect_field(c: &Column, v: &Value) -> Result<A, String> {
    let wrap = |a: A| {
        if c.nullable {
            A::Union(1, Box::new(a))
        } else {
            a
        }
    };
    match v {
        Value::Absent => return Err("absent".into()),
        Value::JsonDiff(_) => return Err("JSON diff".into()),
        Value::Null if c.nullable => return Ok(A::Union(0, Box::new(A::Null))),
        Value::Null => return Err("NULL in NOT NULL".into()),
        _ => {}
    }
    // Dates without a calendar value (zero, or 2024-02-31), as documented: NULL when
    // nullable, else the epoch.
    let zero = match (&c.ty, v) {
        (SqlType::Date, Value::Date(d)) | (SqlType::DateTime { .. }, Value::DateTime(d, _)) => {
            civil_days(d.year, d.month, d.day).is_err()
        }
        _ => false,
    };
    if zero {
        return match (c.nullable, v) {
            (true, _) => Ok(A::Union(0, Box::new(A::Null))),
            (false, Value::DateTime(_, t)) if !time_of_day_ok(t) => Err("time of day".into()),
            (false, Value::Date(_)) => Ok(A::Date(0)),
            (false, _) => Ok(A::LocalTimestampMicros(0)),
        };
    }
    plain(&c.ty, v).map(wrap)
}

fn text_kind(ty: &SqlType) -> bool {
    match ty {
        SqlType::String { charset, .. } => {
            !matches!(charset, Charset::Binary | Charset::Unknown(_))
        }
        SqlType::Enum { .. } | SqlType::Json => true,
        _ => false,
    }
}

fn plain(ty: &SqlType, v: &Value) -> Result<A, String> {
    let no = || Err(format!("{v:?} does not fit {ty:?}"));
    Ok(match (ty, v) {
        (
            SqlType::Int {
                bytes: 8,
                unsigned: true,
            },
            Value::UInt(u),
        ) => A::Bytes(unsigned_be(*u)),
        (
            SqlType::Int {
                bytes: 8,
                unsigned: true,
            },
            Value::Int(i),
        ) if *i >= 0 => A::Bytes(unsigned_be(*i as u64)),
        (
            SqlType::Int {
                bytes: 8,
                unsigned: true,
            },
            _,
        ) => return no(),
        (
            SqlType::Int { bytes: 8, .. }
            | SqlType::Int {
                bytes: 4,
                unsigned: true,
            },
            v,
        ) => match v {
            Value::Int(i) => A::Long(*i),
            Value::UInt(u) => A::Long(i64::try_from(*u).map_err(|_| "u64 > i64::MAX")?),
            _ => return no(),
        },
        (SqlType::Int { .. } | SqlType::Year, v) => match v {
            Value::Int(i) => A::Int(i32::try_from(*i).map_err(|_| "not an i32")?),
            Value::UInt(u) => A::Int(i32::try_from(*u).map_err(|_| "not an i32")?),
            Value::Year(y) => A::Int(*y as i32),
            _ => return no(),
        },
        (SqlType::Float, Value::Float(x)) => A::Float(*x),
        (SqlType::Double, Value::Double(x)) => A::Double(*x),
        (SqlType::Double, Value::Float(x)) => A::Double(*x as f64),
        (SqlType::Decimal { scale, .. }, Value::Decimal(s)) => {
            A::Bytes(decimal_unscaled(s, *scale).ok_or("not a decimal of this scale")?)
        }
        (t, Value::String(s) | Value::Enum(s) | Value::Json(s))
            if text_kind(t) && !matches!(t, SqlType::Set { .. }) =>
        {
            A::String(s.clone())
        }
        (SqlType::String { .. }, Value::Bytes(b)) if text_kind(ty) => {
            A::String(String::from_utf8_lossy(b).into_owned())
        }
        (SqlType::String { .. } | SqlType::Bit { .. }, Value::Bytes(b) | Value::Bit(b))
            if !text_kind(ty) =>
        {
            A::Bytes(b.clone())
        }
        (SqlType::String { .. } | SqlType::Bit { .. }, Value::String(s)) if !text_kind(ty) => {
            A::Bytes(s.as_bytes().to_vec())
        }
        (SqlType::Set { .. }, Value::Set(m)) => A::String(m.join(",")),
        (SqlType::Date, Value::Date(d)) => A::Date(civil_days(d.year, d.month, d.day)? as i32),
        (SqlType::DateTime { .. }, Value::DateTime(d, t)) => {
            let days = civil_days(d.year, d.month, d.day)?;
            if !time_of_day_ok(t) {
                return Err("time of day out of range".into());
            }
            let secs =
                days * 86_400 + t.hour as i64 * 3600 + t.minute as i64 * 60 + t.second as i64;
            A::LocalTimestampMicros(secs * 1_000_000 + t.micros as i64)
        }
        (SqlType::Timestamp { .. }, Value::Timestamp { secs, micros, .. }) => {
            if *micros > 999_999 {
                return Err("micros out of range".into());
            }
            A::TimestampMicros(
                secs.checked_mul(1_000_000)
                    .and_then(|s| s.checked_add(*micros as i64))
                    .ok_or("timestamp overflows i64 µs")?,
            )
        }
        (SqlType::Time { .. }, Value::Time(d)) => {
            if d.minute > 59 || d.second > 59 || d.micros > 999_999 || d.hours > 1 << 20 {
                return Err("TIME part out of range".into());
            }
            let t = ((d.hours as i64 * 60 + d.minute as i64) * 60 + d.second as i64) * 1_000_000
                + d.micros as i64;
            A::Long(if d.negative { -t } else { t })
        }
        (SqlType::Geometry, Value::Geometry { srid, wkb }) => {
            let mut b = srid.to_le_bytes().to_vec();
            b.extend_from_slice(wkb);
            A::Bytes(b)
        }
        (SqlType::Vector { .. }, Value::Vector(xs)) => {
            A::Array(xs.iter().map(|x| A::Float(*x)).collect())
        }
        _ => return no(),
    })
}

fn time_of_day_ok(t: &binlake::change::TimeOfDay) -> bool {
    t.hour <= 23 && t.minute <= 59 && t.second <= 59 && t.micros <= 999_999
}

/// Days since 1970-01-01 of a real calendar date (chrono decides what is one).
fn civil_days(y: u16, m: u8, d: u8) -> Result<i64, String> {
    let date = chrono::NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)
        .ok_or_else(|| format!("{y:04}-{m:02}-{d:02} is not a calendar date"))?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    Ok((date - epoch).num_days())
}

fn unsigned_be(u: u64) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(&u.to_be_bytes());
    v
}

/// The unscaled value of decimal text at `scale`, as big-endian two's complement (not
/// necessarily minimal), by a route other than the encoder's: decimal digit string -> i-bytes.
fn decimal_unscaled(s: &str, scale: u8) -> Option<Vec<u8>> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if frac.len() > scale as usize
        || (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    digits.extend(std::iter::repeat_n(0, scale as usize - frac.len()));
    // Base 10 -> base 256 by long division, least significant byte first.
    let mut bytes = Vec::new();
    while digits.iter().any(|&d| d != 0) {
        let mut rem = 0u32;
        for d in digits.iter_mut() {
            let x = rem * 10 + *d as u32;
            *d = (x / 256) as u8;
            rem = x % 256;
        }
        bytes.push(rem as u8);
    }
    bytes.push(0); // sign room
    bytes.reverse();
    if neg {
        // Two's complement negation.
        let mut carry = 1u16;
        for b in bytes.iter_mut().rev() {
            let x = (!*b) as u16 + carry;
            *b = x as u8;
            carry = x >> 8;
        }
    }
    Some(bytes)
}

/// Big-endian two's complement bytes as a signed decimal string (for comparing by value).
pub fn signed_decimal_string(b: &[u8]) -> String {
    if b.is_empty() {
        return "0".into();
    }
    let neg = b[0] & 0x80 != 0;
    let mut mag: Vec<u8> = b.to_vec();
    if neg {
        let mut carry = 1u16;
        for x in mag.iter_mut().rev() {
            let y = (!*x) as u16 + carry;
            *x = y as u8;
            carry = y >> 8;
        }
    }
    let mut digits = Vec::new();
    while mag.iter().any(|&x| x != 0) {
        let mut rem = 0u32;
        for x in mag.iter_mut() {
            let y = (rem << 8) | *x as u32;
            *x = (y / 10) as u8;
            rem = y % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        return "0".into();
    }
    if neg {
        digits.push(b'-');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// Rewrites the CRC32 of every event that carries one (per the format description in force),
/// so that mutated bytes get past checksum verification to the parsers behind it. Framing
/// mirrors `decode_bytes`; bytes it cannot frame are left as they are.
pub fn fix_crcs(bytes: &mut [u8]) {
    use mysql_common::binlog::consts::BinlogChecksumAlg;
    use mysql_common::binlog::events::BinlogEventFooter;
    if bytes.len() < 4 || bytes[..4] != [0xfe, b'b', b'i', b'n'] {
        return;
    }
    // Whether the format description in force says CRC32 (none before the first one).
    let mut crc32 = false;
    let mut at = 4usize;
    while bytes.len() - at >= 19 {
        let ev = &bytes[at..];
        let size = u32::from_le_bytes([ev[9], ev[10], ev[11], ev[12]]) as usize;
        if size < 19 || size > ev.len() {
            return;
        }
        // A format description carries its own algorithm (verified against itself).
        if ev[4] == 15 {
            crc32 = BinlogEventFooter::read(&ev[19..size]).is_ok_and(|f| {
                matches!(
                    f.get_checksum_alg(),
                    Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32))
                )
            });
        }
        if crc32 && size >= 23 {
            let crc = crc32fast::hash(&bytes[at..at + size - 4]);
            bytes[at + size - 4..at + size].copy_from_slice(&crc.to_le_bytes());
        }
        at += size;
    }
}
