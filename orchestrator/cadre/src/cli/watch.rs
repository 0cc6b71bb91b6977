//! The live faces of the command line: the display of `cadre watch`, `cadre submit --wait` and
//! `cadre status --watch` (the commands themselves are in `tasks.rs` and `admin.rs`).
//!
//! Each has two faces, chosen by [`Face::detect`]. On a terminal (stdout is a tty and
//! `--plain` is not given) it draws: one indicatif bar for one task ([`TaskBar`]); a board
//! for a filter ([`Board`]): a summary line counting tasks by state and a bounded number of
//! bars for unfinished tasks; the status tree redrawn in place. Anywhere else it prints plain
//! text that pipes, logs and scripts can keep: one line per event ([`Lines`]), one snapshot per
//! interval.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Result, anyhow};
use cadre_proto::TaskState;
use cadre_proto::v1;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::render::{event_line, state_name};
use cadre_client::Client;

/// How live output is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Face {
    /// Plain lines, for pipes, files and `--plain`.
    Plain,
    /// Redrawn in place on a terminal.
    Live,
}

impl Face {
    /// [`Face::Live`] when stdout is a terminal and `plain` is not asked for.
    pub(super) fn detect(plain: bool) -> Face {
        if !plain && std::io::stdout().is_terminal() {
            Face::Live
        } else {
            Face::Plain
        }
    }
}

/// How a watch ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// The node closed the stream (a one-task watch after its terminal event); the last state
    /// any non-progress event carried.
    Closed(Option<TaskState>),
    /// Ctrl-C.
    Interrupted,
}

/// Where a watch's events go.
pub(super) trait Sink {
    /// Shows one event.
    fn event(&mut self, e: &v1::TaskEvent) -> Result<()>;
    /// The stream is over, however it ended: leave the display in its final form.
    fn finish(&mut self);
}

/// Streams the events `req` selects into `sink` until the node closes the stream or Ctrl-C.
pub(super) async fn follow(client: &Client, req: v1::WatchRequest, sink: &mut dyn Sink) -> Result<Ended> {
    let result = pump(client, req, sink).await;
    sink.finish();
    result
}

/// The client's watch resumes from its last cursor when the stream breaks, so a node restart
/// mid-watch shows every event once.
async fn pump(client: &Client, req: v1::WatchRequest, sink: &mut dyn Sink) -> Result<Ended> {
    let mut stream = client.watch(req);
    let interrupted = ctrl_c();
    tokio::pin!(interrupted);
    let mut last = None;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(e) = message.transpose()? else {
                    return Ok(Ended::Closed(last));
                };
                if !e.is_progress {
                    last = TaskState::from_wire(e.state).ok();
                }
                sink.event(&e)?;
            }
            () = &mut interrupted => return Ok(Ended::Interrupted),
        }
    }
}

/// Resolves on Ctrl-C; never, if the signal cannot be caught (the default handler then ends the
/// process as before).
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One line per event on stdout: cursor, task, per-task sequence, state, attempt, detail.
pub(super) struct Lines;

impl Sink for Lines {
    fn event(&mut self, e: &v1::TaskEvent) -> Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", event_line(e))?;
        out.flush()?;
        Ok(())
    }

    fn finish(&mut self) {}
}

/// Shows nothing (`submit --wait --json` prints only the finished task).
pub(super) struct Quiet;

impl Sink for Quiet {
    fn event(&mut self, _: &v1::TaskEvent) -> Result<()> {
        Ok(())
    }

    fn finish(&mut self) {}
}

/// Bar positions per whole task: progress fractions are shown to 0.1%.
const BAR_LEN: u64 = 1000;

/// ASCII spinner frames (the last one is shown once the bar is finished).
const TICKS: &str = "|/-\\ ";

fn style(template: &str) -> Result<ProgressStyle> {
    Ok(ProgressStyle::with_template(template)
        .map_err(|e| anyhow!("bad progress template: {e}"))?
        .progress_chars("=> ")
        .tick_chars(TICKS))
}

/// Puts one event on a task's bar: position from its progress fraction (a new attempt starts
/// from zero, success fills it), message from its state, attempt and detail.
fn show(bar: &ProgressBar, e: &v1::TaskEvent, with_type: bool) {
    let state = TaskState::from_wire(e.state).ok();
    if e.is_progress {
        bar.set_position((e.progress.clamp(0.0, 1.0) * BAR_LEN as f64).round() as u64);
    } else {
        match state {
            Some(TaskState::Succeeded) => bar.set_position(BAR_LEN),
            Some(TaskState::Queued | TaskState::Running | TaskState::Retrying) => bar.set_position(0),
            _ => {}
        }
    }
    let mut msg = String::new();
    if with_type && !e.task_type.is_empty() {
        msg.push_str(&e.task_type);
        msg.push(' ');
    }
    msg.push_str(state_name(e.state));
    msg.push_str(&format!(" attempt {}", e.attempt));
    if !e.message.is_empty() {
        msg.push_str(": ");
        msg.push_str(&e.message);
    }
    bar.set_message(msg);
}

/// One task on a terminal: its id, then a bar with the elapsed time, progress, type, state,
/// attempt and the latest detail; it ends filled on success and stays where it stopped otherwise.
pub(super) struct TaskBar {
    /// The bar, drawn on stdout.
    bar: ProgressBar,
    /// The state of the last non-progress event.
    state: Option<TaskState>,
}

impl TaskBar {
    /// A bar for task `id`, drawn on stdout.
    pub(super) fn new(id: &str) -> Result<TaskBar> {
        let bar = ProgressBar::with_draw_target(Some(BAR_LEN), ProgressDrawTarget::stdout()).with_style(
            style("{spinner} [{elapsed_precise}] [{bar:30}] {percent:>3}% {wide_msg}")?,
        );
        // The id on a line of its own, so the bar leaves room for the message.
        bar.println(format!("task {id}"));
        bar.enable_steady_tick(Duration::from_millis(120));
        Ok(TaskBar { bar, state: None })
    }
}

impl Sink for TaskBar {
    fn event(&mut self, e: &v1::TaskEvent) -> Result<()> {
        if !e.is_progress {
            self.state = TaskState::from_wire(e.state).ok();
        }
        show(&self.bar, e, true);
        Ok(())
    }

    fn finish(&mut self) {
        if self.state == Some(TaskState::Succeeded) {
            self.bar.finish();
        } else {
            self.bar.abandon();
        }
    }
}

/// A filter on a terminal: a summary line (the filter, unfinished tasks by state, finished
/// tasks by outcome) over at most `max_rows` bars of unfinished tasks, oldest first; tasks past
/// that are counted as "+k more" and get a bar when one frees up. Each finished task leaves
/// its final event line above the board.
pub(super) struct Board {
    /// Draws the summary and the rows on stdout.
    multi: MultiProgress,
    /// The first line.
    summary: ProgressBar,
    /// What is watched, for the summary.
    filter: String,
    /// Every unfinished task seen, by id.
    unfinished: HashMap<String, Row>,
    /// Unfinished tasks without a bar, in arrival order (may hold ids that finished since).
    waiting: VecDeque<String>,
    /// How many rows have a bar.
    shown: usize,
    /// At most this many bars.
    max_rows: usize,
    /// Finished tasks by final state.
    finished: BTreeMap<&'static str, u64>,
    /// The style of a row.
    row_style: ProgressStyle,
}

/// One unfinished task on the board.
struct Row {
    /// Its state, for the summary counts.
    state: TaskState,
    /// Its last event, to draw a bar that is given later.
    last: v1::TaskEvent,
    /// Its bar, when it has one.
    bar: Option<ProgressBar>,
}

impl Board {
    /// A board for `filter` (shown in the summary) with at most `max_rows` task bars.
    pub(super) fn new(filter: String, max_rows: usize) -> Result<Board> {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let summary = multi.add(ProgressBar::new_spinner().with_style(style("{spinner} {wide_msg}")?));
        summary.enable_steady_tick(Duration::from_millis(120));
        let board = Board {
            multi,
            summary,
            filter,
            unfinished: HashMap::new(),
            waiting: VecDeque::new(),
            shown: 0,
            max_rows: max_rows.max(1),
            finished: BTreeMap::new(),
            row_style: style("  {prefix} [{bar:12}] {percent:>3}% {wide_msg}")?,
        };
        board.refresh_summary();
        Ok(board)
    }

    /// Gives `id` a bar at the bottom, if it is unfinished and there is room.
    fn give_bar(&mut self, id: &str) -> bool {
        if self.shown >= self.max_rows {
            return false;
        }
        let Some(row) = self.unfinished.get_mut(id) else {
            return false;
        };
        if row.bar.is_none() {
            let bar = self.multi.add(
                ProgressBar::new(BAR_LEN)
                    .with_style(self.row_style.clone())
                    .with_prefix(id.to_string()),
            );
            show(&bar, &row.last, true);
            row.bar = Some(bar);
            self.shown += 1;
        }
        true
    }

    fn refresh_summary(&self) {
        let mut active: BTreeMap<usize, (TaskState, u64)> = BTreeMap::new();
        for row in self.unfinished.values() {
            let order = TaskState::ALL.iter().position(|s| *s == row.state).unwrap_or(0);
            active.entry(order).or_insert((row.state, 0)).1 += 1;
        }
        let count = |(state, n): (TaskState, u64)| format!("{n} {}", state.as_str().to_lowercase());
        let active: Vec<String> = active.into_values().map(count).collect();
        let finished: Vec<String> = TaskState::ALL
            .iter()
            .filter_map(|s| self.finished.get(s.as_str()).map(|n| count((*s, *n))))
            .collect();
        let hidden = self.unfinished.len() - self.shown;
        let mut msg = format!(
            "{}: {} unfinished ({}) | {} finished ({})",
            self.filter,
            self.unfinished.len(),
            if active.is_empty() {
                "none".into()
            } else {
                active.join(", ")
            },
            self.finished.values().sum::<u64>(),
            if finished.is_empty() {
                "none".into()
            } else {
                finished.join(", ")
            },
        );
        if hidden > 0 {
            msg.push_str(&format!(" | +{hidden} more"));
        }
        self.summary.set_message(msg);
    }
}

impl Sink for Board {
    fn event(&mut self, e: &v1::TaskEvent) -> Result<()> {
        let Ok(state) = TaskState::from_wire(e.state) else {
            return Ok(());
        };
        if state.is_terminal() && !e.is_progress {
            if let Some(row) = self.unfinished.remove(&e.task_id)
                && let Some(bar) = row.bar
            {
                bar.finish_and_clear();
                self.multi.remove(&bar);
                self.shown -= 1;
            }
            *self.finished.entry(state.as_str()).or_default() += 1;
            self.multi.println(event_line(e))?;
            while let Some(next) = self.waiting.pop_front() {
                if self.give_bar(&next) {
                    break;
                }
            }
        } else {
            let row = self.unfinished.entry(e.task_id.clone()).or_insert_with(|| Row {
                state,
                last: e.clone(),
                bar: None,
            });
            row.state = state;
            row.last = e.clone();
            match &row.bar {
                Some(bar) => show(bar, e, true),
                None => {
                    let new = !self.waiting.contains(&e.task_id);
                    if !self.give_bar(&e.task_id) && new {
                        self.waiting.push_back(e.task_id.clone());
                    }
                }
            }
        }
        self.refresh_summary();
        Ok(())
    }

    fn finish(&mut self) {
        for row in self.unfinished.values() {
            if let Some(bar) = &row.bar {
                bar.abandon();
            }
        }
        self.summary.finish();
    }
}

/// `cadre status --watch`: the supervisor tree every `interval` until Ctrl-C, redrawn in place
/// on a terminal, as a fresh snapshot under a `--- status` header otherwise. A node that stops
/// answering is reported in the frame and asked again; only the first fetch must succeed.
pub(super) async fn status_loop(
    client: &Client,
    interval: Duration,
    face: Face,
    render: fn(&v1::StatusResponse) -> String,
) -> Result<i32> {
    let mut reply = Ok(client.status().await?);
    let interrupted = ctrl_c();
    tokio::pin!(interrupted);
    let mut out = std::io::stdout();
    loop {
        let body = match &reply {
            Ok(s) => render(s),
            Err(e) => format!("cannot get the status, trying again: {e}\n"),
        };
        let header = format!(
            "status at {} UTC, every {} ms",
            clock(cadre_proto::clock::now_ms()),
            interval.as_millis()
        );
        match face {
            Face::Live => {
                // Home, each line cleared to its end, then the rest of the screen: no flicker.
                let mut frame = format!("\x1b[H{header} (Ctrl-C to stop)\x1b[K\n\x1b[K\n");
                for line in body.lines() {
                    frame.push_str(line);
                    frame.push_str("\x1b[K\n");
                }
                frame.push_str("\x1b[J");
                out.write_all(frame.as_bytes())?;
            }
            Face::Plain => {
                writeln!(out, "--- {header}")?;
                out.write_all(body.as_bytes())?;
            }
        }
        out.flush()?;
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut interrupted => return Ok(0),
        }
        reply = client.status().await;
    }
}

/// `HH:MM:SS` of a Unix time in milliseconds.
fn clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, state: v1::TaskState, progress: Option<f64>) -> v1::TaskEvent {
        v1::TaskEvent {
            task_id: id.into(),
            state: state as i32,
            attempt: 1,
            is_progress: progress.is_some(),
            progress: progress.unwrap_or(0.0),
            task_type: "system.debug.sleep".into(),
            ..Default::default()
        }
    }

    fn hidden_board(max_rows: usize) -> Board {
        let b = Board::new("all tasks".into(), max_rows).unwrap();
        b.multi.set_draw_target(ProgressDrawTarget::hidden());
        b
    }

    #[test]
    fn the_board_bounds_its_rows_and_promotes_waiting_tasks() {
        let mut b = hidden_board(2);
        for id in ["a", "b", "c", "d"] {
            b.event(&ev(id, v1::TaskState::Queued, None)).unwrap();
        }
        assert_eq!(b.shown, 2);
        assert!(
            b.summary.message().contains("4 unfinished (4 queued)"),
            "{}",
            b.summary.message()
        );
        assert!(
            b.summary.message().ends_with("+2 more"),
            "{}",
            b.summary.message()
        );
        b.event(&ev("a", v1::TaskState::Running, None)).unwrap();
        b.event(&ev("a", v1::TaskState::Running, Some(0.5))).unwrap();
        let bar_a = b.unfinished["a"].bar.clone().unwrap();
        assert_eq!(bar_a.position(), 500);
        b.event(&ev("a", v1::TaskState::Succeeded, None)).unwrap();
        assert_eq!(b.shown, 2, "c took a's place");
        assert!(b.unfinished["c"].bar.is_some() && b.unfinished["d"].bar.is_none());
        b.event(&ev("b", v1::TaskState::Failed, None)).unwrap();
        let msg = b.summary.message();
        assert!(
            msg.contains("2 unfinished (2 queued) | 2 finished (1 succeeded, 1 failed)"),
            "{msg}"
        );
        assert!(!msg.contains("more"), "{msg}");
        b.finish();
    }

    #[test]
    fn a_task_bar_fills_on_success_and_restarts_on_a_new_attempt() {
        let bar = ProgressBar::hidden();
        show(&bar, &ev("t", v1::TaskState::Running, Some(0.3)), false);
        assert_eq!(bar.position(), 300);
        show(&bar, &ev("t", v1::TaskState::Retrying, None), false);
        assert_eq!(bar.position(), 0);
        assert_eq!(bar.message(), "RETRYING attempt 1");
        show(&bar, &ev("t", v1::TaskState::Succeeded, None), true);
        assert_eq!(bar.position(), BAR_LEN);
        assert_eq!(bar.message(), "system.debug.sleep SUCCEEDED attempt 1");
    }

    #[test]
    fn clock_reads_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(86_400_000 + 3_723_000), "01:02:03");
    }
}
