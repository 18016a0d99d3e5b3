//! Reading one table topic from its first offset: every partition assigned at the beginning,
//! the high watermarks taken once at the start, records handed over in offset order per
//! partition with replays (a `binlake.pos` at or before one already seen) dropped.
//!
//! Invariant: without `follow`, exactly the records below the start's high watermarks are
//! handed over, so two passes over the same topic see the same records (unless the broker
//! compacts in between, which the caller detects); `caught_up` turns true once every
//! partition was read to its watermark. A broker restarting or a connection cut is waited
//! out (librdkafka reconnects) for up to [`UNREACHABLE`], then it is an error.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::kafka::dedup::PositionFilter;
use crate::kafka::QuietContext;

/// How long the brokers may stay unreachable before reading fails.
pub const UNREACHABLE: Duration = Duration::from_secs(120);

/// One record of the topic.
pub struct Rec<'a> {
    pub partition: i32,
    pub offset: i64,
    pub key: &'a [u8],
    /// `None`: a tombstone.
    pub value: Option<&'a [u8]>,
    pub timestamp_ms: i64,
    /// The `binlake.pos` header: orders changes across partitions.
    pub pos: Option<&'a [u8]>,
}

pub struct TopicReader {
    consumer: BaseConsumer<QuietContext>,
    topic: String,
    /// (partition, low, high) at the start.
    marks: Vec<(i32, i64, i64)>,
    /// Partitions not yet read to their start high watermark.
    behind: HashSet<i32>,
    follow: bool,
    filter: PositionFilter,
    /// Records handed over, and replays dropped.
    pub read: u64,
    pub replays: u64,
    /// Since when every poll failed on the connection to the brokers.
    failing_since: Option<Instant>,
}

impl TopicReader {
    /// Assigns every partition of `topic` at its beginning. Fails when the topic does not
    /// exist.
    pub fn open(cfg: &Config, topic: &str, follow: bool) -> Result<TopicReader> {
        crate::kafka::access::check(&cfg.kafka, crate::kafka::access::WAIT)?;
        let mut cc = crate::kafka::client_config(&cfg.kafka);
        cc.set(
            "group.id",
            format!("binlake-rebuild-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
        let consumer: BaseConsumer<QuietContext> = cc
            .create_with_context(QuietContext)
            .map_err(Error::kafka("creating the rebuild's Kafka consumer"))?;
        let timeout = Duration::from_secs(30);
        let md = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(Error::kafka(format!(
                "reading the metadata of topic {topic} from {}",
                cfg.kafka.brokers
            )))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(Error::Unsupported(format!(
                "topic {topic} does not exist on {} (binlake's table topics are named \
                 {{topic_prefix}}.{{db}}.{{table}}; list them with `kcat -L`)",
                cfg.kafka.brokers
            )));
        }
        let mut marks = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, timeout)
                .map_err(Error::kafka(format!("reading the offsets of {topic}/{p}")))?;
            marks.push((p, low, high));
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(Error::kafka("assigning partitions"))?;
        }
        consumer
            .assign(&tpl)
            .map_err(Error::kafka(format!("assigning the partitions of {topic}")))?;
        let behind = marks
            .iter()
            .filter(|(_, low, high)| high > low)
            .map(|(p, ..)| *p)
            .collect();
        Ok(TopicReader {
            consumer,
            topic: topic.to_string(),
            marks,
            behind,
            follow,
            filter: PositionFilter::default(),
            read: 0,
            replays: 0,
            failing_since: None,
        })
    }

    /// Records below the start's high watermarks (some may be gone to compaction).
    pub fn total(&self) -> u64 {
        self.marks
            .iter()
            .map(|(_, low, high)| (high - low).max(0) as u64)
            .sum()
    }

    /// Every partition was read to its high watermark of the start.
    pub fn caught_up(&self) -> bool {
        self.behind.is_empty()
    }

    /// Waits up to `timeout` for one record and hands it to `f` unless it is a replay or
    /// (without `follow`) beyond the start's watermark. Returns whether a record came.
    pub fn poll(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(Rec<'_>) -> Result<()>,
    ) -> Result<bool> {
        let m = match self.consumer.poll(timeout) {
            None => return Ok(false),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                self.failing_since = None;
                self.behind.remove(&p);
                return Ok(false);
            }
            Some(Err(e))
                if crate::kafka::transient(&e)
                    && self
                        .failing_since
                        .get_or_insert_with(Instant::now)
                        .elapsed()
                        < UNREACHABLE =>
            {
                tracing::debug!(error = %e, topic = %self.topic, "reading: the brokers are unreachable; waiting");
                return Ok(false);
            }
            Some(Err(e)) => {
                return Err(Error::Kafka {
                    context: format!("reading {}", self.topic),
                    cause: e,
                })
            }
            Some(Ok(m)) => m,
        };
        self.failing_since = None;
        let (p, offset) = (m.partition(), m.offset());
        let high = self
            .marks
            .iter()
            .find(|(q, ..)| *q == p)
            .map_or(i64::MAX, |m| m.2);
        if offset + 1 >= high {
            self.behind.remove(&p);
        }
        if offset >= high && !self.follow {
            return Ok(true);
        }
        let pos = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == crate::kafka::dedup::HEADER))
            .and_then(|h| h.value);
        if !self.filter.accept(&self.topic, p, pos) {
            self.replays += 1;
            return Ok(true);
        }
        self.read += 1;
        f(Rec {
            partition: p,
            offset,
            key: m.key().unwrap_or_default(),
            value: m.payload(),
            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
            pos,
        })?;
        Ok(true)
    }
}
