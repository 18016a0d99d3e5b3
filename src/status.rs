//! `binlake status`: what a restart of `binlake run` would do, read from the committed state
//! and the server, without touching either. It shows the committed position, the snapshot's
//! progress, and how far the position is behind the server's binlog end (files and bytes),
//! and whether the server still has the position's binlog file.
//!
//! Invariant: read-only. It reads the offsets store as `run` does at start (the same record
//! or file) and asks the server only `SHOW BINARY LOGS` / `SHOW MASTER STATUS`.

use serde::Serialize;

use crate::config::{Config, OffsetStore};
use crate::error::Result;
use crate::kafka::offsets::{offsets_topic, Store};
use crate::position::file_seq;

/// One table's snapshot progress.
#[derive(Debug, Serialize)]
pub struct TableProgress {
    pub table: String,
    pub rows: u64,
    pub estimated: u64,
    pub done: bool,
}

/// The answer of `binlake status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Where the state is kept (the offsets topic or file).
    pub store: String,
    /// The committed resume point, `FILE:OFFSET[:ROW]`; `None`: nothing committed yet.
    pub committed: Option<String>,
    pub gtid: Option<String>,
    /// `None`: no snapshot is part of the committed state.
    pub snapshot_complete: Option<bool>,
    pub snapshot: Vec<TableProgress>,
    /// The server's binlog end, `FILE:OFFSET`.
    pub server_end: String,
    /// The oldest binlog file the server still has.
    pub server_oldest: Option<String>,
    /// Binlog bytes between the committed position and the end (`None` if purged or unknown).
    pub behind_bytes: Option<u64>,
    pub behind_files: Option<u64>,
    /// The committed position's file is gone from the server: `run` cannot resume.
    pub purged: bool,
}

/// How long `status` waits for the broker (its own reads have 30 s limits; this bounds
/// them all) and for MySQL, before one clear error instead of a hang.
const KAFKA_WAIT: std::time::Duration = std::time::Duration::from_secs(75);
const MYSQL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `f`, or an error naming `what` when it takes longer than `limit`.
async fn within<T>(
    what: &str,
    limit: std::time::Duration,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, f).await.map_err(|_| {
        crate::error::Error::Unsupported(format!(
            "{what}: no answer within {} s; is it running and reachable?",
            limit.as_secs()
        ))
    })?
}

/// Reads the committed state and the server's binlog state.
pub async fn read(cfg: &Config) -> Result<Status> {
    let store = Store::from_config(cfg, None);
    let where_ = match cfg.kafka.offsets {
        OffsetStore::Kafka => format!("topic {}", offsets_topic(cfg)),
        OffsetStore::File => format!(
            "file {}",
            cfg.kafka
                .offsets_file
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        ),
    };
    // Before the first run there is no offsets topic: nothing committed.
    let kafka = cfg.clone();
    let exists = move || -> Result<bool> {
        Ok(match kafka.kafka.offsets {
            OffsetStore::Kafka => {
                crate::kafka::access::check(&kafka.kafka, crate::kafka::access::WAIT)?;
                crate::kafka::topics::Topics::new(&kafka.kafka)?
                    .list()?
                    .contains_key(&offsets_topic(&kafka))
            }
            OffsetStore::File => true,
        })
    };
    let saved = within(
        &format!("reading the committed state ({where_})"),
        KAFKA_WAIT,
        async {
            tokio::task::spawn_blocking(move || match exists()? {
                true => store.load(),
                false => Ok(None),
            })
            .await
            .map_err(|e| crate::error::Error::Unsupported(format!("reading the state: {e}")))?
        },
    )
    .await?
    .unwrap_or_default();
    let (end_file, end_pos, files) = within(
        &format!(
            "asking MySQL at {}:{} for its binlog files",
            cfg.mysql.host, cfg.mysql.port
        ),
        MYSQL_WAIT,
        async {
            let mut conn = crate::mysql::server::connect(cfg).await?;
            let (end_file, end_pos) = crate::mysql::server::binlog_end(&mut conn).await?;
            let files = crate::mysql::server::binlog_files(&mut conn).await?;
            Ok((end_file, end_pos, files))
        },
    )
    .await?;
    let resume = saved.resume_from();
    let (committed, at) = match &resume {
        Some(crate::position::StartFrom::Position { file, offset, row }) => (
            Some(match row {
                Some(r) => format!("{file}:{offset}:{r}"),
                None => format!("{file}:{offset}"),
            }),
            Some((file.clone(), *offset)),
        ),
        _ => (None, None),
    };
    let mut purged = false;
    let (mut behind_bytes, mut behind_files) = (None, None);
    if let Some((file, offset)) = &at {
        match files.iter().position(|(f, _)| f == file) {
            None => purged = true,
            Some(i) => {
                let mut bytes = files[i].1.saturating_sub(*offset);
                for (f, size) in &files[i + 1..] {
                    bytes += if *f == end_file { end_pos } else { *size };
                }
                if *file == end_file {
                    bytes = end_pos.saturating_sub(*offset);
                }
                behind_bytes = Some(bytes);
                behind_files = Some(file_seq(&end_file).saturating_sub(file_seq(file)));
            }
        }
    }
    let snapshot = saved
        .snapshot
        .as_ref()
        .map(|p| {
            p.tables()
                .into_iter()
                .map(|(table, (rows, estimated, done))| TableProgress {
                    table,
                    rows,
                    estimated,
                    done,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Status {
        store: where_,
        committed,
        gtid: saved
            .last
            .as_ref()
            .and_then(|p| p.gtid.as_deref().map(str::to_string)),
        snapshot_complete: saved.snapshot.as_ref().map(|p| p.complete),
        snapshot,
        server_end: format!("{end_file}:{end_pos}"),
        server_oldest: files.first().map(|(f, _)| f.clone()),
        behind_bytes,
        behind_files,
        purged,
    })
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "state:      {}", self.store)?;
        match &self.committed {
            Some(c) => writeln!(
                f,
                "committed:  {c}{}",
                self.gtid
                    .as_ref()
                    .map_or(String::new(), |g| format!(" (gtid {g})"))
            )?,
            None => writeln!(
                f,
                "committed:  nothing yet (the next run starts per [snapshot] mode and --from)"
            )?,
        }
        writeln!(
            f,
            "server:     binlog end {}, oldest file {}",
            self.server_end,
            self.server_oldest.as_deref().unwrap_or("?")
        )?;
        if self.purged {
            writeln!(
                f,
                "behind:     the committed file was PURGED from the server: run cannot resume \
                 (see OPERATIONS.md, recovery from a purged binlog)"
            )?;
        } else if let (Some(b), Some(n)) = (self.behind_bytes, self.behind_files) {
            writeln!(f, "behind:     {b} bytes of binlog, {n} file(s)")?;
        }
        match self.snapshot_complete {
            None => writeln!(f, "snapshot:   none in progress")?,
            Some(true) => writeln!(f, "snapshot:   complete")?,
            Some(false) => writeln!(f, "snapshot:   in progress")?,
        }
        for t in &self.snapshot {
            writeln!(
                f,
                "  {:<40} {:>12} of ~{:<12} {}",
                t.table,
                t.rows,
                t.estimated,
                if t.done { "done" } else { "" }
            )?;
        }
        Ok(())
    }
}
