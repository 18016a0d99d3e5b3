//! A private, throw-away MariaDB server per test, run by
//! `deploy/local/mariadb.sh` (ROW binlog, FULL row image and metadata, GTIDs).
//! Accounts: root/root (socket and 127.0.0.1) and binlake/binlake (CDC grants).
//! The server is stopped and its directory removed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct MariaDb {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Instance directory: data/, mysqld.sock, mysqld.pid, error.log.
    pub dir: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/mariadb.sh")
}

/// Panics with the command's output unless it succeeded.
pub fn check(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A port that was free a moment ago (bind to port 0, then release it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

pub fn unique_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    // Kept short: the socket path inside must stay under ~107 bytes.
    std::env::temp_dir().join(format!("binlake-test-{}-{n}-{nanos}", std::process::id()))
}

impl MariaDb {
    /// Starts a server with the default (CDC-ready) settings.
    pub fn start() -> MariaDb {
        MariaDb::start_with(&[])
    }

    /// Starts a server with extra mariadbd arguments, which override the
    /// defaults (e.g. `--binlog-format=STATEMENT`).
    pub fn start_with(extra_args: &[&str]) -> MariaDb {
        let dir = unique_dir();
        let port = free_port();
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&dir)
            .arg(port.to_string())
            .args(extra_args)
            // The script stops the server if this process dies without Drop.
            .env("BINLAKE_OWNER_PID", std::process::id().to_string())
            .output();
        // Build the value first so that Drop cleans up even if starting failed.
        let db = MariaDb { port, dir };
        check("mariadb.sh start", out);
        db
    }

    /// Stops the server and starts it again on the same data and port.
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// Stops the server (SIGTERM, as an operator would).
    pub fn stop(&self) {
        let out = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .output();
        check("mariadb.sh stop", out);
    }

    /// Starts a stopped server again on the same data and port.
    pub fn start_again(&self) {
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .env("BINLAKE_OWNER_PID", std::process::id().to_string())
            .output();
        check("mariadb.sh start", out);
    }

    /// `mysql://user:pass@127.0.0.1:PORT/`
    pub fn url(&self, user: &str, pass: &str) -> String {
        format!("mysql://{user}:{pass}@127.0.0.1:{}/", self.port)
    }

    /// A new connection as root over TCP.
    pub async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(self.url("root", "root"))
            .await
            .expect("connect to MariaDB as root")
    }

    fn cli(&self, extra: &[&str], sql: &str) -> Output {
        let sock = self.dir.join("mysqld.sock");
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", sock.display()))
            .args(["-uroot", "-proot", "--default-character-set=utf8mb4"])
            .args(extra)
            .args(["-e", sql])
            .output();
        check(&format!("mariadb -e {sql:?}"), out)
    }

    /// Runs SQL (several `;`-separated statements are fine) as root through
    /// the `mariadb` CLI; panics with its stderr on error.
    pub fn sql(&self, sql: &str) {
        self.cli(&[], sql);
    }

    /// Rows of the last result set, as `mariadb --batch` prints them: NULL is
    /// "NULL", and tab, newline and backslash inside values are escaped.
    pub fn query_rows(&self, sql: &str) -> Vec<Vec<String>> {
        let out = self.cli(&["--batch", "--skip-column-names"], sql);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| line.split('\t').map(str::to_owned).collect())
            .collect()
    }

    /// Lines of the last result set, unescaped (`--raw`): for single-column results whose
    /// values hold no newline, such as JSON_OBJECT(...).
    pub fn query_raw_lines(&self, sql: &str) -> Vec<String> {
        let out = self.cli(&["--batch", "--raw", "--skip-column-names"], sql);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .output();
        // TEST_KEEP_DIRS=1 keeps the directory (the server's data and the logs of every
        // binlake process the test ran) for a look after a failure. (Not BINLAKE_*: those
        // are binlake's configuration overrides.)
        if std::env::var_os("TEST_KEEP_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl MariaDb {
    /// Purges binlogs before `file`. MariaDB keeps a binlog until its checkpoint is written,
    /// so this retries until the server really dropped them (or panics after 10 s).
    pub fn purge_to(&self, file: &str) {
        for _ in 0..100 {
            self.sql(&format!("PURGE BINARY LOGS TO '{file}';"));
            if self.query_rows("SHOW BINARY LOGS")[0][0] == file {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("binlogs before {file} were not purged within 10 s");
    }
}
