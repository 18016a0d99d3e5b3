//! Running the real `binlake` binary from tests, with a time limit so a test never hangs,
//! and writing the config file it reads.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::mariadb::MariaDb;

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as parsed JSON lines.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
            .collect()
    }
}

/// Runs binlake with `args`; kills it after `limit` and panics.
pub fn binlake(args: &[&str], limit: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_binlake"))
        .args(args)
        .env("BINLAKE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binlake");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
            let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
            panic!(
                "binlake {args:?} did not finish within {limit:?}\nstdout (last 2000 bytes): {}\nstderr: {stderr}",
                &stdout[stdout.len().saturating_sub(2000)..]
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: String::from_utf8(t_out.join().unwrap_or_default()).expect("utf-8 stdout"),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
    }
}

/// Writes a config for `db` as user/password and returns its path (inside the server's dir).
pub fn config(db: &MariaDb, user: &str, password: &str, extra: &str) -> PathBuf {
    let path = db.dir.join(format!("binlake-{user}.toml"));
    std::fs::write(
        &path,
        format!(
            "[mysql]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{user}\"\npassword = \"{password}\"\nserver_id = 4242\n{extra}",
            db.port
        ),
    )
    .expect("write config");
    path
}

/// The server's current binlog coordinates as `FILE:POS`.
pub fn binlog_end(db: &MariaDb) -> String {
    let rows = db.query_rows("SHOW MASTER STATUS");
    format!("{}:{}", rows[0][0], rows[0][1])
}

/// Starts binlake with `args` in the background, stdout and stderr piped, logging at `log`.
/// The caller reads its output and kills it.
pub fn spawn(args: &[&str], log: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_binlake"))
        .args(args)
        .env("BINLAKE_LOG", log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binlake")
}
