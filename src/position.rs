//! Positions in the source's change stream.
//!
//! A [`Position`] names one row change: binlog file, offset of the event that carries it
//! (for events inside a compressed transaction payload, the payload's offset), and the row's
//! index among the rows carried at that offset. A snapshot row is placed at the binlog offset
//! where the stream was when the row was emitted, before any binlog row at that offset
//! (`snapshot: Some(n)`). Invariant: positions are totally ordered and strictly increase along
//! the stream, so "everything after P" is well defined and resumable.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Where a row change sits in the binlog.
/// File and GTID are shared (`Arc`): every change of a transaction points at the same ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Position {
    pub file: Arc<str>,
    pub offset: u64,
    pub row: u32,
    /// The GTID of the transaction, when the server assigns one (`0-1-15` or `uuid:n`).
    pub gtid: Option<Arc<str>>,
    /// For snapshot rows: their index among the snapshot rows emitted at `offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<u32>,
}

impl Position {
    /// Sequence number of the binlog file (`mysql-bin.000042` -> 42). Files are ordered by it,
    /// not by name, so `.999999` < `.1000000`.
    pub fn file_seq(&self) -> u64 {
        file_seq(&self.file)
    }
}

/// Sequence number of a binlog file name (the digits after the last dot).
pub fn file_seq(file: &str) -> u64 {
    file.rsplit_once('.')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

impl Position {
    /// The sort key: snapshot rows at an offset come before the binlog rows at that offset.
    fn sort_key(&self) -> (u64, u64, bool, u32) {
        (
            self.file_seq(),
            self.offset,
            self.snapshot.is_none(),
            self.snapshot.unwrap_or(self.row),
        )
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.offset, self.row)
    }
}

/// Where to start reading: `start`, `end`, `FILE:POS` (events at or after POS),
/// `FILE:POS:ROW` (changes after a printed position), or a GTID set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest binlog the server still has.
    Start,
    /// The server's current end of binlog.
    End,
    /// Changes at or after `offset` in `file` (`row: None`), or strictly after the change
    /// `file:offset:row` (`row: Some`).
    Position {
        file: String,
        offset: u64,
        row: Option<u32>,
    },
    /// Transactions not in this GTID set (MariaDB `d-s-n,...` or MySQL `uuid:1-5,...`).
    Gtid(String),
}

impl FromStr for StartFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "start" => return Ok(StartFrom::Start),
            "end" => return Ok(StartFrom::End),
            _ => {}
        }
        if looks_like_gtid_set(s) {
            return Ok(StartFrom::Gtid(s.to_string()));
        }
        let parts: Vec<&str> = s.split(':').collect();
        let bad = || {
            format!(
                "`{s}` is not a start position: use start, end, FILE:POS (e.g. mysql-bin.000003:4), \
                 FILE:POS:ROW as printed by tail, or a GTID set (0-1-15 or uuid:1-5)"
            )
        };
        match parts.as_slice() {
            [file, off] | [file, off, _] if !file.is_empty() => {
                let offset = off.parse().map_err(|_| bad())?;
                let row = match parts.get(2) {
                    Some(r) => Some(r.parse().map_err(|_| bad())?),
                    None => None,
                };
                Ok(StartFrom::Position {
                    file: file.to_string(),
                    offset,
                    row,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// MariaDB GTIDs are `domain-server-seq`, MySQL's `uuid:interval[:interval]`.
fn looks_like_gtid_set(s: &str) -> bool {
    let mariadb = s.split(',').all(|g| {
        let p: Vec<&str> = g.trim().split('-').collect();
        p.len() == 3
            && p.iter()
                .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
    });
    let mysql = s.split(',').all(|g| {
        let g = g.trim();
        g.len() > 36
            && g.as_bytes().get(36) == Some(&b':')
            && g[..36].bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    });
    mariadb || mysql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(file: &str, offset: u64, row: u32) -> Position {
        Position {
            file: file.into(),
            offset,
            row,
            gtid: None,
            snapshot: None,
        }
    }

    #[test]
    fn orders_by_file_sequence_then_offset_then_row() {
        assert!(pos("b.999999", 900, 0) < pos("b.1000000", 4, 0));
        assert!(pos("b.000002", 4, 7) < pos("b.000002", 5, 0));
        assert!(pos("b.000002", 5, 0) < pos("b.000002", 5, 1));
        let snap = Position {
            snapshot: Some(9),
            ..pos("b.000002", 5, 0)
        };
        assert!(pos("b.000002", 4, 3) < snap && snap < pos("b.000002", 5, 0));
    }

    #[test]
    fn parses_start_positions() {
        assert_eq!("start".parse::<StartFrom>().unwrap(), StartFrom::Start);
        assert_eq!(
            "mysql-bin.000003:1234".parse::<StartFrom>().unwrap(),
            StartFrom::Position {
                file: "mysql-bin.000003".into(),
                offset: 1234,
                row: None
            }
        );
        assert_eq!(
            "mysql-bin.000003:1234:2".parse::<StartFrom>().unwrap(),
            StartFrom::Position {
                file: "mysql-bin.000003".into(),
                offset: 1234,
                row: Some(2)
            }
        );
        assert_eq!(
            "0-1-15,1-2-3".parse::<StartFrom>().unwrap(),
            StartFrom::Gtid("0-1-15,1-2-3".into())
        );
        assert!(matches!(
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5".parse::<StartFrom>(),
            Ok(StartFrom::Gtid(_))
        ));
        let err = "nonsense".parse::<StartFrom>().unwrap_err();
        assert!(err.contains("FILE:POS"), "{err}");
    }
}
