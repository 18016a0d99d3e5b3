//! The binlog source against a real MariaDB: every column type decoded losslessly by
//! `binlake tail`, transactions, DDL mid-stream, rotation, resume, and `binlake check`.

mod support;

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use support::cli::{binlake, binlog_end, config};
use support::mariadb::MariaDb;

const LIMIT: Duration = Duration::from_secs(120);

fn b64(b: &[u8]) -> Value {
    json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
}

/// `binlake tail --from FROM --limit LIMIT` with `extra_config` appended to the config;
/// asserts it succeeded and printed exactly `limit` changes.
fn tail_with(db: &MariaDb, extra_config: &str, from: &str, limit: usize) -> Vec<Value> {
    let cfg = config(db, "binlake", "binlake", extra_config);
    let limit_arg = limit.to_string();
    let args = [
        "tail",
        "--config",
        cfg.to_str().unwrap(),
        "--from",
        from,
        "--limit",
        &limit_arg,
    ];
    let run = binlake(&args, LIMIT);
    assert_eq!(run.code, Some(0), "tail failed: {}", run.stderr);
    let lines = run.lines();
    assert_eq!(lines.len(), limit, "stderr: {}", run.stderr);
    lines
}

fn tail(db: &MariaDb, from: &str, limit: usize) -> Vec<Value> {
    tail_with(db, "", from, limit)
}

const ALL_TYPES: &str = "
CREATE DATABASE cdc;
CREATE TABLE cdc.all_types (
  id INT NOT NULL PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
  bi BIGINT, biu BIGINT UNSIGNED,
  d65 DECIMAL(65,30), d52 DECIMAL(5,2), f FLOAT, dbl DOUBLE,
  b1 BIT(1), b10 BIT(10), b64 BIT(64),
  c CHAR(10), vc VARCHAR(100), tx TEXT, l1 VARCHAR(20) CHARACTER SET latin1,
  bn BINARY(4), vb VARBINARY(10), bl BLOB,
  dt DATE, dtm DATETIME, dtm3 DATETIME(3), dtm6 DATETIME(6),
  ts TIMESTAMP(6) NULL DEFAULT NULL, ts0 TIMESTAMP NULL DEFAULT NULL,
  tm TIME, tm6 TIME(6), yr YEAR,
  en ENUM('a','b','c'), st SET('x','y','z'),
  js JSON, geo GEOMETRY
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE cdc.big (id INT PRIMARY KEY, b LONGBLOB);
";

const MAX_DEC: &str = "99999999999999999999999999999999999.999999999999999999999999999999";

fn max_row() -> Value {
    json!({
        "id": 1, "ti": 127, "tiu": 255, "si": 32767, "siu": 65535,
        "mi": 8388607, "miu": 16777215, "i": 2147483647, "iu": 4294967295u64,
        "bi": 9223372036854775807i64, "biu": 18446744073709551615u64,
        "d65": MAX_DEC, "d52": "999.99", "f": 3.5, "dbl": 1.7976931348623157e308,
        "b1": b64(&[1]), "b10": b64(&[0x03, 0xff]), "b64": b64(&[0xff; 8]),
        "c": "abc", "vc": "😀 emoji 𝄞", "tx": "text ✓", "l1": "café",
        "bn": b64(&[0xff, 0, 0, 0]), "vb": b64(&[0xff, 0]), "bl": b64(&[0, 0xff]),
        "dt": "9999-12-31", "dtm": "9999-12-31 23:59:59", "dtm3": "9999-12-31 23:59:59.999",
        "dtm6": "9999-12-31 23:59:59.999999",
        "ts": "2038-01-19T03:14:07.999999Z", "ts0": "2038-01-19T03:14:07Z",
        "tm": "838:59:59", "tm6": "838:59:59.000000", "yr": 2155,
        "en": "c", "st": ["x", "z"], "js": {"a": [1, 2.5, "x"], "b": null},
        "geo": {"base64": "AQEAAAAAAAAAAADwPwAAAAAAAABA", "srid": 0}
    })
}

fn min_row() -> Value {
    json!({
        "id": 2, "ti": -128, "tiu": 0, "si": -32768, "siu": 0,
        "mi": -8388608, "miu": 0, "i": -2147483648i64, "iu": 0,
        "bi": -9223372036854775808i64, "biu": 0,
        "d65": format!("-{MAX_DEC}"), "d52": "-0.50", "f": -1.25, "dbl": -2.2250738585072014e-308,
        "b1": b64(&[0]), "b10": b64(&[0, 0]), "b64": b64(&[0; 8]),
        "c": "", "vc": "", "tx": "", "l1": "",
        "bn": b64(&[0; 4]), "vb": b64(&[]), "bl": b64(&[]),
        "dt": "1000-01-01", "dtm": "1000-01-01 00:00:00", "dtm3": "1000-01-01 00:00:00.000",
        "dtm6": "1000-01-01 00:00:00.000000",
        "ts": "1970-01-01T00:00:01.000000Z", "ts0": "1970-01-01T00:00:01Z",
        "tm": "-838:59:59", "tm6": "-838:59:59.000000", "yr": 0,
        "en": "a", "st": [], "js": [],
        "geo": {"base64": "AQIAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAPA/AAAAAAAA8D8=", "srid": 0}
    })
}

fn null_row(id: i64) -> Value {
    let mut row = max_row();
    for (k, v) in row.as_object_mut().unwrap() {
        *v = if k == "id" { json!(id) } else { Value::Null };
    }
    row
}

#[test]
fn every_type_round_trips_through_tail() {
    let db = MariaDb::start();
    db.sql(ALL_TYPES);
    let start = binlog_end(&db);
    db.sql(&format!(
        "SET time_zone = '+00:00';
         INSERT INTO cdc.all_types VALUES (1, 127, 255, 32767, 65535, 8388607, 16777215,
           2147483647, 4294967295, 9223372036854775807, 18446744073709551615,
           '{MAX_DEC}', 999.99, 3.5, 1.7976931348623157e308,
           b'1', b'1111111111', 0xFFFFFFFFFFFFFFFF,
           'abc', '😀 emoji 𝄞', 'text ✓', 'café', x'FF00', x'FF00', x'00FF',
           '9999-12-31', '9999-12-31 23:59:59', '9999-12-31 23:59:59.999', '9999-12-31 23:59:59.999999',
           '2038-01-19 03:14:07.999999', '2038-01-19 03:14:07', '838:59:59', '838:59:59.000000', 2155,
           'c', 'x,z', '{{\"a\": [1, 2.5, \"x\"], \"b\": null}}', ST_GeomFromText('POINT(1 2)'));
         INSERT INTO cdc.all_types VALUES (2, -128, 0, -32768, 0, -8388608, 0,
           -2147483648, 0, -9223372036854775808, 0,
           '-{MAX_DEC}', -0.5, -1.25, -2.2250738585072014e-308,
           b'0', b'0', 0,
           '', '', '', '', x'', x'', x'',
           '1000-01-01', '1000-01-01 00:00:00', '1000-01-01 00:00:00.000', '1000-01-01 00:00:00.000000',
           '1970-01-01 00:00:01.000000', '1970-01-01 00:00:01', '-838:59:59', '-838:59:59.000000', 0,
           'a', '', '[]', ST_GeomFromText('LINESTRING(0 0,1 1)'));
         INSERT INTO cdc.all_types (id) VALUES (3);
         SET sql_mode = '';
         INSERT INTO cdc.all_types (id, dt, dtm, ts0) VALUES (4, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00');
         INSERT INTO cdc.big VALUES (1, REPEAT('x', 17825792));
         UPDATE cdc.all_types SET vc = 'updated', biu = 1 WHERE id = 1;
         DELETE FROM cdc.all_types WHERE id = 2;
         BEGIN; INSERT INTO cdc.all_types (id) VALUES (10); INSERT INTO cdc.all_types (id) VALUES (11);
           UPDATE cdc.all_types SET i = 7 WHERE id = 10; COMMIT;
         BEGIN; INSERT INTO cdc.all_types (id) VALUES (20); ROLLBACK;
         INSERT INTO cdc.all_types (id) VALUES (30);"
    ));
    let out = tail(&db, &start, 11);

    // Shape of every line.
    for l in &out {
        let keys: Vec<&str> = l.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            ["op", "db", "table", "key", "before", "after", "ts_ms", "pos"]
        );
        assert_eq!(l["db"], "cdc");
        assert!(l["ts_ms"].as_u64().unwrap() > 1_600_000_000_000);
        assert!(l["pos"]["gtid"].as_str().unwrap().starts_with("0-1-"));
    }
    let ops: Vec<(&str, &str, i64)> = out
        .iter()
        .map(|l| {
            let img = if l["after"].is_null() {
                &l["before"]
            } else {
                &l["after"]
            };
            (
                l["op"].as_str().unwrap(),
                l["table"].as_str().unwrap(),
                img["id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("c", "all_types", 1),
            ("c", "all_types", 2),
            ("c", "all_types", 3),
            ("c", "all_types", 4),
            ("c", "big", 1),
            ("u", "all_types", 1),
            ("d", "all_types", 2),
            ("c", "all_types", 10),
            ("c", "all_types", 11),
            ("u", "all_types", 10),
            ("c", "all_types", 30),
        ],
        "the rolled-back insert of id 20 must not appear"
    );

    // Values, column by column, so a failure names the column.
    let check = |got: &Value, want: &Value, what: &str| {
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(&got[k], v, "{what}: column {k}");
        }
        assert_eq!(
            got.as_object().unwrap().len(),
            want.as_object().unwrap().len(),
            "{what}"
        );
    };
    check(&out[0]["after"], &max_row(), "insert of max values");
    assert_eq!(out[0]["key"], json!({"id": 1}));
    assert!(out[0]["before"].is_null());
    check(&out[1]["after"], &min_row(), "insert of min values");
    check(&out[2]["after"], &null_row(3), "insert of NULLs");
    let mut zero = null_row(4);
    zero["dt"] = Value::Null; // zero dates are null
    check(&out[3]["after"], &zero, "zero dates");

    let big = out[4]["after"]["b"]["base64"].as_str().unwrap();
    let expect_big = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; 17825792]);
    assert!(
        big == expect_big,
        "17 MB blob differs (len {} vs {})",
        big.len(),
        expect_big.len()
    );

    check(&out[5]["before"], &max_row(), "update before image");
    let mut updated = max_row();
    updated["vc"] = json!("updated");
    updated["biu"] = json!(1);
    check(&out[5]["after"], &updated, "update after image");
    check(&out[6]["before"], &min_row(), "delete before image");
    assert!(out[6]["after"].is_null());
    assert_eq!(out[6]["key"], json!({"id": 2}));

    // One transaction: same GTID, increasing positions; the next one has a new GTID.
    let gtid = |i: usize| out[i]["pos"]["gtid"].as_str().unwrap().to_string();
    assert_eq!(gtid(7), gtid(8));
    assert_eq!(gtid(8), gtid(9));
    assert_ne!(gtid(9), gtid(10));
    let pos = |i: usize| {
        let p = &out[i]["pos"];
        (p["offset"].as_u64().unwrap(), p["row"].as_u64().unwrap())
    };
    for i in 1..out.len() {
        assert!(
            pos(i) > pos(i - 1),
            "positions must increase: {:?} then {:?}",
            pos(i - 1),
            pos(i)
        );
    }
}

#[test]
fn ddl_and_rotation_mid_stream() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE cdc; CREATE TABLE cdc.t (id INT PRIMARY KEY, a VARCHAR(10));");
    let start = binlog_end(&db);
    db.sql(
        "INSERT INTO cdc.t VALUES (1, 'x');
         ALTER TABLE cdc.t ADD COLUMN b INT;
         INSERT INTO cdc.t VALUES (2, 'y', 5);
         FLUSH BINARY LOGS;
         ALTER TABLE cdc.t DROP COLUMN a;
         INSERT INTO cdc.t VALUES (3, 6);
         UPDATE cdc.t SET b = 7 WHERE id = 1;",
    );
    let out = tail(&db, &start, 4);
    assert_eq!(out[0]["after"], json!({"id": 1, "a": "x"}));
    assert_eq!(out[1]["after"], json!({"id": 2, "a": "y", "b": 5}));
    assert_eq!(out[2]["after"], json!({"id": 3, "b": 6}));
    assert_eq!(out[3]["before"], json!({"id": 1, "b": null}));
    assert_eq!(out[3]["after"], json!({"id": 1, "b": 7}));
    let file = |i: usize| out[i]["pos"]["file"].as_str().unwrap().to_string();
    assert_eq!(file(0), file(1));
    assert_eq!(file(2), file(3));
    assert_ne!(
        file(1),
        file(2),
        "FLUSH BINARY LOGS must move the stream to the next file"
    );
    // Exact names: the server's first (fake) ROTATE must not leak its CRC bytes into them.
    let files: Vec<String> = db
        .query_rows("SHOW BINARY LOGS")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!([file(0), file(2)], [files[0].clone(), files[1].clone()]);
}

#[test]
fn resume_from_printed_position_and_from_gtid() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE cdc; CREATE TABLE cdc.t (id INT PRIMARY KEY, v INT);");
    let start = binlog_end(&db);
    db.sql(
        "INSERT INTO cdc.t VALUES (1, 1);
         INSERT INTO cdc.t VALUES (2, 2);
         INSERT INTO cdc.t VALUES (10, 0), (11, 0), (12, 0);
         BEGIN; INSERT INTO cdc.t VALUES (20, 0); UPDATE cdc.t SET v = 9 WHERE id = 1; COMMIT;
         DELETE FROM cdc.t WHERE id = 2;",
    );
    let all = tail(&db, &start, 8);
    // `start` is the oldest binlog: the same changes (the setup ran with sql_log_bin=0).
    assert_eq!(tail(&db, "start", 8), all);
    let ids: Vec<i64> = all
        .iter()
        .map(|l| {
            let img = if l["after"].is_null() {
                &l["before"]
            } else {
                &l["after"]
            };
            img["id"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(ids, [1, 2, 10, 11, 12, 20, 1, 2]);
    // Rows 10, 11, 12 share one event: offsets equal, row index 0, 1, 2.
    assert_eq!(all[2]["pos"]["offset"], all[4]["pos"]["offset"]);
    assert_eq!(all[3]["pos"]["row"], 1);

    let at = |l: &Value| {
        let p = &l["pos"];
        format!(
            "{}:{}:{}",
            p["file"].as_str().unwrap(),
            p["offset"],
            p["row"]
        )
    };
    // After each printed position, exactly the rest.
    for k in [0usize, 2, 3, 5] {
        let rest = tail(&db, &at(&all[k]), all.len() - k - 1);
        assert_eq!(
            rest,
            all[k + 1..],
            "resume after change {k} ({})",
            at(&all[k])
        );
    }
    // FILE:POS (no row) means "events at or after POS": the same position, inclusive.
    let p = &all[3]["pos"];
    let from = format!("{}:{}", p["file"].as_str().unwrap(), p["offset"]);
    assert_eq!(tail(&db, &from, 6), all[2..]);

    // After a GTID: the transactions after it.
    let g = all[4]["pos"]["gtid"].as_str().unwrap();
    assert_eq!(tail(&db, g, 3), all[5..]);
    let g = all[6]["pos"]["gtid"].as_str().unwrap();
    assert_eq!(tail(&db, g, 1), all[7..]);
}

#[test]
fn tables_without_primary_key_and_capture_filters() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE cdc; CREATE DATABASE other;
         CREATE TABLE cdc.nopk (a INT, b VARCHAR(5));
         CREATE TABLE cdc.users (id INT PRIMARY KEY, name VARCHAR(10), secret VARCHAR(10));
         CREATE TABLE other.t (id INT PRIMARY KEY);",
    );
    let start = binlog_end(&db);
    db.sql(
        "INSERT INTO cdc.nopk VALUES (1, 'a');
         INSERT INTO other.t VALUES (1);
         DELETE FROM cdc.nopk;
         INSERT INTO cdc.users VALUES (1, 'ann', 'pw');",
    );
    // Default: every column is the key; everything is captured.
    let out = tail_with(&db, "", &start, 4);
    assert_eq!(out[0]["key"], json!({"a": 1, "b": "a"}));
    assert_eq!(out[1]["db"], "other");
    assert_eq!(out[2]["op"], "d");
    assert_eq!(out[2]["key"], json!({"a": 1, "b": "a"}));

    // key = "none": empty key. Filters: only cdc, and no secret column.
    let filters = "[capture]\ninclude = [\"cdc\"]\nexclude_columns = [\"cdc.users.secret\"]\nkey = \"none\"\n";
    let out = tail_with(&db, filters, &start, 3);
    assert_eq!(out[0]["key"], json!({}));
    assert_eq!(out[1]["op"], "d");
    assert_eq!(out[2]["table"], "users");
    assert_eq!(out[2]["after"], json!({"id": 1, "name": "ann"}));

    // key = "skip": the table without a key is not captured.
    let out = tail_with(&db, "[capture]\nkey = \"skip\"\n", &start, 2);
    assert_eq!(out[0]["db"], "other");
    assert_eq!(out[1]["table"], "users");
}

fn check(db: &MariaDb, user: &str, password: &str) -> (Option<i32>, String) {
    let cfg = config(db, user, password, "");
    let run = binlake(&["check", "--config", cfg.to_str().unwrap()], LIMIT);
    (run.code, run.stdout)
}

#[test]
fn check_passes_on_a_ready_server_and_names_missing_grants() {
    let db = MariaDb::start();
    let (code, out) = check(&db, "binlake", "binlake");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok    binlog_format = ROW"), "{out}");
    assert!(out.contains("0 failed"), "{out}");

    db.sql(
        "CREATE USER norepl@'%' IDENTIFIED BY 'pw';
         GRANT SELECT, BINLOG MONITOR ON *.* TO norepl@'%';",
    );
    let (code, out) = check(&db, "norepl", "pw");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL  user norepl lacks REPLICATION SLAVE"),
        "{out}"
    );
    assert!(
        out.contains("fix: GRANT REPLICATION SLAVE ON *.* TO 'norepl'@'%';"),
        "{out}"
    );
}

#[test]
fn check_fails_statement_format_with_the_fix() {
    let db = MariaDb::start_with(&["--binlog-format=STATEMENT"]);
    let (code, out) = check(&db, "binlake", "binlake");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL  binlog_format = STATEMENT"), "{out}");
    assert!(
        out.contains(
            "fix: SET GLOBAL binlog_format = 'ROW'; and in my.cnf [mysqld]: binlog_format = ROW"
        ),
        "{out}"
    );
    // `tail` (and `run`, which reads the binlog the same way) refuses such a server at once.
    let cfg = config(&db, "binlake", "binlake", "");
    let tail = binlake(&["tail", "--config", cfg.to_str().unwrap()], LIMIT);
    assert_eq!(tail.code, Some(2), "{}", tail.stderr);
    assert!(
        tail.stderr
            .contains("cannot be captured: binlog_format = STATEMENT")
            && tail.stderr.contains("SET GLOBAL binlog_format = 'ROW'"),
        "{}",
        tail.stderr
    );
}

/// One session that writes statements instead of rows (SET SESSION binlog_format) stops
/// the stream at that event, naming it; a statement on a table not captured does not.
#[test]
fn a_statement_logged_change_to_a_captured_table_stops_the_stream_at_it() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT);
         CREATE DATABASE other; CREATE TABLE other.t (id INT PRIMARY KEY);
         INSERT INTO app.t VALUES (1, 1);
         SET SESSION binlog_format = 'STATEMENT';
         INSERT INTO other.t VALUES (1);
         SET SESSION binlog_format = 'ROW';
         INSERT INTO app.t VALUES (2, 2);
         SET SESSION binlog_format = 'STATEMENT';
         UPDATE app.t SET v = 3 WHERE id = 1;
         SET SESSION binlog_format = 'ROW';
         INSERT INTO app.t VALUES (4, 4);",
    );
    let cfg = config(
        &db,
        "binlake",
        "binlake",
        "[capture]\ninclude = [\"app\"]\n",
    );
    let run = binlake(
        &["tail", "--config", cfg.to_str().unwrap(), "--from", "start"],
        LIMIT,
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    // The two row changes before it were printed; the one after it was not.
    let ids: Vec<i64> = run
        .lines()
        .iter()
        .filter_map(|l| l["after"]["id"].as_i64())
        .collect();
    assert_eq!(ids, [1, 2], "{}", run.stdout);
    assert!(
        run.stderr
            .contains("a change to captured tables was logged as a statement")
            && run.stderr.contains("UPDATE app.t SET v = 3")
            && run.stderr.contains("mysql-bin.000001 at offset "),
        "{}",
        run.stderr
    );
}

#[test]
fn composite_key_declared_out_of_order_and_format_none() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE cdc;
         CREATE TABLE cdc.t (a INT, b VARCHAR(5), c INT, PRIMARY KEY (c, a));",
    );
    let start = binlog_end(&db);
    db.sql("INSERT INTO cdc.t VALUES (1, 'x', 2); INSERT INTO cdc.t VALUES (3, 'y', 4);");
    let out = tail(&db, &start, 2);
    // Key columns in key order (c, a), not table order.
    let keys: Vec<&str> = out[0]["key"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, ["c", "a"]);
    assert_eq!(out[1]["key"], json!({"c": 4, "a": 3}));

    // --format none prints nothing and one summary line.
    let cfg = config(&db, "binlake", "binlake", "");
    let run = binlake(
        &[
            "tail",
            "--config",
            cfg.to_str().unwrap(),
            "--from",
            &start,
            "--limit",
            "2",
            "--format",
            "none",
        ],
        LIMIT,
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    let summary = run.stderr.lines().last().unwrap_or_default();
    assert!(summary.starts_with("rows=2 seconds="), "{}", run.stderr);
    assert!(summary.contains(" rows_per_sec="), "{summary}");
}

#[test]
fn minimal_row_metadata_falls_back_to_information_schema() {
    let db = MariaDb::start_with(&["--binlog-row-metadata=MINIMAL"]);
    db.sql(
        "CREATE DATABASE cdc;
         CREATE TABLE cdc.t (id INT UNSIGNED, e ENUM('lo','hi'), j JSON, name VARCHAR(9), PRIMARY KEY (id));",
    );
    let start = binlog_end(&db);
    db.sql("INSERT INTO cdc.t VALUES (4294967295, 'hi', '{\"k\": 1}', 'n');");
    let out = tail(&db, &start, 1);
    assert_eq!(
        out[0]["after"],
        json!({"id": 4294967295u64, "e": "hi", "j": {"k": 1}, "name": "n"})
    );
    assert_eq!(out[0]["key"], json!({"id": 4294967295u64}));

    let cfg = config(&db, "binlake", "binlake", "");
    let run = binlake(&["check", "--config", cfg.to_str().unwrap()], LIMIT);
    assert_eq!(
        run.code,
        Some(0),
        "a warning is not a failure: {}",
        run.stdout
    );
    assert!(
        run.stdout.contains("warn  binlog_row_metadata = MINIMAL"),
        "{}",
        run.stdout
    );
}

#[test]
fn changes_carry_their_commit_boundary() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE cdc; CREATE TABLE cdc.t (id INT PRIMARY KEY);");
    let start = binlog_end(&db);
    db.sql(
        "BEGIN; INSERT INTO cdc.t VALUES (1); INSERT INTO cdc.t VALUES (2), (3); COMMIT;
         INSERT INTO cdc.t VALUES (4);",
    );
    let cfg_path = config(&db, "binlake", "binlake", "");
    let cfg = binlake::config::Config::load(&cfg_path).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let commits = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let from: binlake::StartFrom = start.parse().unwrap();
        let source = tokio::spawn(async move {
            binlake::mysql::replication::stream(&cfg, from, None, None, None, tx).await
        });
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let batch = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("changes within 30 s")
                .expect("stream open");
            seen.extend(batch.changes.into_iter().map(|c: binlake::Change| c.commit));
        }
        source.abort();
        seen
    });
    assert_eq!(commits, [false, false, true, true]);
}

#[test]
fn text_after_geometry_keeps_its_charset() {
    // GEOMETRY takes a slot in the table map's charset list; miscounting it would decode the
    // latin1 column with the wrong charset.
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE cdc;
         CREATE TABLE cdc.g (id INT PRIMARY KEY, g GEOMETRY, u VARCHAR(10), l VARCHAR(10) CHARACTER SET latin1, b VARBINARY(4));",
    );
    let start = binlog_end(&db);
    db.sql("INSERT INTO cdc.g VALUES (1, ST_GeomFromText('POINT(1 2)'), 'ü', 'café', x'E9');");
    let out = tail(&db, &start, 1);
    assert_eq!(out[0]["after"]["u"], "ü");
    assert_eq!(out[0]["after"]["l"], "café");
    assert_eq!(out[0]["after"]["b"], b64(&[0xe9]));
}

#[test]
fn wrong_password_and_purged_binlog_are_clear_errors() {
    let db = MariaDb::start();
    let cfg = config(&db, "binlake", "wrong", "");
    let run = binlake(&["tail", "--config", cfg.to_str().unwrap()], LIMIT);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("connecting to MySQL at 127.0.0.1:")
            && run.stderr.contains("Access denied for user 'binlake'"),
        "{}",
        run.stderr
    );

    // MariaDB keeps a binlog until its checkpoint is written: purge until it is gone.
    db.sql("FLUSH BINARY LOGS;");
    db.purge_to("mysql-bin.000002");
    let cfg = config(&db, "binlake", "binlake", "");
    let run = binlake(
        &[
            "tail",
            "--config",
            cfg.to_str().unwrap(),
            "--from",
            "mysql-bin.000001:4",
        ],
        LIMIT,
    );
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("binlog file mysql-bin.000001 is not on the server any more (purged?); the oldest is mysql-bin.000002"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn following_prints_each_change_as_it_arrives() {
    use std::io::{BufRead, BufReader};

    let db = MariaDb::start();
    db.sql("CREATE DATABASE cdc; CREATE TABLE cdc.t (id INT PRIMARY KEY);");
    let cfg = config(&db, "binlake", "binlake", "");
    let mut child = support::cli::spawn(
        &["tail", "--config", cfg.to_str().unwrap(), "--from", "end"],
        "warn",
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while let Some(Ok(l)) = lines.next() {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    // One small change at a time: each must be printed without waiting for more.
    for id in 1..=3 {
        std::thread::sleep(Duration::from_millis(300));
        db.sql(&format!("INSERT INTO cdc.t VALUES ({id})"));
        let line = rx.recv_timeout(Duration::from_secs(10));
        let line = line.unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("change {id} was not printed within 10 s")
        });
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["after"], json!({ "id": id }));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGTERM (what systemd and Kubernetes send) stops `tail` like ctrl-c: output flushed, the
/// state saved, exit 0.
#[test]
fn tail_stops_on_sigterm_with_its_state_saved() {
    let db = MariaDb::start();
    let start = binlog_end(&db);
    db.sql("CREATE DATABASE cdc; CREATE TABLE cdc.t (id INT PRIMARY KEY); INSERT INTO cdc.t VALUES (1), (2)");
    let cfg = config(&db, "binlake", "binlake", "");
    let state = db.dir.join("tail-state.json");
    let child = support::cli::spawn(
        &[
            "tail",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--from",
            &start,
            "--state",
            state.to_str().expect("utf-8"),
        ],
        "warn",
    );
    let begun = std::time::Instant::now();
    let saved = || -> Option<u64> {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&state).ok()?).ok()?;
        v["last"]["row"].as_u64()
    };
    while saved() != Some(1) {
        assert!(begun.elapsed() < Duration::from_secs(30), "no state saved");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let out = child.wait_with_output().expect("tail exits");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}

/// A column type binlake does not know (here MySQL's internal TYPED_ARRAY, 20, patched into
/// a real MariaDB table map, CRC fixed up) is one error naming the table, the column, the
/// file and offset, and the fix; the changes before it come out, nothing of that table does.
#[test]
fn an_unknown_column_type_is_one_error_naming_the_column_and_the_fix() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.ok (id INT PRIMARY KEY);
         CREATE TABLE app.odd (id INT PRIMARY KEY, v INT);
         INSERT INTO app.ok VALUES (1); INSERT INTO app.odd VALUES (1, 1);
         INSERT INTO app.ok VALUES (2); FLUSH BINARY LOGS;",
    );
    let mut bytes = std::fs::read(db.dir.join("data/mysql-bin.000001")).expect("binlog");
    // Walk the events; in the TABLE_MAP of app.odd, make column 2 (v, LONG) type 20.
    let mut at = 4;
    let mut patched = None;
    while at + 19 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().unwrap()) as usize;
        let body = at + 19;
        if bytes[at + 4] == 19 {
            let db_len = bytes[body + 8] as usize;
            let t = body + 8 + 1 + db_len + 1;
            let t_len = bytes[t] as usize;
            if &bytes[t + 1..t + 1 + t_len] == b"odd" {
                let types = t + 1 + t_len + 1 + 1; // name, NUL, column count (1 byte)
                assert_eq!(bytes[types + 1], 3, "v is a LONG");
                bytes[types + 1] = 20;
                let crc = crc32fast::hash(&bytes[at..at + size - 4]);
                bytes[at + size - 4..at + size].copy_from_slice(&crc.to_le_bytes());
                patched = Some(at);
            }
        }
        at += size;
    }
    let offset = patched.expect("the table map of app.odd");
    let file = db.dir.join("mysql-bin.000001");
    std::fs::write(&file, &bytes).expect("write");
    let run = binlake(&["decode", file.to_str().unwrap()], LIMIT);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("mysql-bin.000001 at offset {offset}"))
            && run.stderr.contains("app.odd column `v` has binlog type 20")
            && run.stderr.contains("([capture] exclude = [\"app.odd\"])"),
        "{}",
        run.stderr
    );
    let tables: Vec<String> = run
        .lines()
        .iter()
        .map(|l| format!("{}.{}={}", l["table"], l["op"], l["after"]["id"]))
        .collect();
    assert_eq!(tables, ["\"ok\".\"c\"=1"], "{}", run.stdout);
}
