//! `binlake rebuild`: a table topic → the table it describes, in MySQL/MariaDB (`mysql.rs`)
//! or as a Parquet snapshot directory on file:// or hdfs:// (`lake.rs`); `verify.rs` compares
//! the result with a live table.
//!
//! A table topic is keyed by primary key and holds a tombstone for each delete, so reading it
//! from the first offset and keeping the last value per key *is* the table, whether or not
//! the broker compacted it yet. The pass reads to the high watermarks taken at the start
//! (`read.rs`), so its result is the table as of one point of the changelog; with `--follow`
//! it then keeps applying new records.
//!
//! Invariants: a record is decoded with the schema its id names, and projected onto the
//! newest layout by column name (columns it lacks take their default); replays of a crashed
//! `binlake run` (a `binlake.pos` already seen) are dropped; nothing is visible at the target
//! before the pass completed (staging table / temporary directory, then one rename).

pub mod lake;
pub mod mysql;
pub mod read;
pub mod sql;
pub mod verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::progress::Counter;
use crate::registry::client::RegistryClient;
use crate::sink::rows::{decode_tombstone, decode_value, Decoded, Origin};
use crate::sink::schema::LakeSchema;
use crate::sink::schema_id;

use mysql::{MysqlUrl, Writer};
use read::{Rec, TopicReader};
use sql::{ident, TableDef};

/// Where the rebuilt table goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A database on a MySQL/MariaDB server (`db` empty: the source's database name).
    Mysql(MysqlUrl),
    /// A directory URL (`file:///…`, `hdfs://…`) for a Parquet snapshot.
    Lake(String),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub topic: String,
    pub target: Target,
    pub create: bool,
    pub follow: bool,
    /// Connections writing at once (MySQL).
    pub writers: usize,
    /// Rows per statement (MySQL).
    pub batch_rows: usize,
}

/// What a rebuild did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// `db.table` at the source.
    pub source: String,
    /// Where it went.
    pub target: String,
    pub records: u64,
    pub replays: u64,
    pub upserted: u64,
    pub deleted: u64,
    pub seconds: f64,
    /// The rebuilt table (MySQL targets): database, table, its columns and key (empty for a
    /// table without primary key), for --verify.
    pub db: String,
    pub table: String,
    pub columns: Vec<String>,
    pub key: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rebuilt {} into {}: {} records read ({} replays dropped), {} rows upserted, {} \
             deleted, in {:.1} s ({:.0} records/s)",
            self.source,
            self.target,
            self.records,
            self.replays,
            self.upserted,
            self.deleted,
            self.seconds,
            self.records as f64 / self.seconds.max(1e-9)
        )
    }
}

/// The topic of table `db.table`.
pub fn topic_of(cfg: &Config, table: &str) -> Result<String> {
    match table.split_once('.') {
        Some((db, t)) if !db.is_empty() && !t.is_empty() => {
            Ok(format!("{}.{db}.{t}", cfg.kafka.topic_prefix))
        }
        _ => Err(Error::Unsupported(format!(
            "--table {table}: write the table as db.table"
        ))),
    }
}

/// The topic's schemas by id, and the lake layout of each (key, value) pair.
pub struct Layouts {
    topic: String,
    client: RegistryClient,
    rt: tokio::runtime::Handle,
    text: HashMap<u32, String>,
    lake: HashMap<(u32, u32), Arc<LakeSchema>>,
    latest_key: u32,
    latest_value: u32,
}

impl Layouts {
    /// The newest schemas of `topic`, and the table they describe. A topic without them is
    /// not a binlake table topic.
    pub fn open(
        cfg: &Config,
        topic: &str,
        rt: tokio::runtime::Handle,
    ) -> Result<(Layouts, TableDef)> {
        let client = RegistryClient::new(cfg)?;
        let latest = |suffix: &str| -> Result<(u32, String)> {
            let subject = format!("{topic}-{suffix}");
            rt.block_on(client.latest(&subject))?.ok_or_else(|| {
                Error::Unsupported(format!(
                    "topic {topic} has no schema under subject {subject} in the registry at {}: \
                     it is not a binlake table topic (rebuild reads the topics `binlake run` \
                     writes, {{topic_prefix}}.{{db}}.{{table}})",
                    cfg.registry.url
                ))
            })
        };
        let (key_id, key) = latest("key")?;
        let (value_id, value) = latest("value")?;
        let def = TableDef::from_schemas(topic, &key, &value)?;
        let mut layouts = Layouts {
            topic: topic.to_string(),
            client,
            rt,
            text: HashMap::from([(key_id, key), (value_id, value)]),
            lake: HashMap::new(),
            latest_key: key_id,
            latest_value: value_id,
        };
        layouts.layout(key_id, value_id)?;
        Ok((layouts, def))
    }

    fn text(&mut self, id: u32) -> Result<String> {
        if !self.text.contains_key(&id) {
            let s = self.rt.block_on(self.client.schema_by_id(id))?;
            self.text.insert(id, s);
        }
        Ok(self.text[&id].clone())
    }

    /// The layout of records written with schemas (key_id, value_id).
    pub fn layout(&mut self, key_id: u32, value_id: u32) -> Result<Arc<LakeSchema>> {
        if let Some(l) = self.lake.get(&(key_id, value_id)) {
            return Ok(l.clone());
        }
        let (key, value) = (self.text(key_id)?, self.text(value_id)?);
        let l = Arc::new(LakeSchema::derive(&self.topic, &key, &value)?);
        self.lake.insert((key_id, value_id), l.clone());
        Ok(l)
    }

    /// The newest layout (as of the start).
    pub fn latest(&mut self) -> Result<Arc<LakeSchema>> {
        self.layout(self.latest_key, self.latest_value)
    }

    /// The table described by value schema `value_id` (with the newest key).
    pub fn def(&mut self, value_id: u32) -> Result<TableDef> {
        let key = self.text(self.latest_key)?;
        let value = self.text(value_id)?;
        TableDef::from_schemas(&self.topic, &key, &value)
    }

    /// Decodes a record: a put, or (a tombstone) a delete of its key.
    pub fn decode<'a>(&mut self, rec: &Rec<'a>) -> Result<(Arc<LakeSchema>, u32, Decoded<'a>)> {
        let key_id = schema_id(rec.key, &self.topic, "key")?;
        let value_id = match rec.value {
            Some(v) => schema_id(v, &self.topic, "value")?,
            None => self.latest_value,
        };
        let layout = self.layout(key_id, value_id)?;
        let o = Origin {
            topic: &self.topic,
            partition: rec.partition,
            offset: rec.offset,
            timestamp_ms: rec.timestamp_ms,
        };
        let d = match rec.value {
            Some(v) => decode_value(&layout, &v[5..], &o)?,
            None => decode_tombstone(&layout, &rec.key[5..], &o)?,
        };
        Ok((layout, value_id, d))
    }
}

/// The schemas of the topic's newest change (by `binlake.pos`): the table's current shape.
/// Not the subjects' latest versions: a DROP COLUMN back to an earlier shape re-uses that
/// shape's schema id, and the latest version stays the wider schema.
#[derive(Default)]
pub struct Newest {
    pos: Vec<u8>,
    /// (key schema id, value schema id) of the newest put.
    pub ids: Option<(u32, u32)>,
}

impl Newest {
    pub fn offer(&mut self, rec: &Rec<'_>) {
        let (Some(value), Some(pos)) = (rec.value, rec.pos) else {
            return;
        };
        if self.ids.is_some() && pos <= self.pos.as_slice() {
            return;
        }
        let topic = "";
        if let (Ok(k), Ok(v)) = (
            schema_id(rec.key, topic, "key"),
            schema_id(value, topic, "value"),
        ) {
            self.pos.clear();
            self.pos.extend_from_slice(pos);
            self.ids = Some((k, v));
        }
    }
}

/// Applies records to a MySQL writer: decodes each with its schemas, adds the columns a
/// newer schema brings, notes the newest change.
struct Apply {
    layouts: Layouts,
    latest_value: u32,
    newest: Newest,
}

impl Apply {
    fn apply(&mut self, rec: Rec<'_>, writer: &mut Writer) -> Result<()> {
        self.newest.offer(&rec);
        let (layout, value_id, d) = self.layouts.decode(&rec)?;
        if value_id != self.latest_value && rec.value.is_some() {
            self.latest_value = value_id;
            let newer = self.layouts.def(value_id)?;
            writer.add_columns(newer)?;
        }
        writer.push(&layout, &rec.key[5..], &d)
    }
}

/// Rebuilds into MySQL/MariaDB. `source` is the configured server (`[mysql]`): a rebuild
/// refuses to replace the very table it captures. Sets `swapped` once the pass is complete
/// and the table swapped in.
pub fn into_mysql(
    cfg: &Config,
    opts: &Options,
    url: &MysqlUrl,
    stop: &AtomicBool,
    rt: tokio::runtime::Handle,
    swapped: &mut bool,
) -> Result<Summary> {
    let start = Instant::now();
    let (layouts, def) = Layouts::open(cfg, &opts.topic, rt.clone())?;
    let (src_db, src_table) = def
        .source
        .split_once('.')
        .map(|(d, t)| (d.to_string(), t.to_string()))
        .unwrap_or_default();
    let mut url = url.clone();
    if url.db.is_empty() {
        url.db = src_db.clone();
    }
    let (db, table) = (url.db.clone(), src_table.clone());
    let (stage, replaced) = mysql::staging_names(&table);
    let q = |t: &str| format!("{}.{}", ident(&db), ident(t));

    let mut admin = rt.block_on(mysql::connect(url.opts(), &url.to_string()))?;
    let existing = rt.block_on(mysql::table_columns(&mut admin, &db, &table))?;
    let is_source = url.host == cfg.mysql.host && url.port == cfg.mysql.port && db == src_db;
    if is_source && !existing.is_empty() {
        return Err(Error::Unsupported(format!(
            "{db}.{table} on {}:{} is the source table binlake captures, and it exists; rebuild \
             into another database (--into mysql://user@host:port/otherdb) and compare, or drop \
             it first if you mean to recreate it",
            url.host, url.port
        )));
    }
    use mysql_async::prelude::Queryable;
    let exec = |admin: &mut mysql_async::Conn, sql: String| -> Result<()> {
        rt.block_on(admin.query_drop(&sql))
            .map_err(Error::mysql(format!("{url}: {sql}")))
    };
    exec(&mut admin, format!("DROP TABLE IF EXISTS {}", q(&stage)))?;
    exec(&mut admin, format!("DROP TABLE IF EXISTS {}", q(&replaced)))?;
    if !existing.is_empty() {
        let missing: Vec<&str> = def
            .columns
            .iter()
            .filter(|c| !existing.contains(&c.name))
            .map(|c| c.name.as_str())
            .collect();
        if !missing.is_empty() && !opts.create {
            return Err(Error::Unsupported(format!(
                "{db}.{table} exists but lacks column(s) {missing:?} of the topic's schema; add \
                 them, or rebuild with --create (which adds them)"
            )));
        }
        exec(
            &mut admin,
            format!("CREATE TABLE {} LIKE {}", q(&stage), q(&table)),
        )?;
        // --create: the columns the source gained since the target was made (a restarted
        // --follow after an ADD COLUMN) are added to the copy, as a follow adds them.
        for c in def.columns.iter().filter(|c| !existing.contains(&c.name)) {
            let sql = c.sql.as_deref().ok_or_else(|| {
                Error::Unsupported(format!(
                    "{db}.{table} lacks column `{}`, and the topic's schema does not say its \
                     MySQL type; add it yourself and run rebuild again",
                    c.name
                ))
            })?;
            let null = if c.nullable { "NULL" } else { "NOT NULL" };
            tracing::info!(column = %c.name, %sql, table = %table, "adding column");
            exec(
                &mut admin,
                format!(
                    "ALTER TABLE {} ADD COLUMN {} {sql} {null}",
                    q(&stage),
                    ident(&c.name)
                ),
            )?;
        }
    } else if opts.create {
        exec(
            &mut admin,
            format!("CREATE DATABASE IF NOT EXISTS {}", ident(&db)),
        )?;
        exec(&mut admin, def.create_sql(&db, &stage)?)?;
    } else {
        return Err(Error::Unsupported(format!(
            "table {db}.{table} does not exist on {}:{}; pass --create to create it from the \
             topic's schema (the source's column types and primary key)",
            url.host, url.port
        )));
    }

    let source = def.source.clone();
    let columns: Vec<String> = def.columns.iter().map(|c| c.name.clone()).collect();
    let key: Vec<String> = match def.keyless {
        true => Vec::new(),
        false => def
            .key
            .iter()
            .map(|&k| def.columns[k].name.clone())
            .collect(),
    };
    let mut writer = Writer::start(&url, def, &stage, opts.writers, opts.batch_rows, rt.clone())?;
    let mut reader = TopicReader::open(cfg, &opts.topic, opts.follow)?;
    let mut progress = Counter::new("records read", reader.total());
    tracing::info!(topic = %opts.topic, records = reader.total(), into = %url, "rebuild started");
    let mut apply = Apply {
        latest_value: layouts.latest_value,
        layouts,
        newest: Newest::default(),
    };
    while !reader.caught_up() {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Unsupported(format!(
                "interrupted before the pass completed; {db}.{table} is unchanged (the staging \
                 table {stage} is dropped by the next run)"
            )));
        }
        reader.poll(Duration::from_millis(200), &mut |rec| {
            apply.apply(rec, &mut writer)
        })?;
        progress.set(reader.read + reader.replays);
    }
    writer.sync()?;
    progress.finish(reader.read + reader.replays);
    if existing.is_empty() {
        // A table binlake created has the columns of the newest change, no more.
        if let Some((_, value_id)) = apply.newest.ids {
            writer.drop_columns_not_in(&apply.layouts.def(value_id)?)?;
        }
        exec(
            &mut admin,
            format!("RENAME TABLE {} TO {}", q(&stage), q(&table)),
        )?;
    } else {
        exec(
            &mut admin,
            format!(
                "RENAME TABLE {t} TO {r}, {s} TO {t}",
                t = q(&table),
                r = q(&replaced),
                s = q(&stage)
            ),
        )?;
        exec(&mut admin, format!("DROP TABLE {}", q(&replaced)))?;
    }
    tracing::info!(
        table = %format!("{db}.{table}"),
        records = reader.read,
        seconds = start.elapsed().as_secs_f64(),
        "rebuild pass complete; table swapped in"
    );
    *swapped = true;
    if opts.follow {
        writer.retarget(&table)?;
        let mut idle = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let got = reader.poll(Duration::from_millis(100), &mut |rec| {
                apply.apply(rec, &mut writer)
            })?;
            if got {
                idle = Instant::now();
            } else if idle.elapsed() >= Duration::from_millis(100) {
                writer.flush_all()?;
            }
        }
    }
    let applied = writer.finish()?;
    Ok(Summary {
        source,
        target: format!("{url}.{table}"),
        records: reader.read,
        replays: reader.replays,
        upserted: applied.upserted,
        deleted: applied.deleted,
        seconds: start.elapsed().as_secs_f64(),
        db,
        table,
        columns,
        key,
    })
}

/// Compares the table a MySQL rebuild wrote with the source table.
pub async fn verify_summary(
    s: &Summary,
    source: &MysqlUrl,
    target: &MysqlUrl,
) -> Result<verify::Report> {
    let (src_db, src_table) = s.source.split_once('.').unwrap_or(("", &s.source));
    let mut src = mysql::connect(source.opts(), &source.to_string()).await?;
    let mut dst = mysql::connect(target.opts(), &target.to_string()).await?;
    verify::compare(
        verify::Side {
            conn: &mut src,
            table: format!("{}.{}", ident(src_db), ident(src_table)),
            label: source.to_string(),
        },
        verify::Side {
            conn: &mut dst,
            table: format!("{}.{}", ident(&s.db), ident(&s.table)),
            label: target.to_string(),
        },
        &s.columns,
        &s.key,
    )
    .await
}

/// Runs a rebuild as the options say.
pub fn run(
    cfg: &Config,
    opts: &Options,
    stop: Arc<AtomicBool>,
    rt: tokio::runtime::Handle,
) -> Result<Summary> {
    // The topic exists (a clear error before anything else is asked of the registry).
    drop(TopicReader::open(cfg, &opts.topic, false)?);
    match &opts.target {
        Target::Mysql(url) if opts.follow => follow_mysql(cfg, opts, url, &stop, rt),
        Target::Mysql(url) => into_mysql(cfg, opts, url, &stop, rt, &mut false),
        Target::Lake(url) => lake::into_lake(cfg, opts, url, &stop, rt),
    }
}

/// `--follow` into MySQL, which runs for as long as the source does: a lost connection to
/// the target (a restart, a network cut) starts the rebuild over, a whole pass and a swap,
/// with backoff (1 s doubling to 32 s), until `[mysql] retry_secs` pass without a pass
/// completing; then it is an error. A pass is what makes this safe: changes applied in place
/// before the cut need no bookkeeping, the swap replaces them.
fn follow_mysql(
    cfg: &Config,
    opts: &Options,
    url: &MysqlUrl,
    stop: &AtomicBool,
    rt: tokio::runtime::Handle,
) -> Result<Summary> {
    let mut failing_since: Option<Instant> = None;
    let mut failures = 0u32;
    loop {
        let attempt = Instant::now();
        let mut swapped = false;
        let err = match into_mysql(cfg, opts, url, stop, rt.clone(), &mut swapped) {
            Err(e) if e.is_mysql_connection() && !stop.load(Ordering::Relaxed) => e,
            done => return done,
        };
        // A pass that completed ends the outage: this failure starts a new one.
        if swapped {
            failing_since = None;
            failures = 0;
        }
        let since = *failing_since.get_or_insert(attempt);
        if since.elapsed() > Duration::from_secs(cfg.mysql.retry_secs as u64) {
            return Err(err);
        }
        let wait = Duration::from_secs(1 << failures.min(5));
        failures += 1;
        tracing::warn!(error = %err, retry_in_secs = wait.as_secs(), "rebuild --follow: the connection to the target failed; rebuilding again");
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return Err(err);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
