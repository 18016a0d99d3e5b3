//! A private Apache Kafka per test (deploy/local/kafka.sh: KRaft, combined broker+controller):
//! one node or a cluster, on free ports of 127.0.0.1 and its own directory, each node a JVM
//! this process spawned (`kafka.sh run` execs java), so that a test can SIGKILL, stop and
//! restart any node. Stopped on drop; `KAFKA_OWNER_PID` makes the nodes die with this process.
//!
//! Compaction really runs when a test asks for it ([`Options::compacting`]: the cleaner checks
//! every 100 ms, and binlake's topics are then created with a small `segment.ms`, see
//! [`COMPACTING_TOPIC_CONFIG`]); the active segment is never compacted.
//!
//! [`Broker::start_secure`] starts one whose client listener requires TLS and/or SASL SCRAM:
//! the listener named PLAINTEXT is mapped to SSL or SASL_SSL, the brokers talk to each other
//! and to the controllers over plaintext listeners of their own, the certificate and key are
//! one PEM keystore (PKCS#8 key), and the SCRAM users are written at format time.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use super::mariadb::free_port;
use super::mariadb::unique_dir;

/// `[kafka] topic_config` lines (TOML, inside the `[kafka]` section) that make the log
/// cleaner compact binlake's topics within seconds on a broker started with
/// [`Options::compacting`].
pub const COMPACTING_TOPIC_CONFIG: &str = "topic_config = { \"segment.ms\" = \"200\", \
     \"min.cleanable.dirty.ratio\" = \"0.01\", \"delete.retention.ms\" = \"100\", \
     \"min.compaction.lag.ms\" = \"0\" }";

fn kafka_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/kafka.sh")
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`; panics after `limit`.
pub fn wait_for_port(port: u16, limit: Duration, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < limit,
            "{what} did not accept connections on port {port} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a child: SIGTERM, up to `grace` to exit, then SIGKILL.
pub fn stop(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// What a secured broker requires of its clients ([`Broker::start_secure`]).
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// TLS with this certificate chain and private key (PEM): the listener accepts only TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// SCRAM users: (name, password, mechanism `scram512` or `scram256`). When not empty the
    /// broker requires SASL authentication.
    pub users: Vec<(String, String, String)>,
}

/// How to start a [`Broker`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Number of nodes (1 when 0).
    pub nodes: usize,
    /// The log cleaner looks for work every 100 ms (use with [`COMPACTING_TOPIC_CONFIG`]).
    pub compacting: bool,
    pub security: Security,
    /// More broker properties (`key=value`), last, so they override.
    pub properties: Vec<String>,
    /// One node only: a second plaintext client listener on `.0` that advertises
    /// 127.0.0.1:`.1`, for clients that reach the broker through a proxy listening on `.1`
    /// (support::proxy) while the tests' own clients use [`Broker::bootstrap`].
    pub proxied: Option<(u16, u16)>,
}

struct Node {
    port: u16,
    controller_port: u16,
    internal_port: u16,
    child: Option<Child>,
}

pub struct Broker {
    /// The first node's client port.
    pub port: u16,
    pub dir: PathBuf,
    nodes: Vec<Node>,
}

impl Broker {
    /// One node.
    pub fn start() -> Broker {
        Broker::start_with(Options::default())
    }

    /// One node whose log cleaner compacts within seconds (see [`COMPACTING_TOPIC_CONFIG`]).
    pub fn start_compacting() -> Broker {
        Broker::start_with(Options {
            compacting: true,
            ..Options::default()
        })
    }

    /// A cluster of `nodes` nodes (each broker and controller; the quorum needs a majority).
    pub fn start_cluster(nodes: usize) -> Broker {
        Broker::start_with(Options {
            nodes,
            ..Options::default()
        })
    }

    /// A broker that requires `security` of its clients.
    pub fn start_secure(security: Security) -> Broker {
        Broker::start_with(Options {
            security,
            ..Options::default()
        })
    }

    pub fn start_with(opts: Options) -> Broker {
        let dir = unique_dir();
        std::fs::create_dir_all(&dir).expect("broker dir");
        let nodes: Vec<Node> = (0..opts.nodes.max(1))
            .map(|_| Node {
                port: free_port(),
                controller_port: free_port(),
                internal_port: free_port(),
                child: None,
            })
            .collect();
        let join = |f: &dyn Fn(&Node) -> u16| {
            nodes
                .iter()
                .map(|n| f(n).to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut args: Vec<String> = vec![
            "configure".into(),
            dir.to_str().expect("utf-8 path").into(),
            join(&|n| n.port),
            join(&|n| n.controller_port),
        ];
        if opts.compacting {
            args.push("log.cleaner.backoff.ms=100".into());
        }
        if let Some((listen, advertised)) = opts.proxied {
            assert_eq!(nodes.len(), 1, "a proxied listener is for one node");
            let n = &nodes[0];
            args.push(format!(
                "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{},PROXIED://127.0.0.1:{listen}",
                n.port, n.controller_port
            ));
            args.push(format!(
                "advertised.listeners=PLAINTEXT://127.0.0.1:{},PROXIED://127.0.0.1:{advertised}",
                n.port
            ));
            args.push(
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT"
                    .into(),
            );
        }
        args.extend(opts.properties.iter().cloned());
        for (name, password, mechanism) in &opts.security.users {
            args.push("--scram".into());
            args.push(format!(
                "{}=[name={name},password={password}]",
                scram_mechanism(mechanism)
            ));
        }
        let out = Command::new("bash")
            .arg(kafka_sh())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run deploy/local/kafka.sh configure");
        assert!(
            out.status.success(),
            "kafka.sh configure: {}{} (install: bash deploy/local/kafka.sh install)",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut b = Broker {
            port: nodes[0].port,
            dir,
            nodes,
        };
        for i in 0..b.nodes.len() {
            b.write_security(i, &opts.security);
        }
        b.launch_all();
        b
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{}", i + 1))
    }

    /// The node's own settings for `security` (its listeners, keystore and SASL), replacing
    /// any earlier ones: kafka.sh's server.properties followed by a `# security` block.
    fn write_security(&self, i: usize, security: &Security) {
        let path = self.node_dir(i).join("server.properties");
        let text = std::fs::read_to_string(&path).expect("server.properties");
        let base = text.split("# security\n").next().unwrap_or_default();
        let mut block = String::new();
        if security.tls.is_some() || !security.users.is_empty() {
            let n = &self.nodes[i];
            let client = match (security.tls.is_some(), !security.users.is_empty()) {
                (true, true) => "SASL_SSL",
                (true, false) => "SSL",
                _ => "SASL_PLAINTEXT",
            };
            block += &format!(
                "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{},INTERNAL://127.0.0.1:{}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{},INTERNAL://127.0.0.1:{}\n\
                 inter.broker.listener.name=INTERNAL\n\
                 listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,PLAINTEXT:{client}\n",
                n.port, n.controller_port, n.internal_port, n.port, n.internal_port
            );
        }
        if let Some((cert, key)) = &security.tls {
            // One PEM keystore: the private key (PKCS#8, unencrypted) and the chain.
            let keystore = self.node_dir(i).join("keystore.pem");
            let pem = std::fs::read_to_string(key).expect("key")
                + &std::fs::read_to_string(cert).expect("cert");
            std::fs::write(&keystore, pem).expect("keystore");
            block += &format!(
                "ssl.keystore.type=PEM\nssl.keystore.location={}\nssl.client.auth=none\n",
                keystore.display()
            );
        }
        if !security.users.is_empty() {
            let mut mechanisms: Vec<&str> = security
                .users
                .iter()
                .map(|(_, _, m)| scram_mechanism(m))
                .collect();
            mechanisms.dedup();
            block += &format!("sasl.enabled.mechanisms={}\n", mechanisms.join(","));
            for m in &mechanisms {
                block += &format!(
                    "listener.name.plaintext.{}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n",
                    m.to_lowercase()
                );
            }
        }
        std::fs::write(&path, format!("{base}# security\n{block}")).expect("server.properties");
    }

    /// The broker's log (every node, every start).
    pub fn log(&self) -> String {
        (0..self.nodes.len())
            .map(|i| {
                std::fs::read_to_string(self.node_dir(i).join("server.log")).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every node's client address, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The process id of node `i` (0-based), which must be running.
    pub fn pid(&self, i: usize) -> u32 {
        self.nodes[i].child.as_ref().expect("node is running").id()
    }

    /// Node `i`'s (0-based) Kafka node id.
    pub fn node_id(i: usize) -> i32 {
        i as i32 + 1
    }

    fn started_count(&self, i: usize) -> usize {
        std::fs::read_to_string(self.node_dir(i).join("server.log"))
            .unwrap_or_default()
            .matches("Kafka Server started")
            .count()
    }

    fn spawn(&mut self, i: usize) -> usize {
        let before = self.started_count(i);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node_dir(i).join("stdout.log"))
            .expect("node stdout log");
        let child = Command::new("bash")
            .arg(kafka_sh())
            .args([
                "run",
                self.dir.to_str().expect("utf-8 path"),
                &(i + 1).to_string(),
            ])
            .env("KAFKA_OWNER_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start deploy/local/kafka.sh run");
        self.nodes[i].child = Some(child);
        before
    }

    /// Waits until node `i` logged one more "Kafka Server started" than `before`.
    fn wait_started(&mut self, i: usize, before: usize) {
        let start = Instant::now();
        while self.started_count(i) <= before {
            if let Some(c) = self.nodes[i].child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "Kafka node {} exited ({status}) while starting:\n{}\n{}",
                        i + 1,
                        tail(&self.node_dir(i).join("server.log")),
                        tail(&self.node_dir(i).join("stdout.log"))
                    );
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "Kafka node {} did not start within 120 s:\n{}",
                i + 1,
                tail(&self.node_dir(i).join("server.log"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        wait_for_port(self.nodes[i].port, Duration::from_secs(10), "kafka");
    }

    /// Starts every node that is not running (together: a cluster's quorum needs a majority).
    fn launch_all(&mut self) {
        let idle: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_none())
            .collect();
        let before: Vec<usize> = idle.iter().map(|&i| self.spawn(i)).collect();
        for (&i, b) in idle.iter().zip(before) {
            self.wait_started(i, b);
        }
    }

    /// Starts node `i` (0-based) again after [`Broker::kill9_node`] or [`Broker::stop_node`].
    pub fn start_node(&mut self, i: usize) {
        if self.nodes[i].child.is_none() {
            let before = self.spawn(i);
            self.wait_started(i, before);
        }
    }

    /// SIGKILL of node `i` (0-based): a crash.
    pub fn kill9_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A clean stop of node `i` (SIGTERM; SIGKILL after 30 s).
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            stop(&mut c, Duration::from_secs(30));
        }
    }

    /// Stops every node (SIGTERM together, SIGKILL after 20 s: the last nodes of a cluster
    /// can wait for a quorum that is gone).
    pub fn stop(&mut self) {
        for n in &self.nodes {
            if let Some(c) = &n.child {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(c.id().to_string())
                    .status();
            }
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                stop(&mut c, Duration::from_secs(20));
            }
        }
    }

    /// SIGKILL of every node (a crash), then starts them again on the same ports and data.
    pub fn kill9_restart(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9_node(i);
        }
        self.launch_all();
    }

    /// Starts it again on the same ports and data with other TLS settings (the users stay:
    /// they are in the data).
    pub fn restart_with_tls(&mut self, tls: Option<(PathBuf, PathBuf)>) {
        self.stop();
        for i in 0..self.nodes.len() {
            let path = self.node_dir(i).join("server.properties");
            let text = std::fs::read_to_string(&path).expect("server.properties");
            let has_users = text.contains("sasl.enabled.mechanisms=");
            let mut security = Security {
                tls: tls.clone(),
                users: vec![],
            };
            if has_users {
                // Only the mechanism matters here; the users are in the metadata log.
                let m = text
                    .lines()
                    .find_map(|l| l.strip_prefix("sasl.enabled.mechanisms="))
                    .unwrap_or("SCRAM-SHA-512");
                for m in m.split(',') {
                    let short = if m == "SCRAM-SHA-256" {
                        "scram256"
                    } else {
                        "scram512"
                    };
                    security
                        .users
                        .push((String::new(), String::new(), short.into()));
                }
            }
            self.write_security(i, &security);
        }
        self.launch_all();
    }

    /// Starts it again on the same ports and data (a clean stop first).
    pub fn restart(&mut self) {
        self.stop();
        self.launch_all();
    }
}

fn scram_mechanism(short: &str) -> &'static str {
    match short {
        "scram256" => "SCRAM-SHA-256",
        _ => "SCRAM-SHA-512",
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Drop for Broker {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9_node(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates `name` with `partitions` partitions (replication 1) and the topic `configs`, with
/// an independent client (rdkafka's admin), as an operator would before binlake starts.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let results = rt
        .block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .expect("create topic");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}
