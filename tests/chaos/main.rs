//! The chaos harness: a randomized workload against several tables while `binlake run`,
//! `binlake sink`, `binlake rebuild --follow`, the broker and MariaDB are killed with SIGKILL
//! (`run`, `sink` and `rebuild --follow` also stopped with SIGTERM, as a supervisor does) and
//! restarted at random moments, the network to MariaDB, to Kafka and to the registry is cut,
//! stalled or blackholed (a proxy of the tests' own), and binlogs are rotated and purged
//! (only what `run` has committed). At the end four views must equal the source, row by row:
//! the topics (read by Python confluent-kafka), the tables rebuilt from the topics
//! (`binlake rebuild --create`), the tables `rebuild --follow` kept current, and the lake's
//! latest state per key (DuckDB); and no `binlake.pos` may be in the lake twice.
//!
//! Every run prints its seed; `CHAOS_SEED=n` replays the same choices (timings still vary).
//! `CHAOS_TRIALS=n` sets the kills per component (default 3: the short run of the test
//! suite; `deploy/local/chaos.sh` runs long ones). A process that exits by itself is
//! restarted like a supervisor would, and reported.

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::proxy::{Mode, Proxy};
use support::stack::Stack;
use support::workload::{
    all_types_row, count_from_env, initial_rows, schema, seed_from_env, sigterm, Rng,
};

const TABLES: [&str; 4] = ["app.all_types", "app.composite", "app.nopk", "app.big"];
/// Tables `binlake rebuild --follow` keeps current in the database `followed` (one process
/// each; app.composite's DROP COLUMN would stay in a followed table, README: rebuild).
const FOLLOWED: [&str; 2] = ["app.all_types", "app.nopk"];

/// SQL through the `mariadb` client on the server's socket, without panicking: the server
/// is down now and then.
fn try_sql(sock: &Path, sql: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--socket={}", sock.display()))
        .args([
            "-uroot",
            "-proot",
            "--default-character-set=utf8mb4",
            "-N",
            "-e",
            sql,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// One random transaction of the workload (`n`: how many were run before).
fn operation(rng: &mut Rng, n: u64) -> String {
    let id = rng.below(300);
    match rng.below(12) {
        0 | 1 => format!(
            "INSERT IGNORE INTO app.all_types VALUES {}",
            all_types_row(id + 300)
        ),
        2 => format!(
            "UPDATE app.all_types SET vc = 'u{n}', dec1 = {}.25, dtt = NOW(6) WHERE id = {id}",
            rng.below(1000)
        ),
        3 => format!("DELETE FROM app.all_types WHERE id = {id}"),
        // A primary-key change.
        4 => format!(
            "UPDATE IGNORE app.all_types SET id = {} WHERE id = {id}",
            id + 1000 + rng.below(1000)
        ),
        5 => format!(
            "INSERT INTO app.composite (tenant, id, v) VALUES ('t{}', {id}, 1) \
             ON DUPLICATE KEY UPDATE v = v + 1",
            rng.below(4)
        ),
        6 => format!("UPDATE IGNORE app.composite SET tenant = 'm{n}' WHERE id = {id} LIMIT 1"),
        // A multi-row, multi-table transaction.
        7 => format!(
            "START TRANSACTION; DELETE FROM app.composite WHERE id = {id}; \
             UPDATE app.all_types SET ti = (IFNULL(ti, 0) + 1) % 100 WHERE id BETWEEN {id} AND {}; \
             INSERT INTO app.nopk VALUES ({id}, 'tx{n}'); COMMIT",
            id + 30
        ),
        // One row at a time, to a value no other row has: identical rows of a keyless table
        // share one key (README: limits), which a random workload must not create.
        8 => format!("UPDATE app.nopk SET b = 'n{n}' WHERE a = {id} LIMIT 1"),
        9 => format!("DELETE FROM app.nopk WHERE a = {id} LIMIT 1"),
        // Large rows: about 200 KB each.
        10 => format!(
            "REPLACE INTO app.big VALUES ({}, REPEAT('{}', {}))",
            id % 20,
            (b'a' + (n % 26) as u8) as char,
            100_000 + rng.below(100_000)
        ),
        _ => format!("DELETE FROM app.big WHERE id = {}", id % 20),
    }
}

/// DDL steps, at fixed points of the workload; each rewrites every row so that the last
/// record of every key has the table's current columns.
fn ddl(step: u64) -> Option<&'static str> {
    match step {
        150 => Some(
            "ALTER TABLE app.composite ADD COLUMN note VARCHAR(20) NULL; \
             UPDATE app.composite SET note = CONCAT('n', v)",
        ),
        400 => Some(
            "ALTER TABLE app.composite DROP COLUMN note; UPDATE app.composite SET v = v + 1000",
        ),
        _ => None,
    }
}

fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn mysqld_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("mysqld.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

struct Harness {
    stack: Stack,
    lake: PathBuf,
    sink_sections: String,
    run: Child,
    sink: Child,
    runs: usize,
    sinks: usize,
    /// `rebuild --follow` of each of [`FOLLOWED`] with its log's number, and how many were
    /// started.
    follows: Vec<(Child, usize)>,
    followers: usize,
    /// Processes that exited without being killed: (what, exit code, last log lines).
    unplanned: Vec<String>,
}

impl Harness {
    fn restart_run(&mut self) {
        self.runs += 1;
        self.run = self.stack.spawn_run(self.runs);
    }

    fn restart_sink(&mut self) {
        self.sinks += 1;
        self.sink = self.stack.spawn_sink(self.sinks, &self.sink_sections);
    }

    /// Starts `binlake rebuild --follow` of `FOLLOWED[i]` into the database `followed`.
    fn spawn_follow(&mut self, i: usize) -> (Child, usize) {
        self.followers += 1;
        let path = self
            .stack
            .db
            .dir
            .join(format!("follow-{}.log", self.followers));
        let log = std::fs::File::create(path).expect("log");
        let into = format!(
            "mysql://root:root@127.0.0.1:{}/followed",
            self.stack.db.port
        );
        Command::new(env!("CARGO_BIN_EXE_binlake"))
            .args(["rebuild", "--config"])
            .arg(&self.stack.config)
            .args([
                "--table",
                FOLLOWED[i],
                "--into",
                &into,
                "--create",
                "--follow",
            ])
            .env("BINLAKE_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .map(|c| (c, self.followers))
            .expect("spawn binlake rebuild --follow")
    }

    /// The log of the `rebuild --follow` of `FOLLOWED[i]` now running.
    fn follow_log(&self, i: usize) -> String {
        let n = self.follows[i].1;
        std::fs::read_to_string(self.stack.db.dir.join(format!("follow-{n}.log")))
            .unwrap_or_default()
    }

    fn restart_follow(&mut self, i: usize) {
        self.follows[i] = self.spawn_follow(i);
    }

    /// Notes a SIGTERM stop that did not exit 0, with the last lines of its log.
    fn note_stop(&mut self, what: &str, code: Option<i32>, log: &str) {
        if code != Some(0) {
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            self.unplanned
                .push(format!("{what} stopped with {code:?}: {tail:?}"));
        }
    }

    /// A supervisor's job: restart what exited by itself, and note it.
    fn supervise(&mut self) {
        if let Ok(Some(s)) = self.run.try_wait() {
            let log = self.stack.run_log(self.runs);
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            self.unplanned
                .push(format!("run-{} exited {s}: {tail:?}", self.runs));
            self.restart_run();
        }
        if let Ok(Some(s)) = self.sink.try_wait() {
            let log = self.stack.sink_log(self.sinks);
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            self.unplanned
                .push(format!("sink-{} exited {s}: {tail:?}", self.sinks));
            self.restart_sink();
        }
        for (i, table) in FOLLOWED.iter().enumerate() {
            if let Ok(Some(s)) = self.follows[i].0.try_wait() {
                let log = self.follow_log(i);
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                self.unplanned
                    .push(format!("rebuild --follow of {table} exited {s}: {tail:?}"));
                self.restart_follow(i);
            }
        }
    }

    /// The binlog file of the position `run` committed, if any.
    fn committed_file(&self) -> Option<String> {
        let out = Command::new(env!("CARGO_BIN_EXE_binlake"))
            .args(["status", "--json", "--config"])
            .arg(&self.stack.config)
            .env("BINLAKE_LOG", "error")
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let c = v["committed"].as_str()?;
        Some(c.split(':').next()?.to_string())
    }
}

#[test]
fn chaos() {
    let seed = seed_from_env("CHAOS_SEED");
    let trials = count_from_env("CHAOS_TRIALS", 3);
    println!("chaos seed {seed} (replay: CHAOS_SEED={seed}), {trials} kills per component");
    let started = Instant::now();

    // binlake reaches MariaDB, Kafka and the registry through proxies that fail like
    // networks do; the tests' own readers and writers go direct. The broker has a listener
    // of its own for binlake, which advertises the proxy's address.
    let kafka_listener = support::broker::free_port();
    let kafka_net = Proxy::start(kafka_listener);
    let broker = support::broker::Broker::start_with(support::broker::Options {
        proxied: Some((kafka_listener, kafka_net.port)),
        ..support::broker::Options::default()
    });
    let stack = Stack::start_on(broker, &[], "", "[snapshot]\nchunk_size = 50\n");
    let mysql_net = Proxy::start(stack.db.port);
    let registry_url = stack.registry_url();
    let registry_port: u16 = registry_url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("registry port");
    let registry_net = Proxy::start(registry_port);
    let text = std::fs::read_to_string(&stack.config).expect("config");
    std::fs::write(
        &stack.config,
        text.replacen(
            &format!("port = {}\n", stack.db.port),
            &format!("port = {}\n", mysql_net.port),
            1,
        )
        .replace(
            &format!("url = \"{registry_url}\""),
            &format!("url = \"http://127.0.0.1:{}\"", registry_net.port),
        )
        .replace(
            &format!("brokers = \"{}\"", stack.broker.bootstrap()),
            &format!("brokers = \"127.0.0.1:{}\"", kafka_net.port),
        ),
    )
    .expect("config");
    schema(&stack);
    stack
        .db
        .sql("CREATE TABLE app.big (id INT PRIMARY KEY, body MEDIUMTEXT)");
    initial_rows(&stack, 300);
    let lake = stack.lake_dir("lake");
    let sink_sections = format!(
        "[sink]\nroot = \"file://{}\"\ngroup_id = \"chaos\"\nrotate_interval = \"2s\"\n",
        lake.display()
    );
    let run = stack.spawn_run(0);
    let sink = stack.spawn_sink(0, &sink_sections);
    let mut h = Harness {
        stack,
        lake,
        sink_sections,
        run,
        sink,
        runs: 0,
        sinks: 0,
        follows: Vec::new(),
        followers: 0,
        unplanned: Vec::new(),
    };
    h.stack.db.sql("CREATE DATABASE followed");
    for i in 0..FOLLOWED.len() {
        let child = h.spawn_follow(i);
        h.follows.push(child);
    }

    let sock = h.stack.db.dir.join("mysqld.sock");
    let stop = AtomicBool::new(false);
    let (done, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut kills: BTreeMap<&str, usize> = BTreeMap::new();
    std::thread::scope(|scope| {
        // The workload: one transaction after another; a failed one (server down) is
        // skipped, the source's final state is what counts.
        scope.spawn(|| {
            let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let sql = ddl(n).map_or_else(|| operation(&mut rng, n), str::to_string);
                match try_sql(&sock, &sql) {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) if ddl(n).is_some() => {
                        n -= 1; // the DDL step must happen: retry it
                        std::thread::sleep(Duration::from_millis(200));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_millis(5));
            }
        });

        // The faults, in a seeded order.
        let mut rng = Rng(seed);
        let mut plan: Vec<&str> = [
            "run",
            "run-term",
            "sink",
            "sink-term",
            "follow",
            "follow-term",
            "broker",
            "mariadb",
            "binlog",
            "mysql-net",
            "kafka-net",
            "registry-net",
        ]
        .iter()
        .flat_map(|c| std::iter::repeat_n(*c, trials))
        .collect();
        for i in (1..plan.len()).rev() {
            plan.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for what in plan {
            std::thread::sleep(Duration::from_millis(500 + rng.below(2500)));
            h.supervise();
            match what {
                "run" => {
                    kill9(&mut h.run);
                    h.restart_run();
                }
                "sink" => {
                    kill9(&mut h.sink);
                    h.restart_sink();
                }
                // SIGTERM, as a supervisor stops a process: a stop that does not exit 0
                // within a minute is reported.
                "run-term" => {
                    let code = sigterm(&mut h.run);
                    let log = h.stack.run_log(h.runs);
                    h.note_stop(&format!("run-{}", h.runs), code, &log);
                    h.restart_run();
                }
                "sink-term" => {
                    let code = sigterm(&mut h.sink);
                    let log = h.stack.sink_log(h.sinks);
                    h.note_stop(&format!("sink-{}", h.sinks), code, &log);
                    h.restart_sink();
                }
                "follow" => {
                    let i = rng.below(FOLLOWED.len() as u64) as usize;
                    kill9(&mut h.follows[i].0);
                    h.restart_follow(i);
                }
                "follow-term" => {
                    let i = rng.below(FOLLOWED.len() as u64) as usize;
                    let code = sigterm(&mut h.follows[i].0);
                    let log = h.follow_log(i);
                    h.note_stop(&format!("rebuild --follow of {}", FOLLOWED[i]), code, &log);
                    h.restart_follow(i);
                }
                "broker" => h.stack.broker.kill9_restart(),
                "mysql-net" | "kafka-net" | "registry-net" => {
                    let net = match what {
                        "mysql-net" => &mysql_net,
                        "kafka-net" => &kafka_net,
                        _ => &registry_net,
                    };
                    // Cut every connection; or stall them (shorter than the timeouts); or
                    // blackhole for longer than MySQL's connect timeout (10 s), then cut
                    // what was held (a network that comes back resets what it dropped).
                    match rng.below(3) {
                        0 => net.cut(),
                        1 => {
                            net.set(Mode::Stall);
                            std::thread::sleep(Duration::from_millis(1000 + rng.below(4000)));
                            net.set(Mode::Pass);
                        }
                        _ => {
                            net.set(Mode::Blackhole);
                            net.cut();
                            std::thread::sleep(Duration::from_millis(12_000 + rng.below(6000)));
                            net.cut();
                            net.set(Mode::Pass);
                        }
                    }
                }
                "mariadb" => {
                    if let Some(pid) = mysqld_pid(&h.stack.db.dir) {
                        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                        while Command::new("kill")
                            .args(["-0", &pid.to_string()])
                            .status()
                            .is_ok_and(|s| s.success())
                        {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(rng.below(1500)));
                    h.stack.db.start_again();
                }
                _ => {
                    // Rotate, then purge what `run` has committed (never more).
                    let _ = try_sql(&sock, "FLUSH BINARY LOGS");
                    if let Some(f) = h.committed_file() {
                        let _ = try_sql(&sock, &format!("PURGE BINARY LOGS TO '{f}'"));
                    }
                }
            }
            *kills.entry(what).or_default() += 1;
            println!(
                "{:>6.1}s {what} fault; {} transactions so far",
                started.elapsed().as_secs_f64(),
                done.load(Ordering::Relaxed)
            );
        }
        // Let the last faults settle while the workload goes on, then stop it.
        std::thread::sleep(Duration::from_secs(3));
        h.supervise();
        stop.store(true, Ordering::Relaxed);
    });
    let (done, failed) = (done.into_inner(), failed.into_inner());
    println!("workload: {done} transactions, {failed} failed while a server was down");

    // Everything must converge: the topics, the lake, and tables rebuilt from the topics.
    let limit = Duration::from_secs(240);
    let topics = h.stack.wait_converged(&TABLES, limit);
    h.supervise();
    let lake_dir = h.lake.clone();
    let lake = h.stack.wait_converged_with(&TABLES, limit, "lake", || {
        h.stack.read_lake(&lake_dir, "parquet")
    });
    assert_eq!(
        lake["duplicate_changes"], 0,
        "a change twice in the lake: {lake}"
    );
    assert_eq!(lake["duplicate_offsets"], 0, "{lake}");
    assert_eq!(lake["stray_files"], 0, "{lake}");
    // The tables `rebuild --follow` kept current, across its kills, converge too.
    let start = Instant::now();
    for t in FOLLOWED {
        let name = t.split_once('.').map_or(t, |(_, n)| n);
        loop {
            h.supervise();
            let (followed, source) = (
                h.stack.source_table("followed", name),
                h.stack.source_table("app", name),
            );
            if followed == source {
                break;
            }
            assert!(
                start.elapsed() < limit,
                "{t} followed by `rebuild --follow` differs from the source after {limit:?}: \
                 {} rows against {}",
                followed.len(),
                source.len()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    for (i, table) in FOLLOWED.iter().enumerate() {
        let code = sigterm(&mut h.follows[i].0);
        let log = h.follow_log(i);
        h.note_stop(&format!("rebuild --follow of {table}"), code, &log);
    }
    h.stack.db.sql("CREATE DATABASE rebuilt");
    for t in TABLES {
        let into = format!("mysql://root:root@127.0.0.1:{}/rebuilt", h.stack.db.port);
        let r = support::cli::binlake(
            &[
                "rebuild",
                "--config",
                h.stack.config.to_str().expect("utf-8"),
                "--table",
                t,
                "--into",
                &into,
                "--create",
            ],
            Duration::from_secs(120),
        );
        assert_eq!(r.code, Some(0), "rebuild {t}: {}{}", r.stdout, r.stderr);
        let name = t.split_once('.').map_or(t, |(_, n)| n);
        assert_eq!(
            h.stack.source_table("rebuilt", name),
            h.stack.source_table("app", name),
            "{t} rebuilt from the topics differs from the source"
        );
    }
    println!(
        "chaos passed: seed {seed}, kills {kills:?}, {} run, {} sink and {} rebuild --follow \
         processes, {done} transactions, {} records read, {} replays dropped by the position \
         filter, {:.0} s; processes that exited by themselves: {:?}",
        h.runs + 1,
        h.sinks + 1,
        h.followers,
        topics["records"],
        topics["dropped"],
        started.elapsed().as_secs_f64(),
        h.unplanned
    );
    kill9(&mut h.sink);
    kill9(&mut h.run);
}
