//! A private Kafka-protocol broker per test: Nisshi (see ../shared/recipes), on its own port
//! and directory, with the in-memory engine or the persistent sqlite engine (which compacts
//! at start-up). Stopped on drop.
//!
//! nisshi is found as `$NISSHI`, else `~/.cargo/bin/nisshi`, else on the PATH. It
//! auto-creates unknown topics with 4 partitions when a client asks for their metadata:
//! create topics explicitly before reading them.

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

pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    sqlite: bool,
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
        let dir = unique_dir();
        std::fs::create_dir_all(&dir).expect("broker dir");
        let mut b = Broker {
            port: free_port(),
            dir,
            sqlite,
            child: None,
        };
        b.launch();
        b
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
        let log = std::fs::File::create(self.dir.join("broker.log")).expect("broker log");
        let child = Command::new(nisshi())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                &engine,
                "--group-initial-rebalance-delay",
                "0s",
            ])
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
