//! README's first command, `deploy/local/quickstart.sh`, run as a user would (with this
//! build's binary instead of a release build, on free ports, in a temporary directory): it
//! must finish on its own with MariaDB, the topics (read with confluent-kafka) and the lake
//! (read with DuckDB) holding the same rows, and `--stop` must leave no process behind.

mod support;

use std::process::Command;

use support::mariadb::{free_port, unique_dir};

#[test]
fn the_quickstart_runs_the_pipeline_and_the_topics_and_lake_match_the_source() {
    let dir = unique_dir();
    let ports: Vec<String> = (0..5).map(|_| free_port().to_string()).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/quickstart.sh");
    let out = Command::new("bash")
        .args([script, "--stop"])
        .env("QUICKSTART_DIR", &dir)
        .env("STACK_BIN", env!("CARGO_BIN_EXE_binlake"))
        .env("STACK_MYSQL_PORT", &ports[0])
        .env("STACK_KAFKA_PORT", &ports[1])
        .env("STACK_REGISTRY_PORT", &ports[2])
        .env("STACK_RUN_METRICS_PORT", &ports[3])
        .env("STACK_SINK_METRICS_PORT", &ports[4])
        .output()
        .expect("run quickstart.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    assert!(
        out.status.success(),
        "quickstart failed\n{stdout}\n{stderr}\nrun.log:\n{}\nsink.log:\n{}",
        logs("run.log"),
        logs("sink.log")
    );
    assert!(stdout.contains("every table matches"), "{stdout}");
    for t in ["shop.customers", "shop.orders", "shop.all_types"] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(t))
            .unwrap_or_else(|| panic!("no line for {t}: {stdout}"));
        let counts: Vec<&str> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .collect();
        assert!(
            counts.len() == 3 && counts.iter().all(|c| *c == counts[0]) && counts[0] != "0",
            "{line}"
        );
    }
    // --stop ended every process the stack started.
    let status = Command::new("bash")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/stack.sh"),
            "status",
            dir.to_str().expect("utf-8"),
        ])
        .output()
        .expect("stack.sh status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(!text.contains("running"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
