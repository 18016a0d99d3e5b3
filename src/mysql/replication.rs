//! The live replica connection: registers with the server as a replica, streams the binlog
//! from a start point, and hands batches of changes to the next stage over a bounded channel.
//!
//! Resumption: a `FILE:POS[:ROW]` start dumps `FILE` from its first event and drops changes
//! up to the position, so the table maps that precede a mid-transaction position are seen
//! (costs one read of the file's head, at ~1 GB/s). A GTID start asks the server for the
//! transactions after the set (MariaDB `@slave_connect_state`). Invariant: batches leave in
//! binlog order and the channel's capacity bounds memory (the reader waits when it is full).

use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::BinlogStreamRequest;
use tokio::sync::mpsc;

use crate::change::Change;
use crate::config::{Config, Filter};
use crate::error::{Error, Result};
use crate::mysql::binlog_file::verify_checksum;
use crate::mysql::decoder::{event_type, Decoder, ResumePoint};
use crate::mysql::merge::Merger;
use crate::mysql::server::{self, Flavor};
use crate::mysql::snapshot::{self, BinlogPos, SnapshotProgress};
use crate::position::{file_seq, StartFrom};

/// What the reader hands to the next stage: changes in order, and the state that becomes
/// true once they are delivered.
#[derive(Debug, Default)]
pub struct Batch {
    pub changes: Vec<Change>,
    /// The snapshot's progress including these changes, when it changed.
    pub snapshot: Option<SnapshotProgress>,
    /// The binlog position the stream starts at (first batch only).
    pub started_at: Option<(String, u64)>,
}

/// Streams changes from `start` into `tx` until the receiver is dropped or an error occurs.
/// With `snapshot`, every captured table's existing rows are read and merged into the stream
/// (see `snapshot.rs`): an empty progress plans a new snapshot, a saved one resumes it. Start
/// from `end` for a snapshot-then-stream. Requests on `adhoc` start on-demand snapshots.
/// `fence`: the highest position a previous run may already have delivered; no snapshot row
/// is emitted at or before it (see [`Merger::fence`]).
pub async fn stream(
    cfg: &Config,
    start: StartFrom,
    snapshot: Option<SnapshotProgress>,
    adhoc: Option<mpsc::Receiver<snapshot::AdhocRequest>>,
    fence: Option<crate::position::Position>,
    tx: mpsc::Sender<Batch>,
) -> Result<()> {
    let mut meta = server::connect(cfg).await?;
    let flavor = server::flavor(&mut meta).await?;
    let at = format!("{}:{}", cfg.mysql.host, cfg.mysql.port);
    crate::mysql::check::require_row_events(&mut meta, flavor, &at).await?;
    let collations = server::collations(&mut meta).await?;
    let mut decoder = Decoder::new(collations, Filter::new(&cfg.capture), cfg.capture.key);

    let (file, pos, gtid) = match &start {
        StartFrom::Start => {
            let files = server::binlog_files(&mut meta).await?;
            let first = files.first().ok_or_else(|| {
                Error::Unsupported("the server lists no binary logs; is log_bin on?".into())
            })?;
            (first.0.clone(), 4, None)
        }
        StartFrom::End => {
            let (f, p) = server::binlog_end(&mut meta).await?;
            (f, p, None)
        }
        StartFrom::Position { file, offset, row } => {
            let files = server::binlog_files(&mut meta).await?;
            if !files.iter().any(|(f, _)| f == file) {
                return Err(Error::Unsupported(format!(
                    "binlog file {file} is not on the server any more (purged?); the oldest is {}. \
                     Start from `start`, or re-snapshot",
                    files.first().map(|f| f.0.as_str()).unwrap_or("none")
                )));
            }
            decoder.resume_after(ResumePoint {
                file: file.clone(),
                offset: *offset,
                row: *row,
            });
            (file.clone(), 4, None)
        }
        StartFrom::Gtid(set) => (String::new(), 4, Some(set.clone())),
    };

    let mut conn = server::connect(cfg).await?;
    let mut stmts = vec![format!(
        "SET @master_heartbeat_period = {}",
        cfg.mysql.heartbeat_secs as u64 * 1_000_000_000
    )];
    if flavor == Flavor::MariaDb {
        stmts.push("SET @mariadb_slave_capability = 4".into());
        if let Some(g) = &gtid {
            stmts.push(format!(
                "SET @slave_connect_state = '{}'",
                g.replace('\'', "")
            ));
        }
    }
    for s in &stmts {
        conn.query_drop(s)
            .await
            .map_err(Error::mysql(format!("preparing the replica session ({s})")))?;
    }
    let mut req = BinlogStreamRequest::new(cfg.mysql.server_id).with_pos(pos);
    if !file.is_empty() {
        req = req.with_filename(file.as_bytes());
    }
    if flavor == Flavor::MySql {
        if let Some(g) = &gtid {
            req = req.with_gtid().with_gtid_set(parse_mysql_gtid_set(g)?);
        }
    }
    tracing::info!(file = %file, pos, gtid = ?gtid, server_id = cfg.mysql.server_id, "starting binlog stream");
    let mut stream = conn.get_binlog_stream(req).await.map_err(Error::mysql(
        "requesting the binlog stream (does the user have REPLICATION SLAVE? run `binlake check`)",
    ))?;
    decoder.set_file(&file);

    let mut merger = Merger::new(BinlogPos {
        file_seq: file_seq(&file),
        offset: pos,
    });
    merger.fence = fence;
    // Snapshot workers (the initial snapshot and on-demand ones) all talk to the merger over
    // one channel, which stays open while the stream runs.
    let (snap_tx, mut snap_rx) = mpsc::channel(64);
    let mut snap_task =
        snapshot.map(|p| tokio::spawn(snapshot::run(cfg.clone(), p, snap_tx.clone())));
    let mut adhoc = adhoc;
    let mut adhoc_tasks = tokio::task::JoinSet::new();
    // The logical start: a resume point, not the file head the dump re-reads from.
    let logical = match &start {
        StartFrom::Position { offset, .. } => *offset,
        _ => pos,
    };
    if !file.is_empty() {
        let first = Batch {
            started_at: Some((file.clone(), logical)),
            ..Default::default()
        };
        if tx.send(first).await.is_err() {
            return Ok(());
        }
    }
    let mut payload_offset = 0u64;
    let mut out = Vec::new();
    let observe = crate::metrics::enabled().then(ReadMetrics::new);
    loop {
        let ev = tokio::select! {
            biased;
            Some(m) = snap_rx.recv() => {
                merger.message(m);
                if !decoder.in_transaction() {
                    merger.emit_ready(&decoder.file_arc(), &mut out);
                }
                if !send(&tx, &mut out, &mut merger).await {
                    break;
                }
                continue;
            }
            r = async { snap_task.as_mut().expect("guarded").await }, if snap_task.is_some() => {
                // The initial snapshot ended: surface its error, if any.
                snap_task = None;
                r.map_err(|e| Error::Unsupported(format!("snapshot task: {e}")))??;
                continue;
            }
            Some(req) = async { adhoc.as_mut().expect("guarded").recv().await }, if adhoc.is_some() => {
                adhoc_tasks.spawn(snapshot::run_adhoc(cfg.clone(), req, snap_tx.clone()));
                continue;
            }
            Some(r) = adhoc_tasks.join_next(), if !adhoc_tasks.is_empty() => {
                match r {
                    Ok(Err(e)) => tracing::error!(error = %e, "on-demand snapshot failed"),
                    Err(e) => tracing::error!(error = %e, "on-demand snapshot task failed"),
                    Ok(Ok(())) => {}
                }
                continue;
            }
            ev = stream.next() => match ev {
                Some(ev) => ev,
                None => break,
            },
        };
        let ev = ev.map_err(Error::mysql(format!(
            "reading the binlog stream after {} (the server closed it or sent an error)",
            decoder.file()
        )))?;
        let h = ev.header();
        let ty = h.event_type_raw();
        let offset = if h.log_pos() > 0 {
            (h.log_pos() as u64).saturating_sub(h.event_size() as u64)
        } else {
            payload_offset
        };
        if ty == event_type::TRANSACTION_PAYLOAD {
            payload_offset = offset;
        }
        verify_checksum(&ev, decoder.file(), offset)?;
        if ty == event_type::TABLE_MAP && !decoder.knows_table_map(&ev) {
            let tme: mysql_common::binlog::events::TableMapEvent<'_> =
                ev.read_event().map_err(|e| Error::Corrupt {
                    file: decoder.file().to_string(),
                    offset,
                    detail: e.to_string(),
                })?;
            let (db, table) = (tme.database_name(), tme.table_name());
            if decoder.wants_server_table(&db, &table) {
                let info = server::table_info(&mut meta, flavor, &db, &table).await?;
                decoder.set_server_table(&db, &table, info);
            }
        }
        let first = out.len();
        decoder.handle(&ev, offset, false, &mut out)?;
        // Where the stream has read to. Only forward: at the start of a dump the server
        // resends the file's format description, whose end lies before the start position.
        let read_to = BinlogPos {
            file_seq: file_seq(decoder.file()),
            offset: if ty == event_type::ROTATE {
                4
            } else {
                h.log_pos() as u64
            },
        };
        if (ty == event_type::ROTATE || h.log_pos() > 0) && read_to > merger.pos {
            merger.pos = read_to;
        }
        if let Some(m) = &observe {
            m.event(ty, h.timestamp(), h.log_pos(), merger.pos);
        }
        merger.record(&out[first..]);
        if !decoder.in_transaction() {
            merger.emit_ready(&decoder.file_arc(), &mut out);
        }
        if !send(&tx, &mut out, &mut merger).await {
            break; // the consumer is done
        }
    }
    if let Some(t) = snap_task {
        t.abort();
    }
    Ok(())
}

/// The read position and the lag behind the source, as metrics.
struct ReadMetrics {
    file: metrics::Gauge,
    offset: metrics::Gauge,
    lag: metrics::Gauge,
}

impl ReadMetrics {
    fn new() -> Self {
        ReadMetrics {
            file: metrics::gauge!("binlake_binlog_read_file_number"),
            offset: metrics::gauge!("binlake_binlog_read_offset_bytes"),
            lag: metrics::gauge!("binlake_source_lag_seconds"),
        }
    }

    /// One event read: the position it reached, and the lag from its timestamp. A heartbeat
    /// means the server has nothing newer: no lag. Events the server makes up at the start
    /// of a dump (rotate, format description: position 0 or no timestamp) say nothing.
    fn event(&self, ty: u8, timestamp: u32, log_pos: u32, pos: BinlogPos) {
        self.file.set(pos.file_seq as f64);
        self.offset.set(pos.offset as f64);
        let lag = if ty == event_type::HEARTBEAT {
            0.0
        } else if log_pos == 0
            || timestamp == 0
            || ty == event_type::ROTATE
            || ty == event_type::FORMAT_DESCRIPTION
        {
            return;
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            (now - timestamp as f64).max(0.0)
        };
        self.lag.set(lag);
        crate::metrics::health().set_lag(lag);
    }
}

/// Sends what is ready; false when the consumer has gone.
async fn send(tx: &mpsc::Sender<Batch>, out: &mut Vec<Change>, merger: &mut Merger) -> bool {
    let snapshot = merger.take_progress();
    if out.is_empty() && snapshot.is_none() {
        return true;
    }
    let batch = Batch {
        changes: std::mem::take(out),
        snapshot,
        started_at: None,
    };
    tx.send(batch).await.is_ok()
}

/// `uuid:1-5:7,uuid2:3` -> the SIDs mysql_async sends with COM_BINLOG_DUMP_GTID.
fn parse_mysql_gtid_set(s: &str) -> Result<Vec<mysql_async::Sid<'static>>> {
    s.split(',')
        .map(|part| {
            part.trim()
                .parse::<mysql_async::Sid<'static>>()
                .map_err(|e| Error::Unsupported(format!("GTID set `{part}`: {e}")))
        })
        .collect()
}
