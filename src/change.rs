//! The one change-event type that flows through binlake, and its lossless value model.
//!
//! A [`Change`] is made once, by a source (the binlog reader or, later, the snapshot), and is
//! only read by every later stage. Invariant: `before`/`after` rows are aligned with
//! `table.columns`; a column the row image did not carry is [`Value::Absent`], never a guess.

use std::sync::Arc;

use crate::position::Position;
use crate::schema::TableSchema;

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Insert (`c`).
    Create,
    /// Update (`u`).
    Update,
    /// Delete (`d`).
    Delete,
    /// A row read by a snapshot (`r`).
    Read,
}

impl Op {
    /// The one-letter code used in every output format.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
        }
    }
}

/// One row change, with everything a later stage needs.
#[derive(Debug, Clone)]
pub struct Change {
    pub op: Op,
    /// Database, table, columns and primary key, shared by every change of that table version.
    pub table: Arc<TableSchema>,
    pub before: Option<Row>,
    pub after: Option<Row>,
    /// Commit time in milliseconds since the epoch.
    pub ts_ms: u64,
    pub pos: Position,
    /// True on the last change of its transaction: the commit boundary.
    pub commit: bool,
}

impl Change {
    /// The value of key column `i` (an index into `table.columns`): from the after image when
    /// it holds the whole value, else from the before image (a delete, or an update logged with
    /// a minimal after image). `None` when neither image carries it.
    pub fn key_value(&self, i: usize) -> Option<&Value> {
        let usable = |v: &&Value| !matches!(v, Value::Absent | Value::JsonDiff(_));
        self.after
            .as_ref()
            .and_then(|r| r.get(i))
            .filter(usable)
            .or_else(|| self.before.as_ref().and_then(|r| r.get(i)).filter(usable))
    }
}

/// Values in column order of the table's schema.
pub type Row = Vec<Value>;

/// A MySQL value, kept without loss. Text is already decoded from the column's charset.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// The column was not in this row image (binlog_row_image=MINIMAL/NOBLOB).
    Absent,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// DECIMAL as text with exactly the column's scale, e.g. `-0.500`.
    Decimal(String),
    String(String),
    Bytes(Vec<u8>),
    /// BIT(n): ceil(n/8) big-endian bytes.
    Bit(Vec<u8>),
    /// DATE; a zero or partly-zero date keeps its parts (month 0 / day 0).
    Date(Date),
    DateTime(Date, TimeOfDay),
    /// TIMESTAMP: seconds since the epoch (UTC) and microseconds; `fsp` is the declared precision.
    Timestamp {
        secs: i64,
        micros: u32,
        fsp: u8,
    },
    Time(Duration),
    Year(u16),
    Enum(String),
    Set(Vec<String>),
    /// JSON document text (valid JSON).
    Json(String),
    /// JSON partial update (MySQL PARTIAL_UPDATE_ROWS): the diffs, as JSON text of an array.
    JsonDiff(String),
    /// GEOMETRY: the SRID MySQL stores in front, and the WKB.
    Geometry {
        srid: u32,
        wkb: Vec<u8>,
    },
    /// MySQL 9 VECTOR.
    Vector(Vec<f32>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// MySQL's zero (or partly zero) date, which no calendar type can hold.
    pub fn is_zero(&self) -> bool {
        self.month == 0 || self.day == 0
    }

    /// A real calendar date: not zero, and not a day past its month's end (MySQL stores
    /// 2024-02-31 under ALLOW_INVALID_DATES).
    pub fn is_calendar(&self) -> bool {
        let leap = self.year % 4 == 0 && (self.year % 100 != 0 || self.year % 400 == 0);
        let days = match self.month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return false,
        };
        (1..=days).contains(&self.day)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micros: u32,
    /// Declared fractional-second precision (0..=6).
    pub fsp: u8,
}

/// MySQL TIME: a signed duration up to ±838:59:59.000000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration {
    pub negative: bool,
    pub hours: u32,
    pub minute: u8,
    pub second: u8,
    pub micros: u32,
    pub fsp: u8,
}

impl Duration {
    /// Signed microseconds (overflows past ±2.5 million hours, which no decoded TIME has).
    pub fn total_micros(&self) -> i64 {
        let t = ((self.hours as i64 * 60 + self.minute as i64) * 60 + self.second as i64)
            * 1_000_000
            + self.micros as i64;
        if self.negative {
            -t
        } else {
            t
        }
    }
}
