//! The committed source position of `binlake run`: in the compacted topic
//! `{topic_prefix}.offsets` (one record keyed `position`, Avro `schemas/offsets.avsc` in the
//! Confluent wire format), or in a local file written atomically.
//!
//! Invariant: the caller commits a state only after Kafka acknowledged every record produced
//! before it; a commit is itself durable before the next is attempted, so a restart resumes at
//! or before the last record written, never after.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::avro::wire;
use crate::config::{Config, OffsetStore};
use crate::error::{Error, Result};
use crate::kafka::producer::{Producer, Record};
use crate::state::SavedState;

const KEY: &[u8] = b"position";

/// Where positions are committed.
pub enum Store {
    File(PathBuf),
    Kafka {
        topic: String,
        cfg: crate::config::KafkaConfig,
        schema_id: u32,
    },
}

impl Store {
    /// The store the config names. For Kafka, `schema_id` is the registered id of
    /// `schemas/offsets.avsc` under `{topic}-value`.
    pub fn from_config(cfg: &Config, schema_id: Option<u32>) -> Store {
        match (cfg.kafka.offsets, &cfg.kafka.offsets_file) {
            (OffsetStore::File, Some(f)) => Store::File(f.clone()),
            _ => Store::Kafka {
                topic: offsets_topic(cfg),
                cfg: cfg.kafka.clone(),
                schema_id: schema_id.unwrap_or(0),
            },
        }
    }

    /// The last committed state, if any.
    pub fn load(&self) -> Result<Option<SavedState>> {
        match self {
            Store::File(p) => SavedState::load(p),
            Store::Kafka { topic, cfg, .. } => {
                let consumer: BaseConsumer<super::QuietContext> = super::client_config(cfg)
                    .set("group.id", "binlake-offsets")
                    .set("enable.auto.commit", "false")
                    .set("isolation.level", "read_committed")
                    // Under read_committed the partition can end in a transaction marker,
                    // which is never delivered: the end is known from the EOF event, not
                    // from seeing the record at high - 1.
                    .set("enable.partition.eof", "true")
                    .create_with_context(super::QuietContext)
                    .map_err(Error::kafka("creating a Kafka consumer"))?;
                let timeout = Duration::from_secs(30);
                let (low, high) = consumer
                    .fetch_watermarks(topic, 0, timeout)
                    .map_err(Error::kafka(format!("reading the offsets of {topic}")))?;
                if high <= low {
                    return Ok(None);
                }
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, 0, Offset::Beginning)
                    .map_err(Error::kafka("assigning the offsets topic"))?;
                consumer
                    .assign(&tpl)
                    .map_err(Error::kafka("assigning the offsets topic"))?;
                let mut last: Option<Option<Vec<u8>>> = None;
                let deadline = std::time::Instant::now() + timeout;
                loop {
                    if std::time::Instant::now() > deadline {
                        return Err(Error::Unsupported(format!(
                            "timed out reading the committed position from {topic}"
                        )));
                    }
                    let m = match consumer.poll(Duration::from_millis(200)) {
                        None => continue,
                        Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                        Some(m) => m.map_err(Error::kafka(format!("reading {topic}")))?,
                    };
                    if m.key() == Some(KEY) {
                        last = Some(m.payload().map(<[u8]>::to_vec));
                    }
                    if m.offset() + 1 >= high {
                        break;
                    }
                }
                match last.flatten() {
                    None => Ok(None),
                    Some(v) => decode(&v).map(Some).ok_or_else(|| Error::Corrupt {
                        file: topic.clone(),
                        offset: 0,
                        detail: "the committed position record is not a binlake offsets record; \
                                 delete the topic's record or use another topic_prefix"
                            .into(),
                    }),
                }
            }
        }
    }

    /// Commits `state`. With Kafka, the record goes through `producer` (in the open
    /// transaction when transactional) and is durable once `producer.flush` returns.
    pub async fn commit(&self, state: &SavedState, producer: &mut Producer) -> Result<()> {
        match self {
            Store::File(p) => state.save(p),
            Store::Kafka {
                topic, schema_id, ..
            } => {
                let value = encode(state, *schema_id)?;
                producer
                    .send(&Record {
                        topic,
                        partition: 0,
                        key: KEY,
                        value: Some(&value),
                        pos: b"",
                        gtid: None,
                        commit_ms: 0,
                        written: None,
                    })
                    .await?;
                Ok(())
            }
        }
    }
}

/// `{topic_prefix}.offsets`.
pub fn offsets_topic(cfg: &Config) -> String {
    format!("{}.offsets", cfg.kafka.topic_prefix)
}

/// The offsets record: Confluent header, then the fields of `schemas/offsets.avsc`.
fn encode(state: &SavedState, schema_id: u32) -> Result<Vec<u8>> {
    let json = serde_json::to_string(state).map_err(|e| Error::Unsupported(e.to_string()))?;
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    let last = state.last.as_ref();
    let opt_str = |out: &mut Vec<u8>, s: Option<&str>| match s {
        None => wire::long(out, 0),
        Some(s) => {
            wire::long(out, 1);
            wire::bytes(out, s.as_bytes());
        }
    };
    let opt_long = |out: &mut Vec<u8>, v: Option<i64>| match v {
        None => wire::long(out, 0),
        Some(v) => {
            wire::long(out, 1);
            wire::long(out, v);
        }
    };
    opt_str(&mut out, last.map(|p| &*p.file));
    opt_long(&mut out, last.map(|p| p.offset as i64));
    opt_long(&mut out, last.map(|p| p.row as i64));
    opt_str(&mut out, last.and_then(|p| p.gtid.as_deref()));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    wire::long(&mut out, now);
    wire::bytes(&mut out, json.as_bytes());
    Ok(out)
}

/// The state inside an offsets record; `None` if it is not one.
fn decode(v: &[u8]) -> Option<SavedState> {
    let mut b = v.strip_prefix(&[0u8][..])?.get(4..)?;
    // file, offset, row, gtid: unions with null first; strings are length-prefixed.
    for is_string in [true, false, false, true] {
        match wire::read_long(&mut b)? {
            0 => {}
            1 if is_string => {
                wire::read_bytes(&mut b)?;
            }
            1 => {
                wire::read_long(&mut b)?;
            }
            _ => return None,
        }
    }
    wire::read_long(&mut b)?;
    let json = wire::read_bytes(&mut b)?;
    serde_json::from_slice(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Position;

    #[test]
    fn offsets_record_round_trips_and_reads_with_apache_avro() {
        let state = SavedState {
            last: Some(Position {
                file: "mysql-bin.000007".into(),
                offset: 1234,
                row: 2,
                gtid: Some("0-1-99".into()),
                snapshot: None,
            }),
            started_at: Some(("mysql-bin.000001".into(), 4)),
            snapshot: None,
            fence: None,
        };
        let bytes = encode(&state, 42).unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 42]);
        assert_eq!(decode(&bytes), Some(state.clone()));
        let schema = apache_avro::Schema::parse_str(crate::avro::OFFSETS).unwrap();
        let v = apache_avro::from_avro_datum(&schema, &mut &bytes[5..], None).unwrap();
        let apache_avro::types::Value::Record(fields) = v else {
            panic!("not a record")
        };
        assert_eq!(
            fields[0].1,
            apache_avro::types::Value::Union(
                1,
                Box::new(apache_avro::types::Value::String("mysql-bin.000007".into()))
            )
        );
        assert_eq!(
            fields[2].1,
            apache_avro::types::Value::Union(1, Box::new(apache_avro::types::Value::Int(2)))
        );
    }
}
