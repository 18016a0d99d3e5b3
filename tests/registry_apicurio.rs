//! `binlake run`, `sink` and `rebuild` against a third-party registry, unchanged: Apicurio
//! Registry 3 (deploy/local/apicurio.sh) through its Confluent-compatible API
//! (`/apis/ccompat/v7`), on Apache Kafka. A DDL that evolves a schema is registered as a new
//! version; one the BACKWARD level refuses stops `run` with the error that names the subject,
//! and relaxing the level as the error says lets it resume. The topics (Python
//! confluent-kafka with the same registry), the lake (DuckDB) and a rebuild equal the source.

mod support;

use std::process::Command;
use std::time::Duration;

use support::stack::Stack;
use support::workload::{initial_rows, schema, sigterm, wait_exit, workload, Rng, TABLES};

fn http(method: &str, url: &str, body: Option<&str>) -> String {
    let mut args = vec!["-s", "-X", method, url];
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = Command::new("curl").args(&args).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn run_sink_and_rebuild_work_unchanged_against_apicurio_registry() {
    let stack = Stack::start_apicurio("", "");
    schema(&stack);
    initial_rows(&stack, 200);
    stack.db.sql(
        "CREATE TABLE app.evolve (id INT PRIMARY KEY, v INT);
         INSERT INTO app.evolve VALUES (1, 10), (2, 20);",
    );
    let mut tables = TABLES.to_vec();
    tables.push("app.evolve");
    let lake = stack.lake_dir("lake");
    let mut run = stack.spawn_run(0);
    let mut sink = stack.spawn_sink(
        0,
        &format!(
            "[sink]\nroot = \"file://{}\"\nformat = \"parquet\"\ngroup_id = \"lake\"\n\
             rotate_interval = \"2s\"\n",
            lake.display()
        ),
    );
    stack.wait_converged(&tables, Duration::from_secs(120));
    workload(&stack, &mut Rng(0xa91c), 300, 200);

    // A nullable column: allowed under BACKWARD (the level apicurio.sh starts it with).
    stack.db.sql(
        "ALTER TABLE app.evolve ADD COLUMN note VARCHAR(20) NULL;
         INSERT INTO app.evolve VALUES (3, 30, 'three');
         UPDATE app.evolve SET note = 'one' WHERE id = 1;",
    );
    stack.wait_converged(&tables, Duration::from_secs(120));
    let versions = format!(
        "{}/subjects/cdc.app.evolve-value/versions",
        stack.registry_url()
    );
    assert_eq!(http("GET", &versions, None), "[1,2]");

    // A NOT NULL column has no default in Avro: BACKWARD refuses it, and run stops before
    // writing anything of the table past the DDL.
    stack.db.sql(
        "ALTER TABLE app.evolve ADD COLUMN must INT NOT NULL DEFAULT 7;
         INSERT INTO app.evolve VALUES (4, 40, 'four', 8);",
    );
    let code = wait_exit(&mut run, Duration::from_secs(120));
    let log = stack.run_log(0);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("column `must` was added as NOT NULL")
            && log.contains("/config/cdc.app.evolve-value"),
        "{log}"
    );
    assert_eq!(http("GET", &versions, None), "[1,2]");
    // Relaxed as the error says; the restart resumes at the DDL.
    http(
        "PUT",
        &format!("{}/config/cdc.app.evolve-value", stack.registry_url()),
        Some(r#"{"compatibility":"NONE"}"#),
    );
    let mut run = stack.spawn_run(1);
    stack.db.sql("UPDATE app.evolve SET v = v + 1");
    workload(&stack, &mut Rng(0xa91d), 100, 200);
    let topics = stack.wait_converged(&tables, Duration::from_secs(120));
    assert_eq!(topics["duplicate_positions"], 0, "{topics}");
    assert_eq!(http("GET", &versions, None), "[1,2,3]");

    let read = || stack.read_lake(&lake, "parquet");
    let stats = stack.wait_converged_with(&tables, Duration::from_secs(120), "lake", read);
    assert_eq!(stats["duplicate_offsets"], 0, "{stats}");
    assert_eq!(sigterm(&mut sink), Some(0), "{}", stack.sink_log(0));
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(1));

    stack.assert_rebuilt_equal(&tables, "restore");
}
