//! Plain SQL conversations with the source server: connecting, flavor, binlog coordinates,
//! collations, and information_schema facts about a table.
//!
//! Invariant: nothing here writes to the server; every statement is a read.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, SslOpts};

use crate::config::{Config, TlsMode};
use crate::error::{Error, Result};
use crate::mysql::charset::Collations;
use crate::mysql::rows::{ServerColumn, ServerTable};

/// MySQL or MariaDB: they differ in GTIDs and in a few statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MySql,
    MariaDb,
}

/// Connection options from `[mysql]`.
pub fn opts(cfg: &Config) -> Result<OptsBuilder> {
    let m = &cfg.mysql;
    let mut b = OptsBuilder::default()
        .ip_or_hostname(m.host.clone())
        .tcp_port(m.port)
        .user(Some(m.user.clone()))
        .pass(cfg.mysql_password()?)
        .prefer_socket(false)
        .stmt_cache_size(16)
        .max_allowed_packet(Some(1 << 30));
    if m.tls.mode != TlsMode::Disabled {
        let mut ssl =
            SslOpts::default().with_danger_skip_domain_validation(m.tls.mode == TlsMode::VerifyCa);
        if let Some(ca) = &m.tls.ca_file {
            ssl = ssl.with_root_certs(vec![ca.clone().into()]);
        }
        b = b.ssl_opts(ssl);
    }
    Ok(b)
}

/// Connects, with the configured timeout and an error that says where it tried.
pub async fn connect(cfg: &Config) -> Result<Conn> {
    let where_ = format!(
        "connecting to MySQL at {}:{} as {}",
        cfg.mysql.host, cfg.mysql.port, cfg.mysql.user
    );
    let fut = Conn::new(opts(cfg)?);
    match tokio::time::timeout(
        Duration::from_secs(cfg.mysql.connect_timeout_secs as u64),
        fut,
    )
    .await
    {
        Ok(r) => r.map_err(Error::mysql(where_)),
        Err(_) => Err(Error::Io {
            context: where_,
            cause: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no answer within {} s (mysql.connect_timeout_secs)",
                    cfg.mysql.connect_timeout_secs
                ),
            ),
        }),
    }
}

pub async fn flavor(conn: &mut Conn) -> Result<Flavor> {
    let v: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(Error::mysql("reading the server version"))?;
    Ok(if v.unwrap_or_default().contains("MariaDB") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    })
}

/// The server's current end of binlog (file, position).
pub async fn binlog_end(conn: &mut Conn) -> Result<(String, u64)> {
    for sql in ["SHOW BINARY LOG STATUS", "SHOW MASTER STATUS"] {
        if let Ok(Some(row)) = conn.query_first::<mysql_async::Row, _>(sql).await {
            let file: Option<String> = row.get(0);
            let pos: Option<u64> = row.get(1);
            if let (Some(f), Some(p)) = (file, pos) {
                return Ok((f, p));
            }
        }
    }
    Err(Error::Unsupported(
        "the server reports no binlog position: binary logging is off. Add `log_bin=mysql-bin` \
         (and binlog_format=ROW) to my.cnf and restart the server"
            .into(),
    ))
}

/// The binlog files the server still has, oldest first.
pub async fn binlog_files(conn: &mut Conn) -> Result<Vec<(String, u64)>> {
    let rows: Vec<mysql_async::Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(Error::mysql("SHOW BINARY LOGS (is binary logging on?)"))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
        .collect())
}

/// Every collation the server knows.
pub async fn collations(conn: &mut Conn) -> Result<Collations> {
    let rows: Vec<(u16, String)> = conn
        .query(
            "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL",
        )
        .await
        .map_err(Error::mysql("reading information_schema.COLLATIONS"))?;
    Ok(Collations::with_server_table(rows))
}

/// Columns, primary key and JSON-ness of a table, as the server describes it now.
pub async fn table_info(
    conn: &mut Conn,
    flavor: Flavor,
    db: &str,
    table: &str,
) -> Result<ServerTable> {
    let ctx = || format!("reading information_schema for {db}.{table}");
    type ColumnRow = (
        String,
        String,
        String,
        Option<String>,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        String,
        Option<String>,
    );
    let cols: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, CHARACTER_SET_NAME, \
             CHARACTER_OCTET_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, \
             IS_NULLABLE, COLLATION_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .map_err(Error::mysql(ctx()))?;
    let primary_key: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
             ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .map_err(Error::mysql(ctx()))?;
    let checks: Vec<String> = if flavor == Flavor::MariaDb {
        conn.exec(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .await
        .map_err(Error::mysql(ctx()))?
    } else {
        Vec::new()
    };
    let collation: Option<Option<String>> = conn
        .exec_first(
            "SELECT TABLE_COLLATION FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .await
        .map_err(Error::mysql(ctx()))?;
    Ok(ServerTable {
        collation: collation.flatten(),
        columns: cols
            .into_iter()
            .map(
                |(
                    name,
                    column_type,
                    data_type,
                    charset,
                    octets,
                    precision,
                    scale,
                    fsp,
                    null,
                    coll,
                )| {
                    let is_json = column_type == "json"
                        || checks.iter().any(|c| c == &format!("json_valid(`{name}`)"));
                    ServerColumn {
                        name,
                        column_type,
                        is_json,
                        data_type: data_type.to_ascii_lowercase(),
                        charset,
                        collation: coll,
                        octet_length: octets,
                        precision,
                        scale,
                        fsp,
                        nullable: null == "YES",
                    }
                },
            )
            .collect(),
        primary_key,
    })
}

/// Base tables of the server outside the system schemas, as `(db, table)`.
pub async fn base_tables(conn: &mut Conn) -> Result<Vec<(String, String)>> {
    conn.query(
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
         WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
         ('mysql', 'information_schema', 'performance_schema', 'sys') \
         ORDER BY TABLE_SCHEMA, TABLE_NAME",
    )
    .await
    .map_err(Error::mysql("listing tables in information_schema.TABLES"))
}

/// The optimizer's row estimate of a table (information_schema.TABLES.TABLE_ROWS).
pub async fn estimated_rows(conn: &mut Conn, db: &str, table: &str) -> Result<u64> {
    let n: Option<Option<u64>> = conn
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .await
        .map_err(Error::mysql(format!("estimating the rows of {db}.{table}")))?;
    Ok(n.flatten().unwrap_or(0))
}

/// Whether the server still has binlog `file` (false once it was purged).
pub async fn has_binlog(conn: &mut Conn, file: &str) -> Result<bool> {
    Ok(binlog_files(conn).await?.iter().any(|(f, _)| f == file))
}
