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
