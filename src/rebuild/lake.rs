//! Rebuild into a Parquet snapshot directory (`file:///…` or `hdfs://…`): the table's live
//! rows, in the lake's columns (the table's, then `__op`, `__deleted`, `__pos`, `__ts_ms`,
//! `__kafka_partition`, `__kafka_offset`), as `part-NNNNN.parquet` files.
//!
//! Two passes keep memory to the keys: the first finds, per key, the offset of its last
//! record and whether it is a tombstone; the second re-reads the topic to the same high
//! watermarks and writes exactly those last records that are puts. Should the broker compact
//! the topic between the passes (a last record can only go when a newer one arrived after
//! the start), the count of written rows falls short and the rebuild fails, asking for a rerun.
//!
//! Invariant: the directory appears complete or not at all: files are written under
//! `.{name}.binlake-tmp/` beside it and the directory is renamed into place (an older snapshot
//! of that name is moved aside first and removed after).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{SinkCompression, SinkFormat};
use crate::error::{Error, Result};
use crate::progress::Counter;
use crate::sink::format::LakeFile;
use crate::sink::rows::{Origin, RowBuffer};
use crate::sink::schema::LakeSchema;
use crate::sink::storage::{self, Storage};

use super::read::TopicReader;
use super::{Layouts, Options, Summary};

/// Rows per Parquet file.
const ROWS_PER_FILE: usize = 1 << 20;
/// Rows handed to the Parquet writer at once.
const BATCH_ROWS: usize = 8192;

/// (parent URL, directory name) of a snapshot URL.
fn split(url: &str) -> Result<(String, String)> {
    let trimmed = url.trim_end_matches('/');
    let scheme_end = trimmed.find("://").map_or(0, |i| i + 3);
    match trimmed.rsplit_once('/') {
        Some((parent, name)) if parent.len() > scheme_end && !name.is_empty() => {
            Ok((parent.to_string(), name.to_string()))
        }
        _ => Err(Error::Unsupported(format!(
            "--into {url}: name a directory below the root, e.g. file:///data/restore/orders"
        ))),
    }
}

pub fn into_lake(
    cfg: &crate::config::Config,
    opts: &Options,
    url: &str,
    stop: &AtomicBool,
    rt: tokio::runtime::Handle,
) -> Result<Summary> {
    if opts.follow {
        return Err(Error::Unsupported(
            "--follow applies to MySQL targets; a snapshot directory is written once".into(),
        ));
    }
    let start = Instant::now();
    let (parent, name) = split(url)?;
    let store = storage::open(&parent)?;
    let (mut layouts, def) = Layouts::open(cfg, &opts.topic, rt)?;
    let interrupted = || {
        Error::Unsupported(format!(
            "interrupted before the snapshot was complete; {url} is unchanged"
        ))
    };

    // Pass 1: the last record of every key.
    let mut reader = TopicReader::open(cfg, &opts.topic, false)?;
    let total = reader.total();
    let mut progress = Counter::new("records read (2 passes)", total * 2);
    let mut last: HashMap<Box<[u8]>, (i32, i64, bool)> = HashMap::new();
    let mut newest = super::Newest::default();
    while !reader.caught_up() {
        if stop.load(Ordering::Relaxed) {
            return Err(interrupted());
        }
        reader.poll(Duration::from_millis(200), &mut |rec| {
            newest.offer(&rec);
            let key = rec.key.get(5..).unwrap_or_default();
            match last.get_mut(key) {
                Some(v) => *v = (rec.partition, rec.offset, rec.value.is_none()),
                None => {
                    last.insert(key.into(), (rec.partition, rec.offset, rec.value.is_none()));
                }
            }
            Ok(())
        })?;
        progress.set(reader.read + reader.replays);
    }
    let (records, replays) = (reader.read, reader.replays);
    let live = last.values().filter(|v| !v.2).count() as u64;
    let deleted = last.len() as u64 - live;
    drop(reader);

    // Pass 2: those last records that are puts, into files.
    let tmp = format!(".{name}.binlake-tmp");
    store.delete(&tmp)?;
    // The files have the columns of the newest change.
    let latest = match newest.ids {
        Some((k, v)) => layouts.layout(k, v)?,
        None => layouts.latest()?,
    };
    let mut out = Files {
        store: store.as_ref(),
        dir: tmp.clone(),
        schema: latest.clone(),
        rows: RowBuffer::new(latest.clone()),
        file: None,
        in_file: 0,
        files: 0,
        last_pos: String::new(),
    };
    let mut maps: HashMap<usize, Vec<Option<usize>>> = HashMap::new();
    let mut written = 0u64;
    let mut reader = TopicReader::open(cfg, &opts.topic, false)?;
    while !reader.caught_up() {
        if stop.load(Ordering::Relaxed) {
            store.delete(&tmp)?;
            return Err(interrupted());
        }
        reader.poll(Duration::from_millis(200), &mut |rec| {
            let key = rec.key.get(5..).unwrap_or_default();
            if last.get(key) != Some(&(rec.partition, rec.offset, false)) {
                return Ok(());
            }
            let (layout, _, d) = layouts.decode(&rec)?;
            let map = maps
                .entry(Arc::as_ptr(&layout) as usize)
                .or_insert_with(|| {
                    latest
                        .columns
                        .iter()
                        .map(|c| layout.columns.iter().position(|l| l.name == c.name))
                        .collect()
                });
            if let Some(p) = d.pos {
                out.last_pos.clear();
                out.last_pos.push_str(p);
            }
            let o = Origin {
                topic: &opts.topic,
                partition: rec.partition,
                offset: rec.offset,
                timestamp_ms: rec.timestamp_ms,
            };
            out.push(d.project(map), &o)?;
            written += 1;
            Ok(())
        })?;
        progress.set(total + reader.read + reader.replays);
    }
    out.close()?;
    progress.finish(total * 2);
    if written != live {
        store.delete(&tmp)?;
        return Err(Error::Unsupported(format!(
            "the topic changed between the two passes ({live} live keys, {written} rows found \
             again; the broker compacted it meanwhile): run the rebuild again"
        )));
    }
    let old = format!(".{name}.binlake-old");
    store.delete(&old)?;
    if store.exists(&name)? {
        store.rename(&name, &old)?;
    }
    store.rename(&tmp, &name)?;
    store.delete(&old)?;
    Ok(Summary {
        source: def.source,
        target: format!("{parent}/{name}"),
        records,
        replays,
        upserted: written,
        deleted,
        seconds: start.elapsed().as_secs_f64(),
        ..Summary::default()
    })
}

/// The snapshot's files being written.
struct Files<'a> {
    store: &'a dyn Storage,
    dir: String,
    schema: Arc<LakeSchema>,
    rows: RowBuffer,
    file: Option<LakeFile>,
    in_file: usize,
    files: usize,
    last_pos: String,
}

impl Files<'_> {
    fn push(&mut self, d: crate::sink::rows::Decoded<'_>, o: &Origin<'_>) -> Result<()> {
        self.rows.push(d, o)?;
        if self.rows.rows() >= BATCH_ROWS {
            self.write()?;
        }
        Ok(())
    }

    fn write(&mut self) -> Result<()> {
        if self.rows.rows() == 0 {
            return Ok(());
        }
        let n = self.rows.rows();
        let batch = self.rows.take_batch()?;
        if self.file.is_none() {
            let path = format!("{}/part-{:05}.parquet", self.dir, self.files);
            self.files += 1;
            self.file = Some(LakeFile::create(
                self.store,
                &path,
                &self.schema,
                SinkFormat::Parquet,
                SinkCompression::Snappy,
            )?);
        }
        if let Some(f) = self.file.as_mut() {
            f.write(&batch)?;
        }
        self.in_file += n;
        if self.in_file >= ROWS_PER_FILE {
            self.finish_file()?;
        }
        Ok(())
    }

    fn finish_file(&mut self) -> Result<()> {
        if let Some(f) = self.file.take() {
            f.finish(self.store, &self.last_pos)?;
        }
        self.in_file = 0;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.write()?;
        self.finish_file()?;
        if self.files == 0 {
            // An empty table is still a snapshot: one file with no rows.
            let path = format!("{}/part-00000.parquet", self.dir);
            LakeFile::create(
                self.store,
                &path,
                &self.schema,
                SinkFormat::Parquet,
                SinkCompression::Snappy,
            )?
            .finish(self.store, "")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn snapshot_urls() {
        assert_eq!(
            super::split("file:///data/restore/orders/").unwrap(),
            ("file:///data/restore".to_string(), "orders".to_string())
        );
        assert_eq!(
            super::split("hdfs://127.0.0.1:9000/lake/o").unwrap(),
            ("hdfs://127.0.0.1:9000/lake".to_string(), "o".to_string())
        );
        assert!(super::split("file:///orders").is_err());
    }
}
