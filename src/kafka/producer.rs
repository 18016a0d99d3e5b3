//! The producer: idempotent librdkafka producer plus an acknowledgement watermark.
//!
//! Every record gets a sequence number in send order. Kafka acknowledges records out of order
//! across partitions; [`Acks`] keeps the watermark `acked`: every record with a smaller
//! sequence number is acknowledged. Invariant: a position may be committed once `acked`
//! passed the last record sent before it; a record that failed for good stops the watermark
//! forever (and the run), so nothing after it is ever committed. When librdkafka's queue is
//! full, `send` waits: backpressure reaches the binlog reader instead of memory growing.
//! Delivery reports are served by [`Producer::poll`] on the thread that produces (not by a
//! background thread): librdkafka then frees each message on the thread that allocated it,
//! which the C allocator does several times faster (BENCHMARKS.md).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::ClientContext;

use crate::config::KafkaConfig;
use crate::error::{Error, Result};

/// One record in [`SAMPLE`] is timed for the latency histograms: timing every record cost
/// 13% more CPU and 80 MB more memory in `binlake run` at 300k records/s (BENCHMARKS.md).
const SAMPLE: u64 = 8;

/// What the acknowledgement of one record reports to the metrics (only while they are on).
struct Sent {
    /// When it was sent, for the sampled records.
    at: Option<std::time::Instant>,
    /// The source's commit time (ms since the epoch), 0 when there is none (snapshot rows).
    commit_ms: i64,
    written: Option<metrics::Counter>,
}

/// The metrics the acknowledgements feed.
struct Track {
    /// Sent records from sequence number `base` on, not yet passed by the watermark.
    sent: VecDeque<Sent>,
    base: u64,
    produce: metrics::Histogram,
    end_to_end: metrics::Histogram,
}

#[derive(Default)]
struct AckState {
    /// Lowest sequence number not yet acknowledged.
    acked: u64,
    /// Bit i of word w: `acked + 64 * w + i` was acknowledged early (out of order).
    early: VecDeque<u64>,
    /// The first delivery that failed for good.
    failed: Option<String>,
    /// Latency and row metrics, when a metrics endpoint is configured.
    track: Option<Track>,
}

/// Shared between the producer's delivery callbacks and the pipeline.
#[derive(Default)]
pub struct Acks {
    state: Mutex<AckState>,
    /// Delivery reports served so far (acknowledged or failed).
    reports: std::sync::atomic::AtomicU64,
}

impl Acks {
    fn ack(&self, seq: u64) {
        self.reports
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Ok(mut s) = self.state.lock() else { return };
        if seq < s.acked {
            return;
        }
        if let Some(t) = &s.track {
            if let Some(sent) = seq.checked_sub(t.base).and_then(|i| t.sent.get(i as usize)) {
                if let Some(at) = sent.at {
                    t.produce.record(at.elapsed().as_secs_f64());
                }
                if sent.commit_ms > 0 && sent.at.is_some() {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    t.end_to_end
                        .record((now_ms - sent.commit_ms).max(0) as f64 / 1000.0);
                }
                if let Some(c) = &sent.written {
                    c.increment(1);
                }
            }
        }
        // The window starts at `acked`, which is kept a multiple of 64 apart from the
        // window's base by shifting whole words only when they are full.
        let base = s.acked - s.acked % 64;
        let (word, bit) = (((seq - base) / 64) as usize, (seq - base) % 64);
        if s.early.len() <= word {
            s.early.resize(word + 1, 0);
        }
        s.early[word] |= 1 << bit;
        // Advance over the acknowledged prefix.
        loop {
            let off = s.acked % 64;
            let Some(&w) = s.early.front() else { break };
            let run = (w >> off).trailing_ones() as u64;
            s.acked += run;
            if off + run == 64 {
                s.early.pop_front();
            } else {
                break;
            }
        }
        let acked = s.acked;
        if let Some(t) = &mut s.track {
            while t.base < acked && t.sent.pop_front().is_some() {
                t.base += 1;
            }
        }
    }

    /// Notes a record sent with sequence number `seq` (the next one), when tracking.
    fn sent(&self, seq: u64, commit_ms: i64, written: Option<&metrics::Counter>) {
        let Ok(mut s) = self.state.lock() else { return };
        if let Some(t) = &mut s.track {
            if t.sent.is_empty() {
                t.base = seq;
            }
            t.sent.push_back(Sent {
                at: (seq % SAMPLE == 0).then(std::time::Instant::now),
                commit_ms,
                written: written.cloned(),
            });
        }
    }

    fn fail(&self, what: String) {
        self.reports
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut s) = self.state.lock() {
            s.failed.get_or_insert(what);
        }
    }

    /// Every record with a sequence number below this was acknowledged.
    pub fn acked(&self) -> u64 {
        self.state.lock().map(|s| s.acked).unwrap_or(0)
    }

    /// The first record that could not be written, if any.
    pub fn failed(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.failed.clone())
    }
}

/// librdkafka context: routes delivery reports to [`Acks`], logs client errors, and stops the
/// watermark on an error retrying cannot cure (the broker refusing the credentials or the TLS
/// handshake, [`super::access`]).
pub struct Context {
    acks: Arc<Acks>,
    access: super::access::Watch,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        match self.access.note(&error, reason) {
            // librdkafka would retry it until message.timeout.ms: stop now instead.
            Some(problem) => self.acks.fail(problem),
            // Broker connection errors are retried by librdkafka; worth a warning only.
            None => tracing::warn!(%error, reason, "kafka client"),
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        match result {
            Ok(_) => self.acks.ack(seq as u64),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), m)) => {
                let pos = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == crate::kafka::dedup::HEADER))
                    .and_then(|h| crate::kafka::dedup::decode(h.value?));
                self.acks.fail(format!(
                    "the broker refused a record of {} bytes for {} (partition {}{}) as too \
                     large. Nothing from it on was committed. Fix: raise max.message.bytes of \
                     the topic (and the broker's message.max.bytes if lower; [kafka] \
                     topic_config for topics binlake creates), or leave the large column out \
                     ([capture] exclude_columns); then restart",
                    m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len),
                    m.topic(),
                    m.partition(),
                    pos.map(|p| format!(", source position {p}"))
                        .unwrap_or_default()
                ))
            }
            Err((e, m)) => self.acks.fail(format!(
                "writing a record to {} (partition {}) failed: {e}",
                m.topic(),
                m.partition()
            )),
        }
    }
}

/// One record to produce.
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub key: &'a [u8],
    /// `None`: a tombstone.
    pub value: Option<&'a [u8]>,
    pub pos: &'a [u8],
    pub gtid: Option<&'a str>,
    /// The source's commit time (ms since the epoch; 0: none), for the latency metrics.
    pub commit_ms: i64,
    /// Counted when Kafka acknowledges the record (`binlake_records_written_total`).
    pub written: Option<&'a metrics::Counter>,
}

/// The idempotent producer and its acknowledgement watermark.
pub struct Producer {
    inner: BaseProducer<Context>,
    acks: Arc<Acks>,
    next: u64,
    transactional: bool,
    /// The watermark at the last watchdog check that saw it move, and when.
    progress: (u64, std::time::Instant),
}

impl Producer {
    pub fn new(k: &KafkaConfig) -> Result<Producer> {
        let mut c = super::client_config(k);
        // Not negotiable: without them a retry can reorder or duplicate records, and the
        // position filter's guarantee would not hold.
        for (name, value) in [("enable.idempotence", "true"), ("acks", "all")] {
            if k.properties.get(name).is_some_and(|v| v != value) {
                tracing::warn!(
                    property = name,
                    "[kafka.properties] {name} is ignored: binlake always uses {value}"
                );
            }
            c.set(name, value);
        }
        // Defaults; the user's [kafka.properties] (already in `c`) win.
        for (name, value) in [
            ("linger.ms", "10"),
            ("batch.num.messages", "10000"),
            ("compression.type", "lz4"),
            // The memory bound of the producer queue: 32 MB (BENCHMARKS.md: peak RSS).
            ("queue.buffering.max.kbytes", "32768"),
            ("queue.buffering.max.messages", "100000"),
        ] {
            if !k.properties.contains_key(name) {
                c.set(name, value);
            }
        }
        // Without transactions librdkafka never gives up on a record (0: no timeout): a
        // record it timed out would let the ones queued behind it be written under a new
        // producer epoch, a gap the position filter would make permanent. `run` bounds the
        // wait itself (`Producer::watchdog`) and then stops, sending nothing more.
        let timeout_ms = if k.transactional_id.is_some() {
            k.message_timeout_secs as u64 * 1000
        } else {
            0
        };
        c.set("message.timeout.ms", timeout_ms.to_string());
        if k.transactional_id.is_none() {
            // A batch the broker refuses for good (a record over the topic's
            // max.message.bytes) must stop the producer: otherwise librdkafka re-sequences
            // and writes the records queued behind it, which carry higher positions than
            // the refused record will when it is written after the fix, and the position
            // filter would drop it (tests/bad_input.rs). A transaction aborts instead.
            c.set("enable.gapless.guarantee", "true");
        }
        if let Some(id) = &k.transactional_id {
            c.set("transactional.id", id);
            // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
            if !k.properties.contains_key("transaction.timeout.ms") {
                c.set(
                    "transaction.timeout.ms",
                    (k.message_timeout_secs as u64 * 1000)
                        .max(60_000)
                        .to_string(),
                );
            }
        }
        let acks = Arc::new(Acks::default());
        if crate::metrics::enabled() {
            if let Ok(mut s) = acks.state.lock() {
                s.track = Some(Track {
                    sent: VecDeque::new(),
                    base: 0,
                    produce: metrics::histogram!("binlake_kafka_produce_seconds"),
                    end_to_end: metrics::histogram!("binlake_end_to_end_seconds"),
                });
            }
        }
        let inner: BaseProducer<Context> = c
            .create_with_context(Context {
                acks: acks.clone(),
                access: super::access::Watch::new(k),
            })
            .map_err(Error::kafka(
                "creating the Kafka producer (check [kafka.properties])",
            ))?;
        let transactional = k.transactional_id.is_some();
        if transactional {
            inner
                .init_transactions(Duration::from_secs(30))
                .map_err(Error::kafka(
                    "initializing Kafka transactions (does the broker support them? unset \
                     [kafka] transactional_id otherwise)",
                ))?;
            inner
                .begin_transaction()
                .map_err(Error::kafka("beginning a Kafka transaction"))?;
        }
        Ok(Producer {
            inner,
            acks,
            next: 0,
            transactional,
            progress: (0, std::time::Instant::now()),
        })
    }

    /// Queues one record; waits while librdkafka's queue is full. Returns its sequence number.
    pub async fn send(&mut self, r: &Record<'_>) -> Result<u64> {
        let seq = self.next;
        let mut headers = OwnedHeaders::new_with_capacity(2).insert(Header {
            key: crate::kafka::dedup::HEADER,
            value: Some(r.pos),
        });
        if let Some(g) = r.gtid {
            headers = headers.insert(Header {
                key: "binlake.gtid",
                value: Some(g.as_bytes()),
            });
        }
        let mut record = BaseRecord::with_opaque_to(r.topic, seq as usize)
            .partition(r.partition)
            .key(r.key)
            .headers(headers);
        if let Some(v) = r.value {
            record = record.payload(v);
        }
        let mut waited = 0u32;
        loop {
            match self.inner.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.poll();
                    if let Some(f) = self.acks.failed() {
                        return Err(Error::Delivery(f));
                    }
                    waited += 1;
                    if waited % 5000 == 0 {
                        tracing::warn!(
                            in_flight = self.inner.in_flight_count(),
                            "the Kafka producer queue is full: waiting for the broker"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    return Err(Error::TooLarge {
                        topic: r.topic.to_string(),
                        bytes: r.key.len() + r.value.map_or(0, <[u8]>::len),
                        limit: "the producer's message.max.bytes, [kafka.properties]; \
                                librdkafka's default is 1000000"
                            .into(),
                    })
                }
                Err((e, _)) => {
                    return Err(self.first_failure(Error::Kafka {
                        context: format!("queueing a record for {}", r.topic),
                        cause: e,
                    }))
                }
            }
        }
        self.acks.sent(seq, r.commit_ms, r.written);
        self.next += 1;
        Ok(seq)
    }

    /// Serves every delivery report that is ready (moves the acknowledgement watermark). Call
    /// often: after each batch and periodically.
    ///
    /// rdkafka's `poll(0)` serves one event, and librdkafka makes one event per partition's
    /// batch: one call per tick acknowledged one partition per tick, so 40 new tables of 3
    /// partitions took a minute to commit (found by tests/kill_windows.rs). So poll until an
    /// event brings no report.
    pub fn poll(&self) {
        for _ in 0..100_000 {
            let before = self.acks.reports.load(std::sync::atomic::Ordering::Relaxed);
            self.inner.poll(Duration::ZERO);
            if self.acks.reports.load(std::sync::atomic::Ordering::Relaxed) == before {
                break;
            }
        }
    }

    /// Sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    pub fn acks(&self) -> &Acks {
        &self.acks
    }

    /// Records queued or in flight.
    pub fn in_flight(&self) -> i32 {
        self.inner.in_flight_count()
    }

    /// Waits until every record sent is acknowledged (or failed), up to `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.poll();
            if let Some(f) = self.acks.failed() {
                return Err(Error::Delivery(f));
            }
            if self.acks.acked() >= self.next {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Unsupported(format!(
                    "Kafka did not acknowledge {} records within {}s",
                    self.next - self.acks.acked(),
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Fails when records are waiting and Kafka acknowledged none of them for `limit`
    /// (`[kafka] message_timeout_secs`): the broker is down, or a partition has no leader.
    /// The failure is recorded like a refused record, so no flush waits on it, and nothing
    /// queued after the first waiting record is committed.
    pub fn watchdog(&mut self, limit: Duration) -> Result<()> {
        let acked = self.acks.acked();
        if acked >= self.next || acked != self.progress.0 {
            self.progress = (acked, std::time::Instant::now());
            return Ok(());
        }
        if self.progress.1.elapsed() < limit {
            return Ok(());
        }
        self.acks.fail(format!(
            "Kafka acknowledged none of the {} records waiting for it for {} s ([kafka] \
             message_timeout_secs): the broker is unreachable or a partition has no leader",
            self.next - acked,
            limit.as_secs()
        ));
        Err(Error::Delivery(self.acks.failed().unwrap_or_default()))
    }

    /// Transactional mode: commits the open transaction (records and the position record
    /// produced in it) and begins the next.
    pub fn commit_transaction(&self) -> Result<()> {
        if !self.transactional {
            return Ok(());
        }
        self.inner
            .commit_transaction(Duration::from_secs(60))
            .map_err(|e| self.first_failure(Error::kafka("committing the Kafka transaction")(e)))?;
        self.inner
            .begin_transaction()
            .map_err(|e| self.first_failure(Error::kafka("beginning a Kafka transaction")(e)))
    }

    /// The failure the client reported first (a refused record, or an error retrying cannot
    /// cure such as this producer being fenced), which explains `later`; else `later`.
    fn first_failure(&self, later: Error) -> Error {
        self.inner.poll(Duration::ZERO);
        if let Some(f) = self.acks.failed() {
            return Error::Delivery(f);
        }
        // librdkafka's fatal error (its cause: e.g. fenced), which the error event that
        // reports it may not have delivered yet.
        if let Some((code, reason)) = self.inner.client().fatal_error() {
            let error = KafkaError::Global(code);
            if let Some(problem) = self.inner.context().access.note(&error, &reason) {
                return Error::KafkaAccess(problem);
            }
        }
        later
    }

    pub fn is_transactional(&self) -> bool {
        self.transactional
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_follows_any_acknowledgement_order() {
        // A deterministic shuffle of 10,000 sequence numbers, in blocks as partitions ack.
        let n = 10_000u64;
        let mut order: Vec<u64> = (0..n).collect();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let a = Acks::default();
        let mut seen = vec![false; n as usize];
        for s in order {
            a.ack(s);
            seen[s as usize] = true;
            let want = seen.iter().position(|b| !b).unwrap_or(n as usize) as u64;
            assert_eq!(a.acked(), want);
        }
    }

    #[test]
    fn watermark_waits_for_the_oldest_record() {
        let a = Acks::default();
        a.ack(1);
        a.ack(2);
        assert_eq!(a.acked(), 0);
        a.ack(0);
        assert_eq!(a.acked(), 3);
        a.ack(4);
        assert_eq!(a.acked(), 3);
        a.fail("x".into());
        a.ack(3);
        assert_eq!(a.acked(), 5);
        assert_eq!(a.failed().as_deref(), Some("x"));
    }
}
