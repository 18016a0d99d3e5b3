//! The test workload shared by the pipeline tests: an all-types table, a composite-key
//! table and a keyless one, their initial rows, and a seeded random mix of changes.

use std::time::{Duration, Instant};

use super::stack::Stack;

pub const TABLES: [&str; 3] = ["app.all_types", "app.composite", "app.nopk"];

pub fn schema(stack: &Stack) {
    stack.db.sql(
        "CREATE DATABASE app;
         CREATE TABLE app.all_types (
           id INT PRIMARY KEY, ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT, bi BIGINT,
           ubi BIGINT UNSIGNED, ui INT UNSIGNED, f FLOAT, d DOUBLE, dec1 DECIMAL(65,30),
           dec2 DECIMAL(10,2) NOT NULL DEFAULT 0, c CHAR(3), vc VARCHAR(100),
           l1 VARCHAR(20) CHARACTER SET latin1, tx TEXT, bn BINARY(2), vb VARBINARY(10), bl BLOB,
           dt DATE, dtt DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), y YEAR,
           e ENUM('a','b','c'), st SET('x','y','z'), j JSON, bt BIT(10), g GEOMETRY);
         CREATE TABLE app.composite (tenant VARCHAR(10), id BIGINT, v INT, PRIMARY KEY (id, tenant));
         CREATE TABLE app.nopk (a INT, b VARCHAR(10));",
    );
}

/// Row `i` of all_types: edge values that cycle with `i`.
pub fn all_types_row(i: u64) -> String {
    let k = i % 4;
    match k {
        0 => format!(
            "({i}, -128, 65535, -8388608, -9223372036854775808, 18446744073709551615, 4294967295, \
             1.5, -0.25, '-99999999999999999999999999999999999.999999999999999999999999999999', \
             -0.50, 'abc', 'emoji 😀 {i}', 'café', 'long text {i}', x'FF00', x'00', x'DEADBEEF', \
             '1000-01-01', '9999-12-31 23:59:59.999999', '1970-01-01 00:00:01.000001', \
             '-838:59:59.000000', 1901, 'a', 'x,z', '{{\"k\": [1, 2, {i}]}}', b'1111111111', \
             ST_GeomFromText('POINT(1 2)'))"
        ),
        1 => format!(
            "({i}, 127, 0, 8388607, 9223372036854775807, 0, 0, -2.5, 0.1, '0', 12345678.99, '', '', \
             '', '', x'0000', x'', x'', '2024-02-29', '2024-02-29 12:00:00', \
             '2038-01-19 03:14:07.999999', '838:59:59.999999', 2155, 'c', '', '[]', b'0', \
             ST_GeomFromText('LINESTRING(0 0, 1 1)'))"
        ),
        2 => format!(
            "({i}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, \
             NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        ),
        _ => format!(
            "({i}, 1, 2, 3, 4, 5, 6, 0.75, 12345.125, '0.000000000000000000000000000001', -99999999.99, \
             'x', 'tab\\there', 'é', 'newline\\nhere', x'0102', x'7F', x'00FF00', '2000-01-01', \
             '1999-12-31 23:59:59', NULL, '00:00:00.000001', 2000, 'b', 'x,y,z', 'null', b'101', \
             NULL)"
        ),
    }
}

/// A small deterministic generator (xorshift), seeded per test so failures replay.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn initial_rows(stack: &Stack, n: u64) {
    let rows: Vec<String> = (0..n).map(all_types_row).collect();
    stack.db.sql(&format!(
        "INSERT INTO app.all_types VALUES {}",
        rows.join(",")
    ));
    let comp: Vec<String> = (0..n)
        .map(|i| format!("('t{}', {i}, {})", i % 3, i * 7))
        .collect();
    stack.db.sql(&format!(
        "INSERT INTO app.composite VALUES {}",
        comp.join(",")
    ));
    let nopk: Vec<String> = (0..n).map(|i| format!("({i}, 'b{i}')")).collect();
    stack
        .db
        .sql(&format!("INSERT INTO app.nopk VALUES {}", nopk.join(",")));
}

/// `ops` random transactions: inserts, updates (also of primary keys), deletes, multi-row.
pub fn workload(stack: &Stack, rng: &mut Rng, ops: usize, key_space: u64) {
    let mut batch = Vec::new();
    for _ in 0..ops {
        let id = rng.below(key_space);
        let sql = match rng.below(9) {
            0 => format!("INSERT IGNORE INTO app.all_types VALUES {}", all_types_row(id + key_space)),
            1 => format!(
                "UPDATE app.all_types SET vc = 'upd {}', dec1 = {}.5, dtt = NOW(6) WHERE id = {id}",
                rng.next(),
                rng.below(1000)
            ),
            2 => format!("DELETE FROM app.all_types WHERE id = {id}"),
            3 => format!(
                "UPDATE IGNORE app.all_types SET id = {} WHERE id = {id}",
                id + 3 * key_space + rng.below(1000)
            ),
            4 => format!(
                "INSERT INTO app.composite VALUES ('t{}', {id}, 1) ON DUPLICATE KEY UPDATE v = v + 1",
                rng.below(5)
            ),
            5 => format!(
                "UPDATE IGNORE app.composite SET tenant = 'moved' WHERE id = {id} LIMIT 1"
            ),
            6 => format!(
                "START TRANSACTION; DELETE FROM app.composite WHERE id = {id}; \
                 UPDATE app.all_types SET ti = (IFNULL(ti, 0) + 1) % 100 WHERE id BETWEEN {id} AND {}; COMMIT",
                id + 20
            ),
            7 => format!("UPDATE app.nopk SET b = 'n{}' WHERE a = {id}", rng.next() % 1000),
            _ => format!("DELETE FROM app.nopk WHERE a = {id}"),
        };
        batch.push(sql);
        if batch.len() == 10 {
            stack.db.sql(&(batch.join(";\n") + ";"));
            batch.clear();
        }
    }
    if !batch.is_empty() {
        stack.db.sql(&(batch.join(";\n") + ";"));
    }
}

/// Waits for `child` to exit by itself; panics after `limit`.
pub fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s.code();
        }
        assert!(
            start.elapsed() < limit,
            "binlake did not stop within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn sigterm(child: &mut std::process::Child) -> Option<i32> {
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let start = Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s.code();
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sets the flag when dropped: a background writer in a `std::thread::scope` that loops
/// until the flag is set stops also when the scope's body panics (the scope would otherwise
/// wait for it forever).
pub struct StopOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The seed of a randomized test: `var` when set (to replay a run), else the clock's
/// nanoseconds (odd, never 0, as [`Rng`] needs).
pub fn seed_from_env(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

/// A count from `var`, or `default` when it is unset or not a number.
pub fn count_from_env(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
