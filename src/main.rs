//! The `binlake` command line: one subcommand per job, each a few lines over the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::mpsc;

use binlake::config::{Config, Filter, SnapshotMode};
use binlake::mysql::charset::Collations;
use binlake::mysql::check::{self, Level};
use binlake::mysql::decoder::Decoder;
use binlake::mysql::replication::Batch;
use binlake::mysql::{binlog_file, replication};
use binlake::state::SavedState;
use binlake::{output, Change, StartFrom};

/// mimalloc: changes are allocated on the reader's thread and freed on the writer's, a
/// pattern where it is markedly faster than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AFTER_HELP: &str = "\
Examples:
  binlake check --config binlake.toml            verify the server's settings and grants
  binlake run --config binlake.toml              snapshot, then stream into Kafka
  binlake sink --config binlake.toml             write the topics into the lake
  binlake status --config binlake.toml           committed position, snapshot, lag
  binlake tail --config binlake.toml --limit 5   print changes as JSON lines
  binlake config --print-defaults                every setting and its default

Every config key can be set from the environment: BINLAKE_<SECTION>__<KEY>, e.g.
BINLAKE_MYSQL__PASSWORD. The config file may also be given as BINLAKE_CONFIG.

Exit codes: 0 success (also after SIGTERM/ctrl-c), 1 a check failed (check, rebuild
--verify, status: position purged), 2 an error (the message names the problem and the fix).";

#[derive(Parser)]
#[command(
    name = "binlake",
    version,
    about = "MySQL/MariaDB change-data-capture into compacted Kafka topics and a Hive lake",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Log filter (tracing env-filter syntax), also BINLAKE_LOG. Example: --log info,binlake::sink=debug
    #[arg(long, global = true, env = "BINLAKE_LOG", default_value = "info")]
    log: String,
    /// Log lines as text, or as one JSON object per line (for log shippers), also
    /// BINLAKE_LOG_FORMAT. Logs go to stderr.
    #[arg(
        long,
        global = true,
        env = "BINLAKE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    /// One JSON object per row change.
    Json,
    /// Decode but print nothing; print a summary (rows, seconds, rows/s) to stderr at exit.
    None,
}

#[derive(Subcommand)]
enum Cmd {
    /// Stream row changes from the server's binlog as JSON lines.
    ///
    /// Example: binlake tail --config binlake.toml --from mysql-bin.000003:4 --limit 10
    Tail {
        /// The TOML config file (every key: deploy/config/example.toml).
        #[arg(long, env = "BINLAKE_CONFIG")]
        config: PathBuf,
        /// start | end | FILE:POS | FILE:POS:ROW (after that change, as printed) | GTID set
        #[arg(long, default_value = "end")]
        from: StartFrom,
        /// Exit after N row changes (default: follow until interrupted).
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// First read every existing row of the captured tables (op "r"), merged into the
        /// stream without locks, then keep streaming ([snapshot] settings apply).
        #[arg(long)]
        snapshot: bool,
        /// Save the position (and snapshot progress) to this file after output is flushed,
        /// and resume from it when it exists (then --from is ignored).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Decode binlog files on disk (backups, forensics) into the same JSON lines.
    ///
    /// Example: binlake decode /var/lib/mysql/mysql-bin.000042
    Decode {
        files: Vec<PathBuf>,
        /// Optional: [capture] include/exclude and key settings apply.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// Re-snapshot a table (or some rows) in a running `tail` or `run`
    ///
    /// Asks the running process through its [admin] endpoint; the rows arrive in its stream
    /// as op "r", merged like the initial snapshot.
    ///
    /// Example: binlake snapshot --config binlake.toml --table shop.orders --where "id BETWEEN 1 AND 1000"
    Snapshot {
        /// The TOML config file (every key: deploy/config/example.toml).
        #[arg(long, env = "BINLAKE_CONFIG")]
        config: PathBuf,
        /// db.table
        #[arg(long)]
        table: String,
        /// SQL condition selecting the rows (default: the whole table).
        #[arg(long = "where")]
        where_: Option<String>,
    },
    /// Snapshot, then stream, every captured table into its Kafka topic
    ///
    /// One compacted topic per table ({topic_prefix}.{db}.{table}), Avro, schemas in the
    /// registry. Resumes from the committed position; SIGTERM or Ctrl-C flushes, commits and
    /// exits 0. With [metrics] listen it serves /metrics, /health and /ready.
    ///
    /// Example: binlake run --config /etc/binlake/binlake.toml
    Run {
        /// The TOML config file (every key: deploy/config/example.toml).
        #[arg(long, env = "BINLAKE_CONFIG")]
        config: PathBuf,
        /// Where to start streaming when no position was committed yet: start | end |
        /// FILE:POS | GTID set (default: end, after the snapshot's starting point). Ignored
        /// once a position is committed.
        #[arg(long)]
        from: Option<StartFrom>,
    },
    /// Show the committed position, the snapshot's progress and the lag behind the server
    ///
    /// Read-only. The lag is in binlog bytes and files up to the server's end; exit 1 when
    /// the server has purged the position's binlog file (run cannot resume).
    ///
    /// Example: binlake status --config /etc/binlake/binlake.toml
    Status {
        /// The TOML config file (every key: deploy/config/example.toml).
        #[arg(long, env = "BINLAKE_CONFIG")]
        config: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the configuration: the defaults, or what a file gives
    ///
    /// --print-defaults prints every default; --config F prints what F gives after the
    /// environment's overrides, with passwords and tokens masked.
    ///
    /// Example: binlake config --print-defaults > binlake.toml
    ///
    /// Example: BINLAKE_KAFKA__BROKERS=k1:9092 binlake config --config binlake.toml
    Config {
        /// The TOML config file to print.
        #[arg(
            long,
            env = "BINLAKE_CONFIG",
            required_unless_present = "print_defaults"
        )]
        config: Option<PathBuf>,
        /// Print the defaults instead.
        #[arg(long, conflicts_with = "config")]
        print_defaults: bool,
    },
    /// Check every prerequisite on the server and print the fix for each failure
    ///
    /// Binlog settings, grants, table keys; exit 1 if any fails.
    ///
    /// Example: binlake check --config binlake.toml
    Check {
        /// The TOML config file (every key: deploy/config/example.toml).
        #[arg(long, env = "BINLAKE_CONFIG")]
        config: PathBuf,
    },
    /// Serve a Confluent-compatible schema registry
    ///
    /// Avro schemas, kept in the Kafka topic `[registry] topic`; runs until SIGTERM or
    /// ctrl-c.
    ///
    /// Example: binlake registry --config binlake.toml
    Registry {
        /// The TOML config file (every key: deploy/config/example.toml).
        #[arg(long, env = "BINLAKE_CONFIG")]
        config: PathBuf,
    },
    /// Write the table topics into the lake and the Hive metastore
    ///
    /// Files in Hive partitions ([sink] root: file:// or hdfs://, Parquet or Avro), registered
    /// in the Hive metastore ([hive]). Several sinks with one [sink] group_id share the
    /// partitions. SIGTERM or Ctrl-C closes the open files and exits 0. With [metrics] listen
    /// it serves /metrics, /health and /ready.
    ///
    /// Example: binlake sink --config binlake.toml
    Sink {
        /// The TOML config file (every key: deploy/config/example.toml).
        #[arg(long, env = "BINLAKE_CONFIG")]
        config: PathBuf,
    },
    /// Rebuild a table from its compacted topic, into MySQL/MariaDB or a Parquet snapshot
    ///
    /// Reads the topic from the first offset to the end offsets taken at the start (or keeps
    /// following), keeps the last value per key, and writes the table into MySQL/MariaDB
    /// (batched upserts and deletes into a staging table that is then swapped in with one
    /// RENAME) or as a Parquet snapshot directory. Exit 0 when done, 1 when --verify found a
    /// difference, 2 on an error.
    ///
    /// Example: binlake rebuild --config binlake.toml --table shop.orders --into mysql://root@127.0.0.1:3306/restore --create --verify
    ///
    /// Example: binlake rebuild --config binlake.toml --table shop.orders --into mysql://app@10.0.0.5/shop --follow
    ///
    /// Example: binlake rebuild --config binlake.toml --topic binlake.shop.orders --into hdfs://nn:8020/snapshots/orders
    Rebuild {
        /// The TOML config file (every key: deploy/config/example.toml).
        #[arg(long, env = "BINLAKE_CONFIG")]
        config: PathBuf,
        /// The table topic to read (or --table).
        #[arg(long, conflicts_with = "table", required_unless_present = "table")]
        topic: Option<String>,
        /// The source table, db.table: its topic is {topic_prefix}.db.table.
        #[arg(long)]
        table: Option<String>,
        /// mysql://user[:password]@host[:port]/db (the password may come from MYSQL_PWD),
        /// file:///dir or hdfs://host:port/dir. Default: the [mysql] server and the table's own
        /// database, allowed only when the table no longer exists there.
        #[arg(long)]
        into: Option<String>,
        /// Create the table when it does not exist, with the source's column types and primary
        /// key (an existing table is kept as defined: its rows are replaced).
        #[arg(long)]
        create: bool,
        /// After the pass, keep applying new changes until SIGTERM or Ctrl-C.
        #[arg(long)]
        follow: bool,
        /// Then compare with the source table (default: the [mysql] server, or a mysql:// URL):
        /// row counts and per-chunk checksums in primary-key order, then the differing keys.
        #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "URL")]
        verify: Option<String>,
        /// Connections writing at once (MySQL).
        #[arg(long, default_value_t = 4)]
        writers: usize,
        /// Rows per INSERT statement (MySQL).
        #[arg(long, default_value_t = 1000)]
        batch_rows: usize,
    },
}

/// Counts, prints and enforces --limit. Returns false when the limit is reached.
struct Printer {
    format: Format,
    limit: Option<u64>,
    rows: u64,
    started: Instant,
    buf: Vec<u8>,
    out: std::io::StdoutLock<'static>,
}

impl Printer {
    fn new(format: Format, limit: Option<u64>) -> Self {
        Printer {
            format,
            limit,
            rows: 0,
            started: Instant::now(),
            buf: Vec::with_capacity(1 << 16),
            out: std::io::stdout().lock(),
        }
    }

    /// Prints changes up to the limit; returns how many were taken.
    fn batch(&mut self, changes: &[Change]) -> anyhow::Result<usize> {
        let room = self
            .limit
            .map_or(usize::MAX, |l| l.saturating_sub(self.rows) as usize);
        let take = changes.len().min(room);
        if self.format == Format::Json {
            for c in &changes[..take] {
                output::write_change(c, &mut self.buf);
            }
        }
        self.rows += take as u64;
        if self.buf.len() > 1 << 15 {
            self.flush()?;
        }
        Ok(take)
    }

    /// The limit has been reached.
    fn done(&self) -> bool {
        self.limit.is_some_and(|l| self.rows >= l)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.out.write_all(&self.buf).context("writing to stdout")?;
        self.buf.clear();
        self.out.flush().context("writing to stdout")?;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.flush()?;
        if self.format == Format::None {
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!(
                "rows={} seconds={:.3} rows_per_sec={:.0}",
                self.rows,
                secs,
                self.rows as f64 / secs.max(1e-9)
            );
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = cli.log_format == LogFormat::Json;
    if json {
        logs.json().flatten_event(true).init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    // `run` decodes the binlog on one worker while the other encodes and produces; the
    // other commands are fastest on one thread (BENCHMARKS.md).
    let mut builder = if matches!(
        cli.cmd,
        Cmd::Run { .. } | Cmd::Sink { .. } | Cmd::Rebuild { .. }
    ) {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(run(cli.cmd));
    // A blocking read still waiting on an unresponsive server (which the command gave up
    // on, with an error) must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            if json {
                tracing::error!(error = format!("{e:#}"), "stopped on an error");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(2)
        }
    }
}

/// A flag set on SIGTERM or ctrl-c, for jobs that run on a blocking thread.
fn stop_on_signal() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let signal = shutdown_signal();
    tokio::spawn(async move {
        signal.await;
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    stop
}

async fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Tail {
            config,
            from,
            limit,
            format,
            snapshot,
            state: state_path,
        } => {
            let cfg = Config::load(&config)?;
            anyhow::ensure!(
                !(snapshot && cfg.snapshot.mode == SnapshotMode::Never),
                "--snapshot with [snapshot] mode = \"never\": remove one of them"
            );
            let saved = match &state_path {
                Some(p) => SavedState::load(p)?,
                None => None,
            };
            let saved = binlake::state::drop_if_purged(
                &cfg,
                saved,
                snapshot && cfg.snapshot.mode == SnapshotMode::WhenNeeded,
                "set [snapshot] mode = \"when_needed\" and run with --snapshot",
                &state_path
                    .as_deref()
                    .unwrap_or(config.as_path())
                    .display()
                    .to_string(),
            )
            .await?;
            let from = match saved.as_ref().and_then(SavedState::resume_from) {
                Some(resume) => {
                    tracing::info!(?resume, "resuming from the saved state");
                    resume
                }
                None => from,
            };
            let mut state = saved.unwrap_or_default();
            let snapshot_requested = snapshot;
            let snapshot = snapshot.then(|| state.snapshot.clone().unwrap_or_default());
            let adhoc = match &cfg.admin.listen {
                Some(listen) => {
                    let (req_tx, req_rx) = mpsc::channel(8);
                    binlake::admin::serve(listen, cfg.admin.token.clone(), req_tx).await?;
                    Some(req_rx)
                }
                None => None,
            };
            let (tx, mut rx) = mpsc::channel::<Batch>(64);
            let source = tokio::spawn(async move {
                replication::stream(&cfg, from, snapshot, adhoc, None, tx).await
            });
            let mut printer = Printer::new(format, limit);
            let mut bars = if snapshot_requested {
                binlake::progress::Bars::for_terminal()
            } else {
                None
            };
            let mut interrupted = false;
            // SIGTERM or ctrl-c: flush, save the state, exit 0.
            let stop = shutdown_signal();
            tokio::pin!(stop);
            let mut last_save = Instant::now();
            let mut dirty = false;
            let mut save_tick = tokio::time::interval(std::time::Duration::from_secs(1));
            while !printer.done() {
                tokio::select! {
                    batch = rx.recv() => match batch {
                        Some(b) => {
                            let taken = printer.batch(&b.changes)?;
                            let mut save_now = false;
                            if let Some(at) = b.started_at {
                                state.started_at.get_or_insert(at);
                                dirty = true;
                            }
                            if let Some(c) = b.changes[..taken].last() {
                                state.last = Some(c.pos.clone());
                                dirty = true;
                            }
                            // Snapshot progress counts only if every change it covers is out.
                            if let Some(p) = b.snapshot.filter(|_| taken == b.changes.len()) {
                                if let Some(bars) = &mut bars {
                                    bars.update(&p);
                                }
                                state.snapshot = Some(p);
                                save_now = true;
                            }
                            // Following a live server: print what we have when nothing more
                            // is waiting, so a change shows up as soon as it is read.
                            if rx.is_empty() {
                                printer.flush()?;
                            }
                            if let Some(p) = &state_path {
                                if save_now || (dirty && last_save.elapsed().as_millis() >= 1000) {
                                    printer.flush()?;
                                    state.save(p)?;
                                    last_save = Instant::now();
                                    dirty = false;
                                }
                            }
                        }
                        None => break,
                    },
                    // Idle: what was printed is saved within a second too.
                    _ = save_tick.tick(), if dirty && state_path.is_some() => {
                        if let Some(p) = &state_path {
                            printer.flush()?;
                            state.save(p)?;
                            last_save = Instant::now();
                            dirty = false;
                        }
                    }
                    _ = &mut stop => { interrupted = true; break; }
                }
            }
            let more = !printer.done();
            drop(rx);
            printer.finish()?;
            if let Some(p) = &state_path {
                state.save(p)?;
            }
            if more && !interrupted {
                // The source ended by itself: that is an error (or a closed stream).
                source.await.context("binlog reader task")??;
            } else {
                source.abort();
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Decode {
            files,
            config,
            limit,
            format,
        } => {
            anyhow::ensure!(!files.is_empty(), "name at least one binlog file to decode");
            let cfg = match config {
                Some(p) => Config::load(&p)?,
                None => Config::default(),
            };
            let mut decoder = Decoder::new(
                Collations::default(),
                Filter::new(&cfg.capture),
                cfg.capture.key,
            );
            // Files on disk: a statement-logged change is reported, the rest still decoded.
            decoder.skip_statements();
            let mut printer = Printer::new(format, limit);
            let mut more = true;
            for f in &files {
                let r = binlog_file::decode_file(f, &mut decoder, &mut |batch| {
                    if more {
                        printer.batch(batch).map_err(|e| binlake::Error::Io {
                            context: "writing output".into(),
                            cause: std::io::Error::other(e.to_string()),
                        })?;
                        more = !printer.done();
                    }
                    Ok(())
                });
                if let Err(e) = r {
                    printer.finish()?;
                    return Err(e.into());
                }
                if !more {
                    break;
                }
            }
            printer.finish()?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Snapshot {
            config,
            table,
            where_,
        } => {
            let cfg = Config::load(&config)?;
            let listen = cfg.admin.listen.as_deref().context(
                "[admin] listen is not set: the running tail has no admin endpoint to ask",
            )?;
            let req = binlake::admin::SnapshotRequest { table, where_ };
            let (status, reply) =
                binlake::admin::request_snapshot(listen, cfg.admin.token.as_deref(), &req).await?;
            println!("{}", reply.message);
            Ok(if (200..300).contains(&status) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Run { config, from } => {
            let cfg = Config::load(&config)?;
            // Not ready until run has read its state and knows whether a snapshot is due.
            binlake::metrics::health().set("snapshot", Some("starting".into()));
            binlake::metrics::serve(&cfg.metrics).await?;
            binlake::run::run(&cfg, from, shutdown_signal()).await?;
            tracing::info!("binlake run stopped");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Registry { config } => {
            let cfg = Config::load(&config)?;
            binlake::registry::run(&cfg, shutdown_signal()).await?;
            tracing::info!("schema registry stopped");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sink { config } => {
            let cfg = Config::load(&config)?;
            binlake::metrics::serve(&cfg.metrics).await?;
            let stop = stop_on_signal();
            let rt = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || binlake::sink::run(cfg, stop, rt))
                .await
                .context("the sink thread")??;
            tracing::info!("binlake sink stopped");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Rebuild {
            config,
            topic,
            table,
            into,
            create,
            follow,
            verify,
            writers,
            batch_rows,
        } => {
            use binlake::rebuild::{self, mysql::MysqlUrl, Target};
            let cfg = Config::load(&config)?;
            let topic = match (topic, table) {
                (Some(t), _) => t,
                (None, Some(t)) => rebuild::topic_of(&cfg, &t)?,
                (None, None) => {
                    anyhow::bail!("name the table (--table db.t) or the topic (--topic)")
                }
            };
            let target = match into.as_deref() {
                None => Target::Mysql(MysqlUrl::from_config(&cfg)?),
                Some(u) if u.starts_with("mysql://") => Target::Mysql(MysqlUrl::parse(u)?),
                Some(u) if u.starts_with("file://") || u.starts_with("hdfs://") => {
                    Target::Lake(u.to_string())
                }
                Some(u) => anyhow::bail!(
                    "--into {u}: use mysql://user@host:port/db, file:///dir or hdfs://host:port/dir"
                ),
            };
            anyhow::ensure!(
                verify.is_none() || (matches!(target, Target::Mysql(_)) && !follow),
                "--verify compares a MySQL target after a full pass: not with --follow or a \
                 snapshot directory"
            );
            let opts = rebuild::Options {
                topic,
                target: target.clone(),
                create,
                follow,
                writers,
                batch_rows,
            };
            let stop = stop_on_signal();
            let rt = tokio::runtime::Handle::current();
            let (cfg2, rt2) = (cfg.clone(), rt.clone());
            let summary =
                tokio::task::spawn_blocking(move || rebuild::run(&cfg2, &opts, stop, rt2))
                    .await
                    .context("the rebuild thread")??;
            eprintln!("{summary}");
            if let (Some(v), Target::Mysql(into)) = (verify, &target) {
                let source = if v.is_empty() {
                    MysqlUrl::from_config(&cfg)?
                } else {
                    MysqlUrl::parse(&v)?
                };
                let report = rebuild::verify_summary(&summary, &source, into).await?;
                eprintln!("{report}");
                if !report.equal() {
                    return Ok(ExitCode::from(1));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { config, json } => {
            let cfg = Config::load(&config)?;
            let status = binlake::status::read(&cfg).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{status}");
            }
            Ok(if status.purged {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Config {
            config,
            print_defaults,
        } => {
            match config {
                Some(p) if !print_defaults => print!("{}", Config::load(&p)?.to_toml_masked()),
                _ => print!("{}", Config::defaults_toml()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { config } => {
            let cfg = Config::load(&config)?;
            let findings = check::run(&cfg).await?;
            for f in &findings {
                println!("{f}");
            }
            let failed = findings.iter().filter(|f| f.level == Level::Fail).count();
            let warned = findings.iter().filter(|f| f.level == Level::Warn).count();
            println!("{failed} failed, {warned} warnings");
            Ok(if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// Completes on ctrl-c or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: a SIGTERM during start-up (before the pipeline waits on
/// this future) is then a graceful stop, not the default action that kills the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on ctrl-c only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
