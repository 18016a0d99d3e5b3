//! `binlake registry` over HTTPS (`[registry] tls_cert_file` and `tls_key_file`) with basic
//! auth, against a real broker: Confluent's Python client and binlake's own client (through
//! `binlake run`) with the test's CA; plain HTTP and missing credentials are refused; and
//! certificate files that cannot be used are one config error naming the key.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::broker::{self, Broker};
use support::stack::Stack;
use support::tls::{Ca, CertDir, ServerCert};

const USER: &str = "alice";
const PASSWORD: &str = "pw-Zq8-registry";

/// A running `binlake registry`, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Registry {
    /// Starts `binlake registry` over HTTPS with basic auth on `brokers`; returns once it
    /// accepts TCP connections.
    fn start(dir: &Path, brokers: &str, cert: &ServerCert) -> Registry {
        let port = broker::free_port();
        let password_file = dir.join("registry-password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password file");
        let config = dir.join(format!("registry-{port}.toml"));
        std::fs::write(
            &config,
            format!(
                "[kafka]\nbrokers = \"{brokers}\"\n\n[registry]\nurl = \"https://127.0.0.1:{port}\"\n\
                 username = \"{USER}\"\npassword_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                password_file.display(),
                cert.cert.display(),
                cert.key.display()
            ),
        )
        .expect("config");
        let log = dir.join(format!("registry-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_binlake"))
            .args(["registry", "--config"])
            .arg(&config)
            .env("BINLAKE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn binlake registry");
        let mut r = Registry { child, port, log };
        let begun = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("binlake registry exited ({status}): {}", r.log_text());
            }
            assert!(
                begun.elapsed() < Duration::from_secs(60),
                "binlake registry did not listen within 60 s: {}",
                r.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        broker::stop(&mut self.child, Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!("--- registry log:\n{}", self.log_text());
        }
    }
}

fn certs(dir: &Path) -> (Ca, ServerCert) {
    let ca = Ca::new(dir, "ca");
    let cert = ca.server("registry", "IP:127.0.0.1,DNS:localhost");
    (ca, cert)
}

#[test]
fn confluents_client_registers_over_https_and_plain_http_or_no_credentials_are_refused() {
    let dir = CertDir::new();
    let (ca, cert) = certs(&dir.0);
    let broker = Broker::start();
    let reg = Registry::start(&dir.0, &broker.bootstrap(), &cert);
    let url = format!("https://127.0.0.1:{}", reg.port);

    // Confluent's Python client with the CA and the credentials: register, then fetch.
    let script = r#"
import json, sys
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
url, ca, auth = sys.argv[1:4]
schema = json.dumps({"type": "record", "name": "T", "fields": [{"name": "id", "type": "long"}]})
c = SchemaRegistryClient({"url": url, "ssl.ca.location": ca, "basic.auth.user.info": auth})
sid = c.register_schema("tls-value", Schema(schema, "AVRO"))
fresh = SchemaRegistryClient({"url": url, "ssl.ca.location": ca, "basic.auth.user.info": auth})
got = fresh.get_schema(sid)
assert json.loads(got.schema_str) == json.loads(schema), got.schema_str
assert fresh.get_latest_version("tls-value").schema_id == sid
print("registered", sid)
"#;
    let out = Command::new("python3")
        .args(["-c", script, &url])
        .arg(&ca.cert)
        .arg(format!("{USER}:{PASSWORD}"))
        .output()
        .expect("run python3 (pip install confluent-kafka)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("registered 1"),
        "Python client over https failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let pem = std::fs::read(&ca.cert).expect("ca");
        let https = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
            .build()
            .expect("client");
        // Over TLS without credentials: 401, with them: the schema registered above.
        let r = https
            .get(format!("{url}/schemas/ids/1"))
            .send()
            .await
            .expect("https request");
        assert_eq!(r.status().as_u16(), 401);
        let r = https
            .get(format!("{url}/schemas/ids/1"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .expect("https request");
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.expect("JSON");
        assert!(body["schema"].as_str().is_some(), "{body}");
        // Plain HTTP to the same port: no answer (the TLS handshake fails), with or without
        // credentials.
        let plain = reqwest::Client::new();
        let r = plain
            .get(format!("http://127.0.0.1:{}/schemas/ids/1", reg.port))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await;
        assert!(
            r.is_err(),
            "plain http answered: {:?}",
            r.map(|r| r.status())
        );
        // A client that does not know the CA is refused too.
        let r = reqwest::Client::new()
            .get(format!("{url}/"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await;
        assert!(r.is_err(), "an unknown CA was accepted");
    });
    // It still serves after those failed handshakes.
    rt.block_on(async {
        let pem = std::fs::read(&ca.cert).expect("ca");
        let https = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
            .build()
            .expect("client");
        let r = https
            .get(format!("{url}/subjects"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .expect("https request");
        assert_eq!(r.json::<Value>().await.expect("JSON"), json!(["tls-value"]));
    });
}

#[test]
fn binlake_run_uses_an_https_registry_with_its_ca_and_credentials() {
    let stack = Stack::start(false, "", "");
    stack.db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         INSERT INTO app.t VALUES (1, 1), (2, 2);",
    );
    let dir = CertDir::new();
    let (ca, cert) = certs(&dir.0);
    // A second registry on the stack's broker and `_schemas`, over HTTPS: binlake run
    // registers through it; the stack's reader resolves the ids through the plain one.
    let reg = Registry::start(&dir.0, &stack.broker.bootstrap(), &cert);
    let text = std::fs::read_to_string(&stack.config).expect("config");
    let plain = format!("[registry]\nurl = \"{}\"\n", stack.registry_url());
    assert!(text.contains(&plain), "{text}");
    std::fs::write(
        &stack.config,
        text.replace(
            &plain,
            &format!(
                "[registry]\nurl = \"https://127.0.0.1:{}\"\nca_file = \"{}\"\nusername = \"{USER}\"\n",
                reg.port,
                ca.cert.display()
            ),
        ),
    )
    .expect("config");
    let mut run = stack.spawn_run_env(0, &[("BINLAKE_REGISTRY__PASSWORD", PASSWORD)]);
    // The plain registry answers from what it has read of `_schemas` so far: wait until it
    // has the subject run registered over https.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let begun = Instant::now();
    loop {
        let subjects: Value = rt.block_on(async {
            match reqwest::get(format!("{}/subjects", stack.registry_url())).await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            }
        });
        if subjects.to_string().contains("app.t-value") {
            break;
        }
        if let Ok(Some(status)) = run.try_wait() {
            panic!("binlake run exited ({status}):\n{}", stack.run_log(0));
        }
        assert!(
            begun.elapsed() < Duration::from_secs(90),
            "no schema registered through the https registry within 90 s:\n{}\n{}",
            stack.run_log(0),
            reg.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stack.wait_converged(&["app.t"], Duration::from_secs(90));
    stack.db.sql("INSERT INTO app.t VALUES (3, 3)");
    stack.wait_converged(&["app.t"], Duration::from_secs(90));
    broker::stop(&mut run, Duration::from_secs(20));
    let log = stack.run_log(0);
    assert!(!log.contains(PASSWORD), "{log}");
}

#[test]
fn tls_files_that_cannot_be_used_are_one_error_naming_the_key() {
    let dir = CertDir::new();
    let (_ca, cert) = certs(&dir.0);
    let garbage = dir.0.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let missing = dir.0.join("missing.pem");
    let other = Ca::new(&dir.0, "other-ca").server("other", "DNS:localhost");
    // No broker at all: these are found before anything is touched.
    let port = broker::free_port();
    for (cert_file, key_file, key, detail) in [
        (&missing, &cert.key, "registry.tls_cert_file", "cannot read"),
        (
            &garbage,
            &cert.key,
            "registry.tls_cert_file",
            "no PEM certificate",
        ),
        (&cert.cert, &missing, "registry.tls_key_file", "cannot read"),
        (
            &cert.cert,
            &garbage,
            "registry.tls_key_file",
            "not a PEM private key",
        ),
        (
            &cert.cert,
            &other.key,
            "registry.tls_key_file",
            "does not go with",
        ),
    ] {
        let config = dir.0.join("bad.toml");
        std::fs::write(
            &config,
            format!(
                "[kafka]\nbrokers = \"127.0.0.1:{port}\"\n[registry]\nurl = \"https://127.0.0.1:{port}\"\n\
                 tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                cert_file.display(),
                key_file.display()
            ),
        )
        .expect("config");
        let run = support::cli::binlake(
            &["registry", "--config", config.to_str().expect("utf-8")],
            Duration::from_secs(30),
        );
        assert_eq!(run.code, Some(2), "{key} {detail}: {}", run.stderr);
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{}", run.stderr);
        let path = if detail == "does not go with" {
            key_file
        } else if key.ends_with("cert_file") {
            cert_file
        } else {
            key_file
        };
        for needle in [key, detail, path.to_str().expect("utf-8")] {
            assert!(
                errors[0].contains(needle),
                "lacks {needle:?}: {}",
                errors[0]
            );
        }
    }
    // Only one of the two keys: a config error naming the missing one.
    let config = dir.0.join("half.toml");
    std::fs::write(
        &config,
        format!(
            "[registry]\nurl = \"https://127.0.0.1:{port}\"\ntls_cert_file = \"{}\"\n",
            cert.cert.display()
        ),
    )
    .expect("config");
    let run = support::cli::binlake(
        &["registry", "--config", config.to_str().expect("utf-8")],
        Duration::from_secs(30),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("registry.tls_key_file"),
        "{}",
        run.stderr
    );
}
