//! `[kafka] transactional_id`: records and the position commit in one Kafka transaction.
//! Nisshi has no transactions, so this runs against librdkafka's mock cluster (real Kafka
//! protocol over TCP, in this test process), with real MariaDB and `binlake registry`.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::broker::{free_port, stop, Broker};
use support::mariadb::MariaDb;

/// Every record of `topic` a read_committed consumer sees: (key, value, binlake.pos).
type Seen = Vec<(Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>)>;

fn read_committed(bootstrap: &str, topic: &str, partitions: i32) -> Seen {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "txn-test")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut eof = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while eof < partitions && Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().map(<[u8]>::to_vec),
                m.headers()
                    .and_then(|h| h.iter().find(|h| h.key == "binlake.pos"))
                    .and_then(|h| h.value.map(<[u8]>::to_vec)),
            )),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eof += 1,
            _ => {}
        }
    }
    out
}

#[test]
fn transactional_run_commits_records_and_position_together() {
    let mock = MockCluster::new(1).expect("mock cluster");
    // The mock's CreateTopics admin call does not answer: create the topics here.
    mock.create_topic("cdc.offsets", 1, 1).expect("topic");
    mock.create_topic("cdc.app.t", 2, 1).expect("topic");
    let bootstrap = mock.bootstrap_servers();

    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO app.t VALUES (1, 'one'), (2, 'two'), (3, 'three');",
    );
    let registry_port = free_port();
    // The registry keeps its schemas on a real broker; only `run` talks to the mock.
    let broker = Broker::start();
    let registry_config = db.dir.join("registry.toml");
    std::fs::write(
        &registry_config,
        format!(
            "[kafka]\nbrokers = \"{}\"\n[registry]\nurl = \"http://127.0.0.1:{registry_port}\"\n",
            broker.bootstrap()
        ),
    )
    .expect("config");
    let config = db.dir.join("txn.toml");
    std::fs::write(
        &config,
        format!(
            "[mysql]\nport = {}\npassword = \"binlake\"\nserver_id = 4244\n\
             [kafka]\nbrokers = \"{bootstrap}\"\ntopic_prefix = \"cdc\"\ntransactional_id = \"binlake-test\"\n\
             allow_non_compacted = true\n\
             [registry]\nurl = \"http://127.0.0.1:{registry_port}\"\n",
            db.port
        ),
    )
    .expect("config");
    let spawn = |args: &[&str], config: &std::path::Path, log: &str| {
        let log = std::fs::File::create(db.dir.join(log)).expect("log");
        Command::new(env!("CARGO_BIN_EXE_binlake"))
            .args(args)
            .arg("--config")
            .arg(config)
            .env("BINLAKE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn binlake")
    };
    let mut registry = spawn(&["registry"], &registry_config, "registry.log");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", registry_port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "binlake registry did not start: {}",
            std::fs::read_to_string(db.dir.join("registry.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut run = spawn(&["run"], &config, "run.log");
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let seen = read_committed(&bootstrap, "cdc.app.t", 2);
            if seen.len() >= n || Instant::now() > deadline {
                break seen;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    assert_eq!(wait_for(3).len(), 3, "the snapshot's rows");
    db.sql("INSERT INTO app.t VALUES (4, 'four'); DELETE FROM app.t WHERE id = 1;");
    // The snapshot's 3 rows, the insert, and the delete record with its tombstone.
    let seen = wait_for(6);
    let log = std::fs::read_to_string(db.dir.join("run.log")).unwrap_or_default();
    assert_eq!(seen.len(), 6, "{seen:?}\n{log}");
    assert_eq!(
        seen.iter().filter(|r| r.1.is_none()).count(),
        1,
        "one tombstone"
    );
    assert!(
        seen.iter().all(|r| r.2.is_some()),
        "every record has binlake.pos"
    );
    // The position was committed inside the same transactions.
    let offsets = read_committed(&bootstrap, "cdc.offsets", 1);
    assert!(!offsets.is_empty(), "a committed position record:\n{log}");
    assert!(offsets.iter().all(|r| r.0 == b"position"));

    stop(&mut run, Duration::from_secs(30));
    let log = std::fs::read_to_string(db.dir.join("run.log")).unwrap_or_default();
    assert!(log.contains("flushed and committed"), "{log}");
    stop(&mut registry, Duration::from_secs(5));
}
