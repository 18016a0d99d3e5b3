//! A private Kafka-protocol broker per test: Nisshi (see ../shared/recipes), on its own port
//! and directory, with the in-memory engine or the persistent sqlite engine (which compacts
//! at start-up). Stopped on drop.
//!
//! nisshi is found as `$NISSHI`, else `~/.cargo/bin/nisshi`, else on the PATH. It
//! auto-creates unknown topics with 4 partitions when a client asks for their metadata:
//! create topics explicitly before reading them.
//!
//! [`Broker::start_secure`] starts one that requires TLS and/or SASL SCRAM. What Nisshi 0.8.1
//! needs for that (found by trying): `--cert`/`--key` make the listener TLS-only (its URL stays
//! `tcp://`); `--authentication` refuses the memory engine ("can't store SCRAM users"), so
//! such a broker uses sqlite; and `nisshi user create` talks to a broker in plaintext without
//! authenticating, so the users are created through a plain start of the same sqlite file,
//! which is then stopped and started again secured. Nisshi offers SCRAM-SHA-256 and
//! SCRAM-SHA-512 only (no PLAIN).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use super::mariadb::free_port;
use super::mariadb::unique_dir;

fn nisshi() -> PathBuf {
    if let Some(p) = std::env::var_os("NISSHI") {
        return p.into();
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let installed = home.join(".cargo/bin/nisshi");
    if installed.exists() {
        installed
    } else {
        PathBuf::from("nisshi")
    }
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

pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    sqlite: bool,
    security: Security,
    child: Option<Child>,
}

impl Broker {
    /// In-memory engine: fast, nothing survives a restart.
    pub fn start() -> Broker {
        Broker::start_memory()
    }

    /// In-memory engine: fast, nothing survives a restart.
    pub fn start_memory() -> Broker {
        Broker::start_engine(false)
    }

    /// sqlite engine: survives restarts, compacts compacted topics at start-up.
    pub fn start_sqlite() -> Broker {
        Broker::start_engine(true)
    }

    fn start_engine(sqlite: bool) -> Broker {
        Broker::start_with(sqlite, Security::default())
    }

    /// A broker that requires `security` of its clients (sqlite engine when it has users).
    pub fn start_secure(security: Security) -> Broker {
        Broker::start_with(!security.users.is_empty(), security)
    }

    fn start_with(sqlite: bool, security: Security) -> Broker {
        let dir = unique_dir();
        std::fs::create_dir_all(&dir).expect("broker dir");
        let mut b = Broker {
            port: free_port(),
            dir,
            sqlite,
            security: Security::default(),
            child: None,
        };
        if !security.users.is_empty() {
            // `nisshi user create` speaks plaintext without authenticating: create the users
            // through a plain start of the same sqlite file.
            b.launch();
            for (name, password, mechanism) in &security.users {
                let out = Command::new(nisshi())
                    .args([
                        "user",
                        "create",
                        name,
                        password,
                        "--mechanism",
                        mechanism,
                        "--broker",
                        &format!("tcp://127.0.0.1:{}", b.port),
                    ])
                    .stdin(Stdio::null())
                    .output()
                    .expect("run nisshi user create");
                assert!(
                    out.status.success(),
                    "nisshi user create {name}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            b.stop();
        }
        b.security = security;
        b.launch();
        b
    }

    /// The broker's log (every start of it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let engine = if self.sqlite {
            "sqlite://nisshi.db".to_string()
        } else {
            "memory://nisshi/".to_string()
        };
        // Appended: a restart keeps the log of the earlier starts.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .expect("broker log");
        let mut args: Vec<String> = [
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            &engine,
            "--group-initial-rebalance-delay",
            "0s",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        if let Some((cert, key)) = &self.security.tls {
            for (flag, path) in [("--cert", cert), ("--key", key)] {
                args.push(flag.into());
                args.push(path.to_str().expect("utf-8 path").into());
            }
        }
        if !self.security.users.is_empty() {
            args.push("--authentication".into());
        }
        let child = Command::new(nisshi())
            .args(&args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start nisshi (install: cargo install nisshi --version 0.8.1 --locked --ignore-rust-version)");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(30), "nisshi");
    }

    /// Stops the broker: SIGTERM, then SIGKILL after 10 s (Nisshi can be slow to stop).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, Duration::from_secs(10));
        }
    }

    /// SIGKILL (a crash), then starts it again on the same port and data.
    pub fn kill9_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.launch();
    }

    /// Starts it again on the same port and data with other TLS settings (the users stay:
    /// they are in the data).
    pub fn restart_with_tls(&mut self, tls: Option<(PathBuf, PathBuf)>) {
        self.stop();
        self.security.tls = tls;
        self.launch();
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
