//! The first seconds of `binlake run` (start-up, registration, the first commit, planning
//! the snapshot, its first chunks) are where a kill used to lose a table for good: a
//! position committed before the snapshot plan made a restart believe there was nothing to
//! snapshot. Here `run` is killed (SIGKILL, or stopped with SIGTERM) at moments drawn
//! uniformly over its first 2.5 s, again and again under a random writer; then every topic
//! must equal its source table, and the committed state must say the snapshot is complete
//! once the source is idle (its bookkeeping must not wait for new binlog events). And a
//! table dropped or renamed while its snapshot runs ends that table's snapshot, not the run.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::cli::binlake;
use support::stack::Stack;
use support::workload::{sigterm, Rng, StopOnDrop};

const SMALL: usize = 40;

fn writer(stack: &Stack, stop: &AtomicBool, seed: u64) {
    let mut rng = Rng(seed);
    let mut next = 1_000_000u64;
    while !stop.load(Ordering::Relaxed) {
        let id = rng.below(50_000);
        let sql = match rng.below(4) {
            0 => {
                next += 1;
                format!("INSERT INTO app.big VALUES ({next}, 0, 'w')")
            }
            1 => format!("UPDATE app.big SET n = n + 1 WHERE id = {id}"),
            2 => format!("DELETE FROM app.big WHERE id = {id}"),
            _ => format!(
                "UPDATE app.s{} SET v = v + 1 WHERE id = {}",
                rng.below(SMALL as u64 / 4),
                rng.below(10)
            ),
        };
        stack.db.sql(&sql);
        std::thread::sleep(Duration::from_millis(15));
    }
}

#[test]
fn run_killed_or_stopped_in_its_first_seconds_never_skips_the_snapshot() {
    let stack = Stack::start(false, "", "[snapshot]\nchunk_size = 2000\n");
    let mut sql = String::from(
        "CREATE DATABASE app;
         CREATE TABLE app.big (id INT PRIMARY KEY, n INT, pad VARCHAR(100));
         INSERT INTO app.big SELECT seq, 0, REPEAT('p', 100) FROM app.seq_0_to_49999;",
    );
    for i in 0..SMALL {
        sql += &format!(
            "CREATE TABLE app.s{i} (id INT PRIMARY KEY, v INT);
             INSERT INTO app.s{i} SELECT seq, seq FROM app.seq_0_to_9;"
        );
    }
    stack.db.sql(&sql);
    let mut tables = vec!["app.big".to_string()];
    tables.extend((0..SMALL).map(|i| format!("app.s{i}")));
    let tables: Vec<&str> = tables.iter().map(String::as_str).collect();

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let stop = AtomicBool::new(false);
    let kills = 10;
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| writer(&stack, &stop, seed ^ 0x5eed));
        for n in 0..kills {
            let mut run = stack.spawn_run(n);
            let wait = Duration::from_millis(rng.below(2_500));
            std::thread::sleep(wait);
            assert!(
                run.try_wait().ok().flatten().is_none(),
                "run {n} exited by itself:\n{}",
                stack.run_log(n)
            );
            let how = if rng.below(3) == 0 {
                let code = sigterm(&mut run);
                assert_eq!(code, Some(0), "run {n}:\n{}", stack.run_log(n));
                "stopped (SIGTERM)"
            } else {
                let _ = run.kill();
                let _ = run.wait();
                "killed (SIGKILL)"
            };
            let log = stack.run_log(n);
            let phase = if !log.contains("run starting") {
                "before it loaded its state"
            } else if !log.contains("snapshot planned") {
                "before the snapshot was planned"
            } else if !log.contains("snapshot complete") {
                "in the snapshot"
            } else {
                "while streaming"
            };
            println!("run {n} {how} {wait:?} after its start, {phase}");
        }
        stop.store(true, Ordering::Relaxed);
    });

    let mut run = stack.spawn_run(kills);
    let mut stats = stack.wait_converged(&tables, Duration::from_secs(300));
    if let Some(s) = stats.as_object_mut() {
        s.remove("applied");
    }
    // (Keys read twice are expected: a killed snapshot's rows after its last commit are
    // read again, at new positions. Only transactions avoid that: kafka_transactions.rs.)
    println!("{stats}");
    assert_eq!(stats["duplicate_positions"], 0, "{stats}");

    // The source is idle now: the committed state must still come to say "complete".
    let config = stack.config.to_str().expect("utf-8 path").to_string();
    let start = Instant::now();
    loop {
        let r = binlake(
            &["status", "--json", "--config", &config],
            Duration::from_secs(60),
        );
        assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
        let s: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
        let done = s["snapshot"]
            .as_array()
            .is_some_and(|t| t.len() == tables.len() && t.iter().all(|t| t["done"] == true));
        if s["snapshot_complete"] == true && done {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "an idle source: the committed snapshot state is still not complete after 60 s: {s}\n{}",
            stack.run_log(kills)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(kills));
}

fn status_json(stack: &Stack) -> serde_json::Value {
    let config = stack.config.to_str().expect("utf-8 path").to_string();
    let r = binlake(
        &["status", "--json", "--config", &config],
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).expect("JSON")
}

#[test]
fn a_table_dropped_or_renamed_during_its_snapshot_ends_its_snapshot_not_the_run() {
    let stack = Stack::start(
        false,
        "",
        "[snapshot]\nchunk_size = 200\nparallelism = 1\nmax_in_flight_chunks = 1\n",
    );
    stack.db.sql(
        "CREATE DATABASE app;
         CREATE TABLE app.a (id INT PRIMARY KEY, v VARCHAR(100));
         INSERT INTO app.a SELECT seq, REPEAT('a', 100) FROM app.seq_0_to_59999;
         CREATE TABLE app.b (id INT PRIMARY KEY, v VARCHAR(100));
         INSERT INTO app.b SELECT seq, REPEAT('b', 100) FROM app.seq_0_to_59999;
         CREATE TABLE app.c (id INT PRIMARY KEY, v INT);
         INSERT INTO app.c SELECT seq, seq FROM app.seq_0_to_99;",
    );
    let mut run = stack.spawn_run(0);
    let start = Instant::now();
    while !stack.run_log(0).contains("snapshot planned") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            stack.run_log(0)
        );
        assert!(
            run.try_wait().ok().flatten().is_none(),
            "{}",
            stack.run_log(0)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stack
        .db
        .sql("DROP TABLE app.a; RENAME TABLE app.b TO app.b2; UPDATE app.c SET v = v + 1;");
    // The snapshot of the dropped and the renamed table ends; the others complete; run goes on.
    let start = Instant::now();
    loop {
        assert!(
            run.try_wait().ok().flatten().is_none(),
            "run stopped on a table dropped during its snapshot:\n{}",
            stack.run_log(0)
        );
        let s = status_json(&stack);
        let done = s["snapshot"]
            .as_array()
            .is_some_and(|t| t.iter().all(|t| t["done"] == true));
        if s["snapshot_complete"] == true && done {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the snapshot did not complete: {s}\n{}",
            stack.run_log(0)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    stack.wait_converged(&["app.c"], Duration::from_secs(120));
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(0));

    // A restart plans the renamed table under its new name, and snapshots it.
    let mut run = stack.spawn_run(1);
    stack.wait_converged(&["app.b2", "app.c"], Duration::from_secs(180));
    assert!(
        stack.run_log(1).contains("table newly captured"),
        "{}",
        stack.run_log(1)
    );
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(1));
}

/// Re-sends the first record of every partition of `topic`, headers and all, as a `run`
/// killed early in its replay leaves them: the ends of the partitions then show positions
/// below what an earlier run wrote.
fn replay_first_records(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "fence-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for p in 0..partitions {
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("partition");
        consumer.assign(&tpl).expect("assign");
        let m = loop {
            match consumer.poll(Duration::from_secs(10)) {
                Some(Ok(m)) if m.partition() == p => break m.detach(),
                Some(_) => {}
                None => panic!("no record in {topic}[{p}]"),
            }
        };
        let mut headers = OwnedHeaders::new();
        if let Some(h) = m.headers() {
            for h in h.iter() {
                headers = headers.insert(rdkafka::message::Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let key = m.key().expect("keyed").to_vec();
        let mut record = BaseRecord::to(topic)
            .partition(p)
            .key(&key)
            .headers(headers);
        let value = m.payload().map(<[u8]>::to_vec);
        if let Some(v) = &value {
            record = record.payload(v);
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Issue 15, item 3: the resumption fence never moves backwards. At an idle source, run A's
/// snapshot rows sit at one binlog offset X with indexes s0…s299; a later snapshot at X must
/// take indexes after them, or the readers' position filter drops its rows. Run A stops; its
/// committed state is then set back to a snapshot due (a kill before the commits after
/// planning). Run B reads the fence (X, s299) from the topics and is killed as soon as it
/// committed it (its snapshot held back by a table lock); a replay of B killed early is
/// simulated by re-sending each partition's first record, so the topics' ends now show
/// (X, s<small>). Rows changed outside the binlog reach the readers only through run C's
/// snapshot, which must take the committed fence; the topics alone would give a lower one.
#[test]
fn the_fence_a_killed_replay_leaves_below_is_not_taken() {
    let state_file = support::mariadb::unique_dir().with_extension("offsets.json");
    let stack = Stack::start(
        false,
        &format!(
            "offsets = \"file\"\noffsets_file = \"{}\"\n",
            state_file.display()
        ),
        "",
    );
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t SELECT seq, seq FROM app.seq_1_to_300;",
    );
    let mut a = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(60));
    assert_eq!(sigterm(&mut a), Some(0), "{}", stack.run_log(0));

    let read_state = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&state_file).expect("state")).expect("json")
    };
    let mut state = read_state();
    assert!(state["fence"].is_null(), "{state}");
    state["snapshot"] = serde_json::json!({"ranges": [], "complete": false});
    std::fs::write(&state_file, state.to_string()).expect("state");

    // Run B commits the fence, then is killed before its snapshot can read the table.
    let mut lock = std::process::Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!(
            "--socket={}",
            stack.db.dir.join("mysqld.sock").display()
        ))
        .args([
            "-uroot",
            "-proot",
            "-e",
            "LOCK TABLES app.t WRITE; DO SLEEP(120)",
        ])
        .spawn()
        .expect("mariadb");
    std::thread::sleep(Duration::from_millis(500));
    let mut b = stack.spawn_run(1);
    let start = Instant::now();
    while !stack.run_log(1).contains("fence committed") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            stack.run_log(1)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = b.kill();
    let _ = b.wait();
    let _ = lock.kill();
    let _ = lock.wait();
    assert!(!read_state()["fence"].is_null(), "{}", read_state());
    replay_first_records(&stack.broker.bootstrap(), "cdc.app.t", 3);

    // Changed outside the binlog: only a snapshot brings these values.
    stack
        .db
        .sql("SET sql_log_bin = 0; UPDATE app.t SET v = v + 1000 WHERE id <= 100;");
    let mut c = stack.spawn_run(2);
    let stats = stack.wait_converged(&["app.t"], Duration::from_secs(90));
    assert!(
        stats["dropped"].as_u64().unwrap_or(0) > 0,
        "the replayed records were not dropped: {stats}"
    );
    assert_eq!(sigterm(&mut c), Some(0), "{}", stack.run_log(2));
}
