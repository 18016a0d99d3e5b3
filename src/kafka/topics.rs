//! Topic management: one compacted topic per table, created before its first record.
//!
//! Invariant: a record is only ever produced to a topic that exists with
//! `cleanup.policy=compact` (or that the user explicitly accepted otherwise) and whose
//! partition count is known, so placement by murmur2 is stable. Existing topics are listed
//! from cluster metadata, never by asking for one topic by name (some brokers auto-create a
//! topic they are asked about).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::position::Position;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Creates, checks and remembers the topics binlake writes to.
pub struct Topics {
    cfg: KafkaConfig,
    admin: AdminClient<DefaultClientContext>,
    /// Partition count of every topic known to exist and be checked.
    known: HashMap<String, i32>,
}

impl Topics {
    pub fn new(cfg: &KafkaConfig) -> Result<Topics> {
        let admin = super::client_config(cfg)
            .create()
            .map_err(Error::kafka("creating the Kafka admin client"))?;
        Ok(Topics {
            cfg: cfg.clone(),
            admin,
            known: HashMap::new(),
        })
    }

    /// Every topic in the cluster with its partition count.
    pub fn list(&self) -> Result<HashMap<String, i32>> {
        let md = self
            .admin
            .inner()
            .fetch_metadata(None, TIMEOUT)
            .map_err(Error::kafka(format!(
                "reading cluster metadata from {} (is the broker up?)",
                self.cfg.brokers
            )))?;
        Ok(md
            .topics()
            .iter()
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .collect())
    }

    /// Makes sure `topic` exists, compacted; returns its partition count. `partitions` is used
    /// when binlake creates it.
    pub async fn ensure(&mut self, topic: &str, partitions: i32) -> Result<i32> {
        if let Some(&n) = self.known.get(topic) {
            return Ok(n);
        }
        let mut existing = self.list()?;
        if !existing.contains_key(topic) {
            let mut new = NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(self.cfg.replication_factor),
            );
            for (k, v) in &self.cfg.topic_config {
                if k != "cleanup.policy" {
                    new = new.set(k, v);
                }
            }
            new = new.set("cleanup.policy", "compact");
            let results = self
                .admin
                .create_topics(
                    [&new],
                    &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
                )
                .await
                .map_err(Error::kafka(format!("creating topic {topic}")))?;
            for r in results {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((t, code)) => {
                        return Err(Error::Unsupported(format!(
                            "creating topic {t} failed: {code} (check [kafka] partitions, \
                             replication_factor and topic_config)"
                        )))
                    }
                }
            }
            tracing::info!(topic, partitions, "created compacted topic");
            // Metadata catches up with the creation shortly after.
            for _ in 0..50 {
                existing = self.list()?;
                if existing.get(topic).is_some_and(|&n| n > 0) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } else {
            self.check_compacted(topic).await?;
        }
        let n = existing
            .get(topic)
            .copied()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                Error::Unsupported(format!("topic {topic} has no partitions in the metadata"))
            })?;
        self.known.insert(topic.to_string(), n);
        Ok(n)
    }

    async fn check_compacted(&self, topic: &str) -> Result<()> {
        if self.cfg.allow_non_compacted {
            return Ok(());
        }
        let results = self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
            .await
            .map_err(Error::kafka(format!(
                "reading the configuration of topic {topic}"
            )))?;
        let policy = results
            .into_iter()
            .next()
            .and_then(|r| r.ok())
            .and_then(|r| r.get("cleanup.policy").and_then(|e| e.value.clone()));
        match policy {
            Some(p) if p.split(',').any(|x| x.trim() == "compact") => Ok(()),
            other => Err(Error::Unsupported(format!(
                "topic {topic} exists with cleanup.policy={}, not compact: it would lose the table's \
                 rows as they age. Set cleanup.policy=compact on it, delete it so binlake creates \
                 it, or set [kafka] allow_non_compacted = true",
                other.as_deref().unwrap_or("unknown")
            ))),
        }
    }

    /// The greatest `binlake.pos` among the last records of every partition of `topics`:
    /// the fence a restarted run must emit new snapshot rows after.
    ///
    /// A partition's last offset is often not a record a consumer sees: under transactions it
    /// is a commit or abort marker, and before it may stand a whole aborted transaction
    /// (read_committed, librdkafka's default, skips both). So each partition is read from
    /// `high - back` to its end, `back` growing 64-fold while a partition gave no record, down
    /// to its first offset if need be.
    pub async fn last_position(&self, topics: &[(String, i32)]) -> Result<Option<Position>> {
        let consumer: BaseConsumer<super::QuietContext> = super::client_config(&self.cfg)
            .set("group.id", "binlake-fence")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create_with_context(super::QuietContext)
            .map_err(Error::kafka("creating a Kafka consumer"))?;
        // (topic, partition) → (low, high) of the partitions that hold anything.
        let mut pending: HashMap<(String, i32), (i64, i64)> = HashMap::new();
        for (topic, partitions) in topics {
            for p in 0..*partitions {
                let (low, high) = consumer
                    .fetch_watermarks(topic, p, TIMEOUT)
                    .map_err(Error::kafka(format!("reading the offsets of {topic}[{p}]")))?;
                if high > low {
                    pending.insert((topic.clone(), p), (low, high));
                }
            }
        }
        let mut best: Option<Vec<u8>> = None;
        let mut back = 1i64;
        while !pending.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for ((topic, p), (low, high)) in &pending {
                tpl.add_partition_offset(topic, *p, Offset::Offset((high - back).max(*low)))
                    .map_err(Error::kafka("assigning partitions"))?;
            }
            consumer
                .assign(&tpl)
                .map_err(Error::kafka("assigning partitions"))?;
            let mut waiting = pending.len();
            let deadline = std::time::Instant::now() + TIMEOUT;
            while waiting > 0 {
                if std::time::Instant::now() > deadline {
                    return Err(Error::Unsupported(
                        "timed out reading the last record of every table topic (needed to \
                         resume without duplicates); is the broker healthy?"
                            .into(),
                    ));
                }
                match consumer.poll(Duration::from_millis(200)) {
                    None => {}
                    Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => waiting -= 1,
                    // A broker restarting or a connection cut: librdkafka reconnects.
                    Some(Err(e)) if super::transient(&e) => {
                        tracing::debug!(error = %e, "reading the last records: retrying");
                    }
                    Some(Err(e)) => return Err(Error::kafka("reading the last records")(e)),
                    Some(Ok(m)) => {
                        let pos = m.headers().and_then(|h| {
                            h.iter()
                                .filter(|h| h.key == crate::kafka::dedup::HEADER)
                                .find_map(|h| h.value)
                        });
                        if let Some(v) = pos {
                            if best.as_deref().is_none_or(|b| v > b) {
                                best = Some(v.to_vec());
                            }
                            pending.remove(&(m.topic().to_string(), m.partition()));
                        }
                    }
                }
            }
            // Partitions that gave no record: read further back, unless read from the start.
            pending.retain(|_, (low, high)| *high - back > *low);
            back = back.saturating_mul(64);
        }
        Ok(best.and_then(|b| super::dedup::decode(&b)))
    }
}
