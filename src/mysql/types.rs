//! Binlog value encodings: how each column type's value is laid out in a row image, and its
//! lossless decoding into [`Value`].
//!
//! Everything here is pure and allocation-light: a [`Codec`] is computed once per table map
//! (see `rows.rs`) and then applied to every value. Invariant: a decode either consumes exactly
//! the value's bytes and returns it, or returns an error; it never reads past the input.

use std::fmt::Write;
use std::sync::Arc;

use crate::change::{Date, Duration, TimeOfDay, Value};
use crate::mysql::charset;
use crate::schema::Charset;

/// A value could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("row image ends early: needed {needed} bytes, {left} left")]
    Truncated { needed: usize, left: usize },
    #[error("invalid {what} value: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("column type {0} is not supported by binlake")]
    UnsupportedType(u8),
}

/// How one column's values are encoded in row images.
#[derive(Debug, Clone, PartialEq)]
pub enum Codec {
    Int {
        bytes: u8,
        unsigned: bool,
    },
    Year,
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Bit {
        bytes: u8,
    },
    /// Length-prefixed bytes (VARCHAR, CHAR, BLOB, TEXT). `pad_to` is set for BINARY(n), whose
    /// trailing zero bytes the server strips in the binlog.
    Var {
        len_bytes: u8,
        charset: Charset,
        pad_to: Option<u32>,
    },
    /// MySQL binary JSON (`binary`) or MariaDB JSON text stored as LONGTEXT.
    Json {
        len_bytes: u8,
        binary: bool,
    },
    Geometry {
        len_bytes: u8,
    },
    Vector {
        len_bytes: u8,
    },
    Date,
    DateTime2 {
        fsp: u8,
    },
    Timestamp2 {
        fsp: u8,
    },
    Time2 {
        fsp: u8,
    },
    DateTimeOld,
    TimestampOld,
    TimeOld,
    Enum {
        pack: u8,
        values: Option<Arc<[String]>>,
    },
    Set {
        pack: u8,
        values: Option<Arc<[String]>>,
    },
}

/// A cursor over a row image.
pub struct Reader<'a> {
    pub buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                needed: n,
                left: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    #[inline]
    fn le(&mut self, n: usize) -> Result<u64, DecodeError> {
        let b = self.take(n)?;
        let mut v = 0u64;
        for (i, x) in b.iter().enumerate() {
            v |= (*x as u64) << (8 * i);
        }
        Ok(v)
    }

    #[inline]
    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        let b = self.take(n)?;
        Ok(be(b))
    }

    /// MySQL's length-encoded integer.
    pub fn lenenc(&mut self) -> Result<u64, DecodeError> {
        let first = self.take(1)?[0];
        match first {
            0..=250 => Ok(first as u64),
            252 => self.le(2),
            253 => self.le(3),
            254 => self.le(8),
            _ => Err(DecodeError::Invalid {
                what: "length-encoded integer",
                detail: format!("first byte {first:#x}"),
            }),
        }
    }
}

#[inline]
fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |v, x| (v << 8) | *x as u64)
}

impl Codec {
    /// Decodes one non-NULL value.
    pub fn decode(&self, r: &mut Reader<'_>) -> Result<Value, DecodeError> {
        Ok(match self {
            Codec::Int { bytes, unsigned } => {
                let n = *bytes as usize;
                let raw = r.le(n)?;
                if *unsigned {
                    Value::UInt(raw)
                } else {
                    // Sign-extend from n bytes (this is what MEDIUMINT needs, too).
                    let shift = 64 - 8 * n as u32;
                    Value::Int(((raw << shift) as i64) >> shift)
                }
            }
            Codec::Year => {
                let y = r.le(1)? as u16;
                Value::Year(if y == 0 { 0 } else { 1900 + y })
            }
            Codec::Float => Value::Float(f32::from_le_bytes(arr(r.take(4)?))),
            Codec::Double => Value::Double(f64::from_le_bytes(arr(r.take(8)?))),
            Codec::Decimal { precision, scale } => {
                Value::Decimal(decode_decimal(r, *precision, *scale)?)
            }
            Codec::Bit { bytes } => Value::Bit(r.take(*bytes as usize)?.to_vec()),
            Codec::Var {
                len_bytes,
                charset,
                pad_to,
            } => {
                let len = r.le(*len_bytes as usize)? as usize;
                let bytes = r.take(len)?;
                match charset::decode(*charset, bytes) {
                    Some(s) => Value::String(s),
                    None => {
                        let mut v = bytes.to_vec();
                        if let Some(n) = pad_to {
                            v.resize((*n as usize).max(v.len()), 0);
                        }
                        Value::Bytes(v)
                    }
                }
            }
            Codec::Json { len_bytes, binary } => {
                let len = r.le(*len_bytes as usize)? as usize;
                let bytes = r.take(len)?;
                if *binary {
                    Value::Json(super::json::binary_to_text(bytes)?)
                } else {
                    match std::str::from_utf8(bytes) {
                        Ok(s) => Value::Json(s.to_owned()),
                        Err(_) => Value::Bytes(bytes.to_vec()),
                    }
                }
            }
            Codec::Geometry { len_bytes } => {
                let len = r.le(*len_bytes as usize)? as usize;
                let bytes = r.take(len)?;
                if bytes.len() < 4 {
                    return Err(DecodeError::Invalid {
                        what: "GEOMETRY",
                        detail: format!("{} bytes, shorter than its SRID", bytes.len()),
                    });
                }
                Value::Geometry {
                    srid: u32::from_le_bytes(arr(&bytes[..4])),
                    wkb: bytes[4..].to_vec(),
                }
            }
            Codec::Vector { len_bytes } => {
                let len = r.le(*len_bytes as usize)? as usize;
                let bytes = r.take(len)?;
                if bytes.len() % 4 != 0 {
                    return Err(DecodeError::Invalid {
                        what: "VECTOR",
                        detail: format!("{} bytes is not a whole number of floats", bytes.len()),
                    });
                }
                Value::Vector(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(arr(c)))
                        .collect(),
                )
            }
            Codec::Date => {
                let v = r.le(3)?;
                let d = Date {
                    year: (v >> 9) as u16,
                    month: ((v >> 5) & 15) as u8,
                    day: (v & 31) as u8,
                };
                check_date("DATE", &d)?;
                Value::Date(d)
            }
            Codec::DateTime2 { fsp } => {
                let int = r.be(5)? as i64 - 0x80_0000_0000;
                let micros = read_fraction(r, *fsp)?;
                if int < 0 {
                    return Err(DecodeError::Invalid {
                        what: "DATETIME",
                        detail: "negative (sign bit clear)".into(),
                    });
                }
                let ymd = int >> 17;
                let ym = ymd >> 5;
                let hms = int % (1 << 17);
                let (d, t) = (
                    Date {
                        year: (ym / 13) as u16,
                        month: (ym % 13) as u8,
                        day: (ymd % 32) as u8,
                    },
                    TimeOfDay {
                        hour: (hms >> 12) as u8,
                        minute: ((hms >> 6) % 64) as u8,
                        second: (hms % 64) as u8,
                        micros,
                        fsp: *fsp,
                    },
                );
                check_date("DATETIME", &d)?;
                check_time_of_day("DATETIME", &t)?;
                Value::DateTime(d, t)
            }
            Codec::Timestamp2 { fsp } => {
                let secs = r.be(4)? as i64;
                let micros = read_fraction(r, *fsp)?;
                Value::Timestamp {
                    secs,
                    micros,
                    fsp: *fsp,
                }
            }
            Codec::Time2 { fsp } => Value::Time(decode_time2(r, *fsp)?),
            Codec::DateTimeOld => {
                let v = r.le(8)?;
                let (d, t) = (v / 1_000_000, v % 1_000_000);
                if d / 10_000 > 9999 {
                    return Err(DecodeError::Invalid {
                        what: "DATETIME",
                        detail: format!("{v} is past year 9999"),
                    });
                }
                let (d, t) = (
                    Date {
                        year: (d / 10_000) as u16,
                        month: (d / 100 % 100) as u8,
                        day: (d % 100) as u8,
                    },
                    TimeOfDay {
                        hour: (t / 10_000) as u8,
                        minute: (t / 100 % 100) as u8,
                        second: (t % 100) as u8,
                        micros: 0,
                        fsp: 0,
                    },
                );
                check_date("DATETIME", &d)?;
                check_time_of_day("DATETIME", &t)?;
                Value::DateTime(d, t)
            }
            Codec::TimestampOld => Value::Timestamp {
                secs: r.le(4)? as i64,
                micros: 0,
                fsp: 0,
            },
            Codec::TimeOld => {
                let raw = r.le(3)? as i64;
                let v = (raw << 40) >> 40; // sign-extend 24 bits
                let a = v.unsigned_abs();
                Value::Time(check_time(Duration {
                    negative: v < 0,
                    hours: (a / 10_000) as u32,
                    minute: (a / 100 % 100) as u8,
                    second: (a % 100) as u8,
                    micros: 0,
                    fsp: 0,
                })?)
            }
            Codec::Enum { pack, values } => {
                let idx = r.le(*pack as usize)?;
                match values {
                    Some(vals) => Value::Enum(if idx == 0 {
                        // The "error" member MySQL stores for invalid input.
                        String::new()
                    } else {
                        vals.get(idx as usize - 1)
                            .cloned()
                            .ok_or_else(|| DecodeError::Invalid {
                                what: "ENUM",
                                detail: format!("index {idx} of {} members", vals.len()),
                            })?
                    }),
                    None => Value::UInt(idx),
                }
            }
            Codec::Set { pack, values } => {
                let bits = r.le(*pack as usize)?;
                match values {
                    Some(vals) => Value::Set(
                        vals.iter()
                            .enumerate()
                            .filter(|(i, _)| *i < 64 && bits & (1u64 << i) != 0)
                            .map(|(_, v)| v.clone())
                            .collect(),
                    ),
                    None => Value::UInt(bits),
                }
            }
        })
    }
}

#[inline]
fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// Fractional seconds of DATETIME2/TIMESTAMP2 (unsigned), in microseconds.
fn read_fraction(r: &mut Reader<'_>, fsp: u8) -> Result<u32, DecodeError> {
    let micros = match fsp {
        0 => 0,
        1 | 2 => r.be(1)? as u32 * 10_000,
        3 | 4 => r.be(2)? as u32 * 100,
        5 | 6 => r.be(3)? as u32,
        _ => {
            return Err(DecodeError::Invalid {
                what: "fractional seconds precision",
                detail: fsp.to_string(),
            })
        }
    };
    if micros > 999_999 {
        return Err(DecodeError::Invalid {
            what: "fractional seconds",
            detail: format!("{micros} µs is a second or more"),
        });
    }
    Ok(micros)
}

/// MySQL never stores a month past 12 or a day past 31 (ALLOW_INVALID_DATES allows day 31 in
/// any month, and zero parts): other bit patterns are damage, and would be read as another
/// date.
fn check_date(what: &'static str, d: &Date) -> Result<(), DecodeError> {
    if d.month > 12 || d.day > 31 {
        return Err(DecodeError::Invalid {
            what,
            detail: format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
        });
    }
    Ok(())
}

/// A time of day is at most 23:59:59.999999.
fn check_time_of_day(what: &'static str, t: &TimeOfDay) -> Result<(), DecodeError> {
    if t.hour > 23 || t.minute > 59 || t.second > 59 || t.micros > 999_999 {
        return Err(DecodeError::Invalid {
            what,
            detail: format!(
                "time of day {:02}:{:02}:{:02}.{:06}",
                t.hour, t.minute, t.second, t.micros
            ),
        });
    }
    Ok(())
}

/// A TIME's minutes and seconds are below 60 and its fraction below a second (its hours are
/// not checked: MySQL's ±838 is a limit of the SQL type, not of the format).
fn check_time(d: Duration) -> Result<Duration, DecodeError> {
    if d.minute > 59 || d.second > 59 || d.micros > 999_999 {
        return Err(DecodeError::Invalid {
            what: "TIME",
            detail: format!(
                "{}{}:{:02}:{:02}.{:06}",
                if d.negative { "-" } else { "" },
                d.hours,
                d.minute,
                d.second,
                d.micros
            ),
        });
    }
    Ok(d)
}

/// TIME2: MySQL's packed signed time (see my_time_packed_from_binary).
fn decode_time2(r: &mut Reader<'_>, fsp: u8) -> Result<Duration, DecodeError> {
    const INT_OFS: i64 = 0x80_0000;
    let packed: i64 = match fsp {
        0 => (r.be(3)? as i64 - INT_OFS) << 24,
        1 | 2 => {
            let mut int = r.be(3)? as i64 - INT_OFS;
            let mut frac = r.take(1)?[0] as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x100;
            }
            (int << 24) + frac * 10_000
        }
        3 | 4 => {
            let mut int = r.be(3)? as i64 - INT_OFS;
            let mut frac = r.be(2)? as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x10000;
            }
            (int << 24) + frac * 100
        }
        5 | 6 => r.be(6)? as i64 - 0x8000_0000_0000,
        _ => {
            return Err(DecodeError::Invalid {
                what: "TIME precision",
                detail: fsp.to_string(),
            })
        }
    };
    let negative = packed < 0;
    let a = packed.unsigned_abs();
    let hms = a >> 24;
    check_time(Duration {
        negative,
        hours: ((hms >> 12) % (1 << 10)) as u32,
        minute: ((hms >> 6) % 64) as u8,
        second: (hms % 64) as u8,
        micros: (a % (1 << 24)) as u32,
        fsp,
    })
}

const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// DECIMAL(precision, scale) in MySQL's binary format, as exact text with `scale` digits.
pub fn decode_decimal(r: &mut Reader<'_>, precision: u8, scale: u8) -> Result<String, DecodeError> {
    if scale > precision || precision > 65 {
        return Err(DecodeError::Invalid {
            what: "DECIMAL metadata",
            detail: format!("({precision},{scale})"),
        });
    }
    let intg = (precision - scale) as usize;
    let (intg0, intg0x) = (intg / 9, intg % 9);
    let (frac0, frac0x) = (scale as usize / 9, scale as usize % 9);
    let size = intg0 * 4 + DIG2BYTES[intg0x] + frac0 * 4 + DIG2BYTES[frac0x];
    let raw = r.take(size)?;
    if size == 0 {
        return Ok("0".into());
    }
    let mut b = [0u8; 32];
    b[..size].copy_from_slice(raw);
    let negative = b[0] & 0x80 == 0;
    b[0] ^= 0x80;
    if negative {
        for x in &mut b[..size] {
            *x = !*x;
        }
    }
    let mut at = 0usize;
    let mut next = |n: usize| {
        let v = be(&b[at..at + n]);
        at += n;
        v
    };
    let mut int_part = String::with_capacity(intg + 1);
    if intg0x > 0 {
        let v = next(DIG2BYTES[intg0x]);
        if v > 0 {
            let _ = write!(int_part, "{v}");
        }
    }
    for _ in 0..intg0 {
        let v = next(4);
        if int_part.is_empty() {
            if v > 0 {
                let _ = write!(int_part, "{v}");
            }
        } else {
            let _ = write!(int_part, "{v:09}");
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac = String::with_capacity(scale as usize);
    for _ in 0..frac0 {
        let _ = write!(frac, "{:09}", next(4));
    }
    if frac0x > 0 {
        let v = next(DIG2BYTES[frac0x]);
        let _ = write!(frac, "{v:0width$}", width = frac0x);
    }
    if frac.len() != scale as usize || int_part.len() > intg.max(1) {
        return Err(DecodeError::Invalid {
            what: "DECIMAL",
            detail: format!("digits out of range for ({precision},{scale})"),
        });
    }
    let is_zero = int_part == "0" && frac.bytes().all(|c| c == b'0');
    let mut s = String::with_capacity(int_part.len() + frac.len() + 2);
    if negative && !is_zero {
        s.push('-');
    }
    s.push_str(&int_part);
    if scale > 0 {
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8], p: u8, s: u8) -> String {
        decode_decimal(&mut Reader::new(bytes), p, s).unwrap()
    }

    #[test]
    fn decimal_examples_from_the_mysql_docs() {
        // 1234567890.1234 as DECIMAL(14,4): 81 0D FB 38 D2 04 D2
        assert_eq!(
            dec(&[0x81, 0x0D, 0xFB, 0x38, 0xD2, 0x04, 0xD2], 14, 4),
            "1234567890.1234"
        );
        // -1234567890.1234: the same bytes inverted, sign bit flipped.
        assert_eq!(
            dec(&[0x7E, 0xF2, 0x04, 0xC7, 0x2D, 0xFB, 0x2D], 14, 4),
            "-1234567890.1234"
        );
    }

    #[test]
    fn decimal_zero_has_no_sign() {
        // DECIMAL(5,2) 0.00 positive = 0x80 0x00 0x00 ; negative zero = 0x7f 0xff 0xff
        assert_eq!(dec(&[0x80, 0x00, 0x00], 5, 2), "0.00");
        assert_eq!(dec(&[0x7f, 0xff, 0xff], 5, 2), "0.00");
    }

    #[test]
    fn medium_int_is_sign_extended() {
        let c = Codec::Int {
            bytes: 3,
            unsigned: false,
        };
        assert_eq!(
            c.decode(&mut Reader::new(&[0xff, 0xff, 0xff])).unwrap(),
            Value::Int(-1)
        );
        let u = Codec::Int {
            bytes: 3,
            unsigned: true,
        };
        assert_eq!(
            u.decode(&mut Reader::new(&[0xff, 0xff, 0xff])).unwrap(),
            Value::UInt(16_777_215)
        );
    }

    #[test]
    fn year_zero_stays_zero() {
        assert_eq!(
            Codec::Year.decode(&mut Reader::new(&[0])).unwrap(),
            Value::Year(0)
        );
        assert_eq!(
            Codec::Year.decode(&mut Reader::new(&[155])).unwrap(),
            Value::Year(2055)
        );
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let c = Codec::Var {
            len_bytes: 2,
            charset: Charset::Utf8,
            pad_to: None,
        };
        assert!(matches!(
            c.decode(&mut Reader::new(&[10, 0, b'a'])),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn negative_time_with_fraction() {
        // -00:00:01.5 with fsp 1: int part -1 -> packed with frac -50 -> bytes per MySQL.
        // Build it through the encoder formula: intpart=-1, frac=-50 => stored int = -2 + OFS,
        // frac byte = 256-50.
        let int = (0x80_0000i64 - 1) as u32;
        let bytes = [
            (int >> 16) as u8,
            (int >> 8) as u8,
            int as u8,
            (256 - 50) as u8,
        ];
        let d = decode_time2(&mut Reader::new(&bytes), 1).unwrap();
        assert!(d.negative);
        assert_eq!((d.hours, d.minute, d.second, d.micros), (0, 0, 0, 500_000));
    }
}
