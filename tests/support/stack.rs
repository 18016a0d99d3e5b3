//! The whole pipeline's servers for one test: MariaDB, a broker, `binlake registry`, and a
//! config that points `binlake run` at them; plus the independent reader (Python
//! confluent-kafka) and the source tables in the same canonical text form.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::broker::{Broker, COMPACTING_TOPIC_CONFIG};
use super::mariadb::{free_port, MariaDb};

pub struct Stack {
    pub db: MariaDb,
    pub broker: Broker,
    pub registry_port: u16,
    registry: Option<Child>,
    pub prefix: String,
    pub config: PathBuf,
    /// `user:password` for the registry, when it requires basic auth.
    pub registry_auth: Option<String>,
    /// librdkafka properties the independent reader needs for the broker (security), the
    /// same as the config's [kafka.properties].
    pub kafka_properties: Vec<(String, String)>,
    /// The directory of the Apicurio Registry that serves as the registry, if one does.
    apicurio: Option<PathBuf>,
    /// Environment of the independent reader (read_tables.py), e.g. `POSITION_FILTER=off`.
    pub reader_env: Vec<(String, String)>,
    /// Every `run` and `sink` started, killed on drop if still running (a failed assertion
    /// must not leave them behind).
    spawned: std::sync::Mutex<Vec<u32>>,
}

impl Stack {
    /// Starts MariaDB, a one-node Apache Kafka and the registry. When `compacting`, the log
    /// cleaner compacts binlake's topics within seconds (see
    /// [`super::broker::COMPACTING_TOPIC_CONFIG`]). `extra` is appended to the config (use
    /// sections other than [mysql], [kafka] and [registry], or override keys through
    /// `kafka_extra`).
    pub fn start(compacting: bool, kafka_extra: &str, extra: &str) -> Stack {
        if compacting {
            let kafka_extra = format!("{COMPACTING_TOPIC_CONFIG}\n{kafka_extra}");
            Stack::start_on(Broker::start_compacting(), &[], &kafka_extra, extra)
        } else {
            Stack::start_on(Broker::start(), &[], kafka_extra, extra)
        }
    }

    /// [`Stack::start`] with Apicurio Registry 3 (deploy/local/apicurio.sh, in-memory
    /// storage, BACKWARD by default) instead of `binlake registry`: the config's [registry]
    /// url is its Confluent-compatible API.
    pub fn start_apicurio(kafka_extra: &str, extra: &str) -> Stack {
        Stack::start_with(Broker::start(), &[], kafka_extra, extra, false)
    }

    /// [`Stack::start`] on a broker the caller started (e.g. [`Broker::start_secure`]), with
    /// `properties` as the config's [kafka.properties] and the reader's client properties.
    pub fn start_on(
        broker: Broker,
        properties: &[(&str, &str)],
        kafka_extra: &str,
        extra: &str,
    ) -> Stack {
        Stack::start_with(broker, properties, kafka_extra, extra, true)
    }

    fn start_with(
        broker: Broker,
        properties: &[(&str, &str)],
        kafka_extra: &str,
        extra: &str,
        embedded_registry: bool,
    ) -> Stack {
        let db = MariaDb::start();
        let mut kafka_extra = kafka_extra.to_string();
        if !properties.is_empty() {
            kafka_extra += "\n[kafka.properties]\n";
            for (k, v) in properties {
                kafka_extra += &format!("{k:?} = {v:?}\n");
            }
        }
        let registry_port = free_port();
        let registry_path = if embedded_registry {
            ""
        } else {
            "/apis/ccompat/v7"
        };
        let config = db.dir.join("binlake.toml");
        std::fs::write(
            &config,
            format!(
                "[mysql]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"binlake\"\npassword = \"binlake\"\nserver_id = 4243\nretry_secs = 120\n\n\
                 [kafka]\nbrokers = \"{}\"\ntopic_prefix = \"cdc\"\npartitions = 3\nmessage_timeout_secs = 120\n{kafka_extra}\n\n\
                 [registry]\nurl = \"http://127.0.0.1:{registry_port}{registry_path}\"\n\n{extra}",
                db.port,
                broker.bootstrap()
            ),
        )
        .expect("write config");
        let mut s = Stack {
            db,
            broker,
            registry_port,
            registry: None,
            prefix: "cdc".into(),
            config,
            registry_auth: None,
            spawned: Default::default(),
            reader_env: Vec::new(),
            apicurio: None,
            kafka_properties: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        if embedded_registry {
            s.start_registry();
        } else {
            s.start_apicurio_registry();
        }
        s
    }

    fn start_apicurio_registry(&mut self) {
        let dir = self.db.dir.join("apicurio");
        let out = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/local/apicurio.sh"
            ))
            .args(["start", dir.to_str().expect("utf-8 path")])
            .arg(self.registry_port.to_string())
            .env("BINLAKE_OWNER_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .expect("run deploy/local/apicurio.sh start");
        assert!(
            out.status.success(),
            "apicurio.sh start: {}{} (install: bash deploy/local/apicurio.sh install)",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.apicurio = Some(dir);
    }

    pub fn start_registry(&mut self) {
        let log = std::fs::File::create(self.db.dir.join("registry.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_binlake"))
            .args([
                "registry",
                "--config",
                self.config.to_str().expect("utf-8 path"),
            ])
            .env("BINLAKE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn binlake registry");
        self.registry = Some(child);
        let start = Instant::now();
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.registry_port)) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                // 401: up, and asking for credentials.
                let status = buf.lines().next().unwrap_or_default();
                if status.contains(" 200") || status.contains(" 401") {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "binlake registry did not answer within 60 s: {}",
                std::fs::read_to_string(self.db.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop_registry(&mut self) {
        if let Some(mut c) = self.registry.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The registry's Confluent-compatible base URL (the config's [registry] url).
    pub fn registry_url(&self) -> String {
        match self.apicurio {
            Some(_) => format!("http://127.0.0.1:{}/apis/ccompat/v7", self.registry_port),
            None => format!("http://127.0.0.1:{}", self.registry_port),
        }
    }

    /// Starts `binlake run` in the background, logging to `run-{n}.log` in the server's dir.
    pub fn spawn_run(&self, n: usize) -> Child {
        self.spawn_run_env(n, &[])
    }

    /// `spawn_run` with extra environment variables (e.g. `BINLAKE_METRICS__LISTEN`).
    pub fn spawn_run_env(&self, n: usize, env: &[(&str, &str)]) -> Child {
        let log = std::fs::File::create(self.db.dir.join(format!("run-{n}.log"))).expect("log");
        Command::new(env!("CARGO_BIN_EXE_binlake"))
            .args(["run", "--config", self.config.to_str().expect("utf-8 path")])
            .env("BINLAKE_LOG", "info,binlake::run=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .map(|c| self.remember(c))
            .expect("spawn binlake run")
    }

    /// Starts `binlake sink` with the stack's config plus `sections` (its [sink] and [hive]),
    /// logging to `sink-{n}.log`.
    pub fn spawn_sink(&self, n: usize, sections: &str) -> Child {
        let base = std::fs::read_to_string(&self.config).expect("the stack's config");
        let path = self.db.dir.join(format!("sink-{n}.toml"));
        std::fs::write(&path, format!("{base}\n{sections}\n")).expect("sink config");
        let log = std::fs::File::create(self.db.dir.join(format!("sink-{n}.log"))).expect("log");
        Command::new(env!("CARGO_BIN_EXE_binlake"))
            .args(["sink", "--config", path.to_str().expect("utf-8 path")])
            .env("BINLAKE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .map(|c| self.remember(c))
            .expect("spawn binlake sink")
    }

    fn remember(&self, child: Child) -> Child {
        if let Ok(mut s) = self.spawned.lock() {
            s.push(child.id());
        }
        child
    }

    pub fn sink_log(&self, n: usize) -> String {
        std::fs::read_to_string(self.db.dir.join(format!("sink-{n}.log"))).unwrap_or_default()
    }

    /// A directory for a file:// lake, inside the test's directory.
    pub fn lake_dir(&self, name: &str) -> std::path::PathBuf {
        self.db.dir.join(name)
    }

    /// The lake at `dir` as read by DuckDB (Parquet) or fastavro (Avro): the same shape as
    /// [`Stack::read_topics`].
    pub fn read_lake(&self, dir: &std::path::Path, format: &str) -> serde_json::Value {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/read_lake.py");
        if !dir.exists() {
            return serde_json::json!({"tables": {}, "stats": {}});
        }
        let out = Command::new("python3")
            .args([
                script,
                dir.to_str().expect("utf-8 path"),
                format,
                &self.registry_url(),
                &self.prefix,
            ])
            .output()
            .expect("run python3 (pip install duckdb fastavro cramjam)");
        assert!(
            out.status.success(),
            "read_lake.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("reader prints JSON")
    }

    /// The last lines of every `binlake run` log so far, for failure messages.
    pub fn run_logs_tail(&self) -> String {
        let mut out = String::new();
        for n in 0.. {
            let path = self.db.dir.join(format!("run-{n}.log"));
            let Ok(log) = std::fs::read_to_string(&path) else {
                break;
            };
            let lines: Vec<&str> = log.lines().collect();
            out += &format!("--- run-{n}.log (last 40 lines)\n");
            out += &lines[lines.len().saturating_sub(40)..].join("\n");
            out.push('\n');
        }
        for n in 0.. {
            let Ok(log) = std::fs::read_to_string(self.db.dir.join(format!("sink-{n}.log"))) else {
                break;
            };
            let lines: Vec<&str> = log.lines().collect();
            out += &format!("--- sink-{n}.log (last 40 lines)\n");
            out += &lines[lines.len().saturating_sub(40)..].join("\n");
            out.push('\n');
        }
        out
    }

    pub fn run_log(&self, n: usize) -> String {
        std::fs::read_to_string(self.db.dir.join(format!("run-{n}.log"))).unwrap_or_default()
    }

    /// What the independent reader sees: `{"tables": {db.table: [rows]}, "stats": {...}}`.
    pub fn read_topics(&self) -> serde_json::Value {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/read_tables.py");
        let out = Command::new("python3")
            .args([
                script,
                &self.broker.bootstrap(),
                &self.registry_url(),
                &self.prefix,
            ])
            .env("REGISTRY_AUTH", self.registry_auth.as_deref().unwrap_or(""))
            .envs(self.reader_env.iter().map(|(k, v)| (k, v)))
            .env(
                "KAFKA_PROPERTIES",
                serde_json::to_string(
                    &self
                        .kafka_properties
                        .iter()
                        .cloned()
                        .collect::<std::collections::BTreeMap<_, _>>(),
                )
                .expect("json"),
            )
            .output()
            .expect("run python3 (pip install 'confluent-kafka[avro]' fastavro)");
        assert!(
            out.status.success(),
            "read_tables.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("reader prints JSON")
    }

    /// `binlake rebuild --create --verify` of each of `tables` into the database `db` (created
    /// here) of the stack's server: each succeeds, and its verification against the source
    /// passes.
    pub fn assert_rebuilt_equal(&self, tables: &[&str], db: &str) {
        self.db.sql(&format!("CREATE DATABASE {db}"));
        for t in tables {
            let out = Command::new(env!("CARGO_BIN_EXE_binlake"))
                .args(["rebuild", "--config", self.config.to_str().expect("path")])
                .args(["--table", t, "--create", "--verify", "--into"])
                .arg(format!("mysql://root:root@127.0.0.1:{}/{db}", self.db.port))
                .env("BINLAKE_LOG", "info")
                .stdin(Stdio::null())
                .output()
                .expect("binlake rebuild");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "rebuild {t}: {err}");
            assert!(err.contains("verified: "), "{err}");
        }
    }

    /// The source table in the reader's canonical form: one object per row, column → text
    /// (HEX for binary, numbers for BIT, 6-digit fractions for temporal types, UTC).
    pub fn source_table(&self, db: &str, table: &str) -> Vec<serde_json::Value> {
        let cols = self.db.query_rows(&format!(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = '{db}' AND table_name = '{table}' ORDER BY ordinal_position"
        ));
        let exprs: Vec<String> = cols
            .iter()
            .map(|c| {
                let (name, ty) = (&c[0], c[1].as_str());
                let e = match ty {
                    "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
                    | "geometry" | "point" | "linestring" | "polygon" => format!("HEX(`{name}`)"),
                    "bit" => format!("CAST(`{name}` + 0 AS CHAR)"),
                    "datetime" | "timestamp" => {
                        format!("DATE_FORMAT(`{name}`, '%Y-%m-%d %H:%i:%s.%f')")
                    }
                    "time" => format!("TIME_FORMAT(`{name}`, '%H:%i:%s.%f')"),
                    _ => format!("CAST(`{name}` AS CHAR)"),
                };
                format!("'{name}', {e}")
            })
            .collect();
        let sql = format!(
            "SET time_zone = '+00:00'; SELECT JSON_OBJECT({}) FROM `{db}`.`{table}`",
            exprs.join(", ")
        );
        let mut rows: Vec<serde_json::Value> = self
            .db
            .query_raw_lines(&sql)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        rows.sort_by_key(canonical);
        rows
    }

    /// Waits until the reader's view of `tables` equals the source and `topic` holds at
    /// most half the records ever written to it (the offsets it used: the log cleaner of a
    /// compacting broker removed the rest), or panics after `limit`. Returns the reader's
    /// stats.
    pub fn wait_compacted(
        &self,
        tables: &[&str],
        topic: &str,
        limit: Duration,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let stats = self.wait_converged(tables, limit);
            let held = stats["per_topic"][topic].as_u64().unwrap_or(u64::MAX);
            let written = stats["written"][topic].as_u64().unwrap_or(0);
            if held <= written / 2 {
                return stats;
            }
            assert!(
                start.elapsed() < limit,
                "{topic} still holds {held} of the {written} records written to it after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until the reader's view of every table in `tables` equals the source, or panics
    /// with the first difference after `limit`. Returns the reader's stats.
    pub fn wait_converged(&self, tables: &[&str], limit: Duration) -> serde_json::Value {
        self.wait_converged_with(tables, limit, "topics", || self.read_topics())
    }

    /// [`Stack::wait_converged`] with another reader (`what` names it in messages), which
    /// prints `{"tables": {db.table: [rows]}, "stats": {...}}` like read_tables.py.
    pub fn wait_converged_with(
        &self,
        tables: &[&str],
        limit: Duration,
        what: &str,
        read: impl Fn() -> serde_json::Value,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let seen = read();
            let mut diff = None;
            for t in tables {
                let (db, name) = t.split_once('.').expect("db.table");
                let want = self.source_table(db, name);
                let mut got: Vec<serde_json::Value> =
                    seen["tables"][*t].as_array().cloned().unwrap_or_default();
                got.sort_by_key(canonical);
                if got != want {
                    let set = |rs: &[serde_json::Value]| -> std::collections::HashSet<String> {
                        rs.iter().map(canonical).collect()
                    };
                    let (want_set, got_set) = (set(&want), set(&got));
                    let missing: Vec<&serde_json::Value> = want
                        .iter()
                        .filter(|r| !got_set.contains(&canonical(r)))
                        .collect();
                    let extra: Vec<&serde_json::Value> = got
                        .iter()
                        .filter(|r| !want_set.contains(&canonical(r)))
                        .collect();
                    let show = |rs: &[&serde_json::Value]| {
                        rs.iter()
                            .take(3)
                            .map(|r| r.to_string())
                            .collect::<Vec<_>>()
                            .join("\n  ")
                    };
                    diff = Some(format!(
                        "{t}: source has {} rows, {what} give {}; {} rows only in the source:\n  {}\n{} rows only in the {what}:\n  {}",
                        want.len(),
                        got.len(),
                        missing.len(),
                        show(&missing),
                        extra.len(),
                        show(&extra)
                    ));
                    break;
                }
            }
            match diff {
                None => return seen["stats"].clone(),
                Some(d) if start.elapsed() > limit => {
                    // The difference again after the logs: CI shows the tail of the output.
                    panic!(
                        "not converged after {limit:?}: {d}\n{}\n--- not converged: {d}",
                        self.run_logs_tail()
                    )
                }
                Some(_) => std::thread::sleep(Duration::from_secs(2)),
            }
        }
    }
}

fn canonical(v: &serde_json::Value) -> String {
    // serde_json with preserve_order keeps insertion order; sort keys for a stable form.
    let mut m: Vec<(String, serde_json::Value)> = v
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    m.sort_by(|a, b| a.0.cmp(&b.0));
    serde_json::to_string(&m).unwrap_or_default()
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Only processes still running this stack's config (a pid may have been reused).
        let config = self.db.dir.to_string_lossy().into_owned();
        for pid in self.spawned.lock().map(|s| s.clone()).unwrap_or_default() {
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&config));
            if ours {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        self.stop_registry();
        if let Some(dir) = &self.apicurio {
            let _ = Command::new("bash")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/deploy/local/apicurio.sh"
                ))
                .args(["stop", dir.to_str().unwrap_or_default()])
                .stdin(Stdio::null())
                .output();
        }
    }
}
