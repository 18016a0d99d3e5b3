//! `binlake sink` against real servers: MariaDB → `binlake run` → Apache Kafka + `binlake registry`
//! → `binlake sink` → a file:// lake, read back by independent readers (DuckDB for Parquet,
//! fastavro for Avro) and compared value by value with the source tables.

mod support;

use std::time::Duration;

use support::stack::Stack;
use support::workload::{initial_rows, schema, sigterm, workload, Rng, TABLES};

fn sink_config(root: &std::path::Path, format: &str, group: &str, extra: &str) -> String {
    format!(
        "[sink]\nroot = \"file://{}\"\nformat = \"{format}\"\ngroup_id = \"{group}\"\n\
         rotate_interval = \"2s\"\n{extra}\n",
        root.display()
    )
}

#[test]
fn snapshot_and_stream_land_in_parquet_and_avro_lakes_that_equal_the_source() {
    let stack = Stack::start(false, "", "");
    schema(&stack);
    initial_rows(&stack, 200);
    let mut run = stack.spawn_run(0);
    let parquet = stack.lake_dir("lake-parquet");
    let avro = stack.lake_dir("lake-avro");
    let mut sink_p = stack.spawn_sink(0, &sink_config(&parquet, "parquet", "lake-p", ""));
    let mut sink_a = stack.spawn_sink(
        1,
        &sink_config(&avro, "avro", "lake-a", "compression = \"snappy\""),
    );
    let read_parquet = || stack.read_lake(&parquet, "parquet");
    stack.wait_converged_with(&TABLES, Duration::from_secs(120), "lake", read_parquet);
    let mut rng = Rng(0x5eed);
    workload(&stack, &mut rng, 400, 200);
    let stats = stack.wait_converged_with(&TABLES, Duration::from_secs(120), "lake", read_parquet);
    assert_eq!(stats["duplicate_offsets"], 0, "{stats}");
    assert_eq!(stats["stray_files"], 0, "{stats}");
    assert!(
        stats["deleted"].as_u64().unwrap_or(0) > 0,
        "deletes are rows: {stats}"
    );
    let stats = stack.wait_converged_with(&TABLES, Duration::from_secs(120), "avro lake", || {
        stack.read_lake(&avro, "avro")
    });
    assert_eq!(stats["duplicate_offsets"], 0, "{stats}");
    // Files sit in Hive partitions named after the Kafka partition.
    let parts: Vec<String> = std::fs::read_dir(parquet.join("app").join("all_types"))
        .expect("table dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert!(
        !parts.is_empty() && parts.iter().all(|p| p.starts_with("partition=")),
        "{parts:?}"
    );
    assert_eq!(sigterm(&mut sink_p), Some(0), "{}", stack.sink_log(0));
    assert_eq!(sigterm(&mut sink_a), Some(0), "{}", stack.sink_log(1));
    assert_eq!(sigterm(&mut run), Some(0));
}

fn kill9(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The lake holds exactly the records the topics' reader applied: same offsets per partition
/// of every table, none twice, no temporary file outside `_tmp`.
fn assert_offsets_match(stack: &Stack, lake: &serde_json::Value) {
    let topics = stack.read_topics();
    let stats = &lake["stats"];
    assert_eq!(stats["duplicate_offsets"], 0, "{stats}");
    assert_eq!(stats["stray_files"], 0, "{stats}");
    for t in TABLES {
        let mut want = topics["stats"]["applied"][t].clone();
        let mut got = stats["offsets"][t].clone();
        for v in [&mut want, &mut got] {
            if let Some(m) = v.as_object_mut() {
                for list in m.values_mut() {
                    if let Some(a) = list.as_array_mut() {
                        a.sort_by_key(|x| x.as_i64());
                    }
                }
            }
        }
        assert_eq!(
            got, want,
            "{t}: offsets in the lake vs applied from the topics"
        );
    }
}

#[test]
fn kill_9_of_the_sink_leaves_no_partial_file_and_no_missing_or_doubled_offset() {
    let seed: u64 = std::env::var("CRASH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xbadc0de);
    println!("CRASH_TEST_SEED={seed}");
    let stack = Stack::start(false, "", "");
    schema(&stack);
    initial_rows(&stack, 300);
    let mut run = stack.spawn_run(0);
    let lake = stack.lake_dir("lake");
    // Small windows and frequent commits, so that kills land in every phase of a commit.
    // A killed member leaves the group after the session timeout: keep it short.
    let cfg = sink_config(&lake, "parquet", "crash", "flush_size = 40")
        + "[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
           \"heartbeat.interval.ms\" = \"1000\"\n";
    let mut rng = Rng(seed);
    let mut sink = stack.spawn_sink(0, &cfg);
    for trial in 1..=6 {
        let start = std::time::Instant::now();
        while !stack.sink_log(trial - 1).contains("partition assigned") {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no partitions assigned"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        workload(&stack, &mut rng, 60, 300);
        std::thread::sleep(Duration::from_millis(200 + rng.below(2500)));
        let open: Vec<_> = std::fs::read_dir(lake.join("_tmp"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        kill9(&mut sink);
        println!(
            "trial {trial}: sink killed with {} windows open",
            open.len()
        );
        sink = stack.spawn_sink(trial, &cfg);
    }
    workload(&stack, &mut rng, 60, 300);
    let logs: String = (0..=6).map(|n| stack.sink_log(n)).collect();
    println!(
        "windows a kill interrupted: {} removed, {} rolled forward",
        logs.matches("removing an unfinished window").count(),
        logs.matches("finishing a window commit").count()
    );
    let read = || stack.read_lake(&lake, "parquet");
    stack.wait_converged(&TABLES, Duration::from_secs(120));
    stack.wait_converged_with(&TABLES, Duration::from_secs(120), "lake", read);
    assert_offsets_match(&stack, &read());
    assert_eq!(sigterm(&mut sink), Some(0));
    // After a clean stop no window is left behind.
    let tmp = lake.join("_tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(sigterm(&mut run), Some(0));
}

/// A sink stalled (SIGSTOP) past its session timeout while its windows are open: another
/// sink of the group takes its partitions over and writes on. When the stalled one wakes it
/// must not commit what it held (a zombie): the lake keeps every offset once, and a sink
/// started afterwards recovers without an error.
#[test]
fn a_stalled_sink_that_wakes_after_a_takeover_commits_nothing() {
    let stack = Stack::start(false, "", "");
    schema(&stack);
    initial_rows(&stack, 300);
    let mut run = stack.spawn_run(0);
    let lake = stack.lake_dir("lake");
    let cfg = sink_config(&lake, "parquet", "zombie", "flush_size = 40")
        + "[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
           \"heartbeat.interval.ms\" = \"1000\"\n";
    let mut rng = Rng(0x20b1e);
    let mut sinks = vec![stack.spawn_sink(0, &cfg)];
    for trial in 0..3 {
        let stalled = trial;
        let start = std::time::Instant::now();
        while !stack.sink_log(stalled).contains("partition assigned") {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no partitions assigned: {}",
                stack.sink_log(stalled)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        workload(&stack, &mut rng, 40, 300);
        let pid = sinks[stalled].id().to_string();
        let signal = |s: &str| {
            let _ = std::process::Command::new("kill").args([s, &pid]).status();
        };
        signal("-STOP");
        // Its windows stay open in _tmp; the next sink takes over once the session expires.
        sinks.push(stack.spawn_sink(stalled + 1, &cfg));
        let start = std::time::Instant::now();
        while !stack.sink_log(stalled + 1).contains("window committed") {
            workload(&stack, &mut rng, 10, 300);
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "the next sink did not take over: {}",
                stack.sink_log(stalled + 1)
            );
        }
        workload(&stack, &mut rng, 40, 300);
        signal("-CONT");
        std::thread::sleep(Duration::from_secs(4));
        // Whether it exited or rejoined, it goes now.
        kill9(&mut sinks[stalled]);
        println!("trial {trial}: the stalled sink woke; its log ends:\n{}", {
            let log = stack.sink_log(stalled);
            log.lines().rev().take(3).collect::<Vec<_>>().join("\n")
        });
    }
    workload(&stack, &mut rng, 40, 300);
    let read = || stack.read_lake(&lake, "parquet");
    stack.wait_converged(&TABLES, Duration::from_secs(120));
    stack.wait_converged_with(&TABLES, Duration::from_secs(120), "lake", read);
    assert_offsets_match(&stack, &read());
    let last = sinks.len() - 1;
    assert_eq!(
        sigterm(&mut sinks[last]),
        Some(0),
        "{}",
        stack.sink_log(last)
    );
    // A new sink recovers the lake the zombies left.
    let mut again = stack.spawn_sink(last + 1, &cfg);
    let start = std::time::Instant::now();
    while !stack.sink_log(last + 1).contains("partition assigned") {
        assert!(
            again.try_wait().ok().flatten().is_none(),
            "{}",
            stack.sink_log(last + 1)
        );
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_offsets_match(&stack, &read());
    assert_eq!(sigterm(&mut again), Some(0));
    assert_eq!(sigterm(&mut run), Some(0));
}

#[test]
fn two_sinks_in_one_group_split_the_partitions_and_write_the_same_lake() {
    let stack = Stack::start(false, "", "");
    schema(&stack);
    initial_rows(&stack, 200);
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&TABLES, Duration::from_secs(120));
    let lake = stack.lake_dir("lake");
    let cfg = sink_config(&lake, "parquet", "pair", "");
    let mut a = stack.spawn_sink(0, &cfg);
    let mut b = stack.spawn_sink(1, &cfg);
    let mut rng = Rng(7);
    workload(&stack, &mut rng, 300, 200);
    let read = || stack.read_lake(&lake, "parquet");
    stack.wait_converged(&TABLES, Duration::from_secs(120));
    stack.wait_converged_with(&TABLES, Duration::from_secs(120), "lake", read);
    assert_offsets_match(&stack, &read());
    // Both took part: each wrote files for partitions of its own.
    for n in 0..2 {
        assert!(
            stack.sink_log(n).contains("partition assigned"),
            "sink {n}: {}",
            stack.sink_log(n)
        );
    }
    assert_eq!(sigterm(&mut a), Some(0));
    assert_eq!(sigterm(&mut b), Some(0));
    assert_eq!(sigterm(&mut run), Some(0));
}

#[test]
fn an_added_column_reaches_new_files_and_old_files_still_read() {
    let stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app;
         CREATE TABLE app.evolve (id INT PRIMARY KEY, v INT);
         INSERT INTO app.evolve VALUES (1, 10), (2, 20);",
    );
    let tables = ["app.evolve"];
    let mut run = stack.spawn_run(0);
    let lake = stack.lake_dir("lake");
    let mut sink = stack.spawn_sink(0, &sink_config(&lake, "parquet", "evolve", ""));
    let read = || stack.read_lake(&lake, "parquet");
    stack.wait_converged_with(&tables, Duration::from_secs(120), "lake", read);
    stack.db.sql(
        "ALTER TABLE app.evolve ADD COLUMN note VARCHAR(20) NULL;
         INSERT INTO app.evolve VALUES (3, 30, 'three');
         DELETE FROM app.evolve WHERE id = 1;",
    );
    stack.wait_converged_with(&tables, Duration::from_secs(120), "lake", read);
    // The old files have no `note`; the new ones have it (columns as DuckDB sees them).
    let glob = format!("{}/app/evolve/*/*.parquet", lake.display());
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import duckdb, sys, glob\n\
             for f in sorted(glob.glob(sys.argv[1])):\n\
             \x20   cols = [r[0] for r in duckdb.sql(f\"DESCRIBE SELECT * FROM read_parquet('{f}')\").fetchall()]\n\
             \x20   print('note' in cols)",
            &glob,
        ])
        .output()
        .expect("python3");
    let seen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        seen.lines().any(|l| l == "True") && seen.lines().any(|l| l == "False"),
        "files with/without the new column: {seen} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sigterm(&mut sink), Some(0));
    assert_eq!(sigterm(&mut run), Some(0));
}

#[test]
fn replays_of_a_crashed_run_are_written_to_the_lake_once() {
    let stack = Stack::start(false, "", "");
    schema(&stack);
    initial_rows(&stack, 200);
    let lake = stack.lake_dir("lake");
    let mut sink = stack.spawn_sink(0, &sink_config(&lake, "parquet", "replay", ""));
    let mut run = stack.spawn_run(0);
    let mut rng = Rng(0xfeed);
    for trial in 1..=3 {
        workload(&stack, &mut rng, 150, 200);
        std::thread::sleep(Duration::from_millis(300 + rng.below(1500)));
        kill9(&mut run);
        run = stack.spawn_run(trial);
    }
    workload(&stack, &mut rng, 100, 200);
    stack.wait_converged(&TABLES, Duration::from_secs(120));
    let read = || stack.read_lake(&lake, "parquet");
    let stats = stack.wait_converged_with(&TABLES, Duration::from_secs(120), "lake", read);
    assert_eq!(stats["duplicate_changes"], 0, "{stats}");
    let topics = stack.read_topics();
    println!(
        "records the position filter dropped: {}",
        topics["stats"]["dropped"]
    );
    // Exactly the records the filter applied are in the lake, replays are not.
    assert_offsets_match(&stack, &read());
    assert_eq!(sigterm(&mut sink), Some(0));
    assert_eq!(sigterm(&mut run), Some(0));
}

/// A tmpfs mounted for one test, unmounted on drop (tests run as root on these machines).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir.to_path_buf())
    }

    fn grow(&self, size: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .expect("mount -o remount");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A full lake disk stops the sink with one error saying so; no file it left is visible
/// half-written; after the disk grows, a new sink completes the lake, nothing twice.
#[test]
fn a_full_disk_stops_the_sink_without_a_torn_file_and_it_resumes_after() {
    let stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.big (id INT PRIMARY KEY, body MEDIUMTEXT);
         INSERT INTO app.big VALUES (1, 'small');",
    );
    let lake = stack.lake_dir("lake");
    let disk = SmallDisk::mount(&lake, "1m");
    let mut run = stack.spawn_run(0);
    let sections = sink_config(&lake, "parquet", "full", "");
    let mut sink = stack.spawn_sink(0, &sections);
    stack.wait_converged_with(&["app.big"], Duration::from_secs(120), "lake", || {
        stack.read_lake(&lake, "parquet")
    });
    // About 3 MB of text that hardly compresses, in 60 KB rows, for a 1 MB disk.
    for i in 0..5 {
        stack.db.sql(&format!(
            "INSERT INTO app.big SELECT {i} * 100 + a.seq + 1, GROUP_CONCAT(MD5(RAND()) SEPARATOR '') \
             FROM app.seq_1_to_10 a CROSS JOIN app.seq_1_to_1875 b GROUP BY a.seq"
        ));
    }
    let code = support::workload::wait_exit(&mut sink, Duration::from_secs(120));
    let log = stack.sink_log(0);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("No space left on device")
            && log.contains("the lake's file system is full")
            && log.contains("start the sink again"),
        "{log}"
    );
    // Every file in sight reads whole (a torn Parquet file would fail the reader).
    let partial = stack.read_lake(&lake, "parquet");
    assert_eq!(partial["stats"]["stray_files"], 0, "{partial}");

    disk.grow("64m");
    let mut sink = stack.spawn_sink(1, &sections);
    let stats = stack.wait_converged_with(&["app.big"], Duration::from_secs(180), "lake", || {
        stack.read_lake(&lake, "parquet")
    });
    assert_eq!(stats["duplicate_offsets"], 0, "{stats}");
    assert_eq!(stats["duplicate_changes"], 0, "{stats}");
    assert_eq!(stats["stray_files"], 0, "{stats}");
    assert_eq!(sigterm(&mut sink), Some(0), "{}", stack.sink_log(1));
    assert_eq!(sigterm(&mut run), Some(0));
}

/// The files of `dir` that process `pid` has open.
fn open_in(pid: u32, dir: &std::path::Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.starts_with(dir))
                .count()
        })
        .unwrap_or(0)
}

/// A table partitioned by a column with many values needs a file per value: the sink keeps
/// at most `max_open_files` open (closing windows early), and a process limit below what it
/// needs is one error naming both knobs.
#[test]
fn open_files_stay_under_max_open_files_and_the_process_limit_is_named() {
    let stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, g INT);
         INSERT INTO app.t SELECT seq, seq % 100 FROM app.seq_1_to_3000;",
    );
    let mut run = stack.spawn_run(0);
    let lake = stack.lake_dir("lake");
    let by_g = "[sink.partition]\nby = \"field\"\nfields = [\"g\"]\n";
    let sections = sink_config(
        &lake,
        "parquet",
        "files",
        &format!("max_open_files = 8\n{by_g}"),
    );
    let mut sink = stack.spawn_sink(0, &sections);
    let mut most = 0;
    let start = std::time::Instant::now();
    let read = || stack.read_lake(&lake, "parquet");
    loop {
        most = most.max(open_in(sink.id(), &lake));
        let seen = read();
        if seen["tables"]["app.t"].as_array().map_or(0, Vec::len) == 3000 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the lake did not fill: {}",
            stack.sink_log(0)
        );
        stack.db.sql("UPDATE app.t SET g = g WHERE id < 0"); // keep time moving
    }
    let stats = stack.wait_converged_with(&["app.t"], Duration::from_secs(60), "lake", read);
    assert_eq!(stats["duplicate_offsets"], 0, "{stats}");
    println!("most lake files open at once: {most} (max_open_files = 8)");
    assert!(most <= 8, "{most} lake files open at once");
    assert_eq!(sigterm(&mut sink), Some(0), "{}", stack.sink_log(0));

    // A limit of 64 descriptors, 100 partitions per table and no max_open_files to stop
    // first: the sink stops with the fix, and a sink with room completes the lake.
    let lake2 = stack.lake_dir("lake2");
    let sections = sink_config(
        &lake2,
        "parquet",
        "files2",
        &format!("max_open_files = 1000\n{by_g}"),
    );
    let base = std::fs::read_to_string(&stack.config).expect("config");
    let cfg = stack.lake_dir("limited.toml");
    std::fs::write(&cfg, format!("{base}\n{sections}")).expect("config");
    let out = std::process::Command::new("bash")
        .args(["-c", "ulimit -n 64 && exec \"$0\" sink --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_binlake"))
        .arg(&cfg)
        .output()
        .expect("binlake sink under ulimit -n 64");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("os error 24") && err.contains("lower [sink] max_open_files"),
        "{err}"
    );
    assert_eq!(sigterm(&mut run), Some(0));
}
