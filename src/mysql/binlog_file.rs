//! Binlog files on disk -> changes (`binlake decode`), for backups and forensics.
//!
//! Each event is framed from its header, its CRC32 verified (when the file has checksums)
//! before anything parses it, and then handed to the same [`Decoder`] the live stream uses.
//! Invariant: a corrupt or truncated file yields an error naming the file and the event
//! offset; no change after the damage is emitted.

use std::io::Read;
use std::path::Path;

use mysql_common::binlog::consts::{BinlogChecksumAlg, BinlogVersion};
use mysql_common::binlog::events::{Event, FormatDescriptionEvent};

use crate::change::Change;
use crate::error::{Error, Result};
use crate::mysql::decoder::{event_type, read_event, Decoder};

const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];

/// Verifies an event's CRC32 when its format has one.
pub fn verify_checksum(ev: &Event, file: &str, offset: u64) -> Result<()> {
    if let (Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32)), Some(sum)) =
        (ev.footer().get_checksum_alg(), ev.checksum())
    {
        let expected = u32::from_le_bytes(sum);
        let actual = ev.calc_checksum(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32);
        if expected != actual {
            return Err(Error::Checksum {
                file: file.to_string(),
                offset,
                expected,
                actual,
            });
        }
    }
    Ok(())
}

/// Decodes one binlog file, calling `emit` with each batch of changes.
pub fn decode_file(
    path: &Path,
    decoder: &mut Decoder,
    emit: &mut dyn FnMut(&mut Vec<Change>) -> Result<()>,
) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let context = format!("reading {}", path.display());
    let f = std::fs::File::open(path).map_err(|e| Error::Io {
        context: context.clone(),
        cause: e,
    })?;
    decode_reader(
        &name,
        &context,
        std::io::BufReader::with_capacity(1 << 20, f),
        decoder,
        emit,
    )
}

/// Decodes the bytes of one binlog file named `name` (errors name it and the event offset):
/// what [`decode_file`] does once the file is read. The fuzz targets call this.
pub fn decode_bytes(
    name: &str,
    bytes: &[u8],
    decoder: &mut Decoder,
    emit: &mut dyn FnMut(&mut Vec<Change>) -> Result<()>,
) -> Result<()> {
    decode_reader(name, &format!("reading {name}"), bytes, decoder, emit)
}

/// Decodes a binlog file's bytes from `f`; `context` names the input in I/O errors.
fn decode_reader(
    name: &str,
    context: &str,
    mut f: impl Read,
    decoder: &mut Decoder,
    emit: &mut dyn FnMut(&mut Vec<Change>) -> Result<()>,
) -> Result<()> {
    let name = name.to_string();
    let io = |e| Error::Io {
        context: context.to_string(),
        cause: e,
    };
    let mut magic = [0u8; 4];
    let n = read_full(&mut f, &mut magic).map_err(io)?;
    if n < 4 || magic != MAGIC {
        return Err(Error::Corrupt {
            file: name,
            offset: 0,
            detail: format!(
                "not a binlog file: it does not start with the fe 62 69 6e magic{}",
                if n < 4 {
                    format!(" (truncated: {n} bytes)")
                } else {
                    String::new()
                }
            ),
        });
    }
    decoder.set_file(&name);
    let mut fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
    let mut offset = 4u64;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut out = Vec::new();
    loop {
        buf.resize(19, 0);
        match read_full(&mut f, &mut buf[..19]).map_err(io)? {
            0 => break,
            19 => {}
            n => {
                return Err(Error::Corrupt {
                    file: name,
                    offset,
                    detail: format!("file is truncated inside an event header ({n} of 19 bytes)"),
                })
            }
        }
        let size = u32::from_le_bytes([buf[9], buf[10], buf[11], buf[12]]) as usize;
        if size < 19 {
            return Err(Error::Corrupt {
                file: name,
                offset,
                detail: format!("event size {size} is smaller than its header"),
            });
        }
        // The body grows as it is read: a corrupt size must not allocate (up to 4 GiB)
        // bytes the file does not have.
        buf.truncate(19);
        let got = (&mut f)
            .take(size as u64 - 19)
            .read_to_end(&mut buf)
            .map_err(io)?;
        if got != size - 19 {
            return Err(Error::Corrupt {
                file: name,
                offset,
                detail: format!(
                    "file is truncated: the event needs {size} bytes, only {} remain",
                    got + 19
                ),
            });
        }
        let ev = read_event(&fde, &buf).map_err(|detail| Error::Corrupt {
            file: name.clone(),
            offset,
            detail,
        })?;
        verify_checksum(&ev, &name, offset)?;
        if ev.header().event_type_raw() == event_type::FORMAT_DESCRIPTION {
            let new: FormatDescriptionEvent<'_> = ev.read_event().map_err(|e| Error::Corrupt {
                file: name.clone(),
                offset,
                detail: e.to_string(),
            })?;
            fde = new.into_owned().with_footer(ev.footer());
        }
        decoder.handle(&ev, offset, true, &mut out)?;
        if !out.is_empty() {
            emit(&mut out)?;
            out.clear();
        }
        offset += size as u64;
    }
    decoder.finish(&mut out);
    if !out.is_empty() {
        emit(&mut out)?;
    }
    Ok(())
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
