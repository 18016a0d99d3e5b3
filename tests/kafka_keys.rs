//! Kafka compacts by key bytes, so one row must have one key, byte for byte, whatever
//! binlake knew about its table when it wrote it. The reader (Python confluent-kafka, see
//! tests/python/read_tables.py) keys rows by the raw key bytes, as compaction does.

mod support;

use std::time::Duration;

use support::stack::Stack;
use support::workload::sigterm;

/// A restarted run that reads events from before an ALTER TABLE decodes them without the
/// server's declarations (the server's table has changed since). Its key schema, and with
/// it the schema id inside every key, must not change: else a delete replayed there writes
/// a tombstone for a key that was never written, and the row stays in the compacted topic.
#[test]
fn a_row_keeps_its_key_bytes_across_a_restart_over_an_alter_table() {
    let stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app;
         CREATE TABLE app.c (tenant VARCHAR(10), id BIGINT, v INT, PRIMARY KEY (id, tenant));
         INSERT INTO app.c VALUES ('a', 1, 1), ('b', 2, 2), ('c', 3, 3);",
    );
    let mut run = stack.spawn_run(0);
    stack
        .db
        .sql("INSERT INTO app.c VALUES ('d', 4, 4), ('e', 5, 5);");
    stack.wait_converged(&["app.c"], Duration::from_secs(120));
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(0));

    // While run is stopped: deletes and a key change, then the table changes shape.
    stack.db.sql(
        "DELETE FROM app.c WHERE id IN (1, 4);
         UPDATE app.c SET tenant = 'z' WHERE id = 2;
         ALTER TABLE app.c ADD COLUMN note VARCHAR(20) NULL;
         DELETE FROM app.c WHERE id = 5;
         INSERT INTO app.c VALUES ('f', 6, 6, 'x');",
    );
    let mut run = stack.spawn_run(1);
    let stats = stack.wait_converged(&["app.c"], Duration::from_secs(120));
    assert!(stats["tombstones"].as_u64().unwrap_or(0) >= 4, "{stats}");
    let log = stack.run_log(1);
    assert_eq!(sigterm(&mut run), Some(0), "{log}");
}
