//! `[sink] current_every`: two `binlake sink`s in one group keep `{table}_current` in a real
//! HDFS, registered in a real Hive metastore and read by Spark. After the workload (updates, key changes,
//! deletes) the newest snapshot equals the source table row for row (no key twice, deleted
//! keys gone); after more changes the next snapshot equals the new state; and no more than
//! `current_keep` snapshots stay registered (on disk, one older unregistered one besides).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use binlake::sink::hive::Hive;
use support::hadoop::{spark_canonical, spark_sql, Hdfs, Metastore};
use support::stack::Stack;
use support::workload::{self, sigterm, Rng, TABLES};

const KEEP: usize = 2;

/// The columns compared, per table (those Spark renders as the source's canonical text).
fn columns(table: &str) -> &'static [&'static str] {
    match table {
        "app.all_types" => &[
            "id", "ti", "si", "bi", "ubi", "dec2", "c", "vc", "dt", "dtt",
        ],
        "app.composite" => &["tenant", "id", "v"],
        _ => &["a", "b"],
    }
}

fn sorted(mut rows: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    rows.sort_by_key(|r| r.to_string());
    rows
}

fn source_state(stack: &Stack, table: &str) -> Vec<serde_json::Value> {
    let (db, name) = table.split_once('.').expect("db.table");
    sorted(
        stack
            .source_table(db, name)
            .into_iter()
            .map(|r| {
                serde_json::Value::Object(
                    columns(table)
                        .iter()
                        .map(|c| (c.to_string(), r[*c].clone()))
                        .collect(),
                )
            })
            .collect(),
    )
}

/// The registered snapshots of `{table}_current`, oldest first.
fn registered(hive: &Hive, table: &str) -> Vec<String> {
    let (db, name) = table.split_once('.').expect("db.table");
    let mut ids: Vec<String> = hive
        .partition_names(db, &format!("{name}_current"))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.strip_prefix("snapshot=").map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// Waits for a snapshot of every table newer than `seen[table]` that equals the source (read
/// through Spark, row for row, so a key twice would show); returns the snapshot ids. The
/// newest snapshot is chosen inside the query: an older one may be removed meanwhile.
fn wait_snapshots_equal_source(
    stack: &Stack,
    hive: &Hive,
    uri: &str,
    seen: &mut BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let start = Instant::now();
    let mut pending: BTreeSet<&str> = TABLES.iter().copied().collect();
    let mut matched = BTreeMap::new();
    while !pending.is_empty() {
        // Spark only once every pending table has a registered snapshot newer than the last.
        while !pending.iter().all(|t| {
            registered(hive, t)
                .last()
                .is_some_and(|id| seen.get(*t).is_none_or(|s| id > s))
        }) {
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "no new complete snapshot of {pending:?} after {seen:?}:\n{}",
                stack.run_logs_tail()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        let tables: Vec<&str> = pending.iter().copied().collect();
        let statements: Vec<String> = tables
            .iter()
            .map(|t| {
                format!(
                    "SELECT {}, snapshot FROM {t}_current \
                     WHERE snapshot = (SELECT max(snapshot) FROM {t}_current)",
                    columns(t).join(", ")
                )
            })
            .collect();
        let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
        let out = spark_sql(uri, &refs);
        for (i, t) in tables.iter().enumerate() {
            let rows = out[i].as_array().expect("rows");
            let ids: BTreeSet<&str> = rows.iter().filter_map(|r| r["snapshot"].as_str()).collect();
            assert!(ids.len() <= 1, "{t}: one snapshot queried, rows of {ids:?}");
            let Some(id) = ids.first().map(|s| s.to_string()) else {
                continue; // not registered yet
            };
            if seen.get(*t).is_some_and(|s| *s >= id) {
                continue; // not newer than the last one checked
            }
            let got = sorted(
                rows.iter()
                    .map(|r| {
                        serde_json::Value::Object(
                            columns(t)
                                .iter()
                                .map(|c| (c.to_string(), spark_canonical(&r[*c])))
                                .collect(),
                        )
                    })
                    .collect(),
            );
            let want = source_state(stack, t);
            // Either way the next look is at a newer snapshot (this one may predate the
            // sink's catching up).
            seen.insert(t.to_string(), id.clone());
            if got == want {
                pending.remove(t);
                matched.insert(t.to_string(), id);
            } else {
                assert!(
                    start.elapsed() < Duration::from_secs(300),
                    "{t}_current snapshot {id} differs from the source:\n current: {got:?}\n \
                     source:  {want:?}\n{}",
                    stack.run_logs_tail()
                );
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no new snapshot of {pending:?} after {seen:?}:\n{}",
            stack.run_logs_tail()
        );
    }
    matched
}

#[test]
fn the_current_table_equals_the_source_after_each_compaction() {
    let hdfs = Hdfs::start();
    let metastore = Metastore::start(Some(&hdfs.url()));
    let stack = Stack::start(false, "", "");
    workload::schema(&stack);
    workload::initial_rows(&stack, 60);
    let mut run = stack.spawn_run(0);
    let root = format!("{}/lake", hdfs.url());
    // Two sinks in one group: each writes its partitions' files into the same snapshots.
    let sections = format!(
        "[sink]\nroot = \"{root}\"\ngroup_id = \"current\"\nrotate_interval = \"3s\"\n\
         current_every = \"20s\"\ncurrent_keep = {KEEP}\n\
         [hive]\nenabled = true\nuri = \"{}\"\n",
        metastore.uri()
    );
    let mut sinks = [
        stack.spawn_sink(0, &sections),
        stack.spawn_sink(1, &sections),
    ];
    let mut rng = Rng(0x5eed_c0de);
    workload::workload(&stack, &mut rng, 300, 60);
    // The writer stops; the topics hold the source's state.
    stack.wait_converged(&TABLES, Duration::from_secs(180));
    let hive = Hive::connect(&metastore.uri()).expect("metastore");
    let mut seen = BTreeMap::new();
    let first = wait_snapshots_equal_source(&stack, &hive, &metastore.uri(), &mut seen);

    // More changes, deletes among them.
    stack.db.sql(
        "DELETE FROM app.all_types WHERE id < 20;
         DELETE FROM app.composite WHERE id < 20;
         DELETE FROM app.nopk WHERE a < 20;
         UPDATE app.all_types SET vc = 'second round', ti = 7 WHERE id >= 20;
         UPDATE app.composite SET v = v + 1000;
         INSERT INTO app.all_types (id, vc) VALUES (5, 'back again');",
    );
    stack.wait_converged(&TABLES, Duration::from_secs(180));
    let second = wait_snapshots_equal_source(&stack, &hive, &metastore.uri(), &mut seen);
    for t in TABLES {
        assert!(second[t] > first[t], "{t}: {second:?} after {first:?}");
    }
    // The deleted keys are gone (besides the one inserted again), in every registered snapshot
    // from the second on. Not `snapshot = (SELECT max(snapshot) ...)`: Spark lists the
    // metastore's partitions for the scan and for the subquery separately, so a snapshot
    // registered between the two makes that query read no partition at all.
    let second_id = &second["app.all_types"];
    let out = spark_sql(
        &metastore.uri(),
        &[&format!(
            "SELECT id, snapshot FROM app.all_types_current \
             WHERE id < 20 AND snapshot >= '{second_id}'"
        )],
    );
    let rows = out[0].as_array().expect("rows");
    let mut by_snapshot: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in rows {
        let snapshot = r["snapshot"].as_str().expect("snapshot");
        let id = r["id"]
            .as_str()
            .map_or_else(|| r["id"].to_string(), str::to_string);
        by_snapshot.entry(snapshot).or_default().push(id);
    }
    let shown = || {
        format!(
            "rows {rows:?}; snapshots {:?}; sink logs:\n{}\n{}",
            spark_sql(&metastore.uri(), &["SHOW PARTITIONS app.all_types_current"]),
            stack.sink_log(0),
            stack.sink_log(1)
        )
    };
    assert!(
        !by_snapshot.is_empty(),
        "no snapshot from {second_id} on: {}",
        shown()
    );
    for (snapshot, ids) in &by_snapshot {
        assert_eq!(ids, &["5"], "snapshot {snapshot}: {}", shown());
    }

    for (n, sink) in sinks.iter_mut().enumerate() {
        assert_eq!(sigterm(sink), Some(0), "{}", stack.sink_log(n));
    }
    assert_eq!(sigterm(&mut run), Some(0));
    // At most current_keep complete snapshots, on disk and registered: the same ones.
    let storage = binlake::sink::storage::open(&root).expect("hdfs");
    for t in TABLES {
        let dir = format!("{}_current", t.replace('.', "/"));
        let mut complete = Vec::new();
        for d in storage.list_dirs(&dir).expect("list") {
            let files = storage
                .list(&format!("{dir}/{d}"))
                .expect("list")
                .into_iter()
                .filter(|e| e.path.ends_with(".parquet") && !e.path.contains("/_"))
                .count();
            assert!(files <= 3, "{dir}/{d}: {files} files for 3 partitions");
            if files == 3 {
                complete.push(d.strip_prefix("snapshot=").expect("snapshot=").to_string());
            }
        }
        let listed = registered(&hive, t);
        assert!(
            listed.len() <= KEEP && !listed.is_empty(),
            "{t}: {listed:?}"
        );
        // On disk: the registered ones and at most one older, unregistered one.
        assert!(complete.len() <= KEEP + 1, "{t}: {complete:?}");
        assert_eq!(
            listed,
            complete[complete.len().saturating_sub(listed.len())..],
            "{t}: registered vs complete on disk"
        );
        assert!(listed.last() >= Some(&second[t]), "{t}: {listed:?}");
    }
    let logs = stack.sink_log(0) + &stack.sink_log(1);
    assert!(logs.contains("old snapshot removed"), "{logs}");
    assert!(!logs.contains("_current failed"), "{logs}");
    // Both sinks wrote snapshot files.
    for n in 0..2 {
        assert!(
            stack.sink_log(n).contains("compacted"),
            "{}",
            stack.sink_log(n)
        );
    }
}
