//! Snapshot then stream against a real MariaDB: while a writer inserts, updates (also the
//! primary key) and deletes at random, `tail --snapshot` must produce a stream whose replay
//! (last write per key wins, deletes remove) equals the table's final contents, row by row.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value;
use support::cli::config;
use support::mariadb::MariaDb;

/// A tiny deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

type Table = BTreeMap<(i64, String), (i64, String)>;

fn key_of(img: &Value) -> (i64, String) {
    (
        img["k1"].as_i64().expect("k1"),
        img["k2"].as_str().expect("k2").to_string(),
    )
}

fn row_of(img: &Value) -> (i64, String) {
    (
        img["v"].as_i64().expect("v"),
        img["s"].as_str().expect("s").to_string(),
    )
}

/// The table under test as the server has it now.
fn table_contents(db: &MariaDb) -> Table {
    db.query_rows("SELECT k1, k2, v, s FROM cdc.t")
        .into_iter()
        .map(|r| {
            (
                (r[0].parse().unwrap(), r[1].clone()),
                (r[2].parse().unwrap(), r[3].clone()),
            )
        })
        .collect()
}

/// Random single-row and multi-row transactions until `stop`.
async fn write(url: String, seed: u64, rows: i64, stop: Arc<AtomicBool>) -> u64 {
    let mut conn = mysql_async::Conn::from_url(url)
        .await
        .expect("writer connects");
    let mut rng = Rng(seed | 1);
    let mut ops = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = rng.below(rows as u64 * 2) as i64;
        let sql = match rng.below(10) {
            0..=2 => format!(
                "INSERT IGNORE INTO cdc.t VALUES ({id}, 'k{}', {}, 'ins')",
                id % 3,
                rng.below(1000)
            ),
            3..=5 => format!(
                "UPDATE cdc.t SET v = {}, s = 'upd' WHERE k1 = {id}",
                rng.below(1000)
            ),
            6 => format!(
                "UPDATE IGNORE cdc.t SET k1 = {} WHERE k1 = {id}",
                rows * 2 + rng.below(rows as u64) as i64
            ),
            7 | 8 => format!("DELETE FROM cdc.t WHERE k1 = {id}"),
            _ => format!(
                "BEGIN; UPDATE cdc.t SET v = v + 1 WHERE k1 BETWEEN {id} AND {}; \
                 DELETE FROM cdc.t WHERE k1 = {}; COMMIT",
                id + 20,
                id + 21
            ),
        };
        conn.query_drop(sql).await.expect("writer statement");
        ops += 1;
    }
    ops
}

/// Rows of the table under test: 20,000 in CI; the acceptance run uses
/// `SNAPSHOT_TEST_ROWS=1000000` (see BENCHMARKS.md).
fn rows_under_test() -> i64 {
    std::env::var("SNAPSHOT_TEST_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn run(seed: u64, parallelism: usize) {
    let rows = rows_under_test();
    let db = MariaDb::start();
    db.sql(&format!(
        "CREATE DATABASE cdc;
         CREATE TABLE cdc.t (k1 INT NOT NULL, k2 VARCHAR(8) NOT NULL, v INT, s VARCHAR(10),
           PRIMARY KEY (k1, k2));
         CREATE TABLE cdc.done (x INT PRIMARY KEY);
         USE cdc; INSERT INTO cdc.t SELECT seq, CONCAT('k', seq % 3), seq, 'init' FROM seq_0_to_{};",
        rows - 1
    ));
    let cfg = config(
        &db,
        "binlake",
        "binlake",
        &format!(
            "[snapshot]\nparallelism = {parallelism}\nchunk_size = 250\nmax_in_flight_chunks = 4\n"
        ),
    );

    // The writer starts first and runs through the whole snapshot.
    let stop = Arc::new(AtomicBool::new(false));
    let writer_done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, stop, done) = (db.url("root", "root"), stop.clone(), writer_done.clone());
        std::thread::spawn(move || {
            let ops = tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(write(url, seed, rows, stop));
            done.store(true, Ordering::Relaxed);
            ops
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let mut child = support::cli::spawn(
        &[
            "tail",
            "--config",
            cfg.to_str().unwrap(),
            "--snapshot",
            "--from",
            "end",
        ],
        "info",
    );
    let stdout = child.stdout.take().unwrap();
    // Once the snapshot is complete and the writer has stopped, write an end marker: the
    // stream is complete when the marker arrives.
    let stderr = child.stderr.take().unwrap();
    let socket = db.dir.join("mysqld.sock");
    let (done, stop2) = (writer_done.clone(), stop.clone());
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let errors2 = errors.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("error") || line.contains("ERROR") {
                errors2.lock().unwrap().push(line.clone());
            }
            if line.contains("snapshot complete") {
                stop2.store(true, Ordering::Relaxed);
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let ok = Command::new("mariadb")
                    .arg("--no-defaults")
                    .arg(format!("--socket={}", socket.display()))
                    .args(["-uroot", "-proot", "-e", "INSERT INTO cdc.done VALUES (1)"])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                assert!(ok, "end marker insert failed");
            }
        }
    });

    let mut table = Table::new();
    let mut snapshot_rows = 0usize;
    let mut changes_before_last_read = 0usize;
    let mut changes_since_read = 0usize;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut writer = Some(writer);
    let mut ops = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read tail output");
        let c: Value = serde_json::from_str(&line).unwrap();
        assert!(
            Instant::now() < deadline,
            "seed {seed}: no end marker within 180 s"
        );
        if c["table"] == "done" {
            break;
        }
        apply(&mut table, &c);
        if c["op"] == "r" {
            snapshot_rows += 1;
            changes_before_last_read += changes_since_read;
            changes_since_read = 0;
            // Stop the writer once the snapshot is well under way... but let it overlap.
            if snapshot_rows >= rows as usize * 9 / 10 {
                stop.store(true, Ordering::Relaxed);
            }
        } else {
            changes_since_read += 1;
        }
        if stop.load(Ordering::Relaxed) {
            if let Some(w) = writer.take() {
                ops = w.join().expect("writer");
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    stop.store(true, Ordering::Relaxed);
    if let Some(w) = writer.take() {
        ops = w.join().expect("writer");
    }
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "seed {seed}: binlake failed: {errors:?}");

    let expected = table_contents(&db);
    assert!(
        ops > 100,
        "seed {seed}: the writer ran only {ops} statements"
    );
    assert!(
        changes_before_last_read > 0,
        "seed {seed}: no binlog change was interleaved with the snapshot; the test proves nothing"
    );
    assert_eq!(
        table.len(),
        expected.len(),
        "seed {seed}, parallelism {parallelism}: row count"
    );
    for (k, v) in &expected {
        assert_eq!(
            table.get(k),
            Some(v),
            "seed {seed}, parallelism {parallelism}: key {k:?}"
        );
    }
}

#[test]
fn snapshot_under_concurrent_writes_converges_parallelism_1() {
    for seed in [1, 2] {
        run(seed, 1);
    }
}

#[test]
fn snapshot_under_concurrent_writes_converges_parallelism_4() {
    for seed in [3, 4] {
        run(seed, 4);
    }
}

/// Runs `tail --snapshot --limit n` and returns its JSON lines.
fn snapshot_lines(db: &MariaDb, extra: &str, n: usize) -> Vec<Value> {
    let cfg = config(db, "binlake", "binlake", extra);
    let run = support::cli::binlake(
        &[
            "tail",
            "--config",
            cfg.to_str().unwrap(),
            "--snapshot",
            "--limit",
            &n.to_string(),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    run.lines()
}

#[test]
fn binary_descending_varchar_and_missing_keys_snapshot_exactly() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE cdc; USE cdc;
         CREATE TABLE bin (k BINARY(2) PRIMARY KEY, v INT);
         INSERT INTO bin SELECT UNHEX(LPAD(HEX(seq), 4, '0')), seq FROM seq_0_to_299;
         CREATE TABLE descending (k INT, PRIMARY KEY (k DESC));
         INSERT INTO descending SELECT seq FROM seq_1_to_300;
         CREATE TABLE txt (k VARCHAR(10) CHARACTER SET latin1 PRIMARY KEY, v INT);
         INSERT INTO txt SELECT CONCAT('é', seq), seq FROM seq_1_to_300;
         CREATE TABLE nokey (a INT, b INT);
         INSERT INTO nokey SELECT seq % 5, seq FROM seq_1_to_300;",
    );
    let out = snapshot_lines(&db, "[snapshot]\nchunk_size = 7\nparallelism = 3\n", 1200);
    let mut by_table: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for c in &out {
        assert_eq!(c["op"], "r");
        by_table
            .entry(c["table"].as_str().unwrap().to_string())
            .or_default()
            .push(&c["after"]);
    }
    let count = |t: &str| by_table.get(t).map(|v| v.len()).unwrap_or(0);
    assert_eq!(
        [
            count("bin"),
            count("descending"),
            count("txt"),
            count("nokey")
        ],
        [300, 300, 300, 300]
    );
    let mut bins: Vec<i64> = by_table["bin"]
        .iter()
        .map(|a| a["v"].as_i64().unwrap())
        .collect();
    bins.sort();
    assert_eq!(bins, (0..300).collect::<Vec<_>>(), "every BINARY key once");
    let mut desc: Vec<i64> = by_table["descending"]
        .iter()
        .map(|a| a["k"].as_i64().unwrap())
        .collect();
    desc.sort();
    assert_eq!(
        desc,
        (1..=300).collect::<Vec<_>>(),
        "every descending key once"
    );
    let mut txt: Vec<String> = by_table["txt"]
        .iter()
        .map(|a| a["k"].as_str().unwrap().to_string())
        .collect();
    txt.sort();
    txt.dedup();
    assert_eq!(txt.len(), 300);
    assert!(
        txt.iter().all(|k| k.starts_with('é')),
        "latin1 keys decoded: {:?}",
        &txt[..3]
    );
    // Snapshot positions strictly increase.
    let key = |c: &Value| {
        let p = &c["pos"];
        (
            p["offset"].as_u64().unwrap(),
            p["snapshot"].as_u64().unwrap(),
        )
    };
    for w in out.windows(2) {
        assert!(key(&w[0]) < key(&w[1]));
    }
}

#[test]
fn snapshot_holds_no_lock_and_lets_ddl_through() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE cdc; USE cdc;
         CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO t SELECT seq, REPEAT('v', 20) FROM seq_1_to_60000;",
    );
    let cfg = config(
        &db,
        "binlake",
        "binlake",
        "[snapshot]\nchunk_size = 20\nparallelism = 2\nmax_in_flight_chunks = 2\n",
    );
    let mut child = support::cli::spawn(
        &[
            "tail",
            "--config",
            cfg.to_str().unwrap(),
            "--snapshot",
            "--limit",
            "60000",
        ],
        "warn",
    );
    let rows = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let rows = rows.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for _ in BufReader::new(stdout).lines().map_while(Result::ok) {
                rows.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while rows.load(Ordering::Relaxed) < 1000 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // While the snapshot runs, binlake never waits for nor holds a table lock.
    // ("System lock" is the ordinary state of opening a table, not a lock wait.)
    for _ in 0..40 {
        let locked = db.query_rows(
            "SELECT ID, STATE, INFO FROM information_schema.PROCESSLIST \
             WHERE USER = 'binlake' AND (STATE LIKE 'Waiting for table%' OR STATE = 'Locked' \
             OR INFO LIKE 'LOCK%' OR INFO LIKE 'FLUSH%')",
        );
        assert!(
            locked.is_empty(),
            "binlake waits for or holds a lock: {locked:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let timed = |sql: &str| {
        let t = Instant::now();
        db.sql(sql);
        t.elapsed()
    };
    let lock = timed("LOCK TABLES cdc.t WRITE; UNLOCK TABLES;");
    let alter = timed("ALTER TABLE cdc.t ADD COLUMN z INT, ALGORITHM=INSTANT;");
    let during = rows.load(Ordering::Relaxed);
    reader.join().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        during < 60_000,
        "the snapshot had finished before the DDL ran ({during} rows)"
    );
    assert!(lock < Duration::from_secs(1), "LOCK TABLES took {lock:?}");
    assert!(alter < Duration::from_secs(1), "ALTER TABLE took {alter:?}");
    assert_eq!(rows.load(Ordering::Relaxed), 60_000);
}

/// Starts `tail --snapshot --state` and collects its lines; `info` logs go to stderr lines.
struct Tail {
    child: std::process::Child,
    lines: Arc<std::sync::Mutex<Vec<Value>>>,
    complete: Arc<AtomicBool>,
}

impl Tail {
    fn start(cfg: &std::path::Path, state: &std::path::Path) -> Tail {
        let mut child = Command::new(env!("CARGO_BIN_EXE_binlake"))
            .args([
                "tail",
                "--config",
                cfg.to_str().unwrap(),
                "--snapshot",
                "--state",
            ])
            .arg(state)
            .env("BINLAKE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let complete = Arc::new(AtomicBool::new(false));
        let (out, l) = (child.stdout.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            // Only complete lines: a process killed with SIGKILL may leave half a line.
            let mut r = BufReader::new(out);
            let mut line = Vec::new();
            while r
                .read_until(b'\n', &mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                if line.last() == Some(&b'\n') {
                    let v = serde_json::from_slice(&line).expect("a complete line is JSON");
                    l.lock().unwrap().push(v);
                }
                line.clear();
            }
        });
        let (err, c) = (child.stderr.take().unwrap(), complete.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("snapshot complete") {
                    c.store(true, Ordering::Relaxed);
                }
            }
        });
        Tail {
            child,
            lines,
            complete,
        }
    }

    fn count(&self, op: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c["op"] == op)
            .count()
    }

    fn wait_for(&self, what: &str, f: impl Fn(&Tail) -> bool) {
        let t = Instant::now();
        while !f(self) {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn apply(table: &mut Table, c: &Value) {
    match c["op"].as_str().unwrap() {
        "r" | "c" => {
            table.insert(key_of(&c["after"]), row_of(&c["after"]));
        }
        "u" => {
            table.remove(&key_of(&c["before"]));
            table.insert(key_of(&c["after"]), row_of(&c["after"]));
        }
        "d" => {
            table.remove(&key_of(&c["before"]));
        }
        op => panic!("unexpected op {op}"),
    }
}

#[test]
fn snapshot_resumes_after_kill_9_from_the_last_completed_chunk() {
    const ROWS: usize = 30_000;
    const CHUNK: usize = 500;
    const WORKERS: usize = 2;
    for (trial, kill_after) in [(1, 3_000usize), (2, 14_000), (3, 26_000)] {
        let db = MariaDb::start();
        db.sql(&format!(
            "CREATE DATABASE cdc; USE cdc;
             CREATE TABLE t (k1 INT NOT NULL, k2 VARCHAR(8) NOT NULL, v INT, s VARCHAR(10),
               PRIMARY KEY (k1, k2));
             CREATE TABLE done (x INT PRIMARY KEY);
             INSERT INTO t SELECT seq, 'k', seq, 'init' FROM seq_1_to_{ROWS};"
        ));
        let cfg = config(
            &db,
            "binlake",
            "binlake",
            &format!("[snapshot]\nparallelism = {WORKERS}\nchunk_size = {CHUNK}\nmax_in_flight_chunks = 2\n"),
        );
        let state = db.dir.join("state.json");

        let mut first = Tail::start(&cfg, &state);
        first.wait_for("rows before the kill", |t| t.count("r") >= kill_after);
        first.child.kill().unwrap(); // SIGKILL
        first.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let before: Vec<Value> = first.lines.lock().unwrap().clone();
        let read_before = before.iter().filter(|c| c["op"] == "r").count();
        assert!(
            read_before < ROWS,
            "trial {trial}: the snapshot finished before the kill"
        );

        // Changes while binlake is down must still arrive, once.
        db.sql(
            "UPDATE cdc.t SET v = -1, s = 'down' WHERE k1 = 1;
             DELETE FROM cdc.t WHERE k1 = 2;
             INSERT INTO cdc.t VALUES (40000, 'k', 4, 'new');",
        );
        let second = Tail::start(&cfg, &state);
        second.wait_for("snapshot completion", |t| {
            t.complete.load(Ordering::Relaxed)
        });
        db.sql("INSERT INTO cdc.done VALUES (1)");
        second.wait_for("end marker", |t| {
            t.lines.lock().unwrap().iter().any(|c| c["table"] == "done")
        });
        let mut second = second;
        second.child.kill().unwrap();
        second.child.wait().unwrap();
        let after: Vec<Value> = second.lines.lock().unwrap().clone();
        let read_after = after.iter().filter(|c| c["op"] == "r").count();

        // Resumed from a completed chunk, not from zero.
        let remaining = ROWS - read_before;
        assert!(
            read_after < remaining + 1 + CHUNK * WORKERS,
            "trial {trial}: {read_after} rows read after the restart, {remaining} remained"
        );
        // The replay of everything printed equals the table.
        let mut table = Table::new();
        for c in before.iter().chain(&after).filter(|c| c["table"] == "t") {
            apply(&mut table, c);
        }
        let expected = table_contents(&db);
        assert_eq!(table.len(), expected.len(), "trial {trial}: row count");
        assert!(table == expected, "trial {trial}: contents differ");
    }
}

#[test]
fn purged_saved_position_fails_clearly_or_resnapshots_when_needed() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE cdc; USE cdc; CREATE TABLE t (id INT PRIMARY KEY);
         INSERT INTO t SELECT seq FROM seq_1_to_100;",
    );
    let state = db.dir.join("state.json");
    let tail = |extra: &str, limit: usize| {
        let cfg = config(&db, "binlake", "binlake", extra);
        support::cli::binlake(
            &[
                "tail",
                "--config",
                cfg.to_str().unwrap(),
                "--snapshot",
                "--state",
                state.to_str().unwrap(),
                "--limit",
                &limit.to_string(),
            ],
            Duration::from_secs(60),
        )
    };
    let run = tail("", 100);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.lines().len(), 100);

    db.sql("INSERT INTO cdc.t SELECT seq FROM cdc.seq_101_to_105; FLUSH BINARY LOGS;");
    db.purge_to("mysql-bin.000002");
    for mode in ["initial", "never"] {
        let extra = format!("[snapshot]\nmode = \"{mode}\"\n");
        let run = if mode == "never" {
            let cfg = config(&db, "binlake", "binlake", &extra);
            support::cli::binlake(
                &[
                    "tail",
                    "--config",
                    cfg.to_str().unwrap(),
                    "--state",
                    state.to_str().unwrap(),
                ],
                Duration::from_secs(60),
            )
        } else {
            tail(&extra, 1)
        };
        assert_eq!(run.code, Some(2), "mode {mode}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("binlog file mysql-bin.000001, which the server has purged")
                && run.stderr.contains("mode = \"when_needed\""),
            "mode {mode}: {}",
            run.stderr
        );
    }
    let run = tail("[snapshot]\nmode = \"when_needed\"\n", 105);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = run.lines();
    assert!(out.iter().all(|c| c["op"] == "r"));
    let mut ids: Vec<i64> = out
        .iter()
        .map(|c| c["after"]["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=105).collect::<Vec<_>>());
}

#[test]
fn a_table_added_to_the_include_list_is_snapshotted_on_restart() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE cdc; USE cdc;
         CREATE TABLE a (id INT PRIMARY KEY); INSERT INTO a SELECT seq FROM seq_1_to_50;
         CREATE TABLE b (id INT PRIMARY KEY); INSERT INTO b SELECT seq FROM seq_1_to_30;",
    );
    let state = db.dir.join("state.json");
    let tail = |include: &str, limit: usize| {
        let cfg = config(
            &db,
            "binlake",
            "binlake",
            &format!("[capture]\ninclude = [{include}]\n"),
        );
        let run = support::cli::binlake(
            &[
                "tail",
                "--config",
                cfg.to_str().unwrap(),
                "--snapshot",
                "--state",
                state.to_str().unwrap(),
                "--limit",
                &limit.to_string(),
            ],
            Duration::from_secs(60),
        );
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        run.lines()
    };
    let first = tail("\"cdc.a\"", 50);
    assert!(first.iter().all(|c| c["table"] == "a" && c["op"] == "r"));
    db.sql("INSERT INTO cdc.a VALUES (51);");
    // Now b too: its rows arrive as a snapshot, a's only as the stream change.
    let second = tail("\"cdc.a\", \"cdc.b\"", 31);
    let reads: Vec<&Value> = second.iter().filter(|c| c["op"] == "r").collect();
    assert_eq!(reads.len(), 30);
    assert!(reads.iter().all(|c| c["table"] == "b"));
    let creates: Vec<&Value> = second.iter().filter(|c| c["op"] == "c").collect();
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0]["after"]["id"], 51);
}

#[test]
fn on_demand_snapshot_of_a_key_range_while_streaming() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE cdc; USE cdc; CREATE TABLE t (id INT PRIMARY KEY, v INT);
         INSERT INTO t SELECT seq, seq FROM seq_1_to_100;
         CREATE TABLE n (a INT); INSERT INTO n SELECT seq FROM seq_1_to_50;",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = format!("[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"s3cret\"\n");
    let cfg = config(&db, "binlake", "binlake", &admin);
    let mut child = support::cli::spawn(
        &["tail", "--config", cfg.to_str().unwrap(), "--from", "end"],
        "warn",
    );
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });
    let ask = |table: &str, cond: Option<&str>| {
        let mut args = vec![
            "snapshot",
            "--config",
            cfg.to_str().unwrap(),
            "--table",
            table,
        ];
        if let Some(c) = cond {
            args.extend(["--where", c]);
        }
        // The endpoint may take a moment to come up.
        let t = Instant::now();
        loop {
            let run = support::cli::binlake(&args, Duration::from_secs(30));
            if run.code == Some(0)
                || !run.stderr.contains("connecting to")
                || t.elapsed().as_secs() > 20
            {
                return run;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let run = ask("cdc.t", Some("id BETWEEN 11 AND 20"));
    assert_eq!(run.code, Some(0), "{} {}", run.stdout, run.stderr);
    assert!(run
        .stdout
        .contains("snapshot of cdc.t started for rows where id BETWEEN 11 AND 20"));
    let mut ids: Vec<i64> = (0..10)
        .map(|_| {
            let c = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("snapshot rows");
            assert_eq!(c["op"], "r");
            c["after"]["id"].as_i64().unwrap()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (11..=20).collect::<Vec<_>>());

    // A table without a key, with a condition.
    let run = ask("cdc.n", Some("a <= 5"));
    assert_eq!(run.code, Some(0), "{} {}", run.stdout, run.stderr);
    let mut got: Vec<i64> = (0..5)
        .map(|_| {
            let c = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("snapshot rows");
            assert_eq!(
                (c["op"].as_str(), c["table"].as_str()),
                (Some("r"), Some("n"))
            );
            c["after"]["a"].as_i64().unwrap()
        })
        .collect();
    got.sort();
    assert_eq!(got, [1, 2, 3, 4, 5]);

    // The stream goes on.
    db.sql("UPDATE cdc.t SET v = 0 WHERE id = 1;");
    let c = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("stream change");
    assert_eq!(
        (c["op"].as_str(), c["after"]["id"].as_i64()),
        (Some("u"), Some(1))
    );

    // Bad requests get one clear answer and change nothing.
    let run = ask("cdc.nope", None);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout
            .contains("cdc.nope is not snapshotted: it does not exist"),
        "{}",
        run.stdout
    );
    let run = ask("cdc.t", Some("no_such_column = 1"));
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout.contains("the condition `no_such_column = 1`"),
        "{}",
        run.stdout
    );

    // A condition that would close the WHERE and append rows of another table, or run a
    // second statement: refused before it reaches the server.
    for (cond, why) in [
        (
            "1) UNION SELECT 1, 2, 3 FROM mysql.user WHERE (1",
            "closes a parenthesis",
        ),
        ("1; DROP TABLE cdc.t", "has a `;`"),
    ] {
        let run = ask("cdc.t", Some(cond));
        assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
        assert!(run.stdout.contains(why), "{}", run.stdout);
    }

    // A Host that is not this loopback endpoint (a web page through DNS rebinding): refused,
    // token or not. Without the token: refused.
    use std::io::{Read, Write};
    let post = |host: &str, auth: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let body = r#"{"table":"cdc.t"}"#;
        write!(
            s,
            "POST /snapshot HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    let resp = post(
        &format!("evil.example:{port}"),
        "Authorization: Bearer s3cret\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let resp = post(&format!("127.0.0.1:{port}"), "");
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    let resp = post(
        &format!("127.0.0.1:{port}"),
        "Authorization: Bearer s3crex\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "nothing was emitted"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn progress_bars_only_on_a_terminal() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE cdc; USE cdc; CREATE TABLE t (id INT PRIMARY KEY);
         INSERT INTO t SELECT seq FROM seq_1_to_5000; ANALYZE TABLE t;",
    );
    let cfg = config(&db, "binlake", "binlake", "[snapshot]\nchunk_size = 100\n");
    let cmd = format!(
        "{} --log warn tail --config {} --snapshot --limit 5000 --format none",
        env!("CARGO_BIN_EXE_binlake"),
        cfg.display()
    );
    // `script` gives the command a pseudo-terminal.
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script(1) from util-linux");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("cdc.t [") && tty.contains("rows/s"),
        "no bar on a terminal: {tty}"
    );

    let run = support::cli::binlake(
        &[
            "tail",
            "--config",
            cfg.to_str().unwrap(),
            "--snapshot",
            "--limit",
            "5000",
            "--format",
            "none",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0));
    assert!(
        !run.stderr.contains("rows/s eta"),
        "a bar without a terminal: {}",
        run.stderr
    );
}
