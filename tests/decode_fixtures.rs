//! Conformance tests for `binlake decode` on real binlog files written by Oracle MySQL
//! 5.7 / 8.0 / 8.2 / 9.0 / 9.6 (and one Amazon Aurora file).
//!
//! Fixtures live in `tests/fixtures/mysql-binlogs` (see its `README.md` for origin, licensing
//! and the decoder traps these files pin down; `COPIED.md` says what was left out).
//! Sources of truth, in this order:
//! * `*.expected`: facts stated by the repository each file comes from;
//! * `rust-us-mysql-cdc-rs/**/dump.txt`: Oracle `mysqlbinlog --hexdump -vv` output, and
//!   `show.txt`: `SHOW BINLOG EVENTS` output;
//! * the bytes of the file itself, read by the small event walker below (event offsets and
//!   types, table maps, GTIDs, CRC32s, zstd payload contents). It never decodes row images,
//!   so it is independent of the decoder under test.
//!
//! The `*.derived.txt` listings of the shared fixture set were not copied; where a test pins a
//! value that no authoritative source states, a comment says so.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mysql-binlogs");
const BLACKBEAM: &str = "blackbeam-rust_mysql_common";
const OSHEROFF: &str = "osheroff-mysql-binlog-connector-java";
const APECLOUD: &str = "apecloud-mysql-binlog-connector-rust";
const RUST_US: &str = "rust-us-mysql-cdc-rs";

fn fixture(rel: &str) -> PathBuf {
    Path::new(FIXTURES).join(rel)
}

// ---------------------------------------------------------------------------------------------
// Running `binlake decode`
// ---------------------------------------------------------------------------------------------

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `binlake --log warn decode FILES...`; fails the test if the process panicked or was
/// killed by a signal.
fn run_decode(files: &[&Path]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_binlake"))
        .env_remove("BINLAKE_LOG")
        .args(["--log", "warn", "decode"])
        .args(files)
        .output()
        .expect("run binlake");
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "binlake panicked on {files:?}:\n{}",
        run.stderr
    );
    assert!(
        run.code.is_some(),
        "binlake was killed by a signal on {files:?}:\n{}",
        run.stderr
    );
    run
}

/// Decodes files that must decode cleanly; parses and sanity-checks every JSON line.
fn decode_paths(files: &[&Path]) -> Vec<Value> {
    let run = run_decode(files);
    assert_eq!(
        run.code,
        Some(0),
        "decode {files:?} failed:\n{}",
        run.stderr
    );
    run.stdout
        .lines()
        .map(|line| {
            let change: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{files:?}: output line is not JSON ({e}): {line}"));
            check_envelope(&change);
            change
        })
        .collect()
}

fn decode(rel: &str) -> Vec<Value> {
    decode_paths(&[&fixture(rel)])
}

/// The shape every output line must have, whatever the fixture.
fn check_envelope(c: &Value) {
    let obj = c
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {c}"));
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "op", "db", "table", "key", "before", "after", "ts_ms", "pos",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, want, "{c}");
    assert!(c["db"].is_string() && c["table"].is_string(), "{c}");
    assert!(c["ts_ms"].is_u64(), "ts_ms: {c}");
    let pos = &c["pos"];
    assert!(pos["file"].is_string(), "pos.file: {c}");
    assert!(pos["offset"].is_u64() && pos["row"].is_u64(), "pos: {c}");
    assert!(
        pos["gtid"].is_null() || pos["gtid"].is_string(),
        "pos.gtid: {c}"
    );
    let (image, other) = match c["op"].as_str() {
        Some("c") => (&c["after"], &c["before"]),
        Some("d") => (&c["before"], &c["after"]),
        Some("u") => {
            assert!(c["before"].is_object(), "update without before image: {c}");
            (&c["after"], &Value::Null)
        }
        _ => panic!("bad op: {c}"),
    };
    assert!(image.is_object(), "{c}");
    assert!(other.is_null(), "{c}");
    // Key columns take their value from the identifying row image, or, where that image does
    // not carry the whole value (minimal after image, JSON diff), from the before image.
    let key = c["key"].as_object().unwrap_or_else(|| panic!("key: {c}"));
    for (name, value) in key {
        let whole = |img: &Value| {
            img.get(name)
                .filter(|v| v.get("json_diff").is_none())
                .cloned()
        };
        let expected = whole(image).or_else(|| whole(&c["before"]));
        assert_eq!(expected.as_ref(), Some(value), "key column {name}: {c}");
    }
}

/// Value of column `name` in an image; panics (rather than yielding null) if it is absent.
fn col<'a>(image: &'a Value, name: &str) -> &'a Value {
    image
        .get(name)
        .unwrap_or_else(|| panic!("no column {name} in {image}"))
}

fn column_names(image: &Value) -> Vec<&str> {
    image
        .as_object()
        .unwrap_or_else(|| panic!("not an image: {image}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn rows_at(changes: &[Value], offset: u64) -> Vec<&Value> {
    changes
        .iter()
        .filter(|c| c["pos"]["offset"] == offset)
        .collect()
}

fn b64(bytes: &[u8]) -> Value {
    json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) })
}

fn unb64(v: &Value) -> Vec<u8> {
    let s = v["base64"]
        .as_str()
        .unwrap_or_else(|| panic!("not base64: {v}"));
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("bad base64 {s}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// A minimal binlog event walker (headers, table maps, GTIDs, payloads; no row images)
// ---------------------------------------------------------------------------------------------

const QUERY: u8 = 2;
const STOP: u8 = 3;
const ROTATE: u8 = 4;
const FORMAT_DESCRIPTION: u8 = 15;
const XID: u8 = 16;
const TABLE_MAP: u8 = 19;
const ROWS_QUERY: u8 = 29;
const WRITE_ROWS_V2: u8 = 30;
const UPDATE_ROWS_V2: u8 = 31;
const DELETE_ROWS_V2: u8 = 32;
const GTID: u8 = 33;
const ANONYMOUS_GTID: u8 = 34;
const PREVIOUS_GTIDS: u8 = 35;
const PARTIAL_UPDATE_ROWS: u8 = 39;
const TRANSACTION_PAYLOAD: u8 = 40;
const GTID_TAGGED: u8 = 42;

const LOG_EVENT_BINLOG_IN_USE_F: u16 = 0x0001;
const HEADER_LEN: usize = 19;

#[derive(Debug)]
struct Event {
    /// File offset (for payload-inner events: offset inside the decompressed payload).
    offset: u64,
    code: u8,
    flags: u16,
    /// Whole event (header + body + checksum) as stored.
    raw: Vec<u8>,
    /// Body: without the 19-byte header and without the CRC32 trailer.
    body: Vec<u8>,
    /// Events inside a TRANSACTION_PAYLOAD_EVENT.
    inner: Vec<Event>,
}

#[derive(Debug)]
struct Binlog {
    events: Vec<Event>,
    /// binlog_checksum=CRC32 (from the FORMAT_DESCRIPTION_EVENT's checksum-alg byte).
    crc32: bool,
}

fn u16le(b: &[u8]) -> u16 {
    u16::from_le_bytes(b[..2].try_into().unwrap())
}

fn u32le(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

fn walk(rel: &str) -> Binlog {
    walk_bytes(&std::fs::read(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")))
}

fn walk_bytes(bytes: &[u8]) -> Binlog {
    assert_eq!(&bytes[..4], b"\xfebin", "binlog magic");
    let mut crc_len = 0;
    let events = walk_events(bytes, 4, &mut crc_len);
    Binlog {
        events,
        crc32: crc_len == 4,
    }
}

/// Walks events from `start`. `crc_len` is updated from each FORMAT_DESCRIPTION_EVENT (>= 5.6.1
/// layout: the FDE ends with the checksum-alg byte and 4 checksum bytes).
fn walk_events(bytes: &[u8], start: usize, crc_len: &mut usize) -> Vec<Event> {
    let mut events = Vec::new();
    let mut pos = start;
    while pos < bytes.len() {
        let header = &bytes[pos..pos + HEADER_LEN];
        let code = header[4];
        let size = u32le(&header[9..]) as usize;
        let flags = u16le(&header[17..]);
        let raw = &bytes[pos..pos + size];
        if code == FORMAT_DESCRIPTION {
            *crc_len = if raw[size - 5] == 1 { 4 } else { 0 };
        }
        let body = raw[HEADER_LEN..size - *crc_len].to_vec();
        let inner = if code == TRANSACTION_PAYLOAD {
            walk_events(&payload_bytes(&body), 0, &mut 0)
        } else {
            Vec::new()
        };
        events.push(Event {
            offset: pos as u64,
            code,
            flags,
            raw: raw.to_vec(),
            body,
            inner,
        });
        pos += size;
    }
    events
}

fn lenenc(b: &[u8], i: &mut usize) -> u64 {
    let first = b[*i];
    *i += 1;
    let n = match first {
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        v => return u64::from(v),
    };
    let mut v = 0u64;
    for k in 0..n {
        v |= u64::from(b[*i + k]) << (8 * k);
    }
    *i += n;
    v
}

/// The decompressed content of a TRANSACTION_PAYLOAD_EVENT body (TLV header, then zstd data).
fn payload_bytes(body: &[u8]) -> Vec<u8> {
    let mut i = 0;
    let (mut compression, mut uncompressed_size) = (None, None);
    loop {
        let field = lenenc(body, &mut i);
        if field == 0 {
            break;
        }
        let len = lenenc(body, &mut i) as usize;
        let mut j = i;
        let value = lenenc(body, &mut j);
        match field {
            2 => compression = Some(value),
            3 => uncompressed_size = Some(value),
            _ => {}
        }
        i += len;
    }
    assert_eq!(compression, Some(0), "payload compression type (0 = zstd)");
    let raw = zstd::stream::decode_all(&body[i..]).expect("zstd payload");
    assert_eq!(Some(raw.len() as u64), uncompressed_size, "payload size");
    raw
}

fn codes(events: &[Event]) -> Vec<u8> {
    events.iter().map(|e| e.code).collect()
}

fn uuid(b: &[u8]) -> String {
    let h: String = b[..16].iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// GTID a change must carry, as far as the walker can tell.
#[derive(Debug, Clone, PartialEq)]
enum Gtid {
    /// Anonymous transaction (or no GTID event yet): `pos.gtid` is null.
    Anonymous,
    Known(String),
    /// GTID_TAGGED_LOG_EVENT: not parsed by the walker, checked from `.expected` instead.
    Unchecked,
}

/// What the file says about one rows event; several for a payload share `offset`.
#[derive(Debug, Clone)]
struct RowsEvent {
    /// Offset of the top-level event (the TRANSACTION_PAYLOAD_EVENT for inner events).
    offset: u64,
    op: &'static str,
    db: String,
    table: String,
    gtid: Gtid,
}

fn rows_op(code: u8) -> Option<&'static str> {
    match code {
        23 | WRITE_ROWS_V2 => Some("c"),
        24 | UPDATE_ROWS_V2 | PARTIAL_UPDATE_ROWS => Some("u"),
        25 | DELETE_ROWS_V2 => Some("d"),
        _ => None,
    }
}

/// Every rows event of the file with its table (from the preceding TABLE_MAP) and GTID.
fn rows_events(binlog: &Binlog) -> Vec<RowsEvent> {
    struct State {
        tables: std::collections::HashMap<u64, (String, String)>,
        gtid: Gtid,
        out: Vec<RowsEvent>,
    }
    fn table_id(body: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        b[..6].copy_from_slice(&body[..6]);
        u64::from_le_bytes(b)
    }
    fn visit(st: &mut State, e: &Event, offset: u64) {
        match e.code {
            GTID => {
                let gno = u64::from_le_bytes(e.body[17..25].try_into().unwrap());
                st.gtid = Gtid::Known(format!("{}:{gno}", uuid(&e.body[1..17])));
            }
            ANONYMOUS_GTID => st.gtid = Gtid::Anonymous,
            GTID_TAGGED => st.gtid = Gtid::Unchecked,
            TABLE_MAP => {
                let b = &e.body;
                let db_len = b[8] as usize;
                let db = String::from_utf8_lossy(&b[9..9 + db_len]).into_owned();
                let t = 9 + db_len + 1;
                let table_len = b[t] as usize;
                let table = String::from_utf8_lossy(&b[t + 1..t + 1 + table_len]).into_owned();
                st.tables.insert(table_id(b), (db, table));
            }
            TRANSACTION_PAYLOAD => {
                for inner in &e.inner {
                    visit(st, inner, offset);
                }
            }
            code => {
                if let Some(op) = rows_op(code) {
                    let (db, table) = st.tables[&table_id(&e.body)].clone();
                    let gtid = st.gtid.clone();
                    st.out.push(RowsEvent {
                        offset,
                        op,
                        db,
                        table,
                        gtid,
                    });
                }
            }
        }
    }
    let mut st = State {
        tables: Default::default(),
        gtid: Gtid::Anonymous,
        out: Vec::new(),
    };
    for e in &binlog.events {
        visit(&mut st, e, e.offset);
    }
    st.out
}

/// Collapses consecutive equal items.
fn runs<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for x in items {
        if out.last() != Some(&x) {
            out.push(x);
        }
    }
    out
}

/// The decode output of one file agrees with the rows events listed by an authoritative
/// source: one group of changes per event offset, in file order, rows numbered from 0, same
/// operation / table (runs, for payloads holding several rows events) and GTID.
fn assert_rows_events(label: &str, file_name: &str, changes: &[Value], expected: &[RowsEvent]) {
    let change_offsets = runs(changes.iter().map(|c| c["pos"]["offset"].as_u64().unwrap()));
    let event_offsets = runs(expected.iter().map(|e| e.offset));
    assert_eq!(
        change_offsets, event_offsets,
        "{label}: offsets of the rows events"
    );
    for offset in event_offsets {
        let rows = rows_at(changes, offset);
        let events: Vec<&RowsEvent> = expected.iter().filter(|e| e.offset == offset).collect();
        assert!(
            rows.len() >= events.len(),
            "{label} @{offset}: {} rows for {} rows events",
            rows.len(),
            events.len()
        );
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["pos"]["row"], i, "{label} @{offset}: row numbering");
            assert_eq!(row["pos"]["file"], file_name, "{label} @{offset}: pos.file");
            match &events[0].gtid {
                Gtid::Anonymous => assert!(row["pos"]["gtid"].is_null(), "{label}: {row}"),
                Gtid::Known(g) => assert_eq!(row["pos"]["gtid"], g.as_str(), "{label}: {row}"),
                Gtid::Unchecked => {}
            }
        }
        let got = runs(rows.iter().map(|r| {
            (
                r["op"].as_str().unwrap().to_string(),
                r["db"].as_str().unwrap().to_string(),
                r["table"].as_str().unwrap().to_string(),
            )
        }));
        let want = runs(
            events
                .iter()
                .map(|e| (e.op.to_string(), e.db.clone(), e.table.clone())),
        );
        assert_eq!(got, want, "{label} @{offset}: op / db / table");
    }
}

/// Decodes a fixture and checks it against the walker's view of the file.
fn decode_and_check_structure(rel: &str) -> (Binlog, Vec<Value>) {
    let binlog = walk(rel);
    let changes = decode(rel);
    let name = Path::new(rel).file_name().unwrap().to_str().unwrap();
    assert_rows_events(rel, name, &changes, &rows_events(&binlog));
    (binlog, changes)
}

fn event_no(binlog: &Binlog, one_based: usize) -> &Event {
    &binlog.events[one_based - 1]
}

/// CRC32 of a stored event as MySQL computes it: FDE checksummed with the in-use flag clear.
fn crc_ok(e: &Event, clear_in_use_flag: bool) -> bool {
    let n = e.raw.len();
    let mut data = e.raw[..n - 4].to_vec();
    if clear_in_use_flag && e.code == FORMAT_DESCRIPTION {
        data[17] &= !(LOG_EVENT_BINLOG_IN_USE_F as u8);
    }
    crc32fast::hash(&data) == u32le(&e.raw[n - 4..])
}

// ---------------------------------------------------------------------------------------------
// Fixture manifest
// ---------------------------------------------------------------------------------------------

/// Manifest records of the binlogs present in this copy of the fixture set.
fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(fixture("manifest.json")).unwrap();
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    all.into_iter()
        .filter(|r| fixture(r["file"].as_str().unwrap()).exists())
        .collect()
}

#[test]
fn every_fixture_decodes_and_matches_its_event_structure() {
    let records = manifest();
    assert!(records.len() >= 38, "fixtures missing: {}", records.len());
    for r in &records {
        let rel = r["file"].as_str().unwrap();
        let (binlog, _) = decode_and_check_structure(rel);
        assert_eq!(
            binlog.events.len() as u64,
            r["top_level_event_count"].as_u64().unwrap(),
            "{rel}: top-level events (fixture integrity)"
        );
        assert_eq!(binlog.crc32, r["checksum"] == "CRC32", "{rel}: checksum");
        if binlog.crc32 {
            assert!(
                binlog.events.iter().all(|e| crc_ok(e, true)),
                "{rel}: CRC32"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// blackbeam/rust_mysql_common files (`*.expected` state the values)
// ---------------------------------------------------------------------------------------------

#[test]
fn blackbeam_json_opaque_values() {
    let rel = format!("{BLACKBEAM}/json-opaque.binlog");
    let (binlog, changes) = decode_and_check_structure(&rel);
    // "event N" counts from 1 = FORMAT_DESCRIPTION_EVENT; column `a` of table foo.test.
    let expected = [
        (10, json!({"a": "base64:type15:VQ=="})),
        (12, json!({"b": "2012-03-18"})),
        (14, json!({"c": "2012-03-18 11:30:45.000000"})),
        (16, json!({"c": "87:31:46.654321"})),
        (18, json!({"d": "123.456"})),
        (20, json!({"e": "9.00"})),
        (22, json!({"e": [0, 1, true, false]})),
        (24, json!({"e": null})),
    ];
    for (n, value) in &expected {
        let e = event_no(&binlog, *n);
        assert_eq!(e.code, WRITE_ROWS_V2, "event {n}");
        let rows = rows_at(&changes, e.offset);
        assert_eq!(rows.len(), 1, "event {n}");
        let row = rows[0];
        assert_eq!(
            (row["db"].as_str(), row["table"].as_str()),
            (Some("foo"), Some("test"))
        );
        assert_eq!(row["op"], "c");
        assert_eq!(column_names(&row["after"]), ["a"], "event {n}");
        assert_eq!(&row["after"]["a"], value, "event {n}");
    }
    // "The origin asserts no other rows event exists."
    assert_eq!(changes.len(), expected.len());
}

#[test]
fn blackbeam_invisible_columns() {
    let rel = format!("{BLACKBEAM}/binlog-invisible-columns.000001");
    let (_, changes) = decode_and_check_structure(&rel);
    // WRITE_ROWS x2 + UPDATE_ROWS x1. CREATE TABLE t1 (f1 INT UNSIGNED INVISIBLE,
    // f2 INT UNSIGNED INVISIBLE, f3 INT, f4 TEXT, f5 BLOB, f6 BIGINT UNSIGNED INVISIBLE).
    let ops: Vec<&str> = changes.iter().map(|c| c["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["c", "c", "u"]);
    for c in &changes {
        for image in [&c["before"], &c["after"]] {
            if image.is_null() {
                continue;
            }
            // Invisible columns are in the row image like any other (COLUMN_NAME metadata).
            assert_eq!(column_names(image), ["f1", "f2", "f3", "f4", "f5", "f6"]);
            for unsigned in ["f1", "f2", "f6"] {
                let v = col(image, unsigned);
                assert!(v.is_null() || v.is_u64(), "{unsigned}: {v}");
            }
            assert!(col(image, "f3").is_i64(), "f3 INT");
            assert!(col(image, "f4").is_string(), "f4 TEXT");
            assert!(col(image, "f5")["base64"].is_string(), "f5 BLOB");
        }
        // No primary key metadata: every column is in the key.
        assert_eq!(c["key"], c["after"]);
    }
    // Values: not stated by the origin; they agree with the shared set's derived listing.
    assert_eq!(
        changes[0]["after"],
        json!({"f1": 1, "f2": 2, "f3": -3, "f4": "4", "f5": b64(&[5]), "f6": 6_000_000_000u64})
    );
    assert_eq!(
        changes[2]["after"],
        json!({"f1": 111, "f2": 222, "f3": -333, "f4": "444", "f5": b64(b"U"), "f6": null})
    );
    assert_eq!(changes[2]["before"], changes[1]["after"]);
}

#[test]
fn blackbeam_enum_and_set_with_member_metadata() {
    let rel = format!("{BLACKBEAM}/mysql-enum-string-set.000001");
    let (_, changes) = decode_and_check_structure(&rel);
    let d100 = "0123456789".repeat(10);
    let l = format!(
        "{0}012345678{0}012345678{1}",
        "0123456789".repeat(12),
        "0123456789".repeat(4)
    );
    assert_eq!(l.len(), 298);
    // f3 ENUM('var1','variant2','foo'): index 1 / 2; f4 SET('one','two','three','four'):
    // bitmask 0b0101 / 0b1010. ENUM_STR_VALUE / SET_STR_VALUE metadata present -> names.
    let first =
        json!({"f1": d100, "f2": l, "f3": "var1", "f4": ["one", "three"], "f5": "0123456789"});
    let second =
        json!({"f1": "field1", "f2": "field_2", "f3": "variant2", "f4": ["two", "four"], "f5": l});
    assert_eq!(changes.len(), 3);
    let c = &changes[0];
    assert_eq!(
        (c["op"].as_str(), c["db"].as_str(), c["table"].as_str()),
        (Some("c"), Some("mysql"), Some("t"))
    );
    assert_eq!(c["after"], first);
    let u = &changes[1];
    assert_eq!(u["op"], "u");
    assert_eq!(u["before"], first);
    assert_eq!(u["after"], second);
    let d = &changes[2];
    assert_eq!(d["op"], "d");
    assert_eq!(d["before"], second);
    // No primary key metadata: every column is in the key.
    assert_eq!(c["key"], first);
    assert_eq!(u["key"], second);
    assert_eq!(d["key"], second);
}

#[test]
fn blackbeam_bit_columns() {
    let rel = format!("{BLACKBEAM}/mysql_type_bit.000001");
    let (_, changes) = decode_and_check_structure(&rel);
    // CREATE TABLE foo(a BIT(3), b TEXT, c BIT(8)); a = [0b100], b = "foo", c = [0b100000].
    assert_eq!(changes.len(), 1);
    let c = &changes[0];
    assert_eq!(
        (c["op"].as_str(), c["table"].as_str()),
        (Some("c"), Some("foo"))
    );
    assert!(c["before"].is_null());
    assert_eq!(
        c["after"],
        json!({"a": b64(&[0b100]), "b": "foo", "c": b64(&[0b10_0000])})
    );
}

#[test]
fn blackbeam_negative_time_over_24_hours() {
    let rel = format!("{BLACKBEAM}/time_issue.000001");
    let (_, changes) = decode_and_check_structure(&rel);
    // Single WRITE row, single TIME(0) column: negative, 21 days 3:48:27 = '-507:48:27'.
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["op"], "c");
    assert_eq!(changes[0]["after"], json!({"@1": "-507:48:27"}));
}

#[test]
fn blackbeam_minimal_row_metadata_unsigned_int() {
    let rel = format!("{BLACKBEAM}/minimal_row_metadata.000001");
    let (_, changes) = decode_and_check_structure(&rel);
    // binlog_row_metadata=MINIMAL: no names, so mysqlbinlog-style 1-based "@N";
    // binlog_row_image=MINIMAL: the after image holds columns 1, 3 and 5 only.
    assert_eq!(changes.len(), 1);
    let after = &changes[0]["after"];
    assert_eq!(column_names(after), ["@1", "@3", "@5"]);
    // Origin's 0-based "@4" = mysqlbinlog @5: unsigned INT 3230202323 (> i32::MAX).
    assert_eq!(col(after, "@5"), &json!(3_230_202_323u64));
    // Origin's "@2" = @3: a CHAR column in utf8mb4_0900_ai_ci, so text, not bytes.
    assert!(col(after, "@3").is_string(), "@3: {after}");
}

/// float32 little-endian bytes -> the floats the JSON array must hold.
fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn as_f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a vector: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn blackbeam_vector_columns() {
    let rel = format!("{BLACKBEAM}/vector.binlog");
    let (binlog, changes) = decode_and_check_structure(&rel);
    // Event #12 (1 = FDE) is a WRITE on dtb.foo with two rows.
    let e = event_no(&binlog, 12);
    assert_eq!(e.code, WRITE_ROWS_V2);
    let rows = rows_at(&changes, e.offset);
    assert_eq!(rows.len(), 2);
    let want = [
        (1, [205, 204, 140, 63, 205, 204, 12, 64, 51, 51, 83, 64]),
        (2, [0, 0, 128, 63, 0, 0, 128, 191, 0, 0, 0, 0]),
    ];
    for (row, (id, bytes)) in rows.iter().zip(want) {
        assert_eq!(
            (row["db"].as_str(), row["table"].as_str()),
            (Some("dtb"), Some("foo"))
        );
        assert_eq!(column_names(&row["after"]), ["id", "vector_column"]);
        assert_eq!(row["after"]["id"], id);
        let got = as_f32s(&row["after"]["vector_column"]);
        let want = f32s(&bytes);
        assert_eq!(
            got.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            "id {id}: {got:?} vs {want:?}"
        );
        // SIMPLE_PRIMARY_KEY metadata: the key is the primary key only.
        assert_eq!(row["key"], json!({"id": id}));
    }
    // VECTOR_DIMENSIONALITY: dtb.foo [3], dtb.bar [2, 4].
    for c in &changes {
        let image = if c["op"] == "d" {
            &c["before"]
        } else {
            &c["after"]
        };
        let dims: Vec<usize> = ["vector_column", "vector_column2"]
            .iter()
            .filter_map(|n| image.get(*n))
            .map(|v| v.as_array().unwrap().len())
            .collect();
        match c["table"].as_str().unwrap() {
            "foo" => assert_eq!(dims, [3], "{c}"),
            "bar" => assert_eq!(dims, [2, 4], "{c}"),
            t => panic!("unexpected table {t}"),
        }
    }
}

#[test]
fn blackbeam_vector_table_text_column_is_text() {
    // CREATE TABLE bar(id SERIAL, vector_column VECTOR(2) NOT NULL, foo TEXT,
    // vector_column2 VECTOR(4) NOT NULL) in a utf8mb4 database. The TABLE_MAP's DEFAULT_CHARSET
    // is "default 63 (binary), character column #1 -> 255 (utf8mb4_0900_ai_ci)"; MySQL counts
    // VECTOR columns as character columns (sql/log_event.cc is_character_type), so #1 is `foo`.
    let rel = format!("{BLACKBEAM}/vector.binlog");
    let changes = decode(&rel);
    let bar_id2: Vec<&Value> = changes
        .iter()
        .filter(|c| c["table"] == "bar" && c["key"]["id"] == 2)
        .collect();
    assert_eq!(bar_id2.len(), 3, "two writes and one delete of bar id 2");
    for c in bar_id2 {
        let image = if c["op"] == "d" {
            &c["before"]
        } else {
            &c["after"]
        };
        assert_eq!(col(image, "foo"), "bar", "{c}");
    }
}

#[test]
fn blackbeam_tagged_and_untagged_gtids() {
    let rel = format!("{BLACKBEAM}/binlog_transaction_with_GTID_TAG.000001");
    let (binlog, changes) = decode_and_check_structure(&rel);
    assert_eq!(
        codes(&binlog.events),
        [
            FORMAT_DESCRIPTION,
            PREVIOUS_GTIDS,
            GTID_TAGGED,
            QUERY,
            TABLE_MAP,
            WRITE_ROWS_V2,
            XID,
            ROTATE
        ]
    );
    // GTID_TAGGED_LOG_EVENT: tag "mytag", sid 55778904-0299-11f1-b1b8-4ef0c4956feb, gno 3.
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0]["pos"]["gtid"],
        "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3"
    );

    // 8.0.40 untagged PREVIOUS_GTIDS only: no transaction, nothing to emit, no error.
    let rel = format!("{BLACKBEAM}/binlog_transaction_previous_GTID_no_tag.000001");
    let (binlog, changes) = decode_and_check_structure(&rel);
    assert_eq!(
        codes(&binlog.events),
        [FORMAT_DESCRIPTION, PREVIOUS_GTIDS, ROTATE]
    );
    assert!(changes.is_empty());
}

#[test]
fn blackbeam_transaction_compression() {
    let rel = format!("{BLACKBEAM}/transaction_compression.000001");
    let (binlog, changes) = decode_and_check_structure(&rel);
    let payload = binlog
        .events
        .iter()
        .find(|e| e.code == TRANSACTION_PAYLOAD)
        .expect("payload");
    // The payload decompresses into exactly QUERY, TABLE_MAP, WRITE_ROWS (v2), XID.
    assert_eq!(
        codes(&payload.inner),
        [QUERY, TABLE_MAP, WRITE_ROWS_V2, XID]
    );
    // Inner events have no CRC32 trailer and log_pos = 0: sizes add up exactly.
    let inner_len: usize = payload.inner.iter().map(|e| e.raw.len()).sum();
    assert_eq!(inner_len, payload_bytes(&payload.body).len());
    assert!(payload.inner.iter().all(|e| u32le(&e.raw[13..]) == 0));
    // So: the one WRITE_ROWS event inside yields the file's only changes, all inserts at the
    // payload's offset. (One row with @1 = 1: not origin-stated, agrees with the derived listing.)
    assert!(changes.iter().all(|c| c["op"] == "c"));
    assert_eq!(rows_at(&changes, payload.offset).len(), changes.len());
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["after"], json!({"@1": 1}));
    assert_eq!(
        (changes[0]["db"].as_str(), changes[0]["table"].as_str()),
        (Some("test"), Some("tb1"))
    );
}

#[test]
fn blackbeam_json_and_partial_json_update() {
    // Not origin-stated (the origin only round-trips the events); checked for consistency with
    // the table's own definition in the file: CREATE TABLE t(id INT PRIMARY KEY AUTO_INCREMENT,
    // json_col JSON, name VARCHAR(100) AS (json_col->>'$.name'), age INT AS (json_col->'$.age')).
    let rel = format!("{BLACKBEAM}/json.binlog.000001");
    let (binlog, changes) = decode_and_check_structure(&rel);
    let mut full_images = 0;
    for c in &changes {
        for image in [&c["before"], &c["after"]] {
            if image.get("@2").is_some_and(|j| j.get("name").is_some()) {
                // Full image: generated columns agree with the JSON document.
                assert_eq!(column_names(image), ["@1", "@2", "@3", "@4"]);
                assert_eq!(image["@3"], image["@2"]["name"], "{c}");
                assert_eq!(image["@4"], image["@2"]["age"], "{c}");
                full_images += 1;
            }
        }
    }
    assert_eq!(
        full_images,
        6 + 2 * 6,
        "6 inserted rows, 6 fully-logged updates"
    );

    // One PARTIAL_UPDATE_ROWS_EVENT (value_options = PARTIAL_JSON_UPDATES) with 6 rows:
    // before image = primary key only, after image = changed columns, JSON as a diff.
    let partial = binlog
        .events
        .iter()
        .find(|e| e.code == PARTIAL_UPDATE_ROWS)
        .expect("PARTIAL_UPDATE_ROWS event");
    let rows = rows_at(&changes, partial.offset);
    assert_eq!(rows.len(), 6);
    for (i, c) in rows.iter().enumerate() {
        assert_eq!(c["op"], "u");
        assert_eq!(c["before"], json!({"@1": i as u64 + 1}), "{c}");
        assert_eq!(column_names(&c["after"]), ["@2", "@3", "@4"], "{c}");
        let diff = &c["after"]["@2"]["json_diff"];
        let age = &c["after"]["@4"];
        assert!(age.is_i64(), "{c}");
        assert_eq!(
            diff,
            &json!([{"op": "replace", "path": "$.age", "value": age}]),
            "{c}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// osheroff/mysql-binlog-connector-java files
// ---------------------------------------------------------------------------------------------

#[test]
fn osheroff_checksum_crc32_and_none() {
    // 303 top-level events, binlog_checksum=CRC32.
    let rel = format!("{OSHEROFF}/mysql-bin.checksum-crc32");
    let (binlog, changes) = decode_and_check_structure(&rel);
    assert_eq!(binlog.events.len(), 303);
    assert!(binlog.crc32);
    assert!(binlog.events.iter().all(|e| crc_ok(e, true)));
    assert_eq!(rows_events(&binlog).len(), 34 + 20 + 6);
    assert!(changes.len() >= 60);

    // 191 top-level events, binlog_checksum=NONE: the FDE still ends with alg byte 0 + 4 bytes.
    let rel = format!("{OSHEROFF}/mysql-bin.checksum-none");
    let (binlog, changes) = decode_and_check_structure(&rel);
    assert_eq!(binlog.events.len(), 191);
    assert!(!binlog.crc32);
    assert_eq!(rows_events(&binlog).len(), 34 + 2);
    assert!(changes.len() >= 36);
}

#[test]
fn osheroff_compressed_update() {
    let rel = format!("{OSHEROFF}/mysql-bin.compressed");
    let (binlog, changes) = decode_and_check_structure(&rel);
    // Exactly 5 top-level events: FDE, PREVIOUS_GTIDS, ANONYMOUS_GTID, TRANSACTION_PAYLOAD, ROTATE.
    assert_eq!(
        codes(&binlog.events),
        [
            FORMAT_DESCRIPTION,
            PREVIOUS_GTIDS,
            ANONYMOUS_GTID,
            TRANSACTION_PAYLOAD,
            ROTATE
        ]
    );
    let payload = &binlog.events[3];
    assert_eq!(
        codes(&payload.inner),
        [QUERY, TABLE_MAP, UPDATE_ROWS_V2, XID]
    );
    assert!(!changes.is_empty());
    for c in &changes {
        assert_eq!(c["op"], "u");
        assert_eq!(c["pos"]["offset"], payload.offset);
        assert_eq!(
            (c["db"].as_str(), c["table"].as_str()),
            (Some("demo"), Some("movies"))
        );
        assert_ne!(c["before"], c["after"], "an UPDATE changes something");
        assert!(c["pos"]["gtid"].is_null(), "anonymous GTID");
    }
}

#[test]
fn osheroff_aurora_unknown_ignorable_event_is_skipped() {
    let rel = format!("{OSHEROFF}/mysql-bin.aurora-padding");
    let binlog = walk(&rel);
    // SHOW BINLOG EVENTS: Format_desc 4, Previous_gtids 185, Anonymous_Gtid 216,
    // Aurora_padding 281 (type 100, LOG_EVENT_IGNORABLE_F), Query 1209.
    let layout: Vec<(u64, u8)> = binlog.events.iter().map(|e| (e.offset, e.code)).collect();
    assert_eq!(
        layout,
        [
            (4, FORMAT_DESCRIPTION),
            (185, PREVIOUS_GTIDS),
            (216, ANONYMOUS_GTID),
            (281, 100),
            (1209, QUERY)
        ]
    );
    assert_ne!(binlog.events[3].flags & 0x80, 0, "ignorable flag");
    // The reader continues past the unknown event to the QUERY at 1209 and the end.
    let run = run_decode(&[&fixture(&rel)]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "");
}

// ---------------------------------------------------------------------------------------------
// apecloud/mysql-binlog-connector-rust files (names lie: 000057 is 8.0.31, 000080 is 5.7.40)
// ---------------------------------------------------------------------------------------------

#[test]
fn apecloud_binlogs() {
    // 8 top-level events; GTIDs + TRANSACTION_PAYLOAD with ROWS_QUERY / UPDATE / WRITE inside.
    let rel = format!("{APECLOUD}/mysql-bin.000057");
    let (binlog, changes) = decode_and_check_structure(&rel);
    assert_eq!(binlog.events.len(), 8);
    let payloads: Vec<&Event> = binlog
        .events
        .iter()
        .filter(|e| e.code == TRANSACTION_PAYLOAD)
        .collect();
    assert_eq!(payloads.len(), 2);
    assert_eq!(
        codes(&payloads[0].inner),
        [QUERY, ROWS_QUERY, TABLE_MAP, WRITE_ROWS_V2, XID]
    );
    assert_eq!(
        codes(&payloads[1].inner),
        [
            QUERY,
            ROWS_QUERY,
            TABLE_MAP,
            UPDATE_ROWS_V2,
            ROWS_QUERY,
            TABLE_MAP,
            WRITE_ROWS_V2,
            XID
        ]
    );
    for c in &changes {
        assert!(
            c["pos"]["gtid"]
                .as_str()
                .is_some_and(|g| g.starts_with("76f3e7be-6720-11ed-9cad-0242ac110002:")),
            "{c}"
        );
    }

    // 37 top-level events, 5.7.40 with GTIDs.
    let rel = format!("{APECLOUD}/mysql-bin.000080");
    let (binlog, changes) = decode_and_check_structure(&rel);
    assert_eq!(binlog.events.len(), 37);
    assert!(changes.iter().all(|c| c["pos"]["gtid"].is_string()));
}

// ---------------------------------------------------------------------------------------------
// rust-us/mysql-cdc-rs files against Oracle mysqlbinlog -vv dumps and SHOW BINLOG EVENTS
// ---------------------------------------------------------------------------------------------

/// One column value as `mysqlbinlog -vv` prints it: `@N=<value> /* TYPE meta=.. nullable=.. is_null=.. */`.
#[derive(Debug)]
struct DumpValue {
    index: usize,
    text: String,
    ty: String,
    is_null: bool,
}

#[derive(Debug)]
struct DumpRow {
    op: &'static str,
    db: String,
    table: String,
    gtid: Gtid,
    before: Vec<DumpValue>,
    after: Vec<DumpValue>,
}

#[derive(Debug, Default)]
struct Dump {
    events: Vec<RowsEvent>,
    rows: Vec<DumpRow>,
}

fn backquoted_table(s: &str) -> (String, String) {
    // "`db`.`table`"
    let parts: Vec<&str> = s.trim().split('`').collect();
    assert!(parts.len() >= 5 && parts[2] == ".", "table name: {s}");
    (parts[1].to_string(), parts[3].to_string())
}

fn parse_dump_value(line: &str) -> DumpValue {
    let (lhs, rest) = line.split_once('=').expect("@N=value");
    let index = lhs.trim().trim_start_matches('@').parse().expect("@N");
    let comment_at = rest.rfind("/* ").expect("type comment");
    let text = rest[..comment_at].trim_end().to_string();
    let comment = rest[comment_at + 3..]
        .trim_end()
        .trim_end_matches("*/")
        .trim();
    let ty = comment.split(" meta=").next().unwrap().to_string();
    DumpValue {
        index,
        text,
        ty,
        is_null: comment.contains("is_null=1"),
    }
}

fn parse_dump(text: &str) -> Dump {
    let mut dump = Dump::default();
    let mut offset = 0u64;
    let mut gtid = Gtid::Anonymous;
    let mut tables = std::collections::HashMap::new();
    let mut in_where = false;
    for line in text.lines() {
        if let Some(at) = line.strip_prefix("# at ") {
            offset = at.trim().parse().expect("# at N");
        } else if let Some(rest) = line.strip_prefix("### ") {
            let start = [
                ("INSERT INTO ", "c"),
                ("UPDATE ", "u"),
                ("DELETE FROM ", "d"),
            ]
            .into_iter()
            .find_map(|(p, op)| rest.strip_prefix(p).map(|t| (op, t)));
            if let Some((op, name)) = start {
                let (db, table) = backquoted_table(name);
                dump.rows.push(DumpRow {
                    op,
                    db,
                    table,
                    gtid: gtid.clone(),
                    before: Vec::new(),
                    after: Vec::new(),
                });
            } else if rest == "WHERE" {
                in_where = true;
            } else if rest == "SET" {
                in_where = false;
            } else {
                let value = parse_dump_value(rest.trim_start());
                let row = dump.rows.last_mut().expect("value before statement");
                if in_where {
                    row.before.push(value);
                } else {
                    row.after.push(value);
                }
            }
        } else if let Some(rest) = line.strip_prefix("SET @@SESSION.GTID_NEXT= '") {
            let g = rest.split('\'').next().unwrap();
            match g {
                "ANONYMOUS" => gtid = Gtid::Anonymous,
                "AUTOMATIC" => {}
                g => gtid = Gtid::Known(g.to_string()),
            }
        } else if let Some(rest) = line.strip_prefix("#").map(str::trim_start) {
            if let Some(tm) = rest.strip_prefix("Table_map: ") {
                let (name, id) = tm.split_once(" mapped to number ").expect("Table_map");
                tables.insert(id.trim().to_string(), backquoted_table(name));
                continue;
            }
            for (kind, op) in [
                ("Write_rows", "c"),
                ("Update_rows", "u"),
                ("Delete_rows", "d"),
            ] {
                if let Some(r) = rest.strip_prefix(kind) {
                    let id = r.split("table id ").nth(1).expect("table id");
                    let id = id.split_whitespace().next().unwrap();
                    let (db, table) = tables[id].clone();
                    dump.events.push(RowsEvent {
                        offset,
                        op,
                        db,
                        table,
                        gtid: gtid.clone(),
                    });
                }
            }
        }
    }
    dump
}

/// A quoted mysqlbinlog string: bytes < 0x20 are printed as \xNN, everything else raw.
fn unquote(text: &str) -> Vec<u8> {
    let inner = text
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .unwrap_or_else(|| panic!("not a quoted string: {text}"));
    let b = inner.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
            let hex = std::str::from_utf8(&b[i + 2..i + 4]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// "YYYY-MM-DDTHH:MM:SS[.fff]Z" -> "seconds[.fff]" as mysqlbinlog prints TIMESTAMP.
fn epoch_text(ts: &str) -> String {
    let s = ts
        .strip_suffix('Z')
        .unwrap_or_else(|| panic!("not UTC: {ts}"));
    let (date, time) = s.split_once('T').expect("T");
    let (time, frac) = match time.split_once('.') {
        Some((t, f)) => (t, Some(f)),
        None => (time, None),
    };
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let t: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    let secs = days_from_civil(d[0], d[1], d[2]) * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    match frac {
        Some(f) => format!("{secs}.{f}"),
        None => secs.to_string(),
    }
}

/// Compares one mysqlbinlog-rendered value with the decoder's JSON value.
fn assert_dump_value(ctx: &str, dv: &DumpValue, got: &Value) {
    let ctx = format!(
        "{ctx} @{}={} /* {} */: decoded {got}",
        dv.index, dv.text, dv.ty
    );
    if dv.is_null {
        assert!(got.is_null(), "{ctx}");
        return;
    }
    let ty = dv.ty.split('(').next().unwrap();
    match ty {
        "TINYINT" | "SHORTINT" | "MEDIUMINT" | "INT" | "LONGINT" => {
            // Signed rendering, plus " (unsigned)" when the two differ: accept either.
            let mut accepted = vec![dv.text.split_whitespace().next().unwrap().to_string()];
            if let Some((_, u)) = dv.text.split_once(" (") {
                accepted.push(u.trim_end_matches(')').to_string());
            }
            assert!(got.is_i64() || got.is_u64(), "{ctx}");
            assert!(accepted.contains(&got.to_string()), "{ctx}");
        }
        "DECIMAL" | "NEWDECIMAL" => assert_eq!(got.as_str(), Some(dv.text.as_str()), "{ctx}"),
        "FLOAT" | "DOUBLE" => {
            let want: f64 = dv.text.parse().unwrap();
            let got = got.as_f64().unwrap_or_else(|| panic!("{ctx}"));
            let tolerance = if ty == "FLOAT" { 1e-6 } else { 1e-15 };
            assert!(
                (got - want).abs() <= tolerance * want.abs().max(1.0),
                "{ctx}"
            );
        }
        "VARSTRING" | "STRING" | "BLOB" | "TEXT" => {
            let want = unquote(&dv.text);
            let bytes = match got {
                Value::String(s) => s.as_bytes().to_vec(),
                Value::Object(_) => unb64(got),
                _ => panic!("{ctx}"),
            };
            assert_eq!(bytes, want, "{ctx}");
        }
        "DATE" => {
            let want = String::from_utf8(unquote(&dv.text))
                .unwrap()
                .replace(':', "-");
            if want == "0000-00-00" {
                assert!(got.is_null(), "{ctx}");
            } else {
                assert_eq!(got.as_str(), Some(want.as_str()), "{ctx}");
            }
        }
        "DATETIME" | "TIME" => {
            let want = String::from_utf8(unquote(&dv.text)).unwrap();
            assert_eq!(got.as_str(), Some(want.as_str()), "{ctx}");
        }
        "TIMESTAMP" => {
            let got = got.as_str().unwrap_or_else(|| panic!("{ctx}"));
            assert_eq!(epoch_text(got), dv.text, "{ctx}");
        }
        "YEAR" => assert_eq!(got.to_string(), dv.text, "{ctx}"),
        _ => panic!(
            "{ctx}: the dump parser does not know mysqlbinlog type {}",
            dv.ty
        ),
    }
}

/// Looks up mysqlbinlog's @N in a decoded image: by name, else by position when the decoder
/// has real column names and the image is complete.
fn dump_column<'a>(image: &'a Value, dv: &DumpValue, columns: usize) -> &'a Value {
    if let Some(v) = image.get(format!("@{}", dv.index)) {
        return v;
    }
    let obj = image.as_object().unwrap();
    assert_eq!(obj.len(), columns, "no @{} in {image}", dv.index);
    obj.values().nth(dv.index - 1).unwrap()
}

fn assert_dump_image(ctx: &str, values: &[DumpValue], image: &Value) {
    assert_eq!(
        image.as_object().map(|o| o.len()),
        Some(values.len()),
        "{ctx}: column count of {image}"
    );
    for dv in values {
        assert_dump_value(ctx, dv, dump_column(image, dv, values.len()));
    }
}

/// `SHOW BINLOG EVENTS` rows events (offset, kind, table), GTIDs included.
fn parse_show(text: &str) -> (usize, Vec<RowsEvent>) {
    let mut events = Vec::new();
    let mut count = 0;
    let mut gtid = Gtid::Anonymous;
    let mut tables = std::collections::HashMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 7 || cells[2].parse::<u64>().is_err() {
            continue;
        }
        count += 1;
        let (offset, kind, info) = (cells[2].parse().unwrap(), cells[3], cells[6]);
        match kind {
            "Gtid" | "Anonymous_Gtid" => {
                let g = info.split('\'').nth(1).expect("GTID_NEXT");
                gtid = if g == "ANONYMOUS" {
                    Gtid::Anonymous
                } else {
                    Gtid::Known(g.to_string())
                };
            }
            "Table_map" => {
                // table_id: 94 (test.LINEITEM)
                let id = info.split_whitespace().nth(1).unwrap().to_string();
                let name = info.split('(').nth(1).unwrap().trim_end_matches(')');
                let (db, table) = name.split_once('.').unwrap();
                tables.insert(id, (db.to_string(), table.to_string()));
            }
            _ => {
                let op = match kind {
                    "Write_rows" => "c",
                    "Update_rows" => "u",
                    "Delete_rows" => "d",
                    _ => continue,
                };
                let id = info.split_whitespace().nth(1).unwrap();
                let (db, table) = tables[id].clone();
                events.push(RowsEvent {
                    offset,
                    op,
                    db,
                    table,
                    gtid: gtid.clone(),
                });
            }
        }
    }
    (count, events)
}

/// The rust-us case directories and their binlog (log.bin or binlog.NNNNNN).
fn rust_us_cases() -> Vec<(String, String)> {
    let mut cases = Vec::new();
    for version in ["5.7", "8.0"] {
        let dir = fixture(&format!("{RUST_US}/{version}"));
        for case in std::fs::read_dir(&dir).unwrap() {
            let case = case.unwrap().path();
            for f in std::fs::read_dir(&case).unwrap() {
                let name = f.unwrap().file_name().into_string().unwrap();
                if name == "log.bin" || name.starts_with("binlog.") {
                    let case_rel = format!(
                        "{RUST_US}/{version}/{}",
                        case.file_name().unwrap().to_str().unwrap()
                    );
                    cases.push((case_rel, name));
                }
            }
        }
    }
    cases.sort();
    cases
}

#[test]
fn rust_us_mysqlbinlog_dumps() {
    let cases = rust_us_cases();
    assert_eq!(cases.len(), 21);
    let (mut dumps, mut verbose_rows) = (0, 0);
    for (case, binlog_name) in &cases {
        let rel = format!("{case}/{binlog_name}");
        let (binlog, changes) = decode_and_check_structure(&rel);
        let dump_path = fixture(&format!("{case}/dump.txt"));
        if dump_path.exists() {
            dumps += 1;
            let dump = parse_dump(&std::fs::read_to_string(&dump_path).unwrap());
            // The events mysqlbinlog lists are the ones the walker found.
            let walked: Vec<(u64, &str)> = rows_events(&binlog)
                .iter()
                .map(|e| (e.offset, e.op))
                .collect();
            let dumped: Vec<(u64, &str)> = dump.events.iter().map(|e| (e.offset, e.op)).collect();
            assert_eq!(walked, dumped, "{case}: rows events in dump.txt");
            assert_rows_events(
                &format!("{case} dump.txt"),
                binlog_name,
                &changes,
                &dump.events,
            );
            if !dump.rows.is_empty() {
                // -vv row listing: one change per listed row, value by value.
                assert_eq!(changes.len(), dump.rows.len(), "{case}: row count");
                for (i, (c, row)) in changes.iter().zip(&dump.rows).enumerate() {
                    let ctx = format!("{case} row #{i}");
                    assert_eq!(c["op"], row.op, "{ctx}");
                    assert_eq!(c["db"], row.db.as_str(), "{ctx}");
                    assert_eq!(c["table"], row.table.as_str(), "{ctx}");
                    match &row.gtid {
                        Gtid::Known(g) => assert_eq!(c["pos"]["gtid"], g.as_str(), "{ctx}"),
                        _ => assert!(c["pos"]["gtid"].is_null(), "{ctx}"),
                    }
                    if row.before.is_empty() {
                        assert!(c["before"].is_null(), "{ctx}");
                    } else {
                        assert_dump_image(&format!("{ctx} before"), &row.before, &c["before"]);
                    }
                    if row.after.is_empty() {
                        assert!(c["after"].is_null(), "{ctx}");
                    } else {
                        assert_dump_image(&format!("{ctx} after"), &row.after, &c["after"]);
                    }
                    verbose_rows += 1;
                }
            }
        }
        let show_path = fixture(&format!("{case}/show.txt"));
        if show_path.exists() {
            let (count, events) = parse_show(&std::fs::read_to_string(&show_path).unwrap());
            // README trap 7: 19_30's show.txt lists a STOP event the copied file lacks.
            let extra = usize::from(case.ends_with("19_30_Table_map_event_Write_rows_log_event"));
            assert_eq!(
                count,
                binlog.events.len() + extra,
                "{case}: events in show.txt"
            );
            assert_rows_events(&format!("{case} show.txt"), binlog_name, &changes, &events);
        }
    }
    assert_eq!(dumps, 20, "dump.txt files");
    assert_eq!(verbose_rows, 13, "rows listed with -vv");
}

#[test]
fn rust_us_update_without_row_listing() {
    // 5.7/31_update_rows_v2/dump.txt is a hexdump without -vv: it fixes the event (Update_rows at
    // 369 on `default`.`boxercrab`, GTID e3e2a4ee-b6dc-11ea-8bcf-0242ac150002:1), checked by
    // rust_us_mysqlbinlog_dumps. The values come from its sql.txt (origin SQL, not mysqlbinlog):
    // ('abc' x5, FLOAT 1.0, DOUBLE 2.0, DECIMAL(10,4) 3.0) updated to ('xd' x5, 4.0, 4.0, 4.0).
    let changes = decode(&format!("{RUST_US}/5.7/31_update_rows_v2/log.bin"));
    assert_eq!(changes.len(), 1);
    let c = &changes[0];
    assert_eq!(
        c["before"],
        json!({"@1": 1, "@2": "abc", "@3": "abc", "@4": "abc", "@5": "abc", "@6": "abc",
               "@7": 1.0, "@8": 2.0, "@9": "3.0000"})
    );
    assert_eq!(
        c["after"],
        json!({"@1": 1, "@2": "xd", "@3": "xd", "@4": "xd", "@5": "xd", "@6": "xd",
               "@7": 4.0, "@8": 4.0, "@9": "4.0000"})
    );
}

#[test]
fn dump_parser_normalises_mysqlbinlog_renderings() {
    // The parser itself, on renderings the fixtures do not all exercise.
    let v = parse_dump_value("@3=-1 (4294967295) /* INT meta=0 nullable=1 is_null=0 */");
    assert_dump_value("unsigned", &v, &json!(4_294_967_295u64));
    assert_dump_value("signed", &v, &json!(-1));
    let v = parse_dump_value(
        "@2='it''s /* x */ \\x0a' /* VARSTRING(40) meta=40 nullable=0 is_null=0 */",
    );
    assert_dump_value("string", &v, &json!("it''s /* x */ \n"));
    let v = parse_dump_value("@1=NULL /* VARSTRING(40) meta=40 nullable=1 is_null=1 */");
    assert_dump_value("null", &v, &Value::Null);
    let v = parse_dump_value("@4='1990:08:01' /* DATE meta=0 nullable=0 is_null=0 */");
    assert_dump_value("date", &v, &json!("1990-08-01"));
    let v = parse_dump_value("@5=1668951630 /* TIMESTAMP(0) meta=0 nullable=0 is_null=0 */");
    assert_dump_value("timestamp", &v, &json!("2022-11-20T13:40:30Z"));
    let v = parse_dump_value("@6=1.5                  /* FLOAT meta=4 nullable=0 is_null=0 */");
    assert_dump_value("float", &v, &json!(1.5));
    let v = parse_dump_value("@7=3.0000 /* DECIMAL(10,4) meta=2564 nullable=1 is_null=0 */");
    assert_dump_value("decimal", &v, &json!("3.0000"));
}

// ---------------------------------------------------------------------------------------------
// FDE in-use flag and checksums
// ---------------------------------------------------------------------------------------------

#[test]
fn files_copied_in_use_verify_with_flag_cleared() {
    let in_use: Vec<String> = manifest()
        .iter()
        .filter(|r| r["fde_in_use_flag"] == true)
        .map(|r| r["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(in_use.len(), 8, "{in_use:?}");
    for rel in &in_use {
        let binlog = walk(rel);
        let fde = &binlog.events[0];
        assert_eq!(fde.code, FORMAT_DESCRIPTION);
        assert_ne!(fde.flags & LOG_EVENT_BINLOG_IN_USE_F, 0, "{rel}");
        // The trap is real: the FDE's CRC only verifies with the flag cleared.
        assert!(crc_ok(fde, true), "{rel}");
        assert!(!crc_ok(fde, false), "{rel}");
        let run = run_decode(&[&fixture(rel)]);
        assert_eq!(run.code, Some(0), "{rel}: {}", run.stderr);
        assert!(
            !run.stderr.to_lowercase().contains("checksum"),
            "{rel}: {}",
            run.stderr
        );
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("decode_fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn in_use_flag_toggled_either_way_still_verifies() {
    // MySQL clears the flag on close without rewriting the CRC, so the flag is never covered.
    for (rel, name) in [
        (
            format!("{BLACKBEAM}/json-opaque.binlog"),
            "flag-cleared.binlog",
        ),
        (format!("{BLACKBEAM}/vector.binlog"), "flag-set.binlog"),
    ] {
        let mut bytes = std::fs::read(fixture(&rel)).unwrap();
        bytes[4 + 17] ^= LOG_EVENT_BINLOG_IN_USE_F as u8;
        let path = scratch(name);
        std::fs::write(&path, &bytes).unwrap();
        let expected: Vec<Value> = decode(&rel)
            .into_iter()
            .map(|mut c| {
                c["pos"]["file"] = json!(name);
                c
            })
            .collect();
        assert_eq!(decode_paths(&[&path]), expected, "{rel}");
    }
}

#[test]
fn several_files_in_one_run() {
    let a = fixture(&format!("{RUST_US}/5.7/32_delete_rows_v2/log.bin"));
    let b = fixture(&format!("{BLACKBEAM}/time_issue.000001"));
    let both = decode_paths(&[&a, &b]);
    let mut separately = decode_paths(&[&a]);
    separately.extend(decode_paths(&[&b]));
    assert_eq!(both, separately);
    assert_eq!(both.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Corrupt, truncated and foreign input
// ---------------------------------------------------------------------------------------------

/// `text` mentions the number `n` (not as part of a longer number).
fn mentions_number(text: &str, n: u64) -> bool {
    let n = n.to_string();
    text.match_indices(&n).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + n.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

struct Failure {
    stdout: String,
    stderr: String,
    /// stderr in lower case with the scratch file's name cut out, for keyword checks.
    message: String,
}

/// Writes `bytes` to a scratch file, runs decode, requires a clean failure naming the file.
fn decode_broken(name: &str, bytes: &[u8]) -> Failure {
    let path = scratch(name);
    std::fs::write(&path, bytes).unwrap();
    let run = run_decode(&[&path]);
    assert!(
        run.code.is_some_and(|c| c != 0),
        "{name}: decode should fail:\n{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(name),
        "{name}: stderr names the file:\n{}",
        run.stderr
    );
    Failure {
        message: run.stderr.replace(name, "<file>").to_lowercase(),
        stdout: run.stdout,
        stderr: run.stderr,
    }
}

#[test]
fn corrupt_event_fails_the_checksum() {
    let rel = format!("{RUST_US}/5.7/30_write_rows_v2/log.bin");
    let original = std::fs::read(fixture(&rel)).unwrap();
    let binlog = walk_bytes(&original);
    assert!(binlog.crc32);
    let write = binlog
        .events
        .iter()
        .find(|e| e.code == WRITE_ROWS_V2)
        .unwrap();
    let fde = &binlog.events[0];

    // A flipped byte inside the row image; inside the CRC trailer; inside the FDE (in its
    // create timestamp: a damaged server version would change whether the file has checksums).
    let cases = [
        (
            "flipped-row.bin",
            write.offset,
            write.offset as usize + HEADER_LEN + 12,
        ),
        (
            "flipped-crc.bin",
            write.offset,
            write.offset as usize + write.raw.len() - 2,
        ),
        (
            "flipped-fde.bin",
            fde.offset,
            fde.offset as usize + HEADER_LEN + 2 + 50 + 1,
        ),
    ];
    for (name, event_offset, byte) in cases {
        let mut bytes = original.clone();
        bytes[byte] ^= 0x5a;
        let run = decode_broken(name, &bytes);
        assert!(run.message.contains("checksum"), "{name}:\n{}", run.stderr);
        assert!(
            mentions_number(&run.stderr, event_offset),
            "{name}: offset {event_offset}:\n{}",
            run.stderr
        );
        // Nothing from the corrupt event (or after it) is emitted.
        assert!(
            !run.stdout.contains(&format!("\"offset\":{}", write.offset)),
            "{name}: {}",
            run.stdout
        );
    }

    // Same inside a compressed transaction: the TRANSACTION_PAYLOAD_EVENT's CRC fails.
    let rel = format!("{BLACKBEAM}/transaction_compression.000001");
    let mut bytes = std::fs::read(fixture(&rel)).unwrap();
    let payload = walk_bytes(&bytes)
        .events
        .into_iter()
        .find(|e| e.code == TRANSACTION_PAYLOAD)
        .unwrap();
    bytes[payload.offset as usize + HEADER_LEN + 40] ^= 0x01;
    let run = decode_broken("flipped-payload.bin", &bytes);
    assert!(run.message.contains("checksum"), "{}", run.stderr);
    assert!(
        mentions_number(&run.stderr, payload.offset),
        "{}",
        run.stderr
    );
}

#[test]
fn truncated_inside_event_body_is_reported() {
    let rel = format!("{RUST_US}/5.7/30_write_rows_v2/log.bin");
    let original = std::fs::read(fixture(&rel)).unwrap();
    let write = walk_bytes(&original)
        .events
        .into_iter()
        .find(|e| e.code == WRITE_ROWS_V2)
        .unwrap();
    let cut = write.offset as usize + HEADER_LEN + 10;
    let run = decode_broken("cut-body.bin", &original[..cut]);
    assert!(run.message.contains("truncated"), "{}", run.stderr);
    assert!(mentions_number(&run.stderr, write.offset), "{}", run.stderr);
}

#[test]
fn truncated_inside_event_header_is_reported() {
    let rel = format!("{RUST_US}/5.7/30_write_rows_v2/log.bin");
    let original = std::fs::read(fixture(&rel)).unwrap();
    let cut = 934 + 10;
    let run = decode_broken("cut-header.bin", &original[..cut]);
    assert!(run.message.contains("truncated"), "{}", run.stderr);
    assert!(mentions_number(&run.stderr, 934), "{}", run.stderr);
}

#[test]
fn non_binlog_file_is_rejected() {
    let run = decode_broken(
        "plain-text.txt",
        "This is plainly not a binary log.\n".repeat(20).as_bytes(),
    );
    assert!(run.message.contains("not a binlog"), "{}", run.stderr);
    assert_eq!(run.stdout, "");

    let missing = scratch("does-not-exist.bin");
    let run = run_decode(&[&missing]);
    assert!(run.code.is_some_and(|c| c != 0));
    assert!(run.stderr.contains("does-not-exist.bin"), "{}", run.stderr);
}

#[test]
fn empty_or_tiny_file_is_rejected_clearly() {
    for (name, bytes) in [
        ("zero-bytes.bin", &b""[..]),
        ("two-bytes.bin", &b"\xfeb"[..]),
    ] {
        let run = decode_broken(name, bytes);
        let err = &run.message;
        assert!(
            ["not a binlog", "truncated", "empty", "too short"]
                .iter()
                .any(|w| err.contains(w)),
            "{name}: unclear error:\n{}",
            run.stderr
        );
        assert!(
            !err.contains("failed to fill whole buffer"),
            "{name}:\n{}",
            run.stderr
        );
    }
}

#[test]
fn damaged_files_never_panic() {
    // Byte flips in a file without checksums reach the event parsers; truncation at every length
    // of a file with a compressed payload. Exit status may be 0 or not; run_decode rejects
    // panics and signals.
    let none = std::fs::read(fixture(&format!("{OSHEROFF}/mysql-bin.checksum-none"))).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..150 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut bytes = none.clone();
        let at = 4 + (seed as usize % (bytes.len() - 4));
        bytes[at] ^= [0x01, 0x80, 0xff, 0x10][i % 4];
        let path = scratch("flipped-none.bin");
        std::fs::write(&path, &bytes).unwrap();
        run_decode(&[&path]);
    }
    let compressed = std::fs::read(fixture(&format!(
        "{BLACKBEAM}/transaction_compression.000001"
    )))
    .unwrap();
    // Cut exactly after the magic or after a whole event, the file is a shorter valid binlog.
    let boundaries: Vec<usize> = std::iter::once(4)
        .chain(
            walk_bytes(&compressed)
                .events
                .iter()
                .map(|e| e.offset as usize + e.raw.len()),
        )
        .collect();
    for len in 0..compressed.len() {
        let path = scratch("cut-compressed.bin");
        std::fs::write(&path, &compressed[..len]).unwrap();
        let run = run_decode(&[&path]);
        if !boundaries.contains(&len) {
            assert_ne!(run.code, Some(0), "cut at {len} must fail");
        }
    }
}

#[test]
fn walker_sanity() {
    // The helpers above are only as good as these facts.
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(epoch_text("2022-11-20T13:40:30Z"), "1668951630");
    assert_eq!(epoch_text("2018-05-04T08:31:59.5Z"), "1525422719.5");
    let binlog = walk(&format!("{RUST_US}/5.7/03_stop/log.bin"));
    assert_eq!(
        codes(&binlog.events),
        [FORMAT_DESCRIPTION, PREVIOUS_GTIDS, STOP]
    );
}
