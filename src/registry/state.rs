//! The registry's in-memory state: subjects, versions, schemas by id, compatibility configs,
//! derived only by applying `_schemas` records in log order ([`State::apply`]), plus the
//! read-only questions the API asks of it and the plans of writes.
//!
//! Invariant: `apply` is deterministic and total. Every reader that applies the same records
//! in the same order holds the same state, whatever the records contain: a record that
//! conflicts with what an earlier record established (the same subject and version with a
//! different id, or an id already holding a different schema) is ignored, never "fixed up",
//! and a malformed record is ignored. An id maps to exactly one schema identity while any
//! version references it.

use std::collections::{BTreeMap, BTreeSet};

use apache_avro::Schema;

use super::compat::{self, Existing, Level, Parsed};
use super::error::RegistryError;
use super::records::{self, ConfigValue, DeleteSubjectValue, Key, SchemaValue};

/// One version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionEntry {
    pub id: u32,
    pub deleted: bool,
}

/// A schema known by id, as first registered.
#[derive(Debug, Clone)]
pub struct StoredSchema {
    /// The text as registered (what clients get back).
    pub text: String,
    /// `None` for Avro.
    pub schema_type: Option<String>,
    pub identity: String,
    /// The parsed Avro schema, when it is one.
    pub parsed: Option<Schema>,
    /// How many (subject, version) entries use this id.
    refs: usize,
}

/// What applying one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The record was ignored; the reason is for the log.
    Ignored(String),
}

/// A version as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(u32),
}

impl VersionSpec {
    /// `latest`, `-1` (also latest) or 1..=2^31-1; anything else is 42202.
    pub fn parse(s: &str) -> Result<VersionSpec, RegistryError> {
        if s == "latest" || s == "-1" {
            return Ok(VersionSpec::Latest);
        }
        match s.parse::<u32>() {
            Ok(n) if (1..=i32::MAX as u32).contains(&n) => Ok(VersionSpec::Number(n)),
            _ => Err(RegistryError::InvalidVersion(s.to_string())),
        }
    }
}

/// What registering a schema comes down to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Already registered under the subject: nothing to write.
    Existing { id: u32, version: u32 },
    /// Write this record.
    New(SchemaValue),
}

#[derive(Debug, Default)]
pub struct State {
    subjects: BTreeMap<String, BTreeMap<u32, VersionEntry>>,
    schemas: BTreeMap<u32, StoredSchema>,
    by_identity: BTreeMap<String, BTreeSet<u32>>,
    /// The highest id any applied record used (never decreases: ids are not reused).
    max_id: u32,
    global: Option<Level>,
    subject_levels: BTreeMap<String, Level>,
    /// Schema keys (subject, version) whose last record in the log lost a conflict: until a
    /// record that is in force follows it, compaction (which keeps a key's last record)
    /// would keep the loser and change what a version or an id means. See [`State::repairs`].
    lost_last: BTreeSet<(String, u32)>,
}

impl State {
    /// Applies one record of the log (value `None`: a tombstone).
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Outcome {
        let key = match records::parse_key(key) {
            Ok(k) => k,
            Err(e) => return Outcome::Ignored(format!("unreadable key: {e}")),
        };
        match key {
            Key::Schema { subject, version } => {
                let outcome = match value {
                    Some(v) => match serde_json::from_slice::<SchemaValue>(v) {
                        Ok(v) if v.subject == subject && v.version == version => self.put_schema(v),
                        Ok(_) => {
                            Outcome::Ignored("value's subject/version differ from key's".into())
                        }
                        Err(e) => Outcome::Ignored(format!("unreadable schema value: {e}")),
                    },
                    None => {
                        self.remove_version(&subject, version);
                        Outcome::Applied
                    }
                };
                match outcome {
                    Outcome::Applied => {
                        self.lost_last.remove(&(subject, version));
                    }
                    Outcome::Ignored(_) => {
                        self.lost_last.insert((subject, version));
                    }
                }
                outcome
            }
            Key::Config { subject } => {
                let level = match value {
                    None => None,
                    Some(v) => match serde_json::from_slice::<ConfigValue>(v) {
                        Ok(c) => match c.compatibility_level.as_deref().map(Level::parse) {
                            Some(Some(l)) => Some(l),
                            Some(None) => {
                                return Outcome::Ignored("unknown compatibility level".into())
                            }
                            None => None,
                        },
                        Err(e) => return Outcome::Ignored(format!("unreadable config: {e}")),
                    },
                };
                match (subject, level) {
                    (None, l) => self.global = l,
                    (Some(s), Some(l)) => {
                        self.subject_levels.insert(s, l);
                    }
                    (Some(s), None) => {
                        self.subject_levels.remove(&s);
                    }
                }
                Outcome::Applied
            }
            Key::DeleteSubject { subject } => {
                let Some(v) = value else {
                    return Outcome::Applied;
                };
                match serde_json::from_slice::<DeleteSubjectValue>(v) {
                    Ok(d) => {
                        if let Some(versions) = self.subjects.get_mut(&subject) {
                            for (_, e) in versions.range_mut(..=d.version) {
                                e.deleted = true;
                            }
                        }
                        Outcome::Applied
                    }
                    Err(e) => Outcome::Ignored(format!("unreadable DELETE_SUBJECT value: {e}")),
                }
            }
            Key::Noop => Outcome::Applied,
            Key::Other(t) => Outcome::Ignored(format!("key type {t} is not used by binlake")),
        }
    }

    fn put_schema(&mut self, v: SchemaValue) -> Outcome {
        let schema_type = v.schema_type.filter(|t| t != "AVRO");
        let (identity, parsed) = match &schema_type {
            None => match compat::parse(&v.schema) {
                Ok(p) => (p.identity, Some(p.schema)),
                Err(_) => (compat::identity_of(None, &v.schema), None),
            },
            Some(t) => (compat::identity_of(Some(t), &v.schema), None),
        };
        if let Some(s) = self.schemas.get(&v.id) {
            if s.identity != identity {
                return Outcome::Ignored(format!(
                    "id {} already belongs to a different schema",
                    v.id
                ));
            }
        }
        let versions = self.subjects.entry(v.subject.clone()).or_default();
        if let Some(e) = versions.get_mut(&v.version) {
            if e.id != v.id {
                return Outcome::Ignored(format!(
                    "subject '{}' version {} already holds id {}",
                    v.subject, v.version, e.id
                ));
            }
            e.deleted = v.deleted;
            return Outcome::Applied;
        }
        versions.insert(
            v.version,
            VersionEntry {
                id: v.id,
                deleted: v.deleted,
            },
        );
        self.max_id = self.max_id.max(v.id);
        let stored = self.schemas.entry(v.id).or_insert_with(|| StoredSchema {
            text: v.schema,
            schema_type,
            identity: identity.clone(),
            parsed,
            refs: 0,
        });
        stored.refs += 1;
        self.by_identity.entry(identity).or_default().insert(v.id);
        Outcome::Applied
    }

    fn remove_version(&mut self, subject: &str, version: u32) {
        let Some(versions) = self.subjects.get_mut(subject) else {
            return;
        };
        let Some(e) = versions.remove(&version) else {
            return;
        };
        if versions.is_empty() {
            self.subjects.remove(subject);
        }
        if let Some(s) = self.schemas.get_mut(&e.id) {
            s.refs -= 1;
            if s.refs == 0 {
                let identity = s.identity.clone();
                self.schemas.remove(&e.id);
                if let Some(ids) = self.by_identity.get_mut(&identity) {
                    ids.remove(&e.id);
                    if ids.is_empty() {
                        self.by_identity.remove(&identity);
                    }
                }
            }
        }
    }

    /// The records that make compaction keep what is in force, for every schema key whose
    /// last record lost a conflict (a registry that raced for it and died before writing the
    /// winner again, or a foreign record): the record in force for that key, or a tombstone
    /// when none is. Any registry writes them once caught up; applied, they clear the list.
    pub fn repairs(&self) -> Vec<(String, u32, Option<SchemaValue>)> {
        self.lost_last
            .iter()
            .map(|(s, v)| (s.clone(), *v, self.record(s, *v)))
            .collect()
    }

    /// Subjects with a live version (or any version, with `deleted`).
    pub fn subjects(&self, deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, vs)| deleted || vs.values().any(|e| !e.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    fn subject_versions(
        &self,
        subject: &str,
        deleted: bool,
    ) -> Result<Vec<(u32, VersionEntry)>, RegistryError> {
        let vs: Vec<(u32, VersionEntry)> = self
            .subjects
            .get(subject)
            .map(|vs| {
                vs.iter()
                    .filter(|(_, e)| deleted || !e.deleted)
                    .map(|(v, e)| (*v, *e))
                    .collect()
            })
            .unwrap_or_default();
        if vs.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        Ok(vs)
    }

    /// The version numbers of a subject (40401 if it has none).
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>, RegistryError> {
        Ok(self
            .subject_versions(subject, deleted)?
            .into_iter()
            .map(|(v, _)| v)
            .collect())
    }

    /// One version of a subject with its schema.
    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<(u32, VersionEntry, &StoredSchema), RegistryError> {
        let vs = self.subject_versions(subject, deleted)?;
        let found = match spec {
            VersionSpec::Latest => vs.last().copied(),
            VersionSpec::Number(n) => vs.iter().find(|(v, _)| *v == n).copied(),
        };
        let (v, e) = found.ok_or_else(|| {
            RegistryError::VersionNotFound(match spec {
                VersionSpec::Latest => "latest".into(),
                VersionSpec::Number(n) => n.to_string(),
            })
        })?;
        let s = self
            .schemas
            .get(&e.id)
            .ok_or_else(|| RegistryError::SchemaNotFound(format!("Schema {} not found", e.id)))?;
        Ok((v, e, s))
    }

    pub fn schema(&self, id: u32) -> Option<&StoredSchema> {
        self.schemas.get(&id)
    }

    /// The (subject, version) pairs using an id (live ones, or all with `deleted`).
    pub fn id_versions(&self, id: u32, deleted: bool) -> Vec<(String, u32)> {
        self.subjects
            .iter()
            .flat_map(|(s, vs)| {
                vs.iter()
                    .filter(move |(_, e)| e.id == id && (deleted || !e.deleted))
                    .map(move |(v, _)| (s.clone(), *v))
            })
            .collect()
    }

    /// The newest version of `subject` holding a schema with this identity.
    pub fn lookup(
        &self,
        subject: &str,
        identity: &str,
        deleted: bool,
    ) -> Result<(u32, u32), RegistryError> {
        let vs = self.subject_versions(subject, deleted)?;
        vs.iter()
            .rev()
            .find(|(_, e)| {
                self.schemas
                    .get(&e.id)
                    .is_some_and(|s| s.identity == identity)
            })
            .map(|(v, e)| (*v, e.id))
            .ok_or_else(|| RegistryError::SchemaNotFound("Schema not found".into()))
    }

    /// The level in force for a subject: its own, else the global one, else BACKWARD.
    pub fn level(&self, subject: &str) -> Level {
        self.subject_levels
            .get(subject)
            .copied()
            .unwrap_or_else(|| self.global_level())
    }

    pub fn global_level(&self) -> Level {
        self.global.unwrap_or_default()
    }

    pub fn subject_level(&self, subject: &str) -> Option<Level> {
        self.subject_levels.get(subject).copied()
    }

    /// Problems of `new` against the subject's live versions under `level` (all of them per
    /// the level, or only `only` when given). Empty: compatible.
    pub fn compat_problems(
        &self,
        subject: &str,
        new: &Schema,
        level: Level,
        only: Option<u32>,
    ) -> Vec<String> {
        let Ok(vs) = self.subject_versions(subject, false) else {
            return Vec::new();
        };
        let existing: Vec<Existing<'_>> = vs
            .iter()
            .filter(|(v, _)| only.is_none_or(|o| o == *v))
            .map(|(v, e)| Existing {
                version: *v,
                schema: self.schemas.get(&e.id).and_then(|s| s.parsed.as_ref()),
            })
            .collect();
        compat::check(level, new, &existing)
    }

    /// What registering `text` (parsed as `parsed`) under `subject` needs: nothing (already
    /// there), an incompatibility error, or the record to write with the next version and the
    /// schema's id (its existing id under any subject, else the highest id + 1).
    pub fn plan_register(
        &self,
        subject: &str,
        text: &str,
        parsed: &Parsed,
    ) -> Result<Plan, RegistryError> {
        if let Ok((version, id)) = self.lookup(subject, &parsed.identity, false) {
            return Ok(Plan::Existing { id, version });
        }
        let problems = self.compat_problems(subject, &parsed.schema, self.level(subject), None);
        if !problems.is_empty() {
            return Err(RegistryError::Incompatible {
                subject: subject.to_string(),
                details: problems.join("; "),
            });
        }
        // Ids and versions are Java ints for Confluent's clients: the log (which another
        // registry may have written) can hold numbers up to u32::MAX, but none past
        // i32::MAX is handed out.
        let id = match self
            .by_identity
            .get(&parsed.identity)
            .and_then(|ids| ids.first())
        {
            Some(id) => *id,
            None => next_number(self.max_id).ok_or_else(|| {
                RegistryError::Store(format!(
                    "no schema id left: the schemas topic already uses id {}",
                    self.max_id
                ))
            })?,
        };
        let version = match self
            .subjects
            .get(subject)
            .and_then(|vs| vs.keys().next_back())
        {
            None => 1,
            Some(&v) => next_number(v).ok_or_else(|| {
                RegistryError::Store(format!(
                    "no version left: subject '{subject}' already has version {v}"
                ))
            })?,
        };
        Ok(Plan::New(SchemaValue {
            subject: subject.to_string(),
            version,
            id,
            schema: text.to_string(),
            deleted: false,
            schema_type: None,
        }))
    }

    /// The record currently in force for (subject, version), as it would be written.
    pub fn record(&self, subject: &str, version: u32) -> Option<SchemaValue> {
        let e = self.subjects.get(subject)?.get(&version)?;
        let s = self.schemas.get(&e.id)?;
        Some(SchemaValue {
            subject: subject.to_string(),
            version,
            id: e.id,
            schema: s.text.clone(),
            deleted: e.deleted,
            schema_type: s.schema_type.clone(),
        })
    }

    /// Whether `v` is what the state holds for its subject and version, with its id meaning
    /// its schema (a write "won").
    pub fn holds(&self, v: &SchemaValue) -> bool {
        let same_schema = self.schemas.get(&v.id).is_some_and(|s| {
            s.identity == compat::identity_of(v.schema_type.as_deref(), &v.schema)
        });
        same_schema
            && self
                .record(&v.subject, v.version)
                .is_some_and(|r| r.id == v.id && r.deleted == v.deleted)
    }

    /// The records a subject delete writes: soft (rewritten with `deleted: true`) or
    /// permanent (the versions to tombstone). Also the versions to report.
    pub fn plan_delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<SchemaValue>, RegistryError> {
        let all = self.subject_versions(subject, true)?;
        let live = all.iter().any(|(_, e)| !e.deleted);
        match (permanent, live) {
            (false, false) => Err(RegistryError::SubjectSoftDeleted(subject.to_string())),
            (true, true) => Err(RegistryError::SubjectNotSoftDeleted(subject.to_string())),
            _ => Ok(all
                .iter()
                .filter(|(_, e)| permanent || !e.deleted)
                .filter_map(|(v, _)| {
                    let mut r = self.record(subject, *v)?;
                    r.deleted = true;
                    Some(r)
                })
                .collect()),
        }
    }

    /// The record a version delete writes (soft: `deleted: true`; permanent: its key is
    /// tombstoned).
    pub fn plan_delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<SchemaValue, RegistryError> {
        let all = self.subject_versions(subject, true)?;
        let found = match spec {
            VersionSpec::Latest if permanent => all.last(),
            VersionSpec::Latest => all.iter().rev().find(|(_, e)| !e.deleted),
            VersionSpec::Number(n) => all.iter().find(|(v, _)| *v == n),
        };
        let Some((version, e)) = found else {
            return Err(RegistryError::VersionNotFound(match spec {
                VersionSpec::Latest => "latest".into(),
                VersionSpec::Number(n) => n.to_string(),
            }));
        };
        let version = *version;
        let subject_s = subject.to_string();
        match (permanent, e.deleted) {
            (false, true) => Err(RegistryError::VersionSoftDeleted {
                subject: subject_s,
                version,
            }),
            (true, false) => Err(RegistryError::VersionNotSoftDeleted {
                subject: subject_s,
                version,
            }),
            _ => {
                let mut r = self
                    .record(subject, version)
                    .ok_or_else(|| RegistryError::VersionNotFound(version.to_string()))?;
                r.deleted = true;
                Ok(r)
            }
        }
    }
}

/// The number after `n`, if it is still a positive Java int.
fn next_number(n: u32) -> Option<u32> {
    n.checked_add(1).filter(|&m| m <= i32::MAX as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::records::{config_key, schema_key};

    fn rec(subject: &str, version: u32, id: u32, schema: &str, deleted: bool) -> Vec<u8> {
        SchemaValue {
            subject: subject.into(),
            version,
            id,
            schema: schema.into(),
            deleted,
            schema_type: None,
        }
        .to_bytes()
    }

    fn put(st: &mut State, subject: &str, version: u32, id: u32, schema: &str) -> Outcome {
        st.apply(
            &schema_key(subject, version),
            Some(&rec(subject, version, id, schema, false)),
        )
    }

    const A: &str = r#""string""#;
    const B: &str = r#""long""#;
    const C: &str = r#"{"type":"record","name":"R","fields":[{"name":"x","type":"int"}]}"#;

    #[test]
    fn earlier_record_wins_version_and_id_conflicts() {
        let mut st = State::default();
        assert_eq!(put(&mut st, "s", 1, 1, A), Outcome::Applied);
        // Same subject/version, other id: ignored.
        assert!(matches!(put(&mut st, "s", 1, 2, B), Outcome::Ignored(_)));
        // Same id, other schema: ignored.
        assert!(matches!(put(&mut st, "t", 1, 1, B), Outcome::Ignored(_)));
        assert!(st.versions("t", true).is_err());
        assert_eq!(
            st.version("s", VersionSpec::Latest, false).unwrap().2.text,
            A
        );
        let lost = SchemaValue {
            subject: "t".into(),
            version: 1,
            id: 1,
            schema: B.into(),
            deleted: false,
            schema_type: None,
        };
        assert!(!st.holds(&lost));
        // Same schema under another subject with the same id: fine (shared id).
        assert_eq!(put(&mut st, "t", 1, 1, A), Outcome::Applied);
        assert_eq!(st.id_versions(1, false).len(), 2);
        let won = SchemaValue {
            schema: " \"string\" ".into(),
            ..lost
        };
        assert!(st.holds(&won));
    }

    #[test]
    fn plan_reuses_ids_and_numbers_versions() {
        let mut st = State::default();
        put(&mut st, "s", 1, 1, A);
        put(&mut st, "s", 2, 5, B);
        let parsed = compat::parse(A).unwrap();
        // Already in s: nothing to write.
        assert_eq!(
            st.plan_register("s", A, &parsed).unwrap(),
            Plan::Existing { id: 1, version: 1 }
        );
        // Under another subject: same id, version 1.
        let Plan::New(v) = st.plan_register("t", " \"string\" ", &parsed).unwrap() else {
            panic!("expected a new record")
        };
        assert_eq!((v.id, v.version, v.schema.as_str()), (1, 1, " \"string\" "));
        // A new schema: max id + 1, next version.
        st.apply(
            &config_key(Some("s")),
            Some(br#"{"compatibilityLevel":"NONE"}"#),
        );
        let Plan::New(v) = st
            .plan_register("s", C, &compat::parse(C).unwrap())
            .unwrap()
        else {
            panic!("expected a new record")
        };
        assert_eq!((v.id, v.version), (6, 3));
    }

    #[test]
    fn incompatible_registration_is_refused_under_backward() {
        let mut st = State::default();
        put(&mut st, "s", 1, 1, C);
        let d = r#"{"type":"record","name":"R","fields":[{"name":"x","type":"string"}]}"#;
        let e = st
            .plan_register("s", d, &compat::parse(d).unwrap())
            .unwrap_err();
        assert_eq!(e.code(), 409);
        assert!(e.to_string().contains("'x'"), "{e}");
        st.apply(&config_key(None), Some(br#"{"compatibilityLevel":"NONE"}"#));
        assert!(st.plan_register("s", d, &compat::parse(d).unwrap()).is_ok());
    }

    #[test]
    fn soft_and_permanent_deletes() {
        let mut st = State::default();
        put(&mut st, "s", 1, 1, A);
        put(&mut st, "s", 2, 2, B);
        assert_eq!(st.plan_delete_subject("s", true).unwrap_err().code(), 40405);
        for r in st.plan_delete_subject("s", false).unwrap() {
            assert_eq!(
                st.apply(&schema_key("s", r.version), Some(&r.to_bytes())),
                Outcome::Applied
            );
        }
        assert!(st.subjects(false).is_empty());
        assert_eq!(st.subjects(true), vec!["s".to_string()]);
        assert_eq!(st.versions("s", false).unwrap_err().code(), 40401);
        assert_eq!(
            st.plan_delete_subject("s", false).unwrap_err().code(),
            40404
        );
        // Ids still resolve after a soft delete.
        assert_eq!(st.schema(2).unwrap().text, B);
        // Re-registering after a soft delete continues the version numbers.
        let Plan::New(v) = st
            .plan_register("s", A, &compat::parse(A).unwrap())
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((v.id, v.version), (1, 3));
        for r in st.plan_delete_subject("s", true).unwrap() {
            st.apply(&schema_key("s", r.version), None);
        }
        assert!(st.subjects(true).is_empty());
        assert!(st.schema(2).is_none());
        // Ids are not reused after a permanent delete.
        let Plan::New(v) = st
            .plan_register("s", C, &compat::parse(C).unwrap())
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((v.id, v.version), (3, 1));
    }

    #[test]
    fn version_deletes_go_soft_then_permanent() {
        let mut st = State::default();
        put(&mut st, "s", 1, 1, A);
        put(&mut st, "s", 2, 2, B);
        let one = VersionSpec::Number(1);
        assert_eq!(
            st.plan_delete_version("s", one, true).unwrap_err().code(),
            40407
        );
        let r = st.plan_delete_version("s", one, false).unwrap();
        assert!(r.deleted && r.version == 1 && r.id == 1);
        st.apply(&schema_key("s", 1), Some(&r.to_bytes()));
        assert_eq!(
            st.plan_delete_version("s", one, false).unwrap_err().code(),
            40406
        );
        assert_eq!(st.versions("s", false).unwrap(), vec![2]);
        // `latest` is the latest live version.
        let r = st
            .plan_delete_version("s", VersionSpec::Latest, false)
            .unwrap();
        assert_eq!(r.version, 2);
        let r = st.plan_delete_version("s", one, true).unwrap();
        st.apply(&schema_key("s", r.version), None);
        assert_eq!(st.versions("s", true).unwrap(), vec![2]);
        assert!(st.schema(1).is_none());
        assert_eq!(
            st.plan_delete_version("s", VersionSpec::Number(9), false)
                .unwrap_err()
                .code(),
            40402
        );
        assert_eq!(
            st.plan_delete_version("t", one, false).unwrap_err().code(),
            40401
        );
    }

    #[test]
    fn configs_and_foreign_records() {
        let mut st = State::default();
        assert_eq!(st.level("s"), Level::Backward);
        st.apply(&config_key(None), Some(br#"{"compatibilityLevel":"FULL"}"#));
        assert_eq!(st.level("s"), Level::Full);
        st.apply(
            &config_key(Some("s")),
            Some(br#"{"compatibilityLevel":"NONE"}"#),
        );
        assert_eq!(st.level("s"), Level::None);
        assert_eq!(st.subject_level("t"), None);
        st.apply(&config_key(Some("s")), None);
        assert_eq!(st.level("s"), Level::Full);
        assert_eq!(
            st.apply(br#"{"keytype":"NOOP","magic":0}"#, None),
            Outcome::Applied
        );
        assert!(matches!(
            st.apply(b"junk", Some(b"{}")),
            Outcome::Ignored(_)
        ));
        put(&mut st, "s", 1, 1, A);
        put(&mut st, "s", 2, 2, B);
        st.apply(
            br#"{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}"#,
            Some(br#"{"subject":"s","version":1}"#),
        );
        assert_eq!(st.versions("s", false).unwrap(), vec![2]);
    }

    #[test]
    fn version_specs() {
        assert_eq!(VersionSpec::parse("latest").unwrap(), VersionSpec::Latest);
        assert_eq!(VersionSpec::parse("3").unwrap(), VersionSpec::Number(3));
        assert_eq!(VersionSpec::parse("0").unwrap_err().code(), 42202);
        assert_eq!(VersionSpec::parse("x").unwrap_err().code(), 42202);
    }
}
