//! Partitioners: which Hive partition (directory) a row goes to.
//!
//! - `kafka`: `partition=N`, the record's Kafka partition;
//! - `field`: `col=value` for each configured column (NULL: `__HIVE_DEFAULT_PARTITION__`);
//! - `time`: a pattern such as `dt=YYYY-MM-DD/hr=HH` filled from the commit time (`__ts_ms`)
//!   or a DATE/DATETIME/TIMESTAMP column, in a configured time zone (DATE and DATETIME are
//!   wall-clock values and are used as they are).
//!
//! Invariant: a path is a pure function of the row and the config, and its values are escaped
//! the way Hive escapes partition paths, so the metastore's partition names match the
//! directories exactly.

use chrono::{Datelike, TimeZone, Timelike};
use chrono_tz::Tz;

use crate::config::{PartitionBy, PartitionConfig, SinkFormat};
use crate::error::{Error, Result};

use super::hive::HiveColumn;
use super::rows::Decoded;
use super::schema::{hive_type, LakeSchema};

const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// One table's partitioner, resolved against a lake schema.
#[derive(Debug, Clone)]
pub enum Partitioner {
    Kafka,
    /// Column indexes of the lake schema, with the key names.
    Field(Vec<(usize, String)>),
    Time {
        /// (key, pattern) per path segment.
        segments: Vec<(String, String)>,
        column: Option<usize>,
        tz: Tz,
    },
}

impl Partitioner {
    pub fn new(cfg: &PartitionConfig, schema: &LakeSchema) -> Result<Partitioner> {
        let find = |name: &str| {
            schema
                .columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    Error::Unsupported(format!(
                        "[sink] partitioning of {}: there is no column `{name}` (columns: {})",
                        schema.table,
                        schema
                            .columns
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
        };
        Ok(match cfg.by {
            PartitionBy::Kafka => Partitioner::Kafka,
            PartitionBy::Field => Partitioner::Field(
                cfg.fields
                    .iter()
                    .map(|f| Ok((find(f)?, f.to_ascii_lowercase())))
                    .collect::<Result<_>>()?,
            ),
            PartitionBy::Time => {
                let column = match &cfg.time_field {
                    None => None,
                    Some(f) => {
                        let i = find(f)?;
                        if schema.columns[i].ty.is_time() {
                            Some(i)
                        } else {
                            return Err(Error::Unsupported(format!(
                                "[sink] time_field `{f}` of {} is not a DATE, DATETIME or \
                                 TIMESTAMP column",
                                schema.table
                            )));
                        }
                    }
                };
                let tz: Tz = cfg.timezone.parse().map_err(|_| {
                    Error::Unsupported(format!("unknown time zone `{}`", cfg.timezone))
                })?;
                let mut segments = Vec::new();
                for seg in cfg.pattern.split('/') {
                    let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
                    if schema
                        .columns
                        .iter()
                        .any(|c| c.name.eq_ignore_ascii_case(k))
                    {
                        return Err(Error::Unsupported(format!(
                            "[sink] pattern key `{k}` is also a column of {}: Hive cannot have \
                             both; choose another key in the pattern",
                            schema.table
                        )));
                    }
                    segments.push((k.to_ascii_lowercase(), v.to_string()));
                }
                Partitioner::Time {
                    segments,
                    column,
                    tz,
                }
            }
        })
    }

    /// The Hive partition keys, in path order.
    pub fn keys(&self, schema: &LakeSchema, format: SinkFormat) -> Vec<HiveColumn> {
        match self {
            Partitioner::Kafka => vec![HiveColumn {
                name: "partition".into(),
                ty: "int".into(),
                comment: "Kafka partition".into(),
            }],
            Partitioner::Field(cols) => cols
                .iter()
                .map(|(i, name)| HiveColumn {
                    name: name.clone(),
                    ty: partition_type(&hive_type(schema.columns[*i].ty, format)),
                    comment: String::new(),
                })
                .collect(),
            Partitioner::Time { segments, .. } => segments
                .iter()
                .map(|(k, _)| HiveColumn {
                    name: k.clone(),
                    ty: "string".into(),
                    comment: String::new(),
                })
                .collect(),
        }
    }

    /// Lake columns that are partition keys (Hive lists them only as keys).
    pub fn key_columns(&self) -> Vec<usize> {
        match self {
            Partitioner::Field(cols) => cols.iter().map(|(i, _)| *i).collect(),
            _ => Vec::new(),
        }
    }

    /// The partition values of a row, in key order.
    pub fn values(
        &self,
        schema: &LakeSchema,
        row: &Decoded<'_>,
        kafka_partition: i32,
    ) -> Vec<String> {
        match self {
            Partitioner::Kafka => vec![kafka_partition.to_string()],
            Partitioner::Field(cols) => cols
                .iter()
                .map(|(i, _)| {
                    row.cells
                        .get(*i)
                        .and_then(|c| c.text(schema.columns[*i].ty))
                        .unwrap_or_else(|| NULL_PARTITION.to_string())
                })
                .collect(),
            Partitioner::Time {
                segments,
                column,
                tz,
            } => {
                let t = match column {
                    None => tz
                        .timestamp_millis_opt(row.ts)
                        .single()
                        .map(|t| t.naive_local()),
                    Some(i) => row
                        .cells
                        .get(*i)
                        .and_then(|c| c.micros(schema.columns[*i].ty))
                        .and_then(|(us, wall)| {
                            let utc = chrono::DateTime::from_timestamp_micros(us)?;
                            Some(if wall {
                                utc.naive_utc()
                            } else {
                                utc.with_timezone(tz).naive_local()
                            })
                        }),
                };
                segments
                    .iter()
                    .map(|(_, pattern)| match t {
                        Some(t) => pattern
                            .replace("YYYY", &format!("{:04}", t.year()))
                            .replace("MM", &format!("{:02}", t.month()))
                            .replace("DD", &format!("{:02}", t.day()))
                            .replace("HH", &format!("{:02}", t.hour()))
                            .replace("mm", &format!("{:02}", t.minute())),
                        None => NULL_PARTITION.to_string(),
                    })
                    .collect()
            }
        }
    }

    /// `k1=v1/k2=v2`, escaped like Hive.
    pub fn path(keys: &[HiveColumn], values: &[String]) -> String {
        keys.iter()
            .zip(values)
            .map(|(k, v)| format!("{}={}", escape(&k.name), escape(v)))
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Hive partition keys must be primitive and comparable; others become strings.
fn partition_type(t: &str) -> String {
    match t {
        "int" | "bigint" | "string" | "date" | "boolean" => t.to_string(),
        d if d.starts_with("decimal") => d.to_string(),
        _ => "string".into(),
    }
}

/// Hive's `FileUtils.escapePathName`: these characters become `%XX`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let special = c.is_control()
            || matches!(
                c,
                '"' | '#'
                    | '%'
                    | '\''
                    | '*'
                    | '/'
                    | ':'
                    | '='
                    | '?'
                    | '\\'
                    | '\u{7f}'
                    | '{'
                    | '['
                    | ']'
                    | '^'
            );
        if special {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The inverse of [`escape`]: `%XX` back to the character.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::rows::Cell;

    #[test]
    fn hive_escaping() {
        assert_eq!(escape("a/b=c:d"), "a%2Fb%3Dc%3Ad");
        assert_eq!(escape("plain value"), "plain value");
        for v in ["a/b=c:d", "100%", "é/ü", "%zz"] {
            assert_eq!(unescape(&escape(v)), v);
        }
    }

    #[test]
    fn time_patterns_follow_the_time_zone() {
        let key = r#"{"type":"record","name":"K","fields":[{"name":"id","type":"long"}]}"#;
        let value = r#"{"type":"record","name":"V","binlake.table":"a.t","fields":[
            {"name":"id","type":"long"},
            {"name":"at","type":{"type":"long","logicalType":"local-timestamp-micros"}},
            {"name":"__op","type":"string"},{"name":"__ts_ms","type":"long"},{"name":"__pos","type":"string"}]}"#;
        let schema = LakeSchema::derive("t", key, value).expect("schema");
        let mut cfg = PartitionConfig {
            by: PartitionBy::Time,
            timezone: "Europe/Berlin".into(),
            ..Default::default()
        };
        let p = Partitioner::new(&cfg, &schema).expect("partitioner");
        // 2026-01-01T23:30:00Z is 00:30 on Jan 2 in Berlin.
        let row = Decoded::for_test(vec![Cell::Long(1), Cell::Long(0)], 1_767_310_200_000);
        assert_eq!(p.values(&schema, &row, 0), ["2026-01-02", "00"]);
        let keys = p.keys(&schema, SinkFormat::Parquet);
        assert_eq!(
            Partitioner::path(&keys, &p.values(&schema, &row, 0)),
            "dt=2026-01-02/hr=00"
        );
        // A DATETIME column is a wall-clock time: no conversion.
        cfg.time_field = Some("at".into());
        let p = Partitioner::new(&cfg, &schema).expect("partitioner");
        let row = Decoded::for_test(vec![Cell::Long(1), Cell::Long(1_767_310_200_000_000)], 0);
        assert_eq!(p.values(&schema, &row, 0), ["2026-01-01", "23"]);
        cfg.pattern = "id=YYYY".into();
        assert!(Partitioner::new(&cfg, &schema).is_err());
        let f = PartitionConfig {
            by: PartitionBy::Field,
            fields: vec!["id".into()],
            ..Default::default()
        };
        let p = Partitioner::new(&f, &schema).expect("field");
        let row = Decoded::for_test(vec![Cell::Null, Cell::Long(0)], 0);
        assert_eq!(p.values(&schema, &row, 0), [NULL_PARTITION]);
    }
}
