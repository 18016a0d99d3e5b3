//! `binlake sink` into a real HDFS (Hadoop 2.7.3) with tables and partitions registered in a
//! real Hive 2.3 metastore, queried by Spark through the metastore: the rows Spark gets equal
//! the source tables, `SHOW PARTITIONS` lists exactly the directories written, and an ADD
//! COLUMN upstream reaches the Hive table while old files still read.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::hadoop::{spark_canonical, spark_sql, Hdfs, Metastore};
use support::stack::Stack;
use support::workload::sigterm;

/// The table as Spark sees it through the metastore: the last row per key in Kafka order,
/// deleted keys removed, `columns` only.
fn spark_state(uri: &str, table: &str, key: &str, columns: &[&str]) -> Vec<serde_json::Value> {
    let sql = format!(
        "SELECT {}, __deleted, __kafka_partition, __kafka_offset FROM {table} \
         ORDER BY __kafka_partition, __kafka_offset",
        columns.join(", ")
    );
    let out = spark_sql(uri, &[&sql]);
    let mut state = std::collections::BTreeMap::new();
    for r in out[0].as_array().expect("rows") {
        let k = r[key].to_string();
        if r["__deleted"] == "true" {
            state.remove(&k);
        } else {
            let row: serde_json::Map<String, serde_json::Value> = columns
                .iter()
                .map(|c| (c.to_string(), spark_canonical(&r[*c])))
                .collect();
            state.insert(k, serde_json::Value::Object(row));
        }
    }
    let mut rows: Vec<serde_json::Value> = state.into_values().collect();
    rows.sort_by_key(|r| r.to_string());
    rows
}

fn source_state(stack: &Stack, table: &str, columns: &[&str]) -> Vec<serde_json::Value> {
    let (db, name) = table.split_once('.').expect("db.table");
    let mut rows: Vec<serde_json::Value> = stack
        .source_table(db, name)
        .into_iter()
        .map(|r| {
            serde_json::Value::Object(
                columns
                    .iter()
                    .map(|c| (c.to_string(), r[*c].clone()))
                    .collect(),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.to_string());
    rows
}

fn wait_spark(stack: &Stack, uri: &str, table: &str, key: &str, columns: &[&str]) {
    let start = Instant::now();
    loop {
        let want = source_state(stack, table, columns);
        let got = spark_state(uri, table, key, columns);
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "{table} through Spark differs from the source:\n spark:  {got:?}\n source: {want:?}\n{}",
            stack.run_logs_tail()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn spark_reads_the_lake_on_hdfs_through_the_metastore() {
    let hdfs = Hdfs::start();
    let metastore = Metastore::start(Some(&hdfs.url()));
    let stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app;
         CREATE TABLE app.orders (id BIGINT PRIMARY KEY, region VARCHAR(10) NOT NULL,
           amount DECIMAL(12,2), big BIGINT UNSIGNED, at DATETIME(6), ts TIMESTAMP(6) NULL,
           d DATE, note TEXT);
         INSERT INTO app.orders VALUES
           (1, 'eu', 12.50, 18446744073709551615, '2024-01-02 03:04:05.123456',
            '2024-01-02 03:04:05', '2024-01-02', 'first'),
           (2, 'us', -0.01, 0, '1970-01-01 00:00:00', NULL, '1000-01-01', NULL),
           (3, 'eu', 99999.99, 7, '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999',
            '9999-12-31', 'émoji 😀');",
    );
    let mut run = stack.spawn_run(0);
    let root = format!("{}/lake", hdfs.url());
    let mut sink = stack.spawn_sink(
        0,
        &format!(
            "[sink]\nroot = \"{root}\"\ngroup_id = \"hive\"\nrotate_interval = \"2s\"\n\
             [sink.tables.\"app.orders\"]\nby = \"field\"\nfields = [\"region\"]\n\
             [hive]\nenabled = true\nuri = \"{}\"\n",
            metastore.uri()
        ),
    );
    // Spark can query once the sink has created the table.
    let start = Instant::now();
    while !stack.sink_log(0).contains("table layout") {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the sink did not set up the table: {}",
            stack.run_logs_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let cols = ["id", "region", "amount", "big", "at", "ts", "d", "note"];
    wait_spark(&stack, &metastore.uri(), "app.orders", "id", &cols);
    stack.db.sql(
        "UPDATE app.orders SET amount = 1.00, note = 'updated' WHERE id = 1;
         DELETE FROM app.orders WHERE id = 2;
         INSERT INTO app.orders VALUES (4, 'apac', NULL, NULL, NULL, NULL, NULL, 'x');",
    );
    wait_spark(&stack, &metastore.uri(), "app.orders", "id", &cols);

    // The metastore's partitions are exactly the directories that hold files.
    let storage = binlake::sink::storage::open(&root).expect("hdfs");
    let dirs: BTreeSet<String> = storage
        .list("app/orders")
        .expect("list")
        .into_iter()
        .filter_map(|e| {
            let rel = e.path.strip_prefix("app/orders/")?;
            Some(rel.rsplit_once('/')?.0.to_string())
        })
        .collect();
    let parts = spark_sql(&metastore.uri(), &["SHOW PARTITIONS app.orders"]);
    let listed: BTreeSet<String> = parts[0]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["partition"].as_str().map(str::to_string))
        .collect();
    assert_eq!(listed, dirs);
    assert!(listed.contains("region=apac"), "{listed:?}");

    // A sink that died after moving a window's files into the lake and before registering
    // their partition (here: the partition dropped while the sink is stopped, its files
    // kept): the next sink registers the partitions of every partition's last window.
    assert_eq!(sigterm(&mut sink), Some(0), "{}", stack.sink_log(0));
    spark_sql(
        &metastore.uri(),
        &["ALTER TABLE app.orders DROP PARTITION (region = 'apac')"],
    );
    let partitions = || -> BTreeSet<String> {
        spark_sql(&metastore.uri(), &["SHOW PARTITIONS app.orders"])[0]
            .as_array()
            .expect("rows")
            .iter()
            .filter_map(|r| r["partition"].as_str().map(str::to_string))
            .collect()
    };
    assert!(!partitions().contains("region=apac"));
    let mut sink = stack.spawn_sink(
        1,
        &format!(
            "[sink]\nroot = \"{root}\"\ngroup_id = \"hive\"\nrotate_interval = \"2s\"\n\
             [sink.tables.\"app.orders\"]\nby = \"field\"\nfields = [\"region\"]\n\
             [hive]\nenabled = true\nuri = \"{}\"\n",
            metastore.uri()
        ),
    );
    let start = Instant::now();
    while partitions() != dirs {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the restarted sink did not register region=apac again: {:?}\n{}",
            partitions(),
            stack.sink_log(1)
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    // ADD COLUMN upstream: the Hive table gains it, old files read it as null.
    stack.db.sql(
        "ALTER TABLE app.orders ADD COLUMN qty INT NULL;
         INSERT INTO app.orders (id, region, qty) VALUES (5, 'eu', 3);",
    );
    let cols = ["id", "region", "amount", "note", "qty"];
    wait_spark(&stack, &metastore.uri(), "app.orders", "id", &cols);

    // `binlake rebuild` into a Parquet snapshot on HDFS: Spark reads the source's rows.
    let snapshot = format!("{}/snapshots/orders", hdfs.url());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_binlake"))
        .args([
            "rebuild",
            "--config",
            stack.config.to_str().expect("utf-8 path"),
        ])
        .args(["--table", "app.orders", "--into", &snapshot])
        .output()
        .expect("run binlake rebuild");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_snapshot = spark_state(
        &metastore.uri(),
        &format!("parquet.`{snapshot}`"),
        "id",
        &cols,
    );
    assert_eq!(from_snapshot, source_state(&stack, "app.orders", &cols));
    assert_eq!(sigterm(&mut sink), Some(0), "{}", stack.sink_log(1));
    assert_eq!(sigterm(&mut run), Some(0));
}

#[test]
fn an_unreachable_metastore_is_one_clear_error() {
    let stack = Stack::start(false, "", "");
    let port = support::mariadb::free_port();
    let mut sink = stack.spawn_sink(
        0,
        &format!(
            "[sink]\nroot = \"file://{}\"\n[hive]\nenabled = true\nuri = \"thrift://127.0.0.1:{port}\"\n",
            stack.lake_dir("lake").display()
        ),
    );
    let start = Instant::now();
    let code = loop {
        if let Ok(Some(s)) = sink.try_wait() {
            break s.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the sink did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = stack.sink_log(0);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains(&format!("127.0.0.1:{port}")) && log.contains("enabled = false"),
        "{log}"
    );
}
