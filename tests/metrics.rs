//! The `[metrics]` endpoint of `binlake run` and `binlake sink`, against real servers
//! (MariaDB, Apache Kafka, `binlake registry`, a file:// lake): every metric binlake lists
//! is exposed and moves with the workload; `/ready` is false until the initial snapshot is
//! complete and again while the stream reads events an hour old; JSON logs carry positions.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::mariadb::free_port;
use support::stack::Stack;
use support::workload::{all_types_row, initial_rows, schema, sigterm, workload, Rng, TABLES};

/// `GET path` on 127.0.0.1:port: (status, body); `None` while nothing listens.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Series (`name{labels}`) -> value, from the Prometheus text format.
type Scrape = BTreeMap<String, f64>;

fn scrape(port: u16) -> Scrape {
    let (status, body) = get(port, "/metrics").expect("the metrics endpoint answers");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every series of metric `name` whose labels contain `label` (e.g. `op="c"`).
fn total(s: &Scrape, name: &str, label: &str) -> Option<f64> {
    let mut found = None;
    for (series, v) in s {
        let base = series.split('{').next().unwrap_or_default();
        if base == name && series.contains(label) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Names (without histogram suffixes) present in a scrape.
fn names(s: &Scrape) -> std::collections::BTreeSet<String> {
    s.keys()
        .map(|k| {
            let base = k.split('{').next().unwrap_or_default();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|x| base.strip_suffix(x))
                .unwrap_or(base)
                .to_string()
        })
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_move_with_the_workload_and_ready_follows_the_snapshot_and_the_lag() {
    let (run_port, sink_port) = (free_port(), free_port());
    let stack = Stack::start(false, "", "[snapshot]\nchunk_size = 100\nparallelism = 1\n");
    schema(&stack);
    initial_rows(&stack, 200);
    for from in (200..3000).step_by(400) {
        let rows: Vec<String> = (from..from + 400).map(all_types_row).collect();
        stack.db.sql(&format!(
            "INSERT INTO app.all_types VALUES {}",
            rows.join(",")
        ));
    }
    let listen = format!("127.0.0.1:{run_port}");
    let mut run = stack.spawn_run_env(
        0,
        &[
            ("BINLAKE_METRICS__LISTEN", &listen),
            ("BINLAKE_LOG_FORMAT", "json"),
            ("BINLAKE_LOG", "info,binlake::run=debug"),
        ],
    );

    // /ready, then /metrics: readiness implies a complete snapshot (which never goes back).
    let mut seen_not_ready_in_snapshot = false;
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "run never became ready:\n{}",
            stack.run_logs_tail()
        );
        let Some((status, body)) = get(run_port, "/ready") else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        // Scraped after /ready answered: a ready run has a complete snapshot by then.
        let m = scrape(run_port);
        let complete = m.get("binlake_snapshot_complete").copied();
        if status == 200 {
            assert_eq!(complete, Some(1.0), "ready before the snapshot completed");
            break;
        }
        assert_eq!(status, 503, "{body}");
        seen_not_ready_in_snapshot |= body.contains("snapshot:");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        seen_not_ready_in_snapshot,
        "/ready was never seen failing during the snapshot"
    );
    assert_eq!(get(run_port, "/health").map(|r| r.0), Some(200));
    let m0 = scrape(run_port);
    assert_eq!(
        total(&m0, "binlake_snapshot_rows", "table=\"app.all_types\""),
        Some(3000.0),
        "{m0:?}"
    );
    assert_eq!(
        total(
            &m0,
            "binlake_snapshot_table_done",
            "table=\"app.composite\""
        ),
        Some(1.0)
    );
    assert!(total(&m0, "binlake_snapshot_rows_estimated", "app.nopk").is_some());

    // Events an hour old: the stream is behind, so not ready, until newer events come.
    stack.db.sql(
        "SET TIMESTAMP = UNIX_TIMESTAMP() - 3600; \
         UPDATE app.all_types SET ti = 1 WHERE id < 50;",
    );
    let mut max_lag = 0.0f64;
    let mut lag_reason = false;
    wait_for("the old events are read", Duration::from_secs(30), || {
        let m = scrape(run_port);
        max_lag = max_lag.max(m.get("binlake_source_lag_seconds").copied().unwrap_or(0.0));
        if let Some((503, body)) = get(run_port, "/ready") {
            lag_reason |= body.contains("lag:") && body.contains("behind");
        }
        max_lag >= 3000.0 && lag_reason
    });
    stack
        .db
        .sql("UPDATE app.all_types SET ti = 2 WHERE id < 50");
    wait_for("ready again once current", Duration::from_secs(30), || {
        get(run_port, "/ready").map(|r| r.0) == Some(200)
    });

    // The sink, with its own endpoint.
    let lake = stack.lake_dir("lake");
    let mut sink = stack.spawn_sink(
        0,
        &format!(
            "[sink]\nroot = \"file://{}\"\ngroup_id = \"m\"\nrotate_interval = \"2s\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:{sink_port}\"\n",
            lake.display()
        ),
    );
    let read = || stack.read_lake(&lake, "parquet");
    stack.wait_converged_with(&TABLES, Duration::from_secs(120), "lake", read);
    wait_for("the sink is ready", Duration::from_secs(60), || {
        get(sink_port, "/ready").map(|r| r.0) == Some(200)
    });
    let (m1, s1) = (scrape(run_port), scrape(sink_port));

    // A connection error, counted by kind: kill the server side of the binlog stream.
    let dump = stack.db.query_rows(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'",
    );
    assert_eq!(dump.len(), 1, "{dump:?}");
    stack.db.sql(&format!("KILL {}", dump[0][0]));
    workload(&stack, &mut Rng(0x3e7), 300, 3000);
    stack.wait_converged(&TABLES, Duration::from_secs(120));
    stack.wait_converged_with(&TABLES, Duration::from_secs(120), "lake", read);
    wait_for(
        "the sink has committed its files",
        Duration::from_secs(30),
        || {
            let s = scrape(sink_port);
            total(&s, "binlake_sink_rows_total", "") > total(&s1, "binlake_sink_rows_total", "")
                && total(&s, "binlake_sink_uncommitted_records", "") == Some(0.0)
        },
    );
    // The last commit follows the last acknowledgement by up to a commit period.
    let committed = |m: &Scrape| total(m, "binlake_binlog_committed_offset_bytes", "");
    let start = Instant::now();
    while committed(&scrape(run_port)) <= committed(&m1) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the committed position did not move in 30 s\n{}",
            stack.run_logs_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (m2, s2) = (scrape(run_port), scrape(sink_port));

    // Every metric binlake lists is exposed by one of the two jobs.
    let exposed: std::collections::BTreeSet<String> =
        names(&m2).union(&names(&s2)).cloned().collect();
    for (name, _) in binlake::metrics::NAMES {
        assert!(
            exposed.contains(*name),
            "{name} is not exposed: {exposed:?}"
        );
    }
    // ...and those that count or measure the flow moved with the workload.
    let grew = |a: &Scrape, b: &Scrape, name: &str, label: &str| {
        let (x, y) = (total(a, name, label), total(b, name, label));
        assert!(
            y.unwrap_or(0.0) > x.unwrap_or(0.0),
            "{name}{{{label}}} did not grow: {x:?} -> {y:?}\n{}",
            stack.run_logs_tail()
        );
    };
    for op in ["c", "u", "d"] {
        grew(&m1, &m2, "binlake_rows_read_total", &format!("op=\"{op}\""));
        grew(
            &m1,
            &m2,
            "binlake_records_written_total",
            &format!("op=\"{op}\""),
        );
    }
    grew(
        &m1,
        &m2,
        "binlake_records_written_total",
        "op=\"tombstone\"",
    );
    grew(&m1, &m2, "binlake_rows_read_total", "table=\"app.nopk\"");
    grew(&m1, &m2, "binlake_binlog_read_offset_bytes", "");
    grew(&m1, &m2, "binlake_binlog_committed_offset_bytes", "");
    grew(&m1, &m2, "binlake_kafka_produce_seconds_count", "");
    grew(&m1, &m2, "binlake_end_to_end_seconds_count", "");
    grew(&m1, &m2, "binlake_errors_total", "kind=\"mysql\"");
    grew(
        &s1,
        &s2,
        "binlake_sink_rows_total",
        "table=\"app.all_types\"",
    );
    grew(&s1, &s2, "binlake_sink_files_total", "");
    grew(&s1, &s2, "binlake_sink_bytes_total", "");
    assert_eq!(
        total(&m2, "binlake_binlog_read_file_number", ""),
        total(&m2, "binlake_binlog_committed_file_number", "")
    );
    // Caught up: nothing unread in any partition.
    assert_eq!(
        total(&s2, "binlake_sink_lag_records", ""),
        Some(0.0),
        "{s2:?}"
    );
    let e2e_sum = total(&m2, "binlake_end_to_end_seconds_sum", "").unwrap_or(-1.0);
    assert!(e2e_sum >= 0.0, "{e2e_sum}");

    // JSON logs: every line is an object; the reconnect names the position it resumes from.
    let log = stack.run_log(0);
    let mut reconnect = None;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        if v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("binlog stream failed"))
        {
            reconnect = Some(v);
        }
    }
    let reconnect = reconnect.expect("a reconnect was logged");
    assert!(
        reconnect["last"]
            .as_str()
            .is_some_and(|l| l.starts_with("mysql-bin.")),
        "{reconnect}"
    );
    assert!(reconnect["error"].is_string(), "{reconnect}");

    assert_eq!(sigterm(&mut sink), Some(0), "{}", stack.sink_log(0));
    assert_eq!(sigterm(&mut run), Some(0));
}
