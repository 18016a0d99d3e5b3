//! The bytes of a binlog file -> `binlake decode`'s code path (`decode_bytes`, which
//! `decode_file` uses), then every change through the Avro encoder and back.
//! Checksums are verified as in the product: most mutations of a checksummed file stop at
//! the CRC check (see `binlog_decode_crc` for the variant that recomputes them).
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::decode_pipeline(data, Default::default());
});
