//! `binlake rebuild` against real servers: MariaDB → `binlake run` → Apache Kafka + `binlake
//! registry` → `binlake rebuild` → a second database on MariaDB (or a Parquet snapshot read by
//! DuckDB), compared with the source tables by CHECKSUM TABLE, row by row, and by their
//! column definitions.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::stack::Stack;
use support::workload::{initial_rows, schema, sigterm, workload, Rng, TABLES};

/// Runs `binlake rebuild` to its end (whatever its exit code).
fn rebuild(stack: &Stack, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_binlake"))
        .arg("rebuild")
        .args(["--config", stack.config.to_str().expect("utf-8 path")])
        .args(args)
        .env("BINLAKE_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run binlake rebuild")
}

fn into(stack: &Stack, db: &str) -> String {
    format!("mysql://root:root@127.0.0.1:{}/{db}", stack.db.port)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `CHECKSUM TABLE` of `db.table`.
fn checksum(stack: &Stack, table: &str) -> String {
    let rows = stack.db.query_rows(&format!("CHECKSUM TABLE {table}"));
    rows.first()
        .and_then(|r| r.get(1))
        .cloned()
        .unwrap_or_default()
}

/// Column definitions as SHOW CREATE TABLE prints them (defaults aside: rebuild carries
/// types, not defaults), and the primary key line.
fn definitions(stack: &Stack, table: &str) -> Vec<String> {
    let rows = stack.db.query_rows(&format!("SHOW CREATE TABLE {table}"));
    let ddl = rows
        .first()
        .and_then(|r| r.get(1))
        .cloned()
        .unwrap_or_default();
    ddl.split("\\n")
        .map(str::trim)
        .filter(|l| l.starts_with('`') || l.starts_with("PRIMARY KEY"))
        .map(|l| match l.find(" DEFAULT ") {
            Some(i) => l[..i].to_string(),
            None => l.trim_end_matches(',').to_string(),
        })
        .collect()
}

/// information_schema's view of the columns: name, type, nullability, charset, collation.
fn columns(stack: &Stack, db: &str, table: &str) -> Vec<Vec<String>> {
    stack.db.query_rows(&format!(
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, COLLATION_NAME \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{table}' \
         ORDER BY ORDINAL_POSITION"
    ))
}

fn assert_same_table(stack: &Stack, src: &str, dst: &str) {
    let (sdb, st) = src.split_once('.').expect("db.table");
    let (ddb, dt) = dst.split_once('.').expect("db.table");
    assert_eq!(
        checksum(stack, src),
        checksum(stack, dst),
        "CHECKSUM TABLE {src} vs {dst}"
    );
    assert_eq!(
        stack.source_table(sdb, st),
        stack.source_table(ddb, dt),
        "rows of {src} vs {dst}"
    );
    assert_eq!(
        columns(stack, sdb, st),
        columns(stack, ddb, dt),
        "{src} vs {dst}"
    );
    assert_eq!(
        definitions(stack, src),
        definitions(stack, dst),
        "{src} vs {dst}"
    );
}

#[test]
fn rebuild_create_gives_tables_identical_to_the_sources_also_after_compaction() {
    let mut stack = Stack::start(true, "", "");
    schema(&stack);
    initial_rows(&stack, 300);
    stack.db.sql(
        "CREATE TABLE app.hot (id INT PRIMARY KEY, n INT, note VARCHAR(20) CHARACTER SET latin1 \
         COLLATE latin1_german1_ci) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
         INSERT INTO app.hot VALUES (1,0,'ä'),(2,0,NULL),(3,0,'x'),(4,0,''),(5,0,'Grüße');",
    );
    let mut tables = TABLES.to_vec();
    tables.push("app.hot");
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&tables, Duration::from_secs(120));
    let mut rng = Rng(0x6e6);
    workload(&stack, &mut rng, 300, 300);
    for i in 0..60 {
        stack.db.sql(&format!(
            "UPDATE app.hot SET n = n + 1; DELETE FROM app.hot WHERE id = {}",
            100 + i
        ));
        stack.db.sql(&format!(
            "INSERT INTO app.hot VALUES ({}, {i}, 'tmp')",
            100 + i + 1
        ));
    }
    // One more change after segment.ms rolls the segments that hold the others (the cleaner
    // leaves the active segment alone).
    std::thread::sleep(Duration::from_millis(500));
    stack.db.sql("UPDATE app.hot SET n = n + 1");
    stack.wait_converged(&tables, Duration::from_secs(180));
    // A broker restart on the way; the log cleaner compacts the topics.
    stack.broker.restart();
    workload(&stack, &mut rng, 200, 300);
    stack.wait_compacted(&tables, "cdc.app.hot", Duration::from_secs(180));
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(0));

    stack.db.sql("CREATE DATABASE restore");
    for t in &tables {
        let out = rebuild(
            &stack,
            &[
                "--table",
                t,
                "--into",
                &into(&stack, "restore"),
                "--create",
                "--verify",
            ],
        );
        let err = stderr(&out);
        assert!(out.status.success(), "rebuild {t}: {err}");
        assert!(
            err.contains("rebuilt ") && err.contains("verified: "),
            "{err}"
        );
        let name = t.split_once('.').map(|(_, n)| n).unwrap_or_default();
        assert_same_table(&stack, t, &format!("restore.{name}"));
    }
    // Twice: the same table (the second run replaces the rows of the existing table).
    let first = checksum(&stack, "restore.all_types");
    let out = rebuild(
        &stack,
        &[
            "--table",
            "app.all_types",
            "--into",
            &into(&stack, "restore"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(checksum(&stack, "restore.all_types"), first);
    let leftovers = stack.db.query_rows(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'restore' \
         AND TABLE_NAME LIKE '\\_%'",
    );
    assert!(leftovers.is_empty(), "staging tables left: {leftovers:?}");

    // --verify names the keys that differ (the source changed; nothing captures it now).
    let id = stack
        .db
        .query_rows("SELECT id FROM app.composite ORDER BY id LIMIT 1")[0][0]
        .clone();
    stack.db.sql(&format!(
        "UPDATE app.composite SET v = v + 1000 WHERE id = {id}; DELETE FROM app.hot WHERE id = 1"
    ));
    for (t, key) in [
        ("app.composite", format!("({id},")),
        ("app.hot", "(1)".to_string()),
    ] {
        let out = rebuild(
            &stack,
            &["--table", t, "--into", &into(&stack, "restore"), "--verify"],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("DIFFERENT") && err.contains(&key), "{err}");
    }

    // Without --create, a missing table is an error that says so.
    let out = rebuild(
        &stack,
        &["--table", "app.nopk", "--into", &into(&stack, "other")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--create"), "{}", stderr(&out));
    // The captured source table itself is never replaced.
    let out = rebuild(&stack, &["--table", "app.hot"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is the source table"),
        "{}",
        stderr(&out)
    );
}

/// Waits until restore.all_types equals app.all_types (3 minutes at most).
fn wait_followed(stack: &Stack, follow_log: &dyn Fn() -> String) {
    let start = Instant::now();
    loop {
        let want = stack.source_table("app", "all_types");
        let got = if stack
            .db
            .query_rows("SHOW TABLES IN restore LIKE 'all_types'")
            .is_empty()
        {
            Vec::new()
        } else {
            stack.source_table("restore", "all_types")
        };
        if got == want {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "restore.all_types did not converge ({} vs {} rows)\n{}",
            got.len(),
            want.len(),
            follow_log()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn follow_converges_to_the_source_while_it_changes_also_across_add_column_and_restarts() {
    let mut stack = Stack::start(false, "", "");
    schema(&stack);
    initial_rows(&stack, 200);
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&TABLES, Duration::from_secs(120));
    stack.db.sql("CREATE DATABASE restore");
    let log = std::fs::File::create(stack.db.dir.join("follow.log")).expect("log");
    let mut follow = Command::new(env!("CARGO_BIN_EXE_binlake"))
        .arg("rebuild")
        .args(["--config", stack.config.to_str().expect("utf-8 path")])
        .args([
            "--table",
            "app.all_types",
            "--into",
            &into(&stack, "restore"),
            "--create",
        ])
        .args(["--follow", "--writers", "2", "--batch-rows", "50"])
        .env("BINLAKE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn binlake rebuild --follow");
    let follow_log =
        || std::fs::read_to_string(stack.db.dir.join("follow.log")).unwrap_or_default();
    let mut rng = Rng(0xf011);
    for _ in 0..6 {
        workload(&stack, &mut rng, 100, 200);
    }
    wait_followed(&stack, &follow_log);
    // The target server restarts (a rebuild again, after a wait) and the broker restarts
    // (waited for): the target converges again.
    stack.db.stop();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        follow.try_wait().ok().flatten().is_none(),
        "rebuild --follow stopped while the target was away:\n{}",
        follow_log()
    );
    stack.db.start_again();
    stack.broker.restart();
    workload(&stack, &mut rng, 100, 200);
    // A column added at the source is added to the target.
    stack.db.sql(
        "ALTER TABLE app.all_types ADD COLUMN extra DECIMAL(7,3) NULL;
         UPDATE app.all_types SET extra = id / 8 WHERE id % 5 = 0;",
    );
    // The writer stopped: the target converges to the source.
    wait_followed(&stack, &follow_log);
    assert!(
        follow_log().contains("rebuilding again"),
        "{}",
        follow_log()
    );
    assert_eq!(
        checksum(&stack, "app.all_types"),
        checksum(&stack, "restore.all_types")
    );
    assert_eq!(
        columns(&stack, "app", "all_types"),
        columns(&stack, "restore", "all_types")
    );
    assert_eq!(sigterm(&mut follow), Some(0), "{}", follow_log());
    assert!(
        follow_log().contains("rebuilt app.all_types"),
        "{}",
        follow_log()
    );
    assert_eq!(sigterm(&mut run), Some(0));
}

#[test]
fn a_parquet_snapshot_equals_the_source_and_foreign_topics_are_refused() {
    let stack = Stack::start(false, "", "");
    schema(&stack);
    initial_rows(&stack, 150);
    let mut run = stack.spawn_run(0);
    let mut rng = Rng(0x5a9);
    workload(&stack, &mut rng, 200, 150);
    stack.wait_converged(&TABLES, Duration::from_secs(120));
    let lake = stack.lake_dir("snapshots");
    for t in TABLES {
        let dir = format!("file://{}/{}", lake.display(), t.replace('.', "/"));
        // Twice: the second replaces the first.
        for _ in 0..2 {
            let out = rebuild(&stack, &["--table", t, "--into", &dir]);
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
    let stats = stack.wait_converged_with(&TABLES, Duration::from_secs(10), "snapshot", || {
        stack.read_lake(&lake, "parquet")
    });
    assert_eq!(
        stats["deleted"], 0,
        "a snapshot holds live rows only: {stats}"
    );
    let names: Vec<String> = std::fs::read_dir(lake.join("app"))
        .expect("snapshot dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "temporary dirs left: {names:?}"
    );

    // Not a binlake table topic: no schema in the registry, a key not in the wire format,
    // no such topic.
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", stack.broker.bootstrap())
        .create()
        .expect("producer");
    let send = |topic: &str, key: &[u8]| {
        producer
            .send(
                rdkafka::producer::BaseRecord::to(topic)
                    .key(key)
                    .payload("{\"a\":1}"),
            )
            .expect("send");
        rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).expect("flush");
    };
    send("plain", b"k1");
    let out = rebuild(&stack, &["--topic", "plain", "--into", &into(&stack, "x")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a binlake table topic"),
        "{}",
        stderr(&out)
    );
    send("cdc.app.composite", b"not avro");
    let out = rebuild(
        &stack,
        &[
            "--table",
            "app.composite",
            "--into",
            &into(&stack, "x"),
            "--create",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Confluent wire format"),
        "{}",
        stderr(&out)
    );
    let out = rebuild(
        &stack,
        &["--topic", "cdc.app.nothing", "--into", &into(&stack, "x")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert_eq!(sigterm(&mut run), Some(0));
}
