//! A table topic's registered Avro schemas → the lake's columns: the decoding plan for Kafka
//! records, the Arrow schema of Parquet files, the Avro schema of container files, and the
//! Hive columns.
//!
//! Invariant: the lake keeps every type of the Avro mapping exactly (decimal with its
//! precision and scale, DATETIME as a timestamp without time zone, TIMESTAMP as UTC
//! microseconds, BIGINT UNSIGNED as decimal(20,0)); every table column is nullable in the lake,
//! because a tombstone row carries only its key. A schema that is not one `binlake run`
//! registers (no `__op`/`__ts_ms`/`__pos`) is refused with an error naming the topic.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::{json, Value as Json};

use crate::config::SinkFormat;
use crate::error::{Error, Result};

use super::hive::HiveColumn;

/// The lake type of one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LakeType {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    Bytes,
    /// decimal(p,s) with p ≤ 38.
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// decimal(p,s) with p > 38 (MySQL allows 65): exact text, as no reader takes more.
    DecimalText {
        scale: i8,
    },
    Date,
    /// DATETIME: microseconds, no time zone.
    LocalMicros,
    /// TIMESTAMP: microseconds since the epoch, UTC.
    UtcMicros,
}

impl LakeType {
    pub fn is_time(self) -> bool {
        matches!(
            self,
            LakeType::Date | LakeType::LocalMicros | LakeType::UtcMicros
        )
    }
}

/// The Avro primitive a field is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prim {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    Bytes,
}

/// Where a decoded field of a Kafka value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Column(usize),
    Op,
    TsMs,
    Pos,
}

/// How to read one field of a record.
#[derive(Debug, Clone)]
pub struct Step {
    pub prim: Prim,
    /// For a union with null: the branch index of null (the other branch is the value).
    pub null_branch: Option<i64>,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LakeColumn {
    /// The Avro field name (a valid identifier), also the column name in the lake.
    pub name: String,
    pub ty: LakeType,
    /// `binlake.type` of the field (time, json, bit, year, geometry), kept in the schemas.
    pub tag: Option<String>,
}

/// One version of a table's lake layout.
#[derive(Debug)]
pub struct LakeSchema {
    /// `db.table`.
    pub table: String,
    pub columns: Vec<LakeColumn>,
    /// Decoding plan of the value record.
    pub value_steps: Vec<Step>,
    /// Decoding plan of the key record (targets are columns of `columns`).
    pub key_steps: Vec<Step>,
    /// Columns + the metadata columns, as written to Parquet.
    pub arrow: SchemaRef,
    /// The Avro schema of container files.
    pub avro: String,
}

/// Metadata columns after the table's columns, in this order.
pub const META: [(&str, &str); 6] = [
    ("__op", "string"),
    ("__deleted", "boolean"),
    ("__pos", "string"),
    ("__ts_ms", "bigint"),
    ("__kafka_partition", "int"),
    ("__kafka_offset", "bigint"),
];

fn not_binlake(topic: &str, why: impl std::fmt::Display) -> Error {
    Error::Unsupported(format!(
        "topic {topic} is not a binlake table topic ({why}); list only binlake's topics in \
         [sink] topics"
    ))
}

/// (primitive, lake type, tag) of one Avro field type (without the null union).
fn field_type(t: &Json) -> Option<(Prim, LakeType, Option<String>)> {
    let (name, obj) = match t {
        Json::String(s) => (s.as_str(), None),
        Json::Object(o) => (o.get("type")?.as_str()?, Some(o)),
        _ => return None,
    };
    let prim = match name {
        "boolean" => Prim::Boolean,
        "int" => Prim::Int,
        "long" => Prim::Long,
        "float" => Prim::Float,
        "double" => Prim::Double,
        "string" => Prim::String,
        "bytes" => Prim::Bytes,
        _ => return None,
    };
    let logical = obj
        .and_then(|o| o.get("logicalType"))
        .and_then(|l| l.as_str());
    let tag = obj
        .and_then(|o| o.get("binlake.type"))
        .and_then(|l| l.as_str())
        .map(str::to_string);
    let ty = match (prim, logical) {
        (Prim::Bytes, Some("decimal")) => {
            let o = obj?;
            let precision = o.get("precision")?.as_u64()?;
            let scale = o.get("scale").and_then(|s| s.as_u64()).unwrap_or(0);
            if precision == 0 || scale > precision || precision > 76 {
                return None;
            }
            if precision <= 38 {
                LakeType::Decimal {
                    precision: precision as u8,
                    scale: scale as i8,
                }
            } else {
                LakeType::DecimalText { scale: scale as i8 }
            }
        }
        (Prim::Int, Some("date")) => LakeType::Date,
        (Prim::Long, Some("local-timestamp-micros")) => LakeType::LocalMicros,
        (Prim::Long, Some("timestamp-micros")) => LakeType::UtcMicros,
        (Prim::Boolean, _) => LakeType::Boolean,
        (Prim::Int, _) => LakeType::Int,
        (Prim::Long, _) => LakeType::Long,
        (Prim::Float, _) => LakeType::Float,
        (Prim::Double, _) => LakeType::Double,
        (Prim::String, _) => LakeType::String,
        (Prim::Bytes, _) => LakeType::Bytes,
    };
    Some((prim, ty, tag))
}

/// Splits `["null", T]` (either order) into (null branch, T).
fn unwrap_null(t: &Json) -> (Option<i64>, &Json) {
    if let Json::Array(branches) = t {
        if branches.len() == 2 {
            if branches[0] == "null" {
                return (Some(0), &branches[1]);
            }
            if branches[1] == "null" {
                return (Some(1), &branches[0]);
            }
        }
    }
    (None, t)
}

impl LakeSchema {
    /// The lake layout of a table topic from its key and value schemas (registry JSON).
    pub fn derive(topic: &str, key: &str, value: &str) -> Result<LakeSchema> {
        let value: Json = serde_json::from_str(value)
            .map_err(|e| not_binlake(topic, format!("value schema: {e}")))?;
        let key: Json = serde_json::from_str(key)
            .map_err(|e| not_binlake(topic, format!("key schema: {e}")))?;
        let table = value
            .get("binlake.table")
            .and_then(|t| t.as_str())
            .ok_or_else(|| not_binlake(topic, "its value schema has no binlake.table"))?
            .to_string();
        let fields = value
            .get("fields")
            .and_then(|f| f.as_array())
            .ok_or_else(|| not_binlake(topic, "its value schema is not a record"))?;
        let mut columns = Vec::new();
        let mut value_steps = Vec::new();
        let mut seen_meta = Vec::new();
        for f in fields {
            let name = f.get("name").and_then(|n| n.as_str()).unwrap_or_default();
            let (null_branch, t) = unwrap_null(f.get("type").unwrap_or(&Json::Null));
            let (prim, ty, tag) = field_type(t).ok_or_else(|| {
                not_binlake(
                    topic,
                    format!("field {name} has an Avro type binlake does not write"),
                )
            })?;
            let target = match (name, prim) {
                ("__op", Prim::String) => Target::Op,
                ("__ts_ms", Prim::Long) => Target::TsMs,
                ("__pos", Prim::String) => Target::Pos,
                _ => {
                    columns.push(LakeColumn {
                        name: name.to_string(),
                        ty,
                        tag,
                    });
                    Target::Column(columns.len() - 1)
                }
            };
            if !matches!(target, Target::Column(_)) {
                seen_meta.push(name.to_string());
            }
            value_steps.push(Step {
                prim,
                null_branch,
                target,
            });
        }
        if seen_meta.len() != 3 {
            return Err(not_binlake(
                topic,
                "its value schema lacks __op, __ts_ms or __pos",
            ));
        }
        let mut key_steps = Vec::new();
        for f in key
            .get("fields")
            .and_then(|f| f.as_array())
            .into_iter()
            .flatten()
        {
            let name = f.get("name").and_then(|n| n.as_str()).unwrap_or_default();
            let (null_branch, t) = unwrap_null(f.get("type").unwrap_or(&Json::Null));
            let (prim, ..) = field_type(t).ok_or_else(|| {
                not_binlake(topic, format!("key field {name} has an unknown type"))
            })?;
            let col = columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| not_binlake(topic, format!("key field {name} is not a column")))?;
            key_steps.push(Step {
                prim,
                null_branch,
                target: Target::Column(col),
            });
        }
        if key_steps.is_empty() {
            return Err(not_binlake(topic, "its key schema has no fields"));
        }
        let arrow = Arc::new(arrow_schema(&columns));
        let avro = avro_schema(&table, &columns).to_string();
        Ok(LakeSchema {
            table,
            columns,
            value_steps,
            key_steps,
            arrow,
            avro,
        })
    }

    /// The Hive columns of this layout (metadata columns included). Avro tables declare the
    /// microsecond timestamps `bigint`: Hive's Avro SerDe reads only millisecond ones.
    pub fn hive_columns(&self, format: SinkFormat) -> Vec<HiveColumn> {
        let mut out: Vec<HiveColumn> = self
            .columns
            .iter()
            .map(|c| HiveColumn {
                name: c.name.to_ascii_lowercase(),
                ty: hive_type(c.ty, format).to_string(),
                comment: c.tag.clone().unwrap_or_default(),
            })
            .collect();
        for (name, ty) in META {
            out.push(HiveColumn {
                name: name.into(),
                ty: ty.into(),
                comment: String::new(),
            });
        }
        out
    }
}

/// The Hive type of a lake type.
pub fn hive_type(t: LakeType, format: SinkFormat) -> String {
    match t {
        LakeType::Boolean => "boolean".into(),
        LakeType::Int => "int".into(),
        LakeType::Long => "bigint".into(),
        LakeType::Float => "float".into(),
        LakeType::Double => "double".into(),
        LakeType::String | LakeType::DecimalText { .. } => "string".into(),
        LakeType::Bytes => "binary".into(),
        LakeType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
        LakeType::Date => "date".into(),
        LakeType::LocalMicros | LakeType::UtcMicros => match format {
            SinkFormat::Parquet => "timestamp".into(),
            SinkFormat::Avro => "bigint".into(),
        },
    }
}

fn arrow_type(t: LakeType) -> DataType {
    match t {
        LakeType::Boolean => DataType::Boolean,
        LakeType::Int => DataType::Int32,
        LakeType::Long => DataType::Int64,
        LakeType::Float => DataType::Float32,
        LakeType::Double => DataType::Float64,
        LakeType::String | LakeType::DecimalText { .. } => DataType::Utf8,
        LakeType::Bytes => DataType::Binary,
        LakeType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        LakeType::Date => DataType::Date32,
        LakeType::LocalMicros => DataType::Timestamp(TimeUnit::Microsecond, None),
        LakeType::UtcMicros => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

fn arrow_schema(columns: &[LakeColumn]) -> Schema {
    let mut fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new(&c.name, arrow_type(c.ty), true))
        .collect();
    fields.extend([
        Field::new("__op", DataType::Utf8, false),
        Field::new("__deleted", DataType::Boolean, false),
        Field::new("__pos", DataType::Utf8, true),
        Field::new("__ts_ms", DataType::Int64, false),
        Field::new("__kafka_partition", DataType::Int32, false),
        Field::new("__kafka_offset", DataType::Int64, false),
    ]);
    Schema::new(fields)
}

fn avro_column_type(c: &LakeColumn) -> Json {
    let mut t = match c.ty {
        LakeType::Boolean => json!("boolean"),
        LakeType::Int => json!("int"),
        LakeType::Long => json!("long"),
        LakeType::Float => json!("float"),
        LakeType::Double => json!("double"),
        LakeType::String | LakeType::DecimalText { .. } => json!("string"),
        LakeType::Bytes => json!("bytes"),
        LakeType::Decimal { precision, scale } => {
            json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
        }
        LakeType::Date => json!({"type": "int", "logicalType": "date"}),
        LakeType::LocalMicros => json!({"type": "long", "logicalType": "local-timestamp-micros"}),
        LakeType::UtcMicros => json!({"type": "long", "logicalType": "timestamp-micros"}),
    };
    if let Some(tag) = &c.tag {
        t = match t {
            Json::String(s) => json!({"type": s, "binlake.type": tag}),
            Json::Object(mut o) => {
                o.insert("binlake.type".into(), json!(tag));
                Json::Object(o)
            }
            other => other,
        };
    }
    t
}

/// The lake's Avro schema: every column nullable with default null (so files of older
/// versions read under newer ones), then the metadata fields.
fn avro_schema(table: &str, columns: &[LakeColumn]) -> Json {
    let mut fields: Vec<Json> = columns
        .iter()
        .map(|c| json!({"name": c.name, "type": ["null", avro_column_type(c)], "default": null}))
        .collect();
    fields.extend([
        json!({"name": "__op", "type": "string"}),
        json!({"name": "__deleted", "type": "boolean"}),
        json!({"name": "__pos", "type": ["null", "string"], "default": null}),
        json!({"name": "__ts_ms", "type": "long"}),
        json!({"name": "__kafka_partition", "type": "int"}),
        json!({"name": "__kafka_offset", "type": "long"}),
    ]);
    let name = crate::avro::avro_name(table);
    json!({"type": "record", "name": name, "namespace": "binlake.lake", "binlake.table": table, "fields": fields})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binlake_schemas_become_lake_columns() {
        let key = r#"{"type":"record","name":"Key","fields":[{"name":"id","type":"long"}]}"#;
        let value = r#"{"type":"record","name":"Value","binlake.table":"app.t","fields":[
            {"name":"id","type":"long"},
            {"name":"amount","type":["null",{"type":"bytes","logicalType":"decimal","precision":20,"scale":0}],"default":null},
            {"name":"big","type":{"type":"bytes","logicalType":"decimal","precision":65,"scale":30}},
            {"name":"at","type":{"type":"long","logicalType":"local-timestamp-micros"}},
            {"name":"t","type":{"type":"long","binlake.type":"time"}},
            {"name":"__op","type":"string"},{"name":"__ts_ms","type":"long"},{"name":"__pos","type":"string"}]}"#;
        let s = LakeSchema::derive("cdc.app.t", key, value).expect("derive");
        assert_eq!(s.table, "app.t");
        assert_eq!(s.columns.len(), 5);
        assert_eq!(
            s.columns[1].ty,
            LakeType::Decimal {
                precision: 20,
                scale: 0
            }
        );
        assert_eq!(s.columns[2].ty, LakeType::DecimalText { scale: 30 });
        assert_eq!(s.value_steps[1].null_branch, Some(0));
        assert_eq!(s.value_steps[5].target, Target::Op);
        assert_eq!(s.key_steps[0].target, Target::Column(0));
        assert_eq!(s.arrow.fields().len(), 5 + META.len());
        assert_eq!(s.columns[4].tag.as_deref(), Some("time"));
        let hive = s.hive_columns(SinkFormat::Avro);
        assert_eq!(hive[3].ty, "bigint");
        assert_eq!(s.hive_columns(SinkFormat::Parquet)[3].ty, "timestamp");
        apache_avro::Schema::parse_str(&s.avro).expect("the lake's Avro schema parses");
    }

    #[test]
    fn foreign_schemas_are_refused_by_name() {
        let key = r#"{"type":"record","name":"K","fields":[{"name":"id","type":"long"}]}"#;
        let value = r#"{"type":"record","name":"V","fields":[{"name":"id","type":"long"}]}"#;
        let e = LakeSchema::derive("orders", key, value).expect_err("not binlake");
        assert!(
            e.to_string()
                .contains("topic orders is not a binlake table topic"),
            "{e}"
        );
    }
}
