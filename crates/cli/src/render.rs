//! Printing: stdout output, plain-text tables, times and durations, and the live
//! progress bars of `analyze` (on stderr).

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use graphloop_core::{EventKind, RunEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Writes `text` to stdout, with a final newline if it lacks one. A closed pipe
/// (`graphloop runs list | head`) is not an error worth a message.
pub(crate) fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let written =
        stdout.write_all(text.as_bytes()).and_then(
            |()| {
                if text.ends_with('\n') {
                    Ok(())
                } else {
                    stdout.write_all(b"\n")
                }
            },
        );
    match written.and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::anyhow!("cannot write to stdout: {e}")),
        _ => Ok(()),
    }
}

/// Writes `value` to stdout as pretty JSON.
pub(crate) fn out_json(value: &serde_json::Value) -> anyhow::Result<()> {
    out(&serde_json::to_string_pretty(value)?)
}

/// A plain-text table: a header, rows, columns padded to their widest cell.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text; the last column is not padded (it may hold long notes).
    pub(crate) fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate().take(columns) {
                if i + 1 == columns {
                    text.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            text.trim_end().to_owned()
        };
        let mut out = line(&self.header);
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}

/// A time as RFC 3339 in UTC, to the millisecond: `2025-06-01T09:30:00.125Z`.
pub(crate) fn timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The time from `start` to `end`, if both are known.
pub(crate) fn between(start: Option<SystemTime>, end: Option<SystemTime>) -> Option<Duration> {
    end?.duration_since(start?).ok()
}

/// `850 ms`, `1.23 s`, `2 min 05 s`.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=119_999 => format!("{:.2} s", d.as_secs_f64()),
        _ => format!("{} min {:02} s", d.as_secs() / 60, d.as_secs() % 60),
    }
}

/// One line about an event: its kind, then what it says.
pub(crate) fn describe(event: &RunEvent) -> String {
    let name = event.kind.name();
    match &event.kind {
        EventKind::RunResumed { reason, from_step } => format!("{name} from step {from_step}: {reason}"),
        EventKind::StepStarted { tasks } => format!("{name} {}", tasks.join(", ")),
        EventKind::NodeProgress { task, fraction, message } => {
            format!("{name} {task} {:.0}%: {message}", fraction * 100.0)
        }
        EventKind::NodeRetrying { task, attempt, error, delay_ms } => {
            format!("{name} {task} attempt {attempt} failed: {error} (next in {delay_ms} ms)")
        }
        EventKind::NodeCompleted { task, attempts } => format!("{name} {task} ({attempts} attempt(s))"),
        EventKind::NodeFailed { task, attempts, error } => {
            format!("{name} {task} after {attempts} attempt(s): {error}")
        }
        EventKind::StepCompleted { next } if next.is_empty() => format!("{name}, next: END"),
        EventKind::StepCompleted { next } => format!("{name}, next: {}", next.join(", ")),
        EventKind::RunFailed { error } => format!("{name}: {error}"),
        EventKind::RunWaiting { task, payload } => format!("{name} {task} asks: {payload}"),
        _ => name.to_owned(),
    }
}

/// Batches up to this size keep every contract's finished bar on screen; larger ones show
/// only the running contracts' bars.
const KEEP_FINISHED_BARS_UP_TO: usize = 20;

/// The live view of an `analyze` batch on stderr: an overall bar, and a bar per running
/// contract. indicatif draws nothing when stderr is not a terminal.
pub(crate) struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    keep_finished: bool,
    style: ProgressStyle,
}

impl Progress {
    pub(crate) fn new(total: usize) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall_style = ProgressStyle::with_template(
            "{prefix:.bold} [{elapsed_precise}] [{bar:30.cyan/blue}] {pos}/{len} contracts {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let overall = multi.add(ProgressBar::new(total as u64).with_style(overall_style).with_prefix("analyze"));
        overall.enable_steady_tick(Duration::from_millis(200));
        let style = ProgressStyle::with_template("  {prefix:30!} [{bar:20}] {pos:>3}% {wide_msg:.dim}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        Self { multi, overall, keep_finished: total <= KEEP_FINISHED_BARS_UP_TO, style }
    }

    /// A contract's bar: shown at once in a small batch, from its first event in a large one.
    pub(crate) fn contract(&self, name: &str) -> ContractBar {
        let bar = ProgressBar::hidden().with_style(self.style.clone()).with_prefix(name.to_owned());
        let contract = ContractBar {
            bar,
            multi: self.multi.clone(),
            shown: Arc::new(AtomicBool::new(false)),
            keep: self.keep_finished,
        };
        if self.keep_finished {
            contract.bar.set_message("queued");
            contract.show();
        }
        contract
    }

    /// Counts a finished contract on the overall bar.
    pub(crate) fn done(&self) {
        self.overall.inc(1);
    }

    /// Prints a line above the bars (or plainly, when they are hidden).
    pub(crate) fn say(&self, line: &str) {
        self.multi.suspend(|| eprintln!("{line}"));
    }

    /// Stops drawing: the overall bar stays, with `message`.
    pub(crate) fn finish(&self, message: &str) {
        self.overall.disable_steady_tick();
        self.overall.finish_with_message(message.to_owned());
    }
}

/// The bar of one contract's run. Its clones are the same bar: the follower of the run
/// shows its events, and the batch finishes it once the contract's outcome is known.
#[derive(Clone)]
pub(crate) struct ContractBar {
    /// A handle on the bar's shared state: `MultiProgress::add` draws it in place.
    bar: ProgressBar,
    multi: MultiProgress,
    shown: Arc<AtomicBool>,
    keep: bool,
}

impl ContractBar {
    fn show(&self) {
        if !self.shown.swap(true, Ordering::Relaxed) {
            let _ = self.multi.add(self.bar.clone());
            self.bar.set_length(100);
        }
    }

    /// Shows what an event says: progress, and the step's tasks or the node's message.
    pub(crate) fn event(&self, event: &RunEvent) {
        self.show();
        self.bar.set_position(event.percent.clamp(0.0, 100.0).round() as u64);
        match &event.kind {
            EventKind::RunStarted => self.bar.set_message("started"),
            EventKind::RunResumed { from_step, .. } => self.bar.set_message(format!("resumed from step {from_step}")),
            EventKind::StepStarted { tasks } => self.bar.set_message(tasks.join(", ")),
            EventKind::NodeProgress { task, message, .. } => self.bar.set_message(format!("{task}: {message}")),
            EventKind::NodeRetrying { task, attempt, .. } => {
                self.bar.set_message(format!("{task}: attempt {attempt} failed, retrying"));
            }
            _ => {}
        }
    }

    /// The contract is done: its bar keeps `status` in a small batch, disappears otherwise.
    pub(crate) fn finish(self, status: &str) {
        if self.keep {
            self.show();
            self.bar.finish_with_message(status.to_owned());
        } else {
            self.bar.finish_and_clear();
            if self.shown.load(Ordering::Relaxed) {
                self.multi.remove(&self.bar);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_millis(951_782_400_250); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.250Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_767_225_599); // last second of 2025
        assert_eq!(timestamp(later), "2025-12-31T23:59:59.000Z");
    }

    #[test]
    fn durations_read_well_at_every_scale() {
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(1234)), "1.23 s");
        assert_eq!(duration(Duration::from_secs(125)), "2 min 05 s");
    }

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let mut table = Table::new(&["name", "status", "note"]);
        table.row(vec!["a.md".into(), "completed".into(), String::new()]);
        table.row(vec!["long-name.txt".into(), "rejected".into(), "the contract is empty".into()]);
        assert_eq!(
            table.render(),
            "name           status     note\n\
             a.md           completed\n\
             long-name.txt  rejected   the contract is empty\n"
        );
    }
}
