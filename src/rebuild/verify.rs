//! `rebuild --verify`: is the rebuilt table equal to the source table? Both are cut into the
//! same chunks along the primary key (bounds taken from the source, the last chunk open
//! ended so extra rows at either end count); each server sums its chunk (row count and the
//! XOR of a 64-bit hash of every row), and only chunks that differ are read row by row to
//! name the differing keys.
//!
//! Invariant: a row hashes the same on both sides only if every column's value is the same
//! (columns are hashed by name in the same order, NULL marked apart from any value, both
//! sessions at time zone +00:00); equal tables therefore always verify, and a difference in any
//! column of any row shows, except for a 64-bit hash collision.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use crate::error::{Error, Result};

use super::sql::ident;

/// Rows per chunk.
const CHUNK: u64 = 10_000;
/// Differing keys listed at most.
const MAX_KEYS: usize = 20;

/// One side of the comparison.
pub struct Side<'a> {
    pub conn: &'a mut Conn,
    /// `db`.`table`, quoted.
    pub table: String,
    pub label: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub source_rows: u64,
    pub target_rows: u64,
    pub chunks: u64,
    pub differing_chunks: u64,
    /// Keys (as SQL literals) whose rows differ, are missing or are extra.
    pub keys: Vec<String>,
}

impl Report {
    pub fn equal(&self) -> bool {
        self.differing_chunks == 0 && self.source_rows == self.target_rows
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.equal() {
            write!(
                f,
                "verified: {} rows equal in {} chunks",
                self.source_rows, self.chunks
            )
        } else {
            write!(
                f,
                "DIFFERENT: source {} rows, target {} rows, {} of {} chunks differ",
                self.source_rows, self.target_rows, self.differing_chunks, self.chunks
            )?;
            if !self.keys.is_empty() {
                write!(f, "; keys: {}", self.keys.join(" "))?;
            }
            Ok(())
        }
    }
}

/// The per-row hash over `columns`.
fn row_hash(columns: &[String]) -> String {
    let vals: Vec<String> = columns
        .iter()
        .map(|c| format!("IFNULL(HEX(CAST({c} AS BINARY)), 'N')"))
        .collect();
    format!(
        "CAST(CONV(LEFT(MD5(CONCAT_WS('|', {})), 16), 16, 10) AS UNSIGNED)",
        vals.join(", ")
    )
}

/// `(k1,k2) > (?,?)`-style bounds over the key.
fn range(key: &[String], lower: bool, upper: bool) -> String {
    let k = format!("({})", key.join(","));
    let marks = format!("({})", vec!["?"; key.len()].join(","));
    match (lower, upper) {
        (true, true) => format!("{k} > {marks} AND {k} <= {marks}"),
        (true, false) => format!("{k} > {marks}"),
        (false, true) => format!("{k} <= {marks}"),
        (false, false) => "1=1".into(),
    }
}

/// Compares `source` and `target` over `columns` (MySQL names), chunked along `key` (empty
/// for a table without primary key: one chunk).
pub async fn compare(
    source: Side<'_>,
    target: Side<'_>,
    columns: &[String],
    key: &[String],
) -> Result<Report> {
    for conn in [&mut *source.conn, &mut *target.conn] {
        conn.query_drop("SET time_zone = '+00:00'")
            .await
            .map_err(Error::mysql("setting the time zone for --verify"))?;
    }
    let cols: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let key: Vec<String> = key.iter().map(|c| ident(c)).collect();
    let hash = row_hash(&cols);
    let mut report = Report::default();
    let mut lower: Option<Vec<Value>> = None;
    loop {
        // The next bound: the CHUNK-th key after `lower` in the source.
        let upper: Option<Vec<Value>> = if key.is_empty() {
            None
        } else {
            let sql = format!(
                "SELECT {k} FROM {t} WHERE {r} ORDER BY {k} LIMIT 1 OFFSET {}",
                CHUNK - 1,
                k = key.join(","),
                t = source.table,
                r = range(&key, lower.is_some(), false),
            );
            let row: Option<mysql_async::Row> = source
                .conn
                .exec_first(sql, lower.clone().unwrap_or_default())
                .await
                .map_err(Error::mysql(format!("{}: chunk bounds", source.label)))?;
            row.map(|r| r.unwrap())
        };
        let cond = range(&key, lower.is_some(), upper.is_some());
        let params: Vec<Value> = lower
            .iter()
            .chain(upper.iter())
            .flat_map(|v| v.iter().cloned())
            .collect();
        let mut sums = Vec::new();
        for (conn, table) in [
            (&mut *source.conn, &source.table),
            (&mut *target.conn, &target.table),
        ] {
            let sql = format!(
                "SELECT COUNT(*), CAST(IFNULL(BIT_XOR({hash}), 0) AS UNSIGNED) FROM {table} \
                 WHERE {cond}"
            );
            let r: Option<(u64, u64)> = conn
                .exec_first(sql, params.clone())
                .await
                .map_err(Error::mysql(format!("checksumming {table}")))?;
            sums.push(r.unwrap_or((0, 0)));
        }
        report.chunks += 1;
        report.source_rows += sums[0].0;
        report.target_rows += sums[1].0;
        if sums[0] != sums[1] {
            report.differing_chunks += 1;
            if report.keys.len() < MAX_KEYS && !key.is_empty() {
                let mut seen: Vec<HashMap<String, u64>> = Vec::new();
                for (conn, table) in [
                    (&mut *source.conn, &source.table),
                    (&mut *target.conn, &target.table),
                ] {
                    let sql = format!(
                        "SELECT {hash}, {k} FROM {table} WHERE {cond}",
                        k = key.join(",")
                    );
                    let got: Vec<mysql_async::Row> = conn
                        .exec(sql, params.clone())
                        .await
                        .map_err(Error::mysql(format!("reading keys of {table}")))?;
                    seen.push(
                        got.into_iter()
                            .map(|r| {
                                let vals = r.unwrap();
                                let h = match vals.first() {
                                    Some(Value::UInt(h)) => *h,
                                    Some(Value::Int(h)) => *h as u64,
                                    _ => 0,
                                };
                                let k: Vec<String> =
                                    vals[1..].iter().map(|v| v.as_sql(true)).collect();
                                (k.join(","), h)
                            })
                            .collect(),
                    );
                }
                let mut diff: Vec<String> = seen[0]
                    .iter()
                    .filter(|(k, h)| seen[1].get(*k) != Some(h))
                    .map(|(k, _)| k.clone())
                    .chain(
                        seen[1]
                            .keys()
                            .filter(|k| !seen[0].contains_key(*k))
                            .cloned(),
                    )
                    .collect();
                diff.sort();
                for k in diff {
                    if report.keys.len() < MAX_KEYS {
                        report.keys.push(format!("({k})"));
                    }
                }
            }
        }
        match upper {
            Some(u) => lower = Some(u),
            None => break,
        }
    }
    Ok(report)
}
