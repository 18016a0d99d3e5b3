//! `binlake sink` against real servers: MariaDB → `binlake run` → Nisshi + `binlake registry`
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
