//! TLS to the source server, against a private MariaDB that accepts TLS connections only
//! (`--require-secure-transport=ON`, and the binlake account `REQUIRE SSL`), with a CA and
//! certificates made by the test: `[mysql.tls]` modes, and one clear error for each way the
//! setup can be wrong, from `tail` and from `check`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cli::{binlake, binlog_end, config, Run};
use support::mariadb::MariaDb;
use support::tls::{Ca, CertDir, ServerCert};

const LIMIT: Duration = Duration::from_secs(60);

/// A MariaDB serving `cert` that refuses every connection without TLS (the socket, which
/// the test's own SQL uses, excepted).
fn tls_only_server(ca: &Ca, cert: &ServerCert) -> MariaDb {
    let arg = |k: &str, p: &Path| format!("--{k}={}", p.display());
    let db = MariaDb::start_with(&[
        &arg("ssl-ca", &ca.cert),
        &arg("ssl-cert", &cert.cert),
        &arg("ssl-key", &cert.key),
        "--require-secure-transport=ON",
    ]);
    db.sql(
        "SET SESSION sql_log_bin = 0; ALTER USER binlake@'%' REQUIRE SSL;
         CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20));",
    );
    let on = db.query_rows("SELECT @@require_secure_transport, @@have_ssl");
    assert_eq!(on[0], ["1", "YES"], "the server is not TLS-only");
    db
}

fn tls_section(mode: &str, ca: &Path) -> String {
    format!(
        "[mysql.tls]\nmode = \"{mode}\"\nca_file = \"{}\"\n",
        ca.display()
    )
}

/// `tail` from before one insert, `--limit 1`: the row it printed.
fn tail_one_insert(db: &MariaDb, extra: &str, id: u32) -> Value {
    let start = binlog_end(db);
    db.sql(&format!("INSERT INTO app.t VALUES ({id}, 'row {id}')"));
    let cfg = config(db, "binlake", "binlake", extra);
    let run = binlake(
        &[
            "tail",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--from",
            &start,
            "--limit",
            "1",
        ],
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "tail failed: {}", run.stderr);
    let lines = run.lines();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    lines[0]["after"].clone()
}

/// `tail` and `check` both fail, each with exactly one error that contains every one of
/// `needles`. Returns tail's error line.
fn fails_clearly(db: &MariaDb, extra: &str, needles: &[&str]) -> String {
    let cfg = config(db, "binlake", "binlake", extra);
    let cfg = cfg.to_str().expect("utf-8");
    let tail = binlake(&["tail", "--config", cfg, "--from", "end"], LIMIT);
    assert_eq!(tail.code, Some(2), "tail: {}", tail.stderr);
    let errors: Vec<&str> = tail
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", tail.stderr);
    for n in needles {
        assert!(
            errors[0].contains(n),
            "tail's error lacks {n:?}: {}",
            errors[0]
        );
    }
    assert!(!tail.stderr.contains("panicked"), "{}", tail.stderr);

    let check: Run = binlake(&["check", "--config", cfg], LIMIT);
    assert_eq!(
        check.code,
        Some(1),
        "check: {}{}",
        check.stdout,
        check.stderr
    );
    let fails: Vec<&str> = check
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    assert_eq!(fails.len(), 1, "{}", check.stdout);
    assert!(fails[0].starts_with("FAIL  connect:"), "{}", check.stdout);
    for n in needles {
        assert!(
            fails[0].contains(n),
            "check's finding lacks {n:?}: {}",
            check.stdout
        );
    }
    errors[0].to_string()
}

#[test]
fn verify_identity_with_the_ca_streams_the_binlog_over_tls() {
    let certs = CertDir::new();
    let ca = Ca::new(&certs.0, "ca");
    let cert = ca.server("server", "IP:127.0.0.1,DNS:localhost");
    let db = tls_only_server(&ca, &cert);
    let extra = tls_section("verify-identity", &ca.cert);

    // Both connections of a tail, the queries and the binlog stream, are TLS: the server
    // refuses any other. Follow from the end, and insert once the stream is open.
    let cfg = config(&db, "binlake", "binlake", &extra);
    let mut child = support::cli::spawn(
        &[
            "tail",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--from",
            "end",
        ],
        "warn",
    );
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().expect("stdout");
    let mut child = Kill(child);
    let begun = Instant::now();
    loop {
        let dumps = db.query_rows(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE USER = 'binlake' AND COMMAND = 'Binlog Dump'",
        );
        if dumps[0][0] == "1" {
            break;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            let mut err = String::new();
            use std::io::Read;
            let _ = child
                .0
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut err);
            panic!("tail exited ({status}) before streaming: {err}");
        }
        assert!(
            begun.elapsed() < LIMIT,
            "tail opened no binlog stream within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    db.sql("INSERT INTO app.t VALUES (1, 'over tls')");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("the insert was not printed within {LIMIT:?}"));
    let v: Value = serde_json::from_str(&line).expect("JSON line");
    assert_eq!(v["after"], json!({"id": 1, "v": "over tls"}));
    drop(child);

    // `check` connects the same way and says so.
    let check = binlake(&["check", "--config", cfg.to_str().expect("utf-8")], LIMIT);
    assert!(
        check.stdout.contains("ok    connected to ") && !check.stdout.contains("FAIL  connect"),
        "{}",
        check.stdout
    );
}

#[test]
fn tls_disabled_or_a_wrong_ca_fail_with_one_clear_error() {
    let certs = CertDir::new();
    let ca = Ca::new(&certs.0, "ca");
    let cert = ca.server("server", "IP:127.0.0.1,DNS:localhost");
    let other_ca = Ca::new(&certs.0, "other-ca");
    let db = tls_only_server(&ca, &cert);

    // No TLS: the cause (the server requires it) and the fix (the two settings).
    fails_clearly(
        &db,
        "",
        &[
            "connecting to MySQL at 127.0.0.1:",
            "the server requires TLS",
            "[mysql.tls] mode",
            "ca_file",
        ],
    );
    // A CA that did not sign the server's certificate, in both verifying modes.
    for mode in ["verify-identity", "verify-ca"] {
        let e = fails_clearly(
            &db,
            &tls_section(mode, &other_ca.cert),
            &[
                "TLS certificate verification failed",
                "mysql.tls.ca_file",
                other_ca.cert.to_str().expect("utf-8"),
            ],
        );
        assert!(!e.contains("host-name"), "{e}");
    }
    // And the right one works.
    let row = tail_one_insert(&db, &tls_section("verify-identity", &ca.cert), 7);
    assert_eq!(row, json!({"id": 7, "v": "row 7"}));
}

#[test]
fn a_certificate_for_another_name_fails_verify_identity_and_passes_verify_ca() {
    let certs = CertDir::new();
    let ca = Ca::new(&certs.0, "ca");
    let cert = ca.server("server", "DNS:other.example");
    let db = tls_only_server(&ca, &cert);

    let e = fails_clearly(
        &db,
        &tls_section("verify-identity", &ca.cert),
        &[
            "TLS host-name verification failed",
            "\"127.0.0.1\"",
            "other.example",
            "verify-ca",
        ],
    );
    assert!(!e.contains("certificate verification failed"), "{e}");

    // verify-ca checks the chain only: the same certificate is fine, for the queries and
    // for the binlog stream.
    let row = tail_one_insert(&db, &tls_section("verify-ca", &ca.cert), 1);
    assert_eq!(row, json!({"id": 1, "v": "row 1"}));
    let cfg = config(
        &db,
        "binlake",
        "binlake",
        &tls_section("verify-ca", &ca.cert),
    );
    let check = binlake(&["check", "--config", cfg.to_str().expect("utf-8")], LIMIT);
    assert!(
        check.stdout.contains("ok    connected to "),
        "{}",
        check.stdout
    );
}
