//! Changes as JSON lines (the format of `binlake tail` and `binlake decode`).
//!
//! The encoding is lossless and stable: integers are exact JSON numbers (u64 max included),
//! DECIMAL a string with exactly the column's scale, temporal values strings with exactly the
//! declared fraction digits, TIMESTAMP in UTC with a `Z`, bytes `{"base64": ...}`. A change is
//! written into a caller-owned buffer, so printing a million lines allocates almost nothing.

use std::io::Write;

use base64::Engine;

use crate::change::{Change, Date, Duration, Row, TimeOfDay, Value};
use crate::schema::TableSchema;

/// Appends one JSON line (with the trailing newline) for `c` to `out`.
pub fn write_change(c: &Change, out: &mut Vec<u8>) {
    let t = &*c.table;
    out.extend_from_slice(b"{\"op\":\"");
    out.extend_from_slice(c.op.code().as_bytes());
    out.extend_from_slice(b"\",\"db\":");
    json_str(&t.db, out);
    out.extend_from_slice(b",\"table\":");
    json_str(&t.table, out);
    out.extend_from_slice(b",\"key\":");
    out.push(b'{');
    let mut first = true;
    for &i in &t.key {
        if let Some(v) = c.key_value(i) {
            field(&mut first, &t.columns[i].name, v, out);
        }
    }
    out.push(b'}');
    out.extend_from_slice(b",\"before\":");
    row(t, c.before.as_ref(), out);
    out.extend_from_slice(b",\"after\":");
    row(t, c.after.as_ref(), out);
    let _ = write!(out, ",\"ts_ms\":{},\"pos\":{{\"file\":", c.ts_ms);
    json_str(&c.pos.file, out);
    let _ = write!(
        out,
        ",\"offset\":{},\"row\":{},\"gtid\":",
        c.pos.offset, c.pos.row
    );
    match &c.pos.gtid {
        Some(g) => json_str(g, out),
        None => out.extend_from_slice(b"null"),
    }
    if let Some(n) = c.pos.snapshot {
        let _ = write!(out, ",\"snapshot\":{n}");
    }
    out.extend_from_slice(b"}}\n");
}

fn row(t: &TableSchema, r: Option<&Row>, out: &mut Vec<u8>) {
    let Some(r) = r else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'{');
    let mut first = true;
    for (col, v) in t.columns.iter().zip(r) {
        if !matches!(v, Value::Absent) {
            field(&mut first, &col.name, v, out);
        }
    }
    out.push(b'}');
}

fn field(first: &mut bool, name: &str, v: &Value, out: &mut Vec<u8>) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    json_str(name, out);
    out.push(b':');
    value(v, out);
}

fn json_str(s: &str, out: &mut Vec<u8>) {
    // serde_json's escaping is correct and fast; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn base64(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"base64\":\"");
    let start = out.len();
    out.resize(start + base64::encoded_len(b.len(), true).unwrap_or(0), 0);
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(b, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + n);
    out.extend_from_slice(b"\"}");
}

/// The key of a change as bytes (its values' JSON encoding): equal keys, equal bytes, whether
/// the values came from the binlog or from a snapshot query.
pub fn key_bytes(c: &Change, out: &mut Vec<u8>) {
    for &i in &c.table.key {
        match c.key_value(i) {
            Some(v) => value(v, out),
            None => out.extend_from_slice(b"null"),
        }
        out.push(0);
    }
}

/// Appends the JSON encoding of one value.
pub fn value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null | Value::Absent => out.extend_from_slice(b"null"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        Value::Double(f) => {
            let _ = write!(out, "{f:?}");
        }
        Value::Decimal(s) | Value::Enum(s) | Value::String(s) => json_str(s, out),
        Value::Bytes(b) | Value::Bit(b) => base64(b, out),
        Value::Geometry { srid, wkb } => {
            base64(wkb, out);
            out.pop();
            let _ = write!(out, ",\"srid\":{srid}}}");
        }
        Value::Date(d) if d.is_zero() => out.extend_from_slice(b"null"),
        Value::Date(d) => {
            out.push(b'"');
            date(d, out);
            out.push(b'"');
        }
        Value::DateTime(d, _) if d.is_zero() => out.extend_from_slice(b"null"),
        Value::DateTime(d, t) => {
            out.push(b'"');
            date(d, out);
            out.push(b' ');
            time_of_day(t, out);
            out.push(b'"');
        }
        Value::Timestamp {
            secs: 0, micros: 0, ..
        } => out.extend_from_slice(b"null"),
        Value::Timestamp { secs, micros, fsp } => {
            let (d, t) = utc(*secs, *micros, *fsp);
            out.push(b'"');
            date(&d, out);
            out.push(b'T');
            time_of_day(&t, out);
            out.extend_from_slice(b"Z\"");
        }
        Value::Time(t) => {
            out.push(b'"');
            duration(t, out);
            out.push(b'"');
        }
        Value::Year(y) => {
            let _ = write!(out, "{y}");
        }
        Value::Set(items) => {
            out.push(b'[');
            for (i, s) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(s, out);
            }
            out.push(b']');
        }
        Value::Json(text) => out.extend_from_slice(text.as_bytes()),
        Value::JsonDiff(text) => {
            out.extend_from_slice(b"{\"json_diff\":");
            out.extend_from_slice(text.as_bytes());
            out.push(b'}');
        }
        Value::Vector(xs) => {
            out.push(b'[');
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = write!(out, "{x:?}");
            }
            out.push(b']');
        }
    }
}

fn date(d: &Date, out: &mut Vec<u8>) {
    let _ = write!(out, "{:04}-{:02}-{:02}", d.year, d.month, d.day);
}

fn fraction(micros: u32, fsp: u8, out: &mut Vec<u8>) {
    if fsp > 0 {
        let digits = format!("{micros:06}");
        out.push(b'.');
        out.extend_from_slice(&digits.as_bytes()[..(fsp as usize).min(6)]);
    }
}

fn time_of_day(t: &TimeOfDay, out: &mut Vec<u8>) {
    let _ = write!(out, "{:02}:{:02}:{:02}", t.hour, t.minute, t.second);
    fraction(t.micros, t.fsp, out);
}

fn duration(t: &Duration, out: &mut Vec<u8>) {
    if t.negative {
        out.push(b'-');
    }
    let _ = write!(out, "{:02}:{:02}:{:02}", t.hours, t.minute, t.second);
    fraction(t.micros, t.fsp, out);
}

/// Seconds since the epoch -> UTC civil date and time (proleptic Gregorian).
pub fn utc(secs: i64, micros: u32, fsp: u8) -> (Date, TimeOfDay) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
    (
        Date { year, month, day },
        TimeOfDay {
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            micros,
            fsp,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: Value) -> String {
        let mut out = Vec::new();
        value(&v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn temporal_values_carry_declared_fraction_digits() {
        let d = Date {
            year: 9999,
            month: 12,
            day: 31,
        };
        let t = TimeOfDay {
            hour: 23,
            minute: 59,
            second: 59,
            micros: 999_999,
            fsp: 6,
        };
        assert_eq!(enc(Value::DateTime(d, t)), "\"9999-12-31 23:59:59.999999\"");
        let t3 = TimeOfDay {
            fsp: 3,
            micros: 120_000,
            ..t
        };
        assert_eq!(enc(Value::DateTime(d, t3)), "\"9999-12-31 23:59:59.120\"");
        let t0 = TimeOfDay {
            fsp: 0,
            micros: 0,
            ..t
        };
        assert_eq!(enc(Value::DateTime(d, t0)), "\"9999-12-31 23:59:59\"");
        assert_eq!(
            enc(Value::Timestamp {
                secs: 1,
                micros: 500_000,
                fsp: 1
            }),
            "\"1970-01-01T00:00:01.5Z\""
        );
        assert_eq!(
            enc(Value::Time(Duration {
                negative: true,
                hours: 838,
                minute: 59,
                second: 59,
                micros: 0,
                fsp: 6
            })),
            "\"-838:59:59.000000\""
        );
    }

    #[test]
    fn utc_matches_known_instants() {
        let (d, t) = utc(2_147_483_647, 0, 0);
        assert_eq!((d.year, d.month, d.day), (2038, 1, 19));
        assert_eq!((t.hour, t.minute, t.second), (3, 14, 7));
        let (d, _) = utc(951_782_400, 0, 0); // 2000-02-29
        assert_eq!((d.year, d.month, d.day), (2000, 2, 29));
    }

    #[test]
    fn integers_are_exact_and_bytes_are_base64() {
        assert_eq!(enc(Value::UInt(u64::MAX)), "18446744073709551615");
        assert_eq!(enc(Value::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(enc(Value::Bytes(vec![0xff, 0x00])), "{\"base64\":\"/wA=\"}");
        assert_eq!(enc(Value::Double(1e300)), "1e300");
    }
}
