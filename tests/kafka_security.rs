//! binlake against a broker that requires TLS and SASL SCRAM (Apache Kafka with a PEM keystore
//! and SCRAM users), with the security settings passed through `[kafka.properties]`:
//! `binlake registry`, `run` and `sink` work through SASL_SSL and keep the password out of
//! their logs; a wrong password, a missing or wrong CA, and a certificate for another host are
//! each one clear error that names the problem and the keys that fix it, and commit nothing.

mod support;

use std::time::Duration;

use support::broker::{Broker, Security};
use support::certs::make_certs_for;
use support::stack::Stack;
use support::workload::{sigterm, wait_exit};

/// The SCRAM user's password: distinctive, so a log that contains it is found.
const PASSWORD: &str = "pw-5b17c0de-never-logged";
const USER: &str = "cdc";

/// A TLS + SCRAM-SHA-512 broker whose certificate is for 127.0.0.1 (files in `dir`), and the
/// client properties that work with it.
fn secure_broker(dir: &std::path::Path) -> (Broker, Vec<(&'static str, String)>) {
    let certs = make_certs_for(dir, "IP:127.0.0.1");
    let broker = Broker::start_secure(Security {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        users: vec![(USER.into(), PASSWORD.into(), "scram512".into())],
    });
    let props = vec![
        ("security.protocol", "SASL_SSL".to_string()),
        ("sasl.mechanisms", "SCRAM-SHA-512".to_string()),
        ("sasl.username", USER.to_string()),
        ("sasl.password", PASSWORD.to_string()),
        (
            "ssl.ca.location",
            certs.ca.to_str().expect("utf-8 path").to_string(),
        ),
    ];
    (broker, props)
}

fn start_stack(dir: &std::path::Path) -> Stack {
    let (broker, props) = secure_broker(dir);
    let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Stack::start_on(broker, &props, "", "")
}

/// The committed position as `binlake status --json` reports it with the working config.
fn committed(stack: &Stack) -> serde_json::Value {
    let out = support::cli::binlake(
        &[
            "status",
            "--json",
            "--config",
            stack.config.to_str().expect("path"),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let status: serde_json::Value = serde_json::from_str(&out.stdout).expect("status JSON");
    status["committed"].clone()
}

/// `binlake run` with the stack's config changed by `edit`; it must stop by itself, within
/// the config's message_timeout_secs (120), with exit code 2. Returns its stderr.
fn failing_run(stack: &Stack, name: &str, edit: impl Fn(&str) -> String) -> String {
    let text = std::fs::read_to_string(&stack.config).expect("config");
    let path = stack.db.dir.join(format!("{name}.toml"));
    std::fs::write(&path, edit(&text)).expect("config");
    let run = support::cli::binlake(
        &["run", "--config", path.to_str().expect("path")],
        Duration::from_secs(120),
    );
    assert_eq!(run.code, Some(2), "{name}: {}", run.stderr);
    assert!(
        !run.stderr.contains(PASSWORD),
        "{name}: the password is printed:\n{}",
        run.stderr
    );
    run.stderr
}

#[test]
fn sasl_ssl_scram_carries_rows_through_run_and_sink_and_no_log_holds_the_password() {
    let dir = support::mariadb::unique_dir();
    let stack = start_stack(&dir.join("certs"));
    assert!(
        std::fs::read_to_string(&stack.config)
            .expect("config")
            .contains("\"security.protocol\" = \"SASL_SSL\""),
        "the config passes the security properties"
    );
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO app.t VALUES (1, 'one'), (2, 'two'), (3, 'three');",
    );
    // librdkafka's security debugging on, and binlake's own debug logs: whatever they print,
    // the password must not be in it.
    let text = std::fs::read_to_string(&stack.config).expect("config");
    std::fs::write(
        &stack.config,
        text.replace(
            "[kafka.properties]\n",
            "[kafka.properties]\n\"debug\" = \"security,broker\"\n",
        ),
    )
    .expect("config");
    let mut run = stack.spawn_run_env(0, &[("BINLAKE_LOG", "debug")]);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    stack
        .db
        .sql("INSERT INTO app.t VALUES (4, 'four'); UPDATE app.t SET v = 'uno' WHERE id = 1; DELETE FROM app.t WHERE id = 2;");
    stack.wait_converged(&["app.t"], Duration::from_secs(120));

    let lake = stack.lake_dir("lake");
    let mut sink = stack.spawn_sink(
        0,
        &format!(
            "[sink]\nroot = \"file://{}\"\nformat = \"parquet\"\ngroup_id = \"lake\"\n\
             rotate_interval = \"2s\"\n",
            lake.display()
        ),
    );
    stack.wait_converged_with(&["app.t"], Duration::from_secs(120), "lake", || {
        stack.read_lake(&lake, "parquet")
    });
    assert_eq!(sigterm(&mut sink), Some(0), "{}", stack.sink_log(0));
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(0));

    let run_log = stack.run_log(0);
    // The debug setting reached librdkafka, and through it the SASL exchange was logged.
    assert!(
        run_log.contains("SASL") && run_log.contains("flushed and committed"),
        "{run_log}"
    );
    let registry_log =
        std::fs::read_to_string(stack.db.dir.join("registry.log")).expect("registry log");
    for (name, log) in [
        ("run", &run_log),
        ("sink", &stack.sink_log(0)),
        ("registry", &registry_log),
    ] {
        assert!(
            !log.contains(PASSWORD),
            "the {name} log holds the SASL password"
        );
    }
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_wrong_password_or_an_unverifiable_certificate_is_one_clear_error_and_commits_nothing() {
    let dir = support::mariadb::unique_dir();
    let stack = start_stack(&dir.join("certs"));
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 1), (2, 2);",
    );
    // A first run commits a position.
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(0));
    let before = committed(&stack);
    assert!(before.is_string(), "a position was committed: {before}");
    stack.db.sql("INSERT INTO app.t VALUES (3, 3)");

    // (b) A wrong SASL password: the user and the keys are named, the password is not.
    let err = failing_run(&stack, "wrong-password", |t| {
        t.replace(PASSWORD, "not-the-password")
    });
    assert!(
        err.contains("Kafka authentication failed for user \"cdc\"")
            && err.contains("sasl.password")
            && err.contains("[kafka.properties]")
            && !err.contains("not-the-password"),
        "{err}"
    );

    // (c) No CA: the system's CAs do not know the test CA.
    let ca_line = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("\"ssl.ca.location\""))
            .expect("ssl.ca.location in the config")
            .to_string()
    };
    let err = failing_run(&stack, "no-ca", |t| t.replace(&ca_line(t), ""));
    assert!(
        err.contains("certificate verification failed") && err.contains("ssl.ca.location"),
        "{err}"
    );
    // A CA that did not sign the broker's certificate.
    let other = make_certs_for(&dir.join("other-ca"), "IP:127.0.0.1");
    let err = failing_run(&stack, "wrong-ca", |t| {
        t.replace(
            &ca_line(t),
            &format!(
                "\"ssl.ca.location\" = {:?}",
                other.ca.to_str().expect("path")
            ),
        )
    });
    assert!(
        err.contains("certificate verification failed") && err.contains("ssl.ca.location"),
        "{err}"
    );

    // Nothing of the failed runs reached Kafka: the position and the topic are as before.
    assert_eq!(committed(&stack), before);
    let seen = stack.read_topics();
    let ids: Vec<&str> = seen["tables"]["app.t"]
        .as_array()
        .expect("app.t in the topics")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "only the first run's rows: {seen}");
    assert!(!ids.contains(&"3"), "{seen}");

    // With the right settings the row that waited arrives.
    let mut run = stack.spawn_run(1);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(1));
    assert_ne!(committed(&stack), before);
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broker_certificate_for_another_host_is_refused_and_named() {
    // TLS only (no SASL): the certificate is for 127.0.0.2, the broker is reached at
    // 127.0.0.1, and librdkafka checks the host name by default.
    let dir = support::mariadb::unique_dir();
    let certs = make_certs_for(&dir, "IP:127.0.0.2");
    let mut broker = Broker::start_secure(Security {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        users: vec![],
    });
    let config = dir.join("binlake.toml");
    std::fs::write(
        &config,
        format!(
            "[mysql]\nport = 1\n[kafka]\nbrokers = \"{}\"\nmessage_timeout_secs = 60\n\
             [kafka.properties]\n\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = {:?}\n",
            broker.bootstrap(),
            certs.ca.to_str().expect("path")
        ),
    )
    .expect("config");
    // `binlake status` reads the committed position from Kafka before it asks MySQL.
    let out = support::cli::binlake(
        &["status", "--config", config.to_str().expect("path")],
        Duration::from_secs(60),
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("certificate verification failed")
            && out.stderr.contains("ssl.ca.location")
            && out.stderr.contains("names the host"),
        "{}",
        out.stderr
    );
    broker.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broker_certificate_that_stops_verifying_under_a_running_run_stops_it_without_loss() {
    let dir = support::mariadb::unique_dir();
    let certs = dir.join("certs");
    let mut stack = start_stack(&certs);
    // A wait far above the time the test allows run to stop in.
    let text = std::fs::read_to_string(&stack.config).expect("config");
    std::fs::write(
        &stack.config,
        text.replace("message_timeout_secs = 120", "message_timeout_secs = 900"),
    )
    .expect("config");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 1);",
    );
    let mut run = stack.spawn_run(0);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    // The broker comes back with a certificate from a CA the config does not name: the
    // producer's reconnections fail verification, and run stops instead of retrying until
    // message_timeout_secs (900 s here).
    let other = make_certs_for(&dir.join("other-ca"), "IP:127.0.0.1");
    stack
        .broker
        .restart_with_tls(Some((other.cert.clone(), other.key.clone())));
    stack.db.sql("INSERT INTO app.t VALUES (2, 2)");
    let code = wait_exit(&mut run, Duration::from_secs(300));
    let log = stack.run_log(0);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("certificate verification failed")
            && log.contains("ssl.ca.location")
            && log.contains("the position was not committed past it"),
        "{log}"
    );
    assert!(!log.contains(PASSWORD), "the run log holds the password");
    // The broker's own certificate again: a new run writes the row that waited.
    stack
        .broker
        .restart_with_tls(Some((certs.join("server.pem"), certs.join("server.key"))));
    let mut run = stack.spawn_run(1);
    stack.wait_converged(&["app.t"], Duration::from_secs(120));
    assert_eq!(sigterm(&mut run), Some(0), "{}", stack.run_log(1));
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
}
