//! A private Kafka-protocol broker per test: Nisshi (see ../shared/recipes), on its own port
//! and directory, with the in-memory engine or the persistent sqlite engine (which compacts
//! at start-up). Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::mariadb::{free_port, unique_dir};

pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    sqlite: bool,
    child: Option<Child>,
}

impl Broker {
    /// In-memory engine: fast, nothing survives a restart.
    pub fn start_memory() -> Broker {
        Broker::start(false)
    }

    /// sqlite engine: survives restarts, compacts compacted topics at start-up.
    pub fn start_sqlite() -> Broker {
        Broker::start(true)
    }

    fn start(sqlite: bool) -> Broker {
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
        let child = Command::new("nisshi")
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
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "nisshi did not listen on {} within 30 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker: SIGTERM, then SIGKILL after 10 s (Nisshi can be slow to stop).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
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
