//! Snapshot progress on an interactive terminal: one bar per table (rows done / estimated
//! rows, rows/s, ETA), redrawn from the progress that travels with the delivered changes.
//! Only when stderr is a terminal; otherwise the snapshot logs progress lines instead.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::mysql::snapshot::SnapshotProgress;

pub struct Bars {
    multi: MultiProgress,
    bars: BTreeMap<String, ProgressBar>,
    style: ProgressStyle,
}

impl Bars {
    /// Bars on stderr, or `None` when stderr is not a terminal.
    pub fn for_terminal() -> Option<Bars> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let style = ProgressStyle::with_template(
            "{prefix:>24} [{bar:30}] {human_pos}/{human_len} rows {rate} eta {eta}",
        )
        .ok()?
        .with_key(
            "rate",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} rows/s", s.per_sec());
            },
        )
        .progress_chars("=> ");
        Some(Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: BTreeMap::new(),
            style,
        })
    }

    /// Redraws from the latest progress.
    pub fn update(&mut self, p: &SnapshotProgress) {
        for (name, (rows, estimate, done)) in p.tables() {
            let bar = self.bars.entry(name.clone()).or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new(estimate.max(1)));
                b.set_style(self.style.clone());
                b.set_prefix(name);
                b
            });
            bar.set_length(estimate.max(rows).max(1));
            bar.set_position(rows);
            if done && !bar.is_finished() {
                bar.set_length(rows.max(1));
                bar.finish();
            }
        }
    }
}

/// One count towards a known total (a rebuild's records / high watermark): a bar with rate
/// and ETA on a terminal, else an info line every 10 seconds.
pub struct Counter {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: u64,
    last_log: std::time::Instant,
}

impl Counter {
    pub fn new(what: &'static str, total: u64) -> Counter {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(Some(total.max(1)), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "[{bar:40}] {human_pos}/{human_len} records {rate} eta {eta}",
            ) {
                b.set_style(style.progress_chars("=> ").with_key(
                    "rate",
                    |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} records/s", s.per_sec());
                    },
                ));
            }
            b
        });
        Counter {
            bar,
            what,
            total,
            last_log: std::time::Instant::now(),
        }
    }

    pub fn set(&mut self, done: u64) {
        match &self.bar {
            Some(b) => b.set_position(done),
            None if self.last_log.elapsed() >= std::time::Duration::from_secs(10) => {
                self.last_log = std::time::Instant::now();
                tracing::info!(done, total = self.total, "{}", self.what);
            }
            None => {}
        }
    }

    pub fn finish(&mut self, done: u64) {
        if let Some(b) = self.bar.take() {
            b.set_position(done);
            b.finish();
        }
    }
}
