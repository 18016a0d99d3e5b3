//! Rows read with SELECT (the snapshot): a table's schema from information_schema, and the
//! server's binary-protocol values, both turned into exactly what the binlog decoder makes of
//! the same table and row.
//!
//! Invariant: for any row, `convert_row` over a SELECT gives the same `Value`s, and
//! `table_schema` the same names, key and SQL types, as decoding that row from the binlog;
//! the snapshot and the stream are one changelog (tested against the binlog in
//! tests/snapshot_mariadb.rs).

use mysql_async::Value as My;

use crate::change::{Date, Duration, Row, TimeOfDay, Value};
use crate::config::{Filter, KeyMode};
use crate::error::{Error, Result};
use crate::mysql::charset::charset_by_name;
use crate::mysql::rows::{parse_members, ServerColumn, ServerTable};
use crate::schema::{Charset, Column, KeySource, SqlType, TableSchema};

/// The schema of a table as information_schema describes it, with the same types the binlog
/// decoder derives from a table map. `None` when the table is skipped (`key = "skip"`).
pub fn table_schema(
    db: &str,
    table: &str,
    info: &ServerTable,
    key_mode: KeyMode,
    filter: &Filter,
) -> Result<Option<TableSchema>> {
    let mut columns = Vec::new();
    for c in &info.columns {
        if !filter.column(db, table, &c.name) {
            continue;
        }
        columns.push(Column {
            name: c.name.clone(),
            ty: sql_type(c).map_err(|what| {
                Error::Unsupported(format!(
                    "{db}.{table} column `{}` has type `{}`, which binlake cannot read ({what}); \
                     exclude the column ([capture] exclude_columns) or the table",
                    c.name, c.column_type
                ))
            })?,
            nullable: c.nullable,
            declared: Some(c.declaration()),
        });
    }
    let pk: Vec<usize> = info
        .primary_key
        .iter()
        .filter_map(|k| columns.iter().position(|c| &c.name == k))
        .collect();
    let (key, key_source) = if !pk.is_empty() && pk.len() == info.primary_key.len() {
        (pk, KeySource::PrimaryKey)
    } else {
        match key_mode {
            KeyMode::AllColumns => ((0..columns.len()).collect(), KeySource::AllColumns),
            KeyMode::None => (Vec::new(), KeySource::None),
            KeyMode::Skip => return Ok(None),
        }
    };
    Ok(Some(TableSchema {
        db: db.to_string(),
        table: table.to_string(),
        columns,
        key,
        key_source,
        collation: info.collation.clone(),
    }))
}

pub(crate) fn sql_type(c: &ServerColumn) -> std::result::Result<SqlType, &'static str> {
    let unsigned = c.column_type.contains("unsigned");
    let int = |bytes| Ok(SqlType::Int { bytes, unsigned });
    let charset = || {
        c.charset
            .as_deref()
            .and_then(charset_by_name)
            .unwrap_or(Charset::Binary)
    };
    let string = |fixed: bool, blob: bool| {
        Ok(SqlType::String {
            charset: charset(),
            max_bytes: c.octet_length.unwrap_or(0).min(u32::MAX as u64) as u32,
            fixed,
            blob,
        })
    };
    let fsp = c.fsp.unwrap_or(0) as u8;
    let members = || parse_members(&c.column_type);
    if c.is_json {
        return Ok(SqlType::Json);
    }
    match c.data_type.as_str() {
        "tinyint" => int(1),
        "smallint" => int(2),
        "mediumint" => int(3),
        "int" | "integer" => int(4),
        "bigint" => int(8),
        "decimal" | "numeric" => Ok(SqlType::Decimal {
            precision: c.precision.unwrap_or(10) as u8,
            scale: c.scale.unwrap_or(0) as u8,
        }),
        "float" => Ok(SqlType::Float),
        "double" | "real" => Ok(SqlType::Double),
        "bit" => Ok(SqlType::Bit {
            bits: c.precision.unwrap_or(1) as u16,
        }),
        "char" | "binary" => string(true, false),
        "varchar" | "varbinary" => string(false, false),
        "tinytext" | "text" | "mediumtext" | "longtext" | "tinyblob" | "blob" | "mediumblob"
        | "longblob" => string(false, true),
        "date" => Ok(SqlType::Date),
        "datetime" => Ok(SqlType::DateTime { fsp }),
        "timestamp" => Ok(SqlType::Timestamp { fsp }),
        "time" => Ok(SqlType::Time { fsp }),
        "year" => Ok(SqlType::Year),
        "enum" => Ok(SqlType::Enum { values: members() }),
        "set" => Ok(SqlType::Set { values: members() }),
        "json" => Ok(SqlType::Json),
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => Ok(SqlType::Geometry),
        "vector" => Ok(SqlType::Vector { dimensions: None }),
        _ => Err("unknown data type"),
    }
}

pub fn convert_row(t: &TableSchema, vals: Vec<My>) -> Result<Row> {
    t.columns
        .iter()
        .zip(vals)
        .map(|(c, v)| {
            convert(v, &c.ty).map_err(|detail| {
                Error::Unsupported(format!(
                    "snapshot of {}: column `{}`: {detail}",
                    t.full_name(),
                    c.name
                ))
            })
        })
        .collect()
}

/// A value from the server's binary protocol, as the binlog decoder would have produced it.
fn convert(v: My, ty: &SqlType) -> std::result::Result<Value, String> {
    let bytes = |v: My| match v {
        My::Bytes(b) => Ok(b),
        other => Err(format!("unexpected value {other:?}")),
    };
    let text = |b: Vec<u8>| String::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"));
    if v == My::NULL {
        return Ok(Value::Null);
    }
    Ok(match ty {
        SqlType::Int { unsigned, .. } => match v {
            My::Int(i) if *unsigned => Value::UInt(i as u64),
            My::Int(i) => Value::Int(i),
            My::UInt(u) if *unsigned => Value::UInt(u),
            My::UInt(u) => Value::Int(u as i64),
            other => return Err(format!("unexpected integer {other:?}")),
        },
        SqlType::Year => match v {
            My::Int(i) => Value::Year(i as u16),
            My::UInt(u) => Value::Year(u as u16),
            other => return Err(format!("unexpected YEAR {other:?}")),
        },
        SqlType::Float => match v {
            My::Float(f) => Value::Float(f),
            My::Double(d) => Value::Float(d as f32),
            other => return Err(format!("unexpected FLOAT {other:?}")),
        },
        SqlType::Double => match v {
            My::Double(d) => Value::Double(d),
            My::Float(f) => Value::Double(f as f64),
            other => return Err(format!("unexpected DOUBLE {other:?}")),
        },
        SqlType::Decimal { .. } => Value::Decimal(text(bytes(v)?)?),
        SqlType::Bit { .. } => Value::Bit(bytes(v)?),
        SqlType::String { charset, .. } => {
            let b = bytes(v)?;
            if *charset == Charset::Binary {
                Value::Bytes(b)
            } else {
                // The connection's charset is utf8mb4: the server converted the text.
                match String::from_utf8(b) {
                    Ok(s) => Value::String(s),
                    Err(e) => Value::Bytes(e.into_bytes()),
                }
            }
        }
        SqlType::Date => match v {
            My::Date(y, m, d, ..) => Value::Date(Date {
                year: y,
                month: m,
                day: d,
            }),
            other => return Err(format!("unexpected DATE {other:?}")),
        },
        SqlType::DateTime { fsp } => match v {
            My::Date(y, mo, d, h, mi, s, us) => Value::DateTime(
                Date {
                    year: y,
                    month: mo,
                    day: d,
                },
                TimeOfDay {
                    hour: h,
                    minute: mi,
                    second: s,
                    micros: us,
                    fsp: *fsp,
                },
            ),
            other => return Err(format!("unexpected DATETIME {other:?}")),
        },
        SqlType::Timestamp { fsp } => match v {
            My::Date(0, 0, 0, ..) => Value::Timestamp {
                secs: 0,
                micros: 0,
                fsp: *fsp,
            },
            My::Date(y, mo, d, h, mi, s, us) => Value::Timestamp {
                secs: days_from_civil(y as i64, mo as i64, d as i64) * 86_400
                    + h as i64 * 3600
                    + mi as i64 * 60
                    + s as i64,
                micros: us,
                fsp: *fsp,
            },
            other => return Err(format!("unexpected TIMESTAMP {other:?}")),
        },
        SqlType::Time { fsp } => match v {
            My::Time(neg, days, h, m, s, us) => Value::Time(Duration {
                negative: neg,
                hours: days * 24 + h as u32,
                minute: m,
                second: s,
                micros: us,
                fsp: *fsp,
            }),
            other => return Err(format!("unexpected TIME {other:?}")),
        },
        SqlType::Enum { .. } => Value::Enum(text(bytes(v)?)?),
        SqlType::Set { .. } => {
            let s = text(bytes(v)?)?;
            Value::Set(if s.is_empty() {
                Vec::new()
            } else {
                s.split(',').map(str::to_owned).collect()
            })
        }
        SqlType::Json => {
            let b = bytes(v)?;
            match String::from_utf8(b) {
                Ok(s) if serde_json::from_str::<serde::de::IgnoredAny>(&s).is_ok() => {
                    Value::Json(s)
                }
                Ok(s) => Value::String(s),
                Err(e) => Value::Bytes(e.into_bytes()),
            }
        }
        SqlType::Geometry => {
            let b = bytes(v)?;
            if b.len() < 4 {
                return Err("GEOMETRY shorter than its SRID".into());
            }
            Value::Geometry {
                srid: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                wkb: b[4..].to_vec(),
            }
        }
        SqlType::Vector { .. } => {
            let b = bytes(v)?;
            Value::Vector(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        }
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_match_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2038, 1, 19), 24_855);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
