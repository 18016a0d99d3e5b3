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
