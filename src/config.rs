//! The whole configuration as typed structs, loaded from one TOML file and overridable by
//! environment variables (`BINLAKE_MYSQL__PASSWORD` sets `[mysql] password`).
//!
//! Invariant: a [`Config`] that loaded is valid. Unknown keys and bad values are rejected at
//! load with an error that names the key (`mysql.port`) and the expected form; nothing later
//! has to re-check them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A configuration problem, always naming the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

/// Keys that have no default: unset unless configured (`binlake config --print-defaults`
/// names them; a unit test keeps the list equal to the code).
pub const UNSET_KEYS: &[&str] = &[
    "admin.listen",
    "admin.token",
    "hive.database",
    "kafka.offsets_file",
    "kafka.transactional_id",
    "metrics.listen",
    "mysql.password",
    "mysql.password_file",
    "mysql.tls.ca_file",
    "registry.ca_file",
    "registry.listen",
    "registry.password",
    "registry.password_file",
    "registry.tls_cert_file",
    "registry.tls_key_file",
    "registry.username",
    "sink.partition.time_field",
];

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub mysql: MysqlConfig,
    #[serde(default)]
    pub capture: CaptureConfig,
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub registry: RegistryConfig,
    #[serde(default)]
    pub sink: SinkConfig,
    #[serde(default)]
    pub hive: HiveConfig,
}

/// `binlake sink`: where and how the lake is written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// The lake's root: `file:///path` or `hdfs://namenode:port/path`.
    #[serde(default = "default_sink_root")]
    pub root: String,
    #[serde(default)]
    pub format: SinkFormat,
    /// Parquet: `snappy`, `zstd` or `none`; Avro: `snappy`, `deflate` or `none`.
    #[serde(default)]
    pub compression: SinkCompression,
    /// The Kafka consumer group; sink processes in one group share the partitions.
    #[serde(default = "default_sink_group")]
    pub group_id: String,
    /// Topics to read; empty: every table topic of `kafka.topic_prefix`, new ones included.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Close a file after this many records of its Kafka partition (0: no limit).
    #[serde(default)]
    pub flush_size: u64,
    /// Close a file once it holds about this many megabytes.
    #[serde(default = "default_rotate_mb")]
    pub rotate_mb: u64,
    /// Close files this long after they were opened, also when no record arrives ("15m").
    #[serde(default = "default_rotate_interval")]
    pub rotate_interval: String,
    /// Memory for rows not yet encoded into a file, all open files together, in megabytes.
    #[serde(default = "default_buffer_mb")]
    pub buffer_mb: u64,
    /// Open files at most; reaching it closes the oldest files first.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// The default partitioning of every table.
    #[serde(default)]
    pub partition: PartitionConfig,
    /// Partitioning of single tables, by `"db.table"`.
    #[serde(default)]
    pub tables: std::collections::BTreeMap<String, PartitionConfig>,
    /// Maintain a `{table}_current` snapshot table, compacted this often ("1h"); empty: off.
    #[serde(default)]
    pub current_every: String,
    /// Complete `{table}_current` snapshots kept (the newest ones).
    #[serde(default = "default_current_keep")]
    pub current_keep: usize,
}

impl Default for SinkConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SinkFormat {
    #[default]
    Parquet,
    Avro,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SinkCompression {
    #[default]
    Snappy,
    Zstd,
    Deflate,
    None,
}

/// How a table's files are laid out in Hive partitions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PartitionConfig {
    /// `kafka` (`partition=N`), `field` (`col=value` for each of `fields`) or `time`.
    #[serde(default)]
    pub by: PartitionBy,
    /// Columns of the `field` partitioner, in path order.
    #[serde(default)]
    pub fields: Vec<String>,
    /// The `time` partitioner's path: YYYY, MM, DD, HH and mm are replaced.
    #[serde(default = "default_time_pattern")]
    pub pattern: String,
    /// The `time` partitioner's column (DATE, DATETIME or TIMESTAMP); default: commit time.
    pub time_field: Option<String>,
    /// The `time` partitioner's time zone (IANA name, e.g. "Europe/Berlin").
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PartitionBy {
    #[default]
    Kafka,
    Field,
    Time,
}

/// The Hive metastore the sink registers tables and partitions in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HiveConfig {
    #[serde(default)]
    pub enabled: bool,
    /// `thrift://host:port`.
    #[serde(default = "default_hive_uri")]
    pub uri: String,
    /// The Hive database of every table; default: the source database's name.
    pub database: Option<String>,
}

impl Default for HiveConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

fn default_sink_root() -> String {
    "file:///var/lib/binlake/lake".into()
}
fn default_sink_group() -> String {
    "binlake-sink".into()
}
fn default_rotate_mb() -> u64 {
    128
}
fn default_rotate_interval() -> String {
    "15m".into()
}
fn default_current_keep() -> usize {
    3
}
fn default_buffer_mb() -> u64 {
    256
}
fn default_max_open_files() -> usize {
    256
}
fn default_time_pattern() -> String {
    "dt=YYYY-MM-DD/hr=HH".into()
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_hive_uri() -> String {
    "thrift://127.0.0.1:9083".into()
}

/// Parses a duration like `90s`, `15m`, `1h`, `2d` or `500ms`.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(ms))
}

/// The Kafka cluster `binlake run` writes to (and the embedded registry stores schemas in).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Topics are `{topic_prefix}.{db}.{table}`; positions go to `{topic_prefix}.offsets`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Partitions of each table topic binlake creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of the topics binlake creates; -1 (the default) leaves it to the
    /// brokers' `default.replication.factor`.
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// Further topic configs for the topics binlake creates (`"min.compaction.lag.ms" = "0"`).
    #[serde(default)]
    pub topic_config: std::collections::BTreeMap<String, String>,
    /// Accept an existing table topic whose cleanup.policy is not `compact`.
    #[serde(default)]
    pub allow_non_compacted: bool,
    /// What a deleted row becomes (see [`DeleteMode`]).
    #[serde(default)]
    pub deletes: DeleteMode,
    /// Where the source position is committed (see [`OffsetStore`]).
    #[serde(default)]
    pub offsets: OffsetStore,
    /// The file for `offsets = "file"`.
    pub offsets_file: Option<PathBuf>,
    /// Records and position commits go in Kafka transactions with this id (the broker must
    /// support transactions).
    pub transactional_id: Option<String>,
    /// Seconds Kafka may acknowledge none of the waiting records (librdkafka retrying)
    /// before `run` stops with an error; with transactions, librdkafka's per-record timeout.
    #[serde(default = "default_message_timeout")]
    pub message_timeout_secs: u32,
    /// librdkafka properties passed through to every client (SASL, SSL, tuning), e.g.
    /// `"security.protocol" = "SASL_SSL"`.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            topic_prefix: default_topic_prefix(),
            partitions: default_partitions(),
            replication_factor: default_replication(),
            topic_config: Default::default(),
            allow_non_compacted: false,
            deletes: DeleteMode::default(),
            offsets: OffsetStore::default(),
            offsets_file: None,
            transactional_id: None,
            message_timeout_secs: default_message_timeout(),
            properties: Default::default(),
        }
    }
}

/// What a deleted row becomes in its topic.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteMode {
    /// A record with `__op = "d"` and the before-image, then a tombstone (default).
    #[default]
    RecordAndTombstone,
    /// Only the tombstone.
    TombstoneOnly,
}

/// Where `binlake run` commits its source position.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OffsetStore {
    /// The compacted topic `{topic_prefix}.offsets` (default).
    #[default]
    Kafka,
    /// The local file `offsets_file`, written atomically.
    File,
}

/// The Confluent-compatible schema registry: the client settings `binlake run` uses, and the
/// embedded server `binlake registry` runs.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL, `http://host:port` or `https://...`.
    #[serde(default = "default_registry_url")]
    pub url: String,
    /// Basic-auth user and password (password also from `password_file`).
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// PEM CA for an https registry (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// `binlake registry`: address to listen on (default: the host:port of `url`).
    pub listen: Option<String>,
    /// `binlake registry`: the compacted topic holding the schemas (Confluent's name).
    #[serde(default = "default_schemas_topic")]
    pub topic: String,
    /// `binlake registry`: PEM certificate chain (server certificate first); with
    /// `tls_key_file` it serves HTTPS only.
    pub tls_cert_file: Option<PathBuf>,
    /// `binlake registry`: PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            url: default_registry_url(),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            listen: None,
            topic: default_schemas_topic(),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

fn default_brokers() -> String {
    "127.0.0.1:9092".into()
}
fn default_topic_prefix() -> String {
    "binlake".into()
}
fn default_partitions() -> i32 {
    3
}
fn default_replication() -> i32 {
    -1
}
fn default_message_timeout() -> u32 {
    300
}
fn default_registry_url() -> String {
    "http://127.0.0.1:8081".into()
}
fn default_schemas_topic() -> String {
    "_schemas".into()
}

/// The local HTTP admin endpoint of a running `tail` (on-demand snapshots).
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `host:port` to listen on, e.g. `127.0.0.1:9470`. Unset: no endpoint.
    pub listen: Option<String>,
    /// Bearer token required by the endpoint; mandatory unless `allow_no_token` (loopback
    /// only). Never empty.
    pub token: Option<String>,
    /// Serve a loopback `listen` without a token (anyone on the machine can then start
    /// snapshots). Off by default.
    #[serde(default)]
    pub allow_no_token: bool,
}

/// The Prometheus, health and readiness endpoint of `run` and `sink`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` serving `/metrics`, `/health` and `/ready`, e.g. `127.0.0.1:9100`.
    /// Unset: no endpoint, and nothing is recorded.
    pub listen: Option<String>,
    /// `/ready` fails while the job is more than this many seconds behind (and, for `run`,
    /// until the initial snapshot is complete).
    #[serde(default = "default_ready_lag_secs")]
    pub ready_lag_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: None,
            ready_lag_secs: default_ready_lag_secs(),
        }
    }
}

fn default_ready_lag_secs() -> u64 {
    10
}

/// The initial snapshot (`tail --snapshot`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// When to snapshot (see [`SnapshotMode`]).
    #[serde(default)]
    pub mode: SnapshotMode,
    /// Connections reading chunks at once; a big table is split so all of them share it.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Rows per chunk (one `SELECT ... ORDER BY key LIMIT chunk_size` per chunk).
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    /// Chunks read but not yet merged into the stream; bounds memory.
    #[serde(default = "default_in_flight")]
    pub max_in_flight_chunks: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            mode: SnapshotMode::default(),
            parallelism: default_parallelism(),
            chunk_size: default_chunk_size(),
            max_in_flight_chunks: default_in_flight(),
        }
    }
}

/// When the snapshot runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Snapshot when there is no saved position, then stream. A saved position whose binlog
    /// was purged is an error.
    #[default]
    Initial,
    /// Never snapshot (`tail --snapshot` is refused); a purged position is an error.
    Never,
    /// Like `initial`, and when the saved position's binlog was purged, snapshot the
    /// configured tables again (logged, with the reason) instead of failing.
    WhenNeeded,
}

fn default_parallelism() -> usize {
    4
}
fn default_chunk_size() -> usize {
    8192
}
fn default_in_flight() -> usize {
    8
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_user")]
    pub user: String,
    /// Plain-text password; prefer `password_file` or `BINLAKE_MYSQL__PASSWORD`.
    pub password: Option<String>,
    /// A file whose content (trailing newline removed) is the password.
    pub password_file: Option<PathBuf>,
    /// The replica server id binlake registers with; unique among the server's replicas.
    #[serde(default = "default_server_id")]
    pub server_id: u32,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Seconds between server heartbeats while the binlog is idle.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u32,
    /// Seconds to wait for a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u32,
    /// `binlake run`: seconds to keep reconnecting (with backoff) after the connection is
    /// lost before stopping with an error.
    #[serde(default = "default_retry")]
    pub retry_secs: u32,
}

impl Default for MysqlConfig {
    fn default() -> Self {
        MysqlConfig {
            host: default_host(),
            port: default_port(),
            user: default_user(),
            password: None,
            password_file: None,
            server_id: default_server_id(),
            tls: TlsConfig::default(),
            heartbeat_secs: default_heartbeat(),
            connect_timeout_secs: default_connect_timeout(),
            retry_secs: default_retry(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM file of the CA that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disabled,
    /// TLS, verifying the certificate chain and the host name.
    VerifyIdentity,
    /// TLS, verifying the chain but not the host name.
    VerifyCa,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// `db.table` glob patterns (`*`, `?`); a pattern without a dot names a whole database.
    /// Empty: every table.
    #[serde(default)]
    pub include: Vec<String>,
    /// Same form as `include`; wins over it.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `db.table.column` glob patterns of columns to leave out of every change.
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    /// Row key of tables without a primary key.
    #[serde(default)]
    pub key: KeyMode,
}

/// How to key the rows of a table that has no primary key.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum KeyMode {
    /// Every column together is the key (a compacted topic keeps one record per distinct row).
    #[default]
    AllColumns,
    /// No key: changes carry an empty key.
    None,
    /// The table's changes are not captured (logged once).
    Skip,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    3306
}
fn default_user() -> String {
    "binlake".into()
}
fn default_server_id() -> u32 {
    5401
}
fn default_heartbeat() -> u32 {
    5
}
fn default_connect_timeout() -> u32 {
    10
}
fn default_retry() -> u32 {
    300
}

const ENV_PREFIX: &str = "BINLAKE_";

impl Config {
    /// Loads `path` and applies `BINLAKE_*` environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let cfg = Self::from_toml(&text, path, std::env::vars())?;
        // A password file that cannot be read stops every command here, before it connects
        // anywhere or writes anything.
        cfg.mysql_password()?;
        cfg.registry_password()?;
        Ok(cfg)
    }

    /// Parses TOML text and applies overrides from `env` (name, value) pairs.
    pub fn from_toml(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut doc: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.message().to_string(),
                })?;
        let mut plain = plain_text_secrets(&doc);
        let mut overrides = Vec::new();
        for (var, value) in env {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // The command line's own variables, not config keys.
            if rest.is_empty()
                || ["BINLAKE_CONFIG", "BINLAKE_LOG", "BINLAKE_LOG_FORMAT"].contains(&var.as_str())
            {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(ConfigError::Env {
                    var,
                    message: "use SECTION__KEY, e.g. BINLAKE_MYSQL__PASSWORD".into(),
                });
            }
            set_path(&mut doc, &path, infer(&value)).map_err(|message| ConfigError::Env {
                var: var.clone(),
                message,
            })?;
            // Set by the environment: not the file's plain text any more.
            let key = path.join(".");
            plain.retain(|(raw, _, _)| *raw != key);
            overrides.push((path, value));
        }
        for (_, key, fix) in &plain {
            tracing::warn!(
                "config file {} holds `{key}` in plain text; {fix}",
                path.display()
            );
        }
        loop {
            match deserialize(&doc) {
                Ok(c) => return c.validate(),
                Err((key, message)) => {
                    // An override that looked like a number/bool may be meant as a string
                    // (a password "1234"): retry it as one before giving up.
                    let retry = overrides.iter().position(|(p, _)| p.join(".") == key);
                    match retry {
                        Some(i) => {
                            let (p, v) = overrides.remove(i);
                            let _ = set_path(&mut doc, &p, toml::Value::String(v));
                        }
                        None => return Err(ConfigError::Key { key, message }),
                    }
                }
            }
        }
    }

    /// Every default, as TOML, with the keys that have none named in a comment.
    pub fn defaults_toml() -> String {
        let body = toml::to_string(&Config::default()).unwrap_or_else(|e| format!("# {e}\n"));
        let unset: String = UNSET_KEYS.iter().map(|k| format!("#   {k}\n")).collect();
        format!(
            "# binlake's defaults (binlake config --print-defaults); deploy/config/example.toml\n\
             # documents every key. Keys without a default, unset unless configured:\n{unset}\n{body}"
        )
    }

    /// This configuration as TOML, every password, token and secret replaced by `"***"`
    /// (also the librdkafka properties that hold a private key or credentials inline).
    pub fn to_toml_masked(&self) -> String {
        fn mask(v: &mut toml::Value) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t.iter_mut() {
                    let k = k.to_ascii_lowercase();
                    if (["password", "secret", "token"]
                        .iter()
                        .any(|s| k.contains(s))
                        && !k.ends_with("_file"))
                        || ["ssl.key.pem", "sasl.oauthbearer.config"].contains(&k.as_str())
                    {
                        *v = toml::Value::String("***".into());
                    } else {
                        mask(v);
                    }
                }
            }
        }
        let mut v = match toml::Value::try_from(self) {
            Ok(v) => v,
            Err(e) => return format!("# cannot print the configuration: {e}\n"),
        };
        mask(&mut v);
        toml::to_string(&v).unwrap_or_else(|e| format!("# {e}\n"))
    }

    fn validate(self) -> Result<Config, ConfigError> {
        let key = |k: &str, m: &str| ConfigError::Key {
            key: k.into(),
            message: m.into(),
        };
        if self.mysql.password.is_some() && self.mysql.password_file.is_some() {
            return Err(key(
                "mysql.password",
                "set either password or password_file, not both",
            ));
        }
        for (k, v) in [
            ("snapshot.parallelism", self.snapshot.parallelism),
            ("snapshot.chunk_size", self.snapshot.chunk_size),
            (
                "snapshot.max_in_flight_chunks",
                self.snapshot.max_in_flight_chunks,
            ),
        ] {
            if v == 0 {
                return Err(key(k, "must be at least 1"));
            }
        }
        if let Some(listen) = &self.admin.listen {
            let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
                key(
                    "admin.listen",
                    &format!("`{listen}` is not host:port, e.g. 127.0.0.1:9470"),
                )
            })?;
            match &self.admin.token {
                Some(t) if t.trim().is_empty() => {
                    return Err(key(
                        "admin.token",
                        "is empty: set a long random token (e.g. `openssl rand -hex 32`), in \
                         BINLAKE_ADMIN__TOKEN",
                    ))
                }
                Some(_) => {}
                None if !addr.ip().is_loopback() => {
                    return Err(key(
                        "admin.token",
                        "required when admin.listen is not a loopback address: anyone who can \
                         reach it could start snapshots",
                    ))
                }
                None if !self.admin.allow_no_token => {
                    return Err(key(
                        "admin.token",
                        "required by the admin endpoint (any local user or web page could \
                         start snapshots otherwise): set it (BINLAKE_ADMIN__TOKEN), or set \
                         admin.allow_no_token = true to serve a loopback listen without one",
                    ))
                }
                None => {}
            }
        }
        if let Some(listen) = &self.metrics.listen {
            listen.parse::<std::net::SocketAddr>().map_err(|_| {
                key(
                    "metrics.listen",
                    &format!("`{listen}` is not host:port, e.g. 127.0.0.1:9100"),
                )
            })?;
        }
        if self.kafka.offsets == OffsetStore::File && self.kafka.offsets_file.is_none() {
            return Err(key(
                "kafka.offsets_file",
                "required when kafka.offsets = \"file\": the file binlake keeps its position in",
            ));
        }
        if self.kafka.partitions < 1 {
            return Err(key("kafka.partitions", "must be at least 1"));
        }
        if self.kafka.replication_factor == 0 || self.kafka.replication_factor < -1 {
            return Err(key(
                "kafka.replication_factor",
                "must be at least 1, or -1 for the brokers' default.replication.factor",
            ));
        }
        if self.kafka.topic_prefix.is_empty()
            || !self
                .kafka
                .topic_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(key(
                "kafka.topic_prefix",
                "must be non-empty and use only letters, digits, '.', '_' and '-'",
            ));
        }
        if !(self.registry.url.starts_with("http://") || self.registry.url.starts_with("https://"))
        {
            return Err(key(
                "registry.url",
                &format!(
                    "`{}` is not an http:// or https:// URL",
                    redact_url(&self.registry.url)
                ),
            ));
        }
        match (&self.registry.tls_cert_file, &self.registry.tls_key_file) {
            (Some(_), None) => return Err(key(
                "registry.tls_key_file",
                "set it too: registry.tls_cert_file is set, and HTTPS needs the certificate's key",
            )),
            (None, Some(_)) => return Err(key(
                "registry.tls_cert_file",
                "set it too: registry.tls_key_file is set, and HTTPS needs the certificate chain",
            )),
            _ => {}
        }
        if self.registry.password.is_some() && self.registry.password_file.is_some() {
            return Err(key(
                "registry.password",
                "set either password or password_file, not both",
            ));
        }
        if self.mysql.server_id == 0 {
            return Err(key(
                "mysql.server_id",
                "must be a non-zero integer unique among the server's replicas",
            ));
        }
        for (name, list) in [
            ("capture.include", &self.capture.include),
            ("capture.exclude", &self.capture.exclude),
        ] {
            if let Some(p) = list
                .iter()
                .find(|p| p.is_empty() || p.split('.').count() > 2)
            {
                return Err(key(
                    name,
                    &format!("`{p}` is not a `db` or `db.table` pattern"),
                ));
            }
        }
        if let Some(p) = self
            .capture
            .exclude_columns
            .iter()
            .find(|p| p.split('.').count() != 3)
        {
            return Err(key(
                "capture.exclude_columns",
                &format!("`{p}` is not a `db.table.column` pattern"),
            ));
        }
        self.validate_sink()?;
        if self.mysql.tls.mode != TlsMode::Disabled {
            if let Some(ca) = &self.mysql.tls.ca_file {
                if !ca.exists() {
                    return Err(key(
                        "mysql.tls.ca_file",
                        &format!("{} does not exist", ca.display()),
                    ));
                }
                let pem = std::fs::read(ca).map_err(|e| {
                    key(
                        "mysql.tls.ca_file",
                        &format!("cannot read {}: {e}", ca.display()),
                    )
                })?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(key(
                        "mysql.tls.ca_file",
                        &format!(
                            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                            ca.display()
                        ),
                    ));
                }
            }
        }
        Ok(self)
    }

    fn validate_sink(&self) -> Result<(), ConfigError> {
        let key = |k: &str, m: String| ConfigError::Key {
            key: k.into(),
            message: m,
        };
        let s = &self.sink;
        if !(s.root.starts_with("file:///") || s.root.starts_with("hdfs://")) {
            return Err(key(
                "sink.root",
                format!(
                    "`{}` is not file:///path or hdfs://namenode:port/path",
                    s.root
                ),
            ));
        }
        match parse_duration(&s.rotate_interval) {
            Some(d) if d >= std::time::Duration::from_secs(1) => {}
            _ => {
                return Err(key(
                    "sink.rotate_interval",
                    format!(
                        "`{}` is not a duration of at least 1s, e.g. \"15m\", \"1h\"",
                        s.rotate_interval
                    ),
                ))
            }
        }
        if !s.current_every.trim().is_empty() {
            match parse_duration(&s.current_every) {
                Some(d) if d >= std::time::Duration::from_secs(1) => {}
                _ => {
                    return Err(key(
                        "sink.current_every",
                        format!(
                            "`{}` is not a duration of at least 1s, e.g. \"1h\" (leave it out \
                             to maintain no current-state tables)",
                            s.current_every
                        ),
                    ))
                }
            }
            if s.format != SinkFormat::Parquet {
                return Err(key(
                    "sink.current_every",
                    "current-state tables are compacted from Parquet changelog files: set \
                     [sink] format = \"parquet\", or remove current_every"
                        .into(),
                ));
            }
        }
        if s.current_keep == 0 {
            return Err(key(
                "sink.current_keep",
                "must be at least 1 (the number of snapshots of {table}_current kept)".into(),
            ));
        }
        for (k, v) in [
            ("sink.rotate_mb", s.rotate_mb),
            ("sink.buffer_mb", s.buffer_mb),
            ("sink.max_open_files", s.max_open_files as u64),
        ] {
            if v == 0 {
                return Err(key(k, "must be at least 1".into()));
            }
        }
        let codec_ok = match s.format {
            SinkFormat::Parquet => s.compression != SinkCompression::Deflate,
            SinkFormat::Avro => s.compression != SinkCompression::Zstd,
        };
        if !codec_ok {
            return Err(key(
                "sink.compression",
                format!(
                    "{:?} is not available for {:?} files (parquet: snappy, zstd, none; avro: \
                     snappy, deflate, none)",
                    s.compression, s.format
                )
                .to_ascii_lowercase(),
            ));
        }
        let parts = std::iter::once(("sink.partition".to_string(), &s.partition)).chain(
            s.tables
                .iter()
                .map(|(t, p)| (format!("sink.tables.\"{t}\""), p)),
        );
        for (name, p) in parts {
            if p.by == PartitionBy::Field && p.fields.is_empty() {
                return Err(key(
                    &format!("{name}.fields"),
                    "the field partitioner needs at least one column".into(),
                ));
            }
            if p.by == PartitionBy::Time {
                if p.timezone.parse::<chrono_tz::Tz>().is_err() {
                    return Err(key(
                        &format!("{name}.timezone"),
                        format!(
                            "`{}` is not a time zone name (e.g. \"UTC\", \"Europe/Berlin\")",
                            p.timezone
                        ),
                    ));
                }
                if !["YYYY", "MM", "DD", "HH", "mm"]
                    .iter()
                    .any(|t| p.pattern.contains(t))
                    || p.pattern
                        .split('/')
                        .any(|seg| seg.split_once('=').is_none_or(|(k, _)| k.is_empty()))
                {
                    return Err(key(
                        &format!("{name}.pattern"),
                        format!(
                            "`{}` is not a path of key=value segments using YYYY, MM, DD, HH or \
                             mm, e.g. \"dt=YYYY-MM-DD/hr=HH\"",
                            p.pattern
                        ),
                    ));
                }
            }
        }
        for t in s.tables.keys() {
            if t.split('.').count() != 2 {
                return Err(key(
                    "sink.tables",
                    format!("`{t}` is not a `db.table` name"),
                ));
            }
        }
        if self.hive.enabled && !self.hive.uri.starts_with("thrift://") {
            return Err(key(
                "hive.uri",
                format!("`{}` is not thrift://host:port", self.hive.uri),
            ));
        }
        Ok(())
    }

    /// The sink's `rotate_interval`, checked by `validate`.
    pub fn rotate_interval(&self) -> std::time::Duration {
        parse_duration(&self.sink.rotate_interval).unwrap_or(std::time::Duration::from_secs(900))
    }

    /// How often `{table}_current` is compacted; None: never. Checked by `validate`.
    pub fn current_every(&self) -> Option<std::time::Duration> {
        if self.sink.current_every.trim().is_empty() {
            return None;
        }
        parse_duration(&self.sink.current_every)
    }

    /// The partitioning of one table.
    pub fn partition_of(&self, db: &str, table: &str) -> &PartitionConfig {
        self.sink
            .tables
            .get(&format!("{db}.{table}"))
            .unwrap_or(&self.sink.partition)
    }

    /// The registry's basic-auth password, read from `password_file` when set.
    pub fn registry_password(&self) -> Result<Option<String>, ConfigError> {
        read_secret(
            "registry.password_file",
            self.registry.password_file.as_deref(),
            &self.registry.password,
        )
    }

    /// The MySQL password, read from `password_file` when set.
    pub fn mysql_password(&self) -> Result<Option<String>, ConfigError> {
        read_secret(
            "mysql.password_file",
            self.mysql.password_file.as_deref(),
            &self.mysql.password,
        )
    }
}

/// Secrets the file itself holds in plain text, as (the key's path joined by dots, the key as
/// written in messages, how to avoid it).
fn plain_text_secrets(doc: &toml::Table) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let section = |name: &str| doc.get(name).and_then(toml::Value::as_table);
    for (sec, key, file) in [
        ("mysql", "password", true),
        ("registry", "password", true),
        ("admin", "token", false),
    ] {
        if section(sec).is_some_and(|t| t.contains_key(key)) {
            let env = format!("BINLAKE_{}__{}", sec.to_uppercase(), key.to_uppercase());
            let fix = if file {
                format!("use {sec}.{key}_file (a file only binlake's user can read) or the environment variable {env}")
            } else {
                format!("set it in the environment variable {env} instead")
            };
            out.push((format!("{sec}.{key}"), format!("{sec}.{key}"), fix));
        }
    }
    if let Some(props) = section("kafka")
        .and_then(|k| k.get("properties"))
        .and_then(toml::Value::as_table)
    {
        for k in props.keys() {
            if is_secret_property(k) {
                let env = format!("BINLAKE_KAFKA__PROPERTIES__{}", k.to_uppercase());
                out.push((
                    format!("kafka.properties.{}", k.to_ascii_lowercase()),
                    format!("kafka.properties.\"{k}\""),
                    format!("set it in the environment variable {env} instead (e.g. through `env` or a systemd EnvironmentFile readable only by binlake's user)"),
                ));
            }
        }
    }
    out
}

/// `url` with the password of its user-info (`scheme://user:password@host`) replaced by
/// `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // Up to the last `@`, as binlake parses it: a password may hold `/`, `?`, `#` or `@`
    // unescaped (hiding too much beats showing a password).
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}")
        }
        None => url.to_string(),
    }
}

/// Whether a librdkafka property holds a secret (`sasl.password`, `ssl.key.password`,
/// `sasl.oauthbearer.client.secret`, `ssl.key.pem`).
pub fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k == "ssl.key.pem"
}

fn read_secret(
    key: &str,
    file: Option<&Path>,
    plain: &Option<String>,
) -> Result<Option<String>, ConfigError> {
    if let Some(f) = file {
        let s = std::fs::read_to_string(f).map_err(|e| ConfigError::Key {
            key: key.into(),
            message: format!("cannot read {}: {e}", f.display()),
        })?;
        return Ok(Some(s.trim_end_matches(['\n', '\r']).to_string()));
    }
    Ok(plain.clone())
}

fn deserialize(doc: &toml::Table) -> Result<Config, (String, String)> {
    let value = toml::Value::Table(doc.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        let message = e.into_inner().to_string();
        (key, message)
    })
}

fn infer(value: &str) -> toml::Value {
    format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()))
}

fn set_path(doc: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut t = doc;
    for p in parents {
        t = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a section"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// `Debug` of the sections that hold secrets prints `"***"` for them, so a config printed with
/// `{:?}` (in a log line or a panic) never shows a password.
fn masked(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "***")
}

impl std::fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &masked(&self.password))
            .field("password_file", &self.password_file)
            .field("server_id", &self.server_id)
            .field("tls", &self.tls)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("retry_secs", &self.retry_secs)
            .finish()
    }
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &masked(&self.password))
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("listen", &self.listen)
            .field("topic", &self.topic)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .finish()
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &masked(&self.token))
            .finish()
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: std::collections::BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_property(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("topic_config", &self.topic_config)
            .field("allow_non_compacted", &self.allow_non_compacted)
            .field("deletes", &self.deletes)
            .field("offsets", &self.offsets)
            .field("offsets_file", &self.offsets_file)
            .field("transactional_id", &self.transactional_id)
            .field("message_timeout_secs", &self.message_timeout_secs)
            .field("properties", &properties)
            .finish()
    }
}

/// Table and column selection from `[capture]`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Vec<String>,
    exclude: Vec<String>,
    exclude_columns: Vec<String>,
}

impl Filter {
    pub fn new(c: &CaptureConfig) -> Self {
        let norm = |p: &String| {
            if p.contains('.') {
                p.clone()
            } else {
                format!("{p}.*")
            }
        };
        Filter {
            include: c.include.iter().map(norm).collect(),
            exclude: c.exclude.iter().map(norm).collect(),
            exclude_columns: c.exclude_columns.clone(),
        }
    }

    pub fn table(&self, db: &str, table: &str) -> bool {
        let name = format!("{db}.{table}");
        let hit = |ps: &[String]| ps.iter().any(|p| glob_match::glob_match(p, &name));
        (self.include.is_empty() || hit(&self.include)) && !hit(&self.exclude)
    }

    /// Whether some table of `db` may be captured (an include pattern's database part
    /// matches it, and no exclude pattern takes the whole database).
    pub fn database(&self, db: &str) -> bool {
        let db_part = |p: &String| p.split_once('.').map_or(p.clone(), |(d, _)| d.to_string());
        let included = self.include.is_empty()
            || self
                .include
                .iter()
                .any(|p| glob_match::glob_match(&db_part(p), db));
        let excluded = self
            .exclude
            .iter()
            .any(|p| p.ends_with(".*") && glob_match::glob_match(&db_part(p), db));
        included && !excluded
    }

    pub fn column(&self, db: &str, table: &str, column: &str) -> bool {
        if self.exclude_columns.is_empty() {
            return true;
        }
        let name = format!("{db}.{table}.{column}");
        !self
            .exclude_columns
            .iter()
            .any(|p| glob_match::glob_match(p, &name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml(
            text,
            Path::new("t.toml"),
            env.iter().map(|(a, b)| (a.to_string(), b.to_string())),
        )
    }

    #[test]
    fn the_documented_example_loads() {
        let text = include_str!("../deploy/config/example.toml");
        let c = load(text, &[]).unwrap();
        assert_eq!(c.mysql.server_id, 5401);
        assert_eq!(c.capture.key, KeyMode::AllColumns);
        // Every section of the example is a section of the config, and vice versa.
        let doc: toml::Table = text.parse().unwrap();
        let mut sections: Vec<&String> = doc.keys().collect();
        sections.sort();
        assert_eq!(
            sections,
            [
                "admin", "capture", "hive", "kafka", "metrics", "mysql", "registry", "sink",
                "snapshot"
            ]
        );
        assert_eq!(c.rotate_interval(), std::time::Duration::from_secs(900));
    }

    #[test]
    fn sink_settings_are_checked() {
        let bad = |t: &str| load(t, &[]).unwrap_err().to_string();
        assert!(bad("[sink]\nroot = \"/data\"").contains("sink.root"));
        assert!(bad("[sink]\nrotate_interval = \"soon\"").contains("sink.rotate_interval"));
        assert!(
            bad("[sink]\nformat = \"avro\"\ncompression = \"zstd\"").contains("sink.compression")
        );
        assert!(bad("[sink.partition]\nby = \"field\"").contains("sink.partition.fields"));
        assert!(bad("[sink]\ncurrent_every = \"often\"").contains("sink.current_every"));
        assert!(bad("[sink]\ncurrent_every = \"1h\"\nformat = \"avro\"")
            .contains("format = \"parquet\""));
        assert!(bad("[sink]\ncurrent_keep = 0").contains("sink.current_keep"));
        let c = load("[sink]\ncurrent_every = \"15s\"\ncurrent_keep = 2", &[]).unwrap();
        assert_eq!(c.current_every(), Some(std::time::Duration::from_secs(15)));
        assert_eq!(c.sink.current_keep, 2);
        assert_eq!(load("", &[]).unwrap().current_every(), None);
        assert!(
            bad("[sink.partition]\nby = \"time\"\ntimezone = \"Mars/Base\"").contains("timezone")
        );
        assert!(bad("[sink.partition]\nby = \"time\"\npattern = \"YYYY\"").contains("pattern"));
        let c = load(
            "[sink.tables.\"a.t\"]\nby = \"field\"\nfields = [\"r\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.partition_of("a", "t").fields, ["r"]);
        assert_eq!(c.partition_of("a", "u").by, PartitionBy::Kafka);
        assert_eq!(
            parse_duration("90s"),
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("2h"),
            Some(std::time::Duration::from_secs(7200))
        );
    }

    #[test]
    fn env_overrides_file_and_numeric_looking_passwords_stay_strings() {
        let c = load(
            "[mysql]\nport = 3307\npassword = \"x\"\n",
            &[
                ("BINLAKE_MYSQL__PASSWORD", "1234"),
                ("BINLAKE_MYSQL__SERVER_ID", "77"),
            ],
        )
        .unwrap();
        assert_eq!(c.mysql.password.as_deref(), Some("1234"));
        assert_eq!(c.mysql.server_id, 77);
        assert_eq!(c.mysql.port, 3307);
    }

    #[test]
    fn admin_off_loopback_needs_a_token() {
        let e = load("[admin]\nlisten = \"0.0.0.0:9470\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin.token"), "{e}");
        load("[admin]\nlisten = \"0.0.0.0:9470\"\ntoken = \"t\"\n", &[]).unwrap();
        // On loopback too, unless explicitly allowed; never an empty one.
        let e = load("[admin]\nlisten = \"127.0.0.1:9470\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin.allow_no_token"), "{e}");
        load(
            "[admin]\nlisten = \"127.0.0.1:9470\"\nallow_no_token = true\n",
            &[],
        )
        .unwrap();
        let e = load(
            "[admin]\nlisten = \"0.0.0.0:9470\"\nallow_no_token = true\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a loopback"), "{e}");
        let e = load("[admin]\nlisten = \"127.0.0.1:9470\"\ntoken = \" \"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load("[mysql]\nprot = 1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("prot"), "{e}");
    }

    #[test]
    fn bad_value_names_key_and_form() {
        let e = load("[mysql]\nport = \"abc\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("mysql.port"), "{e}");
        let e = load("[capture]\nkey = \"first\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("capture.key") && e.contains("all-columns"),
            "{e}"
        );
    }

    #[test]
    fn filters_tables_and_columns() {
        let c = load(
            "[capture]\ninclude=[\"shop\", \"crm.users\"]\nexclude=[\"shop.tmp_*\"]\nexclude_columns=[\"*.users.password\"]\n",
            &[],
        )
        .unwrap();
        let f = Filter::new(&c.capture);
        assert!(f.table("shop", "orders"));
        assert!(!f.table("shop", "tmp_x"));
        assert!(f.table("crm", "users"));
        assert!(!f.table("crm", "leads"));
        assert!(!f.column("crm", "users", "password"));
        assert!(f.column("crm", "users", "name"));
        // Databases that may hold captured tables (statement-logged changes there stop run).
        assert!(f.database("shop") && f.database("crm"));
        assert!(!f.database("billing"));
        let c = load("[capture]\nexclude=[\"scratch\"]\n", &[]).unwrap();
        let f = Filter::new(&c.capture);
        assert!(f.database("shop") && !f.database("scratch"));
    }
}

/// The reference documentation of the keys (deploy/config/example.toml, README's
/// Configuration section) against the code.
#[cfg(test)]
mod reference {
    use std::collections::BTreeSet;

    use serde_reflection::{ContainerFormat, Format, Registry, Tracer, TracerConfig};

    use super::*;

    /// Every key the code accepts, dotted (`mysql.tls.mode`); free-form maps
    /// (`kafka.properties`) are one key.
    fn code_keys() -> BTreeSet<String> {
        let mut tracer = Tracer::new(TracerConfig::default());
        tracer.trace_simple_type::<Config>().unwrap();
        let registry = tracer.registry_unchecked();
        let mut keys = BTreeSet::new();
        walk(&registry, "Config", "", &mut keys);
        keys
    }

    fn walk(registry: &Registry, name: &str, prefix: &str, keys: &mut BTreeSet<String>) {
        let Some(ContainerFormat::Struct(fields)) = registry.get(name) else {
            return;
        };
        for f in fields {
            let key = format!("{prefix}{}", f.name);
            let mut format = &f.value;
            while let Format::Option(inner) = format {
                format = inner;
            }
            match format {
                Format::TypeName(n)
                    if matches!(registry.get(n), Some(ContainerFormat::Struct(_))) =>
                {
                    walk(registry, n, &format!("{key}."), keys)
                }
                _ => {
                    keys.insert(key);
                }
            }
        }
    }

    /// Keys of deploy/config/example.toml: set ones, and commented-out `# key = …` lines.
    fn example_keys(code: &BTreeSet<String>) -> BTreeSet<String> {
        let text = include_str!("../deploy/config/example.toml");
        let mut keys = BTreeSet::new();
        let mut section = String::new();
        for line in text.lines() {
            let l = line.trim();
            if let Some(h) = l.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                section = h.to_string();
                if code.contains(&section) {
                    keys.insert(section.clone()); // a map, documented by its section
                }
                continue;
            }
            let l = l.trim_start_matches('#').trim_start();
            let Some((k, _)) = l.split_once('=') else {
                continue;
            };
            let k = k.trim();
            if !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                if code.contains(&section) {
                    continue; // an entry of a map section
                }
                keys.insert(format!("{section}.{k}"));
            }
        }
        keys
    }

    #[test]
    fn the_example_documents_exactly_the_keys_of_the_code() {
        let code = code_keys();
        assert!(code.contains("mysql.tls.mode") && code.contains("sink.partition.by"));
        let example = example_keys(&code);
        let missing: Vec<_> = code.difference(&example).collect();
        let unknown: Vec<_> = example.difference(&code).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "deploy/config/example.toml lacks {missing:?} and documents keys the code does \
             not have: {unknown:?}"
        );
    }

    #[test]
    fn readme_names_every_key_of_each_section() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("## Configuration")
            .expect("README has ## Configuration");
        let rest = &readme[start + 3..];
        let text = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
        let mut missing = Vec::new();
        for key in code_keys() {
            let (section, name) = key.rsplit_once('.').expect("keys are in sections");
            // The text after `[section]` up to the next section mark names the key.
            let Some(at) = text.find(&format!("`[{section}]`")) else {
                missing.push(format!("[{section}]"));
                continue;
            };
            let after = &text[at + section.len() + 4..];
            let span = &after[..after.find("`[").unwrap_or(after.len())];
            if !span.contains(&format!("`{name}`")) && !span.contains(&format!("`{name}/")) {
                missing.push(key);
            }
        }
        assert!(
            missing.is_empty(),
            "README's Configuration section does not name: {missing:?}"
        );
    }

    #[test]
    fn unset_keys_are_the_keys_without_a_default() {
        let mut with_default = BTreeSet::new();
        fn flat(v: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    let key = format!("{prefix}{k}");
                    if matches!(v, toml::Value::Table(_))
                        && !key.contains("properties")
                        && !key.ends_with("topic_config")
                        && !key.ends_with("tables")
                    {
                        flat(v, &format!("{key}."), out);
                    } else {
                        out.insert(key);
                    }
                }
            }
        }
        let v = toml::Value::try_from(Config::default()).unwrap();
        flat(&v, "", &mut with_default);
        let code = code_keys();
        let unset: BTreeSet<String> = code.difference(&with_default).cloned().collect();
        let listed: BTreeSet<String> = UNSET_KEYS.iter().map(|k| k.to_string()).collect();
        assert_eq!(unset, listed);
        // And the printed defaults load back as the defaults.
        let text = Config::defaults_toml();
        let back = Config::from_toml(&text, Path::new("defaults"), std::iter::empty()).unwrap();
        assert_eq!(toml::Value::try_from(back).unwrap(), v);
    }

    #[test]
    fn a_kafka_property_with_dots_comes_from_the_environment() {
        let c = Config::from_toml(
            "[kafka.properties]\n\"sasl.username\" = \"cdc\"\n",
            Path::new("x"),
            [(
                "BINLAKE_KAFKA__PROPERTIES__SASL.PASSWORD".to_string(),
                "1234".to_string(),
            )],
        )
        .unwrap();
        assert_eq!(
            c.kafka.properties.get("sasl.password").map(String::as_str),
            Some("1234")
        );
        assert_eq!(
            c.kafka.properties.get("sasl.username").map(String::as_str),
            Some("cdc")
        );
    }

    #[test]
    fn debug_and_urls_mask_secrets() {
        let c = Config::from_toml(
            "[mysql]\npassword = \"hunter2\"\n[admin]\nlisten = \"127.0.0.1:1\"\ntoken = \"tok3n\"\n\
             [registry]\nusername = \"u\"\npassword = \"r3g\"\n\
             [kafka.properties]\n\"sasl.password\" = \"s3cret\"\n\"ssl.key.password\" = \"k3y\"\n",
            Path::new("x"),
            std::iter::empty(),
        )
        .unwrap();
        let out = format!("{c:?} {c:#?}");
        for secret in ["hunter2", "tok3n", "s3cret", "r3g", "k3y"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(out.contains("127.0.0.1:1"), "{out}");
        assert_eq!(redact_url("https://u:pw@h:1/p?q"), "https://u:***@h:1/p?q");
        assert_eq!(redact_url("http://h:1"), "http://h:1");
        assert_eq!(redact_url("mysql://u@h/d"), "mysql://u@h/d");
        assert_eq!(redact_url("mysql://u:p/w@x@h/d"), "mysql://u:***@h/d");
    }

    #[test]
    fn printing_a_config_masks_its_secrets() {
        let c = Config::from_toml(
            "[mysql]\npassword = \"hunter2\"\n[admin]\nlisten = \"127.0.0.1:1\"\ntoken = \"tok3n\"\n\
             [kafka.properties]\n\"sasl.password\" = \"s3cret\"\n\"ssl.key.pem\" = \"PRIVATE\"\n\
             \"ssl.key.password\" = \"k3y\"\n\"sasl.oauthbearer.config\" = \"principal=p\"\n",
            Path::new("x"),
            std::iter::empty(),
        )
        .unwrap();
        let out = c.to_toml_masked();
        for secret in [
            "hunter2",
            "tok3n",
            "s3cret",
            "PRIVATE",
            "k3y",
            "principal=p",
        ] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(out.contains("listen = \"127.0.0.1:1\""), "{out}");
    }
}
