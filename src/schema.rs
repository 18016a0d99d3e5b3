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
    /// The table's default collation (information_schema.TABLES), when the server said.
    pub collation: Option<String>,
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
    /// The column's type exactly as the server declares it, ready for CREATE TABLE
    /// (`int(10) unsigned`, `varchar(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci`),
    /// when information_schema agreed with the binlog about it.
    pub declared: Option<Arc<str>>,
}

impl Column {
    /// The SQL type that re-creates this column: the server's declaration, else one rendered
    /// from `ty` (which lacks display widths and collations).
    pub fn sql_type(&self) -> String {
        match &self.declared {
            Some(d) => d.to_string(),
            None => self.ty.render(),
        }
    }
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

impl SqlType {
    /// A MySQL type with this type's facts: what `Column::sql_type` falls back to.
    pub fn render(&self) -> String {
        let unsigned = |u: bool| if u { " unsigned" } else { "" };
        let fsp = |name: &str, fsp: u8| {
            if fsp == 0 {
                name.to_string()
            } else {
                format!("{name}({fsp})")
            }
        };
        let list = |values: &Option<Arc<[String]>>| {
            values
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .map(|v| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            SqlType::Int { bytes, unsigned: u } => {
                let name = match bytes {
                    1 => "tinyint",
                    2 => "smallint",
                    3 => "mediumint",
                    4 => "int",
                    _ => "bigint",
                };
                format!("{name}{}", unsigned(*u))
            }
            SqlType::Float => "float".into(),
            SqlType::Double => "double".into(),
            SqlType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            SqlType::Bit { bits } => format!("bit({bits})"),
            SqlType::String {
                charset,
                max_bytes,
                fixed,
                blob,
            } => {
                let binary = matches!(charset, Charset::Binary | Charset::Unknown(_));
                // Bytes per character: unknown here, so the widest (utf8mb4) is assumed.
                let per_char = match charset {
                    Charset::Binary | Charset::Unknown(_) | Charset::Latin1 => 1,
                    _ => 4,
                };
                let chars = max_bytes.div_ceil(per_char).max(1);
                match (binary, fixed, blob) {
                    (_, _, true) => {
                        let size = match max_bytes {
                            0..=255 => "tiny",
                            256..=65_535 => "",
                            65_536..=16_777_215 => "medium",
                            _ => "long",
                        };
                        format!("{size}{}", if binary { "blob" } else { "text" })
                    }
                    (true, true, _) => format!("binary({chars})"),
                    (true, false, _) => format!("varbinary({chars})"),
                    (false, true, _) => format!("char({chars})"),
                    (false, false, _) => format!("varchar({chars})"),
                }
            }
            SqlType::Date => "date".into(),
            SqlType::DateTime { fsp: f } => fsp("datetime", *f),
            SqlType::Timestamp { fsp: f } => fsp("timestamp", *f),
            SqlType::Time { fsp: f } => fsp("time", *f),
            SqlType::Year => "year".into(),
            SqlType::Enum { values } => format!("enum({})", list(values)),
            SqlType::Set { values } => format!("set({})", list(values)),
            SqlType::Json => "json".into(),
            SqlType::Geometry => "geometry".into(),
            SqlType::Vector { dimensions } => match dimensions {
                Some(d) => format!("vector({d})"),
                None => "vector".into(),
            },
        }
    }

    /// True when `other` (from information_schema) describes the same type as `self` (from
    /// the binlog), as far as the binlog can tell: then the server's declaration is this
    /// column's, not one of a later DDL.
    pub fn agrees_with(&self, other: &SqlType) -> bool {
        use SqlType as T;
        match (self, other) {
            (
                T::String {
                    charset: a,
                    fixed: fa,
                    blob: ba,
                    ..
                },
                T::String {
                    charset: b,
                    fixed: fb,
                    blob: bb,
                    ..
                },
            ) => a == b && fa == fb && ba == bb,
            (T::Enum { values: a }, T::Enum { values: b })
            | (T::Set { values: a }, T::Set { values: b }) => a.is_none() || a == b,
            (T::Vector { .. }, T::Vector { .. }) => true,
            (a, b) => a == b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_types_are_valid_mysql() {
        let cases = [
            (
                SqlType::Int {
                    bytes: 8,
                    unsigned: true,
                },
                "bigint unsigned",
            ),
            (
                SqlType::Decimal {
                    precision: 65,
                    scale: 30,
                },
                "decimal(65,30)",
            ),
            (SqlType::DateTime { fsp: 6 }, "datetime(6)"),
            (SqlType::Timestamp { fsp: 0 }, "timestamp"),
            (
                SqlType::String {
                    charset: Charset::Utf8,
                    max_bytes: 400,
                    fixed: false,
                    blob: false,
                },
                "varchar(100)",
            ),
            (
                SqlType::String {
                    charset: Charset::Binary,
                    max_bytes: 2,
                    fixed: true,
                    blob: false,
                },
                "binary(2)",
            ),
            (
                SqlType::String {
                    charset: Charset::Utf8,
                    max_bytes: 65_535,
                    fixed: false,
                    blob: true,
                },
                "text",
            ),
            (
                SqlType::Enum {
                    values: Some(vec!["a".to_string(), "it's".to_string()].into()),
                },
                "enum('a','it''s')",
            ),
        ];
        for (ty, want) in cases {
            assert_eq!(ty.render(), want);
        }
    }

    #[test]
    fn a_later_ddl_does_not_agree() {
        let a = SqlType::Decimal {
            precision: 10,
            scale: 2,
        };
        assert!(a.agrees_with(&a.clone()));
        assert!(!a.agrees_with(&SqlType::Decimal {
            precision: 12,
            scale: 2
        }));
        let e = SqlType::Enum { values: None };
        assert!(e.agrees_with(&SqlType::Enum {
            values: Some(vec!["x".to_string()].into())
        }));
    }
}
