//! `binlake sink` into a real HDFS and Hive metastore while they fail the way servers and
//! networks do, under a random workload: the network to the NameNode and to the metastore
//! is cut, stalled or blackholed (a proxy of the tests' own; the DataNode is reached directly,
//! as the NameNode names it), the DataNode is stalled with SIGSTOP, the whole HDFS is killed
//! with SIGKILL and started again, and the sink itself is killed. A sink that has started
//! must ride these out by itself (it starts over in-process); one that stops at start-up
//! (HDFS down at that moment) is restarted, as a supervisor would, and reported.
//!
//! Afterwards the lake, copied out of HDFS with Hadoop's own client (`hadoop fs -get`) and
//! read by DuckDB, equals the source with no change or offset twice and no temporary file
//! visible; and the metastore (through Spark) lists exactly the partition directories that
//! hold files.
//!
//! `HDFS_FAULT_TRIALS=n` sets the faults of each kind (default 2); `HDFS_FAULT_SEED=n`
//! replays an order.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::hadoop::{spark_sql, Hdfs, Metastore};
use support::proxy::{Mode, Proxy};
use support::stack::Stack;
use support::workload::{
    count_from_env, initial_rows, schema, seed_from_env, sigterm, workload, Rng, StopOnDrop,
};

const TABLES: [&str; 3] = ["app.all_types", "app.composite", "app.nopk"];

/// Cut every connection; or stall them 1–5 s; or blackhole 12–18 s, then cut what was held.
fn network_fault(net: &Proxy, rng: &mut Rng) -> &'static str {
    match rng.below(3) {
        0 => {
            net.cut();
            "cut"
        }
        1 => {
            net.set(Mode::Stall);
            std::thread::sleep(Duration::from_millis(1000 + rng.below(4000)));
            net.set(Mode::Pass);
            "stalled"
        }
        _ => {
            net.set(Mode::Blackhole);
            net.cut();
            std::thread::sleep(Duration::from_millis(12_000 + rng.below(6000)));
            net.cut();
            net.set(Mode::Pass);
            "blackholed"
        }
    }
}

/// The directories under `table_dir` (relative to it) that hold a final file.
fn partition_dirs(table_dir: &Path) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    let mut stack = vec![table_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('_') || name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".parquet") {
                if let Ok(rel) = d.strip_prefix(table_dir) {
                    dirs.insert(rel.to_string_lossy().into_owned());
                }
            }
        }
    }
    dirs
}

#[test]
fn hdfs_and_metastore_faults_lose_nothing_and_leave_nothing_half_written() {
    let seed = seed_from_env("HDFS_FAULT_SEED");
    let trials = count_from_env("HDFS_FAULT_TRIALS", 2);
    println!("hdfs faults: seed {seed} (replay: HDFS_FAULT_SEED={seed}), {trials} of each");

    let hdfs = Hdfs::start();
    let metastore = Metastore::start(Some(&hdfs.url()));
    let namenode_net = Proxy::start(hdfs.port);
    let metastore_net = Proxy::start(metastore.port);
    let stack = Stack::start(false, "", "");
    schema(&stack);
    initial_rows(&stack, 200);
    let mut run = stack.spawn_run(0);
    let sections = format!(
        "[sink]\nroot = \"hdfs://127.0.0.1:{}/lake\"\ngroup_id = \"faults\"\n\
         rotate_interval = \"2s\"\n\
         [sink.tables.\"app.composite\"]\nby = \"field\"\nfields = [\"tenant\"]\n\
         [hive]\nenabled = true\nuri = \"thrift://127.0.0.1:{}\"\n",
        namenode_net.port, metastore_net.port
    );
    let mut sinks = 0;
    let mut sink = stack.spawn_sink(sinks, &sections);
    let mut unplanned: Vec<String> = Vec::new();

    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let _stop_writer = StopOnDrop(&stop);
        scope.spawn(|| {
            let mut rng = Rng(seed ^ 0x5bd1_e995);
            while !stop.load(Ordering::Relaxed) {
                workload(&stack, &mut rng, 10, 200);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut rng = Rng(seed);
        let mut plan: Vec<&str> = ["namenode-net", "metastore-net", "datanode", "hdfs", "sink"]
            .iter()
            .flat_map(|c| std::iter::repeat_n(*c, trials))
            .collect();
        for i in (1..plan.len()).rev() {
            plan.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let started = Instant::now();
        for what in plan {
            std::thread::sleep(Duration::from_millis(1000 + rng.below(3000)));
            if let Ok(Some(s)) = sink.try_wait() {
                let log = stack.sink_log(sinks);
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                // Once started, a sink starts over by itself on these faults.
                assert!(
                    !log.contains("sink started"),
                    "sink-{sinks} stopped on a fault after it had started ({s}): {tail:?}"
                );
                unplanned.push(format!("sink-{sinks} exited {s} at start-up: {tail:?}"));
                sinks += 1;
                sink = stack.spawn_sink(sinks, &sections);
            }
            let how = match what {
                "namenode-net" => network_fault(&namenode_net, &mut rng),
                "metastore-net" => network_fault(&metastore_net, &mut rng),
                "datanode" => {
                    hdfs.signal("datanode", "-STOP");
                    std::thread::sleep(Duration::from_millis(2000 + rng.below(6000)));
                    hdfs.signal("datanode", "-CONT");
                    "stalled"
                }
                "hdfs" => {
                    hdfs.kill9_restart();
                    "killed and restarted"
                }
                _ => {
                    let _ = sink.kill();
                    let _ = sink.wait();
                    sinks += 1;
                    sink = stack.spawn_sink(sinks, &sections);
                    "killed"
                }
            };
            println!("{:>6.1}s {what} {how}", started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
    });
    if let Ok(Some(s)) = sink.try_wait() {
        let log = stack.sink_log(sinks);
        assert!(
            !log.contains("sink started"),
            "sink-{sinks} stopped on a fault after it had started ({s}): {log}"
        );
        unplanned.push(format!("sink-{sinks} exited {s} at start-up"));
        sinks += 1;
        sink = stack.spawn_sink(sinks, &sections);
    }

    // The lake, copied out with Hadoop's client, converges to the source.
    let local = stack.lake_dir("lake-copy");
    let lake = stack.wait_converged_with(&TABLES, Duration::from_secs(240), "lake", || {
        // DuckDB refuses a table directory without files: read once each table has some.
        let complete = hdfs.get("/lake", &local)
            && TABLES.iter().all(|t| {
                let (db, name) = t.split_once('.').expect("db.table");
                !partition_dirs(&local.join(db).join(name)).is_empty()
            });
        if complete {
            stack.read_lake(&local, "parquet")
        } else {
            serde_json::json!({"tables": {}, "stats": {}})
        }
    });
    assert_eq!(lake["duplicate_changes"], 0, "a change twice: {lake}");
    assert_eq!(lake["duplicate_offsets"], 0, "{lake}");
    assert_eq!(lake["stray_files"], 0, "{lake}");

    // Every directory that holds files is a registered partition, and nothing else is.
    let start = Instant::now();
    for t in TABLES {
        let (db, name) = t.split_once('.').expect("db.table");
        let dirs = partition_dirs(&local.join(db).join(name));
        assert!(!dirs.is_empty(), "{t}: no files in the lake copy");
        loop {
            let listed: BTreeSet<String> =
                spark_sql(&metastore.uri(), &[&format!("SHOW PARTITIONS {t}")])[0]
                    .as_array()
                    .expect("rows")
                    .iter()
                    .filter_map(|r| r["partition"].as_str().map(str::to_string))
                    .collect();
            if listed == dirs {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "{t}: the metastore lists {listed:?}, the lake holds files in {dirs:?}\n{}",
                stack.sink_log(sinks)
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    println!(
        "hdfs faults passed: seed {seed}, {} sink processes, {} rows; sinks that stopped by \
         themselves: {unplanned:?}",
        sinks + 1,
        lake["rows"]
    );
    assert_eq!(sigterm(&mut sink), Some(0), "{}", stack.sink_log(sinks));
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(0));
}
