//! `[kafka] transactional_id` against Apache Kafka: the records of a stretch of source changes
//! and the position that covers them are committed in one Kafka transaction, so a
//! read_committed consumer sees every source change exactly once without the `binlake.pos`
//! filter, whatever moment `run` is killed at; and a second `run` with the same
//! transactional id fences the first, which stops with a clear error.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::stack::Stack;
use support::workload::{sigterm, Rng, StopOnDrop};

const TXN: &str = "transactional_id = \"binlake-txn-test\"";

/// A stack whose run is transactional and whose reader applies every read_committed record
/// (no position filter) and counts replays.
fn transactional_stack(extra: &str) -> Stack {
    let mut stack = Stack::start(false, TXN, extra);
    stack
        .kafka_properties
        .push(("isolation.level".into(), "read_committed".into()));
    stack
        .reader_env
        .push(("POSITION_FILTER".into(), "off".into()));
    stack
}

/// Every record applied once: no position seen twice, none at or below an earlier one of
/// its partition (what the position filter would have dropped).
fn assert_exactly_once(stats: &serde_json::Value) {
    assert_eq!(stats["duplicate_positions"], 0, "{stats}");
    assert_eq!(stats["replayed"], 0, "{stats}");
    assert_eq!(stats["dropped"], 0, "{stats}");
}

/// Random source changes until `stop`: inserts into the insert-only `app.log` (one record
/// each, so its topic must hold exactly as many records as the table has rows), updates
/// and deletes of `app.big`.
fn writer(stack: &Stack, stop: &AtomicBool, seed: u64) {
    let mut rng = Rng(seed);
    let mut next = 1_000_000u64;
    while !stop.load(Ordering::Relaxed) {
        let mut sql = String::from("BEGIN;");
        for _ in 0..1 + rng.below(5) {
            match rng.below(4) {
                0 | 1 => {
                    next += 1;
                    sql += &format!("INSERT INTO app.log VALUES ({next}, 'w{next}');");
                }
                2 => {
                    let id = rng.below(60_000);
                    sql += &format!("UPDATE app.big SET n = n + 1 WHERE id = {id};");
                }
                _ => {
                    let id = rng.below(60_000);
                    sql += &format!("DELETE FROM app.big WHERE id = {id};");
                }
            }
        }
        sql += "COMMIT;";
        stack.db.sql(&sql);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_transactional_run_killed_anywhere_gives_a_read_committed_reader_every_change_once() {
    let stack = transactional_stack("[snapshot]\nchunk_size = 500\n");
    stack.db.sql(
        "CREATE DATABASE app;
         CREATE TABLE app.big (id INT PRIMARY KEY, n INT, pad VARCHAR(200));
         INSERT INTO app.big SELECT seq, 0, REPEAT('p', 200) FROM app.seq_0_to_59999;
         CREATE TABLE app.log (id BIGINT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO app.log SELECT seq, CONCAT('s', seq) FROM app.seq_0_to_999;",
    );
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| writer(&stack, &stop, seed ^ 0x5eed));
        // Kills at random moments after each run has started (read its position and
        // begun): the first ones land in the snapshot (60,000 rows in chunks of 500), later
        // ones in the stream, and each restart loads the position the previous committed.
        let mut in_snapshot = 0;
        for n in 0..8 {
            let mut run = stack.spawn_run(n);
            let start = Instant::now();
            while !stack.run_log(n).contains("run starting") {
                assert!(
                    run.try_wait().ok().flatten().is_none(),
                    "run {n} exited by itself:\n{}",
                    stack.run_log(n)
                );
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "run {n} did not start:\n{}",
                    stack.run_log(n)
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            let wait = Duration::from_millis(rng.below(1_500));
            std::thread::sleep(wait);
            assert!(
                run.try_wait().ok().flatten().is_none(),
                "run {n} exited by itself:\n{}",
                stack.run_log(n)
            );
            let _ = run.kill();
            let _ = run.wait();
            let log = stack.run_log(n);
            let snapshotting =
                log.contains("snapshot planned") && !log.contains("snapshot complete");
            in_snapshot += snapshotting as usize;
            println!(
                "run {n} killed {wait:?} after it started{}",
                if snapshotting {
                    ", in the snapshot"
                } else {
                    ""
                }
            );
        }
        assert!(in_snapshot > 0, "no kill landed in the snapshot");
        stop.store(true, Ordering::Relaxed);
    });
    let mut run = stack.spawn_run(8);
    let mut stats = stack.wait_converged(&["app.big", "app.log"], Duration::from_secs(300));
    if let Some(s) = stats.as_object_mut() {
        s.remove("applied");
    }
    println!("{stats}");
    assert_exactly_once(&stats);
    let rows: u64 = stack.db.query_rows("SELECT COUNT(*) FROM app.log")[0][0]
        .parse()
        .expect("count");
    // What each run started from, for a failure's message.
    let starts: String = (0..9)
        .flat_map(|n| {
            stack
                .run_log(n)
                .lines()
                .filter(|l| {
                    l.contains("run starting")
                        || l.contains("snapshot planned")
                        || l.contains("snapshot complete")
                        || l.contains("ERROR")
                })
                .map(|l| format!("run {n}: {l}\n"))
                .collect::<Vec<_>>()
        })
        .collect();
    // The insert-only table: every row has one insert record, or one snapshot read, or
    // both (a row inserted while the snapshot ran: the snapshot runs beside the stream, and
    // rows inserted before a run's first start are only read); none has two of either.
    assert_eq!(stats["keys_read_or_created_twice"], 0, "{stats}\n{starts}");
    let ops = &stats["ops"]["app.log"];
    let (inserts, reads) = (
        ops["c"].as_u64().unwrap_or(0),
        ops["r"].as_u64().unwrap_or(0),
    );
    assert!(
        inserts + reads >= rows && inserts <= rows && reads <= rows,
        "{stats}\n{starts}"
    );
    assert_eq!(
        stats["per_topic"]["cdc.app.log"].as_u64(),
        Some(inserts + reads),
        "{stats}\n{starts}"
    );
    for n in 0..9 {
        let log = stack.run_log(n);
        assert!(
            !log.contains("timed out reading the committed position"),
            "run {n}: {log}"
        );
    }
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(8));
    assert!(stack.run_log(8).contains("flushed and committed"));
}

#[test]
fn a_second_run_with_the_same_transactional_id_fences_the_first() {
    let stack = transactional_stack("");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO app.t VALUES (1, 'one'), (2, 'two'), (3, 'three');",
    );
    let mut older = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    // Its own replica server id: MariaDB lets one replica connection per server id, and the
    // point here is Kafka's fencing.
    let mut newer = stack.spawn_run_env(1, &[("BINLAKE_MYSQL__SERVER_ID", "4250")]);
    // The newer one's producer is up once it read the committed position and resumed.
    let start = Instant::now();
    while !stack.run_log(1).contains("starting binlog stream") {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{}",
            stack.run_log(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut id = 10;
    let code = loop {
        id += 1;
        stack
            .db
            .sql(&format!("INSERT INTO app.t VALUES ({id}, 'v{id}')"));
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(Some(status)) = older.try_wait() {
            break status.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the older run was not fenced:\n{}",
            stack.run_log(0)
        );
    };
    let log = stack.run_log(0);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("fenced") && log.contains("transactional_id"),
        "the older run's error names the fencing and the setting:\n{log}"
    );
    stack.db.sql("UPDATE app.t SET v = 'after' WHERE id = 1");
    let stats = stack.wait_converged(&["app.t"], Duration::from_secs(120));
    assert_exactly_once(&stats);
    assert!(
        newer.try_wait().ok().flatten().is_none(),
        "{}",
        stack.run_log(1)
    );
    assert_eq!(sigterm(&mut newer), Some(0), "{}", stack.run_log(1));
}
