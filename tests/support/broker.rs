//! A private, throw-away Kafka-protocol broker per test: `nisshi` (in-memory storage) on a
//! free port of 127.0.0.1. Stopped on drop (SIGTERM, then SIGKILL if it lingers).
//!
//! nisshi is found as `$NISSHI`, else `nisshi` in `~/.cargo/bin`, else on the PATH
//! (`cargo install nisshi`). It auto-creates unknown topics with 4 partitions when a client
//! asks for their metadata: create topics explicitly before reading them.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    child: Child,
}

/// A port that was free a moment ago (bind to port 0, then release it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

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

impl Broker {
    /// Starts a broker with in-memory storage and waits until it accepts connections.
    pub fn start() -> Broker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(nisshi())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://nisshi/"])
            .args(["--group-initial-rebalance-delay", "0s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start nisshi ({}): {e}; install it with `cargo install nisshi` \
                     or set NISSHI to its path",
                    nisshi().display()
                )
            });
        let broker = Broker { port, child };
        wait_for_port(port, Duration::from_secs(20), "nisshi");
        broker
    }

    /// `127.0.0.1:PORT`, for bootstrap.servers.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(2));
    }
}
