//! The binlog reader's side of the snapshot: the `Merger` records changed keys of tables
//! with chunks in flight, holds each chunk until the stream has read past its view, and emits
//! it between transactions with the keys that changed since dropped. See `snapshot.rs` for
//! why that is correct.
//!
//! Invariant: snapshot rows leave only between transactions, at strictly increasing
//! positions, and never after a newer binlog change of their key; the progress it reports
//! covers exactly the chunks emitted.

use std::sync::Arc;

use crate::mysql::snapshot::{raw_key, BinlogPos, Chunk, Message, SnapshotProgress};

/// Changed keys of one table, recorded while it has chunks in flight.
#[derive(Default)]
struct Recording {
    /// Registrations not yet closed by their last chunk: how many began at each position.
    open: std::collections::BTreeMap<BinlogPos, usize>,
    /// (end of the event, key bytes) of every change read since the oldest open
    /// registration began, in read order. A chunk drops only keys changed after its
    /// registration began, so what lies at or before the oldest open one is never needed
    /// again and is let go: the list stays bounded while registrations of a big, busy
    /// table overlap without pause (parallel ranges).
    seen: std::collections::VecDeque<(BinlogPos, Vec<u8>)>,
}

/// The binlog reader's side of the merge: records changed keys of tables with chunks in
/// flight, holds chunks until the stream has reached their view, and emits them between
/// transactions with the keys that changed since dropped.
#[derive(Default)]
pub struct Merger {
    /// End of the last binlog event read.
    pub pos: BinlogPos,
    /// Per table (db, name): what has changed since its chunks registered.
    recording: std::collections::HashMap<(String, String), Recording>,
    pending: Vec<Chunk>,
    snap_offset: u64,
    snap_next: u32,
    /// Rows emitted by the snapshot so far.
    pub rows: u64,
    /// The plan and how far it got, as of the changes emitted so far.
    pub progress: Option<SnapshotProgress>,
    /// `progress` changed since it was last taken.
    progress_changed: bool,
    /// The initial snapshot's workers sent their last chunk; it is complete once those
    /// chunks are emitted too.
    finished: bool,
    /// Resumption fence: the highest position a previous run may have delivered. Records up
    /// to it are a replay, which consumers drop by position (`kafka::dedup`); a snapshot row
    /// emitted at or before it would be dropped too, though its content is new. So no chunk
    /// is emitted until the stream has passed the fence (at the fence's own offset, after its
    /// snapshot index).
    pub fence: Option<crate::position::Position>,
    /// When progress was last logged, and when the snapshot started.
    reported: Option<std::time::Instant>,
    started: Option<std::time::Instant>,
}

impl Merger {
    pub fn new(pos: BinlogPos) -> Self {
        Merger {
            pos,
            ..Default::default()
        }
    }

    /// Records the keys of `changes`, just read in an event ending at `self.pos`.
    pub fn record(&mut self, changes: &[crate::change::Change]) {
        if self.recording.is_empty() {
            return;
        }
        for c in changes {
            let name = (c.table.db.clone(), c.table.table.clone());
            if let Some(Recording { seen, .. }) = self.recording.get_mut(&name) {
                // An update of the key changes two keys: the old and the new one.
                for image in [&c.before, &c.after] {
                    if image.is_some() {
                        let only = crate::change::Change {
                            before: None,
                            after: image.clone(),
                            ..c.clone()
                        };
                        let mut k = Vec::new();
                        crate::output::key_bytes(&only, &mut k);
                        seen.push_back((self.pos, k));
                    }
                }
            }
        }
    }

    /// The progress, if it changed since the last call.
    pub fn take_progress(&mut self) -> Option<SnapshotProgress> {
        if std::mem::take(&mut self.progress_changed) {
            self.progress.clone()
        } else {
            None
        }
    }

    /// Handles a message from the snapshot workers. Returns false once the initial snapshot
    /// is finished.
    pub fn message(&mut self, m: Message) -> bool {
        match m {
            Message::Register { db, table, ack } => {
                *self
                    .recording
                    .entry((db, table))
                    .or_default()
                    .open
                    .entry(self.pos)
                    .or_default() += 1;
                let _ = ack.send(self.pos);
            }
            Message::Plan(p) => {
                self.progress = Some(p);
                self.progress_changed = true;
            }
            Message::Chunk(c) => self.pending.push(c),
            Message::Release { db, table, at } => {
                // Chunks of that registration may still wait (a table without a key sends
                // several from one view before its worker fails): the last of them closes
                // it, so that they are emitted with the keys changed since still dropped.
                let waiting =
                    self.pending.iter_mut().rev().find(|c| {
                        c.registered_at == at && c.table.db == db && c.table.table == table
                    });
                match waiting {
                    Some(c) => c.closes = true,
                    None => self.close_registration(&(db, table), at),
                }
            }
            Message::RangeDone { table, rows } => {
                tracing::info!(%table, rows, "snapshot range done");
            }
            Message::Finished => {
                self.finished = true;
                self.check_complete();
                return false;
            }
        }
        true
    }

    /// Marks the snapshot complete once its workers finished and every chunk of theirs was
    /// emitted: until then the progress (and `/ready`, and a restart) must see it running.
    fn check_complete(&mut self) {
        if !self.finished || self.pending.iter().any(|c| c.range != usize::MAX) {
            return;
        }
        if let Some(p) = self.progress.as_mut().filter(|p| !p.complete) {
            p.complete = true;
            self.progress_changed = true;
            tracing::info!(rows = self.rows, "snapshot complete");
        }
    }

    /// Logs rows done / estimated, rate and ETA per unfinished table, every 5 seconds, when
    /// stderr is not a terminal (on a terminal, `tail` draws bars instead).
    fn report(&mut self) {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return;
        }
        let now = std::time::Instant::now();
        let started = *self.started.get_or_insert(now);
        if self
            .reported
            .is_some_and(|r| now.duration_since(r).as_secs() < 5)
        {
            return;
        }
        self.reported = Some(now);
        let Some(p) = &self.progress else { return };
        let secs = now.duration_since(started).as_secs_f64().max(1e-3);
        let tables = p.tables();
        let rate = self.rows as f64 / secs;
        for (table, (rows, estimate, done)) in tables {
            if done {
                continue;
            }
            let left = estimate.saturating_sub(rows);
            tracing::info!(
                %table,
                rows,
                estimated = estimate,
                rows_per_sec = rate as u64,
                eta_secs = if rate > 0.0 { (left as f64 / rate) as u64 } else { 0 },
                "snapshot progress"
            );
        }
    }

    /// The registration of the table that began at `at` ended: keys recorded at or before
    /// the oldest one still open are let go; with none left, the recording ends.
    fn close_registration(&mut self, name: &(String, String), at: BinlogPos) {
        let Some(r) = self.recording.get_mut(name) else {
            return;
        };
        if let Some(n) = r.open.get_mut(&at) {
            *n -= 1;
            if *n == 0 {
                r.open.remove(&at);
            }
        }
        match r.open.keys().next() {
            None => {
                self.recording.remove(name);
            }
            Some(&oldest) => {
                while r.seen.front().is_some_and(|(p, _)| *p <= oldest) {
                    r.seen.pop_front();
                }
            }
        }
    }

    /// Keys recorded for `db.table` (for tests and metrics).
    pub fn recorded(&self, db: &str, table: &str) -> usize {
        self.recording
            .get(&(db.to_string(), table.to_string()))
            .map_or(0, |r| r.seen.len())
    }

    /// Emits every chunk whose view the stream has reached. Call only between transactions.
    pub fn emit_ready(&mut self, file: &Arc<str>, out: &mut Vec<crate::change::Change>) {
        if !self.pending.is_empty() {
            self.report();
        }
        if self.fenced() {
            return;
        }
        // In arrival order: a range's chunks must be emitted in the order its worker read
        // them, or its progress (`after`, the last key of the chunk emitted last) would go
        // back, and a restart would read the later chunk's rows twice.
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].emit_at <= self.pos {
                let chunk = self.pending.remove(i);
                self.emit(chunk, file, out);
            } else {
                i += 1;
            }
        }
        self.check_complete();
    }

    /// True while emitting here would place snapshot rows at or before the fence.
    fn fenced(&mut self) -> bool {
        let Some(f) = &self.fence else {
            return false;
        };
        let (here, fence) = (
            (self.pos.file_seq, self.pos.offset),
            (f.file_seq(), f.offset),
        );
        if here < fence || (here == fence && f.snapshot.is_none()) {
            return true;
        }
        if here == fence {
            if self.snap_offset != self.pos.offset {
                self.snap_offset = self.pos.offset;
                self.snap_next = 0;
            }
            self.snap_next = self
                .snap_next
                .max(f.snapshot.unwrap_or(0).saturating_add(1));
        }
        self.fence = None;
        false
    }

    fn emit(&mut self, chunk: Chunk, file: &Arc<str>, out: &mut Vec<crate::change::Change>) {
        let name = (chunk.table.db.clone(), chunk.table.table.clone());
        let dropped: std::collections::HashSet<&[u8]> = self
            .recording
            .get(&name)
            .map(|r| {
                r.seen
                    .iter()
                    .filter(|(p, _)| *p > chunk.drop_after)
                    .map(|(_, k)| k.as_slice())
                    .collect()
            })
            .unwrap_or_default();
        if self.snap_offset != self.pos.offset {
            self.snap_offset = self.pos.offset;
            self.snap_next = 0;
        }
        let first = out.len();
        let mut key = Vec::new();
        for row in chunk.rows {
            let c = crate::change::Change {
                op: crate::change::Op::Read,
                table: chunk.table.clone(),
                before: None,
                after: Some(row),
                ts_ms: chunk.read_at_ms,
                pos: crate::position::Position {
                    file: file.clone(),
                    offset: self.pos.offset,
                    row: 0,
                    gtid: None,
                    snapshot: Some(self.snap_next),
                },
                commit: false,
            };
            key.clear();
            crate::output::key_bytes(&c, &mut key);
            if dropped.contains(key.as_slice()) {
                continue;
            }
            self.snap_next += 1;
            out.push(c);
        }
        if out.len() > first {
            if let Some(last) = out.last_mut() {
                last.commit = true;
            }
        }
        let emitted = (out.len() - first) as u64;
        self.rows += emitted;
        if let Some(r) = self
            .progress
            .as_mut()
            .and_then(|p| p.ranges.get_mut(chunk.range))
        {
            if chunk.last_key.is_some() {
                r.after = raw_key(&chunk.last_key);
            }
            r.done |= chunk.range_done;
            r.rows += emitted;
            self.progress_changed = true;
        }
        drop(dropped);
        if chunk.closes {
            self.close_registration(&name, chunk.registered_at);
        }
        drop(chunk.permit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::snapshot::RangeProgress;
    use crate::schema::{Column, KeySource, SqlType, TableSchema};

    fn table() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            db: "d".into(),
            table: "t".into(),
            columns: vec![Column {
                name: "id".into(),
                ty: SqlType::Int {
                    bytes: 4,
                    unsigned: false,
                },
                nullable: false,
                declared: None,
            }],
            key: vec![0],
            key_source: KeySource::PrimaryKey,
            collation: None,
        })
    }

    /// A binlog change of `t` in an event at `offset` of mysql-bin.000001.
    fn change(
        t: &Arc<TableSchema>,
        op: crate::change::Op,
        before: Option<crate::change::Row>,
        after: Option<crate::change::Row>,
        offset: u64,
    ) -> crate::change::Change {
        crate::change::Change {
            op,
            table: t.clone(),
            before,
            after,
            ts_ms: 0,
            pos: crate::position::Position {
                file: "mysql-bin.000001".into(),
                offset,
                row: 0,
                gtid: None,
                snapshot: None,
            },
            commit: true,
        }
    }

    fn chunk(emit_at: u64, permits: &Arc<tokio::sync::Semaphore>) -> Chunk {
        let table = table();
        Chunk {
            range: 0,
            last_key: None,
            range_done: true,
            table,
            rows: vec![vec![crate::change::Value::Int(1)]],
            emit_at: BinlogPos {
                file_seq: 1,
                offset: emit_at,
            },
            drop_after: BinlogPos {
                file_seq: 1,
                offset: emit_at,
            },
            closes: true,
            registered_at: BinlogPos {
                file_seq: 1,
                offset: emit_at,
            },
            read_at_ms: 0,
            permit: permits.clone().try_acquire_owned().expect("a permit"),
        }
    }

    /// The workers' "finished" arrives while a chunk waits for the stream to reach its view:
    /// the snapshot is not complete until that chunk is emitted (issue 15, item 7: `/ready`
    /// and a restart believed it complete with rows still to emit).
    #[test]
    fn complete_only_after_the_last_chunk_is_emitted() {
        let permits = Arc::new(tokio::sync::Semaphore::new(4));
        let mut m = Merger::new(BinlogPos {
            file_seq: 1,
            offset: 100,
        });
        m.message(Message::Plan(SnapshotProgress {
            ranges: vec![RangeProgress {
                db: "d".into(),
                table: "t".into(),
                from_incl: None,
                until: None,
                after: None,
                done: false,
                rows: 0,
                estimate: 1,
            }],
            complete: false,
        }));
        let _ = m.take_progress();
        m.message(Message::Chunk(chunk(200, &permits)));
        m.message(Message::Finished);
        let file: Arc<str> = "mysql-bin.000001".into();
        let mut out = Vec::new();
        m.emit_ready(&file, &mut out);
        assert!(out.is_empty());
        assert!(
            m.take_progress().is_none_or(|p| !p.complete),
            "complete with a chunk still pending"
        );
        m.pos.offset = 200;
        m.emit_ready(&file, &mut out);
        assert_eq!(out.len(), 1);
        let p = m.take_progress().expect("progress after the chunk");
        assert!(p.complete && p.ranges[0].done, "{p:?}");
    }

    fn register(m: &mut Merger) -> BinlogPos {
        let (ack, mut acked) = tokio::sync::oneshot::channel();
        m.message(Message::Register {
            db: "d".into(),
            table: "t".into(),
            ack,
        });
        acked.try_recv().expect("an answer")
    }

    /// Registrations of a big, busy table overlap without pause (parallel ranges): the keys
    /// recorded stay bounded by what changed since the oldest open registration, instead of
    /// growing with every change since the first (issue 15, item 6).
    #[test]
    fn recorded_keys_stay_bounded_while_registrations_overlap() {
        let mut m = Merger::new(BinlogPos {
            file_seq: 1,
            offset: 0,
        });
        let t = table();
        let mut open = std::collections::VecDeque::from([register(&mut m), register(&mut m)]);
        let mut most = 0;
        for i in 0..10_000u64 {
            m.pos.offset = i + 1;
            let row = Some(vec![crate::change::Value::Int(i as i64)]);
            let c = change(&t, crate::change::Op::Update, row.clone(), row, i);
            m.record(std::slice::from_ref(&c));
            // Every 100 changes the oldest registration ends and a new one begins: two are
            // always open.
            if i % 100 == 99 {
                let at = open.pop_front().expect("open");
                m.message(Message::Release {
                    db: "d".into(),
                    table: "t".into(),
                    at,
                });
                open.push_back(register(&mut m));
            }
            most = most.max(m.recorded("d", "t"));
        }
        // Two images per update, at most ~200 changes since the oldest open registration.
        assert!(most <= 402, "{most} keys recorded");
        for at in open {
            m.message(Message::Release {
                db: "d".into(),
                table: "t".into(),
                at,
            });
        }
        assert_eq!(m.recorded("d", "t"), 0);
    }

    /// Three chunks ready at once, the first of another range: the second range's chunks
    /// must be emitted in the order they were read, so that its progress ends at the later
    /// chunk's last key (a swap_remove emitted the later one first and moved `after` back:
    /// a restart then read that chunk twice, seen by kafka_transactions.rs as 496 keys read
    /// twice in committed transactions).
    #[test]
    fn chunks_of_a_range_are_emitted_in_read_order() {
        use mysql_async::Value as My;
        let permits = Arc::new(tokio::sync::Semaphore::new(8));
        let mut m = Merger::new(BinlogPos {
            file_seq: 1,
            offset: 100,
        });
        let range = |n: u64| RangeProgress {
            db: "d".into(),
            table: "t".into(),
            from_incl: None,
            until: None,
            after: None,
            done: false,
            rows: 0,
            estimate: n,
        };
        m.message(Message::Plan(SnapshotProgress {
            ranges: vec![range(1), range(2)],
            complete: false,
        }));
        let mut other = chunk(50, &permits);
        other.range = 0;
        let mut first = chunk(60, &permits);
        first.range = 1;
        first.range_done = false;
        first.last_key = Some(vec![My::Int(1499)]);
        let mut second = chunk(70, &permits);
        second.range = 1;
        second.range_done = false;
        second.last_key = Some(vec![My::Int(1999)]);
        for c in [other, first, second] {
            m.message(Message::Chunk(c));
        }
        let mut out = Vec::new();
        m.emit_ready(&"mysql-bin.000001".into(), &mut out);
        let p = m.take_progress().expect("progress");
        assert_eq!(
            p.ranges[1].after,
            Some(vec![crate::mysql::snapshot::RawValue::Int(1999)]),
            "{p:?}"
        );
    }

    /// A table without a key: its worker sent a chunk of its one view, then failed and
    /// released the registration. The chunk, emitted later, must still drop a key deleted
    /// after the registration began (the release used to end the recording at once, and the
    /// deleted row came back without a tombstone: issue 15, item 4).
    #[test]
    fn a_released_registration_still_drops_changed_keys_from_its_waiting_chunks() {
        let permits = Arc::new(tokio::sync::Semaphore::new(8));
        let mut m = Merger::new(BinlogPos {
            file_seq: 1,
            offset: 10,
        });
        let at = register(&mut m);
        let mut c = chunk(50, &permits);
        c.closes = false;
        c.range_done = false;
        c.registered_at = at;
        c.drop_after = at;
        m.message(Message::Chunk(c));
        // Row 1 (the chunk's only row) is deleted at 20.
        m.pos.offset = 20;
        let before = Some(vec![crate::change::Value::Int(1)]);
        let delete = change(&table(), crate::change::Op::Delete, before, None, 15);
        m.record(std::slice::from_ref(&delete));
        m.message(Message::Release {
            db: "d".into(),
            table: "t".into(),
            at,
        });
        m.pos.offset = 60;
        let mut out = Vec::new();
        m.emit_ready(&"mysql-bin.000001".into(), &mut out);
        assert!(out.is_empty(), "a deleted row came back: {out:?}");
        assert_eq!(m.recorded("d", "t"), 0, "the registration was closed");
    }
}
