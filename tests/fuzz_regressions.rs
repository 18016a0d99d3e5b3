//! Regression tests for the inputs the fuzz targets (`fuzz/`, see its README) found to crash
//! binlake. Each binlog input is a minimized file in `tests/fixtures/fuzz/`, stored as the
//! decoder saw it (for `binlog_decode_crc`: with its CRCs already fixed up), so
//! `binlake decode tests/fixtures/fuzz/FILE` reproduces it too. Plain `cargo test`; no
//! nightly, no fuzzer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use binlake::change::Change;
use binlake::config::{CaptureConfig, Filter};
use binlake::mysql::binlog_file::decode_bytes;
use binlake::mysql::charset::Collations;
use binlake::mysql::decoder::Decoder;
use binlake::Error;

/// Records the largest single allocation, so that a test can say "no huge allocation".
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Largest = Largest;

/// No test here needs more than this in one piece (the inputs are tiny).
const ALLOC_LIMIT: usize = 64 << 20;

const NAME: &str = "fuzz-bin.000001";

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Decodes `bytes` as `binlake decode` does (the file named [`NAME`]).
fn decode(bytes: &[u8]) -> (binlake::Result<()>, Vec<Change>) {
    let mut decoder = Decoder::new(
        Collations::default(),
        Filter::new(&CaptureConfig::default()),
        Default::default(),
    );
    let mut changes = Vec::new();
    let r = decode_bytes(NAME, bytes, &mut decoder, &mut |batch| {
        changes.append(batch);
        Ok(())
    });
    (r, changes)
}

/// Decodes a fixture, which must fail with an error naming the file, `offset`, and saying
/// `what`, without allocating more than [`ALLOC_LIMIT`] at once.
fn fails_at(fixture_name: &str, offset: u64, what: &str) -> Error {
    let bytes = fixture(fixture_name);
    let (r, _) = decode(&bytes);
    assert!(
        LARGEST.load(Ordering::Relaxed) <= ALLOC_LIMIT,
        "{fixture_name}: an allocation of {} bytes",
        LARGEST.load(Ordering::Relaxed)
    );
    let e = r.expect_err(fixture_name);
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{NAME} at offset {offset}: ")),
        "{fixture_name}: the error does not name the file and offset {offset}: {msg}"
    );
    assert!(msg.contains(what), "{fixture_name}: {msg}");
    e
}

/// An event header claiming ~3.8 GB: the reader allocated the whole size before finding the
/// file 4 bytes long (libFuzzer: out-of-memory, malloc(3853958116)).
#[test]
fn huge_event_size_is_a_truncation_not_an_allocation() {
    fails_at("binlog-event-size-4gib.bin", 4, "file is truncated");
}

/// An UPDATE_ROWS event whose column bitmaps name no column: each row took 0 bytes, so the
/// decoder emitted the same empty row forever (libFuzzer: out-of-memory, rss 2.4 GB).
#[test]
fn rows_without_columns_are_an_error_not_an_endless_loop() {
    fails_at(
        "binlog-rows-without-columns.bin",
        195,
        "a row image with no columns",
    );
}

/// A 19-byte STOP event in a CRC32 file: mysql_common's `Event::read` slices the 4 checksum
/// bytes off a body of 0 bytes and panics (`data.len() - 4`, events/mod.rs:156).
#[test]
fn event_without_room_for_its_checksum_is_an_error_not_a_panic() {
    fails_at(
        "binlog-event-too-short-for-crc.bin",
        125,
        "no room for the 4-byte checksum",
    );
}

/// A TRANSACTION_PAYLOAD whose header (after a mutation) names compression type 239:
/// mysql_common's parser unwraps the unknown type and panics (transaction_payload_event.rs:308).
/// binlake now parses the header itself.
#[test]
fn payload_with_a_damaged_header_is_an_error_not_a_panic() {
    fails_at(
        "binlog-payload-bad-compression-type.bin",
        274,
        "transaction payload: the header ends early",
    );
}

const COMPRESSED: &str =
    "tests/fixtures/mysql-binlogs/blackbeam-rust_mysql_common/transaction_compression.000001";
/// Offset of the TRANSACTION_PAYLOAD event in [`COMPRESSED`] (MySQL 8.0.32, CRC32).
const PAYLOAD_AT: usize = 274;

fn lenenc(v: u64) -> Vec<u8> {
    match v {
        0..=250 => vec![v as u8],
        251..=0xffff => [&[0xfc][..], &(v as u16).to_le_bytes()].concat(),
        0x1_0000..=0xff_ffff => [&[0xfd][..], &(v as u32).to_le_bytes()[..3]].concat(),
        _ => [&[0xfe][..], &v.to_le_bytes()].concat(),
    }
}

fn field(ty: u64, value: u64) -> Vec<u8> {
    let v = lenenc(value);
    [lenenc(ty), lenenc(v.len() as u64), v].concat()
}

/// [`COMPRESSED`] with its payload event rebuilt from these header fields (the zstd payload
/// as MySQL wrote it), CRC32 recomputed.
fn with_payload_header(compression: u64, uncompressed: Option<u64>) -> Vec<u8> {
    let file = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(COMPRESSED)).unwrap();
    let ev = &file[PAYLOAD_AT..];
    let size = u32::from_le_bytes(ev[9..13].try_into().unwrap()) as usize;
    assert_eq!(ev[4], 40, "the fixture's payload event moved");
    // The original header is 10 bytes: compression 0, uncompressed size 179, payload size 124.
    let payload = &ev[19 + 10..size - 4];
    assert_eq!(payload.len(), 124);
    let mut body = field(2, compression);
    if let Some(n) = uncompressed {
        body.extend(field(3, n));
    }
    body.extend(field(1, payload.len() as u64));
    body.push(0);
    body.extend_from_slice(payload);
    let mut event = ev[..19].to_vec();
    event.extend(body);
    let new_size = event.len() as u32 + 4;
    event[9..13].copy_from_slice(&new_size.to_le_bytes());
    event[13..17].copy_from_slice(&(PAYLOAD_AT as u32 + new_size).to_le_bytes());
    let crc = crc32fast::hash(&event);
    event.extend(crc.to_le_bytes());
    // The events after the payload keep their bytes (only their log positions are stale,
    // which decoding files does not read).
    [&file[..PAYLOAD_AT], &event[..], &ev[size..]].concat()
}

#[test]
fn rebuilt_payload_header_decodes_like_the_original() {
    let original = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(COMPRESSED)).unwrap();
    let (r, want) = decode(&original);
    r.unwrap();
    assert!(!want.is_empty());
    let (r, got) = decode(&with_payload_header(0, Some(179)));
    r.unwrap();
    assert_eq!(format!("{got:?}"), format!("{want:?}"));
    // Without the (optional) uncompressed size, too.
    let (r, got) = decode(&with_payload_header(0, None));
    r.unwrap();
    assert_eq!(got.len(), want.len());
}

/// The decoder reserved the header's uncompressed size up front (`Vec::with_capacity`): a
/// damaged size aborted with "capacity overflow" or a huge allocation. Now the payload is read
/// event by event, and a size that disagrees with the events is an error.
#[test]
fn payload_uncompressed_size_is_checked_not_trusted() {
    for claimed in [1u64 << 62, 1 << 40, 178, 180] {
        let (r, _) = decode(&with_payload_header(0, Some(claimed)));
        assert!(LARGEST.load(Ordering::Relaxed) <= ALLOC_LIMIT);
        let e = r.expect_err("a wrong uncompressed size").to_string();
        assert!(
            e.starts_with(&format!(
                "{NAME} at offset {PAYLOAD_AT}: transaction payload"
            )),
            "{e}"
        );
    }
}

#[test]
fn payload_with_an_unknown_compression_type_is_an_error() {
    let (r, _) = decode(&with_payload_header(7, Some(179)));
    let e = r.expect_err("compression type 7").to_string();
    assert!(
        e.starts_with(&format!("{NAME} at offset {PAYLOAD_AT}: "))
            && e.contains("unknown compression type 7"),
        "{e}"
    );
}

/// A TABLE_MAP event with an empty body: the table-map cache read its 6-byte table id with
/// `copy_from_slice` from fewer bytes and panicked (decoder.rs, `knows_table_map`).
#[test]
fn empty_table_map_is_an_error_not_a_panic() {
    fails_at("binlog-empty-table-map.bin", 36, "enough data");
}

/// A TIMESTAMP(2) whose fraction byte is 0xa7 (167, "1.67 s"): the decoder made 1 670 000 µs
/// of it, which the Avro encoder folded into the next second (the avro round trip in the
/// fuzz target caught it). Fractions of a second or more, months past 12, times of day past
/// 23:59:59 are now decode errors at the event.
#[test]
fn timestamp_fraction_of_a_second_or_more_is_a_decode_error() {
    fails_at(
        "binlog-timestamp-fraction-out-of-range.bin",
        201,
        "invalid fractional seconds value",
    );
}

/// A table map (inside a zstd transaction payload) giving an ENUM a value size of 39 bytes:
/// reading a value shifted a u64 by 8 × 38 bits and panicked ("attempt to shift left with
/// overflow"; in a release build, a wrong value). Column metadata outside MySQL's formats
/// (ENUM/SET size, BIT > 64, DECIMAL precision/scale, fsp > 6) is now refused with the table map.
#[test]
fn impossible_column_metadata_is_a_table_map_error() {
    fails_at(
        "binlog-enum-pack-length.bin",
        730,
        "a.test_table_3 column `@7`: ENUM/SET value size 39",
    );
}

/// A table map whose optional metadata gives an ENUM/SET column 7 022 809 677 396 276 740
/// members in 10 bytes: mysql_common reserves that many up front and panicked ("capacity
/// overflow"; a smaller count allocates without bound). binlake checks the lists first.
#[test]
fn enum_member_count_past_the_event_is_an_error_not_an_allocation() {
    fails_at(
        "binlog-enum-member-count.bin",
        126,
        "7022809677396276740 members in 10 bytes",
    );
}

// ---------------------------------------------------------------------------------------------
// Registry (fuzz target registry_input)
// ---------------------------------------------------------------------------------------------

mod registry {
    use binlake::registry::compat;
    use binlake::registry::records::{schema_key, SchemaValue};
    use binlake::registry::state::{Plan, State};

    const A: &str = r#"{"type":"record","name":"R","fields":[{"name":"n","type":"int"}]}"#;
    const B: &str = r#""string""#;

    fn put(st: &mut State, subject: &str, version: u32, id: u32, schema: &str) {
        let v = SchemaValue {
            subject: subject.into(),
            version,
            id,
            schema: schema.into(),
            deleted: false,
            schema_type: None,
        };
        st.apply(&schema_key(subject, version), Some(&v.to_bytes()));
    }

    /// A `_schemas` record (written by another registry, or damaged) with id 4294967295: the
    /// next registration computed `max_id + 1` and panicked ("attempt to add with overflow";
    /// a release build handed out id 0).
    #[test]
    fn id_after_u32_max_is_an_error_not_an_overflow() {
        let mut st = State::default();
        put(&mut st, "a", 1, u32::MAX, A);
        let e = st
            .plan_register("b", B, &compat::parse(B).unwrap())
            .unwrap_err();
        assert_eq!(e.status(), 500, "{e}");
        assert!(e.to_string().contains("no schema id left"), "{e}");
        // Ids are Java ints for Confluent's clients: none past i32::MAX is handed out either.
        let mut st = State::default();
        put(&mut st, "a", 1, i32::MAX as u32, A);
        assert!(st
            .plan_register("b", B, &compat::parse(B).unwrap())
            .is_err());
        // The schema already registered keeps its id under another subject.
        let Plan::New(v) = st
            .plan_register("c", A, &compat::parse(A).unwrap())
            .unwrap()
        else {
            panic!("expected a new version")
        };
        assert_eq!((v.id, v.version), (i32::MAX as u32, 1));
    }

    /// A schema whose record name is not an Avro name (here `é`, reached by mutating a
    /// registered schema): apache-avro 0.21 unwraps the name check and panics
    /// (schema.rs:272), in a request handler or, for a `_schemas` record, in the task that
    /// reads the log. Invalid aliases the same (`fix_aliases_namespace`).
    #[test]
    fn invalid_names_are_invalid_schemas_not_panics() {
        for bad in [
            r#"{"type":"record","name":"é","fields":[]}"#,
            r#"{"type":"record","name":"R","fields":[{"name":"f","type":{"type":"enum","name":"1x","symbols":["A"]}}]}"#,
            r#"["null",{"type":"fixed","name":"F","size":2,"aliases":[""]}]"#,
            r#"{"type":"array","items":{"type":"record","name":"R","aliases":["a-b"],"fields":[]}}"#,
            r#"{"type":"map","values":{"type":"error","name":"x.","fields":[]}}"#,
        ] {
            let e = compat::parse(bad).expect_err(bad);
            assert!(e.contains("Invalid"), "{bad}: {e}");
        }
        // Valid names, namespaces and aliases still parse.
        compat::parse(
            r#"{"type":"record","name":"a.b.R","aliases":["S","c.T"],"fields":[{"name":"f","type":{"type":"fixed","name":"_F1","size":1}}]}"#,
        )
        .unwrap();
        // As a `_schemas` record: stored unparsed (its id keeps its text), no panic.
        let mut st = State::default();
        put(
            &mut st,
            "a",
            1,
            1,
            r#"{"type":"record","name":"é","fields":[]}"#,
        );
        assert!(st.schema(1).is_some_and(|s| s.parsed.is_none()));
    }

    /// A fixed with a property named like a schema keyword (`"items": 2`): apache-avro keeps
    /// it as an attribute and its `canonical_form()` then panics ("got invalid JSON value for
    /// canonical form of schema: 2", schema.rs:2315). The registry computed that form for
    /// every schema it parsed and used it nowhere; it no longer does.
    #[test]
    fn keyword_named_properties_do_not_panic() {
        for s in [
            r#"{"type":"fixed","name":"F","size":6,"items":2}"#,
            r#"{"type":"record","name":"R","fields":[],"size":"x"}"#,
            r#"{"type":"enum","name":"E","symbols":["A"],"values":1.5,"fields":null}"#,
        ] {
            let p = compat::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(compat::identity_of(None, s), p.identity);
        }
    }

    /// A schema's normalized text read back must give the same text, or one schema gets two
    /// identities. serde_json's default float parser can be one bit off: the fuzzer's
    /// `"scale":2444404444444444444444444444` normalized to 2.444404444444445e+27, which read
    /// back as 2.4444044444444446e+27. `float_roundtrip` (exact parsing) fixes it. Found by
    /// registry_input; a few more awkward numbers are checked too.
    #[test]
    fn a_normalized_schema_reads_back_to_itself_with_any_number_in_it() {
        for n in [
            "2444404444444444444444444444",
            "2.444404444444445e+27",
            "0.1",
            "1.7976931348623157e308",
            "5e-324",
            "-0.0",
        ] {
            let s = format!(
                r#"{{"type":"fixed","name":"F","size":16,"logicalType":"decimal","precision":2,"scale":{n}}}"#
            );
            let p = compat::parse(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(compat::identity_of(None, &p.identity), p.identity, "{s}");
        }
    }

    /// A decimal `fixed` whose `scale` is misspelled: apache-avro printed `logicalType` and
    /// `scale` twice, and reading that back kept one of each, so the identity changed on the
    /// second reading. Found by registry_input; the identity is now read until it settles.
    #[test]
    fn a_decimal_fixed_without_a_scale_has_one_identity() {
        let s = r#"{"type":"fixed","name":"F","size":16,"logicalType":"decimal","precision":2,"sc?ale":2444444444444444444444444444}"#;
        let p = compat::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(compat::identity_of(None, &p.identity), p.identity);
        assert_eq!(compat::identity_of(None, s), p.identity);
    }

    /// The same for versions: a subject at version 4294967295 has no next version.
    #[test]
    fn version_after_u32_max_is_an_error_not_an_overflow() {
        let mut st = State::default();
        put(&mut st, "a", u32::MAX, 1, A);
        st.apply(
            br#"{"keytype":"CONFIG","subject":null,"magic":0}"#,
            Some(br#"{"compatibilityLevel":"NONE"}"#),
        );
        let e = st
            .plan_register("a", B, &compat::parse(B).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("no version left"), "{e}");
    }
}

/// A JSON column's DECIMAL scalar with scale 122 and precision 11: mysql_common's JSONB
/// parser computed the size as precision - scale and overflowed (decimal/mod.rs:424).
#[test]
fn a_json_decimal_with_scale_above_precision_is_an_error_not_an_overflow() {
    fails_at(
        "binlog-json-decimal-scale-above-precision.bin",
        181,
        "a DECIMAL scalar with precision 11 and scale 122",
    );
}

/// A MySQL 8 table map whose primary-key metadata lists column 2 twice: the key schema got
/// two fields named `foo`, which Avro rejects. A table has each column once in its key.
#[test]
fn a_primary_key_listing_a_column_twice_is_an_error_not_a_bad_schema() {
    fails_at(
        "binlog-primary-key-column-twice.bin",
        127,
        "the table map's primary key names column 2 twice",
    );
}

/// The table map above with its first column renamed `FOO` (CRC recomputed; made by hand,
/// not by the fuzzer): column names are unique without case, so two `foo`s are corrupt
/// metadata, not two Avro fields of one name.
#[test]
fn a_table_map_naming_two_columns_alike_is_an_error() {
    fails_at(
        "binlog-column-name-twice.bin",
        127,
        "the table map names two columns `foo`",
    );
}
