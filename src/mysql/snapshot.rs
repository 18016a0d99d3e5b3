//! The initial snapshot: every existing row of the captured tables, read in primary-key
//! chunks on several connections without a lock, and merged into the binlog stream with no
//! gap and no duplicate at the seam (the DBLog algorithm, Netflix 2020, arXiv:2010.12597).
//!
//! ## Why the merge is correct
//!
//! For each chunk a worker first *registers* it with the binlog reader, which from then on
//! records the key of every change it reads for that table, with the binlog position of the
//! event. The reader has then read up to some position `R0`. The worker next opens a
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT` and learns the binlog position `P` its view
//! corresponds to (MariaDB: `binlog_snapshot_file/position`, exact; MySQL: `SHOW MASTER
//! STATUS` around the start, see below), selects the chunk and sends it to the reader. `P >=
//! R0`, because the snapshot was taken after the reader had read `R0`.
//!
//! The chunk holds, for its key range, the table as of `P`. The reader emits it (`op = "r"`)
//! once it has read at least to `P` and is not inside a transaction, at its position `E >= P`,
//! after dropping every key that changed in `(P, E]`. For any key `K` of the chunk:
//! - if `K` changed after `E`, the stream emits that change after the snapshot row: last write
//!   wins, correct;
//! - if `K` changed in `(P, E]`, the snapshot row (older) is dropped; the stream already
//!   emitted the newer change: correct;
//! - if `K` last changed at or before `P`, the snapshot row equals the state at `E`: correct.
//!
//! Rows deleted before `P` are not in the chunk, and rows inserted after `P` come from the
//! stream. No lock is taken at any time; the only cost is holding a chunk in memory between
//! `P` and `E`, bounded by `[snapshot] max_in_flight_chunks`.
//!
//! On MySQL, which does not report the snapshot's binlog position, `P` is read with `SHOW
//! MASTER STATUS` right after the snapshot opens and keys that changed after the position read
//! *before* it opened are dropped too (the DBLog low/high watermark window).
//!
//! Invariant: snapshot rows are emitted only between transactions, at strictly increasing
//! positions, and a snapshot row never follows a binlog change of its key that is newer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value as My};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::change::{Date, Duration, Row, TimeOfDay, Value};
use crate::config::{Config, Filter, KeyMode};
use crate::error::{Error, Result};
use crate::mysql::charset::charset_by_name;
use crate::mysql::rows::{ServerColumn, ServerTable};
use crate::mysql::server::{self, Flavor};
use crate::position::file_seq;
use crate::schema::{Charset, Column, KeySource, SqlType, TableSchema};

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

fn raw_key(k: &Option<Vec<My>>) -> Option<Vec<RawValue>> {
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

/// A point in the binlog, ordered by file sequence then offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct BinlogPos {
    pub file_seq: u64,
    pub offset: u64,
}

/// Rows of one table, read in one consistent view.
pub struct Chunk {
    pub registration: u64,
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
    pub read_at_ms: u64,
    /// Released when the reader has emitted the chunk: bounds chunks in memory.
    pub permit: OwnedSemaphorePermit,
}

/// What snapshot workers tell the binlog reader.
pub enum Message {
    /// The plan (sent first): every range, with what a resumed run had already done.
    Plan(SnapshotProgress),
    /// Start recording changed keys of `db.table`; answer on `ack` once recording.
    Register {
        id: u64,
        db: String,
        table: String,
        ack: oneshot::Sender<()>,
    },
    Chunk(Chunk),
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
    next_id: std::sync::atomic::AtomicU64,
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
    for (range, r) in progress.ranges.iter().enumerate() {
        if r.done {
            continue;
        }
        let name = (r.db.clone(), r.table.clone());
        if !schemas.contains_key(&name) {
            match load_schema(&mut meta, flavor, &cfg, &filter, &r.db, &r.table).await? {
                Some(s) => {
                    schemas.insert(name.clone(), s);
                }
                None => continue,
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
        next_id: Default::default(),
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
            "{db}.{table} is skipped (no key, key = \"skip\")"
        )));
    };
    if schema.columns.is_empty() {
        return Err(Error::Unsupported(format!(
            "table {db}.{table} does not exist"
        )));
    }
    if let Some(w) = &req.where_ {
        let probe = format!(
            "SELECT 1 FROM {}.{} WHERE ({w}) LIMIT 0",
            quote(db),
            quote(table)
        );
        meta.query_drop(&probe)
            .await
            .map_err(Error::mysql(format!("the condition `{w}`")))?;
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
    let Some(schema) = table_schema(db, table, &info, cfg.capture.key, filter)? else {
        tracing::warn!(table = %format!("{db}.{table}"), "no primary key and capture.key = \"skip\": not snapshotted");
        return Ok(None);
    };
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
            let key: Vec<My> = row
                .unwrap_raw()
                .into_iter()
                .map(|v| v.unwrap_or(My::NULL))
                .collect();
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
async fn begin_view(conn: &mut Conn, flavor: Flavor) -> Result<(BinlogPos, BinlogPos)> {
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

async fn register(shared: &Shared, t: &TableSchema) -> Result<u64> {
    let id = shared
        .next_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (ack, acked) = oneshot::channel();
    let msg = Message::Register {
        id,
        db: t.db.clone(),
        table: t.table.clone(),
        ack,
    };
    if shared.tx.send(msg).await.is_err() || acked.await.is_err() {
        return Err(Error::Unsupported("the binlog reader stopped".into()));
    }
    Ok(id)
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
    let keys = key_names(t);
    let n_cols = t.columns.len();
    let mut after: Option<Vec<My>> = task.after.clone();
    let mut total = 0u64;
    loop {
        let permit = shared
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Unsupported("snapshot stopped".into()))?;
        let id = register(shared, t).await?;
        let (drop_after, emit_at) = begin_view(conn, shared.flavor).await?;
        let mut conds = Vec::new();
        let mut params = Vec::new();
        match (&after, &task.from_incl) {
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
            let mut vals: Vec<My> = r
                .unwrap_raw()
                .into_iter()
                .map(|v| v.unwrap_or(My::NULL))
                .collect();
            let key_vals = vals.split_off(n_cols);
            after = Some(key_vals);
            rows.push(convert_row(t, vals)?);
        }
        total += rows.len() as u64;
        let chunk = Chunk {
            registration: id,
            range: task.range,
            last_key: after.clone(),
            range_done: !full,
            table: t.clone(),
            rows,
            emit_at,
            drop_after,
            closes: true,
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

/// A table without a primary key: one consistent view, sent in chunks.
async fn whole_table(conn: &mut Conn, shared: &Shared, task: &Task) -> Result<u64> {
    let t = &task.table;
    let id = register(shared, t).await?;
    let (drop_after, emit_at) = begin_view(conn, shared.flavor).await?;
    let sql = format!(
        "SELECT {} FROM {}.{}",
        task.select,
        quote(&t.db),
        quote(&t.table)
    );
    let raw: Vec<mysql_async::Row> = conn
        .exec(&sql, ())
        .await
        .map_err(Error::mysql(format!("snapshot of {}", t.full_name())))?;
    conn.query_drop("COMMIT")
        .await
        .map_err(Error::mysql("snapshot: COMMIT"))?;
    let total = raw.len() as u64;
    let mut rest = raw.into_iter().peekable();
    loop {
        let permit = shared
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Unsupported("snapshot stopped".into()))?;
        let mut rows = Vec::new();
        for r in rest.by_ref().take(shared.chunk_size) {
            let vals: Vec<My> = r
                .unwrap_raw()
                .into_iter()
                .map(|v| v.unwrap_or(My::NULL))
                .collect();
            rows.push(convert_row(t, vals)?);
        }
        let closes = rest.peek().is_none();
        let chunk = Chunk {
            registration: id,
            range: task.range,
            last_key: None,
            range_done: closes,
            table: t.clone(),
            rows,
            emit_at,
            drop_after,
            closes,
            read_at_ms: now_ms(),
            permit,
        };
        if shared.tx.send(Message::Chunk(chunk)).await.is_err() {
            return Err(Error::Unsupported("the binlog reader stopped".into()));
        }
        if closes {
            return Ok(total);
        }
    }
}

/// The schema of a table as information_schema describes it, with the same types the binlog
/// decoder derives from a table map. `None` when the table is skipped (`key = "skip"`).
pub fn table_schema(
    db: &str,
    table: &str,
    info: &ServerTable,
    key_mode: KeyMode,
    filter: &Filter,
) -> Result<Option<TableSchema>> {
    let mut columns = Vec::new();
    for c in &info.columns {
        if !filter.column(db, table, &c.name) {
            continue;
        }
        columns.push(Column {
            name: c.name.clone(),
            ty: sql_type(c).map_err(|what| {
                Error::Unsupported(format!(
                    "{db}.{table} column `{}` has type `{}`, which binlake cannot read ({what}); \
                     exclude the column ([capture] exclude_columns) or the table",
                    c.name, c.column_type
                ))
            })?,
            nullable: c.nullable,
        });
    }
    let pk: Vec<usize> = info
        .primary_key
        .iter()
        .filter_map(|k| columns.iter().position(|c| &c.name == k))
        .collect();
    let (key, key_source) = if !pk.is_empty() && pk.len() == info.primary_key.len() {
        (pk, KeySource::PrimaryKey)
    } else {
        match key_mode {
            KeyMode::AllColumns => ((0..columns.len()).collect(), KeySource::AllColumns),
            KeyMode::None => (Vec::new(), KeySource::None),
            KeyMode::Skip => return Ok(None),
        }
    };
    Ok(Some(TableSchema {
        db: db.to_string(),
        table: table.to_string(),
        columns,
        key,
        key_source,
    }))
}

fn sql_type(c: &ServerColumn) -> std::result::Result<SqlType, &'static str> {
    let unsigned = c.column_type.contains("unsigned");
    let int = |bytes| Ok(SqlType::Int { bytes, unsigned });
    let charset = || {
        c.charset
            .as_deref()
            .and_then(charset_by_name)
            .unwrap_or(Charset::Binary)
    };
    let string = |fixed: bool, blob: bool| {
        Ok(SqlType::String {
            charset: charset(),
            max_bytes: c.octet_length.unwrap_or(0).min(u32::MAX as u64) as u32,
            fixed,
            blob,
        })
    };
    let fsp = c.fsp.unwrap_or(0) as u8;
    let members = || {
        let open = c.column_type.find('(')?;
        let close = c.column_type.rfind(')')?;
        Some(split_members(&c.column_type[open + 1..close]))
    };
    if c.is_json {
        return Ok(SqlType::Json);
    }
    match c.data_type.as_str() {
        "tinyint" => int(1),
        "smallint" => int(2),
        "mediumint" => int(3),
        "int" | "integer" => int(4),
        "bigint" => int(8),
        "decimal" | "numeric" => Ok(SqlType::Decimal {
            precision: c.precision.unwrap_or(10) as u8,
            scale: c.scale.unwrap_or(0) as u8,
        }),
        "float" => Ok(SqlType::Float),
        "double" | "real" => Ok(SqlType::Double),
        "bit" => Ok(SqlType::Bit {
            bits: c.precision.unwrap_or(1) as u16,
        }),
        "char" | "binary" => string(true, false),
        "varchar" | "varbinary" => string(false, false),
        "tinytext" | "text" | "mediumtext" | "longtext" | "tinyblob" | "blob" | "mediumblob"
        | "longblob" => string(false, true),
        "date" => Ok(SqlType::Date),
        "datetime" => Ok(SqlType::DateTime { fsp }),
        "timestamp" => Ok(SqlType::Timestamp { fsp }),
        "time" => Ok(SqlType::Time { fsp }),
        "year" => Ok(SqlType::Year),
        "enum" => Ok(SqlType::Enum { values: members() }),
        "set" => Ok(SqlType::Set { values: members() }),
        "json" => Ok(SqlType::Json),
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => Ok(SqlType::Geometry),
        "vector" => Ok(SqlType::Vector { dimensions: None }),
        _ => Err("unknown data type"),
    }
}

/// `'a','b''c'` -> [a, b'c].
fn split_members(body: &str) -> Arc<[String]> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_str = false;
    let mut chars = body.chars().peekable();
    while let Some(ch) = chars.next() {
        match (in_str, ch) {
            (false, '\'') => in_str = true,
            (true, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            (true, '\'') => {
                in_str = false;
                out.push(std::mem::take(&mut cur));
            }
            (true, ch) => cur.push(ch),
            _ => {}
        }
    }
    out.into()
}

fn convert_row(t: &TableSchema, vals: Vec<My>) -> Result<Row> {
    t.columns
        .iter()
        .zip(vals)
        .map(|(c, v)| {
            convert(v, &c.ty).map_err(|detail| {
                Error::Unsupported(format!(
                    "snapshot of {}: column `{}`: {detail}",
                    t.full_name(),
                    c.name
                ))
            })
        })
        .collect()
}

/// A value from the server's binary protocol, as the binlog decoder would have produced it.
fn convert(v: My, ty: &SqlType) -> std::result::Result<Value, String> {
    let bytes = |v: My| match v {
        My::Bytes(b) => Ok(b),
        other => Err(format!("unexpected value {other:?}")),
    };
    let text = |b: Vec<u8>| String::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"));
    if v == My::NULL {
        return Ok(Value::Null);
    }
    Ok(match ty {
        SqlType::Int { unsigned, .. } => match v {
            My::Int(i) if *unsigned => Value::UInt(i as u64),
            My::Int(i) => Value::Int(i),
            My::UInt(u) if *unsigned => Value::UInt(u),
            My::UInt(u) => Value::Int(u as i64),
            other => return Err(format!("unexpected integer {other:?}")),
        },
        SqlType::Year => match v {
            My::Int(i) => Value::Year(i as u16),
            My::UInt(u) => Value::Year(u as u16),
            other => return Err(format!("unexpected YEAR {other:?}")),
        },
        SqlType::Float => match v {
            My::Float(f) => Value::Float(f),
            My::Double(d) => Value::Float(d as f32),
            other => return Err(format!("unexpected FLOAT {other:?}")),
        },
        SqlType::Double => match v {
            My::Double(d) => Value::Double(d),
            My::Float(f) => Value::Double(f as f64),
            other => return Err(format!("unexpected DOUBLE {other:?}")),
        },
        SqlType::Decimal { .. } => Value::Decimal(text(bytes(v)?)?),
        SqlType::Bit { .. } => Value::Bit(bytes(v)?),
        SqlType::String { charset, .. } => {
            let b = bytes(v)?;
            if *charset == Charset::Binary {
                Value::Bytes(b)
            } else {
                // The connection's charset is utf8mb4: the server converted the text.
                match String::from_utf8(b) {
                    Ok(s) => Value::String(s),
                    Err(e) => Value::Bytes(e.into_bytes()),
                }
            }
        }
        SqlType::Date => match v {
            My::Date(y, m, d, ..) => Value::Date(Date {
                year: y,
                month: m,
                day: d,
            }),
            other => return Err(format!("unexpected DATE {other:?}")),
        },
        SqlType::DateTime { fsp } => match v {
            My::Date(y, mo, d, h, mi, s, us) => Value::DateTime(
                Date {
                    year: y,
                    month: mo,
                    day: d,
                },
                TimeOfDay {
                    hour: h,
                    minute: mi,
                    second: s,
                    micros: us,
                    fsp: *fsp,
                },
            ),
            other => return Err(format!("unexpected DATETIME {other:?}")),
        },
        SqlType::Timestamp { fsp } => match v {
            My::Date(0, 0, 0, ..) => Value::Timestamp {
                secs: 0,
                micros: 0,
                fsp: *fsp,
            },
            My::Date(y, mo, d, h, mi, s, us) => Value::Timestamp {
                secs: days_from_civil(y as i64, mo as i64, d as i64) * 86_400
                    + h as i64 * 3600
                    + mi as i64 * 60
                    + s as i64,
                micros: us,
                fsp: *fsp,
            },
            other => return Err(format!("unexpected TIMESTAMP {other:?}")),
        },
        SqlType::Time { fsp } => match v {
            My::Time(neg, days, h, m, s, us) => Value::Time(Duration {
                negative: neg,
                hours: days * 24 + h as u32,
                minute: m,
                second: s,
                micros: us,
                fsp: *fsp,
            }),
            other => return Err(format!("unexpected TIME {other:?}")),
        },
        SqlType::Enum { .. } => Value::Enum(text(bytes(v)?)?),
        SqlType::Set { .. } => {
            let s = text(bytes(v)?)?;
            Value::Set(if s.is_empty() {
                Vec::new()
            } else {
                s.split(',').map(str::to_owned).collect()
            })
        }
        SqlType::Json => {
            let b = bytes(v)?;
            match String::from_utf8(b) {
                Ok(s) if serde_json::from_str::<serde::de::IgnoredAny>(&s).is_ok() => {
                    Value::Json(s)
                }
                Ok(s) => Value::String(s),
                Err(e) => Value::Bytes(e.into_bytes()),
            }
        }
        SqlType::Geometry => {
            let b = bytes(v)?;
            if b.len() < 4 {
                return Err("GEOMETRY shorter than its SRID".into());
            }
            Value::Geometry {
                srid: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                wkb: b[4..].to_vec(),
            }
        }
        SqlType::Vector { .. } => {
            let b = bytes(v)?;
            Value::Vector(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        }
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn civil_days_match_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2038, 1, 19), 24_855);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn set_and_enum_members() {
        assert_eq!(
            &*split_members("'a','b''c'"),
            &["a".to_string(), "b'c".into()]
        );
    }
}

/// Changed keys of one table, recorded while it has chunks in flight.
#[derive(Default)]
struct Recording {
    /// Registrations not yet closed by their last chunk.
    open: usize,
    /// (end of the event, key bytes) of every change read since the first registration.
    seen: Vec<(BinlogPos, Vec<u8>)>,
}

/// The binlog reader's side of the merge: records changed keys of tables with chunks in
/// flight, holds chunks until the stream has reached their view, and emits them between
/// transactions with the keys that changed since dropped.
#[derive(Default)]
pub struct Merger {
    /// End of the last binlog event read.
    pub pos: BinlogPos,
    /// Per table (db, name): what has changed since its chunks registered.
    recording: std::collections::HashMap<(String, String), Recording>,
    pending: Vec<Chunk>,
    snap_offset: u64,
    snap_next: u32,
    /// Rows emitted by the snapshot so far.
    pub rows: u64,
    /// The plan and how far it got, as of the changes emitted so far.
    pub progress: Option<SnapshotProgress>,
    /// `progress` changed since it was last taken.
    progress_changed: bool,
    /// When progress was last logged, and when the snapshot started.
    reported: Option<std::time::Instant>,
    started: Option<std::time::Instant>,
}

impl Merger {
    pub fn new(pos: BinlogPos) -> Self {
        Merger {
            pos,
            ..Default::default()
        }
    }

    /// Records the keys of `changes`, just read in an event ending at `self.pos`.
    pub fn record(&mut self, changes: &[crate::change::Change]) {
        if self.recording.is_empty() {
            return;
        }
        for c in changes {
            let name = (c.table.db.clone(), c.table.table.clone());
            if let Some(Recording { seen, .. }) = self.recording.get_mut(&name) {
                // An update of the key changes two keys: the old and the new one.
                for image in [&c.before, &c.after] {
                    if image.is_some() {
                        let only = crate::change::Change {
                            before: None,
                            after: image.clone(),
                            ..c.clone()
                        };
                        let mut k = Vec::new();
                        crate::output::key_bytes(&only, &mut k);
                        seen.push((self.pos, k));
                    }
                }
            }
        }
    }

    /// The progress, if it changed since the last call.
    pub fn take_progress(&mut self) -> Option<SnapshotProgress> {
        if std::mem::take(&mut self.progress_changed) {
            self.progress.clone()
        } else {
            None
        }
    }

    /// Handles a message from the snapshot workers. Returns false once the initial snapshot
    /// is finished.
    pub fn message(&mut self, m: Message) -> bool {
        match m {
            Message::Register { db, table, ack, .. } => {
                self.recording.entry((db, table)).or_default().open += 1;
                let _ = ack.send(());
            }
            Message::Plan(p) => {
                self.progress = Some(p);
                self.progress_changed = true;
            }
            Message::Chunk(c) => self.pending.push(c),
            Message::RangeDone { table, rows } => {
                tracing::info!(%table, rows, "snapshot range done");
            }
            Message::Finished => {
                tracing::info!(rows = self.rows, "snapshot complete");
                if let Some(p) = &mut self.progress {
                    p.complete = true;
                    self.progress_changed = true;
                }
                return false;
            }
        }
        true
    }

    /// Logs rows done / estimated, rate and ETA per unfinished table, every 5 seconds, when
    /// stderr is not a terminal (on a terminal, `tail` draws bars instead).
    fn report(&mut self) {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return;
        }
        let now = std::time::Instant::now();
        let started = *self.started.get_or_insert(now);
        if self
            .reported
            .is_some_and(|r| now.duration_since(r).as_secs() < 5)
        {
            return;
        }
        self.reported = Some(now);
        let Some(p) = &self.progress else { return };
        let secs = now.duration_since(started).as_secs_f64().max(1e-3);
        let mut tables: std::collections::BTreeMap<String, (u64, u64, bool)> = Default::default();
        for r in &p.ranges {
            let t = tables
                .entry(format!("{}.{}", r.db, r.table))
                .or_insert((0, 0, true));
            t.0 += r.rows;
            t.1 += r.estimate;
            t.2 &= r.done;
        }
        let rate = self.rows as f64 / secs;
        for (table, (rows, estimate, done)) in tables {
            if done {
                continue;
            }
            let left = estimate.saturating_sub(rows);
            tracing::info!(
                %table,
                rows,
                estimated = estimate,
                rows_per_sec = rate as u64,
                eta_secs = if rate > 0.0 { (left as f64 / rate) as u64 } else { 0 },
                "snapshot progress"
            );
        }
    }

    /// Emits every chunk whose view the stream has reached. Call only between transactions.
    pub fn emit_ready(&mut self, file: &Arc<str>, out: &mut Vec<crate::change::Change>) {
        if !self.pending.is_empty() {
            self.report();
        }
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].emit_at <= self.pos {
                let chunk = self.pending.swap_remove(i);
                self.emit(chunk, file, out);
            } else {
                i += 1;
            }
        }
    }

    fn emit(&mut self, chunk: Chunk, file: &Arc<str>, out: &mut Vec<crate::change::Change>) {
        let name = (chunk.table.db.clone(), chunk.table.table.clone());
        let dropped: std::collections::HashSet<&[u8]> = self
            .recording
            .get(&name)
            .map(|r| {
                r.seen
                    .iter()
                    .filter(|(p, _)| *p > chunk.drop_after)
                    .map(|(_, k)| k.as_slice())
                    .collect()
            })
            .unwrap_or_default();
        if self.snap_offset != self.pos.offset {
            self.snap_offset = self.pos.offset;
            self.snap_next = 0;
        }
        let first = out.len();
        let mut key = Vec::new();
        for row in chunk.rows {
            let c = crate::change::Change {
                op: crate::change::Op::Read,
                table: chunk.table.clone(),
                before: None,
                after: Some(row),
                ts_ms: chunk.read_at_ms,
                pos: crate::position::Position {
                    file: file.clone(),
                    offset: self.pos.offset,
                    row: 0,
                    gtid: None,
                    snapshot: Some(self.snap_next),
                },
                commit: false,
            };
            key.clear();
            crate::output::key_bytes(&c, &mut key);
            if dropped.contains(key.as_slice()) {
                continue;
            }
            self.snap_next += 1;
            out.push(c);
        }
        if out.len() > first {
            if let Some(last) = out.last_mut() {
                last.commit = true;
            }
        }
        let emitted = (out.len() - first) as u64;
        self.rows += emitted;
        if let Some(r) = self
            .progress
            .as_mut()
            .and_then(|p| p.ranges.get_mut(chunk.range))
        {
            if chunk.last_key.is_some() {
                r.after = raw_key(&chunk.last_key);
            }
            r.done |= chunk.range_done;
            r.rows += emitted;
            self.progress_changed = true;
        }
        drop(dropped);
        if chunk.closes {
            if let Some(r) = self.recording.get_mut(&name) {
                r.open -= 1;
                if r.open == 0 {
                    self.recording.remove(&name);
                }
            }
        }
        drop(chunk.permit);
    }
}
