//! A table topic's schemas → the MySQL table they describe, and decoded values → SQL text.
//!
//! The table comes from the newest value schema: each field's `binlake.sql` (the column's
//! declaration at the source, e.g. `decimal(12,2)`, `enum('a','b')`, `varchar(20) CHARACTER
//! SET latin1 COLLATE latin1_swedish_ci`), its nullability, `binlake.column` (the MySQL name
//! when the Avro name had to differ), the key record's fields (the primary key, in key order)
//! and `binlake.collation` (the table default).
//!
//! Invariant: a literal is exact for its column: decimals as their digits, times with all six
//! fraction digits, TIMESTAMP in UTC (the writer's session runs at `+00:00`), bytes as hex,
//! text quoted for `NO_BACKSLASH_ESCAPES` (the writer's session sets it), so the value read
//! back from the table equals the value that left the source.

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::sink::rows::Cell;
use crate::sink::schema::{LakeColumn, LakeType};

/// One column of the table to (re)create.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetColumn {
    /// The MySQL column name.
    pub name: String,
    /// The Avro field name (the lake column name).
    pub field: String,
    /// `binlake.sql`; `None` in schemas registered before binlake carried it.
    pub sql: Option<String>,
    pub nullable: bool,
}

/// The table a topic describes.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// `db.table` at the source.
    pub source: String,
    pub columns: Vec<TargetColumn>,
    /// Indexes into `columns` of the key, in key order.
    pub key: Vec<usize>,
    /// The key is every column (the source table had no primary key).
    pub keyless: bool,
    pub collation: Option<String>,
}

fn not_binlake(topic: &str, why: &str) -> Error {
    Error::Unsupported(format!(
        "topic {topic} is not a binlake table topic ({why}); rebuild reads the topics `binlake \
         run` writes ({{topic_prefix}}.{{db}}.{{table}})"
    ))
}

impl TableDef {
    /// The table of a topic from its newest key and value schemas (registry JSON).
    pub fn from_schemas(topic: &str, key: &str, value: &str) -> Result<TableDef> {
        let value: Json = serde_json::from_str(value)
            .map_err(|e| not_binlake(topic, &format!("value schema: {e}")))?;
        let key: Json = serde_json::from_str(key)
            .map_err(|e| not_binlake(topic, &format!("key schema: {e}")))?;
        let source = value["binlake.table"]
            .as_str()
            .ok_or_else(|| not_binlake(topic, "its value schema has no binlake.table"))?
            .to_string();
        let fields = value["fields"]
            .as_array()
            .ok_or_else(|| not_binlake(topic, "its value schema is not a record"))?;
        let columns: Vec<TargetColumn> = fields
            .iter()
            .filter_map(|f| {
                let field = f["name"].as_str()?;
                if matches!(field, "__op" | "__ts_ms" | "__pos") {
                    return None;
                }
                Some(TargetColumn {
                    name: f["binlake.column"].as_str().unwrap_or(field).to_string(),
                    field: field.to_string(),
                    sql: f["binlake.sql"].as_str().map(str::to_string),
                    nullable: f["type"]
                        .as_array()
                        .is_some_and(|b| b.iter().any(|t| t == "null")),
                })
            })
            .collect();
        let key_idx = key["fields"]
            .as_array()
            .ok_or_else(|| not_binlake(topic, "its key schema is not a record"))?
            .iter()
            .map(|f| {
                let name = f["name"].as_str().unwrap_or_default();
                columns
                    .iter()
                    .position(|c| c.field == name)
                    .ok_or_else(|| not_binlake(topic, &format!("key field {name} is no column")))
            })
            .collect::<Result<Vec<usize>>>()?;
        if key_idx.is_empty() {
            return Err(not_binlake(topic, "its key schema has no fields"));
        }
        let keyless = match value["binlake.key"].as_str() {
            Some("primary") => false,
            Some(_) => true,
            // Older schemas: a key of every column means the table had no primary key.
            None => key_idx.len() == columns.len() && columns.len() > 1,
        };
        Ok(TableDef {
            source,
            columns,
            key: key_idx,
            keyless,
            collation: value["binlake.collation"].as_str().map(str::to_string),
        })
    }

    /// `CREATE TABLE` of `db.table` with the source's column types and primary key.
    pub fn create_sql(&self, db: &str, table: &str) -> Result<String> {
        let mut cols = Vec::new();
        for c in &self.columns {
            let sql = c.sql.as_deref().ok_or_else(|| {
                Error::Unsupported(format!(
                    "the schema of {} does not say column `{}`'s MySQL type (it was registered \
                     by an older binlake); create the table yourself and run rebuild without \
                     --create",
                    self.source, c.name
                ))
            })?;
            let null = if c.nullable { "NULL" } else { "NOT NULL" };
            cols.push(format!("  {} {sql} {null}", ident(&c.name)));
        }
        if !self.keyless {
            let key: Vec<String> = self
                .key
                .iter()
                .map(|&i| ident(&self.columns[i].name))
                .collect();
            cols.push(format!("  PRIMARY KEY ({})", key.join(", ")));
        }
        let mut sql = format!(
            "CREATE TABLE {}.{} (\n{}\n)",
            ident(db),
            ident(table),
            cols.join(",\n")
        );
        if let Some(c) = &self.collation {
            sql.push_str(&format!(" DEFAULT COLLATE={c}"));
        }
        Ok(sql)
    }
}

/// A quoted identifier.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `'text'` for a session with NO_BACKSLASH_ESCAPES.
pub fn quote(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
}

/// Appends the SQL literal of `cell`, a value of lake column `col`.
pub fn literal(out: &mut String, cell: &Cell<'_>, col: &LakeColumn) -> Result<()> {
    use std::fmt::Write;
    let bad = || {
        Error::Unsupported(format!(
            "column {}: a value that does not fit its type",
            col.name
        ))
    };
    match (cell, col.ty, col.tag.as_deref()) {
        (Cell::Null, ..) => out.push_str("NULL"),
        (Cell::Long(v), _, Some("time")) => quote(out, &time_text(*v)),
        (Cell::Bool(b), ..) => out.push_str(if *b { "1" } else { "0" }),
        (Cell::Long(v), LakeType::Int | LakeType::Long, _) => {
            let _ = write!(out, "{v}");
        }
        (Cell::F32(v), ..) => {
            let _ = write!(out, "{v:e}");
        }
        (Cell::F64(v), ..) => {
            let _ = write!(out, "{v:e}");
        }
        (Cell::Bytes(b), LakeType::Bytes, _) => {
            out.push_str("X'");
            for x in b.iter() {
                let _ = write!(out, "{x:02X}");
            }
            out.push('\'');
        }
        (Cell::Bytes(_), LakeType::Decimal { .. } | LakeType::DecimalText { .. }, _) => {
            out.push_str(&cell.text(col.ty).ok_or_else(bad)?)
        }
        (cell, ty, _) => quote(out, &cell.text(ty).ok_or_else(bad)?),
    }
    Ok(())
}

/// MySQL TIME text of a signed number of microseconds (`-838:59:59.000000`).
fn time_text(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let a = us.unsigned_abs();
    let (secs, frac) = (a / 1_000_000, a % 1_000_000);
    format!(
        "{sign}{:02}:{:02}:{:02}.{frac:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(ty: LakeType, tag: Option<&str>) -> LakeColumn {
        LakeColumn {
            name: "c".into(),
            ty,
            tag: tag.map(str::to_string),
        }
    }

    fn lit(cell: Cell<'_>, c: &LakeColumn) -> String {
        let mut s = String::new();
        literal(&mut s, &cell, c).unwrap();
        s
    }

    #[test]
    fn literals_are_exact() {
        assert_eq!(
            lit(
                Cell::Long(-3_020_399_000_000),
                &col(LakeType::Long, Some("time"))
            ),
            "'-838:59:59.000000'"
        );
        assert_eq!(
            lit(Cell::Long(1), &col(LakeType::Long, Some("time"))),
            "'00:00:00.000001'"
        );
        assert_eq!(
            lit(Cell::Bytes(b"it's \\ ok"), &col(LakeType::String, None)),
            "'it''s \\ ok'"
        );
        assert_eq!(
            lit(
                Cell::Bytes(&[0xde, 0xad]),
                &col(LakeType::Bytes, Some("bit"))
            ),
            "X'DEAD'"
        );
        assert_eq!(lit(Cell::Bytes(&[]), &col(LakeType::Bytes, None)), "X''");
        // decimal(12,2) of -0.50: two's complement of -50.
        assert_eq!(
            lit(
                Cell::Bytes(&[0xff, 0xce]),
                &col(
                    LakeType::Decimal {
                        precision: 12,
                        scale: 2
                    },
                    None
                )
            ),
            "-0.50"
        );
        assert_eq!(
            lit(Cell::Long(0), &col(LakeType::UtcMicros, None)),
            "'1970-01-01 00:00:00.000000'"
        );
        assert_eq!(
            lit(Cell::Long(19782), &col(LakeType::Date, None)),
            "'2024-02-29'"
        );
        let f = lit(Cell::F32(0.1), &col(LakeType::Float, None));
        assert_eq!(f.parse::<f32>().unwrap(), 0.1f32);
        let d = lit(Cell::F64(-1e300), &col(LakeType::Double, None));
        assert_eq!(d.parse::<f64>().unwrap(), -1e300);
    }

    #[test]
    fn create_table_from_schemas() {
        let value = r#"{"type":"record","name":"Value","binlake.table":"app.t","binlake.key":"primary",
            "binlake.collation":"utf8mb4_general_ci","fields":[
            {"name":"id","type":"long","binlake.sql":"bigint(20)"},
            {"name":"_9_lives","binlake.column":"9 lives","type":["null","string"],"binlake.sql":"varchar(3) CHARACTER SET latin1 COLLATE latin1_swedish_ci"},
            {"name":"__op","type":"string"},{"name":"__ts_ms","type":"long"},{"name":"__pos","type":["null","string"]}]}"#;
        let key = r#"{"type":"record","name":"Key","fields":[{"name":"id","type":"long"}]}"#;
        let t = TableDef::from_schemas("binlake.app.t", key, value).unwrap();
        assert_eq!(t.key, vec![0]);
        assert!(!t.keyless);
        assert_eq!(
            t.create_sql("restore", "t").unwrap(),
            "CREATE TABLE `restore`.`t` (\n  `id` bigint(20) NOT NULL,\n  `9 lives` varchar(3) \
             CHARACTER SET latin1 COLLATE latin1_swedish_ci NULL,\n  PRIMARY KEY (`id`)\n) \
             DEFAULT COLLATE=utf8mb4_general_ci"
        );
        let err = TableDef::from_schemas("x", key, r#"{"type":"record","fields":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a binlake table topic"), "{err}");
    }
}
