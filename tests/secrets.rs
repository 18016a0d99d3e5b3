//! Secrets and the real binary: passwords never reach stdout, stderr or log files (debug
//! logging, working and failing runs); a config file holding a password in plain text gets
//! one warning naming the key; an unreadable `password_file` stops the command before it
//! connects anywhere.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::broker;
use support::stack::Stack;

const MYSQL_PW: &str = "My-Sql-Pw-7Hq2x";
const REGISTRY_PW: &str = "Reg-Pw-K9d4w";
const WRONG_PW: &str = "Wrong-Pw-Z5m1v";
const SASL_PW: &str = "Sasl-Pw-B3n8q";

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs binlake with `args` and extra environment; kills it after `limit` (then `code` is
/// None).
fn run(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_binlake"))
        .args(args)
        .env("BINLAKE_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binlake");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let begun = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        if begun.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [MYSQL_PW, REGISTRY_PW, WRONG_PW, SASL_PW] {
        assert!(
            !text.contains(secret),
            "{what} shows the secret {secret:?}:\n{text}"
        );
    }
}

#[test]
fn passwords_never_appear_in_output_or_logs_at_debug_level() {
    let mut stack = Stack::start(
        false,
        "",
        &format!("username = \"cdc\"\npassword = \"{REGISTRY_PW}\"\n"),
    );
    stack.registry_auth = Some(format!("cdc:{REGISTRY_PW}"));
    stack.db.sql(&format!(
        "SET SESSION sql_log_bin = 0; ALTER USER binlake@'%' IDENTIFIED BY '{MYSQL_PW}';
         CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 1), (2, 2);"
    ));
    let text = std::fs::read_to_string(&stack.config).expect("config");
    let text = text.replace(
        "password = \"binlake\"",
        &format!("password = \"{MYSQL_PW}\""),
    );
    assert!(text.contains(MYSQL_PW), "{text}");
    std::fs::write(&stack.config, &text).expect("config");
    let cfg = stack.config.to_str().expect("utf-8").to_string();
    let debug = [("BINLAKE_LOG", "debug")];

    // A working run, logging at debug level to its log file.
    let mut child = stack.spawn_run_env(0, &debug);
    stack.wait_converged(&["app.t"], Duration::from_secs(90));
    broker::stop(&mut child, Duration::from_secs(20));
    let log = stack.run_log(0);
    assert!(log.contains("DEBUG"), "not a debug log: {log}");
    assert_no_secret("run-0.log (debug)", &log);
    let registry_log =
        std::fs::read_to_string(stack.db.dir.join("registry.log")).expect("registry log");
    assert_no_secret("registry.log", &registry_log);

    // tail and check, at debug level.
    let start = support::cli::binlog_end(&stack.db);
    stack.db.sql("INSERT INTO app.t VALUES (3, 3)");
    let tail = run(
        &["tail", "--config", &cfg, "--limit", "1", "--from", &start],
        &debug,
        Duration::from_secs(60),
    );
    assert_eq!(tail.code, Some(0), "{}", tail.stderr);
    assert!(tail.stdout.contains("\"id\":3"), "{}", tail.stdout);
    assert_no_secret("tail", &tail.all());
    let check = run(
        &["check", "--config", &cfg],
        &debug,
        Duration::from_secs(60),
    );
    assert_no_secret("check", &check.all());
    let printed = run(
        &["config", "--config", &cfg],
        &debug,
        Duration::from_secs(60),
    );
    assert_eq!(printed.code, Some(0), "{}", printed.stderr);
    assert_no_secret("config", &printed.all());

    // Failing runs: a wrong registry password, a wrong MySQL password, an unreachable
    // server, each a clear error that shows neither the right password nor the wrong one.
    let wrong_registry = run(
        &["run", "--config", &cfg],
        &[
            ("BINLAKE_LOG", "debug"),
            ("BINLAKE_REGISTRY__PASSWORD", WRONG_PW),
        ],
        Duration::from_secs(90),
    );
    assert_eq!(wrong_registry.code, Some(2), "{}", wrong_registry.stderr);
    assert!(
        wrong_registry.stderr.contains("HTTP 401"),
        "{}",
        wrong_registry.stderr
    );
    assert_no_secret("run with a wrong registry password", &wrong_registry.all());

    let wrong_mysql = run(
        &["run", "--config", &cfg],
        &[
            ("BINLAKE_LOG", "debug"),
            ("BINLAKE_MYSQL__PASSWORD", WRONG_PW),
        ],
        Duration::from_secs(90),
    );
    assert_eq!(wrong_mysql.code, Some(2), "{}", wrong_mysql.stderr);
    assert!(
        wrong_mysql.stderr.contains("Access denied"),
        "{}",
        wrong_mysql.stderr
    );
    assert_no_secret("run with a wrong MySQL password", &wrong_mysql.all());

    let closed = support::mariadb::free_port().to_string();
    let unreachable = run(
        &["run", "--config", &cfg],
        &[
            ("BINLAKE_LOG", "debug"),
            ("BINLAKE_MYSQL__PORT", &closed),
            ("BINLAKE_MYSQL__RETRY_SECS", "2"),
        ],
        Duration::from_secs(90),
    );
    assert_eq!(unreachable.code, Some(2), "{}", unreachable.stderr);
    assert_no_secret("run against an unreachable server", &unreachable.all());

    // A mysql:// URL with a password that binlake cannot use: the message hides it.
    let url = format!("mysql://binlake:{WRONG_PW}@127.0.0.1:notaport/app");
    let rebuild = run(
        &[
            "rebuild", "--config", &cfg, "--table", "app.t", "--into", &url,
        ],
        &debug,
        Duration::from_secs(60),
    );
    assert_eq!(rebuild.code, Some(2), "{}", rebuild.stderr);
    assert!(rebuild.stderr.contains("bad port"), "{}", rebuild.stderr);
    assert_no_secret("rebuild with a bad URL", &rebuild.all());
}

/// A TCP listener standing in for every server: nothing may connect to it.
fn untouched_server() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

fn assert_untouched(l: &TcpListener) {
    match l.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("binlake connected ({peer}) although its config is unusable"),
        Err(e) => panic!("accept: {e}"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    std::fs::create_dir_all(dir).expect("dir");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.to_str().expect("utf-8").to_string()
}

#[test]
fn plain_text_secrets_get_one_warning_each_naming_the_key() {
    let dir = support::tls::CertDir::new();
    let (_l, port) = untouched_server();
    let plain = write(
        &dir.0,
        "plain.toml",
        &format!(
            "[mysql]\nport = {port}\npassword = \"{MYSQL_PW}\"\n\n[kafka]\nbrokers = \"127.0.0.1:{port}\"\n\
             [kafka.properties]\n\"sasl.username\" = \"u\"\n\"sasl.password\" = \"{SASL_PW}\"\n\n\
             [registry]\nusername = \"u\"\npassword = \"{REGISTRY_PW}\"\n"
        ),
    );
    let out = run(
        &["config", "--config", &plain],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_no_secret("config", &out.all());
    let warnings: Vec<&str> = out.stderr.lines().filter(|l| l.contains("WARN")).collect();
    for (key, fix) in [
        ("`mysql.password`", "BINLAKE_MYSQL__PASSWORD"),
        ("`registry.password`", "BINLAKE_REGISTRY__PASSWORD"),
        (
            "`kafka.properties.\"sasl.password\"`",
            "BINLAKE_KAFKA__PROPERTIES__SASL.PASSWORD",
        ),
    ] {
        let hits: Vec<&&str> = warnings.iter().filter(|w| w.contains(key)).collect();
        assert_eq!(hits.len(), 1, "one warning for {key}:\n{}", out.stderr);
        assert!(
            hits[0].contains("plain text") && hits[0].contains(fix),
            "{}",
            hits[0]
        );
        if !key.contains("kafka") {
            assert!(hits[0].contains("password_file"), "{}", hits[0]);
        }
    }
    assert!(!out.stderr.contains("sasl.username"), "{}", out.stderr);

    // The same passwords from the environment or from files: no warning.
    let pw_file = write(&dir.0, "mysql-pw", &format!("{MYSQL_PW}\n"));
    let clean = write(
        &dir.0,
        "clean.toml",
        &format!(
            "[mysql]\nport = {port}\npassword_file = \"{pw_file}\"\n\n[registry]\nusername = \"u\"\n"
        ),
    );
    let out = run(
        &["config", "--config", &clean],
        &[("BINLAKE_REGISTRY__PASSWORD", REGISTRY_PW)],
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!out.stderr.contains("WARN"), "{}", out.stderr);
    // An environment override replaces the file's plain text: no warning for that key.
    let out = run(
        &["config", "--config", &plain],
        &[("BINLAKE_MYSQL__PASSWORD", WRONG_PW)],
        Duration::from_secs(30),
    );
    assert!(!out.stderr.contains("`mysql.password`"), "{}", out.stderr);
    assert!(out.stderr.contains("`registry.password`"), "{}", out.stderr);
}

#[test]
fn an_unreadable_password_file_stops_the_command_before_it_connects() {
    let dir = support::tls::CertDir::new();
    let (listener, port) = untouched_server();
    let missing = dir.0.join("no-such-password");
    let a_dir = dir.0.join("a-directory");
    std::fs::create_dir_all(&a_dir).expect("dir");
    for (key, path) in [
        ("mysql.password_file", &missing),
        ("mysql.password_file", &a_dir),
        ("registry.password_file", &missing),
        ("registry.password_file", &a_dir),
    ] {
        let path = path.to_str().expect("utf-8");
        let (mysql_pw, registry_pw) = if key.starts_with("mysql") {
            (format!("password_file = \"{path}\""), String::new())
        } else {
            (
                String::new(),
                format!("username = \"u\"\npassword_file = \"{path}\""),
            )
        };
        let offsets = dir.0.join("offsets.json");
        let cfg = write(
            &dir.0,
            "c.toml",
            &format!(
                "[mysql]\nport = {port}\n{mysql_pw}\n\n[kafka]\nbrokers = \"127.0.0.1:{port}\"\n\
                 offsets = \"file\"\noffsets_file = \"{}\"\n\n\
                 [registry]\nurl = \"http://127.0.0.1:{port}\"\n{registry_pw}\n",
                offsets.display()
            ),
        );
        for cmd in ["run", "tail", "check", "registry"] {
            let out = run(&[cmd, "--config", &cfg], &[], Duration::from_secs(30));
            assert_eq!(
                out.code,
                Some(2),
                "{cmd} with {key} = {path}: {}",
                out.stderr
            );
            let errors: Vec<&str> = out
                .stderr
                .lines()
                .filter(|l| l.starts_with("error:"))
                .collect();
            assert_eq!(errors.len(), 1, "{}", out.stderr);
            assert!(
                errors[0].contains(key) && errors[0].contains(path),
                "{cmd}: {}",
                errors[0]
            );
            assert_untouched(&listener);
            assert!(!offsets.exists(), "{cmd} wrote its offsets file");
        }
    }
}
