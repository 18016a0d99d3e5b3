//! Smoke test of the MariaDB test harness (tests/support/mariadb.rs and
//! deploy/local/mariadb.sh): CDC binlog settings, the binlake account and
//! its grants, and cleanup on drop.

mod support;

use mysql_async::prelude::Queryable;
use support::mariadb::MariaDb;

#[tokio::test]
async fn mariadb_harness_starts_configures_and_stops() {
    let db = MariaDb::start();

    // Binlog settings a CDC reader relies on, through the CLI helper.
    assert_eq!(
        db.query_rows("SELECT @@binlog_format, @@binlog_row_metadata, @@binlog_row_image"),
        vec![vec!["ROW".to_string(), "FULL".into(), "FULL".into()]]
    );
    // Multi-statement scripts and 4-byte UTF-8 through the CLI.
    db.sql(
        "CREATE DATABASE smoke;
         CREATE TABLE smoke.t (id INT PRIMARY KEY, s TEXT);
         INSERT INTO smoke.t VALUES (1, '😀');",
    );
    assert_eq!(
        db.query_rows("SELECT id, s FROM smoke.t"),
        vec![vec!["1".to_string(), "😀".into()]]
    );

    // Root over TCP works.
    let mut root = db.conn().await;
    let version: Option<String> = root.query_first("SELECT VERSION()").await.unwrap();
    assert!(version.unwrap().contains("MariaDB"));
    root.disconnect().await.unwrap();

    // The CDC account logs in over TCP and has replication grants.
    let mut cdc = mysql_async::Conn::from_url(db.url("binlake", "binlake"))
        .await
        .expect("connect as binlake");
    let grants: Vec<String> = cdc.query("SHOW GRANTS").await.unwrap();
    let grants = grants.join("\n");
    assert!(grants.contains("REPLICATION SLAVE"), "{grants}");
    assert!(grants.contains("BINLOG MONITOR"), "{grants}");
    cdc.disconnect().await.unwrap();

    // Drop stops the server and removes its directory.
    let (port, dir) = (db.port, db.dir.clone());
    drop(db);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections after drop"
    );
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
}
