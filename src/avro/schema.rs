//! Table metadata → Avro key and value schemas, and the per-field plan the encoder follows.
//!
//! The mapping (README, "Avro mapping") is lossless: integers by range (INT UNSIGNED → long,
//! BIGINT UNSIGNED → decimal(20,0)), DECIMAL → decimal bytes, DATETIME →
//! local-timestamp-micros, TIMESTAMP → timestamp-micros, TIME → long µs tagged
//! `binlake.type: time`, JSON → string tagged `binlake.type: json`. Names that are not valid
//! Avro names are rewritten (and the MySQL name kept in `binlake.column`).

use serde_json::{json, Value as Json};

use crate::schema::{Charset, KeySource, SqlType, TableSchema};

/// How one field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Long,
    /// BIGINT UNSIGNED as decimal(20,0).
    U64Decimal,
    Decimal {
        scale: u8,
    },
    Float,
    Double,
    String,
    Bytes,
    Date,
    LocalTimestampMicros,
    TimestampMicros,
    TimeMicros,
    Enum,
    Set,
    Json,
    Geometry,
    Vector,
}

/// One field of a key or value record: which column feeds it and how.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub column: usize,
    pub name: String,
    pub nullable: bool,
    pub kind: Kind,
}

/// The key and value schemas of one table version, with their encoding plans.
#[derive(Debug, Clone)]
pub struct TableSchemas {
    /// Avro schema JSON of the key record (the key columns).
    pub key: String,
    /// Avro schema JSON of the value record (every column, then the metadata fields).
    pub value: String,
    pub(crate) key_fields: Vec<Field>,
    pub(crate) value_fields: Vec<Field>,
}

impl TableSchemas {
    /// Derives the schemas of `table`. `namespace` is usually the topic name.
    pub fn derive(table: &TableSchema, namespace: &str) -> TableSchemas {
        let mut names = Vec::new();
        let fields: Vec<(Field, Json)> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let name = unique(avro_name(&c.name), &mut names);
                let (kind, ty) = avro_type(&c.ty);
                let mut f = json!({ "name": name, "type": ty });
                if c.nullable {
                    f["type"] = json!(["null", ty]);
                    f["default"] = Json::Null;
                }
                if name != c.name {
                    f["binlake.column"] = json!(c.name);
                }
                // What `binlake rebuild --create` declares the column as.
                f["binlake.sql"] = json!(c.sql_type());
                let field = Field {
                    column: i,
                    name,
                    nullable: c.nullable,
                    kind,
                };
                (field, f)
            })
            .collect();
        let ns = namespace
            .split('.')
            .map(avro_name)
            .collect::<Vec<_>>()
            .join(".");
        // The key schema is a function of the key columns' names and Avro types only: its id
        // is in every key's bytes, and Kafka compacts by those bytes, so anything that can
        // differ between two readings of one table (the declaration, known from the server
        // only while its table still matches the binlog's) would move a row to a new key
        // and leave the old one behind, undeleted.
        let key_fields: Vec<(Field, Json)> = table
            .key
            .iter()
            .map(|&i| {
                let (f, mut j) = fields[i].clone();
                if let Some(o) = j.as_object_mut() {
                    o.remove("binlake.sql");
                }
                (f, j)
            })
            .collect();
        let metadata: Json = serde_json::from_str(super::CHANGE_METADATA)
            .expect("schemas/change_metadata.avsc is valid JSON (checked by a unit test)");
        let mut value_json: Vec<Json> = fields.iter().map(|(_, j)| j.clone()).collect();
        if let Some(meta) = metadata["fields"].as_array() {
            for m in meta {
                // A column named like a metadata field was renamed above; keep both unique.
                value_json.push(m.clone());
            }
        }
        let key = json!({
            "type": "record",
            "name": "Key",
            "namespace": ns,
            "fields": key_fields.iter().map(|(_, j)| j.clone()).collect::<Vec<_>>(),
        });
        let mut value = json!({
            "type": "record",
            "name": "Value",
            "namespace": ns,
            "binlake.table": table.full_name(),
            "binlake.key": match table.key_source {
                KeySource::PrimaryKey => "primary",
                KeySource::AllColumns => "all-columns",
                KeySource::None => "none",
            },
            "fields": value_json,
        });
        if let Some(c) = &table.collation {
            value["binlake.collation"] = json!(c);
        }
        TableSchemas {
            key: key.to_string(),
            value: value.to_string(),
            key_fields: key_fields.into_iter().map(|(f, _)| f).collect(),
            value_fields: fields.into_iter().map(|(f, _)| f).collect(),
        }
    }
}

/// A valid Avro name for `s`: characters outside `[A-Za-z0-9_]` become `_`, and a leading
/// digit gets a `_` in front.
pub fn avro_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Makes `name` unique among `taken` (and distinct from the metadata fields `__*`).
fn unique(name: String, taken: &mut Vec<String>) -> String {
    let reserved = |n: &str| matches!(n, "__op" | "__ts_ms" | "__pos");
    let mut candidate = name.clone();
    let mut n = 2;
    while reserved(&candidate) || taken.contains(&candidate) {
        candidate = format!("{name}_{n}");
        n += 1;
    }
    taken.push(candidate.clone());
    candidate
}

fn decimal(precision: u8, scale: u8) -> Json {
    json!({ "type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale })
}

/// The Avro type of a SQL type.
fn avro_type(ty: &SqlType) -> (Kind, Json) {
    match ty {
        SqlType::Int { bytes, unsigned } => match (bytes, unsigned) {
            (8, true) => (Kind::U64Decimal, decimal(20, 0)),
            (8, false) | (4, true) => (Kind::Long, json!("long")),
            _ => (Kind::Int, json!("int")),
        },
        SqlType::Float => (Kind::Float, json!("float")),
        SqlType::Double => (Kind::Double, json!("double")),
        SqlType::Decimal { precision, scale } => {
            (Kind::Decimal { scale: *scale }, decimal(*precision, *scale))
        }
        SqlType::Bit { bits } => (
            Kind::Bytes,
            json!({ "type": "bytes", "binlake.type": "bit", "binlake.bits": bits }),
        ),
        SqlType::String { charset, .. } => match charset {
            Charset::Binary | Charset::Unknown(_) => (Kind::Bytes, json!("bytes")),
            _ => (Kind::String, json!("string")),
        },
        SqlType::Date => (Kind::Date, json!({ "type": "int", "logicalType": "date" })),
        SqlType::DateTime { .. } => (
            Kind::LocalTimestampMicros,
            json!({ "type": "long", "logicalType": "local-timestamp-micros" }),
        ),
        SqlType::Timestamp { .. } => (
            Kind::TimestampMicros,
            json!({ "type": "long", "logicalType": "timestamp-micros" }),
        ),
        SqlType::Time { .. } => (
            Kind::TimeMicros,
            json!({ "type": "long", "binlake.type": "time" }),
        ),
        SqlType::Year => (Kind::Int, json!({ "type": "int", "binlake.type": "year" })),
        SqlType::Enum { .. } => (Kind::Enum, json!("string")),
        SqlType::Set { .. } => (Kind::Set, json!("string")),
        SqlType::Json => (
            Kind::Json,
            json!({ "type": "string", "binlake.type": "json" }),
        ),
        SqlType::Geometry => (
            Kind::Geometry,
            json!({ "type": "bytes", "binlake.type": "geometry" }),
        ),
        SqlType::Vector { .. } => (Kind::Vector, json!({ "type": "array", "items": "float" })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Column;

    fn col(name: &str, ty: SqlType, nullable: bool) -> Column {
        Column {
            name: name.into(),
            ty,
            nullable,
            declared: None,
        }
    }

    #[test]
    fn schemas_parse_and_follow_the_mapping() {
        let t = TableSchema {
            db: "shop".into(),
            table: "orders".into(),
            columns: vec![
                col(
                    "id",
                    SqlType::Int {
                        bytes: 8,
                        unsigned: true,
                    },
                    false,
                ),
                col(
                    "9 lives",
                    SqlType::Int {
                        bytes: 4,
                        unsigned: true,
                    },
                    true,
                ),
                col("__op", SqlType::Json, true),
                col(
                    "amount",
                    SqlType::Decimal {
                        precision: 12,
                        scale: 2,
                    },
                    false,
                ),
            ],
            key: vec![0],
            key_source: KeySource::PrimaryKey,
            collation: None,
        };
        let s = TableSchemas::derive(&t, "binlake.shop.orders");
        let key = apache_avro::Schema::parse_str(&s.key).unwrap();
        let value = apache_avro::Schema::parse_str(&s.value).unwrap();
        let v: Json = serde_json::from_str(&s.value).unwrap();
        let names: Vec<&str> = v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["id", "_9_lives", "__op_2", "amount", "__op", "__ts_ms", "__pos"]
        );
        assert_eq!(v["fields"][1]["type"], json!(["null", "long"]));
        assert_eq!(v["fields"][1]["binlake.column"], json!("9 lives"));
        assert_eq!(v["fields"][0]["type"]["precision"], json!(20));
        assert_eq!(v["fields"][0]["binlake.sql"], json!("bigint unsigned"));
        assert_eq!(v["fields"][3]["binlake.sql"], json!("decimal(12,2)"));
        assert_eq!(v["binlake.key"], json!("primary"));
        assert!(key.canonical_form().contains("\"name\":\"id\""));
        assert!(value.canonical_form().contains("binlake.shop.orders.Value"));
    }

    #[test]
    fn the_key_schema_does_not_depend_on_what_the_server_declared() {
        let table = |declared: Option<&str>| TableSchema {
            db: "app".into(),
            table: "t".into(),
            columns: vec![
                Column {
                    declared: declared.map(Into::into),
                    ..col(
                        "id",
                        SqlType::Int {
                            bytes: 8,
                            unsigned: false,
                        },
                        false,
                    )
                },
                col(
                    "v",
                    SqlType::Int {
                        bytes: 4,
                        unsigned: false,
                    },
                    true,
                ),
            ],
            key: vec![0],
            key_source: KeySource::PrimaryKey,
            collation: None,
        };
        let known = TableSchemas::derive(&table(Some("bigint(20)")), "cdc.app.t");
        let unknown = TableSchemas::derive(&table(None), "cdc.app.t");
        assert_eq!(known.key, unknown.key);
        assert!(!known.key.contains("binlake.sql"), "{}", known.key);
        // The value schema still says how to re-create the column.
        assert!(known.value.contains("bigint(20)"), "{}", known.value);
    }

    #[test]
    fn bundled_schemas_parse() {
        apache_avro::Schema::parse_str(crate::avro::CHANGE_METADATA).unwrap();
        apache_avro::Schema::parse_str(crate::avro::OFFSETS).unwrap();
    }
}
