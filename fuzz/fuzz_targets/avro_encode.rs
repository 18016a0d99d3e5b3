//! An arbitrary table (columns of every `SqlType`, nullability, key, names that need
//! rewriting) and rows of values -> `TableSchemas::derive` + `Encoder::key`/`value` -> read back
//! with apache-avro against the derived schemas and compared with an independent oracle
//! (`common::expect_record`): the encoder must accept exactly the rows that round-trip, and what
//! it writes must read back as the source value.
//!
//! Values are mostly "natural" (what the binlog decoder produces for the column's type, with
//! arbitrary contents, including MySQL's odd but legal ones such as 2024-02-31), sometimes
//! NULL/absent, sometimes any value at all (type mismatches must be refused, not written).
#![no_main]

mod common;

use std::sync::Arc;

use arbitrary::{Arbitrary, Result, Unstructured};
use binlake::change::{Date, Duration, TimeOfDay, Value};
use binlake::schema::{Charset, Column, KeySource, SqlType, TableSchema};

#[derive(Arbitrary, Debug)]
enum Ty {
    Int {
        bytes: u8,
        unsigned: bool,
    },
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Bit {
        bits: u16,
    },
    String {
        charset: u8,
        max_bytes: u32,
        fixed: bool,
        blob: bool,
    },
    Date,
    DateTime {
        fsp: u8,
    },
    Timestamp {
        fsp: u8,
    },
    Time {
        fsp: u8,
    },
    Year,
    Enum {
        values: Option<Vec<String>>,
    },
    Set {
        values: Option<Vec<String>>,
    },
    Json,
    Geometry,
    Vector {
        dimensions: Option<u32>,
    },
}

impl Ty {
    /// The SQL type, within what the decoder produces (DECIMAL 1..=65 digits with a scale of at
    /// most 38 (MariaDB) and not above the precision; integer widths 1, 2, 3, 4, 8; fsp 0..=6).
    fn sql(self) -> SqlType {
        match self {
            Ty::Int { bytes, unsigned } => SqlType::Int {
                bytes: [1, 2, 3, 4, 8][bytes as usize % 5],
                unsigned,
            },
            Ty::Float => SqlType::Float,
            Ty::Double => SqlType::Double,
            Ty::Decimal { precision, scale } => {
                let precision = 1 + precision % 65;
                SqlType::Decimal {
                    precision,
                    scale: scale % (precision.min(38) + 1),
                }
            }
            Ty::Bit { bits } => SqlType::Bit { bits: bits % 65 },
            Ty::String {
                charset,
                max_bytes,
                fixed,
                blob,
            } => SqlType::String {
                charset: match charset % 4 {
                    0 => Charset::Utf8,
                    1 => Charset::Latin1,
                    2 => Charset::Binary,
                    _ => Charset::Unknown(charset as u16),
                },
                max_bytes,
                fixed,
                blob,
            },
            Ty::Date => SqlType::Date,
            Ty::DateTime { fsp } => SqlType::DateTime { fsp: fsp % 7 },
            Ty::Timestamp { fsp } => SqlType::Timestamp { fsp: fsp % 7 },
            Ty::Time { fsp } => SqlType::Time { fsp: fsp % 7 },
            Ty::Year => SqlType::Year,
            Ty::Enum { values } => SqlType::Enum {
                values: values.map(Arc::from),
            },
            Ty::Set { values } => SqlType::Set {
                values: values.map(|v| Arc::from(v.into_iter().take(64).collect::<Vec<_>>())),
            },
            Ty::Json => SqlType::Json,
            Ty::Geometry => SqlType::Geometry,
            Ty::Vector { dimensions } => SqlType::Vector { dimensions },
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Col {
    name: String,
    ty: Ty,
    nullable: bool,
}

#[derive(Arbitrary, Debug)]
struct Table {
    db: String,
    table: String,
    namespace: String,
    columns: Vec<Col>,
    key: Vec<u8>,
    key_source: u8,
    collation: Option<String>,
}

/// Any value at all (mostly a type mismatch for the column).
#[derive(Arbitrary, Debug)]
enum Wild {
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    Decimal(String),
    String(String),
    Bytes(Vec<u8>),
    Bit(Vec<u8>),
    Date(u16, u8, u8),
    DateTime(u16, u8, u8, u8, u8, u8, u32, u8),
    Timestamp(i64, u32, u8),
    Time(bool, u32, u8, u8, u32, u8),
    Year(u16),
    Enum(String),
    Set(Vec<String>),
    Json(String),
    JsonDiff(String),
    Geometry(u32, Vec<u8>),
    Vector(Vec<f32>),
}

impl Wild {
    fn value(self) -> Value {
        match self {
            Wild::Int(i) => Value::Int(i),
            Wild::UInt(u) => Value::UInt(u),
            Wild::Float(x) => Value::Float(x),
            Wild::Double(x) => Value::Double(x),
            Wild::Decimal(s) => Value::Decimal(s),
            Wild::String(s) => Value::String(s),
            Wild::Bytes(b) => Value::Bytes(b),
            Wild::Bit(b) => Value::Bit(b),
            Wild::Date(year, month, day) => Value::Date(Date { year, month, day }),
            Wild::DateTime(year, month, day, hour, minute, second, micros, fsp) => Value::DateTime(
                Date { year, month, day },
                TimeOfDay {
                    hour,
                    minute,
                    second,
                    micros,
                    fsp,
                },
            ),
            Wild::Timestamp(secs, micros, fsp) => Value::Timestamp { secs, micros, fsp },
            Wild::Time(negative, hours, minute, second, micros, fsp) => Value::Time(Duration {
                negative,
                hours,
                minute,
                second,
                micros,
                fsp,
            }),
            Wild::Year(y) => Value::Year(y),
            Wild::Enum(s) => Value::Enum(s),
            Wild::Set(m) => Value::Set(m),
            Wild::Json(s) => Value::Json(s),
            Wild::JsonDiff(s) => Value::JsonDiff(s),
            Wild::Geometry(srid, wkb) => Value::Geometry { srid, wkb },
            Wild::Vector(xs) => Value::Vector(xs),
        }
    }
}

/// A value the decoder could produce for a column of type `ty`, with arbitrary contents.
fn natural(ty: &SqlType, u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match ty {
        SqlType::Int { bytes, unsigned } => {
            let raw: u64 = u.arbitrary()?;
            let shift = 64 - 8 * *bytes as u32;
            if *unsigned {
                Value::UInt((raw << shift) >> shift)
            } else {
                Value::Int(((raw << shift) as i64) >> shift)
            }
        }
        SqlType::Year => {
            let y: u8 = u.arbitrary()?;
            Value::Year(if y == 0 { 0 } else { 1900 + y as u16 })
        }
        SqlType::Float => Value::Float(u.arbitrary()?),
        SqlType::Double => Value::Double(u.arbitrary()?),
        SqlType::Decimal { precision, scale } => {
            let intg = (precision - scale) as usize;
            let n_int = u.int_in_range(0..=intg)?;
            let mut s = String::new();
            if u.arbitrary()? {
                s.push('-');
            }
            for i in 0..n_int.max(1) {
                let d: u8 = u.int_in_range(if i == 0 && n_int > 1 { 1 } else { 0 }..=9)?;
                s.push((b'0' + if n_int == 0 { 0 } else { d }) as char);
            }
            if *scale > 0 {
                s.push('.');
                for _ in 0..*scale {
                    s.push((b'0' + u.int_in_range(0..=9)?) as char);
                }
            }
            Value::Decimal(s)
        }
        SqlType::Bit { bits } => {
            let n = (*bits as usize).div_ceil(8);
            Value::Bit(u.bytes(n)?.to_vec())
        }
        SqlType::String { charset, .. } => match charset {
            Charset::Binary | Charset::Unknown(_) => Value::Bytes(u.arbitrary()?),
            _ => {
                if u.ratio(1, 8)? {
                    Value::Bytes(u.arbitrary()?) // text not valid in its charset
                } else {
                    Value::String(u.arbitrary()?)
                }
            }
        },
        SqlType::Date => Value::Date(date(u)?),
        SqlType::DateTime { fsp } => Value::DateTime(
            date(u)?,
            TimeOfDay {
                hour: u.int_in_range(0..=23)?,
                minute: u.int_in_range(0..=59)?,
                second: u.int_in_range(0..=59)?,
                micros: u.int_in_range(0..=999_999)?,
                fsp: *fsp,
            },
        ),
        SqlType::Timestamp { fsp } => Value::Timestamp {
            secs: u.arbitrary::<u32>()? as i64,
            micros: u.int_in_range(0..=999_999)?,
            fsp: *fsp,
        },
        SqlType::Time { fsp } => Value::Time(Duration {
            negative: u.arbitrary()?,
            hours: u.int_in_range(0..=838)?,
            minute: u.int_in_range(0..=59)?,
            second: u.int_in_range(0..=59)?,
            micros: u.int_in_range(0..=999_999)?,
            fsp: *fsp,
        }),
        SqlType::Enum { values } => match values {
            Some(v) if !v.is_empty() && u.ratio(7, 8)? => Value::Enum(u.choose(v)?.clone()),
            Some(_) => Value::Enum(String::new()),
            None => Value::UInt(u.arbitrary::<u16>()? as u64),
        },
        SqlType::Set { values } => match values {
            Some(v) => {
                let bits: u64 = u.arbitrary()?;
                Value::Set(
                    v.iter()
                        .enumerate()
                        .filter(|(i, _)| bits & (1 << i) != 0)
                        .map(|(_, m)| m.clone())
                        .collect(),
                )
            }
            None => Value::UInt(u.arbitrary()?),
        },
        SqlType::Json => Value::Json(u.arbitrary()?),
        SqlType::Geometry => Value::Geometry {
            srid: u.arbitrary()?,
            wkb: u.arbitrary()?,
        },
        SqlType::Vector { .. } => Value::Vector(u.arbitrary()?),
    })
}

/// A DATE as MySQL can store it: zero parts, and days up to 31 in any month
/// (ALLOW_INVALID_DATES).
fn date(u: &mut Unstructured<'_>) -> Result<Date> {
    Ok(Date {
        year: u.int_in_range(0..=9999)?,
        month: u.int_in_range(0..=12)?,
        day: u.int_in_range(0..=31)?,
    })
}

fn cell(ty: &SqlType, u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0u8..=15)? {
        0 => Value::Null,
        1 => Value::Absent,
        2 => u.arbitrary::<Wild>()?.value(),
        _ => natural(ty, u)?,
    })
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let t: Table = u.arbitrary()?;
    let columns: Vec<Column> = t
        .columns
        .into_iter()
        .take(24)
        .map(|c| Column {
            name: c.name,
            ty: c.ty.sql(),
            nullable: c.nullable,
            declared: None,
        })
        .collect();
    let mut key: Vec<usize> = Vec::new();
    if !columns.is_empty() {
        for k in t.key {
            let k = k as usize % columns.len();
            if !key.contains(&k) {
                key.push(k);
            }
        }
    }
    let table = Arc::new(TableSchema {
        db: t.db,
        table: t.table,
        columns,
        key,
        key_source: [
            KeySource::PrimaryKey,
            KeySource::AllColumns,
            KeySource::None,
        ][t.key_source as usize % 3],
        collation: t.collation,
    });
    let checked = common::Checked::new_with_namespace(&table, &t.namespace);
    for _ in 0..8 {
        if u.is_empty() {
            break;
        }
        let row: Vec<Value> = table
            .columns
            .iter()
            .map(|c| cell(&c.ty, &mut u))
            .collect::<Result<_>>()?;
        let op: String = u.arbitrary()?;
        let ts: i64 = u.arbitrary()?;
        let pos: String = u.arbitrary()?;
        checked.key(&row);
        checked.value(&row, &op, ts, &pos);
    }
    Ok(())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
