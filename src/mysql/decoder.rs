//! Binlog events -> [`Change`]s, in binlog order. Shared by the live replica stream and the
//! offline file reader, so both produce identical changes from identical bytes.
//!
//! The decoder tracks the current file (ROTATE), the transaction (GTID/BEGIN .. XID/COMMIT),
//! and a cache of [`TableDecoder`]s keyed by table id. Invariants:
//! - changes leave in the order their rows appear in the binlog; positions strictly increase;
//! - the last change of a transaction carries `commit = true` (one change is held back until
//!   the next event says whether the transaction ended);
//! - a change at or before the resume point is never emitted.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use mysql_common::binlog::consts::BinlogChecksumAlg;
use mysql_common::binlog::events::{
    Event, FormatDescriptionEvent, GtidEvent, QueryEvent, RotateEvent, RowsEventData, TableMapEvent,
};
use mysql_common::proto::MySerialize;

use crate::change::{Change, Op};
use crate::config::{Filter, KeyMode};
use crate::error::{Error, Result};
use crate::mysql::charset::Collations;
use crate::mysql::rows::{ServerTable, TableDecoder};
use crate::mysql::types::Reader;
use crate::position::Position;

/// Raw event type codes (MariaDB's are not in mysql_common's enum).
pub mod event_type {
    pub const QUERY: u8 = 2;
    pub const STOP: u8 = 3;
    pub const ROTATE: u8 = 4;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const XID: u8 = 16;
    pub const TABLE_MAP: u8 = 19;
    pub const WRITE_V1: u8 = 23;
    pub const DELETE_V1: u8 = 25;
    pub const INCIDENT: u8 = 26;
    pub const HEARTBEAT: u8 = 27;
    pub const WRITE_V2: u8 = 30;
    pub const DELETE_V2: u8 = 32;
    pub const GTID: u8 = 33;
    pub const ANONYMOUS_GTID: u8 = 34;
    pub const PARTIAL_UPDATE: u8 = 39;
    pub const TRANSACTION_PAYLOAD: u8 = 40;
    pub const GTID_TAGGED: u8 = 42;
    pub const MARIADB_ANNOTATE_ROWS: u8 = 160;
    pub const MARIADB_GTID: u8 = 162;
    pub const MARIADB_GTID_LIST: u8 = 163;
    pub const MARIADB_START_ENCRYPTION: u8 = 164;
    pub const MARIADB_COMPRESSED_FIRST: u8 = 165;
    pub const MARIADB_COMPRESSED_LAST: u8 = 171;
}
use event_type as et;

/// LOG_EVENT_IGNORABLE_F: a replica that does not know the event may skip it.
const IGNORABLE_F: u16 = 0x80;

/// Where to resume: drop changes up to here.
#[derive(Debug, Clone)]
pub struct ResumePoint {
    pub file: String,
    pub offset: u64,
    /// `Some(r)`: drop changes at or before `offset:r`. `None`: drop changes before `offset`.
    pub row: Option<u32>,
}

struct CachedTable {
    tme: Vec<u8>,
    /// (db, table) the map names.
    name: (String, String),
    decoder: Option<Arc<TableDecoder>>,
}

/// The event-to-change state machine.
pub struct Decoder {
    file: Arc<str>,
    collations: Collations,
    filter: Filter,
    key_mode: KeyMode,
    tables: HashMap<u64, CachedTable>,
    server_tables: HashMap<(String, String), ServerTable>,
    resume: Option<ResumePoint>,
    gtid: Option<Arc<str>>,
    txn_ts_ms: Option<u64>,
    /// MariaDB standalone GTID (DDL, non-transactional): ends after its one statement.
    standalone: bool,
    last_offset: u64,
    row_in_offset: u32,
    held: Option<Change>,
    /// Tables whose rows are skipped (no key, `key = "skip"`): logged once.
    warned: std::collections::HashSet<String>,
    /// A statement-logged change to a captured table stops decoding (the stream), rather
    /// than being skipped with a warning (`binlake decode` of old files).
    statements_are_errors: bool,
}

impl Decoder {
    pub fn new(collations: Collations, filter: Filter, key_mode: KeyMode) -> Self {
        Decoder {
            file: Arc::from(""),
            collations,
            filter,
            key_mode,
            tables: HashMap::new(),
            server_tables: HashMap::new(),
            resume: None,
            gtid: None,
            txn_ts_ms: None,
            standalone: false,
            last_offset: u64::MAX,
            row_in_offset: 0,
            held: None,
            warned: Default::default(),
            statements_are_errors: true,
        }
    }

    /// Statement-logged changes to captured tables are skipped with a warning instead of
    /// stopping: for reading files offline, where nothing is resumed or lost by going on.
    pub fn skip_statements(&mut self) {
        self.statements_are_errors = false;
    }

    /// Changes at or before `resume` will not be emitted.
    pub fn resume_after(&mut self, resume: ResumePoint) {
        self.resume = Some(resume);
    }

    /// The file name events currently come from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The current file name, shared.
    pub fn file_arc(&self) -> Arc<str> {
        self.file.clone()
    }

    pub fn set_file(&mut self, file: &str) {
        self.file = Arc::from(file);
    }

    /// True when the decoder has no information_schema facts for this table yet and the table
    /// is captured: the live reader fetches them before handing over the table map.
    pub fn wants_server_table(&self, db: &str, table: &str) -> bool {
        self.filter.table(db, table)
            && !self
                .server_tables
                .contains_key(&(db.to_string(), table.to_string()))
    }

    /// True when this exact TABLE_MAP was seen before (the common case: the binlog repeats
    /// the map before every rows event), so nothing about it needs fetching.
    pub fn knows_table_map(&self, ev: &Event) -> bool {
        let data = ev.data();
        // The table id is the first 6 bytes of the body (4 on ancient servers; both fine here).
        let mut id = [0u8; 8];
        let n = data.len().min(6);
        id[..n].copy_from_slice(&data[..n]);
        self.tables
            .get(&u64::from_le_bytes(id))
            .is_some_and(|c| c.tme == data)
    }

    pub fn set_server_table(&mut self, db: &str, table: &str, info: ServerTable) {
        let name = (db.to_string(), table.to_string());
        // Only this table's decoder was built without these facts.
        self.tables.retain(|_, c| c.name != name);
        self.server_tables.insert(name, info);
    }

    /// Forget cached schemas (after DDL).
    fn invalidate_schemas(&mut self) {
        self.server_tables.clear();
        self.tables.clear();
    }

    fn err_at(&self, offset: u64) -> impl Fn(std::io::Error) -> Error + '_ {
        move |e| Error::Corrupt {
            file: self.file.to_string(),
            offset,
            detail: e.to_string(),
        }
    }

    /// Handles one event that starts at `offset` (for events inside a compressed transaction
    /// payload: the payload's offset), appending the changes it completes to `out`.
    /// `expand_payloads`: decompress TRANSACTION_PAYLOAD events here (files); the live stream
    /// gets them already expanded.
    pub fn handle(
        &mut self,
        ev: &Event,
        offset: u64,
        expand_payloads: bool,
        out: &mut Vec<Change>,
    ) -> Result<()> {
        let h = ev.header();
        let ty = h.event_type_raw();
        match ty {
            et::ROTATE => {
                let r: RotateEvent<'_> = ev.read_event().map_err(self.err_at(offset))?;
                let name = rotate_name(ev, &r);
                if *name != *self.file {
                    self.flush(false, out);
                    self.file = Arc::from(name);
                    self.tables.clear();
                }
            }
            et::FORMAT_DESCRIPTION | et::STOP | et::HEARTBEAT | et::MARIADB_GTID_LIST => {}
            et::ANONYMOUS_GTID | et::GTID | et::GTID_TAGGED => {
                self.flush(false, out);
                let g: GtidEvent = ev.read_event().map_err(self.err_at(offset))?;
                self.gtid = (ty != et::ANONYMOUS_GTID).then(|| Arc::from(mysql_gtid(&g)));
                let commit_us = g.immediate_commit_timestamp();
                self.txn_ts_ms = Some(if commit_us > 0 {
                    commit_us / 1000
                } else {
                    h.timestamp() as u64 * 1000
                });
                self.standalone = false;
            }
            et::MARIADB_GTID => {
                self.flush(false, out);
                let d = ev.data();
                if d.len() < 13 {
                    return Err(Error::Corrupt {
                        file: self.file.to_string(),
                        offset,
                        detail: format!("MariaDB GTID event body of {} bytes", d.len()),
                    });
                }
                let seq = u64::from_le_bytes(d[0..8].try_into().unwrap_or_default());
                let domain = u32::from_le_bytes(d[8..12].try_into().unwrap_or_default());
                let flags = d[12];
                self.gtid = Some(Arc::from(format!("{domain}-{}-{seq}", h.server_id())));
                self.txn_ts_ms = Some(h.timestamp() as u64 * 1000);
                self.standalone = flags & 1 != 0;
            }
            et::QUERY => {
                let q: QueryEvent<'_> = ev.read_event().map_err(self.err_at(offset))?;
                let sql = q.query();
                let word = sql
                    .trim_start()
                    .split(|c: char| c.is_whitespace() || c == ';')
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                let xa_end = word == "XA" && {
                    let second = sql.split_whitespace().nth(1).unwrap_or("");
                    ["PREPARE", "COMMIT", "ROLLBACK"]
                        .iter()
                        .any(|w| second.eq_ignore_ascii_case(w))
                };
                match word.as_str() {
                    "XA" if xa_end => self.end_transaction(out),
                    "BEGIN" | "XA" | "SAVEPOINT" => {
                        if self.txn_ts_ms.is_none() {
                            self.txn_ts_ms = Some(h.timestamp() as u64 * 1000);
                        }
                    }
                    "COMMIT" => self.end_transaction(out),
                    "ROLLBACK" => self.end_transaction(out),
                    "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD"
                        if self.touches_capture(&q.schema(), &sql) =>
                    {
                        // A session with binlog_format = STATEMENT (or MIXED): the rows it
                        // changed are not in the binlog. Skipping it would lose them.
                        let sql: String = sql.chars().take(120).collect();
                        if self.statements_are_errors {
                            return Err(Error::Unsupported(format!(
                                "{} at offset {offset}: a change to captured tables was logged \
                                 as a statement, not as rows ({sql}): binlake cannot know which \
                                 rows it changed. Make every session write ROW events (SET \
                                 GLOBAL binlog_format = 'ROW', and do not let clients SET \
                                 SESSION binlog_format); then start binlake on a fresh state \
                                 with --from after this event and re-snapshot the tables it \
                                 touched",
                                self.file
                            )));
                        }
                        tracing::warn!(file = %self.file, offset, %sql, "a statement-logged change: its rows are not in the binlog and not in the output");
                        self.end_transaction(out);
                    }
                    _ => {
                        // DDL (or a statement-format DML on tables not captured).
                        if is_ddl(&word) {
                            tracing::info!(file = %self.file, offset, sql = %sql.chars().take(200).collect::<String>(), "DDL: table schemas will be re-read");
                            self.invalidate_schemas();
                        }
                        self.end_transaction(out);
                    }
                }
            }
            et::XID => self.end_transaction(out),
            et::TABLE_MAP => {
                if self.knows_table_map(ev) {
                    return Ok(());
                }
                let tme: TableMapEvent<'_> = ev.read_event().map_err(self.err_at(offset))?;
                let id = tme.table_id();
                let db = tme.database_name().into_owned();
                let table = tme.table_name().into_owned();
                let decoder = if self.filter.table(&db, &table) {
                    let server = self.server_tables.get(&(db.clone(), table.clone()));
                    let filter = &self.filter;
                    let exclude = |c: &str| !filter.column(&db, &table, c);
                    let d =
                        TableDecoder::new(&tme, server, &self.collations, self.key_mode, &exclude)
                            .map_err(|detail| Error::Decode {
                                file: self.file.to_string(),
                                offset,
                                detail,
                            })?;
                    if d.skip && self.warned.insert(format!("{db}.{table}")) {
                        tracing::warn!(table = %format!("{db}.{table}"), "table has no primary key and capture.key = \"skip\": its changes are not captured");
                    }
                    (!d.skip).then(|| Arc::new(d))
                } else {
                    None
                };
                self.tables.insert(
                    id,
                    CachedTable {
                        tme: ev.data().to_vec(),
                        name: (db, table),
                        decoder,
                    },
                );
            }
            et::WRITE_V1..=et::DELETE_V1 | et::WRITE_V2..=et::DELETE_V2 | et::PARTIAL_UPDATE => {
                self.rows(ev, offset, out)?;
            }
            et::TRANSACTION_PAYLOAD => {
                if expand_payloads {
                    self.payload(ev, offset, out)?;
                }
            }
            et::INCIDENT => {
                return Err(Error::Corrupt {
                    file: self.file.to_string(),
                    offset,
                    detail: "INCIDENT event: the server reports that changes may be missing \
                             from the binlog here; re-snapshot the affected tables"
                        .into(),
                })
            }
            et::MARIADB_START_ENCRYPTION => {
                return Err(Error::Unsupported(format!(
                    "{} at offset {offset}: the binlog is encrypted; binlake reads binlogs \
                     through the server (tail) which decrypts them, not encrypted files",
                    self.file
                )))
            }
            et::MARIADB_COMPRESSED_FIRST..=et::MARIADB_COMPRESSED_LAST => {
                return Err(Error::Unsupported(format!(
                    "{} at offset {offset}: MariaDB compressed binlog event (type {ty}); \
                     binlake cannot decode these: set log_bin_compress=OFF on the server",
                    self.file
                )))
            }
            _ => {
                let known_harmless = matches!(ty, 1 | 5..=14 | 17 | 18 | 28 | 29 | 35..=38 | 41)
                    || (160..=164).contains(&ty);
                if !known_harmless && h.flags_raw() & IGNORABLE_F == 0 {
                    return Err(Error::Unsupported(format!(
                        "{} at offset {offset}: unknown binlog event type {ty} that the server \
                         did not mark ignorable",
                        self.file
                    )));
                }
            }
        }
        Ok(())
    }

    /// Emits the held change, marking it as the end of its transaction or not.
    fn flush(&mut self, commit: bool, out: &mut Vec<Change>) {
        if let Some(mut c) = self.held.take() {
            c.commit = commit;
            out.push(c);
        }
    }

    fn end_transaction(&mut self, out: &mut Vec<Change>) {
        self.flush(true, out);
        self.gtid = None;
        self.txn_ts_ms = None;
        self.standalone = false;
    }

    /// True between a transaction's first event and its commit: snapshot rows must not be
    /// placed inside a transaction.
    pub fn in_transaction(&self) -> bool {
        self.gtid.is_some() || self.txn_ts_ms.is_some() || self.held.is_some()
    }

    /// Emits whatever is held (end of input).
    pub fn finish(&mut self, out: &mut Vec<Change>) {
        self.flush(false, out);
    }

    /// Decodes the events inside a TRANSACTION_PAYLOAD, one at a time as they decompress
    /// (memory is one inner event, whatever sizes the header claims).
    fn payload(&mut self, ev: &Event, offset: u64, out: &mut Vec<Change>) -> Result<()> {
        let corrupt = |file: &str, detail: String| Error::Corrupt {
            file: file.to_string(),
            offset,
            detail: format!("transaction payload: {detail}"),
        };
        let p = parse_payload(ev.data()).map_err(|d| corrupt(&self.file, d))?;
        let decompressed: Box<dyn std::io::Read + '_> = match p.compression {
            PAYLOAD_ZSTD => Box::new(
                zstd::stream::read::Decoder::with_buffer(p.payload)
                    .map_err(|e| corrupt(&self.file, e.to_string()))?,
            ),
            PAYLOAD_NONE => Box::new(p.payload),
            other => {
                return Err(corrupt(
                    &self.file,
                    format!("unknown compression type {other}"),
                ))
            }
        };
        // Past the declared size the payload is corrupt: no need to decompress further.
        let mut r = decompressed.take(p.uncompressed_size.map_or(u64::MAX, |n| n + 1));
        // Inner events use the outer format description, and carry no checksum (WL#3549).
        let mut footer = ev.fde().footer();
        footer.set_checksum_enabled(false);
        let fde = ev.fde().clone().with_footer(footer);
        let mut at = 0u64;
        let mut buf = Vec::new();
        loop {
            let inside = |detail: String| format!("inside at byte {at}: {detail}");
            buf.clear();
            let n = (&mut r)
                .take(19)
                .read_to_end(&mut buf)
                .map_err(|e| corrupt(&self.file, inside(e.to_string())))?;
            if n == 0 {
                break;
            }
            if n == 19 {
                let size = u32::from_le_bytes([buf[9], buf[10], buf[11], buf[12]]) as u64;
                (&mut r)
                    .take(size.saturating_sub(19))
                    .read_to_end(&mut buf)
                    .map_err(|e| corrupt(&self.file, inside(e.to_string())))?;
            }
            let inner = read_event(&fde, &buf).map_err(|d| corrupt(&self.file, inside(d)))?;
            if inner.header().event_size() as usize != buf.len() {
                return Err(corrupt(&self.file, inside("truncated event".into())));
            }
            self.handle(&inner, offset, false, out)?;
            at += buf.len() as u64;
        }
        if let Some(n) = p.uncompressed_size.filter(|n| *n != at) {
            return Err(corrupt(
                &self.file,
                format!("the header says {n} bytes uncompressed, the events take {at}"),
            ));
        }
        Ok(())
    }

    fn rows(&mut self, ev: &Event, offset: u64, out: &mut Vec<Change>) -> Result<()> {
        let data = ev.read_data().map_err(self.err_at(offset))?;
        let Some(mysql_common::binlog::events::EventData::RowsEvent(rows)) = data else {
            return Ok(());
        };
        let id = rows.table_id();
        let Some(cached) = self.tables.get(&id) else {
            return Err(Error::Corrupt {
                file: self.file.to_string(),
                offset,
                detail: format!(
                    "rows event for table id {id} without a preceding TABLE_MAP (start reading \
                     at a transaction boundary)"
                ),
            });
        };
        let Some(table) = cached.decoder.clone() else {
            return Ok(()); // not captured
        };
        if offset != self.last_offset {
            self.last_offset = offset;
            self.row_in_offset = 0;
        }
        let (op, partial) = match &rows {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => {
                (Op::Create, false)
            }
            RowsEventData::UpdateRowsEventV1(_) | RowsEventData::UpdateRowsEvent(_) => {
                (Op::Update, false)
            }
            RowsEventData::PartialUpdateRowsEvent(_) => (Op::Update, true),
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => {
                (Op::Delete, false)
            }
        };
        let before_cols = rows.columns_before_image().map(|b| table.image_columns(b));
        let after_cols = rows.columns_after_image().map(|b| table.image_columns(b));
        let mut r = Reader::new(rows.rows_data());
        let ts_ms = self
            .txn_ts_ms
            .unwrap_or(ev.header().timestamp() as u64 * 1000);
        let decode_err = |file: &str, detail| Error::Decode {
            file: file.to_string(),
            offset,
            detail,
        };
        while !r.buf.is_empty() {
            let left = r.buf.len();
            let before = match (op, &before_cols) {
                (Op::Update | Op::Delete, Some(cols)) => Some(
                    table
                        .decode_row(&mut r, cols, false)
                        .map_err(|e| decode_err(&self.file, e))?,
                ),
                _ => None,
            };
            let after = match (op, &after_cols) {
                (Op::Create | Op::Update, Some(cols)) => Some(
                    table
                        .decode_row(&mut r, cols, partial)
                        .map_err(|e| decode_err(&self.file, e))?,
                ),
                _ => None,
            };
            if r.buf.len() == left {
                // Images that carry no column take no bytes: the rest of the event would
                // repeat this row forever.
                return Err(Error::Corrupt {
                    file: self.file.to_string(),
                    offset,
                    detail: format!(
                        "rows event for {}: a row image with no columns, {} bytes of row data \
                         left over",
                        table.schema.full_name(),
                        left
                    ),
                });
            }
            let row = self.row_in_offset;
            self.row_in_offset += 1;
            if self.skipped(offset, row) {
                continue;
            }
            let change = Change {
                op,
                table: table.schema.clone(),
                before,
                after,
                ts_ms,
                pos: Position {
                    file: self.file.clone(),
                    offset,
                    row,
                    gtid: self.gtid.clone(),
                    snapshot: None,
                },
                commit: false,
            };
            self.flush(false, out);
            self.held = Some(change);
        }
        Ok(())
    }

    fn skipped(&mut self, offset: u64, row: u32) -> bool {
        let Some(r) = &self.resume else {
            return false;
        };
        if *r.file != *self.file {
            // Reading has moved past the resume file.
            self.resume = None;
            return false;
        }
        let skip = match r.row {
            Some(rr) => (offset, row) <= (r.offset, rr),
            None => offset < r.offset,
        };
        if !skip {
            self.resume = None;
        }
        skip
    }
}

/// The rotate's file name. The server's first (fake) ROTATE is sent before the format
/// description, so a reader that does not yet know the checksum algorithm leaves the 4 CRC
/// bytes glued to the name (a mysql_common quirk): strip them when they are a valid CRC32.
fn rotate_name(ev: &Event, r: &RotateEvent<'_>) -> String {
    let raw = r.name_raw();
    if raw.len() > 4 && ev.checksum().is_none() {
        let (name, crc) = raw.split_at(raw.len() - 4);
        let mut header = Vec::new();
        ev.header().serialize(&mut header);
        let mut h = crc32fast::Hasher::new();
        h.update(&header);
        h.update(&ev.data()[..ev.data().len() - 4]);
        if h.finalize().to_le_bytes() == crc {
            return String::from_utf8_lossy(name).into_owned();
        }
    }
    String::from_utf8_lossy(raw).into_owned()
}

const PAYLOAD_ZSTD: u64 = 0;
const PAYLOAD_NONE: u64 = 255;

/// The header fields and the (compressed) payload of a TRANSACTION_PAYLOAD body.
struct Payload<'a> {
    compression: u64,
    uncompressed_size: Option<u64>,
    payload: &'a [u8],
}

/// Parses a TRANSACTION_PAYLOAD body (MySQL's Transaction_payload_event: fields of
/// type, length, value as length-encoded integers up to an end mark, then the payload). Parsed
/// here rather than by mysql_common, whose parser panics on an unknown compression type and
/// on a field length past the event.
fn parse_payload(data: &[u8]) -> Result<Payload<'_>, String> {
    let mut r = Reader::new(data);
    let (mut size, mut compression, mut uncompressed_size) = (None, None, None);
    let e = |e: crate::mysql::types::DecodeError| match e {
        crate::mysql::types::DecodeError::Truncated { needed, left } => {
            format!("the header ends early: a field needs {needed} bytes, {left} left")
        }
        e => format!("header: {e}"),
    };
    loop {
        let field = r.lenenc().map_err(e)?;
        if field == 0 {
            break; // end of the header
        }
        let len = r.lenenc().map_err(e)?;
        let value = r
            .take(usize::try_from(len).unwrap_or(usize::MAX))
            .map_err(e)?;
        let int = || Reader::new(value).lenenc().map_err(e);
        match field {
            1 => size = Some(int()?),
            2 => compression = Some(int()?),
            3 => uncompressed_size = Some(int()?),
            _ => {} // a field of a later version
        }
    }
    let (Some(size), Some(compression)) = (size, compression) else {
        return Err("header without payload size or compression type".into());
    };
    if size != r.buf.len() as u64 {
        return Err(format!(
            "header says {size} bytes of payload, the event has {}",
            r.buf.len()
        ));
    }
    Ok(Payload {
        compression,
        uncompressed_size,
        payload: r.buf,
    })
}

/// Size of the complete event at the start of `buf`, checked against what `buf` holds, so
/// that parsing never reads past an event (mysql_common panics on short input).
pub fn frame(buf: &[u8]) -> Result<usize, String> {
    const HEADER: usize = 19;
    if buf.len() < HEADER {
        return Err(format!(
            "truncated event header: {} of {HEADER} bytes",
            buf.len()
        ));
    }
    let size = u32::from_le_bytes([buf[9], buf[10], buf[11], buf[12]]) as usize;
    if size < HEADER {
        return Err(format!("event size {size} is smaller than its header"));
    }
    if size > buf.len() {
        return Err(format!(
            "truncated event: header says {size} bytes, {} remain",
            buf.len()
        ));
    }
    Ok(size)
}

/// Parses the complete event at the start of `buf` with the format description in force,
/// after checking what mysql_common's `Event::read` assumes (and panics on otherwise): a
/// complete event (see [`frame`]) with room for its checksum when its format has one.
pub fn read_event(fde: &FormatDescriptionEvent<'_>, buf: &[u8]) -> Result<Event, String> {
    let size = frame(buf)?;
    if buf[4] != et::FORMAT_DESCRIPTION {
        // A format description carries its own checksum setting (and is at least as long as
        // its fixed part whenever it names an algorithm); other events follow `fde`.
        let footer = fde.footer();
        let checksummed = footer.get_checksum_enabled()
            && !matches!(
                footer.get_checksum_alg(),
                Ok(None) | Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_OFF))
            );
        if checksummed && size < 19 + 4 {
            return Err(format!(
                "event of {size} bytes has no room for the 4-byte checksum its format requires"
            ));
        }
    }
    Event::read(fde, &buf[..size]).map_err(|e| e.to_string())
}

fn mysql_gtid(g: &GtidEvent) -> String {
    let s = g.sid();
    let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    match g.tag() {
        Some(tag) => format!("{uuid}:{}:{}", tag.as_str(), g.gno()),
        None => format!("{uuid}:{}", g.gno()),
    }
}

impl Decoder {
    /// Whether a DML statement may have changed a captured table: its default database holds
    /// captured tables, or it names a captured `db.table`.
    fn touches_capture(&self, schema: &str, sql: &str) -> bool {
        if !schema.is_empty() && self.filter.database(schema) {
            return true;
        }
        sql.split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | ';'))
            .filter_map(|w| {
                let w = w.replace('`', "");
                let (db, table) = w.split_once('.')?;
                Some(self.filter.table(db, table))
            })
            .any(|hit| hit)
    }
}

fn is_ddl(word: &str) -> bool {
    matches!(word, "ALTER" | "CREATE" | "DROP" | "RENAME" | "TRUNCATE")
}
