//! The schema registry's input, in process and without Kafka: REST request bodies, version
//! specs and query strings through the same functions the HTTP handlers call
//! (`server::parse_schema_body`, `parse_level`, `percent_decode`, `VersionSpec::parse`), then
//! the state's planning and compatibility code (`State::plan_register`, `compat_problems`,
//! `plan_delete_*`, apache-avro's parser and checker behind them), with writes applied to the
//! state the way the store applies its own records read back from `_schemas`; and raw
//! `_schemas` records as another registry (or a damaged log) could have written them
//! (`State::apply`).
//!
//! Input format (easy to seed and to mutate as text): commands separated by a 0xff byte; a
//! command is an opcode byte followed by fields separated by 0xfe (neither byte occurs in
//! UTF-8). Opcodes:
//!   R subject schema      register (body = {"schema": schema})
//!   B subject body        register with a raw request body
//!   L subject schema      lookup
//!   C subject version schema   compatibility against one version
//!   A subject schema      compatibility against the subject's level
//!   D subject query       delete subject (query: e.g. permanent=true)
//!   d subject version query    delete version
//!   G subject version query    get version
//!   S subject body        set the subject's level (empty subject: the global level)
//!   K key value           apply a raw `_schemas` record (no value field: a tombstone)
//!   Q query               parse a query string
#![no_main]

use binlake::registry::compat::{self, Level};
use binlake::registry::records::{config_key, schema_key, ConfigValue};
use binlake::registry::server::{parse_level, parse_schema_body, percent_decode};
use binlake::registry::state::{Plan, State, VersionSpec};
use binlake::registry::RegistryError;
use bytes::Bytes;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a client error must look like: a Confluent code and a message.
fn check_error(e: &RegistryError) {
    let (status, code) = (e.status(), e.code());
    assert!((400..600).contains(&status), "status {status} for {e}");
    assert!(code >= 400, "code {code} for {e}");
    let _ = e.to_string();
}

/// The query string's flags, as the handlers read them.
fn flag(query: &str, name: &str) -> bool {
    query.split('&').any(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        percent_decode(k) == name && percent_decode(v).eq_ignore_ascii_case("true")
    })
}

/// Applies a record the store would have produced and read back.
fn write(st: &mut State, key: Vec<u8>, value: Option<Vec<u8>>) {
    let _ = st.apply(&key, value.as_deref());
}

fn register(st: &mut State, subject: &str, body: &Bytes) {
    let (text, parsed) = match parse_schema_body(body) {
        Ok(p) => p,
        Err(e) => return check_error(&e),
    };
    match st.plan_register(subject, &text, &parsed) {
        Ok(Plan::Existing { id, version }) => {
            let (v, i) = st
                .lookup(subject, &parsed.identity, false)
                .expect("an existing registration is found by lookup");
            assert_eq!((v, i), (version, id));
        }
        Ok(Plan::New(record)) => {
            let key = schema_key(&record.subject, record.version);
            let outcome = st.apply(&key, Some(&record.to_bytes()));
            // One writer, no concurrent records: the write must win.
            assert!(
                st.holds(&record),
                "a planned registration did not apply ({outcome:?}): {record:?}"
            );
            match st.plan_register(subject, &text, &parsed) {
                Ok(Plan::Existing { id, version }) => {
                    assert_eq!((id, version), (record.id, record.version))
                }
                other => panic!("registering again does not find the schema: {other:?}"),
            }
        }
        Err(e) => check_error(&e),
    }
}

fn compatibility(st: &State, subject: &str, spec: Option<VersionSpec>, body: &Bytes) {
    let parsed = match parse_schema_body(body) {
        Ok((_, p)) => p,
        Err(e) => return check_error(&e),
    };
    let Ok(versions) = st.versions(subject, false) else {
        return;
    };
    let only = match spec {
        Some(VersionSpec::Number(n)) if !versions.contains(&n) => return,
        Some(VersionSpec::Number(n)) => Some(n),
        _ => None,
    };
    let _ = st.compat_problems(subject, &parsed.schema, st.level(subject), only);
}

fn schema_body(schema: &[u8]) -> Bytes {
    Bytes::from(serde_json::json!({ "schema": text(schema) }).to_string())
}

fn command(st: &mut State, cmd: &[u8]) {
    let Some((&op, rest)) = cmd.split_first() else {
        return;
    };
    let f: Vec<&[u8]> = rest.split(|&b| b == 0xfe).collect();
    let field = |i: usize| f.get(i).copied().unwrap_or_default();
    let subject = text(field(0));
    match op {
        b'R' => register(st, &subject, &schema_body(field(1))),
        b'B' => register(st, &subject, &Bytes::copy_from_slice(field(1))),
        b'L' => match parse_schema_body(&schema_body(field(1))) {
            Ok((_, parsed)) => {
                if let Ok((_, id)) = st.lookup(&subject, &parsed.identity, true) {
                    assert!(
                        st.schema(id).is_some(),
                        "lookup found id {id} without a schema"
                    );
                }
            }
            Err(e) => check_error(&e),
        },
        b'C' => match VersionSpec::parse(&text(field(1))) {
            Ok(spec) => compatibility(st, &subject, Some(spec), &schema_body(field(2))),
            Err(e) => check_error(&e),
        },
        b'A' => compatibility(st, &subject, None, &schema_body(field(1))),
        b'D' => {
            let permanent = flag(&text(field(1)), "permanent");
            match st.plan_delete_subject(&subject, permanent) {
                Ok(records) => {
                    for r in records {
                        let value = (!permanent).then(|| r.to_bytes());
                        write(st, schema_key(&r.subject, r.version), value);
                    }
                    if permanent && st.subject_level(&subject).is_some() {
                        write(st, config_key(Some(&subject)), None);
                    }
                    if permanent {
                        assert!(st.versions(&subject, true).is_err(), "subject survived");
                    } else {
                        assert!(st.versions(&subject, false).is_err(), "live versions left");
                    }
                }
                Err(e) => check_error(&e),
            }
        }
        b'd' => {
            let permanent = flag(&text(field(2)), "permanent");
            let spec = match VersionSpec::parse(&text(field(1))) {
                Ok(s) => s,
                Err(e) => return check_error(&e),
            };
            match st.plan_delete_version(&subject, spec, permanent) {
                Ok(r) => {
                    let value = (!permanent).then(|| r.to_bytes());
                    write(st, schema_key(&r.subject, r.version), value);
                }
                Err(e) => check_error(&e),
            }
        }
        b'G' => {
            let deleted = flag(&text(field(2)), "deleted");
            match VersionSpec::parse(&text(field(1))) {
                Ok(spec) => match st.version(&subject, spec, deleted) {
                    Ok((v, e, s)) => {
                        let _ = (v, e.id, &s.text);
                    }
                    Err(e) => check_error(&e),
                },
                Err(e) => check_error(&e),
            }
        }
        b'S' => match parse_level(&Bytes::copy_from_slice(field(1))) {
            Ok(level) => {
                let subject = (!subject.is_empty()).then_some(subject.as_str());
                let value = serde_json::to_vec(&ConfigValue {
                    compatibility_level: Some(level.name().to_string()),
                })
                .ok();
                write(st, config_key(subject), value);
                match subject {
                    Some(s) => assert_eq!(st.subject_level(s), Some(level)),
                    None => assert_eq!(st.global_level(), level),
                }
                assert_eq!(Level::parse(level.name()), Some(level));
            }
            Err(e) => check_error(&e),
        },
        b'K' => {
            let value = f.get(1).copied();
            let _ = st.apply(field(0), value);
        }
        b'Q' => {
            let _ = flag(&text(field(0)), "deleted");
        }
        _ => {
            // Anything else: a schema text straight into the parser and identity.
            if let Ok(p) = compat::parse(&text(cmd)) {
                // The identity is a fixed point: the normalized text parses to itself.
                assert_eq!(compat::identity_of(None, &p.identity), p.identity);
            }
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut st = State::default();
    for cmd in data.split(|&b| b == 0xff).take(64) {
        command(&mut st, cmd);
    }
    let _ = st.subjects(true);
});
