//! `weir run`'s progress bars: on a terminal with `--trigger available-now`, one bar per
//! query over the work its sources had when the run started (files, offsets or rows, from
//! the runtime's backlog events), with the rows read, rows/s and the time left. Log lines
//! are written above the bars ([`write_line`]), so a warning never tears one.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use weir_runtime::QueryProgress;
use weir_runtime::progress::QueryBacklogEvent;

/// The bars of the process, once there are any: log lines go above them.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Writes `line` on stderr, above the progress bars when they are shown.
pub fn write_line(line: &str) {
    let write = || {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    };
    match BARS.get() {
        Some(bars) => bars.suspend(write),
        None => write(),
    }
}

/// The bars of the queries of a run, by query id.
pub struct Bars {
    multi: &'static MultiProgress,
    queries: Mutex<HashMap<String, QueryBar>>,
}

/// One query's bar.
struct QueryBar {
    bar: ProgressBar,
    /// What its positions count.
    unit: String,
    rows: u64,
    batches: u64,
    started: Instant,
}

impl Bars {
    /// Bars drawn on stderr (the caller has checked that it is a terminal).
    pub fn new() -> Self {
        let multi = BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { multi, queries: Mutex::new(HashMap::new()) }
    }

    /// Whether query `id` has a bar: its sources said how much work there is.
    pub fn shows(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// The work of a query's sources: the first event makes its bar, later ones move it.
    pub fn backlog(&self, e: &QueryBacklogEvent) {
        // One unit for all sources: files, offsets or rows; sources counting different
        // things are shown as the mean fraction done, in thousandths.
        let same_unit = e.sources.iter().all(|s| s.unit == e.sources[0].unit);
        let (len, done) = if same_unit {
            (e.sources.iter().map(|s| s.total).sum(), e.sources.iter().map(|s| s.total - s.remaining).sum())
        } else {
            let fraction = |s: &weir_runtime::progress::SourceBacklog| if s.total == 0 { 1.0 } else { (s.total - s.remaining) as f64 / s.total as f64 };
            let mean = e.sources.iter().map(fraction).sum::<f64>() / e.sources.len() as f64;
            (1000, (mean * 1000.0).round() as u64)
        };
        let mut queries = self.lock();
        if len == 0 && !queries.contains_key(&e.id) {
            // Nothing to do: no bar.
            return;
        }
        let entry = queries.entry(e.id.clone()).or_insert_with(|| {
            let unit = if same_unit { e.sources[0].unit.clone() } else { "‰ of the sources' work".to_string() };
            let bar = self.multi.add(ProgressBar::new(len).with_style(style(&unit, true)).with_prefix(e.name.clone()).with_message("0 rows"));
            bar.enable_steady_tick(Duration::from_millis(250));
            QueryBar { bar, unit, rows: 0, batches: 0, started: Instant::now() }
        });
        entry.bar.set_length(len);
        entry.bar.set_position(done);
    }

    /// A batch of a query with a bar ended.
    pub fn progress(&self, p: &QueryProgress) {
        let mut queries = self.lock();
        let Some(q) = queries.get_mut(&p.id) else { return };
        q.rows += p.num_input_rows;
        q.batches += 1;
        let seconds = q.started.elapsed().as_secs_f64().max(1e-3);
        q.bar.set_message(format!("{} rows, {} rows/s", thousands(q.rows), thousands((q.rows as f64 / seconds) as u64)));
    }

    /// A query ended: its bar stays, full if the work was done, and a line says what it did.
    pub fn finish(&self, id: &str, outcome: &str) {
        let Some(q) = self.lock().remove(id) else { return };
        let seconds = q.started.elapsed().as_secs_f64().max(1e-3);
        let rate = thousands((q.rows as f64 / seconds) as u64);
        q.bar.set_style(style(&q.unit, false));
        q.bar.set_message(format!("{} rows, {rate} rows/s, {outcome}", thousands(q.rows)));
        q.bar.abandon();
        write_line(&format!(
            "weir: query '{}': {} rows in {} batches, {:.1} s, {rate} rows/s, {outcome}",
            q.bar.prefix(),
            thousands(q.rows),
            q.batches,
            seconds
        ));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, QueryBar>> {
        self.queries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A bar as wide as the terminal lets it be, then the work done out of the work known at
/// the start, the message (rows, rows/s) and, while running, the time left.
fn style(unit: &str, eta: bool) -> ProgressStyle {
    let eta = if eta { ", ETA {eta}" } else { "" };
    ProgressStyle::with_template(&format!("{{prefix}} [{{wide_bar}}] {{human_pos}}/{{human_len}} {unit} ({{percent}}%) {{msg}}{eta}"))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_grouped() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(2_000_000), "2,000,000");
    }
}
