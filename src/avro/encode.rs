//! Rows → Avro binary, following the plan [`TableSchemas`] derived; no intermediate value tree.
//!
//! Invariant: what is written decodes, with the derived schema, to exactly the source value;
//! a value that cannot (a NULL in a NOT NULL column, a MINIMAL row image, a JSON partial
//! update) is an [`EncodeError`] naming the column and the fix.

use crate::change::{Date, Value};
use crate::mysql::select::days_from_civil;

use super::schema::{Field, Kind, TableSchemas};
use super::wire::{bytes, long};

#[derive(Debug, thiserror::Error)]
#[error("{table}.{column}: {problem}")]
pub struct EncodeError {
    pub table: String,
    pub column: String,
    pub problem: String,
}

/// Encodes the keys and values of one table version.
pub struct Encoder {
    pub schemas: TableSchemas,
    table: String,
}

impl Encoder {
    pub fn new(schemas: TableSchemas, table: String) -> Self {
        Encoder { schemas, table }
    }

    /// Appends the key record of `row` (its key columns).
    pub fn key(&self, row: &[Value], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        for f in &self.schemas.key_fields {
            self.field(f, row.get(f.column).unwrap_or(&Value::Absent), out)?;
        }
        Ok(())
    }

    /// Appends the value record: `row` (the after-image, or the before-image of a delete),
    /// then `__op`, `__ts_ms`, `__pos`.
    pub fn value(
        &self,
        row: &[Value],
        op: &str,
        ts_ms: i64,
        pos: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        for f in &self.schemas.value_fields {
            self.field(f, row.get(f.column).unwrap_or(&Value::Absent), out)?;
        }
        bytes(out, op.as_bytes());
        long(out, ts_ms);
        bytes(out, pos.as_bytes());
        Ok(())
    }

    fn err(&self, f: &Field, problem: impl Into<String>) -> EncodeError {
        EncodeError {
            table: self.table.clone(),
            column: f.name.clone(),
            problem: problem.into(),
        }
    }

    fn field(&self, f: &Field, v: &Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match v {
            Value::Absent => {
                return Err(self.err(
                    f,
                    "the row image does not carry this column: set binlog_row_image = FULL on \
                     the server (binlake run writes whole rows)",
                ))
            }
            Value::JsonDiff(_) => {
                return Err(self.err(
                    f,
                    "a JSON partial update (binlog_row_value_options = PARTIAL_JSON) does not \
                     carry the document: set binlog_row_value_options = '' on the server",
                ))
            }
            Value::Null => {
                if f.nullable {
                    long(out, 0);
                    return Ok(());
                }
                return Err(self.err(f, "NULL in a column the schema says is NOT NULL"));
            }
            _ => {}
        }
        // A zero date (or MySQL's 2024-02-31) has no calendar value: NULL when the column
        // allows it, else the epoch (as Debezium does for zero dates); README documents it.
        let zero = match (f.kind, v) {
            (Kind::Date, Value::Date(d)) | (Kind::LocalTimestampMicros, Value::DateTime(d, _)) => {
                !d.is_calendar()
            }
            _ => false,
        };
        if f.nullable {
            long(out, if zero { 0 } else { 1 });
            if zero {
                return Ok(());
            }
        }
        self.plain(f, v, zero, out)
    }

    fn plain(
        &self,
        f: &Field,
        v: &Value,
        zero: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let mismatch = || self.err(f, format!("value {v:?} does not fit {:?}", f.kind));
        match (f.kind, v) {
            (Kind::Int, Value::Int(i)) => {
                long(out, i32::try_from(*i).map_err(|_| mismatch())? as i64)
            }
            (Kind::Int, Value::UInt(u)) => {
                long(out, i32::try_from(*u).map_err(|_| mismatch())? as i64)
            }
            (Kind::Int, Value::Year(y)) => long(out, *y as i64),
            (Kind::Long, Value::Int(i)) => long(out, *i),
            (Kind::Long, Value::UInt(u)) => long(out, i64::try_from(*u).map_err(|_| mismatch())?),
            (Kind::U64Decimal, Value::UInt(u)) => bytes(out, &twos_complement_u64(*u)),
            (Kind::U64Decimal, Value::Int(i)) if *i >= 0 => {
                bytes(out, &twos_complement_u64(*i as u64))
            }
            (Kind::Decimal { scale }, Value::Decimal(s)) => {
                let b = decimal_bytes(s, scale).ok_or_else(mismatch)?;
                bytes(out, &b)
            }
            (Kind::Float, Value::Float(x)) => out.extend_from_slice(&x.to_le_bytes()),
            (Kind::Double, Value::Double(x)) => out.extend_from_slice(&x.to_le_bytes()),
            (Kind::Double, Value::Float(x)) => out.extend_from_slice(&(*x as f64).to_le_bytes()),
            (
                Kind::String | Kind::Enum | Kind::Json,
                Value::String(s) | Value::Enum(s) | Value::Json(s),
            ) => bytes(out, s.as_bytes()),
            (Kind::String, Value::Bytes(b)) => {
                // Text the decoder could not decode in its charset: Avro strings are UTF-8.
                tracing::warn!(table = %self.table, column = %f.name, "text not valid in its charset written with replacement characters");
                bytes(out, String::from_utf8_lossy(b).as_bytes())
            }
            (Kind::Set, Value::Set(members)) => bytes(out, members.join(",").as_bytes()),
            (Kind::Bytes, Value::Bytes(b) | Value::Bit(b)) => bytes(out, b),
            (Kind::Bytes, Value::String(s)) => bytes(out, s.as_bytes()),
            (Kind::Date, Value::Date(d)) => long(out, if zero { 0 } else { days(d) }),
            // Out-of-range parts (which the decoder refuses) would read back as another
            // instant: refused here too, never folded into the next minute or day.
            (Kind::LocalTimestampMicros, Value::DateTime(d, t)) => {
                if t.hour > 23 || t.minute > 59 || t.second > 59 || t.micros > 999_999 {
                    return Err(mismatch());
                }
                let micros = if zero {
                    0
                } else {
                    days(d) * 86_400_000_000
                        + ((t.hour as i64 * 60 + t.minute as i64) * 60 + t.second as i64)
                            * 1_000_000
                        + t.micros as i64
                };
                long(out, micros)
            }
            (Kind::TimestampMicros, Value::Timestamp { secs, micros, .. }) => {
                let us = secs
                    .checked_mul(1_000_000)
                    .and_then(|s| s.checked_add(*micros as i64))
                    .filter(|_| *micros <= 999_999)
                    .ok_or_else(mismatch)?;
                long(out, us)
            }
            (Kind::TimeMicros, Value::Time(d)) => {
                if d.minute > 59 || d.second > 59 || d.micros > 999_999 || d.hours > 1 << 20 {
                    return Err(mismatch());
                }
                long(out, d.total_micros())
            }
            (Kind::Geometry, Value::Geometry { srid, wkb }) => {
                // MySQL's own layout: SRID (little-endian u32), then the WKB.
                long(out, 4 + wkb.len() as i64);
                out.extend_from_slice(&srid.to_le_bytes());
                out.extend_from_slice(wkb);
            }
            (Kind::Vector, Value::Vector(xs)) => {
                if !xs.is_empty() {
                    long(out, xs.len() as i64);
                    for x in xs {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
                long(out, 0);
            }
            _ => return Err(mismatch()),
        }
        Ok(())
    }
}

fn days(d: &Date) -> i64 {
    days_from_civil(d.year as i64, d.month as i64, d.day as i64)
}

/// Minimal big-endian two's complement of an unsigned value (a leading 0 keeps it positive).
fn twos_complement_u64(u: u64) -> Vec<u8> {
    let b = u.to_be_bytes();
    let first = b.iter().position(|&x| x != 0).unwrap_or(7);
    let mut v = b[first..].to_vec();
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    v
}

/// The unscaled value of decimal text (`-12.50`) at `scale`, as minimal big-endian two's
/// complement. `None` when the text is not a decimal or has more fraction digits than `scale`.
pub(crate) fn decimal_bytes(s: &str, scale: u8) -> Option<Vec<u8>> {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > scale as usize
        || (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Magnitude as big-endian bytes, by repeated multiply-by-ten.
    let mut mag: Vec<u8> = vec![0];
    let digits = int
        .bytes()
        .chain(frac.bytes())
        .chain(std::iter::repeat_n(b'0', scale as usize - frac.len()));
    for d in digits {
        let mut carry = (d - b'0') as u32;
        for byte in mag.iter_mut().rev() {
            let x = *byte as u32 * 10 + carry;
            *byte = x as u8;
            carry = x >> 8;
        }
        while carry > 0 {
            mag.insert(0, carry as u8);
            carry >>= 8;
        }
    }
    // Sign bit room, then negate if needed.
    if mag[0] & 0x80 != 0 {
        mag.insert(0, 0);
    }
    if negative && mag.iter().any(|&b| b != 0) {
        let mut carry = true;
        for byte in mag.iter_mut().rev() {
            let (x, c) = (!*byte).overflowing_add(carry as u8);
            *byte = x;
            carry = c;
        }
    }
    // Minimal form: drop redundant leading sign bytes.
    while mag.len() > 1
        && ((mag[0] == 0 && mag[1] & 0x80 == 0) || (mag[0] == 0xff && mag[1] & 0x80 != 0))
    {
        mag.remove(0);
    }
    Some(mag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unscaled(b: &[u8]) -> i128 {
        let mut v: i128 = if b[0] & 0x80 != 0 { -1 } else { 0 };
        for &x in b {
            v = (v << 8) | x as i128;
        }
        v
    }

    #[test]
    fn decimals_become_twos_complement() {
        for (s, scale, want) in [
            ("0", 0, 0i128),
            ("-0.50", 2, -50),
            ("127", 0, 127),
            ("128", 0, 128),
            ("-128", 0, -128),
            ("-129", 0, -129),
            ("12.5", 3, 12500),
            (
                "99999999999999999999999999.999999999999",
                12,
                99999999999999999999999999999999999999,
            ),
            (
                "-99999999999999999999999999.999999999999",
                12,
                -99999999999999999999999999999999999999,
            ),
        ] {
            let b = decimal_bytes(s, scale).unwrap();
            assert_eq!(unscaled(&b), want, "{s}");
            // Minimal: no redundant sign byte.
            if b.len() > 1 {
                assert!(
                    (b[0] != 0 || b[1] & 0x80 != 0) && (b[0] != 0xff || b[1] & 0x80 == 0),
                    "{s}"
                );
            }
        }
        assert_eq!(decimal_bytes("128", 0).unwrap(), [0, 128]);
        assert!(decimal_bytes("1.234", 2).is_none());
        assert!(decimal_bytes("1e5", 0).is_none());
        // DECIMAL(65,30) extremes exceed i128: check through apache-avro's reader below.
        assert!(decimal_bytes(&format!("-{}.{}", "9".repeat(35), "9".repeat(30)), 30).is_some());
    }

    #[test]
    fn every_kind_reads_back_with_apache_avro() {
        use crate::change::{Date, Duration, TimeOfDay};
        use crate::schema::{Charset, Column, KeySource, SqlType, TableSchema};
        use apache_avro::types::Value as A;
        let types = [
            SqlType::Int {
                bytes: 4,
                unsigned: false,
            },
            SqlType::Int {
                bytes: 4,
                unsigned: true,
            },
            SqlType::Int {
                bytes: 8,
                unsigned: true,
            },
            SqlType::Decimal {
                precision: 65,
                scale: 30,
            },
            SqlType::Double,
            SqlType::String {
                charset: Charset::Utf8,
                max_bytes: 40,
                fixed: false,
                blob: false,
            },
            SqlType::String {
                charset: Charset::Binary,
                max_bytes: 40,
                fixed: false,
                blob: true,
            },
            SqlType::Date,
            SqlType::DateTime { fsp: 6 },
            SqlType::Timestamp { fsp: 6 },
            SqlType::Time { fsp: 6 },
            SqlType::Set { values: None },
            SqlType::Json,
            SqlType::Date,
        ];
        let t = TableSchema {
            db: "d".into(),
            table: "t".into(),
            columns: types
                .iter()
                .enumerate()
                .map(|(i, ty)| Column {
                    name: format!("c{i}"),
                    ty: ty.clone(),
                    nullable: i % 2 == 1 && i != 13,
                    declared: None,
                })
                .collect(),
            key: vec![0],
            key_source: KeySource::PrimaryKey,
            collation: None,
        };
        let big = format!("-{}.{}", "9".repeat(35), "9".repeat(30));
        let row = vec![
            Value::Int(-2147483648),
            Value::UInt(4294967295),
            Value::UInt(u64::MAX),
            Value::Decimal(big.clone()),
            Value::Double(-0.5),
            Value::String("café 😀".into()),
            Value::Bytes(vec![0xff, 0]),
            Value::Date(Date {
                year: 1000,
                month: 1,
                day: 1,
            }),
            Value::DateTime(
                Date {
                    year: 9999,
                    month: 12,
                    day: 31,
                },
                TimeOfDay {
                    hour: 23,
                    minute: 59,
                    second: 59,
                    micros: 999_999,
                    fsp: 6,
                },
            ),
            Value::Timestamp {
                secs: -1,
                micros: 500_000,
                fsp: 6,
            },
            Value::Time(Duration {
                negative: true,
                hours: 838,
                minute: 59,
                second: 59,
                micros: 0,
                fsp: 6,
            }),
            Value::Set(vec!["a".into(), "b".into()]),
            Value::Json("{\"k\":[1,2]}".into()),
            Value::Date(Date {
                year: 0,
                month: 0,
                day: 0,
            }),
        ];
        let schemas = TableSchemas::derive(&t, "p.d.t");
        let enc = Encoder::new(schemas.clone(), "d.t".into());
        let mut out = Vec::new();
        enc.value(&row, "c", 1700000000123, "f.000001:4:0", &mut out)
            .unwrap();
        let schema = apache_avro::Schema::parse_str(&schemas.value).unwrap();
        let A::Record(fields) = apache_avro::from_avro_datum(&schema, &mut &out[..], None).unwrap()
        else {
            panic!("not a record")
        };
        let v: Vec<A> = fields
            .into_iter()
            .map(|(_, v)| match v {
                A::Union(_, b) => *b,
                v => v,
            })
            .collect();
        assert_eq!(v[0], A::Int(-2147483648));
        assert_eq!(v[1], A::Long(4294967295));
        let A::Decimal(d) = &v[2] else {
            panic!("{:?}", v[2])
        };
        assert_eq!(
            <Vec<u8>>::try_from(d.clone()).unwrap(),
            twos_complement_u64(u64::MAX)
        );
        let A::Decimal(d) = &v[3] else {
            panic!("{:?}", v[3])
        };
        assert_eq!(
            <Vec<u8>>::try_from(d.clone()).unwrap(),
            decimal_bytes(&big, 30).unwrap()
        );
        assert_eq!(v[4], A::Double(-0.5));
        assert_eq!(v[5], A::String("café 😀".into()));
        assert_eq!(v[6], A::Bytes(vec![0xff, 0]));
        assert_eq!(v[7], A::Date(-354285));
        assert_eq!(v[8], A::LocalTimestampMicros(253402300799999999));
        assert_eq!(v[9], A::TimestampMicros(-500_000));
        assert_eq!(v[10], A::Long(-(838 * 3600 + 59 * 60 + 59) * 1_000_000));
        assert_eq!(v[11], A::String("a,b".into()));
        assert_eq!(v[12], A::String("{\"k\":[1,2]}".into()));
        // A zero date in a NOT NULL column is the epoch; in a nullable one, NULL.
        assert_eq!(v[13], A::Date(0));
        assert_eq!(v[14], A::String("c".into()));
        assert_eq!(v[15], A::Long(1700000000123));
        let mut zero = row.clone();
        zero[7] = Value::Date(Date {
            year: 0,
            month: 0,
            day: 0,
        });
        let mut out2 = Vec::new();
        enc.value(&zero, "c", 0, "", &mut out2).unwrap();
        let A::Record(f) = apache_avro::from_avro_datum(&schema, &mut &out2[..], None).unwrap()
        else {
            panic!()
        };
        assert_eq!(f[7].1, A::Union(0, Box::new(A::Null)));
        zero[0] = Value::Null;
        enc.value(&zero, "c", 0, "", &mut out2)
            .expect_err("NULL in a NOT NULL column is refused");
        let mut minimal = row.clone();
        minimal[1] = Value::Absent;
        let e = enc
            .value(&minimal, "u", 0, "", &mut out2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("binlog_row_image = FULL"), "{e}");
    }

    #[test]
    fn dates_without_a_calendar_value_are_null_or_the_epoch() {
        use crate::change::{Date, TimeOfDay};
        use crate::schema::{Column, KeySource, SqlType, TableSchema};
        let col = |name: &str, ty: SqlType, nullable| Column {
            name: name.into(),
            ty,
            nullable,
            declared: None,
        };
        let t = TableSchema {
            db: "d".into(),
            table: "t".into(),
            columns: vec![
                col("a", SqlType::Date, false),
                col("b", SqlType::Date, true),
                col("c", SqlType::DateTime { fsp: 0 }, false),
            ],
            key: vec![0],
            key_source: KeySource::PrimaryKey,
            collation: None,
        };
        let enc = Encoder::new(TableSchemas::derive(&t, "p.d.t"), "d.t".into());
        // 2024-02-31 (ALLOW_INVALID_DATES) used to be written as 2024-03-02.
        let feb31 = Date {
            year: 2024,
            month: 2,
            day: 31,
        };
        let noon = TimeOfDay {
            hour: 12,
            minute: 0,
            second: 0,
            micros: 0,
            fsp: 0,
        };
        let row = [
            Value::Date(feb31),
            Value::Date(feb31),
            Value::DateTime(feb31, noon),
        ];
        let mut out = Vec::new();
        enc.key(&row, &mut out).unwrap();
        assert_eq!(out, [0], "NOT NULL: the epoch");
        out.clear();
        enc.value(&row, "c", 0, "", &mut out).unwrap();
        assert_eq!(&out[..3], [0, 0, 0], "the epoch, null, the epoch");
        // A time of day past 23:59:59.999999 would read back as the next day: refused.
        let late = TimeOfDay { hour: 24, ..noon };
        let d = Date {
            year: 2024,
            month: 2,
            day: 29,
        };
        let row = [Value::Date(d), Value::Null, Value::DateTime(d, late)];
        assert!(enc.value(&row, "c", 0, "", &mut out).is_err());
        assert!(!feb31.is_calendar() && d.is_calendar());
        assert!(!Date {
            year: 1900,
            month: 2,
            day: 29
        }
        .is_calendar());
        assert!(Date {
            year: 2000,
            month: 2,
            day: 29
        }
        .is_calendar());
    }

    #[test]
    fn u64_max_is_a_positive_decimal() {
        assert_eq!(
            twos_complement_u64(u64::MAX),
            [0, 255, 255, 255, 255, 255, 255, 255, 255]
        );
        assert_eq!(twos_complement_u64(0), [0]);
        assert_eq!(twos_complement_u64(127), [127]);
    }
}
