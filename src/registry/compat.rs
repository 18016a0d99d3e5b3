//! What an Avro schema means to the registry: parsing, identity ("is this the same schema?")
//! and compatibility between versions under a [`Level`].
//!
//! Invariant: two schema texts have the same [`Parsed::identity`] exactly when they parse to
//! the same Avro schema including defaults, logical types, docs and aliases; whitespace and
//! JSON key order do not matter. (The Parsing Canonical Form alone is not used for identity:
//! it strips `default` and `logicalType`, so adding a default to a field would silently return
//! the old schema's id.) Compatibility is decided only by apache-avro's
//! `SchemaCompatibility::can_read`, on the schemas with their `decimal` logical types reduced
//! to the underlying `bytes`/`fixed` (apache-avro 0.21's checker rejects every decimal, even
//! against itself), plus a check of our own that a decimal field keeps its scale.

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use serde::{Deserialize, Serialize};

/// A schema text that parsed as Avro.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub schema: Schema,
    /// The full normalized JSON form: equal for equal schemas, see the module invariant.
    pub identity: String,
}

/// Parses an Avro schema text; the error is the parser's message.
///
/// The identity is apache-avro's printed form, read back until it prints itself: the printed
/// form is not always a fixed point (a decimal `fixed` without a `scale` prints `logicalType`
/// and `scale` twice, and reading that back keeps one of each), and without this one schema
/// could have two identities, so two ids.
pub fn parse(text: &str) -> Result<Parsed, String> {
    const ROUNDS: usize = 4;
    let (mut schema, mut identity) = normalize(text)?;
    for _ in 0..ROUNDS {
        let (again_schema, again) = normalize(&identity)?;
        if again == identity {
            return Ok(Parsed { schema, identity });
        }
        (schema, identity) = (again_schema, again);
    }
    Err(format!(
        "the schema's normalized form still changes after {ROUNDS} readings; simplify its \
         properties"
    ))
}

/// One reading: the text's schema and apache-avro's printed form of it.
fn normalize(text: &str) -> Result<(Schema, String), String> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    check_names(&json)?;
    let schema = Schema::parse(&json).map_err(|e| e.to_string())?;
    let identity = serde_json::to_string(&schema).map_err(|e| e.to_string())?;
    // Not `schema.canonical_form()`: apache-avro 0.21 panics computing it for a schema with a
    // property named like a schema keyword where it means nothing (`"items": 2` on a fixed),
    // and nothing in the registry needs it.
    Ok((schema, identity))
}

/// Checks the names and aliases of the named types (record, enum, fixed) in a schema's JSON,
/// which apache-avro 0.21 unwraps and panics on when they are not Avro names (`Name::parse`,
/// `fix_aliases_namespace`): the registry answers 422 for them instead, and a `_schemas`
/// record holding one is stored unparsed rather than stopping the reader.
fn check_names(schema: &serde_json::Value) -> Result<(), String> {
    use apache_avro::schema::{Alias, Name};
    use serde_json::Value;
    match schema {
        Value::Array(union) => union.iter().try_for_each(check_names),
        Value::Object(m) => {
            let named = matches!(
                m.get("type").and_then(Value::as_str),
                Some("record" | "error" | "enum" | "fixed")
            );
            if named {
                if let Some(name) = m.get("name").and_then(Value::as_str) {
                    Name::new(name).map_err(|e| e.to_string())?;
                }
                if let Some(aliases) = m.get("aliases").and_then(Value::as_array) {
                    for a in aliases.iter().filter_map(Value::as_str) {
                        Alias::new(a).map_err(|e| format!("alias: {e}"))?;
                    }
                }
            }
            if let Some(t @ (Value::Object(_) | Value::Array(_))) = m.get("type") {
                check_names(t)?;
            }
            for key in ["items", "values"] {
                if let Some(v) = m.get(key) {
                    check_names(v)?;
                }
            }
            if let Some(fields) = m.get("fields").and_then(Value::as_array) {
                for f in fields {
                    if let Some(t) = f.get("type") {
                        check_names(t)?;
                    }
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The identity of a schema read from the log, whatever it is: the Avro identity when it
/// parses, otherwise the raw text tagged with its type (so that every reader agrees).
pub fn identity_of(schema_type: Option<&str>, text: &str) -> String {
    match schema_type {
        None | Some("AVRO") => match parse(text) {
            Ok(p) => p.identity,
            Err(_) => format!("unparsed:{text}"),
        },
        Some(t) => format!("{t}:{text}"),
    }
}

/// A compatibility level, spelled as Confluent spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

impl Level {
    /// Parses a level name case-insensitively (`full`, `FULL_TRANSITIVE`).
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_uppercase().as_str() {
            "BACKWARD" => Level::Backward,
            "BACKWARD_TRANSITIVE" => Level::BackwardTransitive,
            "FORWARD" => Level::Forward,
            "FORWARD_TRANSITIVE" => Level::ForwardTransitive,
            "FULL" => Level::Full,
            "FULL_TRANSITIVE" => Level::FullTransitive,
            "NONE" => Level::None,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
            Level::None => "NONE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive
        )
    }
}

/// An existing version to check against: its number and schema (None: not Avro, or not
/// parseable, which is reported as an incompatibility).
pub struct Existing<'a> {
    pub version: u32,
    pub schema: Option<&'a Schema>,
}

/// Checks `new` against the existing versions (oldest first) under `level`: the latest only,
/// or all of them for a transitive level. Returns the problems; empty means compatible.
pub fn check(level: Level, new: &Schema, existing: &[Existing<'_>]) -> Vec<String> {
    if level == Level::None {
        return Vec::new();
    }
    let against: &[Existing<'_>] = if level.transitive() {
        existing
    } else {
        match existing.last() {
            Some(_) => &existing[existing.len() - 1..],
            None => &[],
        }
    };
    let mut problems = Vec::new();
    let new_plain = without_decimals(new);
    for old in against.iter().rev() {
        let Some(old_schema) = old.schema else {
            problems.push(format!(
                "version {} is not an Avro schema binlake can parse",
                old.version
            ));
            continue;
        };
        problems.extend(decimal_scale_changes(old_schema, new, old.version));
        let old_plain = without_decimals(old_schema);
        let (old_schema, new) = (&old_plain, &new_plain);
        if level.backward() {
            if let Err(e) = SchemaCompatibility::can_read(old_schema, new) {
                problems.push(format!(
                    "the new schema cannot read data written with version {}: {}",
                    old.version,
                    chain(&e)
                ));
            }
        }
        if level.forward() {
            if let Err(e) = SchemaCompatibility::can_read(new, old_schema) {
                problems.push(format!(
                    "version {} cannot read data written with the new schema: {}",
                    old.version,
                    chain(&e)
                ));
            }
        }
    }
    problems
}

/// `schema` with every `decimal` logical type replaced by its underlying type, for
/// apache-avro's checker, which does not know decimals (Avro resolution ignores logical types).
fn without_decimals(schema: &Schema) -> Schema {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("logicalType").and_then(|l| l.as_str()) == Some("decimal") {
                    m.remove("logicalType");
                    m.remove("precision");
                    m.remove("scale");
                }
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let Ok(mut json) = serde_json::to_value(schema) else {
        return schema.clone();
    };
    strip(&mut json);
    Schema::parse(&json).unwrap_or_else(|_| schema.clone())
}

/// Decimal fields (of a record, also inside a nullable union) whose scale differs between
/// `old` and `new`: the same bytes would mean another number.
fn decimal_scale_changes(old: &Schema, new: &Schema, version: u32) -> Vec<String> {
    fn scales(s: &Schema) -> std::collections::HashMap<String, usize> {
        let mut out = std::collections::HashMap::new();
        if let Schema::Record(r) = s {
            for f in &r.fields {
                let inner = match &f.schema {
                    Schema::Union(u) => u.variants().iter().find(|v| !matches!(v, Schema::Null)),
                    other => Some(other),
                };
                if let Some(Schema::Decimal(d)) = inner {
                    out.insert(f.name.clone(), d.scale);
                }
            }
        }
        out
    }
    let (a, b) = (scales(old), scales(new));
    let mut problems: Vec<String> = a
        .iter()
        .filter_map(|(name, s)| {
            b.get(name).filter(|t| *t != s).map(|t| {
                format!(
                    "field {name}: decimal scale {s} in version {version}, {t} in the new schema"
                )
            })
        })
        .collect();
    problems.sort();
    problems
}

/// An error and its sources, joined: "Field 'x' ...: Incompatible schema types! ...".
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"User","namespace":"shop","fields":[
        {"name":"id","type":"long"},{"name":"name","type":"string"}]}"#;

    fn p(s: &str) -> Schema {
        parse(s).unwrap().schema
    }

    fn problems(level: Level, new: &str, old: &[&str]) -> Vec<String> {
        let olds: Vec<Schema> = old.iter().map(|s| p(s)).collect();
        let existing: Vec<Existing<'_>> = olds
            .iter()
            .enumerate()
            .map(|(i, s)| Existing {
                version: i as u32 + 1,
                schema: Some(s),
            })
            .collect();
        check(level, &p(new), &existing)
    }

    #[test]
    fn identity_ignores_layout_but_not_defaults() {
        let a = parse(V1).unwrap();
        let b = parse(
            r#"{"namespace":"shop", "name":"User","type":"record","fields":[{"type":"long","name":"id"},
            {"type":"string","name":"name"}]}"#,
        )
        .unwrap();
        assert_eq!(a.identity, b.identity);
        let with_default = parse(
            r#"{"type":"record","name":"User","namespace":"shop","fields":[
            {"name":"id","type":"long"},{"name":"name","type":"string","default":"x"}]}"#,
        )
        .unwrap();
        // Same Parsing Canonical Form, but a different schema for the registry.
        assert_eq!(
            a.schema.canonical_form(),
            with_default.schema.canonical_form()
        );
        assert_ne!(a.identity, with_default.identity);
    }

    #[test]
    fn invalid_avro_is_reported() {
        let e = parse(r#"{"type":"record","name":"X","fields":[{"name":"a","type":"nope"}]}"#)
            .unwrap_err();
        assert!(!e.is_empty());
        assert!(parse("not json").is_err());
    }

    #[test]
    fn adding_a_nullable_field_with_default_passes_backward() {
        let v2 = r#"{"type":"record","name":"User","namespace":"shop","fields":[
            {"name":"id","type":"long"},{"name":"name","type":"string"},
            {"name":"email","type":["null","string"],"default":null}]}"#;
        assert_eq!(problems(Level::Backward, v2, &[V1]), Vec::<String>::new());
        assert_eq!(problems(Level::Full, v2, &[V1]), Vec::<String>::new());
    }

    #[test]
    fn adding_a_field_without_default_fails_backward_but_passes_forward() {
        let v2 = r#"{"type":"record","name":"User","namespace":"shop","fields":[
            {"name":"id","type":"long"},{"name":"name","type":"string"},
            {"name":"email","type":"string"}]}"#;
        let p = problems(Level::Backward, v2, &[V1]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("email"), "{p:?}");
        assert!(problems(Level::Forward, v2, &[V1]).is_empty());
    }

    #[test]
    fn removing_a_field_without_default_passes_backward_fails_forward() {
        let v2 = r#"{"type":"record","name":"User","namespace":"shop","fields":[
            {"name":"id","type":"long"}]}"#;
        assert!(problems(Level::Backward, v2, &[V1]).is_empty());
        let p = problems(Level::Forward, v2, &[V1]);
        assert!(p.len() == 1 && p[0].contains("name"), "{p:?}");
        assert_eq!(problems(Level::Full, v2, &[V1]).len(), 1);
    }

    #[test]
    fn changing_int_to_string_fails_backward_and_none_always_passes() {
        let a = r#"{"type":"record","name":"R","fields":[{"name":"n","type":"int"}]}"#;
        let b = r#"{"type":"record","name":"R","fields":[{"name":"n","type":"string"}]}"#;
        let p = problems(Level::Backward, b, &[a]);
        assert!(p.len() == 1 && p[0].contains("'n'"), "{p:?}");
        assert!(problems(Level::None, b, &[a]).is_empty());
        // int -> long is a promotion: backward-compatible, not forward.
        let l = r#"{"type":"record","name":"R","fields":[{"name":"n","type":"long"}]}"#;
        assert!(problems(Level::Backward, l, &[a]).is_empty());
        assert_eq!(problems(Level::Forward, l, &[a]).len(), 1);
    }

    #[test]
    fn transitive_levels_check_every_version() {
        // v1 has `a` without default, v2 dropped it; v3 adds `b` with a default.
        let v1 = r#"{"type":"record","name":"R","fields":[{"name":"k","type":"int"},{"name":"a","type":"int"}]}"#;
        let v2 = r#"{"type":"record","name":"R","fields":[{"name":"k","type":"int"}]}"#;
        let v3 = r#"{"type":"record","name":"R","fields":[{"name":"k","type":"int"},{"name":"a","type":"string","default":"x"}]}"#;
        // Against the latest (v2) only: reading v2 data, `a` has a default: fine.
        assert!(problems(Level::Backward, v3, &[v1, v2]).is_empty());
        // Against v1 too: v1 wrote `a` as int, v3 reads it as string: not fine.
        let p = problems(Level::BackwardTransitive, v3, &[v1, v2]);
        assert!(p.len() == 1 && p[0].contains("version 1"), "{p:?}");
    }

    #[test]
    fn levels_parse_case_insensitively() {
        assert_eq!(Level::parse("full_transitive"), Some(Level::FullTransitive));
        assert_eq!(Level::parse("NONE"), Some(Level::None));
        assert_eq!(Level::parse("sideways"), None);
        assert_eq!(
            serde_json::to_string(&Level::BackwardTransitive).unwrap(),
            "\"BACKWARD_TRANSITIVE\""
        );
    }
}

#[cfg(test)]
mod decimal_tests {
    use super::*;

    fn schema(field: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"V","fields":[{{"name":"u","type":{field}}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn decimals_are_compatible_with_themselves_and_keep_their_scale() {
        let nullable = schema(
            r#"["null",{"type":"bytes","logicalType":"decimal","precision":20,"scale":0}],"default":null"#,
        );
        let plain = schema(r#"{"type":"bytes","logicalType":"decimal","precision":20,"scale":2}"#);
        let rescaled =
            schema(r#"{"type":"bytes","logicalType":"decimal","precision":20,"scale":3}"#);
        let old = |s| {
            [Existing {
                version: 1,
                schema: Some(s),
            }]
        };
        assert!(check(Level::Full, &nullable, &old(&nullable)).is_empty());
        assert!(check(Level::Full, &plain, &old(&plain)).is_empty());
        let p = check(Level::Backward, &rescaled, &old(&plain));
        assert!(p.iter().any(|m| m.contains("decimal scale 2")), "{p:?}");
    }
}
