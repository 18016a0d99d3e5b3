//! Confluent's record format of the `_schemas` topic: JSON keys and values, byte-for-byte in
//! the field order Confluent writes them, so Confluent's or Karapace's registry can take over
//! the same topic (and compaction treats our keys and theirs as the same keys).
//!
//! Invariant: what [`schema_key`]/[`config_key`] write, [`parse_key`] reads back to the same
//! [`Key`]; reading is lenient (unknown fields are ignored, unknown key types are reported as
//! [`Key::Other`]) so records written by other registries never stop a reader.

use serde::{Deserialize, Serialize};

/// A parsed record key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `{"keytype":"SCHEMA","subject":S,"version":V,"magic":1}`
    Schema { subject: String, version: u32 },
    /// `{"keytype":"CONFIG","subject":S or null,"magic":0}`; `None` is the global config.
    Config { subject: Option<String> },
    /// `{"keytype":"DELETE_SUBJECT","subject":S,"magic":0}` (older Confluent soft deletes).
    DeleteSubject { subject: String },
    /// `{"keytype":"NOOP",...}`: written by Confluent to find the end of the log; ignored.
    Noop,
    /// Any other key type (MODE, CLEAR_SUBJECT, ...): ignored.
    Other(String),
}

#[derive(Deserialize)]
struct RawKey {
    keytype: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    version: Option<u32>,
}

/// Parses a key; the error says what is wrong with it.
pub fn parse_key(bytes: &[u8]) -> Result<Key, String> {
    let raw: RawKey = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(match raw.keytype.as_str() {
        "SCHEMA" => Key::Schema {
            subject: raw.subject.ok_or("SCHEMA key without subject")?,
            version: raw.version.ok_or("SCHEMA key without version")?,
        },
        "CONFIG" => Key::Config {
            subject: raw.subject,
        },
        "DELETE_SUBJECT" => Key::DeleteSubject {
            subject: raw.subject.ok_or("DELETE_SUBJECT key without subject")?,
        },
        "NOOP" => Key::Noop,
        other => Key::Other(other.to_string()),
    })
}

#[derive(Serialize)]
struct SchemaKeyOut<'a> {
    keytype: &'a str,
    subject: &'a str,
    version: u32,
    magic: u32,
}

#[derive(Serialize)]
struct ConfigKeyOut<'a> {
    keytype: &'a str,
    subject: Option<&'a str>,
    magic: u32,
}

/// The key of a schema record.
pub fn schema_key(subject: &str, version: u32) -> Vec<u8> {
    serde_json::to_vec(&SchemaKeyOut {
        keytype: "SCHEMA",
        subject,
        version,
        magic: 1,
    })
    .unwrap_or_default()
}

/// The key of a config record (`None`: the global config).
pub fn config_key(subject: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(&ConfigKeyOut {
        keytype: "CONFIG",
        subject,
        magic: 0,
    })
    .unwrap_or_default()
}

/// The value of a schema record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaValue {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
    #[serde(default)]
    pub deleted: bool,
    /// Absent for Avro (Confluent omits it then); read so other types are kept apart.
    #[serde(
        default,
        rename = "schemaType",
        skip_serializing_if = "Option::is_none"
    )]
    pub schema_type: Option<String>,
}

impl SchemaValue {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The value of a config record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigValue {
    #[serde(rename = "compatibilityLevel", default)]
    pub compatibility_level: Option<String>,
}

/// The value of a DELETE_SUBJECT record: versions up to `version` are deleted.
#[derive(Debug, Clone, Deserialize)]
pub struct DeleteSubjectValue {
    pub version: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_confluents_bytes_and_read_back() {
        let k = schema_key("orders-value", 3);
        assert_eq!(
            std::str::from_utf8(&k).unwrap(),
            r#"{"keytype":"SCHEMA","subject":"orders-value","version":3,"magic":1}"#
        );
        assert_eq!(
            parse_key(&k).unwrap(),
            Key::Schema {
                subject: "orders-value".into(),
                version: 3
            }
        );
        let g = config_key(None);
        assert_eq!(
            std::str::from_utf8(&g).unwrap(),
            r#"{"keytype":"CONFIG","subject":null,"magic":0}"#
        );
        assert_eq!(parse_key(&g).unwrap(), Key::Config { subject: None });
        assert_eq!(
            parse_key(br#"{"keytype":"NOOP","magic":0}"#).unwrap(),
            Key::Noop
        );
        assert_eq!(
            parse_key(br#"{"keytype":"MODE","subject":null,"magic":0}"#).unwrap(),
            Key::Other("MODE".into())
        );
        assert!(parse_key(br#"{"keytype":"SCHEMA","magic":1}"#).is_err());
        assert!(parse_key(b"garbage").is_err());
    }

    #[test]
    fn schema_value_is_confluents_shape() {
        let v = SchemaValue {
            subject: "s".into(),
            version: 1,
            id: 7,
            schema: "\"string\"".into(),
            deleted: false,
            schema_type: None,
        };
        assert_eq!(
            String::from_utf8(v.to_bytes()).unwrap(),
            r#"{"subject":"s","version":1,"id":7,"schema":"\"string\"","deleted":false}"#
        );
        // Confluent's extra fields are ignored.
        let read: SchemaValue = serde_json::from_str(
            r#"{"subject":"s","version":1,"id":7,"schema":"\"string\"","deleted":true,"references":[],"md5":"x"}"#,
        )
        .unwrap();
        assert!(read.deleted);
    }
}
