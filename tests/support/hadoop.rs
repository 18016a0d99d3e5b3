//! A private HDFS (NameNode + DataNode) and a private Hive metastore per test, run by
//! `deploy/local/hadoop.sh` on free ports of 127.0.0.1, each in its own temporary directory;
//! and `spark_sql`, the independent reader (pyspark, tests/python/spark_sql.py).
//!
//! Owns: the lifetime of those servers. Invariant: a started server is stopped (and its
//! directory removed) when its value is dropped, and also when the test process dies
//! without dropping it (the script's watcher follows this process's PID).
//!
//! The first start in a process runs `hadoop.sh install` (idempotent, quick when
//! everything is there), so the tests work on a fresh machine.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;

use super::mariadb::{check, unique_dir};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    repo().join("deploy/local/hadoop.sh")
}

/// `n` distinct ports that were free a moment ago (all bound at once, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Runs `hadoop.sh install` once per test process.
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let out = Command::new("bash")
            .arg(script())
            .arg("install")
            .stdin(Stdio::null())
            .output();
        check("deploy/local/hadoop.sh install", out);
    });
}

fn script_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(script())
        .args(args)
        .env("HADOOP_DIR", dir)
        .env("HADOOP_OWNER_PID", std::process::id().to_string())
        .stdin(Stdio::null());
    cmd
}

/// A running NameNode + DataNode (replication 1, permissions off).
pub struct Hdfs {
    /// NameNode RPC port (the `hdfs://` URL's).
    pub port: u16,
    /// NameNode web/JMX port.
    pub http_port: u16,
    /// conf/, name/, data/, logs/ (namenode.log, datanode.log), PID files.
    pub dir: PathBuf,
    /// DataNode data, web and IPC ports.
    datanode_ports: [u16; 3],
    block_size: u64,
}

impl Hdfs {
    /// Formats and starts a new HDFS (128 MiB blocks); panics with the daemons' logs if it
    /// is not ready (out of safe mode with one live DataNode) within 90 s.
    pub fn start() -> Hdfs {
        Hdfs::start_with_block_size(128 << 20)
    }

    /// The same with `dfs.blocksize` = `block_size` (at least 1 MiB, a multiple of 512), so
    /// that small test files span several blocks.
    pub fn start_with_block_size(block_size: u64) -> Hdfs {
        install();
        let dir = unique_dir().with_extension("hdfs");
        std::fs::create_dir_all(&dir).expect("hdfs dir");
        let p = free_ports(5);
        // Built first, so that Drop cleans up even when starting fails.
        let hdfs = Hdfs {
            port: p[0],
            http_port: p[1],
            dir,
            datanode_ports: [p[2], p[3], p[4]],
            block_size,
        };
        hdfs.launch();
        hdfs
    }

    /// `hadoop.sh start hdfs` on this instance's ports and data.
    fn launch(&self) {
        let [dn, dn_http, dn_ipc] = self.datanode_ports;
        let out = script_cmd(&self.dir, &["start", "hdfs"])
            .env("HADOOP_NAMENODE_PORT", self.port.to_string())
            .env("HADOOP_NAMENODE_HTTP_PORT", self.http_port.to_string())
            .env("HADOOP_DATANODE_PORT", dn.to_string())
            .env("HADOOP_DATANODE_HTTP_PORT", dn_http.to_string())
            .env("HADOOP_DATANODE_IPC_PORT", dn_ipc.to_string())
            .env("HADOOP_BLOCK_SIZE", self.block_size.to_string())
            .env("HADOOP_START_TIMEOUT", "90")
            .output();
        check("hadoop.sh start hdfs", out);
    }

    /// The process id of `daemon` (`namenode` or `datanode`), from its PID file.
    pub fn pid(&self, daemon: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(format!("{daemon}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Sends `signal` (e.g. `-STOP`, `-CONT`) to `daemon`.
    pub fn signal(&self, daemon: &str, signal: &str) {
        if let Some(pid) = self.pid(daemon) {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
    }

    /// SIGKILL of the NameNode and the DataNode (a crash of the whole HDFS), then starts
    /// them again on the same ports and data; waits until HDFS is ready.
    pub fn kill9_restart(&self) {
        for daemon in ["namenode", "datanode"] {
            self.signal(daemon, "-CONT");
            self.signal(daemon, "-KILL");
            if let Some(pid) = self.pid(daemon) {
                while Path::new(&format!("/proc/{pid}")).exists() {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
        self.launch();
    }

    /// Copies `path` (absolute, in this HDFS) to the local `to` with Hadoop's own client
    /// (`hadoop.sh fs -get`), replacing `to`. Returns false when the copy failed.
    pub fn get(&self, path: &str, to: &Path) -> bool {
        let _ = std::fs::remove_dir_all(to);
        let src = format!("{}{path}", self.url());
        script_cmd(
            &self.dir,
            &["fs", "-get", &src, to.to_str().expect("utf-8 path")],
        )
        .output()
        .is_ok_and(|o| o.status.success())
    }

    /// `hdfs://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("hdfs://127.0.0.1:{}", self.port)
    }
}

impl Drop for Hdfs {
    fn drop(&mut self) {
        let _ = script_cmd(&self.dir, &["stop", "hdfs"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running Hive metastore (Derby in its own directory).
pub struct Metastore {
    pub port: u16,
    /// hms-conf/hive-site.xml, metastore/ (Derby, local warehouse), logs/metastore.log.
    pub dir: PathBuf,
}

impl Metastore {
    /// Starts a metastore whose fs.defaultFS is `fs_default` (`hdfs://127.0.0.1:PORT`), or the
    /// local file system when None; its warehouse is `FS/user/hive/warehouse`, or
    /// `DIR/metastore/warehouse` locally. Panics with its log if it does not start in 90 s.
    pub fn start(fs_default: Option<&str>) -> Metastore {
        install();
        let dir = unique_dir().with_extension("hms");
        std::fs::create_dir_all(&dir).expect("metastore dir");
        let port = free_ports(1)[0];
        let ms = Metastore { port, dir };
        let mut cmd = script_cmd(&ms.dir, &["start", "metastore"]);
        cmd.env("HIVE_METASTORE_PORT", port.to_string())
            .env("HADOOP_START_TIMEOUT", "90")
            .env("HIVE_FS_DEFAULT", fs_default.unwrap_or("file:///"));
        check("hadoop.sh start metastore", cmd.output());
        ms
    }

    /// `thrift://127.0.0.1:PORT`
    pub fn uri(&self) -> String {
        format!("thrift://127.0.0.1:{}", self.port)
    }
}

impl Drop for Metastore {
    fn drop(&mut self) {
        let _ = script_cmd(&self.dir, &["stop", "metastore"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `statements` in one Spark session (pyspark, local[1], UTC) whose catalog is the
/// metastore at `metastore_uri`, and returns, per statement, the list of its result rows as
/// objects `{column: "value" | null}` (values rendered as tests/python/spark_sql.py says:
/// decimals via str(), timestamps ISO, bytes upper hex, booleans true/false). Panics with
/// Spark's output when a statement fails. Takes 15-30 s (a JVM starts).
pub fn spark_sql(metastore_uri: &str, statements: &[&str]) -> serde_json::Value {
    install();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(python)
        .arg(repo().join("tests/python/spark_sql.py"))
        .arg(metastore_uri)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3 tests/python/spark_sql.py");
    let input = serde_json::to_vec(statements).expect("statements as JSON");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write the statements to spark_sql.py");
    let out = child.wait_with_output();
    let out = check(&format!("spark_sql.py {statements:?}"), out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "spark_sql.py printed no JSON result ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Spark's rendering → the source's canonical text (see Stack::source_table).
pub fn spark_canonical(v: &serde_json::Value) -> serde_json::Value {
    let Some(s) = v.as_str() else {
        return v.clone();
    };
    if s.len() >= 19 && s.as_bytes().get(10) == Some(&b'T') {
        let t = s.replacen('T', " ", 1);
        return if t.contains('.') {
            serde_json::json!(t)
        } else {
            serde_json::json!(format!("{t}.000000"))
        };
    }
    v.clone()
}
