//! `binlake run`: snapshot, then stream, every captured table into its compacted topic.
//!
//! One path for data: the binlog reader (with the snapshot merged in) hands batches of
//! [`Change`]s over a bounded channel; each change becomes one to three Kafka records (a
//! key update writes delete + tombstone for the old key and a create for the new one); the
//! producer acknowledges them out of order and [`Acks`](crate::kafka::producer::Acks) keeps
//! the watermark.
//!
//! Resumption: the committed state (last position, snapshot progress) is written only after
//! every record before it was acknowledged, so a restart replays a prefix of what follows
//! the commit and never skips. Replayed records carry the same `binlake.pos` as the first
//! time; consumers drop them with [`PositionFilter`](crate::kafka::dedup::PositionFilter).
//! A restarted run reads the last `binlake.pos` of every table topic first and emits no
//! snapshot row at or before it (`Merger::fence`), which keeps positions growing in every
//! partition. That fence is part of the committed state, committed before the first record
//! and never lowered (a replay killed below it leaves lower positions at the partitions'
//! ends). The first commit also precedes the first record: it holds the start position and
//! that a snapshot is due, so no kill or stop at any moment makes a restart skip either.
//! Invariants: records leave in binlog order; nothing of a table is written past a DDL
//! whose schema the registry refuses.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::avro::{Encoder, TableSchemas};
use crate::change::{Change, Op, Value};
use crate::config::{Config, OffsetStore, SnapshotMode};
use crate::error::{Error, Result};
use crate::kafka::dedup::{self, Part};
use crate::kafka::offsets::{offsets_topic, Store};
use crate::kafka::partition::partition_for;
use crate::kafka::producer::{Producer, Record};
use crate::kafka::topics::Topics;
use crate::mysql::replication::{self, Batch};
use crate::registry::client::{Compatibility, RegistryClient};
use crate::schema::{KeySource, TableSchema};
use crate::state::SavedState;
use crate::StartFrom;

/// Everything known about one captured table's output.
struct TableOut {
    schema: Arc<TableSchema>,
    encoder: Encoder,
    topic: String,
    partitions: i32,
    key_id: u32,
    value_id: u32,
    /// `binlake_rows_read_total` by op (c, u, d, r).
    read: [metrics::Counter; 4],
    /// `binlake_records_written_total` by op (c, u, d, r, tombstone).
    written: [metrics::Counter; 5],
}

/// Index of an op code in `TableOut::read`/`written` (`""`: a tombstone).
fn op_index(op: &str) -> usize {
    match op {
        "c" => 0,
        "u" => 1,
        "d" => 2,
        "r" => 3,
        _ => 4,
    }
}

/// One record a change becomes: (row of the key, row of the value or `None` for a
/// tombstone, `__op`, which part of the change).
type Planned<'c> = (
    Option<&'c Vec<Value>>,
    Option<&'c Vec<Value>>,
    &'static str,
    Part,
);

/// Why the pump stopped.
enum Stop {
    Shutdown,
    SourceEnded,
}

struct Pipeline<'a> {
    cfg: &'a Config,
    registry: RegistryClient,
    topics: Topics,
    producer: Producer,
    store: Store,
    tables: HashMap<(String, String), TableOut>,
    /// The table of the previous change, so that a run of changes of one table skips the
    /// key allocation.
    last_table: Option<(Arc<TableSchema>, (String, String))>,
    pos_buf: String,
    /// The state once every record sent so far is acknowledged.
    state: SavedState,
    /// (records sent before it, state) not yet committed, oldest first.
    pending: VecDeque<(u64, SavedState, Instant)>,
    committed: Option<SavedState>,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

/// Runs until `shutdown` resolves (then flushes and commits) or an error that retrying
/// cannot cure. `from` is where streaming starts when nothing was committed yet (default: the
/// server's current end, after the snapshot's starting point).
pub async fn run(
    cfg: &Config,
    from: Option<StartFrom>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(shutdown);
    // A stop during start-up (the broker, the registry or the fence read can take a while)
    // ends the run before it wrote anything. MySQL or Kafka away at start-up is waited for as
    // MySQL is mid-stream: retried with backoff for `[mysql] retry_secs` (start-up writes
    // nothing but a grown fence, which it may write again).
    let since = Instant::now();
    let mut failures = 0u32;
    let (mut p, snapshot, mut fence) = loop {
        let err = tokio::select! {
            started = start(cfg) => match started {
                Ok(started) => break started,
                Err(e) => e,
            },
            _ = shutdown.as_mut() => {
                tracing::info!("stopped during start-up: nothing was written");
                return Ok(());
            }
        };
        let transient = err.is_mysql_connection()
            || matches!(&err, Error::Kafka { cause, .. } if crate::kafka::transient(cause));
        if !transient || since.elapsed() > Duration::from_secs(cfg.mysql.retry_secs as u64) {
            return Err(err);
        }
        crate::metrics::error(err.kind());
        let wait = Duration::from_secs(1 << failures.min(4));
        failures += 1;
        tracing::warn!(error = %err, retry_in_secs = wait.as_secs(), "start-up failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.as_mut() => {
                tracing::info!("stopped during start-up: nothing was written");
                return Ok(());
            }
        }
    };
    tracing::info!(resume = ?p.state.resume_from(), snapshot = snapshot.is_some(), "binlake run starting");
    match &snapshot {
        Some(s) => snapshot_metrics(s),
        None => {
            metrics::gauge!("binlake_snapshot_complete").set(1.0);
            crate::metrics::health().set("snapshot", None);
        }
    }

    // `binlake snapshot` requests: served for the whole run, handed to the current reader.
    let mut adhoc = match &cfg.admin.listen {
        Some(listen) => {
            let (tx, rx) = mpsc::channel(8);
            crate::admin::serve(listen, cfg.admin.token.clone(), tx).await?;
            Some(rx)
        }
        None => None,
    };

    let mut failures = 0u32;
    let mut failing_since: Option<Instant> = None;
    let snapshot_wanted = snapshot.is_some();
    let mut snapshot = snapshot;
    // Set when the server's binlog ends in a partial event: where to read next instead.
    let mut skip_to: Option<StartFrom> = None;
    let outcome = loop {
        let from = skip_to.take().unwrap_or_else(|| {
            p.state
                .resume_from()
                .unwrap_or_else(|| from.clone().unwrap_or(StartFrom::End))
        });
        let (tx, rx) = mpsc::channel::<Batch>(16);
        let source_cfg = cfg.clone();
        let source_fence = fence.clone();
        let snap = snapshot.take();
        let (adhoc_tx, adhoc_rx) = mpsc::channel(8);
        let source = tokio::spawn(async move {
            replication::stream(&source_cfg, from, snap, Some(adhoc_rx), source_fence, tx).await
        });
        let sent_before = p.producer.next_seq();
        let stop = p.pump(rx, &mut adhoc, &adhoc_tx, &mut shutdown).await;
        source.abort();
        let source_result = source.await;
        match stop {
            Ok(Stop::Shutdown) => break Ok(()),
            Err(e) => break Err(e),
            Ok(Stop::SourceEnded) => {}
        }
        let err = match source_result {
            Ok(Err(e)) => e,
            // The server closed the stream (a shutdown or a restart): reconnect.
            Ok(Ok(())) => Error::Io {
                context: "the server ended the binlog stream".into(),
                cause: std::io::ErrorKind::ConnectionAborted.into(),
            },
            Err(e) => Error::Unsupported(format!("the binlog reader task failed: {e}")),
        };
        crate::metrics::error(err.kind());
        if !err.is_mysql_connection() {
            match after_partial_tail(cfg, &err).await {
                Some(next) => {
                    tracing::warn!(error = %err, next = %next, "the binlog file ends in a partial event: the server stopped (crashed or ran out of disk) while writing a transaction, which it did not commit; continuing at the start of the next file. If that transaction changed non-transactional (e.g. MyISAM) tables, re-snapshot them");
                    skip_to = Some(StartFrom::Position {
                        file: next,
                        offset: 4,
                        row: None,
                    });
                }
                None => break Err(err),
            }
        }
        if p.producer.next_seq() > sent_before {
            failures = 0;
            failing_since = None;
        }
        let since = *failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() > Duration::from_secs(cfg.mysql.retry_secs as u64) {
            break Err(Error::Unsupported(format!(
                "MySQL at {}:{} stayed unreachable for {}s ([mysql] retry_secs); last error: {err}",
                cfg.mysql.host, cfg.mysql.port, cfg.mysql.retry_secs
            )));
        }
        let wait = Duration::from_secs(1 << failures.min(5));
        failures += 1;
        let last = p.state.last.as_ref().map(ToString::to_string);
        tracing::warn!(error = %err, last = last.as_deref().unwrap_or("none"), retry_in_secs = wait.as_secs(), "binlog stream failed; reconnecting from the last position sent");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.as_mut() => break Ok(()),
        }
        // Resume after what was sent: it may be written already, so no new snapshot row may
        // land at or before it. The fence only grows: what was sent may lie below it (a
        // replay that had not reached it yet).
        fence = crate::state::resume_fence(fence.as_ref(), p.state.last.clone());
        // The snapshot continues where the sent changes left it (from its plan if none was
        // sent yet).
        snapshot = snapshot_wanted.then(|| p.state.snapshot.clone().unwrap_or_default());
    };
    let drained = p.drain(outcome.is_ok()).await;
    let outcome = outcome.and(drained);
    if let Err(e) = &outcome {
        crate::metrics::error(e.kind());
        let at =
            |p: Option<&crate::position::Position>| p.map_or("none".into(), ToString::to_string);
        tracing::error!(error = %e, last = %at(p.state.last.as_ref()), committed = %at(p.committed.as_ref().and_then(|s| s.last.as_ref())), "binlake run stopped on an error");
    }
    outcome
}

/// Start-up: the registry, the broker, the committed state, and the resumption fence.
/// Returns the pipeline, the snapshot to run (if any) and the fence.
async fn start(
    cfg: &Config,
) -> Result<(
    Pipeline<'_>,
    Option<crate::mysql::snapshot::SnapshotProgress>,
    Option<crate::position::Position>,
)> {
    let mut registry = RegistryClient::new(cfg)?;
    // A broker refusing the credentials or the TLS handshake is one clear error now, not
    // timeouts later.
    crate::kafka::access::check_async(&cfg.kafka, crate::kafka::access::WAIT).await?;
    let mut topics = Topics::new(&cfg.kafka)?;
    let producer = Producer::new(&cfg.kafka)?;
    let store = match cfg.kafka.offsets {
        OffsetStore::File => Store::from_config(cfg, None),
        OffsetStore::Kafka => {
            let topic = offsets_topic(cfg);
            topics.ensure(&topic, 1).await?;
            let id = registry
                .register(&format!("{topic}-value"), crate::avro::OFFSETS)
                .await?;
            Store::from_config(cfg, Some(id))
        }
    };
    let saved = store.load()?;
    let want_snapshot = cfg.snapshot.mode != SnapshotMode::Never;
    let saved = crate::state::drop_if_purged(
        cfg,
        saved,
        cfg.snapshot.mode == SnapshotMode::WhenNeeded,
        "set [snapshot] mode = \"when_needed\"",
        match &store {
            Store::File(p) => p.to_str().unwrap_or("the offsets file"),
            Store::Kafka { .. } => "the record keyed `position` in the offsets topic",
        },
    )
    .await?;
    let fresh = saved.is_none();
    let mut state = saved.unwrap_or_default();
    let snapshot = if want_snapshot && (fresh || state.snapshot.is_some()) {
        Some(state.snapshot.clone().unwrap_or_default())
    } else {
        None
    };
    // From the first commit on, the state says a snapshot is due (planned anew while its
    // progress is empty), so that no commit can make a restart skip it.
    state.snapshot = snapshot.clone();
    // What a previous run may already have written: its records are replayed, not re-snapshot.
    let prefix = format!("{}.", cfg.kafka.topic_prefix);
    let offsets = offsets_topic(cfg);
    let existing: Vec<(String, i32)> = topics
        .list()?
        .into_iter()
        .filter(|(t, _)| t.starts_with(&prefix) && *t != offsets)
        .collect();
    let read = topics.last_position(&existing).await?;
    let fence = crate::state::resume_fence(state.fence.as_ref(), read);
    if let Some(f) = &fence {
        tracing::info!(fence = %f, "a previous run wrote up to here: snapshot rows go after it");
    }
    let fence_grew = fence != state.fence;
    state.fence = fence.clone();
    let mut p = Pipeline {
        cfg,
        registry,
        topics,
        producer,
        store,
        tables: HashMap::new(),
        last_table: None,
        pos_buf: String::with_capacity(64),
        committed: Some(state.clone()),
        state,
        pending: VecDeque::new(),
        key_buf: Vec::with_capacity(256),
        value_buf: Vec::with_capacity(4096),
    };
    // A fence read from the topics is committed before any record is written: this run's
    // replay will put lower positions at the ends of the partitions, and a restart after a
    // kill must not take those for the fence.
    if fence_grew && !fresh {
        let state = p.state.clone();
        p.commit(state).await?;
        let timeout = Duration::from_secs(cfg.kafka.message_timeout_secs as u64);
        p.producer.flush(timeout).await?;
        tracing::debug!(fence = ?p.state.fence, "fence committed");
    }
    Ok((p, snapshot, fence))
}

/// Snapshot progress as metrics and as the `snapshot` readiness condition.
fn snapshot_metrics(p: &crate::mysql::snapshot::SnapshotProgress) {
    let tables = p.tables();
    let mut waiting = 0;
    for (table, (rows, estimate, done)) in &tables {
        let t = table.clone();
        metrics::gauge!("binlake_snapshot_rows", "table" => t.clone()).set(*rows as f64);
        metrics::gauge!("binlake_snapshot_rows_estimated", "table" => t.clone())
            .set(*estimate as f64);
        metrics::gauge!("binlake_snapshot_table_done", "table" => t).set(u8::from(*done) as f64);
        waiting += usize::from(!done);
    }
    metrics::gauge!("binlake_snapshot_complete").set(u8::from(p.complete) as f64);
    crate::metrics::health().set(
        "snapshot",
        (!p.complete).then(|| {
            format!(
                "the initial snapshot is running ({waiting} of {} tables to go)",
                tables.len()
            )
        }),
    );
}

/// When `err` is the server refusing to read on because a binlog file ends in a partial
/// event (ER_MASTER_FATAL_ERROR_READING_BINLOG, "binlog truncated in the middle of event"),
/// and a later file exists: that later file. Such a tail is what a server killed while
/// writing a transaction leaves; crash recovery commits only transactions whose binlog is
/// complete (the binlog is the coordinator of the two-phase commit), so nothing after our
/// position in that file was committed, and the server writes on in a new file.
async fn after_partial_tail(cfg: &Config, err: &Error) -> Option<String> {
    let Error::Mysql {
        cause: mysql_async::Error::Server(s),
        ..
    } = err
    else {
        return None;
    };
    if s.code != 1236 || !s.message.contains("truncated in the middle of event") {
        return None;
    }
    // The file the server was reading: "... the last event read from 'FILE' at N ...".
    let file = s
        .message
        .split("last event read from '")
        .nth(1)?
        .split('\'')
        .next()?
        .to_string();
    let mut conn = crate::mysql::server::connect(cfg).await.ok()?;
    let files = crate::mysql::server::binlog_files(&mut conn).await.ok()?;
    let at = files.iter().position(|(f, _)| *f == file)?;
    files.get(at + 1).map(|(f, _)| f.clone())
}

impl Pipeline<'_> {
    async fn pump(
        &mut self,
        mut rx: mpsc::Receiver<Batch>,
        adhoc: &mut Option<mpsc::Receiver<crate::mysql::snapshot::AdhocRequest>>,
        adhoc_tx: &mpsc::Sender<crate::mysql::snapshot::AdhocRequest>,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<Stop> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => return Ok(Stop::Shutdown),
                _ = tick.tick() => self.commit_ready().await?,
                Some(req) = async { adhoc.as_mut()?.recv().await }, if adhoc.is_some() => {
                    // The reader answers the request; if it is gone, the request's reply
                    // channel drops and the admin endpoint says so.
                    let _ = adhoc_tx.send(req).await;
                }
                b = rx.recv() => match b {
                    None => return Ok(Stop::SourceEnded),
                    Some(b) => self.batch(b).await?,
                },
            }
        }
    }

    async fn batch(&mut self, b: Batch) -> Result<()> {
        for c in &b.changes {
            self.change(c).await?;
            self.state.last = Some(c.pos.clone());
        }
        self.producer.poll();
        // The stream's first batch, before any change: where it starts. When nothing was
        // committed yet it is committed at once, with the snapshot still to do, before any
        // record is produced: a run killed before its first regular commit then resumes here
        // (its records are replayed, and dropped by the position filter; the snapshot is
        // planned again) instead of starting afresh at the then end of the binlog, which
        // would skip the changes in between while the killed run's rows stay in the topics.
        let first_start = b.started_at.is_some()
            && self
                .committed
                .as_ref()
                .is_none_or(|c| c.last.is_none() && c.started_at.is_none());
        if let Some(at) = b.started_at {
            self.state.started_at.get_or_insert(at);
        }
        let snapshot_changed = b.snapshot.is_some();
        if let Some(s) = b.snapshot {
            snapshot_metrics(&s);
            self.state.snapshot = Some(s);
        }
        metrics::gauge!("binlake_kafka_queue_records").set(
            self.producer
                .next_seq()
                .saturating_sub(self.producer.acks().acked()) as f64,
        );
        // One pending commit point per 100 ms (or per snapshot step) bounds the queue.
        let seq = self.producer.next_seq();
        match self.pending.back_mut() {
            Some(last) if !snapshot_changed && last.2.elapsed() < Duration::from_millis(100) => {
                last.0 = seq;
                last.1 = self.state.clone();
            }
            _ => self
                .pending
                .push_back((seq, self.state.clone(), Instant::now())),
        }
        if let Some(f) = self.producer.acks().failed() {
            return Err(Error::Delivery(f));
        }
        if first_start {
            self.commit_ready().await?;
            let timeout = Duration::from_secs(self.cfg.kafka.message_timeout_secs as u64);
            self.producer.flush(timeout).await?;
            tracing::debug!(started_at = ?self.state.started_at, "start position committed");
        }
        Ok(())
    }

    /// Commits the newest state whose records are all acknowledged.
    async fn commit_ready(&mut self) -> Result<()> {
        self.producer.poll();
        if let Some(f) = self.producer.acks().failed() {
            return Err(Error::Delivery(f));
        }
        self.producer.watchdog(Duration::from_secs(
            self.cfg.kafka.message_timeout_secs as u64,
        ))?;
        let mut ready = None;
        if self.producer.is_transactional() {
            // The transaction commit covers every record sent in it.
            ready = self.pending.drain(..).next_back().map(|(_, s, _)| s);
        } else {
            let acked = self.producer.acks().acked();
            while self
                .pending
                .front()
                .is_some_and(|(seq, _, _)| *seq <= acked)
            {
                ready = self.pending.pop_front().map(|(_, s, _)| s);
            }
        }
        let Some(state) = ready else { return Ok(()) };
        if self.committed.as_ref() == Some(&state) {
            return Ok(());
        }
        self.commit(state).await
    }

    /// Writes `state` to the store (in the open transaction, which it commits).
    async fn commit(&mut self, state: SavedState) -> Result<()> {
        self.store.commit(&state, &mut self.producer).await?;
        self.producer.commit_transaction()?;
        if let Some(last) = &state.last {
            metrics::gauge!("binlake_binlog_committed_file_number").set(last.file_seq() as f64);
            metrics::gauge!("binlake_binlog_committed_offset_bytes").set(last.offset as f64);
        }
        tracing::debug!(last = ?state.last, acked = self.producer.acks().acked(), sent = self.producer.next_seq(), pending = self.pending.len(), "position committed");
        self.committed = Some(state);
        Ok(())
    }

    /// Flushes what was sent and commits the state it reached. Called on every exit.
    async fn drain(&mut self, graceful: bool) -> Result<()> {
        let timeout = if graceful {
            Duration::from_secs(self.cfg.kafka.message_timeout_secs as u64)
        } else {
            Duration::from_secs(30)
        };
        self.producer.flush(timeout).await?;
        self.commit_ready().await?;
        self.producer.flush(timeout).await?;
        tracing::info!(last = ?self.committed.as_ref().and_then(|s| s.last.as_ref()), "flushed and committed");
        Ok(())
    }

    async fn change(&mut self, c: &Change) -> Result<()> {
        let same = self
            .last_table
            .as_ref()
            .is_some_and(|(t, _)| Arc::ptr_eq(t, &c.table));
        if !same {
            let key = (c.table.db.clone(), c.table.table.clone());
            let current = self
                .tables
                .get(&key)
                .is_some_and(|t| Arc::ptr_eq(&t.schema, &c.table));
            if !current {
                self.table_changed(c).await?;
            }
            self.last_table = Some((c.table.clone(), key));
        }
        let Some(t) = self
            .last_table
            .as_ref()
            .and_then(|(_, key)| self.tables.get(key))
        else {
            return Err(Error::Unsupported(format!(
                "internal: no output for {}",
                c.table.full_name()
            )));
        };
        t.read[op_index(c.op.code())].increment(1);
        let pos_main = dedup::encode(&c.pos, Part::Main);
        self.pos_buf.clear();
        write_pos(c, &mut self.pos_buf);
        let pos_str = self.pos_buf.as_str();
        let gtid = c.pos.gtid.as_deref();
        let ts = c.ts_ms as i64;
        let deletes_with_record =
            self.cfg.kafka.deletes == crate::config::DeleteMode::RecordAndTombstone;
        fn image<'c>(c: &'c Change, row: &'c Option<Vec<Value>>) -> Result<&'c Vec<Value>> {
            row.as_ref().ok_or_else(|| {
                Error::Unsupported(format!(
                    "{} at {}: a row image is missing; binlake run needs binlog_row_image = FULL",
                    c.table.full_name(),
                    c.pos
                ))
            })
        }
        // (row for the key, row for the value or None for a tombstone, op, part)
        let mut records: [Planned; 3] = [(None, None, "", Part::Main); 3];
        match c.op {
            Op::Create | Op::Read => {
                let after = image(c, &c.after)?;
                records[0] = (Some(after), Some(after), c.op.code(), Part::Main);
            }
            Op::Update => {
                let (before, after) = (image(c, &c.before)?, image(c, &c.after)?);
                if t.schema.key.iter().any(|&i| before.get(i) != after.get(i)) {
                    if deletes_with_record {
                        records[0] = (Some(before), Some(before), "d", Part::Main);
                    }
                    records[1] = (Some(before), None, "", Part::Tombstone);
                    records[2] = (Some(after), Some(after), "c", Part::NewKey);
                } else {
                    records[0] = (Some(after), Some(after), "u", Part::Main);
                }
            }
            Op::Delete => {
                let before = image(c, &c.before)?;
                if deletes_with_record {
                    records[0] = (Some(before), Some(before), "d", Part::Main);
                }
                records[1] = (Some(before), None, "", Part::Tombstone);
            }
        }
        for (key_row, value_row, op, part) in records {
            let Some(key_row) = key_row else { continue };
            self.key_buf.clear();
            self.key_buf.push(0);
            self.key_buf.extend_from_slice(&t.key_id.to_be_bytes());
            t.encoder.key(key_row, &mut self.key_buf)?;
            let value = match value_row {
                Some(row) => {
                    self.value_buf.clear();
                    self.value_buf.push(0);
                    self.value_buf.extend_from_slice(&t.value_id.to_be_bytes());
                    t.encoder.value(row, op, ts, pos_str, &mut self.value_buf)?;
                    Some(self.value_buf.as_slice())
                }
                None => None,
            };
            let pos = if part == Part::Main {
                pos_main
            } else {
                dedup::encode(&c.pos, part)
            };
            self.producer
                .send(&Record {
                    topic: &t.topic,
                    partition: partition_for(&self.key_buf, t.partitions),
                    key: &self.key_buf,
                    value,
                    pos: &pos,
                    gtid,
                    commit_ms: if c.op == Op::Read { 0 } else { ts },
                    written: Some(&t.written[op_index(op)]),
                })
                .await
                .map_err(|e| match e {
                    Error::TooLarge { .. } => Error::Unsupported(format!(
                        "{} at {}: {e}; nothing from this change on was committed",
                        c.table.full_name(),
                        c.pos
                    )),
                    e => e,
                })?;
        }
        Ok(())
    }

    /// A table seen for the first time, or a new version of it (DDL): derive its schemas,
    /// check them with the registry before anything is written, register, create the topic.
    async fn table_changed(&mut self, c: &Change) -> Result<()> {
        let name = (c.table.db.clone(), c.table.table.clone());
        let topic = format!(
            "{}.{}.{}",
            self.cfg.kafka.topic_prefix, c.table.db, c.table.table
        );
        if c.table.key_source == KeySource::None || c.table.key.is_empty() {
            return Err(Error::Unsupported(format!(
                "{} has no primary key and [capture] key = \"none\": a compacted topic needs a \
                 key per record. Use key = \"all-columns\", or \"skip\" to leave such tables out",
                c.table.full_name()
            )));
        }
        let schemas = TableSchemas::derive(&c.table, &topic);
        let old = self.tables.get(&name);
        if let Some(old) = old {
            if old.encoder.schemas.key == schemas.key && old.encoder.schemas.value == schemas.value
            {
                if let Some(t) = self.tables.get_mut(&name) {
                    t.schema = c.table.clone();
                }
                return Ok(());
            }
        }
        let old_schema = old.map(|o| o.schema.clone());
        let partitions = self
            .topics
            .ensure(&topic, self.cfg.kafka.partitions)
            .await?;
        let subjects = [
            (format!("{topic}-key"), &schemas.key),
            (format!("{topic}-value"), &schemas.value),
        ];
        for (subject, schema) in &subjects {
            if let Compatibility::Incompatible(reasons) =
                self.registry.check(subject, schema).await?
            {
                return Err(Error::Registry(incompatible_message(
                    subject,
                    old_schema.as_deref(),
                    &c.table,
                    &reasons,
                    &self.cfg.registry.url,
                )));
            }
        }
        let key_id = self
            .registry
            .register(&subjects[0].0, subjects[0].1)
            .await?;
        let value_id = self
            .registry
            .register(&subjects[1].0, subjects[1].1)
            .await?;
        tracing::info!(table = %c.table.full_name(), %topic, key_id, value_id, "table schema registered");
        let table = c.table.full_name();
        let read = ["c", "u", "d", "r"].map(
            |op| metrics::counter!("binlake_rows_read_total", "table" => table.clone(), "op" => op),
        );
        let written = ["c", "u", "d", "r", "tombstone"].map(|op| {
            metrics::counter!("binlake_records_written_total", "table" => table.clone(), "op" => op)
        });
        self.tables.insert(
            name,
            TableOut {
                schema: c.table.clone(),
                encoder: Encoder::new(schemas, c.table.full_name()),
                topic,
                partitions,
                key_id,
                value_id,
                read,
                written,
            },
        );
        Ok(())
    }
}

/// `__pos`: `FILE:OFFSET:ROW`, snapshot rows `FILE:OFFSET:sN`.
fn write_pos(c: &Change, out: &mut String) {
    use std::fmt::Write;
    let _ = match c.pos.snapshot {
        Some(n) => write!(out, "{}:{}:s{n}", c.pos.file, c.pos.offset),
        None => write!(out, "{}:{}:{}", c.pos.file, c.pos.offset, c.pos.row),
    };
}

/// The error for a DDL the registry refuses: which columns changed, and the ways out.
fn incompatible_message(
    subject: &str,
    old: Option<&TableSchema>,
    new: &TableSchema,
    reasons: &[String],
    url: &str,
) -> String {
    let mut changes = Vec::new();
    if let Some(old) = old {
        for c in &old.columns {
            match new.columns.iter().find(|n| n.name == c.name) {
                None => changes.push(format!("column `{}` was dropped", c.name)),
                Some(n) if n.ty != c.ty || n.nullable != c.nullable => changes.push(format!(
                    "column `{}` changed from {:?}{} to {:?}{}",
                    c.name,
                    c.ty,
                    if c.nullable { " NULL" } else { " NOT NULL" },
                    n.ty,
                    if n.nullable { " NULL" } else { " NOT NULL" }
                )),
                _ => {}
            }
        }
        for n in &new.columns {
            if !old.columns.iter().any(|c| c.name == n.name) {
                changes.push(format!(
                    "column `{}` was added{}",
                    n.name,
                    if n.nullable {
                        ""
                    } else {
                        " as NOT NULL (no default in Avro)"
                    }
                ));
            }
        }
    }
    let what = if changes.is_empty() {
        format!(
            "the schema of {} differs from the latest version registered",
            new.full_name()
        )
    } else {
        changes.join("; ")
    };
    format!(
        "{}: {what}; the registry refuses it for subject {subject} under its compatibility \
         level{}. Nothing of this table was written past the DDL. Options: make the change \
         compatible (e.g. add the column as NULL); or relax the subject's level: curl -X PUT \
         -H 'Content-Type: application/json' -d '{{\"compatibility\":\"NONE\"}}' \
         {url}/config/{subject}; or write the table to new topics (another [kafka] topic_prefix) \
         and snapshot again. Then restart binlake run",
        new.full_name(),
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join("; "))
        }
    )
}
