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

fn run(seed: u64, parallelism: usize) {
    const ROWS: i64 = 20_000;
    let db = MariaDb::start();
    db.sql(&format!(
        "CREATE DATABASE cdc;
         CREATE TABLE cdc.t (k1 INT NOT NULL, k2 VARCHAR(8) NOT NULL, v INT, s VARCHAR(10),
           PRIMARY KEY (k1, k2));
         CREATE TABLE cdc.done (x INT PRIMARY KEY);
         USE cdc; INSERT INTO cdc.t SELECT seq, CONCAT('k', seq % 3), seq, 'init' FROM seq_0_to_{};",
        ROWS - 1
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
                .block_on(write(url, seed, ROWS, stop));
            done.store(true, Ordering::Relaxed);
            ops
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let mut child = Command::new(env!("CARGO_BIN_EXE_binlake"))
        .args([
            "tail",
            "--config",
            cfg.to_str().unwrap(),
            "--snapshot",
            "--from",
            "end",
        ])
        .env("BINLAKE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Once the snapshot is complete and the writer has stopped, write an end marker: the
    // stream is complete when the marker arrives.
    let stderr = child.stderr.take().unwrap();
    let socket = db.dir.join("mysqld.sock");
    let (done, stop2) = (writer_done.clone(), stop.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
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
        match c["op"].as_str().unwrap() {
            "r" => {
                snapshot_rows += 1;
                changes_before_last_read += changes_since_read;
                changes_since_read = 0;
                table.insert(key_of(&c["after"]), row_of(&c["after"]));
                // Stop the writer once the snapshot is well under way... but let it overlap.
                if snapshot_rows >= ROWS as usize * 9 / 10 {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            "c" => {
                changes_since_read += 1;
                table.insert(key_of(&c["after"]), row_of(&c["after"]));
            }
            "u" => {
                changes_since_read += 1;
                table.remove(&key_of(&c["before"]));
                table.insert(key_of(&c["after"]), row_of(&c["after"]));
            }
            "d" => {
                changes_since_read += 1;
                table.remove(&key_of(&c["before"]));
            }
            op => panic!("unexpected op {op}"),
        }
        if stop.load(Ordering::Relaxed) {
            if let Some(w) = writer.take() {
                ops = w.join().expect("writer");
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    if let Some(w) = writer.take() {
        ops = w.join().expect("writer");
    }

    let expected: Table = db
        .query_rows("SELECT k1, k2, v, s FROM cdc.t")
        .into_iter()
        .map(|r| {
            (
                (r[0].parse().unwrap(), r[1].clone()),
                (r[2].parse().unwrap(), r[3].clone()),
            )
        })
        .collect();
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
