//! The lake's Hadoop side against real servers: `HdfsStorage` on a real HDFS (Hadoop 2.7.3
//! NameNode + DataNode) and `Hive` on a real Hive 2.3 metastore, read back independently by
//! Spark (pyspark). Every test starts its own servers on free ports of 127.0.0.1, in its
//! own directories, and stops them on drop (tests/support/hadoop.rs).
//!
//! Invariant checked: what binlake writes and registers is exactly what an independent
//! reader sees (bytes, partitions, columns, values).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{
    ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use binlake::sink::hdfs::HdfsStorage;
use binlake::sink::hive::{Hive, HiveColumn, HiveFormat, HiveTable};
use binlake::sink::storage::Storage;
use serde_json::json;
use support::hadoop::{spark_sql, Hdfs, Metastore};

/// Deterministic, non-repeating-looking bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn write_file(s: &dyn Storage, path: &str, data: &[u8], chunk: usize) {
    let mut f = s.create(path).expect("create");
    for piece in data.chunks(chunk.max(1)) {
        f.write(piece).expect("write");
    }
    f.finish().expect("finish");
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn hdfs_storage_keeps_the_storage_contract_on_real_hdfs() {
    const MIB: usize = 1 << 20;
    let hdfs = Hdfs::start_with_block_size(MIB as u64);
    let url = format!("{}/lake", hdfs.url());
    let s = HdfsStorage::connect(&url).expect("connect");
    assert_eq!(s.root_url(), url);

    // A multi-block file (1 MiB blocks), written in odd-sized pieces.
    let big = pattern(5 * MIB + 12345, 1);
    write_file(&s, "a/b/x.tmp", &big, 77_777);
    assert_eq!(
        s.read_range("a/b/x.tmp", 0, big.len() as u64)
            .expect("read"),
        big
    );
    // Across a block boundary, at the end, past the end.
    let at = MIB as u64 - 10;
    assert_eq!(
        s.read_range("a/b/x.tmp", at, 100).expect("read"),
        &big[at as usize..at as usize + 100]
    );
    let end = big.len() as u64;
    assert_eq!(
        s.read_range("a/b/x.tmp", end - 5, 100).expect("read"),
        &big[big.len() - 5..]
    );
    assert!(s
        .read_range("a/b/x.tmp", end + 10, 100)
        .expect("read")
        .is_empty());
    // One big write too.
    let one = pattern(3 * MIB + 1, 2);
    write_file(&s, "a/one.bin", &one, usize::MAX);
    assert_eq!(s.read_range("a/one.bin", 0, u64::MAX).expect("read"), one);

    // Rename into a directory that does not exist yet.
    s.rename("a/b/x.tmp", "c/d/x.bin").expect("rename");
    assert!(!s.exists("a/b/x.tmp").expect("exists"));
    assert!(s.exists("c/d/x.bin").expect("exists"));
    assert!(s.exists("c/d").expect("exists"));

    // Never replaces: the destination keeps its bytes.
    write_file(&s, "a/y.bin", b"small", 3);
    let err = s
        .rename("a/y.bin", "c/d/x.bin")
        .expect_err("rename onto a file");
    assert!(err.to_string().contains("exists"), "{err}");
    assert!(s.exists("a/y.bin").expect("exists"));
    assert_eq!(s.read_range("c/d/x.bin", 0, 16).expect("read"), &big[..16]);
    assert!(s.rename("missing", "z").is_err());

    // `create` replaces a file of the same name.
    write_file(&s, "a/y.bin", b"replaced!", 4);
    assert_eq!(s.read_range("a/y.bin", 0, 100).expect("read"), b"replaced!");
    // An empty file.
    write_file(&s, "a/empty", b"", 1);

    let listed: Vec<(String, u64)> = s
        .list("")
        .expect("list")
        .into_iter()
        .map(|e| (e.path, e.len))
        .collect();
    assert_eq!(
        listed,
        [
            ("a/empty".to_string(), 0),
            ("a/one.bin".to_string(), one.len() as u64),
            ("a/y.bin".to_string(), 9),
            ("c/d/x.bin".to_string(), big.len() as u64),
        ]
    );
    let in_c: Vec<String> = s
        .list("c")
        .expect("list")
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(in_c, ["c/d/x.bin"]);
    assert!(s.list("missing").expect("list").is_empty());
    assert_eq!(s.list_dirs("").expect("dirs"), ["a", "c"]);
    assert_eq!(s.list_dirs("a").expect("dirs"), ["b"]);
    assert_eq!(s.list_dirs("c").expect("dirs"), ["d"]);
    assert!(s.list_dirs("missing").expect("dirs").is_empty());

    // Directories rename too.
    s.rename("c/d", "e/f/d").expect("rename a directory");
    assert_eq!(s.list_dirs("e/f").expect("dirs"), ["d"]);
    assert!(s.exists("e/f/d/x.bin").expect("exists"));

    // The same files through a storage rooted at `/`.
    let top = HdfsStorage::connect(&format!("{}/", hdfs.url())).expect("connect /");
    assert_eq!(top.root_url(), hdfs.url());
    assert!(top.exists("lake/a/y.bin").expect("exists"));
    assert_eq!(top.list_dirs("").expect("dirs"), ["lake"]);
    assert_eq!(top.list("lake/a").expect("list").len(), 3);

    // Recursive delete; missing paths are fine.
    s.delete("e").expect("delete");
    assert!(!s.exists("e/f/d/x.bin").expect("exists"));
    assert!(!s.exists("e").expect("exists"));
    s.delete("e").expect("delete again");
    s.delete("never/there").expect("delete missing");
    s.delete("a/y.bin").expect("delete a file");
    // As `binlake sink` runs it: on a blocking thread of a tokio runtime.
    let root = url.clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let seen = rt
        .block_on(rt.spawn_blocking(move || {
            let s = HdfsStorage::connect(&root).expect("connect in spawn_blocking");
            s.list_dirs("").expect("dirs")
        }))
        .expect("spawn_blocking");
    assert_eq!(seen, ["a", "c"]); // c is empty since c/d moved

    let left: Vec<String> = s
        .list("")
        .expect("list")
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(left, ["a/empty", "a/one.bin"]);
}

#[test]
fn an_unreachable_namenode_is_one_clear_error() {
    let url = format!("hdfs://127.0.0.1:{}/lake", closed_port());
    let t0 = Instant::now();
    let err = match HdfsStorage::connect(&url) {
        Ok(_) => panic!("connected to nothing at {url}"),
        Err(e) => e.to_string(),
    };
    eprintln!("{err} ({:?})", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("NameNode"), "{err}");
    assert!(err.contains("hadoop.sh start"), "{err}");
    assert!(err.contains("[sink] root"), "{err}");
}

#[test]
fn an_unreachable_metastore_is_one_clear_error() {
    let uri = format!("thrift://127.0.0.1:{}", closed_port());
    let err = match Hive::connect(&uri) {
        Ok(_) => panic!("connected to nothing at {uri}"),
        Err(e) => e.to_string(),
    };
    eprintln!("{err}");
    assert!(err.contains(&uri), "{err}");
    assert!(err.contains("[hive] enabled = false"), "{err}");
}

fn col(name: &str, ty: &str) -> HiveColumn {
    HiveColumn {
        name: name.into(),
        ty: ty.into(),
        comment: String::new(),
    }
}

/// The Parquet file of partition dt=2024-01-02: id, amount decimal(20,0), ts, note.
fn orders_parquet() -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Decimal128(20, 0), true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("note", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1, 2, 3])),
        Arc::new(
            Decimal128Array::from(vec![Some(u64::MAX as i128), Some(0), None])
                .with_precision_and_scale(20, 0)
                .expect("decimal(20,0)"),
        ),
        Arc::new(TimestampMicrosecondArray::from(vec![
            Some(1_704_164_645_123_456), // 2024-01-02T03:04:05.123456
            Some(-1),                    // 1969-12-31T23:59:59.999999
            None,
        ])),
        Arc::new(StringArray::from(vec![Some("héllo 🦀"), Some(""), None])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).expect("writer");
    w.write(&batch).expect("write batch");
    w.close().expect("close parquet");
    out
}

#[test]
fn hive_tables_and_partitions_are_what_spark_reads() {
    let hdfs = Hdfs::start();
    let ms = Metastore::start(Some(&hdfs.url()));
    let lake = HdfsStorage::connect(&format!("{}/lake", hdfs.url())).expect("connect hdfs");
    let hive = Hive::connect(&ms.uri()).expect("connect metastore");

    let mut orders = HiveTable {
        db: "app".into(),
        name: "orders".into(),
        location: format!("{}/app/orders", lake.root_url()),
        columns: vec![
            col("id", "bigint"),
            col("amount", "decimal(20,0)"),
            col("ts", "timestamp"),
        ],
        partition_keys: vec![col("dt", "string")],
        format: HiveFormat::Parquet,
    };
    hive.ensure_table(&orders).expect("create table");
    hive.ensure_table(&orders)
        .expect("ensure again: nothing to do");
    assert_eq!(
        hive.table("app", "orders").expect("get"),
        Some(orders.clone())
    );
    assert_eq!(hive.table("app", "missing").expect("get"), None);

    // A new column is appended; the existing ones keep their order.
    orders.columns.push(HiveColumn {
        name: "note".into(),
        ty: "string".into(),
        comment: "added later".into(),
    });
    let mut reordered = orders.clone();
    reordered.columns.swap(0, 2);
    hive.ensure_table(&reordered).expect("add a column");
    assert_eq!(
        hive.table("app", "orders").expect("get"),
        Some(orders.clone())
    );

    // Partitions: idempotent; one with data, one empty (its directory made by the metastore).
    lake.create("app/orders/dt=2024-01-02/part-0.parquet")
        .and_then(|mut f| {
            f.write(&orders_parquet())?;
            f.finish()
        })
        .expect("write parquet");
    for day in ["2024-01-02", "2024-01-02", "2024-01-03"] {
        hive.add_partition(
            "app",
            "orders",
            &[day.to_string()],
            &format!("{}/app/orders/dt={day}", lake.root_url()),
        )
        .expect("add partition");
    }
    assert_eq!(
        hive.partition_names("app", "orders").expect("names"),
        ["dt=2024-01-02", "dt=2024-01-03"]
    );
    assert!(hive
        .add_partition("app", "orders", &[], "file:///nowhere")
        .is_err());

    // Avro: a table declared with its schema literal.
    let literal = json!({
        "type": "record", "name": "events", "namespace": "app",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "amount", "type": ["null", {"type": "bytes", "logicalType": "decimal",
                "precision": 20, "scale": 0}], "default": null},
            {"name": "ts", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
                "default": null},
            {"name": "body", "type": ["null", "string"], "default": null}
        ]
    })
    .to_string();
    let events = HiveTable {
        db: "app".into(),
        name: "events".into(),
        location: format!("{}/app/events", lake.root_url()),
        columns: vec![
            col("id", "bigint"),
            col("amount", "decimal(20,0)"),
            col("ts", "timestamp"),
            col("body", "string"),
        ],
        partition_keys: vec![col("dt", "string")],
        format: HiveFormat::Avro {
            schema_literal: literal.clone(),
        },
    };
    hive.ensure_table(&events).expect("create avro table");
    hive.add_partition(
        "app",
        "events",
        &["2024-01-02".to_string()],
        &format!("{}/app/events/dt=2024-01-02", lake.root_url()),
    )
    .expect("avro partition");
    assert_eq!(
        hive.table("app", "events").expect("get"),
        Some(events.clone())
    );

    let got = spark_sql(
        &ms.uri(),
        &[
            "SHOW PARTITIONS app.orders",
            "SELECT * FROM app.orders ORDER BY id",
            "SELECT count(*) AS n FROM app.orders WHERE dt = '2024-01-03'",
            "DESCRIBE app.events",
            "SELECT count(*) AS n FROM app.events",
        ],
    );
    assert_eq!(
        got[0],
        json!([{"partition": "dt=2024-01-02"}, {"partition": "dt=2024-01-03"}])
    );
    assert_eq!(
        got[1],
        json!([
            {"id": "1", "amount": "18446744073709551615", "ts": "2024-01-02T03:04:05.123456",
             "note": "héllo 🦀", "dt": "2024-01-02"},
            {"id": "2", "amount": "0", "ts": "1969-12-31T23:59:59.999999", "note": "",
             "dt": "2024-01-02"},
            {"id": "3", "amount": null, "ts": null, "note": null, "dt": "2024-01-02"},
        ])
    );
    assert_eq!(got[2], json!([{"n": "0"}]));
    let described: Vec<(String, String)> = got[3]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["col_name"].as_str().unwrap_or_default().to_string(),
                r["data_type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .take_while(|(name, _)| !name.starts_with('#'))
        .collect();
    assert_eq!(
        described,
        [
            ("id".to_string(), "bigint".to_string()),
            ("amount".to_string(), "decimal(20,0)".to_string()),
            ("ts".to_string(), "timestamp".to_string()),
            ("body".to_string(), "string".to_string()),
            ("dt".to_string(), "string".to_string()),
        ]
    );
    assert_eq!(got[4], json!([{"n": "0"}]));

    // As `binlake sink` runs it: on a blocking thread of a tokio runtime.
    let uri = ms.uri();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let names = rt
        .block_on(rt.spawn_blocking(move || {
            let hive = Hive::connect(&uri).expect("connect in spawn_blocking");
            hive.partition_names("app", "events").expect("names")
        }))
        .expect("spawn_blocking");
    assert_eq!(names, ["dt=2024-01-02"]);

    // Dropping the EXTERNAL table keeps the files.
    hive.drop_table("app", "orders").expect("drop");
    hive.drop_table("app", "orders").expect("drop again");
    assert_eq!(hive.table("app", "orders").expect("get"), None);
    assert!(lake
        .exists("app/orders/dt=2024-01-02/part-0.parquet")
        .expect("exists"));
}
