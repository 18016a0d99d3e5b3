//! `binlake run` against real MariaDB, a real Apache Kafka and `binlake
//! registry`; the topics are read back by an independent client (Python confluent-kafka with
//! its AvroDeserializer and SchemaRegistryClient) and compared value by value with the
//! source tables.

mod support;

use std::time::{Duration, Instant};

use support::stack::Stack;
use support::workload::{
    all_types_row, initial_rows, schema, sigterm, wait_exit, workload, Rng, TABLES,
};

#[test]
fn snapshot_then_stream_gives_the_source_tables_to_an_independent_reader() {
    let stack = Stack::start(false, "", "");
    schema(&stack);
    initial_rows(&stack, 400);
    let mut run = stack.spawn_run(0);
    let mut rng = Rng(0x5eed_0001);
    workload(&stack, &mut rng, 300, 400);
    stack.wait_converged(&TABLES, Duration::from_secs(120));
    // Streaming only, now that the snapshot is done.
    workload(&stack, &mut rng, 300, 400);
    let stats = stack.wait_converged(&TABLES, Duration::from_secs(120));
    assert_eq!(stats["duplicate_positions"], 0, "{stats}");
    assert_eq!(
        stats["misplaced"], 0,
        "murmur2 placement, as Java clients: {stats}"
    );
    assert!(stats["tombstones"].as_u64().unwrap_or(0) > 0, "{stats}");
    let code = sigterm(&mut run);
    assert_eq!(
        code,
        Some(0),
        "SIGTERM exits cleanly:\n{}",
        stack.run_log(0)
    );
    let log = stack.run_log(0);
    assert!(log.contains("flushed and committed"), "{log}");
}

fn kill9(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Inserts `n` more all_types rows (ids from `from`), 200 per statement.
fn bulk_rows(stack: &Stack, from: u64, n: u64) {
    let ids: Vec<u64> = (from..from + n).collect();
    for chunk in ids.chunks(200) {
        let rows: Vec<String> = chunk.iter().map(|&i| all_types_row(i)).collect();
        stack.db.sql(&format!(
            "INSERT INTO app.all_types VALUES {}",
            rows.join(",")
        ));
    }
}

#[test]
fn kill_9_during_snapshot_and_streaming_loses_and_duplicates_nothing() {
    let seed = std::env::var("CRASH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00c0_ffee_u64);
    println!("seed {seed:#x} (replay with CRASH_TEST_SEED={seed})");
    let stack = Stack::start(
        false,
        "",
        "[snapshot]\nchunk_size = 200\nparallelism = 2\nmax_in_flight_chunks = 2\n",
    );
    schema(&stack);
    initial_rows(&stack, 400);
    bulk_rows(&stack, 10_000, 12_000);
    let mut rng = Rng(seed | 1);
    let trials = 6;
    for n in 0..trials {
        let mut run = stack.spawn_run(n);
        let until = Instant::now() + Duration::from_millis(300 + rng.below(2500));
        while Instant::now() < until {
            workload(&stack, &mut rng, 10, 400);
        }
        kill9(&mut run);
        let log = stack.run_log(n);
        assert!(!log.contains("panicked"), "trial {n}:\n{log}");
        for l in log
            .lines()
            .filter(|l| !l.contains(" INFO ") || l.contains("resum") || l.contains("fence"))
        {
            println!("trial {n}: {l}");
        }
    }
    let mut run = stack.spawn_run(trials);
    workload(&stack, &mut rng, 200, 400);
    let stats = stack.wait_converged(&TABLES, Duration::from_secs(240));
    println!("reader: {stats}");
    assert_eq!(stats["duplicate_positions"], 0, "{stats}");
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(trials));
    // The restarts resumed rather than starting over every time.
    let resumed = (1..=trials)
        .filter(|n| stack.run_log(*n).contains("resume"))
        .count();
    assert!(resumed > 0, "{}", stack.run_log(trials));
}

fn http(method: &str, url: &str, body: Option<&str>) -> String {
    let mut args = vec!["-s", "-X", method, url];
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = std::process::Command::new("curl")
        .args(&args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn schema_changes_follow_the_registry_compatibility_level() {
    // Positions in a local file this time (the restart below resumes from it).
    let offsets = support::mariadb::unique_dir().with_extension("offsets.json");
    let stack = Stack::start(
        false,
        &format!(
            "offsets = \"file\"\noffsets_file = \"{}\"",
            offsets.display()
        ),
        "",
    );
    stack.db.sql(
        "CREATE DATABASE app;
         CREATE TABLE app.evolve (id INT PRIMARY KEY, v INT);
         CREATE TABLE app.other (id INT PRIMARY KEY, w INT);
         INSERT INTO app.evolve VALUES (1, 10), (2, 20);
         INSERT INTO app.other VALUES (1, 1);",
    );
    let tables = ["app.evolve", "app.other"];
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&tables, Duration::from_secs(60));
    // A nullable column: allowed under BACKWARD (the default level).
    stack.db.sql(
        "ALTER TABLE app.evolve ADD COLUMN note VARCHAR(20) NULL;
         INSERT INTO app.evolve VALUES (3, 30, 'three');
         UPDATE app.evolve SET note = 'one' WHERE id = 1;",
    );
    stack.wait_converged(&tables, Duration::from_secs(60));
    let subject = format!(
        "{}/subjects/cdc.app.evolve-value/versions",
        stack.registry_url()
    );
    assert_eq!(http("GET", &subject, None), "[1,2]");
    // A NOT NULL column has no default in Avro: BACKWARD forbids it. binlake stops before
    // writing anything of the table past the DDL.
    stack.db.sql(
        "ALTER TABLE app.evolve ADD COLUMN must INT NOT NULL DEFAULT 7;
         INSERT INTO app.evolve VALUES (4, 40, 'four', 8);
         INSERT INTO app.other VALUES (2, 2);",
    );
    let code = wait_exit(&mut run, Duration::from_secs(60));
    let log = stack.run_log(0);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("column `must` was added as NOT NULL")
            && log.contains("Nothing of this table was written past the DDL")
            && log.contains("/config/cdc.app.evolve-value"),
        "{log}"
    );
    let seen = stack.read_topics();
    let ids: Vec<&str> = seen["tables"]["app.evolve"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["1", "2", "3"], "no row past the DDL: {seen}");
    assert_eq!(http("GET", &subject, None), "[1,2]");
    let committed = std::fs::read_to_string(&offsets).expect("the offsets file");
    assert!(committed.contains("\"last\""), "{committed}");
    // The user relaxes the subject's level as the error says; the restart resumes at the DDL.
    http(
        "PUT",
        &format!("{}/config/cdc.app.evolve-value", stack.registry_url()),
        Some(r#"{"compatibility":"NONE"}"#),
    );
    let mut run = stack.spawn_run(1);
    // The DDL's default reached existing rows without row events (as in every binlog
    // reader): touch them so that the topic carries it.
    stack.db.sql("UPDATE app.evolve SET v = v + 1");
    let stats = stack.wait_converged(&tables, Duration::from_secs(60));
    assert_eq!(stats["duplicate_positions"], 0, "{stats}");
    assert_eq!(http("GET", &subject, None), "[1,2,3]");
    assert_eq!(sigterm(&mut run), Some(0));
    let log = stack.run_log(1);
    assert!(log.contains("resume=Some"), "{log}");
    let _ = std::fs::remove_file(&offsets);
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn broker_down_for_30_s_then_restarted_and_compacted_loses_nothing() {
    let stack = Stack::start(true, "", "");
    let mut stack = stack;
    schema(&stack);
    initial_rows(&stack, 300);
    stack.db.sql(
        "CREATE TABLE app.hot (id INT PRIMARY KEY, n INT);
         INSERT INTO app.hot VALUES (1,0),(2,0),(3,0),(4,0),(5,0),(6,0),(7,0),(8,0),(9,0),(10,0);",
    );
    let mut tables = TABLES.to_vec();
    tables.push("app.hot");
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&tables, Duration::from_secs(120));
    for _ in 0..100 {
        stack.db.sql("UPDATE app.hot SET n = n + 1");
    }
    // One more change after segment.ms: it rolls the segments that hold the others, and the
    // active segment is the only one the cleaner leaves alone.
    std::thread::sleep(Duration::from_millis(500));
    stack.db.sql("UPDATE app.hot SET n = n + 1");
    let before = stack.wait_converged(&tables, Duration::from_secs(120));
    // 10 inserts and 101 updates of each of the 10 rows.
    assert_eq!(before["written"]["cdc.app.hot"], 1020, "{before}");

    stack.broker.stop();
    let mut rng = Rng(0xb0b);
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(30) {
        workload(&stack, &mut rng, 20, 300);
        assert!(
            run.try_wait().ok().flatten().is_none(),
            "binlake run gave up: {}",
            stack.run_log(0)
        );
    }
    let rss_mb = rss_kb(run.id()) / 1024;
    stack.broker.restart();
    workload(&stack, &mut rng, 50, 300);
    // The broker's log cleaner compacts the topics (it runs every 100 ms on this broker).
    let after = stack.wait_compacted(&tables, "cdc.app.hot", Duration::from_secs(180));
    println!(
        "hot records: {} of {} written; peak RSS {rss_mb} MB",
        after["per_topic"]["cdc.app.hot"], after["written"]["cdc.app.hot"]
    );
    assert_eq!(after["duplicate_positions"], 0, "{after}");
    assert!(
        rss_mb < 300,
        "peak RSS {rss_mb} MB while the broker was down"
    );
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(0));
}

#[test]
fn registry_basic_auth_is_used_and_a_wrong_password_is_named() {
    let mut stack = Stack::start(false, "", "username = \"cdc\"\npassword = \"s3cret\"\n");
    stack.registry_auth = Some("cdc:s3cret".into());
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 1), (2, 2);",
    );
    // A wrong password: one clear error, nothing written.
    let text = std::fs::read_to_string(&stack.config).expect("config");
    let wrong = stack.db.dir.join("wrong.toml");
    std::fs::write(&wrong, text.replace("s3cret", "nope")).expect("config");
    let run = support::cli::binlake(
        &["run", "--config", wrong.to_str().expect("path")],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("HTTP 401") && run.stderr.contains("registry.username"),
        "{}",
        run.stderr
    );
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(60));
    assert_eq!(sigterm(&mut run), Some(0));
}

#[test]
fn mysql_restart_mid_stream_is_retried_and_nothing_is_lost() {
    let stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 1), (2, 2);",
    );
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(60));
    stack.db.stop();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        run.try_wait().ok().flatten().is_none(),
        "binlake run gave up at once: {}",
        stack.run_log(0)
    );
    stack.db.start_again();
    stack
        .db
        .sql("INSERT INTO app.t VALUES (3, 3); UPDATE app.t SET v = 10 WHERE id = 1;");
    let stats = stack.wait_converged(&["app.t"], Duration::from_secs(90));
    assert_eq!(stats["duplicate_positions"], 0, "{stats}");
    let log = stack.run_log(0);
    assert!(log.contains("reconnecting"), "{log}");
    assert_eq!(sigterm(&mut run), Some(0), "{log}");
}

/// MariaDB away when `run` starts with a saved position (start-up reads the server's binlog
/// list): `run` waits for it as it does mid-stream, instead of stopping.
#[test]
fn a_server_away_at_start_up_is_waited_for() {
    let stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 1);",
    );
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(60));
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(0));
    stack.db.stop();
    let mut run = stack.spawn_run(1);
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        run.try_wait().ok().flatten().is_none(),
        "run stopped while MariaDB was away at start-up:\n{}",
        stack.run_log(1)
    );
    stack.db.start_again();
    stack
        .db
        .sql("INSERT INTO app.t VALUES (2, 2); UPDATE app.t SET v = 10 WHERE id = 1;");
    let stats = stack.wait_converged(&["app.t"], Duration::from_secs(90));
    assert_eq!(stats["duplicate_positions"], 0, "{stats}");
    let log = stack.run_log(1);
    assert!(log.contains("start-up failed; retrying"), "{log}");
    assert_eq!(sigterm(&mut run), Some(0), "{log}");
}

#[test]
fn an_existing_topic_that_is_not_compacted_is_refused_unless_allowed() {
    let stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 1);",
    );
    support::broker::create_topic(
        &stack.broker.bootstrap(),
        "cdc.app.t",
        3,
        &[("cleanup.policy", "delete")],
    );
    let run = support::cli::binlake(
        &["run", "--config", stack.config.to_str().expect("path")],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cdc.app.t exists with cleanup.policy=delete")
            && run.stderr.contains("allow_non_compacted"),
        "{}",
        run.stderr
    );
}

#[test]
fn binlake_snapshot_repairs_a_table_changed_outside_the_binlog() {
    let admin = support::mariadb::free_port();
    let stack = Stack::start(
        false,
        "",
        &format!("[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"t0ken\"\n"),
    );
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 1), (2, 2), (3, 3);",
    );
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(60));
    // A change that never reaches the binlog: the topic cannot know it.
    stack
        .db
        .sql("SET SESSION sql_log_bin = 0; UPDATE app.t SET v = 20 WHERE id = 2; DELETE FROM app.t WHERE id = 3;");
    let seen = stack.read_topics();
    assert_eq!(seen["tables"]["app.t"].as_array().map(Vec::len), Some(3));
    let asked = support::cli::binlake(
        &[
            "snapshot",
            "--config",
            stack.config.to_str().expect("path"),
            "--table",
            "app.t",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(asked.code, Some(0), "{}{}", asked.stdout, asked.stderr);
    // The re-read rows fix v of id 2. Row 3 is gone from the table but not from the topic: a
    // snapshot reads rows, it cannot see deletions.
    let start = Instant::now();
    loop {
        let seen = stack.read_topics();
        let v2 = seen["tables"]["app.t"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["id"] == "2"))
            .map(|r| r["v"].clone());
        if v2 == Some(serde_json::json!("20")) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not repaired: {seen}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(sigterm(&mut run), Some(0));
}

/// The registry away for a few seconds while `run` needs it (a DDL's new schema): `run`
/// waits for it (retrying with backoff) instead of stopping, and nothing is lost.
#[test]
fn a_registry_away_for_a_few_seconds_is_waited_for() {
    let mut stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 1);",
    );
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(60));
    stack.stop_registry();
    stack
        .db
        .sql("ALTER TABLE app.t ADD COLUMN w INT; INSERT INTO app.t VALUES (2, 2, 2);");
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        run.try_wait().ok().flatten().is_none(),
        "run stopped while the registry was away:\n{}",
        stack.run_log(0)
    );
    stack.start_registry();
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    assert!(
        stack
            .run_log(0)
            .contains("the schema registry did not answer; retrying"),
        "{}",
        stack.run_log(0)
    );
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(0));
}

#[test]
fn a_broker_or_server_that_stays_away_is_a_clear_error_after_the_configured_wait() {
    // Kafka gone for good: the records wait message_timeout_secs, then binlake stops without
    // committing past them.
    let mut stack = Stack::start(false, "", "");
    let text = std::fs::read_to_string(&stack.config).expect("config");
    std::fs::write(
        &stack.config,
        text.replace("message_timeout_secs = 120", "message_timeout_secs = 5")
            .replace("retry_secs = 120", "retry_secs = 3"),
    )
    .expect("config");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 1);",
    );
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(60));
    stack.broker.stop();
    stack.db.sql("INSERT INTO app.t VALUES (2, 2)");
    let code = wait_exit(&mut run, Duration::from_secs(120));
    let log = stack.run_log(0);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("the position was not committed past it"),
        "{log}"
    );

    // MySQL gone for good: reconnects for retry_secs, then one error naming the server.
    stack.broker.restart();
    let mut run = stack.spawn_run(1);
    let start = Instant::now();
    while !stack.run_log(1).contains("starting binlog stream") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            stack.run_log(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stack.db.stop();
    let code = wait_exit(&mut run, Duration::from_secs(120));
    let log = stack.run_log(1);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("stayed unreachable for 3s"), "{log}");
}

#[test]
fn an_https_registry_needs_its_ca_and_works_with_it() {
    let stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 1), (2, 2);",
    );
    let (ca, cert, key) = support::certs::make_certs(&stack.db.dir);
    let port = support::mariadb::free_port();
    let proxy = std::process::Command::new("python3")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/tls_proxy.py"),
            cert.to_str().expect("path"),
            key.to_str().expect("path"),
            &port.to_string(),
            &stack.registry_url(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tls proxy");
    // Stopped even when an assertion below fails.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _proxy = Kill(proxy);
    support::broker::wait_for_port(port, Duration::from_secs(20), "tls proxy");
    let text = std::fs::read_to_string(&stack.config).expect("config");
    let https = text.replace(&stack.registry_url(), &format!("https://127.0.0.1:{port}"));
    // Without the CA: one error that names the certificate problem and the setting.
    std::fs::write(&stack.config, &https).expect("config");
    let run = support::cli::binlake(
        &["run", "--config", stack.config.to_str().expect("path")],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("registry.ca_file")
            && run.stderr.to_lowercase().contains("certificate"),
        "{}",
        run.stderr
    );
    // With it: the pipeline runs through TLS.
    std::fs::write(
        &stack.config,
        https.replace(
            "[registry]\n",
            &format!("[registry]\nca_file = \"{}\"\n", ca.display()),
        ),
    )
    .expect("config");
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(60));
    assert_eq!(sigterm(&mut run), Some(0));
}
