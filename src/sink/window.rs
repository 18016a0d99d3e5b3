//! Windows: the files one Kafka partition's records go to between two commits, and how a
//! window becomes visible all at once.
//!
//! A window holds the records of offsets `start..=end` of one topic-partition, spread over
//! one file per Hive partition. Every file of the window is named
//! `{topic}+{partition}+{start}+{end}.{ext}` (offsets zero-padded to 20 digits), so the names
//! alone say which offsets are in the lake; there is no other record of progress.
//!
//! ## Commit, without a write-ahead log
//! 1. every file is completed under `_tmp/{topic}+{p}+{start}/` (outside every table
//!    directory, so no reader sees it), then moved, inside that directory, to the path it will
//!    have in the lake;
//! 2. the directory is renamed to `…​.ready`: this one atomic rename is the commit point;
//! 3. each file is moved into the lake (a rename never replaces a file), its Hive partition is
//!    registered, and the `.ready` directory is removed; then the Kafka offset is committed
//!    (for monitoring only).
//!
//! A sink that takes over a partition first finishes what a crash interrupted: a `.ready`
//! directory is rolled forward (step 3 again, skipping files already moved), any other
//! directory of that partition is deleted. It then resumes after the highest end offset in
//! the file names, and seeds the position filter from that file's `binlake.last_pos`.
//! Invariant: the final files of a partition never overlap in offsets and never miss an
//! offset that a later file covers.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::kafka::dedup::POS_LEN;

use super::format::{read_last_pos, LakeFile};
use super::rows::RowBuffer;
use super::storage::Storage;

/// The directory of in-progress and committed-but-not-moved windows.
pub const TMP: &str = "_tmp";

/// `{topic}+{partition}+{start}+{end}.{ext}`.
pub fn file_name(topic: &str, partition: i32, start: i64, end: i64, ext: &str) -> String {
    format!("{topic}+{partition}+{start:020}+{end:020}.{ext}")
}

/// (topic, partition, start, end) of a lake file name.
pub fn parse_name(name: &str) -> Option<(&str, i32, i64, i64)> {
    let stem = name
        .strip_suffix(".parquet")
        .or_else(|| name.strip_suffix(".avro"))?;
    let mut parts = stem.rsplitn(4, '+');
    let end = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?;
    Some((topic, partition, start, end))
}

/// This process's mark in the names of its window directories, so that no two sinks ever
/// write into one directory (a stalled former owner and the new one start their windows at
/// the same offset).
fn owner() -> &'static str {
    static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OWNER.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff)
    })
}

/// The window directory of a topic-partition window opened by this process.
pub fn window_dir(topic: &str, partition: i32, start: i64) -> String {
    format!("{TMP}/{topic}+{partition}+{start:020}+{}", owner())
}

/// Whether `name` (an entry of `_tmp`) is the `.ready` directory of the window of
/// `topic`/`partition` starting at `start`, whoever opened it.
pub fn is_ready_of(name: &str, topic: &str, partition: i32, start: i64) -> bool {
    name.ends_with(".ready") && name.starts_with(&format!("{topic}+{partition}+{start:020}+"))
}

/// One file of an open window.
pub struct OpenFile {
    pub rows: RowBuffer,
    pub file: LakeFile,
    /// Its temporary path.
    pub tmp: String,
    /// Partition path under the table directory (`partition=0`).
    pub part_path: String,
    pub part_values: Vec<String>,
}

pub struct Window {
    pub start: i64,
    pub end: i64,
    pub opened: Instant,
    pub value_id: u32,
    pub files: Vec<OpenFile>,
    pub records: u64,
}

/// What a committed file needs afterwards: its Hive partition (and its size, for the
/// metrics).
pub struct Placed {
    pub part_path: String,
    pub part_values: Vec<String>,
    pub bytes: u64,
}

impl Window {
    pub fn new(start: i64, value_id: u32) -> Window {
        Window {
            start,
            end: start,
            opened: Instant::now(),
            value_id,
            files: Vec::new(),
            records: 0,
        }
    }

    /// Bytes of the window's files so far.
    pub fn size(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.file.size() + f.rows.bytes() as u64)
            .max()
            .unwrap_or(0)
    }

    pub fn memory(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.file.memory() + f.rows.bytes() as u64)
            .sum()
    }

    /// Makes the window's files visible (see the module doc). `table_dir`: `{db}/{table}`.
    pub fn commit(
        self,
        storage: &dyn Storage,
        topic: &str,
        partition: i32,
        table_dir: &str,
        ext: &str,
        last_pos: &str,
    ) -> Result<Vec<Placed>> {
        let dir = window_dir(topic, partition, self.start);
        let name = file_name(topic, partition, self.start, self.end, ext);
        let mut placed = Vec::new();
        for mut f in self.files {
            if f.rows.rows() > 0 {
                let batch = f.rows.take_batch()?;
                f.file.write(&batch)?;
            }
            let bytes = f
                .file
                .finish(storage, last_pos)
                .map_err(|e| taken_over(storage, &dir, e))?;
            let rel = format!("{table_dir}/{}/{name}", f.part_path);
            storage
                .rename(&f.tmp, &format!("{dir}/{rel}"))
                .map_err(|e| taken_over(storage, &dir, e))?;
            placed.push(Placed {
                part_path: f.part_path,
                part_values: f.part_values,
                bytes,
            });
        }
        if placed.is_empty() {
            storage.delete(&dir)?;
            return Ok(placed);
        }
        let ready = format!("{dir}.ready");
        storage
            .rename(&dir, &ready)
            .map_err(|e| taken_over(storage, &dir, e))?;
        move_ready(storage, &ready)?;
        Ok(placed)
    }
}

/// `e`, explained, when the window's directory is gone: another sink took the partition
/// over while this one stalled, and fenced the directory off (see `recover`).
fn taken_over(storage: &dyn Storage, dir: &str, e: Error) -> Error {
    match storage.exists(dir) {
        Ok(false) => Error::Storage {
            context: format!("committing the window in {dir}"),
            detail: "another sink took this partition over while this one was stalled (past \
                     the group's session timeout) and fenced the window off; nothing of it \
                     was committed. The sink starts over and rejoins the group"
                .into(),
        },
        _ => e,
    }
}

/// Moves every file of a `.ready` window directory into the lake, then removes it. Another
/// sink may be rolling the same directory forward: a file it moved first is not an error.
fn move_ready(storage: &dyn Storage, ready: &str) -> Result<Vec<String>> {
    let mut moved = Vec::new();
    for e in storage.list(ready)? {
        let Some(rel) = e.path.strip_prefix(&format!("{ready}/")) else {
            continue;
        };
        if !storage.exists(rel)? {
            if let Err(err) = storage.rename(&e.path, rel) {
                if !storage.exists(rel)? {
                    return Err(err);
                }
            }
        }
        moved.push(rel.to_string());
    }
    storage.delete(ready)?;
    Ok(moved)
}

/// Where a partition's consumption resumes, from the lake alone.
#[derive(Debug, Default)]
pub struct Resume {
    /// The first offset not in any file (`None`: no file, start at the beginning).
    pub next: Option<i64>,
    /// The position filter's mark from the last file.
    pub mark: Option<[u8; POS_LEN]>,
    /// Files whose Hive partitions may be missing: those a crash had left in a `.ready`
    /// directory and that were moved now, and those of the partition's last window (a
    /// crash after its files were moved and before every partition was registered leaves
    /// nothing else behind). Registering is idempotent.
    pub to_register: Vec<String>,
}

/// Finishes an interrupted commit of `topic`/`partition` and finds where to resume.
pub fn recover(
    storage: &dyn Storage,
    topic: &str,
    partition: i32,
    table_dir: &str,
) -> Result<Resume> {
    let mut out = Resume::default();
    let prefix = format!("{topic}+{partition}+");
    for d in storage.list_dirs(TMP)? {
        if !d.starts_with(&prefix) {
            continue;
        }
        let path = format!("{TMP}/{d}");
        if d.ends_with(".ready") {
            tracing::info!(dir = %path, "finishing a window commit a stop interrupted");
            out.to_register.extend(move_ready(storage, &path)?);
        } else if d.ends_with(".dead") {
            storage.delete(&path)?;
        } else {
            // The fence: a rename, so that exactly one of this sink and the window's
            // owner (stalled, perhaps about to commit) wins. Renamed away here, the owner's
            // commit finds its directory gone; renamed to `.ready` there first, it is
            // rolled forward here.
            let dead = format!("{path}.dead");
            match storage.rename(&path, &dead) {
                Ok(()) => {
                    tracing::info!(dir = %path, "removing an unfinished window");
                    storage.delete(&dead)?;
                }
                Err(e) => {
                    let ready = format!("{path}.ready");
                    if storage.exists(&ready)? {
                        tracing::info!(dir = %ready, "its owner committed the window meanwhile: finishing it");
                        out.to_register.extend(move_ready(storage, &ready)?);
                    } else if storage.exists(&path)? {
                        return Err(e);
                    }
                }
            }
        }
    }
    let mut last: Option<(i64, String, u64)> = None;
    // (end offset, path) of this partition's files.
    let mut files = Vec::new();
    for e in storage.list(table_dir)? {
        let name = e.path.rsplit('/').next().unwrap_or_default();
        if let Some((t, p, _, end)) = parse_name(name) {
            if t == topic && p == partition {
                files.push((end, e.path.clone()));
                if last.as_ref().is_none_or(|(l, ..)| end > *l) {
                    last = Some((end, e.path.clone(), e.len));
                }
            }
        }
    }
    if let Some((end, ..)) = &last {
        for (e, p) in files {
            if e == *end && !out.to_register.contains(&p) {
                out.to_register.push(p);
            }
        }
    }
    if let Some((end, path, len)) = last {
        out.next = Some(end + 1);
        if let Some(m) = read_last_pos(storage, &path, len)? {
            let bytes = m.as_bytes();
            if bytes.len() == POS_LEN {
                let mut mark = [0u8; POS_LEN];
                mark.copy_from_slice(bytes);
                out.mark = Some(mark);
            } else if !bytes.is_empty() {
                return Err(Error::Storage {
                    context: format!("reading {path}"),
                    detail: format!("binlake.last_pos `{m}` is not a position"),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = file_name("cdc.app.t+x", 2, 0, 17, "parquet");
        assert_eq!(
            n,
            "cdc.app.t+x+2+00000000000000000000+00000000000000000017.parquet"
        );
        assert_eq!(parse_name(&n), Some(("cdc.app.t+x", 2, 0, 17)));
        assert_eq!(parse_name("x.parquet"), None);
    }

    #[test]
    fn recovery_rolls_ready_windows_forward_and_drops_unfinished_ones() {
        use crate::sink::storage::LocalStorage;
        let dir = std::env::temp_dir().join(format!("binlake-window-{}", std::process::id()));
        let s = LocalStorage::new(dir.to_str().expect("utf-8")).expect("root");
        let put = |p: &str| {
            let mut f = s.create(p).expect("create");
            f.write(b"x").expect("write");
            f.finish().expect("finish");
        };
        let name = file_name("cdc.a.t", 0, 10, 19, "avro");
        // A commit interrupted after its commit point: one file moved, one not.
        put(&format!(
            "_tmp/cdc.a.t+0+{:020}.ready/a/t/partition=0/{name}",
            10
        ));
        put(&format!(
            "_tmp/cdc.a.t+0+{:020}.ready/a/t/partition=1/{name}",
            10
        ));
        s.rename(
            &format!("_tmp/cdc.a.t+0+{:020}.ready/a/t/partition=0/{name}", 10),
            &format!("a/t/partition=0/{name}"),
        )
        .expect("move");
        // A window that never reached its commit point, and another partition's window.
        put(&format!("_tmp/cdc.a.t+0+{:020}/f1.tmp", 20));
        put(&format!("_tmp/cdc.a.t+1+{:020}/f2.tmp", 0));
        let r = recover(&s, "cdc.a.t", 0, "a/t").expect_err("the test files are not Avro");
        assert!(r.to_string().contains("not an Avro container file"), "{r}");
        let files: Vec<String> = s
            .list("")
            .expect("list")
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            files,
            [
                format!("_tmp/cdc.a.t+1+{:020}/f2.tmp", 0),
                format!("a/t/partition=0/{name}"),
                format!("a/t/partition=1/{name}"),
            ]
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
