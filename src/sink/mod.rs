//! `binlake sink`: the table topics → files in Hive partitions (Parquet or Avro, on file:// or
//! hdfs://) → the Hive metastore.
//!
//! One thread runs the loop: poll a record, drop it if the position filter says it is a
//! replay, decode it into the open file of its Hive partition, and close windows when they
//! are full, old, or their table's schema changed. `window.rs` explains how a window becomes
//! visible atomically and how a restarted (or newly assigned) sink resumes from the file names.
//!
//! Invariants: a record is in the lake at most once (offsets: file names never overlap;
//! replays: the filter, seeded from the last file); a Hive partition is registered only after
//! a file is in it; memory holds at most `[sink] buffer_mb` of rows (Parquet row groups are
//! flushed, Avro windows committed, when the budget is reached).
//!
//! Current-state tables (`[sink] current_every`): when a period starts, each owned partition's
//! open window is committed and a compaction job is handed to one worker thread
//! (`current.rs`), so polling goes on while it runs; the worker reads committed files only.
//!
//! Scale-out: sinks in one consumer group share the partitions. When a partition is taken
//! away, its open window is abandoned (its temporary files are deleted by whoever takes the
//! partition over); the new owner resumes from the file names, so nothing is lost.

pub mod current;
pub mod format;
pub mod hdfs;
pub mod hive;
pub mod partition;
pub mod rows;
pub mod schema;
pub mod storage;
pub mod window;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::{Config, SinkFormat};
use crate::error::{Error, Result};
use crate::kafka::dedup::PositionFilter;
use crate::registry::client::RegistryClient;

use hive::{Hive, HiveFormat, HiveTable};
use partition::Partitioner;
use rows::{decode_tombstone, decode_value, Origin, RowBuffer};
use schema::LakeSchema;
use storage::Storage;
use window::{OpenFile, Window};

/// Rows buffered per file before they are encoded.
const BATCH_ROWS: usize = 8192;

type Tp = (String, i32);

enum Event {
    Assigned(Tp, window::Resume),
    Revoked(Tp),
    Failed(Error),
}

/// Runs the partition hand-over inside the consumer's poll: recovery before consuming.
struct SinkContext {
    storage: Arc<dyn Storage>,
    prefix: String,
    events: Mutex<Vec<Event>>,
    /// High watermarks from librdkafka's statistics (only with metrics on).
    high: Mutex<HashMap<Tp, i64>>,
    /// Recognises the broker refusing the credentials or the TLS handshake.
    access: crate::kafka::access::Watch,
}

impl SinkContext {
    fn push(&self, e: Event) {
        match self.events.lock() {
            Ok(mut v) => v.push(e),
            Err(p) => p.into_inner().push(e),
        }
    }
}

impl ClientContext for SinkContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        match self.access.note(&error, reason) {
            // librdkafka would retry it forever: stop the sink with it instead.
            Some(problem) => self.push(Event::Failed(Error::KafkaAccess(problem))),
            // As rdkafka's default.
            None => tracing::error!("librdkafka: {error}: {reason}"),
        }
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::QuietContext.log(level, fac, log_message)
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let Ok(mut high) = self.high.lock() else {
            return;
        };
        for (name, t) in statistics.topics {
            for (p, part) in t.partitions {
                if p >= 0 && part.hi_offset >= 0 {
                    high.insert((name.clone(), p), part.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for SinkContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut assign = TopicPartitionList::new();
                for e in tpl.elements() {
                    let tp = (e.topic().to_string(), e.partition());
                    let Some(table_dir) = table_dir(&self.prefix, &tp.0) else {
                        // Not a table topic (the offsets topic): consumed and ignored.
                        let _ = assign.add_partition_offset(&tp.0, tp.1, Offset::End);
                        continue;
                    };
                    match window::recover(self.storage.as_ref(), &tp.0, tp.1, &table_dir) {
                        Ok(resume) => {
                            let offset = resume.next.map_or(Offset::Beginning, Offset::Offset);
                            tracing::info!(topic = %tp.0, partition = tp.1, ?offset, "partition assigned");
                            let _ = assign.add_partition_offset(&tp.0, tp.1, offset);
                            self.push(Event::Assigned(tp, resume));
                        }
                        Err(e) => self.push(Event::Failed(e)),
                    }
                }
                // Cooperative rebalances (KIP-848's `group.protocol=consumer`, or a
                // cooperative assignor) hand over only the partitions that move: add them
                // to the assignment. Eager ones hand over the whole new assignment.
                let assigned = if cooperative(consumer) {
                    consumer.incremental_assign(&assign)
                } else {
                    consumer.assign(&assign)
                };
                if let Err(e) = assigned {
                    self.push(Event::Failed(Error::kafka("assigning partitions")(e)));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                for e in tpl.elements() {
                    tracing::info!(
                        topic = e.topic(),
                        partition = e.partition(),
                        "partition revoked"
                    );
                    self.push(Event::Revoked((e.topic().to_string(), e.partition())));
                }
                let revoked = if cooperative(consumer) {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = revoked {
                    self.push(Event::Failed(Error::kafka("revoking partitions")(e)));
                }
            }
            other => tracing::warn!(error = ?other, "rebalance error"),
        }
    }
}

/// Whether the group's rebalances are incremental (only the partitions that move are
/// assigned or revoked).
fn cooperative(consumer: &BaseConsumer<SinkContext>) -> bool {
    matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    )
}

/// (db, table) of a table topic `{prefix}.{db}.{table}`; `None` for other topics.
fn table_parts<'a>(prefix: &str, topic: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('.')?;
    let (db, table) = rest.split_once('.')?;
    (!db.is_empty() && !table.is_empty()).then_some((db, table))
}

/// `{db}/{table}` of a table topic.
fn table_dir(prefix: &str, topic: &str) -> Option<String> {
    table_parts(prefix, topic).map(|(db, table)| format!("{db}/{table}"))
}

/// A table's current layout and where it is registered.
struct Table {
    key_id: u32,
    value_id: u32,
    schema: Arc<LakeSchema>,
    partitioner: Partitioner,
    keys: Vec<hive::HiveColumn>,
    registered: HashSet<String>,
    /// `binlake_sink_rows_total`, `_files_total`, `_bytes_total` of the table.
    rows: metrics::Counter,
    files: metrics::Counter,
    bytes: metrics::Counter,
}

/// Schemas by id, from the registry.
struct Schemas {
    client: RegistryClient,
    rt: tokio::runtime::Handle,
    text: HashMap<u32, String>,
}

impl Schemas {
    fn text(&mut self, id: u32) -> Result<&str> {
        if !self.text.contains_key(&id) {
            let s = self.rt.block_on(self.client.schema_by_id(id))?;
            self.text.insert(id, s);
        }
        Ok(self.text.get(&id).map(String::as_str).unwrap_or_default())
    }

    fn latest(&mut self, subject: &str) -> Result<Option<u32>> {
        let latest = self.rt.block_on(self.client.latest(subject))?;
        Ok(latest.map(|(id, text)| {
            self.text.insert(id, text);
            id
        }))
    }
}

/// The scheduling side of `{table}_current` (see `current.rs`).
struct CurrentState {
    every: Duration,
    jobs: std::sync::mpsc::Sender<current::Job>,
    /// Set on shutdown; the worker then stops after its current job and takes no more.
    stop: Arc<AtomicBool>,
    /// The snapshot each owned partition last got a job for.
    done: HashMap<Tp, String>,
    /// What a topic's jobs of a period share, read once per period: (period, partition
    /// count, latest layout).
    topics: HashMap<String, (String, i32, Arc<LakeSchema>)>,
}

struct Sink {
    cfg: Config,
    storage: Arc<dyn Storage>,
    hive: Option<Arc<Hive>>,
    current: Option<CurrentState>,
    schemas: Schemas,
    filter: PositionFilter,
    /// Owned partitions: the next offset expected.
    owned: HashMap<Tp, i64>,
    windows: HashMap<Tp, Window>,
    tables: HashMap<String, Table>,
    ext: &'static str,
    rotate_interval: Duration,
    next_file: u64,
    /// Partitions of rolled-forward files, registered once their table is known:
    /// (topic, table dir, partition path).
    pending: Vec<(String, String, String)>,
    /// Per owned partition, for the lag: the Kafka timestamp (ms) of the last record read,
    /// and when (ms) the partition was last seen fully read.
    read_ts: HashMap<Tp, i64>,
    caught_up: HashMap<Tp, i64>,
}

pub(crate) fn schema_id(bytes: &[u8], topic: &str, what: &str) -> Result<u32> {
    if bytes.len() < 5 || bytes[0] != 0 {
        return Err(Error::Unsupported(format!(
            "topic {topic}: a record {what} is not in the Confluent wire format (magic byte 0 \
             and a schema id); is this a binlake table topic?"
        )));
    }
    Ok(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))
}

impl Sink {
    /// The table of `topic` at schema (key_id, value_id): set up (and registered in Hive)
    /// on first sight and when its schema changes.
    fn table(&mut self, topic: &str, key_id: u32, value_id: u32) -> Result<()> {
        if self
            .tables
            .get(topic)
            .is_some_and(|t| t.value_id == value_id && t.key_id == key_id)
        {
            return Ok(());
        }
        let key = self.schemas.text(key_id)?.to_string();
        let value = self.schemas.text(value_id)?.to_string();
        let schema = Arc::new(LakeSchema::derive(topic, &key, &value)?);
        let (db, name) = schema.table.split_once('.').unwrap_or(("", &schema.table));
        let (db, name) = (db.to_string(), name.to_string());
        let pcfg = self.cfg.partition_of(&db, &name).clone();
        let partitioner = Partitioner::new(&pcfg, &schema)?;
        let format = self.cfg.sink.format;
        let keys = partitioner.keys(&schema, format);
        let registered = self
            .tables
            .remove(topic)
            .map(|t| t.registered)
            .unwrap_or_default();
        if let Some(hive) = &self.hive {
            let key_cols: Vec<String> = partitioner
                .key_columns()
                .iter()
                .map(|&i| schema.columns[i].name.to_ascii_lowercase())
                .collect();
            let columns = schema
                .hive_columns(format)
                .into_iter()
                .filter(|c| !key_cols.contains(&c.name))
                .collect();
            let dir = table_dir(&self.cfg.kafka.topic_prefix, topic).unwrap_or_default();
            hive.ensure_table(&HiveTable {
                db: self.cfg.hive.database.clone().unwrap_or(db),
                name,
                location: format!("{}/{dir}", self.storage.root_url()),
                columns,
                partition_keys: keys.clone(),
                format: match format {
                    SinkFormat::Parquet => HiveFormat::Parquet,
                    SinkFormat::Avro => HiveFormat::Avro {
                        schema_literal: schema.avro.clone(),
                    },
                },
            })?;
        }
        tracing::info!(%topic, key_id, value_id, columns = schema.columns.len(), "table layout");
        let label = schema.table.clone();
        self.tables.insert(
            topic.to_string(),
            Table {
                key_id,
                value_id,
                schema,
                partitioner,
                keys,
                registered,
                rows: metrics::counter!("binlake_sink_rows_total", "table" => label.clone()),
                files: metrics::counter!("binlake_sink_files_total", "table" => label.clone()),
                bytes: metrics::counter!("binlake_sink_bytes_total", "table" => label),
            },
        );
        Ok(())
    }

    fn handle(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) -> Result<()> {
        let topic = m.topic();
        let tp = (topic.to_string(), m.partition());
        let Some(next) = self.owned.get_mut(&tp) else {
            return Ok(()); // revoked meanwhile
        };
        if m.offset() < *next {
            return Ok(()); // before the resume point
        }
        *next = m.offset() + 1;
        let ts = m.timestamp().to_millis().unwrap_or(0);
        match self.read_ts.get_mut(&tp) {
            Some(t) => *t = ts,
            None => {
                self.read_ts.insert(tp.clone(), ts);
            }
        }
        if table_parts(&self.cfg.kafka.topic_prefix, topic).is_none() {
            return Ok(());
        }
        let pos = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == crate::kafka::dedup::HEADER))
            .and_then(|h| h.value);
        let key = m.key().unwrap_or_default();
        let key_id = schema_id(key, topic, "key")?;
        let value_id = match m.payload() {
            Some(v) => schema_id(v, topic, "value")?,
            None => match self.windows.get(&tp) {
                Some(w) => w.value_id,
                None => match self.tables.get(topic) {
                    Some(t) => t.value_id,
                    None => self
                        .schemas
                        .latest(&format!("{topic}-value"))?
                        .ok_or_else(|| {
                            Error::Unsupported(format!(
                                "topic {topic} has no value schema in the registry: is it a \
                                 binlake table topic?"
                            ))
                        })?,
                },
            },
        };
        if self
            .windows
            .get(&tp)
            .is_some_and(|w| w.value_id != value_id)
        {
            self.commit(&tp)?;
        }
        self.table(topic, key_id, value_id)?;
        self.register_pending(topic)?;
        let Some(table) = self.tables.get(topic) else {
            return Ok(());
        };
        let o = Origin {
            topic,
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        };
        let row = match m.payload() {
            Some(v) => decode_value(&table.schema, &v[5..], &o)?,
            None => decode_tombstone(&table.schema, key.get(5..).unwrap_or_default(), &o)?,
        };
        let values = table.partitioner.values(&table.schema, &row, m.partition());
        let part_path = Partitioner::path(&table.keys, &values);
        // A new file past [sink] max_open_files: commit the oldest windows first. The record
        // is in no window yet and the filter has not seen it, so a window committed here
        // (its own included) ends before it, and its mark does not claim it.
        let new_file = self
            .windows
            .get(&tp)
            .is_none_or(|w| !w.files.iter().any(|f| f.part_path == part_path));
        if new_file {
            self.make_room(1)?;
        }
        let accepted = self.filter.accept(topic, m.partition(), pos);
        let window = self
            .windows
            .entry(tp.clone())
            .or_insert_with(|| Window::new(m.offset(), value_id));
        window.end = m.offset();
        window.records += 1;
        if accepted {
            let Some(table) = self.tables.get_mut(topic) else {
                return Ok(());
            };
            table.rows.increment(1);
            let idx = match window.files.iter().position(|f| f.part_path == part_path) {
                Some(i) => i,
                None => {
                    self.next_file += 1;
                    let tmp = format!(
                        "{}/f{}.tmp",
                        window::window_dir(topic, m.partition(), window.start),
                        self.next_file
                    );
                    let file = format::LakeFile::create(
                        self.storage.as_ref(),
                        &tmp,
                        &table.schema,
                        self.cfg.sink.format,
                        self.cfg.sink.compression,
                    )?;
                    window.files.push(OpenFile {
                        rows: RowBuffer::new(table.schema.clone()),
                        file,
                        tmp,
                        part_path,
                        part_values: values,
                    });
                    window.files.len() - 1
                }
            };
            let f = &mut window.files[idx];
            f.rows.push(row, &o)?;
            if f.rows.rows() >= BATCH_ROWS {
                let batch = f.rows.take_batch()?;
                f.file.write(&batch)?;
            }
        }
        let full = (self.cfg.sink.flush_size > 0 && window.records >= self.cfg.sink.flush_size)
            || window.size() >= self.cfg.sink.rotate_mb << 20;
        if full {
            self.commit(&tp)?;
        }
        Ok(())
    }

    /// Files open in all windows.
    fn open_files(&self) -> usize {
        self.windows.values().map(|w| w.files.len()).sum()
    }

    /// Commits the window of `tp` (see `window.rs`), registers new Hive partitions, commits
    /// the Kafka offset.
    fn commit(&mut self, tp: &Tp) -> Result<()> {
        let Some(w) = self.windows.remove(tp) else {
            return Ok(());
        };
        let Some(dir) = table_dir(&self.cfg.kafka.topic_prefix, &tp.0) else {
            return Ok(());
        };
        let mark = self
            .filter
            .mark(&tp.0, tp.1)
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default();
        let (start, end, files, records) = (w.start, w.end, w.files.len(), w.records);
        let placed = w.commit(self.storage.as_ref(), &tp.0, tp.1, &dir, self.ext, &mark)?;
        tracing::info!(topic = %tp.0, partition = tp.1, start, end, files, records, "window committed");
        if let Some(t) = self.tables.get(&tp.0) {
            t.files.increment(placed.len() as u64);
            t.bytes.increment(placed.iter().map(|p| p.bytes).sum());
        }
        for p in placed {
            self.register(&tp.0, &dir, &p.part_path, Some(p.part_values))?;
        }
        Ok(())
    }

    /// Registers a Hive partition (once per process).
    fn register(
        &mut self,
        topic: &str,
        dir: &str,
        part_path: &str,
        values: Option<Vec<String>>,
    ) -> Result<()> {
        let Some(hive) = &self.hive else {
            return Ok(());
        };
        let Some(t) = self.tables.get_mut(topic) else {
            return Ok(());
        };
        if !t.registered.insert(part_path.to_string()) {
            return Ok(());
        }
        let values = values.unwrap_or_else(|| {
            part_path
                .split('/')
                .map(|seg| partition::unescape(seg.split_once('=').map_or(seg, |(_, v)| v)))
                .collect()
        });
        let (db, name) = t.schema.table.split_once('.').unwrap_or(("", ""));
        let db = self.cfg.hive.database.clone().unwrap_or(db.to_string());
        hive.add_partition(
            &db,
            name,
            &values,
            &format!("{}/{dir}/{part_path}", self.storage.root_url()),
        )
    }

    /// Registers the Hive partitions recovery found for `topic` (its table is set up).
    fn register_pending(&mut self, topic: &str) -> Result<()> {
        if self.pending.iter().any(|(t, ..)| t == topic) {
            let (mine, rest) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|(t, ..)| t == topic);
            self.pending = rest;
            for (t, dir, part) in mine {
                self.register(&t, &dir, &part, None)?;
            }
        }
        Ok(())
    }

    /// Registers the partitions recovery found, now: for a table no record has set up yet,
    /// its layout comes from the registry's latest schemas (its next change may never
    /// come).
    fn register_pending_now(&mut self) -> Result<()> {
        if self.hive.is_none() {
            self.pending.clear();
            return Ok(());
        }
        let topics: std::collections::BTreeSet<String> =
            self.pending.iter().map(|(t, ..)| t.clone()).collect();
        for topic in topics {
            if self.tables.contains_key(&topic) {
                self.register_pending(&topic)?;
                continue;
            }
            let key = self.schemas.latest(&format!("{topic}-key"))?;
            let value = self.schemas.latest(&format!("{topic}-value"))?;
            if let (Some(k), Some(v)) = (key, value) {
                self.table(&topic, k, v)?;
                self.register_pending(&topic)?;
            }
        }
        Ok(())
    }

    fn events(&mut self, ctx: &SinkContext) -> Result<()> {
        let events = match ctx.events.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        for e in events {
            match e {
                Event::Revoked(tp) => {
                    // Abandoned: the next owner deletes its temporary files and re-reads it.
                    self.windows.remove(&tp);
                    self.owned.remove(&tp);
                    self.read_ts.remove(&tp);
                    self.caught_up.remove(&tp);
                    self.filter.set_mark(&tp.0, tp.1, None);
                }
                Event::Assigned(tp, resume) => {
                    self.windows.remove(&tp);
                    self.filter.set_mark(&tp.0, tp.1, resume.mark);
                    self.owned.insert(tp.clone(), resume.next.unwrap_or(0));
                    for f in resume.to_register {
                        // `{db}/{table}/{partition path}/{file}`: register the partition.
                        let mut segs: Vec<&str> = f.split('/').collect();
                        if segs.len() > 3 {
                            segs.pop();
                            let part = segs[2..].join("/");
                            let dir = segs[..2].join("/");
                            self.pending.push((tp.0.clone(), dir, part));
                        }
                    }
                }
                Event::Failed(e) => return Err(e),
            }
        }
        if !self.pending.is_empty() {
            self.register_pending_now()?;
        }
        Ok(())
    }

    /// Closes windows that are old, and keeps memory and open files within their limits.
    fn housekeeping(&mut self) -> Result<()> {
        let old: Vec<Tp> = self
            .windows
            .iter()
            .filter(|(_, w)| w.opened.elapsed() >= self.rotate_interval)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in old {
            self.commit(&tp)?;
        }
        let budget = self.cfg.sink.buffer_mb << 20;
        loop {
            let used: u64 = self.windows.values().map(Window::memory).sum();
            if used <= budget {
                break;
            }
            let Some(tp) = self
                .windows
                .iter()
                .max_by_key(|(_, w)| w.memory())
                .map(|(tp, _)| tp.clone())
            else {
                break;
            };
            let parquet = self.cfg.sink.format == SinkFormat::Parquet;
            let w = self.windows.get_mut(&tp);
            match w {
                Some(w) if parquet && w.memory() > 0 => {
                    // Encode and write out the largest files' rows as row groups.
                    let before = w.memory();
                    for f in &mut w.files {
                        if f.rows.rows() > 0 {
                            let batch = f.rows.take_batch()?;
                            f.file.write(&batch)?;
                        }
                        f.file.flush()?;
                    }
                    if w.memory() >= before {
                        self.commit(&tp)?;
                    }
                }
                _ => self.commit(&tp)?,
            }
        }
        self.make_room(0)
    }

    /// Commits the oldest windows with open files until `more` files fit under
    /// `[sink] max_open_files`.
    fn make_room(&mut self, more: usize) -> Result<()> {
        while self.open_files() + more > self.cfg.sink.max_open_files {
            let Some(oldest) = self
                .windows
                .iter()
                .filter(|(_, w)| !w.files.is_empty())
                .min_by_key(|(_, w)| w.opened)
                .map(|(tp, _)| tp.clone())
            else {
                break;
            };
            self.commit(&oldest)?;
        }
        Ok(())
    }

    /// When a period starts: commits each owned partition's open window and hands its
    /// compaction for the period's snapshot to the worker (once per partition and period).
    fn schedule_current(&mut self, consumer: &BaseConsumer<SinkContext>) -> Result<()> {
        let Some(every) = self.current.as_ref().map(|c| c.every) else {
            return Ok(());
        };
        let period = current::snapshot_id(SystemTime::now(), every);
        let prefix = self.cfg.kafka.topic_prefix.clone();
        let due: Vec<Tp> = self
            .owned
            .keys()
            .filter(|tp| table_parts(&prefix, &tp.0).is_some())
            .filter(|tp| {
                self.current
                    .as_ref()
                    .is_some_and(|c| c.done.get(*tp) != Some(&period))
            })
            .cloned()
            .collect();
        for tp in due {
            self.commit(&tp)?;
            let job = self.current_job(consumer, &tp, &period);
            let Some(cur) = self.current.as_mut() else {
                return Ok(());
            };
            cur.done.insert(tp.clone(), period.clone());
            match job {
                Ok(Some(job)) => {
                    if cur.jobs.send(job).is_err() {
                        // A shutdown that the worker saw first: the job is dropped, and the
                        // next start schedules the period again.
                        if cur.stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        return Err(Error::Unsupported(
                            "internal: the {table}_current worker stopped".into(),
                        ));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    topic = %tp.0,
                    partition = tp.1,
                    snapshot = %period,
                    error = %e,
                    "no {{table}}_current compaction this period"
                ),
            }
        }
        Ok(())
    }

    /// The compaction job of `tp` for snapshot `period`; None when the topic has no schema.
    fn current_job(
        &mut self,
        consumer: &BaseConsumer<SinkContext>,
        tp: &Tp,
        period: &str,
    ) -> Result<Option<current::Job>> {
        let topic = tp.0.as_str();
        let Some(table_dir) = table_dir(&self.cfg.kafka.topic_prefix, topic) else {
            return Ok(None);
        };
        let known = self
            .current
            .as_ref()
            .and_then(|c| c.topics.get(topic))
            .filter(|(p, ..)| p == period)
            .map(|(_, n, s)| (*n, s.clone()));
        let (partitions, schema) = match known {
            Some(k) => k,
            None => {
                let (Some(key_id), Some(value_id)) = (
                    self.schemas.latest(&format!("{topic}-key"))?,
                    self.schemas.latest(&format!("{topic}-value"))?,
                ) else {
                    return Ok(None);
                };
                let key = self.schemas.text(key_id)?.to_string();
                let value = self.schemas.text(value_id)?.to_string();
                let schema = Arc::new(LakeSchema::derive(topic, &key, &value)?);
                let md = consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(10))
                    .map_err(Error::kafka(format!("reading the partitions of {topic}")))?;
                let n = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
                if n == 0 {
                    return Ok(None);
                }
                if let Some(cur) = self.current.as_mut() {
                    cur.topics
                        .insert(topic.to_string(), (period.to_string(), n, schema.clone()));
                }
                (n, schema)
            }
        };
        let (db, name) = schema.table.split_once('.').unwrap_or(("", &schema.table));
        Ok(Some(current::Job {
            topic: topic.to_string(),
            partition: tp.1,
            partitions,
            snapshot: period.to_string(),
            table_dir,
            hive_db: self.cfg.hive.database.clone().unwrap_or(db.to_string()),
            hive_name: name.to_string(),
            schema,
        }))
    }

    /// Per owned partition: records not read yet and records not yet in a committed file;
    /// and the sink's lag in seconds (for `/ready`): the age of the oldest record not read
    /// yet, bounded by the newer of the last record read and the last time the partition was
    /// seen fully read (records still to read were written after both).
    fn lag_metrics(&mut self, consumer: &BaseConsumer<SinkContext>) {
        if self.owned.is_empty() {
            return; // no assignment yet: the lag is unknown
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut lag_ms = 0i64;
        let highs = match consumer.context().high.lock() {
            Ok(h) => h.clone(),
            Err(_) => return,
        };
        let mut known = 0;
        for (tp, &next) in &self.owned {
            let Some(&high) = highs.get(tp) else {
                continue;
            };
            known += 1;
            let (topic, partition) = (tp.0.clone(), tp.1.to_string());
            let unread = (high - next).max(0);
            metrics::gauge!("binlake_sink_lag_records", "topic" => topic.clone(), "partition" => partition.clone())
                .set(unread as f64);
            let open = self.windows.get(tp).map_or(0, |w| next - w.start);
            metrics::gauge!("binlake_sink_uncommitted_records", "topic" => topic, "partition" => partition)
                .set(open as f64);
            if unread == 0 {
                self.caught_up.insert(tp.clone(), now);
            } else {
                let since = self
                    .read_ts
                    .get(tp)
                    .copied()
                    .max(self.caught_up.get(tp).copied())
                    .unwrap_or(0);
                lag_ms = lag_ms.max(now - since);
            }
        }
        if known == 0 {
            return; // no high watermark yet: the lag is unknown
        }
        let lag = lag_ms.max(0) as f64 / 1000.0;
        metrics::gauge!("binlake_sink_lag_seconds").set(lag);
        crate::metrics::health().set_lag(lag);
    }

    fn commit_all(&mut self) -> Result<()> {
        let all: Vec<Tp> = self.windows.keys().cloned().collect();
        for tp in all {
            self.commit(&tp)?;
        }
        Ok(())
    }
}

/// How long a sink that has started keeps starting over after errors of the lake, the
/// metastore or the connection to Kafka before it stops on the last one.
const RETRY_FOR: Duration = Duration::from_secs(300);

/// Runs the sink until `stop` is set (then closes every window) or an error.
///
/// Once it has started, an error of the lake's file system, the metastore or the
/// connection to the brokers (a NameNode restarting, a network cut; not a full disk, which
/// needs the operator) does not stop the process: the sink starts over in-process, as its
/// supervisor would restart it (open windows are abandoned; taking the partitions back
/// recovers them, see `window.rs`), with backoff (1 s doubling to 32 s), until
/// [`RETRY_FOR`] passes without a start that lasted a minute.
/// An error at the first start is reported at once (a wrong root or an unreachable
/// metastore is a configuration problem).
pub fn run(cfg: Config, stop: Arc<AtomicBool>, rt: tokio::runtime::Handle) -> Result<()> {
    let mut started = false;
    let mut failing_since: Option<Instant> = None;
    let mut failures = 0u32;
    loop {
        let attempt = Instant::now();
        let err = match run_sink(cfg.clone(), stop.clone(), rt.clone(), &mut started) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        crate::metrics::error(err.kind());
        let transient = match &err {
            Error::Storage { .. } => !err.needs_operator(),
            Error::Hive(_) | Error::Io { .. } => true,
            Error::Kafka { cause, .. } => crate::kafka::transient(cause),
            _ => false,
        };
        if !started || !transient || stop.load(Ordering::Relaxed) {
            return Err(err);
        }
        if attempt.elapsed() > Duration::from_secs(60) {
            failing_since = None;
            failures = 0;
        }
        if failing_since.get_or_insert(attempt).elapsed() > RETRY_FOR {
            return Err(err);
        }
        let wait = Duration::from_secs(1 << failures.min(5));
        failures += 1;
        tracing::warn!(error = %err, retry_in_secs = wait.as_secs(), "the sink failed; starting over");
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                // Nothing is open: the abandoned windows are recovered at the next start.
                tracing::info!("stopped while waiting to start over");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn run_sink(
    cfg: Config,
    stop: Arc<AtomicBool>,
    rt: tokio::runtime::Handle,
    started: &mut bool,
) -> Result<()> {
    let storage = storage::open(&cfg.sink.root)?;
    let hive = if cfg.hive.enabled {
        Some(Arc::new(Hive::connect(&cfg.hive.uri)?))
    } else {
        None
    };
    let mut worker = None;
    let current = match cfg.current_every() {
        Some(every) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let compactor = current::Compactor {
                storage: storage.clone(),
                hive: hive.clone(),
                keep: cfg.sink.current_keep,
                compression: cfg.sink.compression,
            };
            let worker_stop = stop.clone();
            worker = Some(
                std::thread::Builder::new()
                    .name("binlake-current".into())
                    .spawn(move || compactor.work(rx, worker_stop))
                    .map_err(|e| Error::Io {
                        context: "starting the {table}_current worker thread".into(),
                        cause: e,
                    })?,
            );
            tracing::info!(every = ?every, keep = cfg.sink.current_keep, "current-state tables on");
            Some(CurrentState {
                every,
                jobs: tx,
                stop: stop.clone(),
                done: HashMap::new(),
                topics: HashMap::new(),
            })
        }
        None => None,
    };
    // A broker refusing the credentials or the TLS handshake is one clear error now.
    crate::kafka::access::check(&cfg.kafka, crate::kafka::access::WAIT)?;
    let prefix = cfg.kafka.topic_prefix.clone();
    let ctx = SinkContext {
        storage: storage.clone(),
        prefix: prefix.clone(),
        events: Mutex::new(Vec::new()),
        high: Mutex::new(HashMap::new()),
        access: crate::kafka::access::Watch::new(&cfg.kafka),
    };
    let mut cc = crate::kafka::client_config(&cfg.kafka);
    cc.set("group.id", &cfg.sink.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    // The classic protocol's assignors; KIP-848's `group.protocol=consumer` assigns on the
    // broker and refuses the setting.
    let classic = cfg
        .kafka
        .properties
        .get("group.protocol")
        .is_none_or(|p| p.eq_ignore_ascii_case("classic"));
    if classic
        && !cfg
            .kafka
            .properties
            .contains_key("partition.assignment.strategy")
    {
        cc.set("partition.assignment.strategy", "range,roundrobin");
    }
    if crate::metrics::enabled() {
        // The high watermarks of the lag metrics.
        cc.set("statistics.interval.ms", "1000");
    }
    if !cfg
        .kafka
        .properties
        .contains_key("topic.metadata.refresh.interval.ms")
    {
        // New table topics are found by the subscription's pattern at each refresh.
        cc.set("topic.metadata.refresh.interval.ms", "5000");
    }
    let consumer: BaseConsumer<SinkContext> = cc
        .create_with_context(ctx)
        .map_err(Error::kafka("creating the sink's Kafka consumer"))?;
    let topics: Vec<String> = if cfg.sink.topics.is_empty() {
        vec![format!("^{}\\..*", prefix.replace('.', "\\."))]
    } else {
        cfg.sink.topics.clone()
    };
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&refs)
        .map_err(Error::kafka(format!("subscribing to {topics:?}")))?;
    tracing::info!(root = %cfg.sink.root, ?topics, group = %cfg.sink.group_id, "sink started");
    *started = true;
    let mut sink = Sink {
        schemas: Schemas {
            client: RegistryClient::new(&cfg)?,
            rt,
            text: HashMap::new(),
        },
        ext: match cfg.sink.format {
            SinkFormat::Parquet => "parquet",
            SinkFormat::Avro => "avro",
        },
        rotate_interval: cfg.rotate_interval(),
        cfg,
        storage,
        hive,
        current,
        filter: PositionFilter::default(),
        owned: HashMap::new(),
        windows: HashMap::new(),
        tables: HashMap::new(),
        next_file: 0,
        pending: Vec::new(),
        read_ts: HashMap::new(),
        caught_up: HashMap::new(),
    };
    let mut last_check = Instant::now();
    let mut committed: HashMap<Tp, i64> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let msg = consumer.poll(Duration::from_millis(200));
        sink.events(consumer.context())?;
        match msg {
            Some(Ok(m)) => sink.handle(&m)?,
            Some(Err(e)) => tracing::warn!(error = %e, "consuming"),
            None => {}
        }
        if last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            sink.housekeeping()?;
            sink.schedule_current(&consumer)?;
            commit_offsets(&consumer, &sink, &mut committed);
            if crate::metrics::enabled() {
                sink.lag_metrics(&consumer);
            }
        }
    }
    tracing::info!("stopping: closing open files");
    sink.commit_all()?;
    commit_offsets(&consumer, &sink, &mut committed);
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    // The worker stops after its current job (jobs not started are dropped: the next start
    // schedules them again).
    sink.current = None;
    if let Some(w) = worker {
        let _ = w.join();
    }
    Ok(())
}

/// Commits, for monitoring (consumer lag), the offset after the last file of each partition.
fn commit_offsets(
    consumer: &BaseConsumer<SinkContext>,
    sink: &Sink,
    committed: &mut HashMap<Tp, i64>,
) {
    let mut tpl = TopicPartitionList::new();
    for (tp, &next) in &sink.owned {
        // Offsets up to an open window's start are in files.
        let done = sink.windows.get(tp).map_or(next, |w| w.start);
        if done > 0 && committed.get(tp) != Some(&done) {
            let _ = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(done));
            committed.insert(tp.clone(), done);
        }
    }
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "committing sink offsets");
        }
    }
}
