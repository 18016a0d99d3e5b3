//! `binlake registry` against a real broker (Apache Kafka): Confluent's Python client end to end,
//! two processes agreeing on ids, state read back from `_schemas` after a restart (in
//! Confluent's record format), and basic auth.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

use support::broker::{self, Broker};

/// A running `binlake registry` process; stopped on drop.
struct Registry {
    port: u16,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "binlake-registry-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).expect("create temp dir");
    TempDir(d)
}

impl Registry {
    /// Starts a registry on `broker` (extra TOML lines go into `[registry]`) and waits until
    /// `GET /` answers.
    fn start(broker: &Broker, registry_extra: &str) -> Registry {
        let dir = temp_dir();
        let port = broker::free_port();
        let config = dir.0.join("registry.toml");
        std::fs::write(
            &config,
            format!(
                "[kafka]\nbrokers = \"{}\"\n\n[registry]\nurl = \"http://127.0.0.1:{port}\"\n{registry_extra}\n",
                broker.bootstrap()
            ),
        )
        .expect("write config");
        let log = dir.0.join("registry.log");
        let child = Command::new(env!("CARGO_BIN_EXE_binlake"))
            .args(["registry", "--config"])
            .arg(&config)
            .env("BINLAKE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create log"))
            .spawn()
            .expect("spawn binlake registry");
        let mut r = Registry {
            port,
            child,
            log,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("binlake registry exited ({status}):\n{}", r.log_text());
            }
            let answered = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if answered {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "binlake registry did not listen within 30 s:\n{}",
                r.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the process (SIGTERM) and checks it exited by itself, cleanly.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "binlake registry ignored SIGTERM for 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "exit {status}:\n{}", self.log_text());
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        broker::stop(&mut self.child, Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!(
                "--- registry on port {} log:\n{}",
                self.port,
                self.log_text()
            );
        }
    }
}

/// A tiny HTTP client: (status, JSON body).
struct Http {
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        Http {
            client: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, url);
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    async fn get(&self, url: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, url, None).await
    }

    async fn post(&self, url: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, url, Some(body)).await
    }
}

fn record_schema(name: &str, fields: &[(&str, &str)]) -> String {
    let fields: Vec<Value> = fields
        .iter()
        .map(|(n, t)| json!({"name": n, "type": t}))
        .collect();
    json!({"type": "record", "name": name, "fields": fields}).to_string()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn confluents_python_client_works_end_to_end() {
    let check = Command::new("python3")
        .args(["-c", "import confluent_kafka, fastavro"])
        .output()
        .expect("run python3");
    assert!(
        check.status.success(),
        "Confluent's Python client is required: pip install 'confluent-kafka[avro]' fastavro\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let broker = Broker::start();
    let reg = Registry::start(&broker, "");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/registry_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(reg.url())
        .output()
        .expect("run registry_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "registry_client.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    reg.stop();
}

#[test]
fn two_registries_agree_on_ids_under_concurrent_registration() {
    let broker = Broker::start();
    let a = Registry::start(&broker, "");
    let b = Registry::start(&broker, "");
    let urls = [a.url(), b.url()];
    rt().block_on(async {
        // 20 subjects per process, each with its own schema, registered by 4 concurrent
        // clients per process; plus one schema both register under their own subject.
        let mut tasks = Vec::new();
        for (p, url) in urls.iter().enumerate() {
            for lane in 0..4 {
                let url = url.clone();
                tasks.push(tokio::spawn(async move {
                    let http = Http::new();
                    let mut got = Vec::new();
                    for i in (lane..20).step_by(4) {
                        let subject = format!("p{p}-s{i}");
                        let schema = record_schema(&format!("R{p}x{i}"), &[("f", "int")]);
                        let (st, body) = http
                            .post(
                                &format!("{url}/subjects/{subject}/versions"),
                                json!({"schema": schema}),
                            )
                            .await;
                        assert_eq!(st, 200, "{subject}: {body}");
                        got.push((subject, schema, body["id"].as_u64().expect("id")));
                    }
                    let shared = record_schema("Shared", &[("g", "long")]);
                    let subject = format!("shared-{p}");
                    let (st, body) = http
                        .post(
                            &format!("{url}/subjects/{subject}/versions"),
                            json!({"schema": shared}),
                        )
                        .await;
                    assert_eq!(st, 200, "{subject}: {body}");
                    if lane == 0 {
                        got.push((subject, shared, body["id"].as_u64().expect("id")));
                    }
                    got
                }));
            }
        }
        let mut registered: Vec<(String, String, u64)> = Vec::new();
        for t in tasks {
            registered.extend(t.await.expect("task"));
        }
        assert_eq!(registered.len(), 42);

        // No id was given to two different schemas; the shared schema has one id.
        let mut by_id: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        for (_, schema, id) in &registered {
            by_id.entry(*id).or_default().insert(schema.clone());
        }
        for (id, schemas) in &by_id {
            assert_eq!(schemas.len(), 1, "id {id} was given to {schemas:?}");
        }
        assert_eq!(by_id.len(), 41, "40 distinct schemas + the shared one");

        // Both processes end with the same subjects, versions and ids (the second one may
        // still be reading the last records: wait a little).
        let http = Http::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let views = loop {
            let mut views = Vec::new();
            for url in &urls {
                let (_, subjects) = http.get(&format!("{url}/subjects")).await;
                let mut view = BTreeMap::new();
                for s in subjects.as_array().expect("subject list") {
                    let s = s.as_str().expect("subject");
                    let (_, versions) = http.get(&format!("{url}/subjects/{s}/versions")).await;
                    let (_, latest) = http.get(&format!("{url}/subjects/{s}/versions/1")).await;
                    view.insert(s.to_string(), (versions, latest));
                }
                views.push(view);
            }
            if views[0] == views[1] && views[0].len() == 42 || Instant::now() > deadline {
                break views;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(views[0].len(), 42, "{:?}", views[0].keys());
        assert_eq!(views[0], views[1], "the two registries disagree");
        for (subject, schema, id) in &registered {
            let (versions, v1) = &views[0][subject];
            assert_eq!(versions, &json!([1]), "{subject}");
            assert_eq!(v1["id"].as_u64(), Some(*id), "{subject}: {v1}");
            assert_eq!(v1["schema"].as_str(), Some(schema.as_str()), "{subject}");
            for url in &urls {
                let (st, by_id) = http.get(&format!("{url}/schemas/ids/{id}")).await;
                assert_eq!(st, 200);
                assert_eq!(by_id["schema"].as_str(), Some(schema.as_str()));
            }
        }
    });
    let conflicts = a
        .log_text()
        .matches("claimed this version or id first")
        .count()
        + b.log_text()
            .matches("claimed this version or id first")
            .count();
    eprintln!("registrations retried after losing a conflict: {conflicts}");
    a.stop();
    b.stop();
}

/// Every record of `topic`, partition 0, as (key, value) JSON (value None: tombstone).
fn read_topic(bootstrap: &str, topic: &str) -> Vec<(Value, Option<Value>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "registry-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = md.topics()[0].partitions().len();
    assert_eq!(partitions, 1, "{topic} must have exactly one partition");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut next = 0;
    while next < high {
        assert!(
            Instant::now() < deadline,
            "could not read {topic} up to {high}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let key = serde_json::from_slice(m.key().expect("key")).expect("JSON key");
                let value = m
                    .payload()
                    .map(|p| serde_json::from_slice(p).expect("JSON value"));
                out.push((key, value));
                next = m.offset() + 1;
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

#[test]
fn a_restarted_registry_reads_everything_back_from_confluent_format_records() {
    let broker = Broker::start();
    let reg = Registry::start(&broker, "");
    let url = reg.url();
    let s1 = record_schema("A", &[("x", "int")]);
    let s1b = json!({"type": "record", "name": "A", "fields": [
        {"name": "x", "type": "int"},
        {"name": "y", "type": ["null", "string"], "default": null}]})
    .to_string();
    let s2 = record_schema("B", &[("z", "string")]);
    let (ids, before) = rt().block_on(async {
        let http = Http::new();
        let reg_schema = |subject: &'static str, schema: String| {
            let http = &http;
            let url = &url;
            async move {
                let (st, body) = http
                    .post(
                        &format!("{url}/subjects/{subject}/versions"),
                        json!({"schema": schema}),
                    )
                    .await;
                assert_eq!(st, 200, "{body}");
                body["id"].as_u64().expect("id")
            }
        };
        let id1 = reg_schema("a-value", s1.clone()).await;
        let id2 = reg_schema("a-value", s1b.clone()).await;
        let id3 = reg_schema("b-value", s2.clone()).await;
        let (st, _) = http
            .call(
                reqwest::Method::PUT,
                &format!("{url}/config"),
                Some(json!({"compatibility": "FULL"})),
            )
            .await;
        assert_eq!(st, 200);
        let (st, _) = http
            .call(
                reqwest::Method::PUT,
                &format!("{url}/config/a-value"),
                Some(json!({"compatibility": "NONE"})),
            )
            .await;
        assert_eq!(st, 200);
        let (st, body) = http
            .call(
                reqwest::Method::DELETE,
                &format!("{url}/subjects/b-value"),
                None,
            )
            .await;
        assert_eq!((st, body), (200, json!([1])));
        let (_, subjects) = http.get(&format!("{url}/subjects")).await;
        assert_eq!(subjects, json!(["a-value"]));
        ((id1, id2, id3), snapshot(&http, &url).await)
    });
    reg.stop();

    let reg = Registry::start(&broker, "");
    let url = reg.url();
    rt().block_on(async {
        let http = Http::new();
        let after = snapshot(&http, &url).await;
        assert_eq!(before, after, "state after restart differs");
        let (_, v2) = http
            .get(&format!("{url}/subjects/a-value/versions/2"))
            .await;
        assert_eq!(v2["id"].as_u64(), Some(ids.1));
        assert_eq!(v2["schema"].as_str(), Some(s1b.as_str()));
        let (_, b) = http.get(&format!("{url}/schemas/ids/{}", ids.2)).await;
        assert_eq!(b["schema"].as_str(), Some(s2.as_str()));
        let (st, _) = http.get(&format!("{url}/subjects/b-value/versions")).await;
        assert_eq!(st, 404, "the soft-deleted subject stays deleted");
        let (_, deleted) = http.get(&format!("{url}/subjects?deleted=true")).await;
        assert_eq!(deleted, json!(["a-value", "b-value"]));
        // New registrations continue the ids.
        let (_, body) = http
            .post(
                &format!("{url}/subjects/c-value/versions"),
                json!({"schema": "\"string\""}),
            )
            .await;
        assert_eq!(body["id"].as_u64(), Some(ids.2 + 1));
    });
    reg.stop();

    // The raw records are Confluent's.
    let records = read_topic(&broker.bootstrap(), "_schemas");
    let expect = [
        (
            json!({"keytype":"SCHEMA","subject":"a-value","version":1,"magic":1}),
            json!({"subject":"a-value","version":1,"id":ids.0,"schema":s1,"deleted":false}),
        ),
        (
            json!({"keytype":"SCHEMA","subject":"a-value","version":2,"magic":1}),
            json!({"subject":"a-value","version":2,"id":ids.1,"schema":s1b,"deleted":false}),
        ),
        (
            json!({"keytype":"SCHEMA","subject":"b-value","version":1,"magic":1}),
            json!({"subject":"b-value","version":1,"id":ids.2,"schema":s2,"deleted":false}),
        ),
        (
            json!({"keytype":"CONFIG","subject":null,"magic":0}),
            json!({"compatibilityLevel":"FULL"}),
        ),
        (
            json!({"keytype":"CONFIG","subject":"a-value","magic":0}),
            json!({"compatibilityLevel":"NONE"}),
        ),
        (
            json!({"keytype":"SCHEMA","subject":"b-value","version":1,"magic":1}),
            json!({"subject":"b-value","version":1,"id":ids.2,"schema":s2,"deleted":true}),
        ),
        (
            json!({"keytype":"SCHEMA","subject":"c-value","version":1,"magic":1}),
            json!({"subject":"c-value","version":1,"id":ids.2 + 1,"schema":"\"string\"","deleted":false}),
        ),
    ];
    assert_eq!(records.len(), expect.len(), "{records:#?}");
    for (got, want) in records.iter().zip(expect) {
        assert_eq!(got.0, want.0);
        assert_eq!(got.1.as_ref(), Some(&want.1));
    }
}

/// Everything a client can see: subjects (with deleted), versions, schemas, configs.
async fn snapshot(http: &Http, url: &str) -> Vec<(String, u16, Value)> {
    let mut paths = vec![
        "/subjects".to_string(),
        "/subjects?deleted=true".to_string(),
        "/config".to_string(),
        "/config/a-value".to_string(),
        "/config/b-value".to_string(),
    ];
    for s in ["a-value", "b-value"] {
        paths.push(format!("/subjects/{s}/versions?deleted=true"));
        for v in 1..=3 {
            paths.push(format!("/subjects/{s}/versions/{v}?deleted=true"));
        }
    }
    for id in 1..=4 {
        paths.push(format!("/schemas/ids/{id}"));
    }
    let mut out = Vec::new();
    for p in paths {
        let (st, body) = http.get(&format!("{url}{p}")).await;
        out.push((p, st, body));
    }
    out
}

#[test]
fn basic_auth_guards_every_endpoint() {
    let broker = Broker::start();
    let reg = Registry::start(&broker, "username = \"alice\"\npassword = \"s3cret\"");
    let url = reg.url();
    rt().block_on(async {
        let client = reqwest::Client::new();
        for path in ["/", "/subjects", "/config", "/schemas/ids/1", "/nowhere"] {
            let r = client
                .get(format!("{url}{path}"))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status().as_u16(), 401, "{path} without credentials");
            assert!(r.headers().contains_key("www-authenticate"));
            let body: Value = r.json().await.expect("JSON error body");
            assert_eq!(body["error_code"], 401);
            let r = client
                .get(format!("{url}{path}"))
                .basic_auth("alice", Some("wrong"))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status().as_u16(), 401, "{path} with a wrong password");
        }
        let r = client
            .post(format!("{url}/subjects/x/versions"))
            .body(json!({"schema": "\"int\""}).to_string())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 401);
        let r = client
            .post(format!("{url}/subjects/x/versions"))
            .basic_auth("alice", Some("s3cret"))
            .body(json!({"schema": "\"int\""}).to_string())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.json::<Value>().await.expect("JSON"), json!({"id": 1}));
        let r = client
            .get(format!("{url}/subjects"))
            .basic_auth("alice", Some("s3cret"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.json::<Value>().await.expect("JSON"), json!(["x"]));
    });
    reg.stop();
}

/// Records that lost a race (here written as another registry that died would have left
/// them: the same subject and version with another id, and a new key reusing a taken id)
/// must not take effect when compaction removes the winners' older records: the registry
/// writes the record in force again (or a tombstone), and after compaction a fresh
/// registry still gives every id and version its first meaning.
#[test]
fn records_that_lost_a_race_never_change_an_id_after_compaction() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let broker = Broker::start_compacting();
    // The schemas topic with segments that roll and a cleaner that runs at once.
    broker::create_topic(
        &broker.bootstrap(),
        "_schemas",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "200"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "100"),
        ],
    );
    let reg = Registry::start(&broker, "");
    let url = reg.url();
    let x = record_schema("X", &[("a", "int")]);
    let y = record_schema("Y", &[("b", "string")]);
    let (id, meant) = rt().block_on(async {
        let http = Http::new();
        let (st, body) = http
            .post(
                &format!("{url}/subjects/s-value/versions"),
                json!({"schema": x}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        let id = body["id"].as_u64().expect("id");
        let (_, meant) = http.get(&format!("{url}/schemas/ids/{id}")).await;
        (id, meant)
    });
    // The losers.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");
    let key = |s: &str| format!(r#"{{"keytype":"SCHEMA","subject":"{s}","version":1,"magic":1}}"#);
    let value = |s: &str, id: u64| {
        json!({"subject": s, "version": 1, "id": id, "schema": y, "deleted": false}).to_string()
    };
    for (k, v) in [
        (key("s-value"), value("s-value", id + 1)),
        (key("t-value"), value("t-value", id)),
    ] {
        producer
            .send(BaseRecord::to("_schemas").partition(0).key(&k).payload(&v))
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    // Later writes roll the segment so that the cleaner can compact the losers' segment.
    let start = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        std::thread::sleep(Duration::from_millis(500));
        rt().block_on(async {
            let (st, body) = Http::new()
                .post(
                    &format!("{url}/subjects/filler-{n}/versions"),
                    json!({"schema": record_schema("F", &[("f", "int")])}),
                )
                .await;
            assert_eq!(st, 200, "{body}");
        });
        let records = read_topic(&broker.bootstrap(), "_schemas");
        let losers = records
            .iter()
            .filter(|(_, v)| v.as_ref().is_some_and(|v| v["schema"] == json!(y)))
            .count();
        if losers == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the losers were not compacted away: {records:?}\n{}",
            reg.log_text()
        );
    }
    reg.stop();
    let reg = Registry::start(&broker, "");
    let url = reg.url();
    rt().block_on(async {
        let http = Http::new();
        let (st, v1) = http
            .get(&format!("{url}/subjects/s-value/versions/1"))
            .await;
        assert_eq!(st, 200, "{v1}");
        assert_eq!(v1["id"].as_u64(), Some(id), "{v1}");
        let (st, by_id) = http.get(&format!("{url}/schemas/ids/{id}")).await;
        assert_eq!(st, 200);
        assert_eq!(by_id, meant, "id {id} changed meaning");
        let (_, subjects) = http.get(&format!("{url}/subjects")).await;
        assert!(
            !subjects
                .as_array()
                .expect("subjects")
                .contains(&json!("t-value")),
            "{subjects}"
        );
    });
}
