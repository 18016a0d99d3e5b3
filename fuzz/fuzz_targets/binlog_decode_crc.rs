//! As `binlog_decode`, but every event's CRC32 is recomputed first (when the format
//! description in force says CRC32), so that mutations reach the event and row parsers behind
//! the checksum check instead of stopping at it.
//!
//! To turn an artifact into a regression fixture (the bytes the decoder actually saw), run it
//! with `FUZZ_WRITE_FIXED=path`: the fixed-up bytes are written there.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    common::fix_crcs(&mut bytes);
    if let Some(path) = std::env::var_os("FUZZ_WRITE_FIXED") {
        let _ = std::fs::write(path, &bytes);
    }
    common::decode_pipeline(&bytes, Default::default());
});
