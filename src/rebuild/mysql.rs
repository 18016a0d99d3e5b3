//! Rebuild into MySQL/MariaDB: the topic's puts and tombstones applied as batched multi-row
//! upserts and deletes, by several connections at once.
//!
//! A full pass never writes into the target table: it fills a staging table (`LIKE` the
//! target when it exists, else created from the schema with `--create`), then swaps it in with
//! one atomic `RENAME TABLE`. Readers see the old table or the rebuilt one, never a half-built
//! one; a crash leaves the old table as it was (the next run drops the stale staging table);
//! and running twice gives the same table, also when the broker already dropped old
//! tombstones. With `--follow`, changes after the pass are applied to the target in place.
//!
//! Invariants: the changes of one key are applied in topic order: a key always goes to the
//! same connection (by hash), and a batch holds one entry per key (the last); the swap
//! happens only after every connection has applied everything read before it.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::sink::rows::Decoded;
use crate::sink::schema::LakeSchema;

use super::sql::{ident, literal, TableDef};

/// Where to write: a server and a database. `Debug` and `Display` never show the password.
#[derive(Clone)]
pub struct MysqlUrl {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub db: String,
    /// The `[mysql]` options (TLS included) when this is the configured server.
    pub config: Option<Box<OptsBuilder>>,
}

impl std::fmt::Display for MysqlUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mysql://{}@{}:{}/{}",
            self.user, self.host, self.port, self.db
        )
    }
}

impl std::fmt::Debug for MysqlUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("tls", &self.config.is_some())
            .finish()
    }
}

impl MysqlUrl {
    /// `mysql://user[:password]@host[:port][/db]` (user and password percent-decoded; the
    /// password may also come from MYSQL_PWD).
    pub fn parse(url: &str) -> Result<MysqlUrl> {
        let shown = crate::config::redact_url(url);
        let bad = |why: &str| {
            Error::Unsupported(format!(
                "`{shown}`: {why}; write mysql://user[:password]@host[:port]/database"
            ))
        };
        let rest = url
            .strip_prefix("mysql://")
            .ok_or_else(|| bad("not a mysql:// URL"))?;
        let (auth, rest) = rest.rsplit_once('@').ok_or_else(|| bad("no user@"))?;
        let (user, password) = match auth.split_once(':') {
            Some((u, p)) => (u, Some(pct_decode(p).ok_or_else(|| bad("bad %-escape"))?)),
            None => (auth, None),
        };
        let (hostport, db) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad("bad port"))?),
            None => (hostport, 3306),
        };
        if host.is_empty() || user.is_empty() {
            return Err(bad("no host or user"));
        }
        Ok(MysqlUrl {
            host: host.to_string(),
            port,
            user: pct_decode(user).ok_or_else(|| bad("bad %-escape"))?,
            password: password.or_else(|| std::env::var("MYSQL_PWD").ok()),
            db: pct_decode(db).ok_or_else(|| bad("bad %-escape"))?,
            config: None,
        })
    }

    /// The configured `[mysql]` server (no database).
    pub fn from_config(cfg: &crate::config::Config) -> Result<MysqlUrl> {
        Ok(MysqlUrl {
            host: cfg.mysql.host.clone(),
            port: cfg.mysql.port,
            user: cfg.mysql.user.clone(),
            password: None,
            db: String::new(),
            config: Some(Box::new(crate::mysql::server::opts(cfg)?)),
        })
    }

    pub fn opts(&self) -> Opts {
        if let Some(o) = &self.config {
            return (**o).clone().into();
        }
        OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(self.password.clone())
            .prefer_socket(false)
            .into()
    }
}

fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Connects and sets the session the literals are written for.
pub async fn connect(opts: Opts, what: &str) -> Result<Conn> {
    let ctx = format!("connecting to {what}");
    let mut conn = Conn::new(opts).await.map_err(Error::mysql(ctx.clone()))?;
    conn.query_drop(
        "SET NAMES utf8mb4, time_zone = '+00:00', sql_mode = \
         'NO_BACKSLASH_ESCAPES,STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
    )
    .await
    .map_err(Error::mysql(format!("{ctx}: setting up the session")))?;
    // Writers touch disjoint keys: no gap locks needed, fewer deadlocks between them.
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await
        .map_err(Error::mysql(format!("{ctx}: setting up the session")))?;
    Ok(conn)
}

/// Runs a statement, again after a deadlock or lock wait timeout (the writers' statements
/// are idempotent: upserts and deletes of keys no other connection touches).
async fn run(conn: &mut Conn, sql: &str, what: impl Fn() -> String) -> Result<()> {
    let mut attempt = 0u32;
    loop {
        match conn.query_drop(sql).await {
            Ok(()) => return Ok(()),
            Err(mysql_async::Error::Server(e)) if matches!(e.code, 1213 | 1205) && attempt < 20 => {
                attempt += 1;
                tracing::debug!(code = e.code, attempt, "retrying after a lock conflict");
                tokio::time::sleep(std::time::Duration::from_millis(10 * attempt as u64)).await;
            }
            Err(e) => return Err(Error::mysql(what())(e)),
        }
    }
}

/// One connection's share of the pending changes: the last entry per key.
#[derive(Default)]
struct Pending {
    entries: HashMap<Box<[u8]>, Entry>,
    bytes: usize,
}

enum Entry {
    /// The row's VALUES tuple and its key condition.
    Put {
        row: String,
        key: String,
    },
    Delete {
        key: String,
    },
}

enum Job {
    Batch {
        puts: Vec<String>,
        deletes: Vec<String>,
    },
    /// Answer once every batch before it is applied.
    Sync(oneshot::Sender<()>),
    /// Run a statement (DDL) on this connection.
    Exec(String, oneshot::Sender<Result<()>>),
    /// Write into this `db`.`table` from now on.
    Retarget(String, oneshot::Sender<()>),
    /// The table's columns changed (ADD COLUMN).
    Columns(Vec<String>, oneshot::Sender<()>),
}

/// How one lake layout feeds the target: the layout (kept alive, its address is the map's
/// key), the layout column of each target column, and the layout columns of the key.
type ColumnMap = (Arc<LakeSchema>, Vec<Option<usize>>, Vec<usize>);

/// Counts of what was applied.
#[derive(Debug, Default, Clone, Copy)]
pub struct Applied {
    pub upserted: u64,
    pub deleted: u64,
}

/// The writer side: routes decoded records to connections in batches.
pub struct Writer {
    def: TableDef,
    db: String,
    /// The table being written (staging during the pass, then the target).
    table: String,
    pending: Vec<Pending>,
    senders: Vec<mpsc::Sender<Job>>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
    hasher: std::collections::hash_map::RandomState,
    batch_rows: usize,
    /// Target column → column of each lake layout seen (by the layout's address).
    maps: HashMap<usize, ColumnMap>,
    pub applied: Applied,
    rt: tokio::runtime::Handle,
}

/// Target and staging names, within MySQL's 64 characters.
pub fn staging_names(table: &str) -> (String, String) {
    let cut = |s: String| s.chars().take(64).collect::<String>();
    let base: String = table.chars().take(50).collect();
    (
        cut(format!("_{base}_rebuild")),
        cut(format!("_{base}_replaced")),
    )
}

impl Writer {
    /// Starts `writers` connections writing into `db`.`table`.
    pub fn start(
        url: &MysqlUrl,
        def: TableDef,
        table: &str,
        writers: usize,
        batch_rows: usize,
        rt: tokio::runtime::Handle,
    ) -> Result<Writer> {
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..writers.max(1) {
            let conn = rt.block_on(connect(url.opts(), &url.to_string()))?;
            let (tx, rx) = mpsc::channel(2);
            senders.push(tx);
            let target = format!("{}.{}", ident(&url.db), ident(table));
            let cols: Vec<String> = def.columns.iter().map(|c| ident(&c.name)).collect();
            let key: Vec<String> = def.key.iter().map(|&k| cols[k].clone()).collect();
            let stmt = Statements {
                target,
                keyless: def.keyless,
                cols,
                key,
                name: format!("{url} writer {i}"),
            };
            tasks.push(rt.spawn(write_loop(conn, rx, stmt)));
        }
        Ok(Writer {
            def,
            db: url.db.clone(),
            table: table.to_string(),
            pending: (0..senders.len()).map(|_| Pending::default()).collect(),
            senders,
            tasks,
            hasher: Default::default(),
            batch_rows: batch_rows.max(1),
            maps: HashMap::new(),
            applied: Applied::default(),
            rt,
        })
    }

    /// Queues one change: a put (`deleted` false) or a delete of its key.
    pub fn push(&mut self, schema: &Arc<LakeSchema>, key: &[u8], d: &Decoded<'_>) -> Result<()> {
        let id = Arc::as_ptr(schema) as usize;
        if !self.maps.contains_key(&id) {
            let cols: Vec<Option<usize>> = self
                .def
                .columns
                .iter()
                .map(|c| schema.columns.iter().position(|l| l.name == c.field))
                .collect();
            let key_cols = self
                .def
                .key
                .iter()
                .map(|&k| {
                    cols[k].ok_or_else(|| {
                        Error::Unsupported(format!(
                            "{}: a record's schema lacks key column `{}`",
                            self.def.source, self.def.columns[k].name
                        ))
                    })
                })
                .collect::<Result<Vec<usize>>>()?;
            self.maps.insert(id, (schema.clone(), cols, key_cols));
        }
        let (_, cols, key_cols) = &self.maps[&id];
        let keyless = self.def.keyless;
        let lit = |out: &mut String, i: usize| literal(out, &d.cells[i], &schema.columns[i]);
        let mut key_sql = String::new();
        key_sql.push('(');
        for (n, &i) in key_cols.iter().enumerate() {
            if keyless {
                if n > 0 {
                    key_sql.push_str(" AND ");
                }
                key_sql.push_str(&ident(&self.def.columns[self.def.key[n]].name));
                key_sql.push_str(" <=> ");
            } else if n > 0 {
                key_sql.push(',');
            }
            lit(&mut key_sql, i)?;
        }
        key_sql.push(')');
        let entry = if d.deleted {
            Entry::Delete { key: key_sql }
        } else {
            let mut row = String::with_capacity(16 * cols.len());
            row.push('(');
            for (n, c) in cols.iter().enumerate() {
                if n > 0 {
                    row.push(',');
                }
                match c {
                    Some(i) => lit(&mut row, *i)?,
                    None => row.push_str("DEFAULT"),
                }
            }
            row.push(')');
            Entry::Put { row, key: key_sql }
        };
        let mut h = self.hasher.build_hasher();
        h.write(key);
        let w = (h.finish() % self.pending.len() as u64) as usize;
        let p = &mut self.pending[w];
        p.bytes += match &entry {
            Entry::Put { row, key } => row.len() + key.len(),
            Entry::Delete { key } => key.len(),
        };
        p.entries.insert(key.into(), entry);
        if p.entries.len() >= self.batch_rows || p.bytes >= 4 << 20 {
            self.flush(w)?;
        }
        Ok(())
    }

    fn flush(&mut self, w: usize) -> Result<()> {
        let p = std::mem::take(&mut self.pending[w]);
        if p.entries.is_empty() {
            return Ok(());
        }
        let (mut puts, mut deletes) = (Vec::new(), Vec::new());
        for (_, e) in p.entries {
            match e {
                Entry::Put { row, key } => {
                    if self.def.keyless {
                        // A keyless row is its own key: remove copies before inserting it.
                        deletes.push(key);
                    }
                    puts.push(row);
                    self.applied.upserted += 1;
                }
                Entry::Delete { key } => {
                    deletes.push(key);
                    self.applied.deleted += 1;
                }
            }
        }
        if self.senders[w]
            .blocking_send(Job::Batch { puts, deletes })
            .is_err()
        {
            return Err(self.failure());
        }
        Ok(())
    }

    /// Hands every queued change to its connection.
    pub fn flush_all(&mut self) -> Result<()> {
        for w in 0..self.pending.len() {
            self.flush(w)?;
        }
        Ok(())
    }

    /// Adds the columns of `newer` (a later schema of the table) that the target lacks.
    /// Drops the columns `current` lacks (a DROP COLUMN at the source), after what was sent.
    pub fn drop_columns_not_in(&mut self, current: &TableDef) -> Result<()> {
        let gone: Vec<String> = self
            .def
            .columns
            .iter()
            .filter(|c| !current.columns.iter().any(|n| n.name == c.name))
            .map(|c| c.name.clone())
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        self.sync()?;
        for name in &gone {
            tracing::info!(column = %name, table = %self.table, "dropping a column the source dropped");
            self.exec(format!(
                "ALTER TABLE {}.{} DROP COLUMN {}",
                ident(&self.db),
                ident(&self.table),
                ident(name)
            ))?;
        }
        let key_names: Vec<String> = self
            .def
            .key
            .iter()
            .map(|&k| self.def.columns[k].name.clone())
            .collect();
        self.def.columns.retain(|c| !gone.contains(&c.name));
        self.def.key = key_names
            .iter()
            .filter_map(|n| self.def.columns.iter().position(|c| &c.name == n))
            .collect();
        self.maps.clear();
        let cols: Vec<String> = self.def.columns.iter().map(|c| ident(&c.name)).collect();
        self.broadcast(|ack| Job::Columns(cols.clone(), ack))
    }

    pub fn add_columns(&mut self, newer: TableDef) -> Result<()> {
        let added: Vec<_> = newer
            .columns
            .into_iter()
            .filter(|c| !self.def.columns.iter().any(|o| o.name == c.name))
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        self.sync()?;
        for c in added {
            let sql = c.sql.clone().ok_or_else(|| {
                Error::Unsupported(format!(
                    "column `{}` was added at the source, but its schema does not say its MySQL \
                     type; add it to {} yourself and run rebuild again",
                    c.name, self.table
                ))
            })?;
            tracing::info!(column = %c.name, %sql, table = %self.table, "adding column");
            self.exec(format!(
                "ALTER TABLE {}.{} ADD COLUMN {} {sql} {}",
                ident(&self.db),
                ident(&self.table),
                ident(&c.name),
                if c.nullable { "NULL" } else { "NOT NULL" }
            ))?;
            self.def.columns.push(c);
        }
        self.maps.clear();
        let cols: Vec<String> = self.def.columns.iter().map(|c| ident(&c.name)).collect();
        self.broadcast(|ack| Job::Columns(cols.clone(), ack))
    }

    /// Applies everything queued and waits until every connection is done with it.
    pub fn sync(&mut self) -> Result<()> {
        self.flush_all()?;
        self.broadcast(Job::Sync)
    }

    /// Sends a job to every connection, then waits until each has acknowledged it (and so
    /// everything queued before it).
    fn broadcast(&mut self, job: impl Fn(oneshot::Sender<()>) -> Job) -> Result<()> {
        let mut acks = Vec::new();
        for s in &self.senders {
            let (tx, rx) = oneshot::channel();
            if s.blocking_send(job(tx)).is_err() {
                return Err(self.failure());
            }
            acks.push(rx);
        }
        for rx in acks {
            if rx.blocking_recv().is_err() {
                return Err(self.failure());
            }
        }
        Ok(())
    }

    /// Runs a statement on the first connection (after `sync`).
    pub fn exec(&mut self, sql: String) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.senders[0].blocking_send(Job::Exec(sql, tx)).is_err() {
            return Err(self.failure());
        }
        match rx.blocking_recv() {
            Ok(r) => r,
            Err(_) => Err(self.failure()),
        }
    }

    /// From now on, write into `table` (after the swap).
    pub fn retarget(&mut self, table: &str) -> Result<()> {
        self.sync()?;
        self.table = table.to_string();
        let target = format!("{}.{}", ident(&self.db), ident(table));
        self.broadcast(|ack| Job::Retarget(target.clone(), ack))
    }

    /// The error of the first connection that failed.
    fn failure(&mut self) -> Error {
        self.senders.clear();
        for t in std::mem::take(&mut self.tasks) {
            if let Ok(Err(e)) = self.rt.block_on(t) {
                return e;
            }
        }
        Error::Unsupported("a rebuild writer stopped".into())
    }

    /// Applies everything and closes the connections.
    pub fn finish(mut self) -> Result<Applied> {
        self.sync()?;
        self.senders.clear();
        for t in std::mem::take(&mut self.tasks) {
            match self.rt.block_on(t) {
                Ok(r) => r?,
                Err(e) => return Err(Error::Unsupported(format!("a rebuild writer failed: {e}"))),
            }
        }
        Ok(self.applied)
    }
}

/// The statements one connection runs.
struct Statements {
    /// `db`.`table`
    target: String,
    keyless: bool,
    cols: Vec<String>,
    key: Vec<String>,
    name: String,
}

impl Statements {
    fn upsert(&self, rows: &[String]) -> String {
        let mut sql = String::with_capacity(rows.iter().map(|r| r.len() + 1).sum::<usize>() + 256);
        sql.push_str("INSERT INTO ");
        sql.push_str(&self.target);
        sql.push_str(" (");
        sql.push_str(&self.cols.join(","));
        sql.push_str(") VALUES ");
        sql.push_str(&rows.join(","));
        if !self.keyless {
            sql.push_str(" ON DUPLICATE KEY UPDATE ");
            let updates: Vec<String> = self
                .cols
                .iter()
                .filter(|c| !self.key.contains(c))
                .map(|c| format!("{c}=VALUES({c})"))
                .collect();
            if updates.is_empty() {
                sql.push_str(&format!("{0}={0}", self.key[0]));
            } else {
                sql.push_str(&updates.join(","));
            }
        }
        sql
    }

    fn delete(&self, keys: &[String]) -> String {
        if self.keyless {
            format!("DELETE FROM {} WHERE {}", self.target, keys.join(" OR "))
        } else {
            format!(
                "DELETE FROM {} WHERE ({}) IN ({})",
                self.target,
                self.key.join(","),
                keys.join(",")
            )
        }
    }
}

async fn write_loop(mut conn: Conn, mut rx: mpsc::Receiver<Job>, mut s: Statements) -> Result<()> {
    while let Some(job) = rx.recv().await {
        match job {
            Job::Batch { puts, deletes } => {
                for chunk in deletes.chunks(1000) {
                    run(&mut conn, &s.delete(chunk), || {
                        format!("{}: deleting from {}", s.name, s.target)
                    })
                    .await?;
                }
                if !puts.is_empty() {
                    run(&mut conn, &s.upsert(&puts), || {
                        format!("{}: writing into {}", s.name, s.target)
                    })
                    .await?;
                }
            }
            Job::Sync(tx) => {
                let _ = tx.send(());
            }
            Job::Retarget(target, tx) => {
                s.target = target;
                let _ = tx.send(());
            }
            Job::Columns(cols, tx) => {
                s.cols = cols;
                let _ = tx.send(());
            }
            Job::Exec(sql, tx) => {
                let r = conn
                    .query_drop(&sql)
                    .await
                    .map_err(Error::mysql(format!("{}: {sql}", s.name)));
                let _ = tx.send(r);
            }
        }
    }
    let _ = conn.disconnect().await;
    Ok(())
}

/// Whether `db`.`table` exists, and its columns.
pub async fn table_columns(conn: &mut Conn, db: &str, table: &str) -> Result<Vec<String>> {
    conn.exec(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND \
         TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        (db, table),
    )
    .await
    .map_err(Error::mysql(format!("reading the columns of {db}.{table}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = MysqlUrl::parse("mysql://ro%40t:p%3Aw@127.0.0.1:3307/restore").unwrap();
        assert_eq!(
            (
                u.user.as_str(),
                u.password.as_deref(),
                u.host.as_str(),
                u.port,
                u.db.as_str()
            ),
            ("ro@t", Some("p:w"), "127.0.0.1", 3307, "restore")
        );
        assert!(MysqlUrl::parse("postgres://x@h/db").is_err());
        assert!(MysqlUrl::parse("mysql://h/db").is_err());
        let (stage, old) = staging_names(&"t".repeat(80));
        assert!(stage.len() <= 64 && old.len() <= 64 && stage != old);
    }
}
