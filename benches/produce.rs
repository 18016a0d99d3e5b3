//! Baseline for `binlake run`'s throughput (BENCHMARKS.md, deploy/local/bench-run.sh): a plain
//! rdkafka producer writing the same records binlake wrote (keys, values and the
//! headers, sampled from one of its topics) with the same producer settings, so
//! the ratio of the two rates is binlake's own overhead.
//!
//! Env: BROKERS, SOURCE_TOPIC (a binlake table topic to sample), TARGET_TOPIC (created with
//! PARTITIONS partitions), COUNT (records to produce); TRANSACTIONAL_ID, when set, produces in
//! Kafka transactions committed every 500 ms (what `[kafka] transactional_id` makes `run` do).
//! Prints `baseline_records_per_sec=...`.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("set {name}"))
}

/// Key, value, headers (name, value).
type Sample = (Vec<u8>, Option<Vec<u8>>, Vec<(String, Vec<u8>)>);

fn sample(brokers: &str, topic: &str, max: usize) -> Vec<Sample> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "binlake-bench-sample")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let parts = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .expect("source topic exists");
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < max && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().map(<[u8]>::to_vec),
                headers,
            ));
        }
    }
    assert!(!out.is_empty(), "no records in {topic}");
    out
}

fn main() {
    // `cargo test --all-targets` runs bench targets once too: without a broker, say how to
    // run it and stop.
    if std::env::var_os("BROKERS").is_none() {
        println!("produce baseline: run through deploy/local/bench-run.sh (needs BROKERS)");
        return;
    }
    let brokers = env("BROKERS");
    let count: usize = env("COUNT").parse().expect("COUNT");
    let partitions: i32 = env("PARTITIONS").parse().expect("PARTITIONS");
    let target = env("TARGET_TOPIC");
    let samples = sample(&brokers, &env("SOURCE_TOPIC"), 10_000);
    let bytes: usize = samples
        .iter()
        .map(|s| {
            s.0.len()
                + s.1.as_ref().map_or(0, Vec::len)
                + s.2.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        })
        .sum();
    println!(
        "sampled {} records, {:.0} bytes each on average",
        samples.len(),
        bytes as f64 / samples.len() as f64
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("admin");
    let topic = NewTopic::new(&target, partitions, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact");
    rt.block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .expect("create topic");
    let transactional = std::env::var("TRANSACTIONAL_ID").ok();
    let mut config = ClientConfig::new();
    if let Some(id) = &transactional {
        config.set("transactional.id", id);
    }
    let producer: BaseProducer = config
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.kbytes", "32768")
        .set("queue.buffering.max.messages", "100000")
        .create()
        .expect("producer");
    if transactional.is_some() {
        producer
            .init_transactions(Duration::from_secs(30))
            .expect("init transactions");
        producer.begin_transaction().expect("begin");
    }
    let mut committed = Instant::now();
    let start = Instant::now();
    for i in 0..count {
        if transactional.is_some() && committed.elapsed() >= Duration::from_millis(500) {
            producer
                .commit_transaction(Duration::from_secs(60))
                .expect("commit");
            producer.begin_transaction().expect("begin");
            committed = Instant::now();
        }
        let (key, value, sample_headers) = &samples[i % samples.len()];
        let mut headers = OwnedHeaders::new_with_capacity(sample_headers.len());
        for (k, v) in sample_headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        let mut rec = BaseRecord::to(&target)
            .partition(binlake::kafka::partition::partition_for(key, partitions))
            .key(key.as_slice())
            .headers(headers);
        if let Some(v) = value {
            rec = rec.payload(v.as_slice());
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
    if transactional.is_some() {
        producer
            .commit_transaction(Duration::from_secs(60))
            .expect("commit");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "baseline_records={count} seconds={secs:.3} baseline_records_per_sec={:.0} cpu_seconds={:.2}",
        count as f64 / secs,
        cpu_seconds()
    );
}

/// User + system CPU seconds of this process so far (from /proc/self/stat, 100 ticks/s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
