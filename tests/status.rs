//! `binlake status` and `binlake config` against real servers (MariaDB, Apache Kafka,
//! `binlake registry`): the committed position `run` left, the lag that grows while it is
//! stopped, a purged position (exit 1), and a printed config without its secrets.

mod support;

use std::time::Duration;

use support::cli::binlake;
use support::stack::Stack;
use support::workload::{initial_rows, schema, sigterm, workload, Rng, TABLES};

#[test]
fn status_shows_the_committed_position_the_lag_and_a_purge() {
    let stack = Stack::start(false, "", "");
    schema(&stack);
    initial_rows(&stack, 100);
    let config = stack.config.to_str().expect("utf-8 path").to_string();
    let status = |json: bool| {
        let mut args = vec!["status", "--config", &config];
        if json {
            args.push("--json");
        }
        binlake(&args, Duration::from_secs(60))
    };

    // Nothing committed yet.
    let r = status(false);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("committed:  nothing yet"), "{}", r.stdout);

    let mut run = stack.spawn_run(0);
    stack.wait_converged(&TABLES, Duration::from_secs(120));
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_logs_tail());
    let r = status(true);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let s: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    let committed = s["committed"]
        .as_str()
        .expect("a committed position")
        .to_string();
    assert!(committed.starts_with("mysql-bin.000001:"), "{s}");
    assert_eq!(s["snapshot_complete"], true, "{s}");
    assert_eq!(s["snapshot"].as_array().map(Vec::len), Some(3), "{s}");
    assert_eq!(s["purged"], false);
    // SIGTERM committed everything: at most the end of the last transaction is left.
    let before = s["behind_bytes"].as_u64().expect("bytes behind");
    assert!(before < 1000, "{s}");

    // While run is stopped the source moves on: the lag grows.
    workload(&stack, &mut Rng(7), 200, 100);
    let s: serde_json::Value = serde_json::from_str(&status(true).stdout).expect("JSON");
    let after = s["behind_bytes"].as_u64().expect("bytes behind");
    assert!(after > before + 10_000, "{before} -> {after}: {s}");
    assert_eq!(s["committed"].as_str(), Some(committed.as_str()));
    let text = status(false).stdout;
    assert!(
        text.contains(&format!("behind:     {after} bytes of binlog, 0 file(s)")),
        "{text}"
    );

    // The position's binlog purged: run cannot resume, and status says so with exit 1.
    stack.db.sql("FLUSH BINARY LOGS");
    let newest = stack.db.query_rows("SHOW MASTER STATUS")[0][0].clone();
    stack.db.purge_to(&newest);
    let r = status(false);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("PURGED"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!("oldest file {newest}")),
        "{}",
        r.stdout
    );
}

#[test]
fn config_prints_the_defaults_and_a_file_without_its_secrets() {
    let dir = std::env::temp_dir().join(format!("binlake-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let defaults = binlake(&["config", "--print-defaults"], Duration::from_secs(30));
    assert_eq!(defaults.code, Some(0), "{}", defaults.stderr);
    // The printed defaults are a valid config.
    let path = dir.join("defaults.toml");
    std::fs::write(&path, &defaults.stdout).expect("write");
    let again = binlake(
        &["config", "--config", path.to_str().expect("utf-8")],
        Duration::from_secs(30),
    );
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(
        again.stdout.contains("ready_lag_secs = 10"),
        "{}",
        again.stdout
    );

    let secret = dir.join("secret.toml");
    std::fs::write(
        &secret,
        "[mysql]\npassword = \"hunter2-xyz\"\n\n[kafka.properties]\n\"sasl.password\" = \"k4fka-pw\"\n",
    )
    .expect("write");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_binlake"));
    let out = cmd
        .args(["config", "--config", secret.to_str().expect("utf-8")])
        .env("BINLAKE_KAFKA__BROKERS", "k1:9092,k2:9092")
        .output()
        .expect("run binlake config");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("hunter2-xyz") && !text.contains("k4fka-pw"),
        "{text}"
    );
    assert!(text.contains("password = \"***\""), "{text}");
    // Environment overrides are applied.
    assert!(text.contains("brokers = \"k1:9092,k2:9092\""), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A broker that accepts connections but never answers (stopped with SIGSTOP) gives one
/// clear error in bounded time, not a hang.
#[test]
fn status_against_a_stalled_broker_is_a_clear_error_not_a_hang() {
    let stack = Stack::start(false, "", "");
    schema(&stack);
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&TABLES, Duration::from_secs(120));
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_logs_tail());
    let broker = stack.broker.pid(0).to_string();
    let signal = |s: &str| {
        let _ = std::process::Command::new("kill")
            .args([s, &broker])
            .status();
    };
    signal("-STOP");
    let config = stack.config.to_str().expect("utf-8 path").to_string();
    let started = std::time::Instant::now();
    let r = binlake(&["status", "--config", &config], Duration::from_secs(240));
    let took = started.elapsed();
    signal("-CONT");
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("no answer within") || r.stderr.contains("waited"),
        "{}",
        r.stderr
    );
    println!("status gave up after {took:?}: {}", r.stderr.trim());

    // The same for MySQL.
    let pid = std::fs::read_to_string(stack.db.dir.join("mysqld.pid")).expect("mysqld.pid");
    let mysql = |s: &str| {
        let _ = std::process::Command::new("kill")
            .args([s, pid.trim()])
            .status();
    };
    mysql("-STOP");
    let started = std::time::Instant::now();
    let r = binlake(&["status", "--config", &config], Duration::from_secs(240));
    let took = started.elapsed();
    mysql("-CONT");
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("no answer within") && r.stderr.contains("MySQL"),
        "{}",
        r.stderr
    );
    println!("status gave up after {took:?}: {}", r.stderr.trim());
}
