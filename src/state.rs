//! The saved position: where a restart resumes. It is written only after everything before it
//! was delivered (for `tail`: printed and flushed), atomically (temporary file, fsync, rename),
//! so a crash at any moment leaves either the old or the new state, and a restart replays at
//! most a prefix, never skips.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mysql::snapshot::SnapshotProgress;
use crate::position::Position;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    /// The last change delivered, if any.
    pub last: Option<Position>,
    /// The binlog position the stream was started from, for a restart before any change.
    pub started_at: Option<(String, u64)>,
    /// Snapshot progress, while a snapshot is part of the run.
    pub snapshot: Option<SnapshotProgress>,
    /// The resumption fence: the highest position any run may already have written to a
    /// table topic. Kept here because the topics alone can show less: a run killed while it
    /// replayed below the fence leaves lower positions at the ends of the partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<Position>,
}

/// The fence a run resumes with: the greater of the committed one and what the topics' last
/// records say. It never moves backwards.
pub fn resume_fence(committed: Option<&Position>, topics: Option<Position>) -> Option<Position> {
    match (committed, topics) {
        (Some(c), Some(t)) => Some(t.max(c.clone())),
        (c, t) => t.or_else(|| c.cloned()),
    }
}

impl SavedState {
    /// Reads a saved state; `None` if the file does not exist.
    pub fn load(path: &Path) -> Result<Option<SavedState>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    file: path.display().to_string(),
                    offset: e.column() as u64,
                    detail: format!(
                    "the saved state is not valid ({e}); delete it to start over, or restore it"
                ),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io {
                context: format!("reading the saved state {}", path.display()),
                cause: e,
            }),
        }
    }

    /// Writes the state atomically: a crash leaves the old or the new file, never a mix.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |e| Error::Io {
            context: format!("saving the state to {}", path.display()),
            cause: e,
        };
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Where the binlog stream resumes: after the last binlog change; for a snapshot row, at
    /// the offset it was placed at (snapshot rows come before the binlog rows there).
    pub fn resume_from(&self) -> Option<crate::position::StartFrom> {
        use crate::position::StartFrom;
        match &self.last {
            Some(p) if p.snapshot.is_some() => Some(StartFrom::Position {
                file: p.file.to_string(),
                offset: p.offset,
                row: None,
            }),
            Some(p) => Some(StartFrom::Position {
                file: p.file.to_string(),
                offset: p.offset,
                row: Some(p.row),
            }),
            None => self.started_at.as_ref().map(|(f, o)| StartFrom::Position {
                file: f.clone(),
                offset: *o,
                row: None,
            }),
        }
    }
}

/// A saved state whose binlog the server has purged cannot be resumed: with `resnapshot`
/// (snapshot mode `when_needed`) it is dropped, so the caller snapshots again; otherwise this
/// is an error that says how to recover (`how` names the way to re-snapshot, `where_` the
/// state's location).
pub async fn drop_if_purged(
    cfg: &crate::config::Config,
    saved: Option<SavedState>,
    resnapshot: bool,
    how: &str,
    where_: &str,
) -> Result<Option<SavedState>> {
    let Some(crate::position::StartFrom::Position { file, .. }) =
        saved.as_ref().and_then(SavedState::resume_from)
    else {
        return Ok(saved);
    };
    let mut conn = crate::mysql::server::connect(cfg).await?;
    if crate::mysql::server::has_binlog(&mut conn, &file).await? {
        return Ok(saved);
    }
    if !resnapshot {
        return Err(Error::Unsupported(format!(
            "the saved position is in binlog file {file}, which the server has purged: changes \
             since then are lost to binlake. Re-snapshot: {how}, or delete {where_} and start \
             over; keep binlogs longer (binlog_expire_logs_seconds) to avoid this"
        )));
    }
    tracing::warn!(%file, "the saved position's binlog was purged: snapshotting the configured tables again (snapshot.mode = when_needed)");
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_atomically_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("binlake-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        assert_eq!(SavedState::load(&path).unwrap(), None);
        let s = SavedState {
            last: Some(Position {
                file: "mysql-bin.000002".into(),
                offset: 400,
                row: 3,
                gtid: Some("0-1-9".into()),
                snapshot: None,
            }),
            started_at: Some(("mysql-bin.000001".into(), 4)),
            snapshot: None,
            fence: None,
        };
        s.save(&path).unwrap();
        assert_eq!(SavedState::load(&path).unwrap(), Some(s.clone()));
        assert!(!path.with_extension("tmp").exists());
        std::fs::write(&path, b"{not json").unwrap();
        let e = SavedState::load(&path).unwrap_err().to_string();
        assert!(e.contains("delete it to start over"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn at(offset: u64, snapshot: Option<u32>) -> Position {
        Position {
            file: "mysql-bin.000003".into(),
            offset,
            row: 0,
            gtid: None,
            snapshot,
        }
    }

    /// A run killed while it replayed below the fence leaves lower positions at the ends of
    /// the partitions than the run before it wrote: the topics alone would move the fence
    /// back (issue 15, item 3), the committed fence keeps it.
    #[test]
    fn the_fence_never_moves_backwards() {
        let earlier_run_wrote = at(9000, Some(4));
        let replay_left_at_the_end = at(5000, None);
        assert_eq!(
            resume_fence(
                Some(&earlier_run_wrote),
                Some(replay_left_at_the_end.clone())
            ),
            Some(earlier_run_wrote.clone())
        );
        assert_eq!(
            resume_fence(
                Some(&replay_left_at_the_end),
                Some(earlier_run_wrote.clone())
            ),
            Some(earlier_run_wrote.clone())
        );
        assert_eq!(resume_fence(None, Some(at(7, None))), Some(at(7, None)));
        assert_eq!(resume_fence(Some(&at(7, None)), None), Some(at(7, None)));
        assert_eq!(resume_fence(None, None), None);
        // A state saved before the fence was part of it still loads.
        let old: SavedState =
            serde_json::from_str(r#"{"last":null,"started_at":null,"snapshot":null}"#).unwrap();
        assert_eq!(old.fence, None);
    }
}
