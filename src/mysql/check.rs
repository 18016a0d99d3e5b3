//! `binlake check`: every prerequisite of capturing from this server, each reported as
//! ok / warn / fail with the exact statement or my.cnf line that fixes it.
//!
//! Invariant: read-only. A fail means binlake would not work (or would lose data); a warn
//! means it works with a documented limitation.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::mysql::server::{self, Flavor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub what: String,
    /// How to fix it (empty for ok).
    pub fix: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        write!(f, "{tag}  {}", self.what)?;
        if !self.fix.is_empty() {
            write!(f, "\n      fix: {}", self.fix)?;
        }
        Ok(())
    }
}

fn ok(what: String) -> Finding {
    Finding {
        level: Level::Ok,
        what,
        fix: String::new(),
    }
}

fn bad(level: Level, what: String, fix: &str) -> Finding {
    Finding {
        level,
        what,
        fix: fix.to_string(),
    }
}

async fn var(conn: &mut Conn, name: &str) -> Option<String> {
    conn.query_first::<Option<String>, _>(format!("SELECT @@global.{name}"))
        .await
        .ok()
        .flatten()
        .flatten()
}

/// The settings without which the binlog cannot be captured at all: log_bin, ROW format,
/// FULL row image, no MariaDB event compression. Each wrong one is a `Fail` with its fix.
/// A global variable's value ("" when NULL); a failed query is an error (the connection's,
/// so `run` retries it), not a wrong setting.
async fn setting(conn: &mut Conn, name: &str) -> Result<String> {
    let v: Option<Option<String>> = conn
        .query_first(format!("SELECT @@global.{name}"))
        .await
        .map_err(Error::mysql(format!("reading @@global.{name}")))?;
    Ok(v.flatten().unwrap_or_default())
}

pub async fn binlog_settings(conn: &mut Conn, flavor: Flavor) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let log_bin = setting(conn, "log_bin").await?;
    if log_bin == "1" || log_bin.eq_ignore_ascii_case("ON") {
        out.push(ok("log_bin = ON".into()));
    } else {
        out.push(bad(
            Level::Fail,
            format!("log_bin = {log_bin}: binary logging is off"),
            "my.cnf [mysqld]: log_bin = mysql-bin (and restart the server)",
        ));
    }

    let format = setting(conn, "binlog_format").await?;
    if format == "ROW" {
        out.push(ok("binlog_format = ROW".into()));
    } else {
        out.push(bad(
            Level::Fail,
            format!("binlog_format = {format}: binlake needs row events"),
            "SET GLOBAL binlog_format = 'ROW'; and in my.cnf [mysqld]: binlog_format = ROW",
        ));
    }

    let image = setting(conn, "binlog_row_image").await?;
    if image == "FULL" {
        out.push(ok("binlog_row_image = FULL".into()));
    } else {
        out.push(bad(
            Level::Fail,
            format!("binlog_row_image = {image}: updates and deletes would lack full rows"),
            "SET GLOBAL binlog_row_image = 'FULL'; and in my.cnf [mysqld]: binlog_row_image = FULL",
        ));
    }

    if flavor == Flavor::MariaDb && setting(conn, "log_bin_compress").await? == "1" {
        out.push(bad(
            Level::Fail,
            "log_bin_compress = ON: binlake cannot decode compressed MariaDB events".into(),
            "SET GLOBAL log_bin_compress = OFF; and in my.cnf [mysqld]: log_bin_compress = OFF",
        ));
    }

    Ok(out)
}

/// Fails, naming every wrong setting and its fix, unless the server writes row events that
/// binlake can read (see [`binlog_settings`]). `run` and `tail` call it on every connect,
/// so a server changed to STATEMENT format is refused, not silently skipped.
pub async fn require_row_events(conn: &mut Conn, flavor: Flavor, server: &str) -> Result<()> {
    let failed: Vec<String> = binlog_settings(conn, flavor)
        .await?
        .into_iter()
        .filter(|f| f.level == Level::Fail)
        .map(|f| format!("{} (fix: {})", f.what, f.fix))
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::Unsupported(format!(
        "the binlog of {server} cannot be captured: {}",
        failed.join("; ")
    )))
}

/// Runs every check. Connection failures are findings too, not errors.
pub async fn run(cfg: &Config) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let mut conn = match server::connect(cfg).await {
        Ok(c) => c,
        // A TLS problem's message already names the setting to change.
        Err(e @ Error::MysqlTls { .. }) => {
            out.push(bad(
                Level::Fail,
                format!("connect: {e}"),
                "make [mysql.tls] mode and ca_file match the server's TLS setup, as the message says",
            ));
            return Ok(out);
        }
        Err(e) => {
            out.push(bad(
                Level::Fail,
                format!("connect: {e}"),
                "check [mysql] host, port, user and password; the server must accept TCP from this host",
            ));
            return Ok(out);
        }
    };
    let flavor = server::flavor(&mut conn).await?;
    let version = var(&mut conn, "version").await.unwrap_or_default();
    out.push(ok(format!("connected to {version} as {}", cfg.mysql.user)));

    out.extend(binlog_settings(&mut conn, flavor).await?);

    match var(&mut conn, "binlog_row_metadata").await {
        Some(m) if m == "FULL" => out.push(ok("binlog_row_metadata = FULL".into())),
        m => out.push(bad(
            Level::Warn,
            format!(
                "binlog_row_metadata = {}: column names, keys and ENUM/SET members will come \
                 from information_schema, which describes the table as it is now, not as it was \
                 when an older event was written",
                m.as_deref().unwrap_or("(not supported)")
            ),
            "SET GLOBAL binlog_row_metadata = 'FULL'; and in my.cnf [mysqld]: binlog_row_metadata = FULL",
        )),
    }

    match var(&mut conn, "binlog_checksum").await.as_deref() {
        Some("CRC32") => out.push(ok(
            "binlog_checksum = CRC32 (verified on every event)".into()
        )),
        other => out.push(bad(
            Level::Warn,
            format!(
                "binlog_checksum = {}: corruption in transit cannot be detected",
                other.unwrap_or("?")
            ),
            "SET GLOBAL binlog_checksum = 'CRC32'; and in my.cnf [mysqld]: binlog_checksum = CRC32",
        )),
    }

    // server_id: ours must differ from the source's and from every other replica's.
    let source_id = var(&mut conn, "server_id").await.unwrap_or_default();
    let mut taken: Vec<String> = vec![source_id.clone()];
    for sql in ["SHOW REPLICAS", "SHOW SLAVE HOSTS"] {
        if let Ok(rows) = conn.query::<mysql_async::Row, _>(sql).await {
            taken.extend(rows.iter().filter_map(|r| r.get::<String, _>(0)));
            break;
        }
    }
    let ours = cfg.mysql.server_id.to_string();
    if taken.contains(&ours) {
        out.push(bad(
            Level::Fail,
            format!(
                "server_id {ours} is already used (source server_id {source_id}, replicas: {})",
                taken[1..].join(", ")
            ),
            "choose another [mysql] server_id, unique among the source and all its replicas",
        ));
    } else {
        out.push(ok(format!(
            "server_id {ours} is unique (source is {source_id})"
        )));
    }

    out.extend(grants(&mut conn, &cfg.mysql.user).await);

    // GTIDs.
    match flavor {
        Flavor::MariaDb => {
            let pos = var(&mut conn, "gtid_binlog_pos").await.unwrap_or_default();
            out.push(ok(format!(
                "MariaDB GTIDs are always on (gtid_binlog_pos = {})",
                if pos.is_empty() { "empty" } else { &pos }
            )));
        }
        Flavor::MySql => match var(&mut conn, "gtid_mode").await.as_deref() {
            Some("ON") => out.push(ok("gtid_mode = ON".into())),
            other => out.push(bad(
                Level::Warn,
                format!(
                    "gtid_mode = {}: positions are file:offset only and do not survive a \
                     failover to another server",
                    other.unwrap_or("?")
                ),
                "enable GTIDs: my.cnf [mysqld] gtid_mode = ON, enforce_gtid_consistency = ON",
            )),
        },
    }

    // Retention: how long binlake may be stopped before its position is purged.
    let secs: Option<u64> = match var(&mut conn, "binlog_expire_logs_seconds").await {
        Some(s) => s.parse().ok(),
        None => var(&mut conn, "expire_logs_days")
            .await
            .and_then(|d| d.parse::<f64>().ok())
            .map(|d| (d * 86_400.0) as u64),
    };
    match secs {
        Some(0) => out.push(ok(
            "binlogs never expire (watch the disk; purge only what binlake has read)".into(),
        )),
        Some(s) if s < 3 * 86_400 => out.push(bad(
            Level::Warn,
            format!(
                "binlogs expire after {:.1} h: a binlake stopped longer than that must re-snapshot",
                s as f64 / 3600.0
            ),
            "SET GLOBAL binlog_expire_logs_seconds = 604800; and in my.cnf [mysqld]: binlog_expire_logs_seconds = 604800",
        )),
        Some(s) => out.push(ok(format!(
            "binlogs are kept {:.1} days",
            s as f64 / 86_400.0
        ))),
        None => out.push(bad(
            Level::Warn,
            "binlog retention unknown".into(),
            "set binlog_expire_logs_seconds explicitly",
        )),
    }
    Ok(out)
}

/// Privileges binlake needs, checked against SHOW GRANTS.
async fn grants(conn: &mut Conn, user: &str) -> Vec<Finding> {
    let lines: Vec<String> = match conn.query("SHOW GRANTS").await {
        Ok(l) => l,
        Err(e) => return vec![bad(Level::Warn, format!("cannot read grants: {e}"), "")],
    };
    let mut privs: Vec<String> = Vec::new();
    for l in &lines {
        let up = l.to_ascii_uppercase();
        let Some(rest) = up.strip_prefix("GRANT ") else {
            continue;
        };
        let Some((list, on)) = rest.split_once(" ON ") else {
            continue;
        };
        if on.trim_start().starts_with("*.*") {
            privs.extend(list.split(',').map(|p| p.trim().to_string()));
        }
    }
    let has = |p: &str| privs.iter().any(|x| x == p || x == "ALL PRIVILEGES");
    let mut out = Vec::new();
    let need: [(&[&str], &str, &str); 3] = [
        (
            &["REPLICATION SLAVE", "REPLICATION REPLICA"],
            "REPLICATION SLAVE",
            "read the binlog as a replica",
        ),
        (
            &["SELECT"],
            "SELECT",
            "read table metadata and snapshot tables",
        ),
        (
            &["REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"],
            "REPLICATION CLIENT (MySQL) / BINLOG MONITOR (MariaDB)",
            "read binlog coordinates (SHOW MASTER STATUS, SHOW BINARY LOGS)",
        ),
    ];
    for (alts, name, why) in need {
        if alts.iter().any(|a| has(a)) {
            out.push(ok(format!("grant {name}")));
        } else {
            out.push(Finding {
                level: Level::Fail,
                what: format!("user {user} lacks {name} ON *.* (needed to {why})"),
                fix: format!("GRANT {} ON *.* TO '{user}'@'%';", alts[0]),
            });
        }
    }
    out
}
