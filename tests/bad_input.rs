//! Bad input to `binlake run` that only a live pipeline shows: each gets one clear error
//! naming the problem and the fix, and nothing is lost: the committed position stays before
//! the change that failed, so the run that follows the fix writes it.

mod support;

use std::process::Command;
use std::time::Duration;

use support::stack::Stack;

/// Waits for `child` to exit; panics with `log()` after `limit`.
fn exit_code(
    child: &mut std::process::Child,
    limit: Duration,
    log: impl Fn() -> String,
) -> Option<i32> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(s)) = child.try_wait() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    panic!("binlake did not stop within {limit:?}:\n{}", log());
}

/// Sets `max.message.bytes` of `topic` with an independent client (confluent-kafka's admin).
fn set_topic_max_bytes(bootstrap: &str, topic: &str, bytes: u64) {
    let script = format!(
        "from confluent_kafka.admin import AdminClient, ConfigResource, ConfigEntry, \
         AlterConfigOpType, ResourceType\n\
         a = AdminClient({{'bootstrap.servers': '{bootstrap}'}})\n\
         r = ConfigResource(ResourceType.TOPIC, '{topic}', incremental_configs=[ConfigEntry(\
         'max.message.bytes', '{bytes}', incremental_operation=AlterConfigOpType.SET)])\n\
         for f in a.incremental_alter_configs([r]).values(): f.result(30)\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "altering {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_record_larger_than_kafka_accepts_stops_run_before_it_and_is_written_after_the_fix() {
    let stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, body MEDIUMTEXT);
         INSERT INTO app.t VALUES (1, 'a'), (2, 'b');",
    );
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));

    // 2.5 MB that do not compress (the broker checks the compressed batch): more than
    // librdkafka's default message.max.bytes (1000000) and this broker's default (1 MiB).
    stack.db.sql(
        "SET SESSION group_concat_max_len = 8000000;
         INSERT INTO app.t SELECT 3, GROUP_CONCAT(MD5(RAND()) SEPARATOR '') FROM app.seq_1_to_80000;
         INSERT INTO app.t VALUES (4, 'd');",
    );
    let code = exit_code(&mut run, Duration::from_secs(120), || stack.run_log(0));
    let log = stack.run_log(0);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("app.t at mysql-bin.000001:")
            && log.contains("is larger than Kafka accepts (the producer's message.max.bytes")
            && log.contains("nothing from this change on was committed"),
        "{log}"
    );
    // Rows 1 and 2 are there, 3 and 4 not yet.
    let topics = stack.read_topics();
    let ids: Vec<&str> = topics["tables"]["app.t"]
        .as_array()
        .expect("app.t rows")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["1", "2"], "{topics}");

    // The producer may now send it, but the topic (about 1 MB on this broker) refuses it.
    let mut cfg = std::fs::read_to_string(&stack.config).expect("config");
    cfg.push_str("\n[kafka.properties]\n\"message.max.bytes\" = \"8000000\"\n");
    std::fs::write(&stack.config, cfg).expect("config");
    let mut run = stack.spawn_run(1);
    let code = exit_code(&mut run, Duration::from_secs(180), || stack.run_log(1));
    let log = stack.run_log(1);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("the broker refused a record of")
            && log.contains("for cdc.app.t")
            && log.contains("raise max.message.bytes of the topic"),
        "{log}"
    );

    // The fix: the topic takes 8 MB. The next run writes rows 3 and 4; nothing was lost.
    set_topic_max_bytes(&stack.broker.bootstrap(), "cdc.app.t", 8_000_000);
    let mut run = stack.spawn_run(2);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    support::workload::sigterm(&mut run);
}

/// The broker refuses one record while later records of the same partition are already
/// queued behind it: none of them may be written (a record written after the refused one
/// would carry a higher `binlake.pos`, and the refused one, written after the fix, would
/// then be dropped by every consumer's position filter: a permanent gap).
#[test]
fn a_record_the_broker_refuses_leaves_no_later_record_of_its_partition_written() {
    let stack = Stack::start(
        false,
        "",
        "[kafka.properties]\n\"message.max.bytes\" = \"8000000\"\n",
    );
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, body MEDIUMTEXT);
         INSERT INTO app.t VALUES (1, 'a'), (2, 'b');",
    );
    // One partition, so that every later record is queued behind the refused one.
    support::broker::create_topic(
        &stack.broker.bootstrap(),
        "cdc.app.t",
        1,
        &[("cleanup.policy", "compact")],
    );
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    let before = records_in(&stack.broker.bootstrap(), "cdc.app.t");

    // 2.5 MB that do not compress (more than the topic's 1 MiB), then small rows right
    // behind it, each its own transaction.
    let mut sql = String::from(
        "SET SESSION group_concat_max_len = 8000000;
         INSERT INTO app.t SELECT 3, GROUP_CONCAT(MD5(RAND()) SEPARATOR '') FROM app.seq_1_to_80000;",
    );
    for id in 4..40 {
        sql += &format!("INSERT INTO app.t VALUES ({id}, 'small');");
    }
    stack.db.sql(&sql);
    let code = exit_code(&mut run, Duration::from_secs(180), || stack.run_log(0));
    let log = stack.run_log(0);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("the broker refused a record of"), "{log}");
    let after = records_in(&stack.broker.bootstrap(), "cdc.app.t");
    assert_eq!(
        after, before,
        "records after the refused one were written to its partition:\n{log}"
    );

    // The fix: the topic takes 8 MB. The next run writes 3 and everything after it, and a
    // consumer with the position filter keeps all of it.
    set_topic_max_bytes(&stack.broker.bootstrap(), "cdc.app.t", 8_000_000);
    let mut run = stack.spawn_run(1);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    support::workload::sigterm(&mut run);
}

/// A broker that stops answering for longer than `message_timeout_secs` while changes keep
/// coming: `run` stops with one clear error and writes nothing after the records it waited
/// for (librdkafka does not time records out and re-sequence the ones behind them), and the
/// restarted run loses nothing a consumer with the position filter keeps.
#[test]
fn a_broker_that_stops_answering_stops_run_without_a_gap() {
    let stack = Stack::start(false, "", "");
    let text = std::fs::read_to_string(&stack.config).expect("config");
    std::fs::write(
        &stack.config,
        text.replace("message_timeout_secs = 120", "message_timeout_secs = 5"),
    )
    .expect("config");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t SELECT seq, 0 FROM app.seq_0_to_999;",
    );
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    let broker = stack.broker.pid(0).to_string();
    let signal = |s: &str| {
        let _ = Command::new("kill").args([s, &broker]).status();
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let _stop = support::workload::StopOnDrop(&stop);
        scope.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                stack.db.sql(&format!(
                    "UPDATE app.t SET v = {n} WHERE id = {}; INSERT INTO app.t VALUES ({}, {n});",
                    n % 1000,
                    1000 + n
                ));
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        std::thread::sleep(Duration::from_secs(1));
        signal("-STOP");
        std::thread::sleep(Duration::from_secs(12));
        signal("-CONT");
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let code = exit_code(&mut run, Duration::from_secs(120), || stack.run_log(0));
    let log = stack.run_log(0);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("Kafka acknowledged none of the")
            && log.contains("the position was not committed past it"),
        "{log}"
    );
    let mut run = stack.spawn_run(1);
    let stats = stack.wait_converged(&["app.t"], Duration::from_secs(180));
    assert_eq!(stats["duplicate_positions"], 0);
    support::workload::sigterm(&mut run);
}

/// The number of records in `topic` (the sum of its partitions' high watermarks).
fn records_in(bootstrap: &str, topic: &str) -> u64 {
    let script = format!(
        "from confluent_kafka import Consumer, TopicPartition\n\
         c = Consumer({{'bootstrap.servers': '{bootstrap}', 'group.id': 'count'}})\n\
         md = c.list_topics('{topic}', timeout=30).topics['{topic}']\n\
         print(sum(c.get_watermark_offsets(TopicPartition('{topic}', p), timeout=30)[1] \
         for p in md.partitions))\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "counting {topic}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn rss_mb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

/// A broker that takes records far slower than MariaDB writes them (stopped 99% of the time)
/// slows `run` down instead of filling its memory: the producer's queue (32 MB) is the
/// bound, and reading the binlog waits for it.
#[test]
fn a_slow_broker_is_backpressure_not_buffering() {
    let stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, body VARCHAR(1100));
         INSERT INTO app.t VALUES (0, 'x');",
    );
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    let broker = stack.broker.pid(0);
    let signal = |s: &str| {
        let _ = Command::new("kill").args([s, &broker.to_string()]).status();
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let peak = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                signal("-STOP");
                std::thread::sleep(Duration::from_millis(1980));
                signal("-CONT");
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let watch = scope.spawn(|| {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_mb(run.id()));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        // 200,000 rows of about 1 KB (200 MB), in transactions of 10,000 rows.
        for i in 0..20 {
            stack.db.sql(&format!(
                "INSERT INTO app.t SELECT {i} * 10000 + seq, \
                 CONCAT(REPEAT(MD5(seq), 32), MD5(RAND())) FROM app.seq_1_to_10000"
            ));
        }
        // Let the backlog stand against the slow broker for a while.
        std::thread::sleep(Duration::from_secs(10));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        watch.join().expect("watch")
    });
    // The broker was the bottleneck: most rows were still waiting in the binlog. `run` is
    // held while the broker gets its speed back and the topic is counted, so the count is
    // what the slow broker had taken, not what `run` flushed during the count.
    let hold = |s: &str| {
        let _ = Command::new("kill")
            .args([s, &run.id().to_string()])
            .status();
    };
    hold("-STOP");
    signal("-CONT");
    let written = records_in(&stack.broker.bootstrap(), "cdc.app.t");
    hold("-CONT");
    println!("records in the topic when the broker got its speed back: {written} of 200001");
    assert!(
        written < 150_000,
        "the broker was not slow: {written} records"
    );
    assert!(
        run.try_wait().ok().flatten().is_none(),
        "run gave up against a slow broker: {}",
        stack.run_log(0)
    );
    stack.wait_converged(&["app.t"], Duration::from_secs(300));
    println!("peak RSS of run against a slow broker: {peak} MB");
    assert!(
        peak < 200,
        "peak RSS {peak} MB: run buffered instead of waiting for the broker"
    );
    assert_eq!(support::workload::sigterm(&mut run), Some(0));
}

/// MariaDB killed while writing a transaction leaves a partial event at the end of that
/// binlog file (the chaos harness found this), and the server refuses to read past it
/// (error 1236). Recovery did not commit that transaction and the server writes on in a new
/// file: `run` continues there, with a warning, instead of stopping for good.
#[test]
fn a_binlog_file_cut_by_a_crash_is_left_for_the_next_one() {
    let stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 1);",
    );
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    assert_eq!(support::workload::sigterm(&mut run), Some(0));

    stack
        .db
        .sql("INSERT INTO app.t VALUES (2, 2); INSERT INTO app.t VALUES (3, 3);");
    let events = stack
        .db
        .query_rows("SHOW BINLOG EVENTS IN 'mysql-bin.000001'");
    let cut: u64 = events
        .iter()
        .rev()
        .find(|e| e[2].starts_with("Write_rows"))
        .and_then(|e| e[1].parse().ok())
        .expect("the last Write_rows event");
    // The crash: kill -9, and the file ends 10 bytes into row 3's event.
    let pid = std::fs::read_to_string(stack.db.dir.join("mysqld.pid")).expect("pid");
    let pid = pid.trim();
    let _ = Command::new("kill").args(["-9", pid]).status();
    while Command::new("kill")
        .args(["-0", pid])
        .status()
        .is_ok_and(|s| s.success())
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let file = stack.db.dir.join("data/mysql-bin.000001");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("binlog");
    f.set_len(cut + 10).expect("truncate");
    drop(f);
    stack.db.start_again();
    // Row 3 is in InnoDB (it was committed) but not in any binlog; remove it the normal way.
    stack
        .db
        .sql("DELETE FROM app.t WHERE id = 3; INSERT INTO app.t VALUES (4, 4);");

    let mut run = stack.spawn_run(1);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    let log = stack.run_log(1);
    assert!(
        log.contains("the binlog file ends in a partial event")
            && log.contains("next=mysql-bin.000002")
            && log.contains("truncated in the middle of event"),
        "{log}"
    );
    assert_eq!(support::workload::sigterm(&mut run), Some(0), "{log}");
}
