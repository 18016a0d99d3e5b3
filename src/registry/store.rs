//! The Kafka side of the registry: creates the `_schemas` topic (one partition, compacted),
//! keeps consuming it into the [`State`], and performs writes against it.
//!
//! Invariant: the state changes only in the consumer task, by applying records in offset
//! order. A write (serialized within the process by a mutex) first catches up to the
//! topic's high watermark, plans from that state, produces its record (acks=all,
//! idempotent), then waits until the consumer applied that record's offset, and reports
//! success only if the state then holds its record. A record that lost a conflict is retried
//! with fresh numbers (bounded), and the winner's record is written again after it so that
//! compaction, which keeps the last record per key, keeps the winner.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::{watch, Mutex};

use super::compat::{Level, Parsed};
use super::error::RegistryError;
use super::records::{config_key, schema_key, ConfigValue, SchemaValue};
use super::state::{Outcome, Plan, State, VersionSpec};
use crate::config::Config;

/// How often a write whose record lost a conflict is retried.
const MAX_ATTEMPTS: u32 = 20;
/// How long a write or a catch-up may wait for the broker.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The schemas topic, its consumer and producer, and the state read from it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    topic: String,
    state: RwLock<State>,
    /// The offset after the last applied record.
    applied: watch::Receiver<i64>,
    consumer: Arc<StreamConsumer>,
    producer: FutureProducer,
    writes: Mutex<()>,
}

fn client_config(cfg: &Config) -> ClientConfig {
    crate::kafka::client_config(&cfg.kafka)
}

fn store_err(context: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> RegistryError + '_ {
    move |e| RegistryError::Store(format!("{context}: {e}"))
}

impl Store {
    /// Creates the topic if missing, starts consuming it and returns once the state holds
    /// everything up to the high watermark at start.
    pub async fn open(cfg: &Config) -> Result<Store, RegistryError> {
        let topic = cfg.registry.topic.clone();
        // A broker refusing the credentials or the TLS handshake is one clear error now.
        crate::kafka::access::check_async(&cfg.kafka, crate::kafka::access::WAIT)
            .await
            .map_err(|e| RegistryError::setup("connecting to Kafka")(e.to_string()))?;
        ensure_topic(cfg, &topic).await?;
        let consumer: StreamConsumer = client_config(cfg)
            .set("group.id", "binlake-registry")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50")
            .create()
            .map_err(|e| RegistryError::setup("creating the schemas consumer")(e.to_string()))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .map_err(|e| RegistryError::setup("assigning the schemas partition")(e.to_string()))?;
        consumer
            .assign(&tpl)
            .map_err(|e| RegistryError::setup("assigning the schemas partition")(e.to_string()))?;
        let producer: FutureProducer = client_config(cfg)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", TIMEOUT.as_millis().to_string())
            .create()
            .map_err(|e| RegistryError::setup("creating the schemas producer")(e.to_string()))?;
        let (tx, rx) = watch::channel(0i64);
        let store = Store {
            inner: Arc::new(Inner {
                topic,
                state: RwLock::new(State::default()),
                applied: rx,
                consumer: Arc::new(consumer),
                producer,
                writes: Mutex::new(()),
            }),
        };
        let reader = store.clone();
        tokio::spawn(async move { reader.consume(tx).await });
        let started = std::time::Instant::now();
        store.catch_up().await?;
        store.repair().await?;
        let repairer = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if let Err(e) = repairer.repair().await {
                    tracing::warn!(error = %e, "repairing the schemas topic");
                }
            }
        });
        tracing::info!(
            topic = %store.inner.topic,
            subjects = store.read(|s| s.subjects(true).len()),
            ms = started.elapsed().as_millis() as u64,
            "schemas read"
        );
        Ok(store)
    }

    /// Runs `f` on the current state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let guard = match self.inner.state.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&guard)
    }

    async fn consume(self, applied: watch::Sender<i64>) {
        loop {
            match self.inner.consumer.recv().await {
                Ok(m) => {
                    let offset = m.offset();
                    let outcome = {
                        let mut st = match self.inner.state.write() {
                            Ok(g) => g,
                            Err(poisoned) => poisoned.into_inner(),
                        };
                        st.apply(m.key().unwrap_or_default(), m.payload())
                    };
                    if let Outcome::Ignored(why) = outcome {
                        tracing::debug!(offset, %why, "schemas record ignored");
                    }
                    applied.send_replace(offset + 1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = %self.inner.topic, "reading the schemas topic");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Waits until every record below the current high watermark is applied.
    /// A broker that is restarting answers for a moment without the partition's leader: that
    /// is retried until [`TIMEOUT`], not turned into an error for the client.
    pub async fn catch_up(&self) -> Result<(), RegistryError> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let high = loop {
            let consumer = self.inner.consumer.clone();
            let topic = self.inner.topic.clone();
            let read = tokio::task::spawn_blocking(move || {
                consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10))
            })
            .await
            .map_err(|e| RegistryError::Store(format!("watermark task: {e}")))?;
            match read {
                Ok((_, high)) => break high,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "reading the schemas topic's high watermark; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(store_err("reading the schemas topic's high watermark")(e)),
            }
        };
        self.wait_applied(high).await
    }

    async fn wait_applied(&self, offset: i64) -> Result<(), RegistryError> {
        let mut rx = self.inner.applied.clone();
        let waited = tokio::time::timeout(TIMEOUT, rx.wait_for(|a| *a >= offset))
            .await
            .map(|r| r.map(|_| ()));
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(RegistryError::Store("the schemas reader stopped".into())),
            Err(_) => Err(RegistryError::Timeout(format!(
                "reading the schemas topic up to offset {offset}"
            ))),
        }
    }

    /// Produces one record to partition 0 and returns its offset.
    async fn produce(&self, key: &[u8], value: Option<&[u8]>) -> Result<i64, RegistryError> {
        let mut rec = FutureRecord::<[u8], [u8]>::to(&self.inner.topic)
            .partition(0)
            .key(key);
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        let d = self
            .inner
            .producer
            .send(rec, TIMEOUT)
            .await
            .map_err(|(e, _)| RegistryError::Store(format!("writing to the schemas topic: {e}")))?;
        Ok(d.offset)
    }

    /// Writes what compaction needs to keep the records in force (see [`State::repairs`]):
    /// after a record that lost a conflict, the winner again, or a tombstone for a key no
    /// record holds. Only once caught up, so that a repair already in the log is seen first.
    async fn repair(&self) -> Result<(), RegistryError> {
        if self.read(|s| s.repairs().is_empty()) {
            return Ok(());
        }
        let _serial = self.inner.writes.lock().await;
        self.catch_up().await?;
        for (subject, version, record) in self.read(State::repairs) {
            let key = schema_key(&subject, version);
            let value = record.as_ref().map(SchemaValue::to_bytes);
            let offset = self.produce(&key, value.as_deref()).await?;
            tracing::info!(
                %subject,
                version,
                offset,
                winner = record.as_ref().map(|r| r.id),
                "wrote the record in force again after one that lost a conflict, so that compaction keeps it"
            );
        }
        Ok(())
    }

    /// Registers a schema under a subject; returns its id (and version).
    pub async fn register(
        &self,
        subject: &str,
        text: &str,
        parsed: &Parsed,
    ) -> Result<(u32, u32), RegistryError> {
        let _serial = self.inner.writes.lock().await;
        for attempt in 1..=MAX_ATTEMPTS {
            self.catch_up().await?;
            let record = match self.read(|s| s.plan_register(subject, text, parsed))? {
                Plan::Existing { id, version } => return Ok((id, version)),
                Plan::New(v) => v,
            };
            let key = schema_key(&record.subject, record.version);
            let offset = self.produce(&key, Some(&record.to_bytes())).await?;
            self.wait_applied(offset + 1).await?;
            if self.read(|s| s.holds(&record)) {
                tracing::info!(
                    subject,
                    version = record.version,
                    id = record.id,
                    "schema registered"
                );
                return Ok((record.id, record.version));
            }
            // Lost to an earlier record. If that one has our key, write it again after ours,
            // so that compaction (which keeps the last record of a key) keeps the winner; as
            // it is now (caught up: a soft delete of it since then must not be undone).
            self.catch_up().await?;
            if let Some(winner) = self.read(|s| s.record(&record.subject, record.version)) {
                self.produce(&key, Some(&winner.to_bytes())).await?;
            }
            tracing::info!(
                subject,
                version = record.version,
                id = record.id,
                attempt,
                "another registry claimed this version or id first; retrying"
            );
            let jitter = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() % 20);
            tokio::time::sleep(Duration::from_millis(u64::from(jitter))).await;
        }
        Err(RegistryError::Store(format!(
            "could not register under '{subject}': {MAX_ATTEMPTS} attempts lost to concurrent registrations"
        )))
    }

    /// Deletes a subject (soft, or permanent after a soft delete); returns its versions.
    pub async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        let _serial = self.inner.writes.lock().await;
        self.catch_up().await?;
        let records = self.read(|s| s.plan_delete_subject(subject, permanent))?;
        let mut last = None;
        for r in &records {
            let value = (!permanent).then(|| r.to_bytes());
            last = Some(
                self.produce(&schema_key(&r.subject, r.version), value.as_deref())
                    .await?,
            );
        }
        if permanent {
            // Confluent drops the subject's own compatibility level with the subject.
            if self.read(|s| s.subject_level(subject).is_some()) {
                last = Some(self.produce(&config_key(Some(subject)), None).await?);
            }
        }
        if let Some(o) = last {
            self.wait_applied(o + 1).await?;
        }
        tracing::info!(
            subject,
            permanent,
            versions = records.len(),
            "subject deleted"
        );
        Ok(records.iter().map(|r| r.version).collect())
    }

    /// Deletes one version (soft, or permanent after a soft delete); returns its number.
    pub async fn delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<u32, RegistryError> {
        let _serial = self.inner.writes.lock().await;
        self.catch_up().await?;
        let r: SchemaValue = self.read(|s| s.plan_delete_version(subject, spec, permanent))?;
        let value = (!permanent).then(|| r.to_bytes());
        let o = self
            .produce(&schema_key(&r.subject, r.version), value.as_deref())
            .await?;
        self.wait_applied(o + 1).await?;
        tracing::info!(subject, version = r.version, permanent, "version deleted");
        Ok(r.version)
    }

    /// Sets (or with `None` removes) the global or a subject's compatibility level.
    pub async fn set_level(
        &self,
        subject: Option<&str>,
        level: Option<Level>,
    ) -> Result<(), RegistryError> {
        let _serial = self.inner.writes.lock().await;
        let value = level.map(|l| {
            serde_json::to_vec(&ConfigValue {
                compatibility_level: Some(l.name().to_string()),
            })
            .unwrap_or_default()
        });
        let o = self.produce(&config_key(subject), value.as_deref()).await?;
        self.wait_applied(o + 1).await?;
        Ok(())
    }
}

/// Creates the schemas topic (1 partition, compacted) unless it exists, then checks it has
/// exactly one partition: ids are agreed on by the order of one log.
async fn ensure_topic(cfg: &Config, topic: &str) -> Result<(), RegistryError> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg)
        .create()
        .map_err(|e| RegistryError::setup("creating the Kafka admin client")(e.to_string()))?;
    let new = NewTopic::new(
        topic,
        1,
        TopicReplication::Fixed(cfg.kafka.replication_factor),
    )
    .set("cleanup.policy", "compact");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|e| RegistryError::setup(format!("creating topic {topic}"))(e.to_string()))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, "created the schemas topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(RegistryError::setup(format!("creating topic {t}"))(
                    code.to_string(),
                ))
            }
        }
    }
    // A topic just created can be absent from a broker's metadata for a moment (Kafka
    // propagates it from the controller): wait for it, up to TIMEOUT.
    let admin = Arc::new(admin);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let partitions = loop {
        let (a, t) = (admin.clone(), topic.to_string());
        let md = tokio::task::spawn_blocking(move || {
            a.inner().fetch_metadata(Some(&t), Duration::from_secs(10))
        })
        .await
        .map_err(|e| RegistryError::setup("metadata task")(e.to_string()))?
        .map_err(|e| RegistryError::setup(format!("reading metadata of {topic}"))(e.to_string()))?;
        let partitions = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        if partitions > 0 || tokio::time::Instant::now() >= deadline {
            break partitions;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if partitions != 1 {
        return Err(RegistryError::Setup {
            context: format!("topic {topic}"),
            cause: format!(
                "has {partitions} partitions; the schemas topic must have exactly one \
                 (delete it, or set [registry] topic to another name)"
            ),
        });
    }
    Ok(())
}
