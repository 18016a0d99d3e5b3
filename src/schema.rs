//! Table schemas as binlake sees them: columns with exact SQL types, and the row key.
//!
//! A [`TableSchema`] is built by the source from what the server logged (the binlog table map
//! and its optional metadata, or information_schema as a fallback) and is immutable: a DDL
//! makes a new one. Invariant: `columns` is in table order and `key` indexes into it.

use std::sync::Arc;

/// One version of one table's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    pub db: String,
    pub table: String,
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the row key, in key order.
    pub key: Vec<usize>,
    /// Where `key` came from.
    pub key_source: KeySource,
}

impl TableSchema {
    /// `db.table`.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.db, self.table)
    }
}

/// How a table's row key was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The table's primary key.
    PrimaryKey,
    /// No primary key: every column is the key (`key = "all-columns"`).
    AllColumns,
    /// No primary key and `key = "none"`: changes carry an empty key.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
}

/// Character set of a text column, resolved from its collation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// utf8mb4, utf8mb3 and ascii: bytes are UTF-8.
    Utf8,
    /// MySQL's latin1, which is Windows-1252.
    Latin1,
    /// The `binary` charset: the column holds bytes, not text.
    Binary,
    /// Another charset that encoding_rs knows.
    Other(&'static encoding_rs::Encoding),
    /// A collation id binlake cannot map: the bytes are kept as bytes.
    Unknown(u16),
}

/// The SQL type of a column, with every fact needed to decode and to re-create it.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlType {
    /// TINYINT (1), SMALLINT (2), MEDIUMINT (3), INT (4), BIGINT (8).
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
    /// CHAR/VARCHAR/TEXT (`charset` not Binary) or BINARY/VARBINARY/BLOB (`charset` Binary).
    /// `max_bytes` is the declared maximum in bytes; `fixed` marks CHAR/BINARY.
    String {
        charset: Charset,
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
    /// ENUM/SET: the value list, when the server logged it (binlog_row_metadata=FULL).
    Enum {
        values: Option<Arc<[String]>>,
    },
    Set {
        values: Option<Arc<[String]>>,
    },
    Json,
    Geometry,
    Vector {
        dimensions: Option<u32>,
    },
}
