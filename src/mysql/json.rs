//! MySQL's binary JSON (JSONB) and JSON partial-update diffs, rendered as JSON text.
//!
//! Parsing is mysql_common's; this module owns the rendering rules: the document becomes the
//! JSON value itself, with MySQL's opaque scalars (DATE, TIME, DATETIME, DECIMAL) as strings.

use mysql_common::binlog::jsonb;
use mysql_common::binlog::jsondiff::{JsonDiff, JsonDiffOperation};
use mysql_common::constants::ColumnType;
use mysql_common::io::ParseBuf;

use crate::mysql::types::DecodeError;

fn invalid(detail: impl ToString) -> DecodeError {
    DecodeError::Invalid {
        what: "JSON",
        detail: detail.to_string(),
    }
}

/// How deep MySQL nests JSON documents at most (its JSON_DOCUMENT_MAX_DEPTH).
const MAX_DEPTH: usize = 100;

/// Checks what mysql_common's `parse` trusts: nesting within MySQL's limit (its parser
/// recurses), and DECIMAL scalars whose scale and precision a column could have (a scale
/// above the precision overflows its size computation: found by fuzz).
fn check(v: &jsonb::Value<'_>, depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(invalid(format!(
            "document nested deeper than MySQL allows ({MAX_DEPTH})"
        )));
    }
    match v {
        jsonb::Value::SmallArray(c) => {
            for e in c.iter() {
                check(&e.map_err(invalid)?, depth + 1)?;
            }
        }
        jsonb::Value::LargeArray(c) => {
            for e in c.iter() {
                check(&e.map_err(invalid)?, depth + 1)?;
            }
        }
        jsonb::Value::SmallObject(c) => {
            for e in c.iter() {
                check(&e.map_err(invalid)?.1, depth + 1)?;
            }
        }
        jsonb::Value::LargeObject(c) => {
            for e in c.iter() {
                check(&e.map_err(invalid)?.1, depth + 1)?;
            }
        }
        jsonb::Value::Opaque(o) if o.value_type() == ColumnType::MYSQL_TYPE_NEWDECIMAL => {
            match o.data_raw() {
                [precision, scale, ..] if scale <= precision && *precision <= 65 => {}
                [precision, scale, ..] => {
                    return Err(invalid(format!(
                        "a DECIMAL scalar with precision {precision} and scale {scale} (at \
                         most 65, and the scale at most the precision)"
                    )))
                }
                _ => return Err(invalid("a DECIMAL scalar without precision and scale")),
            }
        }
        _ => {}
    }
    Ok(())
}

fn to_json(v: jsonb::Value<'_>) -> Result<serde_json::Value, DecodeError> {
    check(&v, 0)?;
    let dom = v.parse().map_err(invalid)?;
    Ok(serde_json::Value::from(dom))
}

/// A binary JSON document as JSON text. An empty value is JSON `null`, as MySQL reads it.
pub fn binary_to_text(bytes: &[u8]) -> Result<String, DecodeError> {
    if bytes.is_empty() {
        return Ok("null".into());
    }
    let v: jsonb::Value<'_> = ParseBuf(bytes).parse(()).map_err(invalid)?;
    Ok(to_json(v)?.to_string())
}

/// A PARTIAL_UPDATE_ROWS JSON value (a sequence of diffs) as a JSON array text:
/// `[{"op":"replace","path":"$.a","value":1}, ...]`.
pub fn diffs_to_text(bytes: &[u8]) -> Result<String, DecodeError> {
    let mut buf = ParseBuf(bytes);
    let mut out = Vec::new();
    while !buf.is_empty() {
        let d: JsonDiff<'_> = buf.parse(()).map_err(invalid)?;
        let op = match d.operation() {
            JsonDiffOperation::REPLACE => "replace",
            JsonDiffOperation::INSERT => "insert",
            JsonDiffOperation::REMOVE => "remove",
        };
        let mut obj = serde_json::Map::new();
        obj.insert("op".into(), op.into());
        obj.insert("path".into(), d.path_str().into_owned().into());
        if let Some(v) = d.value() {
            obj.insert("value".into(), to_json(v.clone())?);
        }
        out.push(serde_json::Value::Object(obj));
    }
    Ok(serde_json::Value::Array(out).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JSONB small array holding `inner` (another small array's body) as its one element,
    /// or nothing; returns the array's body (without its type byte).
    fn array(inner: Option<Vec<u8>>) -> Vec<u8> {
        let Some(inner) = inner else {
            return vec![0, 0, 4, 0]; // no elements, 4 bytes
        };
        let size = (7 + inner.len()) as u16;
        let mut b = vec![1, 0];
        b.extend_from_slice(&size.to_le_bytes());
        b.extend_from_slice(&[0x02, 7, 0]); // a small array at offset 7
        b.extend(inner);
        b
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut body = array(None);
        for _ in 0..depth {
            body = array(Some(body));
        }
        let mut doc = vec![0x02];
        doc.extend(body);
        doc
    }

    #[test]
    fn nesting_is_limited_to_mysqls_depth() {
        let ok = binary_to_text(&nested(MAX_DEPTH)).unwrap();
        assert!(ok.starts_with("[[[") && ok.ends_with("]]]"), "{ok}");
        let e = binary_to_text(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(
            e.to_string().contains("nested deeper than MySQL allows"),
            "{e}"
        );
    }
}
