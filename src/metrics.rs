//! Observability of a running job: the Prometheus endpoint (`GET /metrics`), liveness
//! (`GET /health`) and readiness (`GET /ready`), served where `[metrics] listen` says.
//!
//! The code records through the `metrics` facade; without `[metrics] listen` no recorder is
//! installed and every record is a no-op. Readiness is a set of named conditions, each either
//! met or carrying the reason it is not (`snapshot`: the initial snapshot is not complete;
//! `lag`: no event or heartbeat read yet, or more than `[metrics] ready_lag_secs` behind).
//! Invariant: `/ready` answers 200 only when every condition a job registered is met, and
//! its body names every unmet one.
//!
//! The metric names are listed in [`NAMES`]; README.md documents them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::MetricsConfig;
use crate::error::{Error, Result};

/// Every metric binlake records, with its help text (also checked by a unit test against the
/// code, and the source of README's table).
pub const NAMES: &[(&str, &str)] = &[
    // binlake run
    ("binlake_rows_read_total", "row changes read from the binlog or the snapshot, by table and op (c, u, d, r)"),
    ("binlake_records_written_total", "Kafka records acknowledged, by table and op (c, u, d, r, tombstone)"),
    ("binlake_binlog_read_file_number", "sequence number of the binlog file being read"),
    ("binlake_binlog_read_offset_bytes", "offset in that file up to which events were read"),
    ("binlake_binlog_committed_file_number", "sequence number of the file of the last committed position"),
    ("binlake_binlog_committed_offset_bytes", "offset of the last committed position"),
    ("binlake_source_lag_seconds", "seconds between now and the commit time of the last event read; 0 on a heartbeat (nothing newer at the source)"),
    ("binlake_snapshot_rows", "rows the snapshot emitted so far, by table"),
    ("binlake_snapshot_rows_estimated", "the server's estimate of the table's rows, by table"),
    ("binlake_snapshot_table_done", "1 once every range of the table is snapshotted, by table"),
    ("binlake_snapshot_complete", "1 once the initial snapshot is complete (or none is to be taken)"),
    ("binlake_kafka_produce_seconds", "time from handing a record to the producer to its acknowledgement (one record in 8 is timed)"),
    ("binlake_kafka_queue_records", "records sent to the producer and not acknowledged yet"),
    ("binlake_end_to_end_seconds", "time from the source's commit (event timestamp, whole seconds on MariaDB) to Kafka's acknowledgement (one record in 8 is timed)"),
    // binlake sink
    ("binlake_sink_rows_total", "changes written into lake files, by table"),
    ("binlake_sink_files_total", "lake files committed, by table"),
    ("binlake_sink_bytes_total", "bytes of the lake files committed, by table"),
    ("binlake_sink_lag_records", "records in the partition not read yet (high watermark - next offset), by topic and partition"),
    ("binlake_sink_uncommitted_records", "records read but not yet in a committed file (open window), by topic and partition"),
    ("binlake_sink_lag_seconds", "age of the oldest record the sink has not read yet, across its partitions (0 when caught up)"),
    // both
    ("binlake_errors_total", "errors, by kind (mysql, kafka, delivery, registry, storage, hive, decode, config, io, other)"),
];

/// Buckets of the latency histograms, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Readiness: named conditions, each met (`None`) or not (the reason), plus the lag.
pub struct Health {
    conditions: Mutex<BTreeMap<&'static str, Option<String>>>,
    /// Seconds behind, as f64 bits; NaN: nothing read yet.
    lag: AtomicU64,
    /// A job that reports its lag registered it (`/ready` then checks it).
    lag_tracked: AtomicBool,
    /// `[metrics] ready_lag_secs`.
    max_lag: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            conditions: Mutex::default(),
            lag: AtomicU64::new(f64::NAN.to_bits()),
            lag_tracked: AtomicBool::new(false),
            max_lag: AtomicU64::new(10),
        }
    }
}

impl Health {
    /// Sets one condition: `None` when met, otherwise why it is not.
    pub fn set(&self, name: &'static str, unmet: Option<String>) {
        if let Ok(mut c) = self.conditions.lock() {
            c.insert(name, unmet);
        }
    }

    /// Records how far behind the job is (seconds); `/ready` fails above `ready_lag_secs`.
    /// Cheap: called for every event.
    pub fn set_lag(&self, secs: f64) {
        self.lag.store(secs.to_bits(), Ordering::Relaxed);
    }

    /// From now on `/ready` also requires a known lag within `ready_lag_secs`.
    pub fn track_lag(&self) {
        self.lag_tracked.store(true, Ordering::Relaxed);
    }

    /// `Ok` when every condition is met, otherwise the reasons, one per line.
    pub fn ready(&self) -> std::result::Result<(), String> {
        let Ok(c) = self.conditions.lock() else {
            return Err("internal: readiness state poisoned".into());
        };
        let mut unmet: Vec<String> = c
            .iter()
            .filter_map(|(n, r)| r.as_ref().map(|r| format!("{n}: {r}")))
            .collect();
        if self.lag_tracked.load(Ordering::Relaxed) {
            let lag = f64::from_bits(self.lag.load(Ordering::Relaxed));
            let max = self.max_lag.load(Ordering::Relaxed) as f64;
            if lag.is_nan() {
                unmet.push("lag: no event or heartbeat read yet".into());
            } else if lag > max {
                unmet.push(format!(
                    "lag: {lag:.0} s behind (ready_lag_secs = {max:.0})"
                ));
            }
        }
        if unmet.is_empty() {
            Ok(())
        } else {
            Err(unmet.join("\n"))
        }
    }
}

/// The process's readiness conditions (one job per process).
pub fn health() -> &'static Health {
    static HEALTH: OnceLock<Health> = OnceLock::new();
    HEALTH.get_or_init(Health::default)
}

/// A recorder is installed: recording has an effect.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether metrics are recorded (`[metrics] listen` is set); lets hot paths skip the work.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Counts one error of `kind` (see [`Error::kind`]).
pub fn error(kind: &'static str) {
    metrics::counter!("binlake_errors_total", "kind" => kind).increment(1);
}

/// Installs the Prometheus recorder and serves `/metrics`, `/health` and `/ready` on
/// `[metrics] listen`, when it is set. Returns the bound address.
pub async fn serve(cfg: &MetricsConfig) -> Result<Option<std::net::SocketAddr>> {
    health()
        .max_lag
        .store(cfg.ready_lag_secs, Ordering::Relaxed);
    let Some(listen) = &cfg.listen else {
        return Ok(None);
    };
    let handle = install()?;
    // Both jobs report their lag; until the first report, not ready.
    health().track_lag();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Io {
            context: format!("binding the metrics endpoint to {listen} ([metrics] listen)"),
            cause: e,
        })?;
    let addr = listener.local_addr().map_err(|e| Error::Io {
        context: "reading the metrics endpoint's address".into(),
        cause: e,
    })?;
    let render = handle.clone();
    let app = Router::new()
        .route("/metrics", get(move || async move { render.render() }))
        .route("/health", get(|| async { "ok\n" }))
        .route(
            "/ready",
            get(|| async {
                match health().ready() {
                    Ok(()) => (StatusCode::OK, "ready\n".to_string()),
                    Err(why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready\n{why}\n"),
                    ),
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    // Histograms keep their samples until drained: drain them every second, also when
    // nobody scrapes (memory).
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
    tracing::info!(%addr, "metrics endpoint listening (/metrics, /health, /ready)");
    Ok(Some(addr))
}

fn install() -> Result<PrometheusHandle> {
    let mut b = PrometheusBuilder::new();
    for h in [
        "binlake_kafka_produce_seconds",
        "binlake_end_to_end_seconds",
    ] {
        b = b
            .set_buckets_for_metric(Matcher::Full(h.into()), LATENCY_BUCKETS)
            .map_err(|e| Error::Unsupported(format!("metrics buckets: {e}")))?;
    }
    let recorder = b.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| {
        Error::Unsupported(format!(
            "installing the metrics recorder a second time: {e}"
        ))
    })?;
    for (name, help) in NAMES {
        metrics::describe_counter!(*name, *help);
    }
    ENABLED.store(true, Ordering::Relaxed);
    Ok(handle)
}

impl Error {
    /// The kind label of `binlake_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Decode { .. } | Error::Checksum { .. } | Error::Corrupt { .. } => "decode",
            Error::Io { .. } => "io",
            Error::Mysql { .. } | Error::MysqlTls { .. } => "mysql",
            Error::Kafka { .. } | Error::KafkaAccess(_) => "kafka",
            Error::Delivery(_) | Error::TooLarge { .. } => "delivery",
            Error::Registry(_) => "registry",
            Error::Encode(_) => "encode",
            Error::Storage { .. } => "storage",
            Error::Hive(_) => "hive",
            Error::Unsupported(_) => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_condition_is_met() {
        let h = Health::default();
        assert!(h.ready().is_ok(), "no condition registered: ready");
        h.set("snapshot", Some("3 of 5 tables".into()));
        h.track_lag();
        let why = h.ready().unwrap_err();
        assert!(why.contains("snapshot: 3 of 5 tables"), "{why}");
        assert!(why.contains("lag: no event"), "{why}");
        h.set("snapshot", None);
        h.set_lag(42.0);
        let why = h.ready().unwrap_err();
        assert!(
            why.starts_with("lag: 42 s behind (ready_lag_secs = 10)"),
            "{why}"
        );
        h.set_lag(3.0);
        assert!(h.ready().is_ok());
    }

    #[test]
    fn every_metric_recorded_in_the_code_is_listed() {
        // Every `binlake_…` name in a metrics macro in src/ is in NAMES, and every name in
        // NAMES is recorded somewhere.
        let mut found = std::collections::BTreeSet::new();
        let mut stack = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "rs")
                    && !path.ends_with("metrics.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for part in text.split('"').skip(1).step_by(2) {
                        if part.starts_with("binlake_")
                            && part.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        {
                            found.insert(part.to_string());
                        }
                    }
                }
            }
        }
        found.insert("binlake_errors_total".into()); // recorded in this file
        let listed: std::collections::BTreeSet<String> =
            NAMES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(found, listed);
    }
}
