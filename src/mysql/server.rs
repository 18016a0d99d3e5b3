//! Plain SQL conversations with the source server: connecting, flavor, binlog coordinates,
//! collations, and information_schema facts about a table.
//!
//! Invariant: nothing here writes to the server; every statement is a read.

use std::collections::BTreeMap;
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

/// Host names learned under `verify-ca`: (host, port) → a name the server's certificate is
/// valid for (see [`connect`]).
static VERIFY_CA_NAMES: std::sync::Mutex<BTreeMap<(String, u16), String>> =
    std::sync::Mutex::new(BTreeMap::new());

fn learned_name(host: &str, port: u16) -> Option<String> {
    VERIFY_CA_NAMES
        .lock()
        .ok()?
        .get(&(host.to_string(), port))
        .cloned()
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
        let mut ssl = SslOpts::default();
        if let Some(ca) = &m.tls.ca_file {
            ssl = ssl.with_root_certs(vec![ca.clone().into()]);
        }
        if m.tls.mode == TlsMode::VerifyCa {
            ssl = ssl.with_danger_skip_domain_validation(true);
            if let Some(name) = learned_name(&m.host, m.port) {
                ssl = ssl.with_danger_tls_hostname_override(Some(name));
            }
        }
        b = b.ssl_opts(ssl);
    }
    Ok(b)
}

/// Connects, with the configured timeout and an error that says where it tried (and, for TLS
/// problems, which setting to change).
///
/// `verify-ca` checks the certificate chain but not the host name. mysql_async 0.37 means to
/// do that, but its check misses rustls 0.23's name error, so a certificate for another name
/// fails anyway. Such a failure happens only after the chain was verified, so binlake then
/// connects again, telling the TLS layer to expect a name the (verified) certificate carries.
pub async fn connect(cfg: &Config) -> Result<Conn> {
    let mut r = connect_once(cfg).await;
    if let Err(Error::Mysql { cause, .. }) = &r {
        // Also when a name was learned before: the server may have a new certificate.
        let learn = cfg.mysql.tls.mode == TlsMode::VerifyCa;
        if let Some(name) = name_in_certificate(cause).filter(|_| learn) {
            tracing::debug!(%name, "verify-ca: the certificate's chain is valid; expecting its name");
            if let Ok(mut names) = VERIFY_CA_NAMES.lock() {
                names.insert((cfg.mysql.host.clone(), cfg.mysql.port), name);
            }
            r = connect_once(cfg).await;
        }
    }
    match r {
        Err(Error::Mysql { context, cause }) => {
            if access_denied_for_want_of_tls(cfg, &cause).await {
                return Err(Error::MysqlTls {
                    context,
                    problem: format!(
                        "the server requires TLS: it denies access without TLS ({cause}) and \
                         grants it over TLS (require_secure_transport = ON, or the account is \
                         REQUIRE SSL), and [mysql.tls] mode is \"disabled\"; {TLS_FIX}"
                    ),
                });
            }
            Err(classify(cfg, context, cause))
        }
        r => r,
    }
}

const TLS_FIX: &str = "set [mysql.tls] mode = \"verify-identity\" and ca_file = the PEM file \
                       of the CA that signed the server's certificate";

/// MariaDB answers a connection without TLS to a TLS-only server or account with the same
/// "access denied" (1045) as a wrong password. With TLS off, binlake then tries the same
/// login once over TLS to tell the two apart, and only against MariaDB (its greeting says
/// so): that attempt does not verify the certificate, and MariaDB's password plugins send
/// over TLS nothing they did not send in the plain attempt that just failed. MySQL's
/// caching_sha2_password would send the password itself over TLS, so MySQL never gets the
/// probe (it names the TLS requirement itself, error 3159). The connection is closed at once.
async fn access_denied_for_want_of_tls(cfg: &Config, cause: &mysql_async::Error) -> bool {
    let mysql_async::Error::Server(s) = cause else {
        return false;
    };
    if cfg.mysql.tls.mode != TlsMode::Disabled || s.code != 1045 {
        return false;
    }
    if !greets_as_mariadb(cfg).await {
        return false;
    }
    let Ok(opts) = opts(cfg) else {
        return false;
    };
    let probe = opts.ssl_opts(SslOpts::default().with_danger_accept_invalid_certs(true));
    let limit = Duration::from_secs(cfg.mysql.connect_timeout_secs as u64);
    match tokio::time::timeout(limit, Conn::new(probe)).await {
        Ok(Ok(conn)) => {
            let _ = conn.disconnect().await;
            true
        }
        _ => false,
    }
}

/// Whether the server's greeting (the handshake packet it sends before any login) names
/// MariaDB in its version string.
async fn greets_as_mariadb(cfg: &Config) -> bool {
    use tokio::io::AsyncReadExt;
    let limit = Duration::from_secs(cfg.mysql.connect_timeout_secs as u64);
    let read = async {
        let mut tcp =
            tokio::net::TcpStream::connect((cfg.mysql.host.as_str(), cfg.mysql.port)).await?;
        let mut buf = vec![0u8; 128];
        let n = tcp.read(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(limit, read).await {
        // 3 bytes length, 1 byte sequence, protocol version 10, then the version string.
        Ok(Ok(b)) => b.get(5..).is_some_and(|v| {
            let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
            String::from_utf8_lossy(&v[..end]).contains("MariaDB")
        }),
        _ => false,
    }
}

async fn connect_once(cfg: &Config) -> Result<Conn> {
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

/// The rustls error inside a connection error, if TLS failed.
fn rustls_error(e: &mysql_async::Error) -> Option<&rustls::Error> {
    match e {
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => {
            io.get_ref()?.downcast_ref::<rustls::Error>()
        }
        mysql_async::Error::Io(mysql_async::IoError::Tls(mysql_async::TlsError::Tls(e))) => Some(e),
        _ => None,
    }
}

/// A name (DNS name or IP address) the server's certificate is valid for, when the connection
/// failed only because the certificate is not valid for the name binlake connected to.
fn name_in_certificate(e: &mysql_async::Error) -> Option<String> {
    let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
        presented,
        ..
    })) = rustls_error(e)
    else {
        return None;
    };
    // rustls-webpki writes them as `DnsName("db.example")` and `IpAddress(10.0.0.1)`.
    presented.iter().find_map(|p| {
        if let Some(dns) = p
            .strip_prefix("DnsName(\"")
            .and_then(|r| r.strip_suffix("\")"))
        {
            // A wildcard stands for any one label.
            let name = dns.replacen("*.", "binlake.", 1);
            return rustls::pki_types::ServerName::try_from(name.as_str())
                .is_ok()
                .then_some(name);
        }
        let ip = p.strip_prefix("IpAddress(")?.strip_suffix(')')?;
        ip.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string())
    })
}

/// The connection error, as one message that names the TLS problem and the setting to change
/// when TLS is the cause.
fn classify(cfg: &Config, context: String, cause: mysql_async::Error) -> Error {
    let tls = &cfg.mysql.tls;
    let mode = match tls.mode {
        TlsMode::Disabled => "disabled",
        TlsMode::VerifyIdentity => "verify-identity",
        TlsMode::VerifyCa => "verify-ca",
    };
    let ca = match &tls.ca_file {
        Some(p) => format!("the CA in mysql.tls.ca_file ({})", p.display()),
        None => "a CA this host trusts (mysql.tls.ca_file is not set, so the built-in web \
                 roots)"
            .to_string(),
    };
    let problem = match (&cause, rustls_error(&cause)) {
        (mysql_async::Error::Server(s), _)
            if tls.mode == TlsMode::Disabled
                && (s.code == 3159
                    || s.message
                        .to_ascii_lowercase()
                        .contains("insecure transport")) =>
        {
            format!(
                "the server requires TLS (require_secure_transport = ON: {}), and [mysql.tls] \
                 mode is \"disabled\"; {TLS_FIX}",
                s.message
            )
        }
        (mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer), _) => {
            format!(
                "[mysql.tls] mode is \"{mode}\" but the server does not offer TLS; give the \
                 server a certificate (ssl_cert, ssl_key and ssl_ca in its my.cnf) or set \
                 [mysql.tls] mode = \"disabled\""
            )
        }
        (
            _,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )),
        ) => {
            let fix = if tls.mode == TlsMode::VerifyCa {
                "under verify-ca binlake connects as a DNS name or IP address the certificate \
                 carries, and it carries none binlake can use: reissue the certificate with one"
                    .to_string()
            } else {
                format!(
                    "set [mysql] host to a name the certificate carries, or [mysql.tls] mode = \
                     \"verify-ca\" to verify only that {ca} signed it"
                )
            };
            format!(
                "TLS host-name verification failed: the server's certificate is not valid for \
                 \"{}\" ({}); {fix}",
                cfg.mysql.host,
                rustls_error(&cause)
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            )
        }
        (_, Some(e @ rustls::Error::InvalidCertificate(_))) => format!(
            "TLS certificate verification failed ({e}): the server's certificate is not signed \
             by {ca}; set mysql.tls.ca_file to the PEM file of the CA that signed it"
        ),
        (_, Some(e)) => format!(
            "TLS handshake failed ({e}) with [mysql.tls] mode = \"{mode}\"; check that the \
             server's TLS setup (ssl_cert, ssl_key) works and that mysql.tls.ca_file is its CA"
        ),
        (mysql_async::Error::Io(mysql_async::IoError::Tls(e)), None) => {
            format!("TLS setup failed ({e}); is mysql.tls.ca_file a PEM certificate? ({ca})")
        }
        _ => return Error::Mysql { context, cause },
    };
    Error::MysqlTls { context, problem }
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
