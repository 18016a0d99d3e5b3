//! The initial snapshot: every existing row of the captured tables, read in primary-key
//! chunks on several connections without a lock, and merged into the binlog stream with no
//! gap and no duplicate at the seam (the DBLog algorithm, Netflix 2020, arXiv:2010.12597).
//!
//! ## Why the merge is correct
//!
//! For each chunk a worker first *registers* it with the binlog reader, which from then on
//! records the key of every change it reads for that table, with the binlog position of the
//! event, and answers with the position `R0` it has read to. The worker next opens a
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT` and learns the binlog position `P` its view
//! corresponds to (MariaDB: `binlog_snapshot_file/position`, exact; MySQL: `SHOW MASTER
//! STATUS` around the start, see below). It needs `P >= R0`: every change the reader read
//! before recording began must be in the view. That does not hold by itself, because the
//! server sends a transaction to replicas once it is in the binlog, which can be a moment
//! before the storage engine commits it; so a view with `P < R0` is closed and opened again
//! until `P >= R0` (found by a stress test: without it a stale row slipped through). The
//! worker then selects the chunk and sends it to the reader.
//!
//! The chunk holds, for its key range, the table as of `P`. The reader emits it (`op = "r"`)
//! once it has read at least to `P` and is not inside a transaction, at its position `E >= P`,
//! after dropping every key that changed in `(R0, E]`. For any key `K` of the chunk:
//! - if `K` changed after `E`, the stream emits that change after the snapshot row: last write
//!   wins, correct;
//! - if `K` changed in `(R0, E]`, the snapshot row is dropped; the stream already emitted that
//!   change with the whole row (`binlog_row_image=FULL`), and every later one: correct;
//! - if `K` last changed at or before `R0`, the view has that change (`P >= R0`) and the
//!   snapshot row equals the state at `E`: correct.
//!
//! The bound is `R0`, not `P`: dropping from `P` would trust that the view holds every
//! change up to the position MariaDB reports for it, and a stress test (seeded concurrent
//! writes, parallelism 4) showed it does not always: about one run in six kept a row
//! deleted at or before the reported `P`. Dropping from `R0` drops a few more rows, all of
//! which the stream carries, and those runs pass (24 of 24).
//!
//! Rows deleted before `P` are not in the chunk, and rows inserted after `P` come from the
//! stream. No lock is taken at any time; the only cost is holding a chunk in memory between
//! `P` and `E`, bounded by `[snapshot] max_in_flight_chunks`.
//!
//! On MySQL, which does not report the snapshot's binlog position, `P` is read with `SHOW
//! MASTER STATUS` right after the snapshot opens, and every key that changed since recording
//! began (`R0`) is dropped (the DBLog low/high watermark window). A transaction the reader
//! read before `R0` but the engine had not yet committed when the view opened would still be
//! missed: on MySQL this is a documented, narrow window; on MariaDB the reopening above
//! closes it as far as the reported `P` can be trusted.
//!
//! Invariant: snapshot rows are emitted only between transactions, at strictly increasing
//! positions, and a snapshot row never follows a binlog change of its key that is newer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value as My};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::change::Row;
use crate::config::{Config, Filter};
use crate::error::{Error, Result};
use crate::mysql::select::{convert_row, table_schema};
use crate::mysql::server::{self, Flavor};
use crate::position::file_seq;
use crate::schema::{KeySource, TableSchema};

/// A key value exactly as the server sent it, kept so a key range restarts exactly there.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawValue {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// Base64.
    Bytes(String),
    Date(u16, u8, u8, u8, u8, u8, u32),
    Time(bool, u32, u8, u8, u8, u32),
}

impl From<&My> for RawValue {
    fn from(v: &My) -> Self {
        use base64::Engine;
        match v {
            My::NULL => RawValue::Null,
            My::Int(i) => RawValue::Int(*i),
            My::UInt(u) => RawValue::UInt(*u),
            My::Float(f) => RawValue::Float(*f),
            My::Double(d) => RawValue::Double(*d),
            My::Bytes(b) => RawValue::Bytes(base64::engine::general_purpose::STANDARD.encode(b)),
            My::Date(a, b, c, d, e, f, g) => RawValue::Date(*a, *b, *c, *d, *e, *f, *g),
            My::Time(a, b, c, d, e, f) => RawValue::Time(*a, *b, *c, *d, *e, *f),
        }
    }
}

impl RawValue {
    fn to_mysql(&self) -> Result<My> {
        use base64::Engine;
        Ok(match self {
            RawValue::Null => My::NULL,
            RawValue::Int(i) => My::Int(*i),
            RawValue::UInt(u) => My::UInt(*u),
            RawValue::Float(f) => My::Float(*f),
            RawValue::Double(d) => My::Double(*d),
            RawValue::Bytes(b) => My::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| Error::Unsupported(format!("saved snapshot key: {e}")))?,
            ),
            RawValue::Date(a, b, c, d, e, f, g) => My::Date(*a, *b, *c, *d, *e, *f, *g),
            RawValue::Time(a, b, c, d, e, f) => My::Time(*a, *b, *c, *d, *e, *f),
        })
    }
}

pub(crate) fn raw_key(k: &Option<Vec<My>>) -> Option<Vec<RawValue>> {
    k.as_ref().map(|k| k.iter().map(RawValue::from).collect())
}

fn mysql_key(k: &Option<Vec<RawValue>>) -> Result<Option<Vec<My>>> {
    k.as_ref()
        .map(|k| k.iter().map(RawValue::to_mysql).collect())
        .transpose()
}

/// One key range of a table (or a whole table without a key) and how far it was emitted.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RangeProgress {
    pub db: String,
    pub table: String,
    pub from_incl: Option<Vec<RawValue>>,
    pub until: Option<Vec<RawValue>>,
    /// The last key emitted: the range resumes after it.
    pub after: Option<Vec<RawValue>>,
    pub done: bool,
    pub rows: u64,
    /// The optimizer's estimate of the range's rows (for progress reports).
    #[serde(default)]
    pub estimate: u64,
}

/// The snapshot's part of the saved position: its plan and how far each range got.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotProgress {
    pub ranges: Vec<RangeProgress>,
    pub complete: bool,
}

impl SnapshotProgress {
    /// Per table (`db.table`): rows emitted, estimated rows, and whether it is done.
    pub fn tables(&self) -> std::collections::BTreeMap<String, (u64, u64, bool)> {
        let mut tables = std::collections::BTreeMap::new();
        for r in &self.ranges {
            let t = tables
                .entry(format!("{}.{}", r.db, r.table))
                .or_insert((0, 0, true));
            t.0 += r.rows;
            t.1 += r.estimate;
            t.2 &= r.done;
        }
        tables
    }
}

/// A point in the binlog, ordered by file sequence then offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct BinlogPos {
    pub file_seq: u64,
    pub offset: u64,
}

/// Rows of one table, read in one consistent view.
pub struct Chunk {
    /// Index of its range in the plan, the last key it holds, and whether it ends the range.
    pub range: usize,
    pub last_key: Option<Vec<My>>,
    pub range_done: bool,
    pub table: Arc<TableSchema>,
    pub rows: Vec<Row>,
    /// The binlog position of the view: emit no earlier than this.
    pub emit_at: BinlogPos,
    /// Drop keys that changed after this position.
    pub drop_after: BinlogPos,
    /// The last chunk of its registration (tables without a key send several per view).
    pub closes: bool,
    /// Where the reader had read to when its registration began (what `Register` answered).
    pub registered_at: BinlogPos,
    pub read_at_ms: u64,
    /// Released when the reader has emitted the chunk: bounds chunks in memory.
    pub permit: OwnedSemaphorePermit,
}

/// What snapshot workers tell the binlog reader.
pub enum Message {
    /// The plan (sent first): every range, with what a resumed run had already done.
    Plan(SnapshotProgress),
    /// Start recording changed keys of `db.table`; answer on `ack`, once recording, with the
    /// position the reader has read to.
    Register {
        db: String,
        table: String,
        ack: oneshot::Sender<BinlogPos>,
    },
    Chunk(Chunk),
    /// A registration of `db.table` (begun at `at`) ends without (more) chunks: its worker
    /// failed.
    Release {
        db: String,
        table: String,
        at: BinlogPos,
    },
    /// A key range of a table (or a whole table) is complete.
    RangeDone {
        table: String,
        rows: u64,
    },
    /// Every table is complete.
    Finished,
}

/// One unit of work: a key range of a table, read chunk by chunk.
struct Task {
    range: usize,
    /// Resume after this key (a restarted range).
    after: Option<Vec<My>>,
    table: Arc<TableSchema>,
    /// Key columns' SQL names, in key order.
    select: String,
    /// Start after this key (exclusive), or at `from_incl` (inclusive), or at the beginning.
    from_incl: Option<Vec<My>>,
    /// Stop before this key (exclusive).
    until: Option<Vec<My>>,
    /// An extra SQL condition (on-demand snapshots of part of a table).
    filter: Option<String>,
}

struct Shared {
    tasks: Mutex<VecDeque<Task>>,
    tx: mpsc::Sender<Message>,
    in_flight: Arc<Semaphore>,
    chunk_size: usize,
    flavor: Flavor,
}

fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Plans (or, given the saved progress of an interrupted run, resumes) and runs the snapshot
/// of every captured table, sending the plan and then chunks to `tx`.
pub async fn run(cfg: Config, resume: SnapshotProgress, tx: mpsc::Sender<Message>) -> Result<()> {
    let mut meta = server::connect(&cfg).await?;
    let flavor = server::flavor(&mut meta).await?;
    let filter = Filter::new(&cfg.capture);
    let sc = &cfg.snapshot;
    let mut schemas: std::collections::HashMap<(String, String), (Arc<TableSchema>, String)> =
        Default::default();
    let mut progress = resume;
    let resuming = !progress.ranges.is_empty();
    // Plan every captured table the (possibly resumed) plan does not have yet: on a resume,
    // tables added to the include list since are snapshotted while the stream goes on.
    {
        let planned: std::collections::HashSet<(String, String)> = progress
            .ranges
            .iter()
            .map(|r| (r.db.clone(), r.table.clone()))
            .collect();
        for (db, table) in server::base_tables(&mut meta).await? {
            if !filter.table(&db, &table) || planned.contains(&(db.clone(), table.clone())) {
                continue;
            }
            if resuming {
                tracing::info!(table = %format!("{db}.{table}"), "table newly captured: snapshotting it");
                progress.complete = false;
            }
            let Some((schema, _)) =
                load_schema(&mut meta, flavor, &cfg, &filter, &db, &table).await?
            else {
                continue;
            };
            let estimate = server::estimated_rows(&mut meta, &db, &table).await?;
            // Split big keyed tables so that every worker can take part.
            let parts = if schema.key_source == KeySource::PrimaryKey {
                (estimate / sc.chunk_size as u64).clamp(1, sc.parallelism as u64) as usize
            } else {
                1
            };
            let bounds = split_points(&mut meta, &schema, estimate, parts).await?;
            let mut lower: Option<Vec<My>> = None;
            for b in bounds.into_iter().map(Some).chain(std::iter::once(None)) {
                progress.ranges.push(RangeProgress {
                    db: db.clone(),
                    table: table.clone(),
                    from_incl: raw_key(&lower),
                    until: raw_key(&b),
                    after: None,
                    done: false,
                    rows: 0,
                    estimate: estimate / parts as u64,
                });
                lower = b;
            }
        }
    }
    let mut tasks = VecDeque::new();
    let mut skipped = std::collections::HashSet::new();
    for (range, r) in progress.ranges.iter_mut().enumerate() {
        if r.done {
            continue;
        }
        let name = (r.db.clone(), r.table.clone());
        if skipped.contains(&name) {
            r.done = true;
            continue;
        }
        if !schemas.contains_key(&name) {
            match load_schema(&mut meta, flavor, &cfg, &filter, &r.db, &r.table).await? {
                Some(s) => {
                    schemas.insert(name.clone(), s);
                }
                None => {
                    // Not snapshotted (gone, or skipped): its ranges are done, so that the
                    // snapshot can complete.
                    r.done = true;
                    skipped.insert(name);
                    continue;
                }
            }
        }
        let (table, select) = schemas[&name].clone();
        tasks.push_back(Task {
            range,
            after: mysql_key(&r.after)?,
            table,
            select,
            from_incl: mysql_key(&r.from_incl)?,
            until: mysql_key(&r.until)?,
            filter: None,
        });
    }
    drop(meta);
    let resumed = progress
        .ranges
        .iter()
        .filter(|r| r.done || r.after.is_some())
        .count();
    tracing::info!(
        ranges = progress.ranges.len(),
        resumed,
        to_do = tasks.len(),
        parallelism = sc.parallelism,
        "snapshot planned"
    );
    if tx.send(Message::Plan(progress)).await.is_err() {
        return Ok(());
    }
    run_tasks(&cfg, flavor, tasks, &tx).await?;
    let _ = tx.send(Message::Finished).await;
    Ok(())
}

/// Runs `tasks` on `[snapshot] parallelism` connections.
async fn run_tasks(
    cfg: &Config,
    flavor: Flavor,
    tasks: VecDeque<Task>,
    tx: &mpsc::Sender<Message>,
) -> Result<()> {
    let sc = &cfg.snapshot;
    let shared = Arc::new(Shared {
        tasks: Mutex::new(tasks),
        tx: tx.clone(),
        in_flight: Arc::new(Semaphore::new(sc.max_in_flight_chunks.max(1))),
        chunk_size: sc.chunk_size,
        flavor,
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..sc.parallelism.max(1) {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        workers.spawn(async move { worker(&cfg, &shared).await });
    }
    while let Some(r) = workers.join_next().await {
        match r {
            Ok(r) => r?,
            Err(e) => {
                return Err(Error::Unsupported(format!("snapshot worker stopped: {e}")));
            }
        }
    }
    Ok(())
}

/// A request to snapshot one table (or the rows matching `where_`) while streaming.
pub struct AdhocRequest {
    /// `db.table`.
    pub table: String,
    pub where_: Option<String>,
    /// Answered once the request was checked (table captured, condition valid).
    pub reply: oneshot::Sender<std::result::Result<String, String>>,
}

/// An on-demand snapshot, merged into the stream like the initial one. It is not part of the
/// saved progress: after a restart it must be asked for again.
pub async fn run_adhoc(cfg: Config, req: AdhocRequest, tx: mpsc::Sender<Message>) -> Result<()> {
    let checked = check_adhoc(&cfg, &req).await;
    let (flavor, task) = match checked {
        Ok(t) => t,
        Err(e) => {
            let _ = req.reply.send(Err(e.to_string()));
            return Ok(());
        }
    };
    let _ = req.reply.send(Ok(format!(
        "snapshot of {} started{}",
        req.table,
        req.where_
            .as_deref()
            .map(|w| format!(" for rows where {w}"))
            .unwrap_or_default()
    )));
    let table = task.table.full_name();
    let rows = run_tasks(&cfg, flavor, VecDeque::from([task]), &tx).await;
    tracing::info!(%table, ok = rows.is_ok(), "on-demand snapshot finished");
    rows
}

async fn check_adhoc(cfg: &Config, req: &AdhocRequest) -> Result<(Flavor, Task)> {
    let (db, table) = req
        .table
        .split_once('.')
        .ok_or_else(|| Error::Unsupported(format!("`{}` is not db.table", req.table)))?;
    let filter = Filter::new(&cfg.capture);
    if !filter.table(db, table) {
        return Err(Error::Unsupported(format!(
            "{db}.{table} is not captured ([capture] include/exclude)"
        )));
    }
    let mut meta = server::connect(cfg).await?;
    let flavor = server::flavor(&mut meta).await?;
    let Some((schema, select)) = load_schema(&mut meta, flavor, cfg, &filter, db, table).await?
    else {
        return Err(Error::Unsupported(format!(
            "{db}.{table} is not snapshotted: it does not exist, every column is excluded, or \
             it has no key and [capture] key = \"skip\""
        )));
    };
    if let Some(w) = &req.where_ {
        check_condition(w)
            .map_err(|why| Error::Unsupported(format!("the condition `{w}` {why}")))?;
        // One prepared statement (no second statement can ride along), in a read-only
        // transaction, like the chunks that will use the condition.
        let probe = format!(
            "SELECT 1 FROM {}.{} WHERE ({w}) LIMIT 0",
            quote(db),
            quote(table)
        );
        meta.query_drop("START TRANSACTION READ ONLY")
            .await
            .map_err(Error::mysql("START TRANSACTION READ ONLY"))?;
        let probed = meta
            .exec_drop(&probe, ())
            .await
            .map_err(Error::mysql(format!("the condition `{w}`")));
        let _ = meta.query_drop("ROLLBACK").await;
        probed?;
    }
    Ok((
        flavor,
        Task {
            range: usize::MAX,
            after: None,
            table: schema,
            select,
            from_incl: None,
            until: None,
            filter: req.where_.clone(),
        },
    ))
}

/// Checks an on-demand snapshot's condition, which is placed in `WHERE (…)` of the chunks'
/// SELECT: it must be one boolean expression over the table's own columns. Refused, with the
/// reason: a statement separator or a comment, unbalanced parentheses or quotes (which could
/// close the `WHERE (…)` and append a UNION), and the words SELECT, UNION, FROM and INTO
/// outside quotes (subqueries and other tables). Back-quoted names may be anything.
pub fn check_condition(w: &str) -> std::result::Result<(), String> {
    if w.trim().is_empty() {
        return Err("is empty".into());
    }
    let b = w.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    let mut word = String::new();
    let forbidden = |word: &str| -> std::result::Result<(), String> {
        let upper = word.to_ascii_uppercase();
        if ["SELECT", "UNION", "FROM", "INTO"].contains(&upper.as_str()) {
            return Err(format!(
                "uses {upper}: a condition is an expression over the table's columns, without \
                 subqueries"
            ));
        }
        Ok(())
    };
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
            word.push(c as char);
            i += 1;
            continue;
        }
        forbidden(&word)?;
        word.clear();
        match c {
            b'\'' | b'"' | b'`' => {
                // Skip to the closing quote (doubled quotes and, except in names,
                // backslash escapes stay inside).
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("has an unterminated quote".into()),
                        Some(&q) if q == c && b.get(i + 1) == Some(&c) => i += 2,
                        Some(&q) if q == c => break,
                        Some(b'\\') if c != b'`' => i += 2,
                        Some(_) => i += 1,
                    }
                }
            }
            b';' => return Err("has a `;`: one expression only".into()),
            b'#' => return Err("has a comment (`#`)".into()),
            b'-' if b.get(i + 1) == Some(&b'-') => return Err("has a comment (`--`)".into()),
            b'/' if b.get(i + 1) == Some(&b'*') => return Err("has a comment (`/*`)".into()),
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("closes a parenthesis it did not open".into());
                }
            }
            _ => {}
        }
        i += 1;
    }
    forbidden(&word)?;
    if depth != 0 {
        return Err("leaves a parenthesis open".into());
    }
    Ok(())
}

/// A table's schema and its SELECT list; `None` when it is not snapshotted (`key = "skip"`).
async fn load_schema(
    meta: &mut Conn,
    flavor: Flavor,
    cfg: &Config,
    filter: &Filter,
    db: &str,
    table: &str,
) -> Result<Option<(Arc<TableSchema>, String)>> {
    let info = server::table_info(meta, flavor, db, table).await?;
    if info.columns.is_empty() {
        // Dropped or renamed since it was planned: the binlog carries the DDL, and a
        // renamed table's new name is planned anew by the next start.
        tracing::warn!(table = %format!("{db}.{table}"), "the table no longer exists (dropped or renamed): not snapshotted");
        return Ok(None);
    }
    let Some(schema) = table_schema(db, table, &info, cfg.capture.key, filter)? else {
        tracing::warn!(table = %format!("{db}.{table}"), "no primary key and capture.key = \"skip\": not snapshotted");
        return Ok(None);
    };
    if schema.columns.is_empty() {
        tracing::warn!(table = %format!("{db}.{table}"), "every column is excluded ([capture] exclude_columns): not snapshotted");
        return Ok(None);
    }
    let select = schema
        .columns
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Some((Arc::new(schema), select)))
}

/// Keys that cut a table into `parts` ranges of about equal size (index-only scans).
async fn split_points(
    conn: &mut Conn,
    t: &TableSchema,
    estimate: u64,
    parts: usize,
) -> Result<Vec<Vec<My>>> {
    let mut out = Vec::new();
    if parts < 2 {
        return Ok(out);
    }
    let keys = key_names(t);
    let sql = format!(
        "SELECT {} FROM {}.{} ORDER BY {} LIMIT 1 OFFSET ?",
        keys.join(", "),
        quote(&t.db),
        quote(&t.table),
        keys.join(", ")
    );
    for i in 1..parts {
        let offset = estimate * i as u64 / parts as u64;
        let row: Option<mysql_async::Row> = conn
            .exec_first(&sql, (offset,))
            .await
            .map_err(Error::mysql(format!("splitting {}", t.full_name())))?;
        if let Some(row) = row {
            let key = raw_values(row);
            if out.last() != Some(&key) {
                out.push(key);
            }
        }
    }
    Ok(out)
}

fn key_names(t: &TableSchema) -> Vec<String> {
    t.key.iter().map(|&i| quote(&t.columns[i].name)).collect()
}

/// `(k1, k2) > (?, ?)` written out so every server uses the key's index for it.
fn key_compare(keys: &[String], op: &str) -> String {
    let mut ors = Vec::new();
    for i in 0..keys.len() {
        let mut ands: Vec<String> = keys[..i].iter().map(|k| format!("{k} = ?")).collect();
        let last_op = if i + 1 == keys.len() { op } else { &op[..1] };
        ands.push(format!("{} {last_op} ?", keys[i]));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    format!("({})", ors.join(" OR "))
}

/// Parameters for [`key_compare`]: the prefix values repeated as the expansion needs them.
fn key_params(values: &[My]) -> Vec<My> {
    let mut out = Vec::new();
    for i in 0..values.len() {
        out.extend_from_slice(&values[..=i]);
    }
    out
}

async fn open_connection(cfg: &Config) -> Result<Conn> {
    let mut conn = server::connect(cfg).await?;
    for sql in [
        "SET time_zone = '+00:00'",
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    ] {
        conn.query_drop(sql).await.map_err(Error::mysql(format!(
            "preparing a snapshot connection ({sql})"
        )))?;
    }
    Ok(conn)
}

/// Opens a consistent snapshot and returns (drop_after, emit_at) binlog positions.
///
/// The view must include everything the reader had read when the chunk registered
/// (`read_to`): the server sends a transaction to replicas as soon as it is in the binlog,
/// which can be a moment before the storage engine commits it, and a view opened in that
/// moment would miss a change the reader has already emitted. On MariaDB, which reports the
/// view's position, a view older than `read_to` is closed and opened again. Keys are dropped
/// from `read_to` on in both cases (see the module doc for why not from the view's position).
async fn begin_view(
    conn: &mut Conn,
    flavor: Flavor,
    read_to: BinlogPos,
) -> Result<(BinlogPos, BinlogPos)> {
    let started = std::time::Instant::now();
    loop {
        let (drop_after, emit_at) = open_view(conn, flavor).await?;
        // Drop every key changed since recording began (module doc).
        if flavor == Flavor::MySql || drop_after >= read_to {
            return Ok((drop_after.min(read_to), emit_at));
        }
        tracing::debug!(view = ?drop_after, reader = ?read_to, "snapshot view older than what the reader read: reopening");
        conn.query_drop("COMMIT")
            .await
            .map_err(Error::mysql("snapshot: COMMIT"))?;
        if started.elapsed().as_secs() >= 30 {
            return Err(Error::Unsupported(format!(
                "the server's snapshot position ({drop_after:?}) stayed behind what the binlog \
                 reader had read ({read_to:?}) for 30 s"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

async fn open_view(conn: &mut Conn, flavor: Flavor) -> Result<(BinlogPos, BinlogPos)> {
    let e = |what: &str| Error::mysql(format!("snapshot: {what}"));
    match flavor {
        Flavor::MariaDb => {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .await
                .map_err(e("START TRANSACTION WITH CONSISTENT SNAPSHOT"))?;
            let rows: Vec<(String, String)> = conn
                .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
                .await
                .map_err(e("SHOW STATUS LIKE 'binlog_snapshot_%'"))?;
            let get = |name: &str| {
                rows.iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let file = get("binlog_snapshot_file").unwrap_or_default();
            let offset = get("binlog_snapshot_position")
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    Error::Unsupported(
                        "the server reports no binlog_snapshot_position; is log_bin on?".into(),
                    )
                })?;
            let p = BinlogPos {
                file_seq: file_seq(&file),
                offset,
            };
            Ok((p, p))
        }
        Flavor::MySql => {
            let (f, o) = server::binlog_end(conn).await?;
            let low = BinlogPos {
                file_seq: file_seq(&f),
                offset: o,
            };
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .await
                .map_err(e("START TRANSACTION WITH CONSISTENT SNAPSHOT"))?;
            let (f, o) = server::binlog_end(conn).await?;
            Ok((
                low,
                BinlogPos {
                    file_seq: file_seq(&f),
                    offset: o,
                },
            ))
        }
    }
}

/// Waits until fewer than `max_in_flight_chunks` chunks are held, and takes a slot.
async fn in_flight_slot(shared: &Shared) -> Result<OwnedSemaphorePermit> {
    shared
        .in_flight
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::Unsupported("snapshot stopped".into()))
}

/// Registers a chunk with the reader: returns the position the reader had read to when it
/// started recording (the view must not be older than that).
async fn register(shared: &Shared, t: &TableSchema) -> Result<BinlogPos> {
    let (ack, acked) = oneshot::channel();
    let msg = Message::Register {
        db: t.db.clone(),
        table: t.table.clone(),
        ack,
    };
    if shared.tx.send(msg).await.is_err() {
        return Err(Error::Unsupported("the binlog reader stopped".into()));
    }
    let read_to = acked
        .await
        .map_err(|_| Error::Unsupported("the binlog reader stopped".into()))?;
    Ok(read_to)
}

async fn worker(cfg: &Config, shared: &Shared) -> Result<()> {
    let mut conn = open_connection(cfg).await?;
    loop {
        let task = match shared.tasks.lock() {
            Ok(mut q) => q.pop_front(),
            Err(_) => None,
        };
        let Some(task) = task else {
            return Ok(());
        };
        let rows = if task.table.key_source == KeySource::PrimaryKey {
            keyed_range(&mut conn, shared, &task).await?
        } else {
            whole_table(&mut conn, shared, &task).await?
        };
        let _ = shared
            .tx
            .send(Message::RangeDone {
                table: task.table.full_name(),
                rows,
            })
            .await;
    }
}

/// Reads one key range chunk by chunk, each chunk in its own consistent view.
async fn keyed_range(conn: &mut Conn, shared: &Shared, task: &Task) -> Result<u64> {
    let t = &task.table;
    let mut after: Option<Vec<My>> = task.after.clone();
    let mut total = 0u64;
    loop {
        let permit = in_flight_slot(shared).await?;
        let read_to = register(shared, t).await?;
        let (rows, full, drop_after, emit_at) =
            match read_chunk(conn, shared, task, &mut after, read_to).await {
                Ok(read) => read,
                Err(e) if table_gone(&e) => {
                    gone(shared, task, read_to, permit).await?;
                    return Ok(total);
                }
                Err(e) => {
                    release(shared, t, read_to).await;
                    return Err(e);
                }
            };
        total += rows.len() as u64;
        let chunk = Chunk {
            range: task.range,
            last_key: after.clone(),
            range_done: !full,
            table: t.clone(),
            rows,
            emit_at,
            drop_after,
            closes: true,
            registered_at: read_to,
            read_at_ms: now_ms(),
            permit,
        };
        if shared.tx.send(Message::Chunk(chunk)).await.is_err() {
            return Err(Error::Unsupported("the binlog reader stopped".into()));
        }
        if !full {
            return Ok(total);
        }
    }
}

/// One chunk of a key range, after `after`, in a fresh consistent view: its rows, whether it
/// was full, and the view's (drop_after, emit_at) positions. Advances `after`.
async fn read_chunk(
    conn: &mut Conn,
    shared: &Shared,
    task: &Task,
    after: &mut Option<Vec<My>>,
    read_to: BinlogPos,
) -> Result<(Vec<Row>, bool, BinlogPos, BinlogPos)> {
    let t = &task.table;
    let keys = key_names(t);
    let (drop_after, emit_at) = begin_view(conn, shared.flavor, read_to).await?;
    let mut conds = Vec::new();
    let mut params = Vec::new();
    match (&*after, &task.from_incl) {
        (Some(a), _) => {
            conds.push(key_compare(&keys, ">"));
            params.extend(key_params(a));
        }
        (None, Some(f)) => {
            conds.push(key_compare(&keys, ">="));
            params.extend(key_params(f));
        }
        (None, None) => {}
    }
    if let Some(u) = &task.until {
        conds.push(key_compare(&keys, "<"));
        params.extend(key_params(u));
    }
    if let Some(f) = &task.filter {
        conds.push(format!("({f})"));
    }
    let sql = format!(
        "SELECT {}, {} FROM {}.{} {} ORDER BY {} LIMIT {}",
        task.select,
        keys.join(", "),
        quote(&t.db),
        quote(&t.table),
        if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        },
        keys.join(", "),
        shared.chunk_size
    );
    let raw: Vec<mysql_async::Row> = conn
        .exec(&sql, params)
        .await
        .map_err(Error::mysql(format!("snapshot of {}", t.full_name())))?;
    conn.query_drop("COMMIT")
        .await
        .map_err(Error::mysql("snapshot: COMMIT"))?;
    let full = raw.len() == shared.chunk_size;
    let mut rows = Vec::with_capacity(raw.len());
    for r in raw {
        let mut vals = raw_values(r);
        let key_vals = vals.split_off(t.columns.len());
        *after = Some(key_vals);
        rows.push(convert_row(t, vals)?);
    }
    Ok((rows, full, drop_after, emit_at))
}

/// Tells the merger that a registration will send no (more) chunks, after an error.
async fn release(shared: &Shared, t: &TableSchema, at: BinlogPos) {
    let _ = shared
        .tx
        .send(Message::Release {
            db: t.db.clone(),
            table: t.table.clone(),
            at,
        })
        .await;
}

/// A table without a primary key: one consistent view, streamed and sent in chunks (the
/// server waits while the merger holds `max_in_flight_chunks`, so memory stays bounded).
async fn whole_table(conn: &mut Conn, shared: &Shared, task: &Task) -> Result<u64> {
    let t = &task.table;
    let read_to = register(shared, t).await?;
    let r = stream_table(conn, shared, task, read_to).await;
    match r {
        // Gone before its first chunk was sent (a later failure would have sent some).
        Err(e) if table_gone(&e) => {
            let permit = in_flight_slot(shared).await?;
            gone(shared, task, read_to, permit).await?;
            Ok(0)
        }
        Err(e) => {
            release(shared, t, read_to).await;
            Err(e)
        }
        ok => ok,
    }
}

/// The server says the table does not exist (ER_NO_SUCH_TABLE): dropped or renamed while
/// its snapshot ran.
fn table_gone(e: &Error) -> bool {
    matches!(e, Error::Mysql { cause: mysql_async::Error::Server(s), .. } if s.code == 1146)
}

/// Ends a range whose table was dropped or renamed while it was read: an empty last chunk,
/// emitted in order like any other, marks the range done and closes its registration. The
/// binlog carries the DROP or RENAME and every change before it.
async fn gone(
    shared: &Shared,
    task: &Task,
    read_to: BinlogPos,
    permit: OwnedSemaphorePermit,
) -> Result<()> {
    tracing::warn!(table = %task.table.full_name(), "the table was dropped or renamed during its snapshot: its snapshot ends here");
    let chunk = Chunk {
        range: task.range,
        last_key: None,
        range_done: true,
        table: task.table.clone(),
        rows: Vec::new(),
        emit_at: read_to,
        drop_after: read_to,
        closes: true,
        registered_at: read_to,
        read_at_ms: now_ms(),
        permit,
    };
    shared
        .tx
        .send(Message::Chunk(chunk))
        .await
        .map_err(|_| Error::Unsupported("the binlog reader stopped".into()))
}

async fn stream_table(
    conn: &mut Conn,
    shared: &Shared,
    task: &Task,
    read_to: BinlogPos,
) -> Result<u64> {
    let t = &task.table;
    let (drop_after, emit_at) = begin_view(conn, shared.flavor, read_to).await?;
    let sql = format!(
        "SELECT {} FROM {}.{}{}",
        task.select,
        quote(&t.db),
        quote(&t.table),
        task.filter
            .as_deref()
            .map(|f| format!(" WHERE ({f})"))
            .unwrap_or_default()
    );
    let err = || Error::mysql(format!("snapshot of {}", t.full_name()));
    let mut total = 0u64;
    let mut result = conn.exec_iter(sql, ()).await.map_err(err())?;
    loop {
        let permit = in_flight_slot(shared).await?;
        let mut rows = Vec::with_capacity(shared.chunk_size);
        while rows.len() < shared.chunk_size {
            match result.next().await.map_err(err())? {
                Some(r) => rows.push(convert_row(t, raw_values(r))?),
                None => break,
            }
        }
        // A short (possibly empty) chunk is the last one.
        let closes = rows.len() < shared.chunk_size;
        total += rows.len() as u64;
        let chunk = Chunk {
            range: task.range,
            last_key: None,
            range_done: closes,
            table: t.clone(),
            rows,
            emit_at,
            drop_after,
            closes,
            registered_at: read_to,
            read_at_ms: now_ms(),
            permit,
        };
        if shared.tx.send(Message::Chunk(chunk)).await.is_err() {
            return Err(Error::Unsupported("the binlog reader stopped".into()));
        }
        if closes {
            break;
        }
    }
    drop(result);
    conn.query_drop("COMMIT")
        .await
        .map_err(Error::mysql("snapshot: COMMIT"))?;
    Ok(total)
}

/// A row's values as the server sent them.
fn raw_values(r: mysql_async::Row) -> Vec<My> {
    r.unwrap_raw()
        .into_iter()
        .map(|v| v.unwrap_or(My::NULL))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_one_expression_over_the_columns() {
        for ok in [
            "id BETWEEN 1 AND 1000",
            "(a = 1 OR b = 'x;y -- (') AND c IS NOT NULL",
            "name = 'it''s' AND `from` > 3",
            "note = \"a \\\" b\" OR d < NOW() - INTERVAL 1 DAY",
        ] {
            assert_eq!(check_condition(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            (
                "1) UNION SELECT user, password FROM mysql.user WHERE (1",
                "closes",
            ),
            ("1; DROP TABLE t", "`;`"),
            ("id IN (SELECT id FROM other)", "SELECT"),
            ("1 -- x", "comment"),
            ("1 /* x */", "comment"),
            ("1 # x", "comment"),
            ("(1", "open"),
            ("a = 'x", "unterminated"),
            ("", "empty"),
            ("1 INTO OUTFILE '/tmp/x'", "INTO"),
        ] {
            let e = check_condition(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn key_comparison_expands_lexicographically() {
        let k = vec!["`a`".to_string(), "`b`".to_string()];
        assert_eq!(key_compare(&k, ">"), "((`a` > ?) OR (`a` = ? AND `b` > ?))");
        assert_eq!(
            key_compare(&k, ">="),
            "((`a` > ?) OR (`a` = ? AND `b` >= ?))"
        );
        assert_eq!(
            key_params(&[My::Int(1), My::Int(2)]),
            [My::Int(1), My::Int(1), My::Int(2)]
        );
    }
}
