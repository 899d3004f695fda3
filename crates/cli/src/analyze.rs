//! `graphloop analyze`: one contract-analysis run per contract on the engine, followed
//! live, each report written as soon as its run ends, then a summary.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::hash::{DefaultHasher, Hasher as _};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use graphloop_contracts::{check_text, to_markdown, ContractState, Report, GRAPH_NAME, MAX_CONTRACT_BYTES};
use graphloop_core::{RunError, UserContext};
use graphloop_postgres::PgStoreConfig;
use graphloop_runtime::{Engine, EngineError, RunRecord, RunStatus, Streamed};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};
use uuid::Uuid;

use crate::engine;
use crate::render::{self, ContractBar, Progress, Table};

/// File extensions searched for in directories.
const EXTENSIONS: [&str; 3] = ["txt", "md", "markdown"];

/// What `analyze` was asked to do.
pub(crate) struct Options {
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) out: PathBuf,
    pub(crate) concurrency: Option<usize>,
    pub(crate) json: bool,
    pub(crate) model_latency: Option<Duration>,
    /// How long Ctrl-C lets running steps go on to reach their checkpoint.
    pub(crate) shutdown_timeout: Duration,
    pub(crate) user: String,
    pub(crate) store: Option<PgStoreConfig>,
}

/// How the batch went, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every contract completed.
    AllCompleted,
    /// Some contract failed, was rejected or cancelled, or the engine did not shut down
    /// cleanly.
    SomeFailed,
    /// Ctrl-C stopped the batch.
    Interrupted,
    /// A second Ctrl-C: the summary so far is printed; the process must exit at once,
    /// without waiting for the engine.
    Abandoned,
}

/// Where a contract ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Not analysed yet (only while the batch runs).
    Pending,
    Completed,
    Failed,
    Rejected,
    Cancelled,
    Interrupted,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
            Status::Interrupted => "interrupted",
        }
    }
}

/// One contract of the batch.
struct Row {
    /// Its name: the file name, as in its report.
    contract: String,
    /// The path it was read from.
    path: PathBuf,
    /// Its text, until its run is started (`None` for a rejected contract).
    text: Option<String>,
    /// The base name of its report files in the output directory.
    stem: String,
    run_id: Option<Uuid>,
    resumed: bool,
    /// `Completed` with a report and no `files` while its reports are being written.
    status: Status,
    report: Option<Report>,
    files: Option<(PathBuf, PathBuf)>,
    duration: Option<Duration>,
    error: Option<String>,
}

impl Row {
    fn input(path: PathBuf, text: Result<String, String>) -> Self {
        let contract =
            path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let mut row = Row::new(contract, path);
        match text {
            Ok(text) => row.text = Some(text),
            Err(reason) => {
                row.status = Status::Rejected;
                row.error = Some(reason);
            }
        }
        row
    }

    fn new(contract: String, path: PathBuf) -> Self {
        Row {
            contract,
            path,
            text: None,
            stem: String::new(),
            run_id: None,
            resumed: false,
            status: Status::Pending,
            report: None,
            files: None,
            duration: None,
            error: None,
        }
    }
}

/// How a run ended, as far as its contract is concerned.
struct Ended {
    status: Status,
    report: Option<Report>,
    duration: Option<Duration>,
    error: Option<String>,
}

impl Ended {
    fn failed(error: String) -> Self {
        Ended { status: Status::Failed, report: None, duration: None, error: Some(error) }
    }
}

/// Runs the batch; the verdict decides the exit status.
pub(crate) async fn run(options: Options) -> anyhow::Result<Verdict> {
    let started = Instant::now();
    // Reports are never contracts: the output directory is not searched (it does not
    // exist yet when it is not canonicalizable, so it cannot be met while searching).
    let out_dir = fs::canonicalize(&options.out).ok();
    let mut rows: Vec<Row> = contract_paths(&options.paths, out_dir.as_deref())
        .into_iter()
        .map(|candidate| match candidate {
            Candidate::File(path) => {
                let text = read_contract(&path);
                Row::input(path, text)
            }
            Candidate::Unreadable(path, reason) => Row::input(path, Err(reason)),
        })
        .collect();
    if rows.is_empty() {
        anyhow::bail!("no contracts to analyze: the directories given hold no .txt, .md or .markdown files");
    }
    fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create the output directory {}", options.out.display()))?;

    let presses = listen_for_ctrl_c();

    let engine = engine::start(engine::Setup {
        // Every run, new or resumed, is a row's.
        runs: rows.len(),
        concurrency: options.concurrency,
        model_latency: options.model_latency,
        shutdown_timeout: Some(options.shutdown_timeout),
        store: options.store.clone(),
    })
    .await?;

    // Everything from here to the engine's shutdown gives way to a second Ctrl-C; the
    // rows then say what was known so far.
    let mut second = presses.clone();
    let work = async {
        let mut batch = Batch::new(engine.clone(), &options, &mut rows, presses);
        let verdict = batch.run(started).await;
        let mut problems = std::mem::take(&mut batch.problems);
        drop(batch);
        match engine.shutdown().await {
            Ok(report) if report.complete => {}
            Ok(report) => problems.push(format!(
                "the engine did not shut down completely within its timeouts ({} run thread(s) still busy); \
                 unfinished runs stay resumable from their last checkpoint",
                report.arbiters_left
            )),
            Err(error) => problems.push(format!("the engine did not shut down cleanly: {error}")),
        }
        (verdict, problems)
    };
    let finished = tokio::select! {
        finished = work => Some(finished),
        Ok(_) = second.wait_for(|&n| n >= 2) => None,
    };
    let Some((verdict, problems)) = finished else {
        for row in &mut rows {
            match row.status {
                Status::Pending => row.status = Status::Interrupted,
                Status::Completed if row.files.is_none() => {
                    row.status = Status::Interrupted;
                    row.error = Some("its run completed, but the process exited before its report was written".into());
                }
                _ => {}
            }
        }
        print_summary(&rows, started.elapsed(), &options)?;
        eprintln!("second Ctrl-C: exited at once; reports already written are complete");
        return Ok(Verdict::Abandoned);
    };
    let verdict = match verdict {
        Ok(verdict) => verdict,
        Err(error) => {
            for problem in &problems {
                eprintln!("error: {problem}");
            }
            return Err(error);
        }
    };
    print_summary(&rows, started.elapsed(), &options)?;
    if verdict == Verdict::Interrupted {
        let unfinished = |started: bool| {
            rows.iter().filter(|r| r.status == Status::Interrupted && r.run_id.is_some() == started).count()
        };
        let (checkpointed, not_started) = (unfinished(true), unfinished(false));
        if checkpointed > 0 && options.store.is_some() {
            eprintln!(
                "{checkpointed} unfinished contract(s) are checkpointed in the database: run the same command again \
                 to resume them"
            );
        } else if checkpointed > 0 {
            eprintln!(
                "{checkpointed} unfinished contract(s) were not kept (in-memory store; --database-url keeps them)"
            );
        }
        if not_started > 0 {
            eprintln!("{not_started} contract(s) were not started");
        }
    }
    if problems.is_empty() {
        return Ok(verdict);
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    Ok(Verdict::SomeFailed)
}

fn print_summary(rows: &[Row], elapsed: Duration, options: &Options) -> anyhow::Result<()> {
    if options.json {
        render::out_json(&summary_json(rows, elapsed))
    } else {
        render::out(&summary_table(rows, elapsed, &options.out))
    }
}

/// Counts Ctrl-C presses from now on. The handler is installed before this returns, so a
/// Ctrl-C after it never kills the process. If it cannot be installed, the count's sender
/// is gone and no Ctrl-C is ever seen (the default handler then ends the process).
fn listen_for_ctrl_c() -> watch::Receiver<u8> {
    let (presses_tx, presses) = watch::channel(0u8);
    #[cfg(unix)]
    {
        if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
            tokio::spawn(async move {
                while signal.recv().await.is_some() {
                    presses_tx.send_modify(|n| *n = n.saturating_add(1));
                }
            });
        }
    }
    #[cfg(not(unix))]
    {
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                presses_tx.send_modify(|n| *n = n.saturating_add(1));
            }
        });
    }
    presses
}

/// Tasks each working for one row; one that panicked still names its row.
struct RowTasks<T> {
    set: JoinSet<T>,
    rows: HashMap<tokio::task::Id, usize>,
}

impl<T: Send + 'static> RowTasks<T> {
    fn new() -> Self {
        Self { set: JoinSet::new(), rows: HashMap::new() }
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    fn spawn(&mut self, row: usize, task: impl std::future::Future<Output = T> + Send + 'static) {
        let handle = self.set.spawn(task);
        self.rows.insert(handle.id(), row);
    }

    fn spawn_blocking(&mut self, row: usize, task: impl FnOnce() -> T + Send + 'static) {
        let handle = self.set.spawn_blocking(task);
        self.rows.insert(handle.id(), row);
    }

    fn abort_all(&mut self) {
        self.set.abort_all();
    }

    /// The next task to end, with its row.
    async fn next(&mut self) -> Option<(usize, Result<T, JoinError>)> {
        loop {
            let joined = self.set.join_next_with_id().await?;
            let id = match &joined {
                Ok((id, _)) => *id,
                Err(error) => error.id(),
            };
            if let Some(row) = self.rows.remove(&id) {
                return Some((row, joined.map(|(_, value)| value)));
            }
        }
    }
}

/// The batch on a started engine.
struct Batch<'a> {
    engine: Engine,
    options: &'a Options,
    rows: &'a mut [Row],
    presses: watch::Receiver<u8>,
    progress: Progress,
    /// Each row's bar, once its turn to start came.
    bars: Vec<Option<ContractBar>>,
    /// Follow runs to their end.
    followers: RowTasks<Result<RunRecord, EngineError>>,
    /// Write completed contracts' reports. Never aborted: a report is written whole or
    /// not at all, and two writers never share a temporary file.
    writers: RowTasks<Result<(PathBuf, PathBuf), String>>,
    /// What went wrong with the engine itself, told after the summary.
    problems: Vec<String>,
}

impl<'a> Batch<'a> {
    fn new(engine: Engine, options: &'a Options, rows: &'a mut [Row], presses: watch::Receiver<u8>) -> Self {
        let progress = Progress::new(rows.len());
        let bars = rows.iter().map(|_| None).collect();
        Batch {
            engine,
            options,
            rows,
            presses,
            progress,
            bars,
            followers: RowTasks::new(),
            writers: RowTasks::new(),
            problems: Vec::new(),
        }
    }

    async fn run(&mut self, started: Instant) -> anyhow::Result<Verdict> {
        // Nothing is resumed once Ctrl-C was pressed: it would only be stopped again.
        if self.options.store.is_some() && !self.is_interrupted() {
            self.adopt_unfinished().await?;
        }
        assign_stems(self.rows);

        if self.start_all().await {
            let started_runs = self.rows.iter().filter(|r| r.run_id.is_some()).count();
            let resumed = self.rows.iter().filter(|r| r.resumed).count();
            self.progress.say(&format!("analysing {started_runs} contract(s) ({resumed} resumed)"));
        }
        if self.follow_all().await {
            self.stop().await;
        }
        self.settle_pending().await;

        let verdict = if self.rows.iter().any(|r| r.status == Status::Interrupted) {
            Verdict::Interrupted
        } else if self.rows.iter().all(|r| r.status == Status::Completed) {
            Verdict::AllCompleted
        } else {
            Verdict::SomeFailed
        };
        self.progress.finish(&format!("in {}", render::duration(started.elapsed())));
        Ok(verdict)
    }

    fn is_interrupted(&self) -> bool {
        *self.presses.borrow() > 0
    }

    /// Resumes the unfinished runs of this graph and user that analyse one of this
    /// batch's inputs (the same name and text), each as that input's row, so that the
    /// contract is not analysed twice. Other unfinished runs are left alone: another
    /// `analyze` may be running them.
    async fn adopt_unfinished(&mut self) -> anyhow::Result<()> {
        let user = self.options.user.as_str();
        let (adopted, resumed, others) = {
            let rows: &[Row] = self.rows;
            let mut inputs: HashMap<u64, Vec<usize>> = HashMap::new();
            for (index, row) in rows.iter().enumerate() {
                if let Some(text) = &row.text {
                    inputs.entry(input_hash(&row.contract, text)).or_default().push(index);
                }
            }
            let inputs = RefCell::new(inputs);
            let adopted = RefCell::new(HashMap::new());
            let others = Cell::new(0_usize);
            let resumed = self
                .engine
                .recover_where(|run| {
                    if run.graph != GRAPH_NAME || run.user.user_id != user {
                        return false;
                    }
                    let name = run.input.get("name").and_then(Value::as_str).unwrap_or_default();
                    let text = run.input.get("text").and_then(Value::as_str);
                    let row = text.and_then(|text| {
                        let mut inputs = inputs.borrow_mut();
                        let same = inputs.get_mut(&input_hash(name, text))?;
                        // The hash finds the candidates; the name and text themselves settle it.
                        let at = same.iter().position(|&index| {
                            rows[index].contract == name && rows[index].text.as_deref() == Some(text)
                        })?;
                        Some(same.remove(at))
                    });
                    match row {
                        Some(index) => {
                            adopted.borrow_mut().insert(run.id, index);
                            true
                        }
                        None => {
                            others.set(others.get() + 1);
                            false
                        }
                    }
                })
                .await
                .context("cannot resume the unfinished runs")?;
            (adopted.into_inner(), resumed, others.get())
        };
        // A run whose graph version is gone is not resumed (it fails, saying so): its
        // input is analysed anew.
        for run_id in resumed {
            if let Some(row) = adopted.get(&run_id).and_then(|&index| self.rows.get_mut(index)) {
                row.run_id = Some(run_id);
                row.resumed = true;
                row.text = None;
            }
        }
        if others > 0 {
            self.progress.say(&format!(
                "{others} other unfinished run(s) of yours are stored; analyse the same files again to resume them"
            ));
        }
        Ok(())
    }

    /// Starts a run per contract (or follows its resumed one); `false` if Ctrl-C came first.
    async fn start_all(&mut self) -> bool {
        for index in 0..self.rows.len() {
            if self.is_interrupted() {
                return false;
            }
            let bar = self.progress.contract(&self.rows[index].contract);
            self.bars[index] = Some(bar.clone());
            let row = &mut self.rows[index];
            if row.status == Status::Rejected {
                self.conclude(index);
                continue;
            }
            let run_id = match (row.run_id, row.text.take()) {
                (Some(run_id), _) => run_id,
                (None, Some(text)) => {
                    let input = ContractState::new(row.contract.clone(), text);
                    match self.engine.start_run(GRAPH_NAME, &input, UserContext::new(self.options.user.clone())).await {
                        Ok(run_id) => run_id,
                        Err(error) => {
                            self.ended(index, Ended::failed(format!("cannot start its run: {error}")));
                            continue;
                        }
                    }
                }
                // Not rejected, so it has a text or a run.
                (None, None) => continue,
            };
            self.rows[index].run_id = Some(run_id);
            self.followers.spawn(index, follow(self.engine.clone(), run_id, bar));
        }
        true
    }

    /// Records runs as they end and writes their reports; `true` if Ctrl-C came while
    /// some contract was unfinished.
    async fn follow_all(&mut self) -> bool {
        let mut presses = self.presses.clone();
        // Ctrl-C once every run has ended is no interruption: the reports are written.
        let mut too_late = false;
        while !(self.followers.is_empty() && self.writers.is_empty()) {
            tokio::select! {
                Some((index, joined)) = self.followers.next() => self.followed(index, joined),
                Some((index, joined)) = self.writers.next() => self.written(index, joined),
                // An error means no Ctrl-C can come (the handler could not be installed).
                Ok(_) = presses.wait_for(|&n| n > 0), if !too_late => {
                    if self.rows.iter().any(|r| r.status == Status::Pending) {
                        return true;
                    }
                    too_late = true;
                }
            }
        }
        self.rows.iter().any(|r| r.status == Status::Pending)
    }

    /// After Ctrl-C: lets running steps reach their checkpoint (stopping them there past
    /// the shutdown timeout) while runs that end meanwhile are recorded, then stops
    /// following. What became of the others is read by [`Self::settle_pending`].
    async fn stop(&mut self) {
        self.progress.say(&format!(
            "interrupted: letting running steps reach their checkpoint (at most {}), then stopping; \
             reports of contracts that complete meanwhile are still written (Ctrl-C again to exit at once)",
            render::duration(self.options.shutdown_timeout)
        ));
        let engine = self.engine.clone();
        let drain = engine.drain();
        tokio::pin!(drain);
        let drained = loop {
            tokio::select! {
                drained = &mut drain => break drained,
                Some((index, joined)) = self.followers.next() => self.followed(index, joined),
                Some((index, joined)) = self.writers.next() => self.written(index, joined),
            }
        };
        if let Err(error) = drained {
            self.problems.push(format!("the engine could not stop its runs cleanly: {error}"));
        }
        // The streams of runs left interrupted end only with the engine: stop waiting
        // for them. A follower that ended before its abort still counts.
        self.followers.abort_all();
        while let Some((index, joined)) = self.followers.next().await {
            self.followed(index, joined);
        }
    }

    /// Settles the rows not ended yet: a run that ended is handled like any finished run
    /// (a completed one gets its reports); the others are interrupted. Then waits for the
    /// reports being written.
    async fn settle_pending(&mut self) {
        for index in 0..self.rows.len() {
            let row = &self.rows[index];
            if row.status != Status::Pending {
                continue;
            }
            let ended = match row.run_id {
                // After a drain, `status` (never `wait`) for runs that may be interrupted.
                Some(run_id) => match self.engine.status(run_id).await {
                    Ok(snapshot) => outcome_of(&snapshot.run),
                    Err(error) => Ended {
                        status: Status::Interrupted,
                        report: None,
                        duration: None,
                        error: Some(format!("cannot read its run's status: {error}")),
                    },
                },
                None => Ended { status: Status::Interrupted, report: None, duration: None, error: None },
            };
            self.ended(index, ended);
        }
        while let Some((index, joined)) = self.writers.next().await {
            self.written(index, joined);
        }
    }

    /// What a follower found.
    fn followed(&mut self, index: usize, joined: Result<Result<RunRecord, EngineError>, JoinError>) {
        match joined {
            Ok(Ok(run)) => self.ended(index, outcome_of(&run)),
            // The engine stops answering: what became of the run is read afterwards.
            Ok(Err(EngineError::ShuttingDown)) => {}
            Ok(Err(error)) => self.ended(index, Ended::failed(format!("cannot follow its run: {error}"))),
            // Aborted after a drain: the same.
            Err(error) if error.is_cancelled() => {}
            Err(error) => self.ended(index, Ended::failed(format!("internal error: {error}"))),
        }
    }

    /// Puts how a run ended into its row; a completed run's reports are written before
    /// its contract is concluded.
    fn ended(&mut self, index: usize, ended: Ended) {
        let row = &mut self.rows[index];
        row.status = ended.status;
        row.duration = ended.duration;
        row.error = ended.error;
        row.report = ended.report;
        if let Some(report) = &row.report {
            match render_reports(report) {
                Ok((json, markdown)) => {
                    let (out, stem) = (self.options.out.clone(), row.stem.clone());
                    self.writers.spawn_blocking(index, move || write_reports(&out, &stem, &json, &markdown));
                    return;
                }
                Err(reason) => {
                    row.status = Status::Failed;
                    row.error = Some(format!("its run completed, but its report could not be written: {reason}"));
                }
            }
        }
        self.conclude(index);
    }

    /// What a writer did.
    fn written(&mut self, index: usize, joined: Result<Result<(PathBuf, PathBuf), String>, JoinError>) {
        let row = &mut self.rows[index];
        match joined {
            Ok(Ok(files)) => row.files = Some(files),
            Ok(Err(reason)) => {
                row.status = Status::Failed;
                row.error = Some(format!("its run completed, but its report could not be written: {reason}"));
            }
            Err(error) => {
                row.status = Status::Failed;
                row.error = Some(format!("internal error: {error}"));
            }
        }
        self.conclude(index);
    }

    /// The contract's outcome is known: its bar says it, the overall bar counts it.
    fn conclude(&mut self, index: usize) {
        if let Some(bar) = self.bars.get_mut(index).and_then(Option::take) {
            bar.finish(self.rows[index].status.as_str());
        }
        self.progress.done();
    }
}

/// Follows one run on its bar until it ends: one event stream, then the run's final
/// row, without reading its events again.
async fn follow(engine: Engine, run_id: Uuid, bar: ContractBar) -> Result<RunRecord, EngineError> {
    let mut next_seq = 1;
    if let Ok(mut events) = engine.subscribe(run_id, next_seq).await {
        while let Some(item) = events.next().await {
            match item {
                Streamed::Event(record) => {
                    next_seq = record.seq + 1;
                    bar.event(&record.event);
                    if record.event.kind.is_terminal() {
                        break;
                    }
                }
                Streamed::Progress { event, .. } => bar.event(&event),
            }
        }
    }
    // Returns once the final row is stored; also catches up if the stream fell behind.
    engine.wait_from(run_id, next_seq).await
}

/// What a run's final row says.
fn outcome_of(run: &RunRecord) -> Ended {
    let duration = render::between(run.started_at, run.finished_at);
    let (status, report, error) = match run.status {
        RunStatus::Completed => {
            let state: Option<ContractState> = run.output.clone().and_then(|o| serde_json::from_value(o).ok());
            match state.and_then(|s| s.report) {
                Some(report) => (Status::Completed, Some(report), None),
                None => (Status::Failed, None, Some("its run completed without a report".to_owned())),
            }
        }
        RunStatus::Failed => (Status::Failed, None, Some(run_error(run.error.as_ref()))),
        RunStatus::Cancelled => (Status::Cancelled, None, None),
        _ => (Status::Interrupted, None, None),
    };
    Ended { status, report, duration, error }
}

/// A run's stored error, for a person.
pub(crate) fn run_error(error: Option<&Value>) -> String {
    match error {
        None => "unknown error".to_owned(),
        Some(value) => match serde_json::from_value::<RunError>(value.clone()) {
            Ok(error) => error.to_string(),
            Err(_) => value.as_str().map_or_else(|| value.to_string(), str::to_owned),
        },
    }
}

/// A path to analyse.
enum Candidate {
    File(PathBuf),
    /// A directory that could not be listed, or an entry of one that could not be read,
    /// and why.
    Unreadable(PathBuf, String),
}

/// The files to analyse: files as given, directories searched recursively for contract
/// files (sorted by path; hidden entries, symbolic links to directories and the `skip`
/// directory, canonicalized, left out).
fn contract_paths(paths: &[PathBuf], skip: Option<&Path>) -> Vec<Candidate> {
    let mut seen = HashSet::new();
    let mut candidates = Vec::new();
    for path in paths {
        if fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            let mut found = Vec::new();
            let mut unreadable = Vec::new();
            walk(path, skip, &mut found, &mut unreadable);
            found.sort();
            candidates.extend(found.into_iter().filter(|p| seen.insert(p.clone())).map(Candidate::File));
            candidates.extend(unreadable.into_iter().map(|(p, reason)| Candidate::Unreadable(p, reason)));
        } else if seen.insert(path.clone()) {
            // Missing, unreadable or odd files are rejected with a reason when read.
            candidates.push(Candidate::File(path.clone()));
        }
    }
    candidates
}

fn walk(dir: &Path, skip: Option<&Path>, found: &mut Vec<PathBuf>, unreadable: &mut Vec<(PathBuf, String)>) {
    if skip.is_some_and(|skip| fs::canonicalize(dir).is_ok_and(|dir| dir == skip)) {
        return;
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            unreadable.push((dir.to_owned(), format!("cannot list the directory: {error}")));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                unreadable.push((dir.to_owned(), format!("cannot read an entry of the directory: {error}")));
                continue;
            }
        };
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(error) => {
                unreadable.push((path, format!("cannot tell whether it is a file or a directory: {error}")));
                continue;
            }
        };
        if kind.is_dir() {
            walk(&path, skip, found, unreadable);
        } else if has_contract_extension(&path) && !fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            found.push(path);
        }
    }
}

fn has_contract_extension(path: &Path) -> bool {
    path.extension().is_some_and(|ext| EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// A contract's text, or why it cannot be analysed (`eval` reads its contracts with it
/// too). The size is checked before reading, and the read is bounded, so an enormous
/// file is never read into memory.
pub(crate) fn read_contract(path: &Path) -> Result<String, String> {
    let too_large = |bytes: u64| format!("the file is {bytes} bytes, more than the limit of {MAX_CONTRACT_BYTES}");
    let metadata = fs::metadata(path).map_err(|e| io_reason(&e))?;
    if metadata.is_dir() {
        return Err("it is a directory".to_owned());
    }
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    let limit = MAX_CONTRACT_BYTES as u64;
    if metadata.len() > limit {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    File::open(path).and_then(|file| file.take(limit + 1).read_to_end(&mut bytes)).map_err(|e| io_reason(&e))?;
    if bytes.len() > MAX_CONTRACT_BYTES {
        // It grew since its size was read.
        return Err(format!("the file is more than the limit of {MAX_CONTRACT_BYTES} bytes"));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "the file is not UTF-8 text (it looks like binary data: invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    check_text(&text)?;
    Ok(text)
}

fn io_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => format!("cannot read the file: {error}"),
    }
}

/// Gives each row a distinct report name: its file name without extension, then `-2`,
/// `-3`... for the next contracts with the same one.
fn assign_stems(rows: &mut [Row]) {
    let mut taken = HashSet::new();
    for row in rows {
        let base = stem_of(&row.contract);
        let mut stem = base.clone();
        let mut n = 2;
        while !taken.insert(stem.clone()) {
            stem = format!("{base}-{n}");
            n += 1;
        }
        row.stem = stem;
    }
}

fn stem_of(contract: &str) -> String {
    let stem = Path::new(contract).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let clean: String = stem.chars().map(|c| if matches!(c, '/' | '\\' | '\0') { '_' } else { c }).collect();
    if clean.is_empty() || clean == "." || clean == ".." {
        "contract".to_owned()
    } else {
        clean
    }
}

/// A report as JSON and as Markdown.
fn render_reports(report: &Report) -> Result<(String, String), String> {
    let mut json = serde_json::to_string_pretty(report).map_err(|e| format!("cannot serialise it: {e}"))?;
    json.push('\n');
    Ok((json, to_markdown(report)))
}

/// Writes `<stem>.json` and `<stem>.md` in `out`: both to temporary files first (each
/// synced), then renamed over the reports, the Markdown first. A reader (or a Ctrl-C)
/// never sees half a file, and a new JSON report always has its Markdown beside it. On
/// failure, the temporary files are removed and the reason names the file. Blocking: run
/// it off the async runtime.
fn write_reports(out: &Path, stem: &str, json: &str, markdown: &str) -> Result<(PathBuf, PathBuf), String> {
    let json_path = out.join(format!("{stem}.json"));
    let markdown_path = out.join(format!("{stem}.md"));
    let (json_tmp, markdown_tmp) = (temporary(&json_path), temporary(&markdown_path));
    let written = write_synced(&json_tmp, json.as_bytes())
        .and_then(|()| write_synced(&markdown_tmp, markdown.as_bytes()))
        .and_then(|()| rename(&markdown_tmp, &markdown_path))
        .and_then(|()| rename(&json_tmp, &json_path));
    if written.is_err() {
        // Only files: a directory of that name is not ours to remove.
        let _ = fs::remove_file(&json_tmp);
        let _ = fs::remove_file(&markdown_tmp);
    }
    written.map(|()| (json_path, markdown_path))
}

/// `<path>.tmp`, in the same directory (a rename does not cross file systems).
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    path.with_file_name(name)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    File::create(path)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn rename(from: &Path, to: &Path) -> Result<(), String> {
    fs::rename(from, to).map_err(|e| format!("cannot rename {} to {}: {e}", from.display(), to.display()))
}

/// A hash of a contract's name and text, to find the unfinished run that analyses it
/// without a second copy of every text.
fn input_hash(name: &str, text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(name.as_bytes());
    hasher.write_u8(0xff); // never in UTF-8: "ab" + "c" and "a" + "bc" differ
    hasher.write(text.as_bytes());
    hasher.finish()
}

fn count(rows: &[Row], status: Status) -> usize {
    rows.iter().filter(|r| r.status == status).count()
}

/// Contracts that reached an end per second.
fn rate(rows: &[Row], elapsed: Duration) -> f64 {
    let ended = rows.len() - count(rows, Status::Interrupted) - count(rows, Status::Pending);
    ended as f64 / elapsed.as_secs_f64().max(1e-3)
}

fn top_risk(report: Option<&Report>) -> Option<&graphloop_contracts::Risk> {
    report.and_then(Report::top_risk)
}

fn summary_table(rows: &[Row], elapsed: Duration, out: &Path) -> String {
    let mut table = Table::new(&["contract", "status", "score", "top risk", "duration", "note"]);
    let mut names = HashSet::new();
    let ambiguous: HashSet<&str> =
        rows.iter().map(|r| r.contract.as_str()).filter(|name| !names.insert(*name)).collect();
    for row in rows {
        // Contracts of the same name in different directories are told apart by path.
        let contract = if ambiguous.contains(row.contract.as_str()) {
            row.path.display().to_string()
        } else {
            row.contract.clone()
        };
        let score = row.report.as_ref().map_or_else(|| "-".to_owned(), |r| r.score.to_string());
        let risk = match (&row.report, top_risk(row.report.as_ref())) {
            (_, Some(risk)) => format!("{} ({})", risk.kind, risk.severity),
            (Some(_), None) => "none".to_owned(),
            (None, None) => "-".to_owned(),
        };
        let took = row.duration.map_or_else(|| "-".to_owned(), render::duration);
        let mut note: Vec<&str> = Vec::new();
        if row.resumed {
            note.push("resumed");
        }
        if let Some(error) = &row.error {
            note.push(error);
        }
        table.row(vec![contract, row.status.as_str().to_owned(), score, risk, took, note.join("; ")]);
    }
    let total = rows.len();
    let mut totals = format!(
        "{total} contract{} in {:.2} s ({:.1}/s): {} completed, {} failed, {} rejected",
        if total == 1 { "" } else { "s" },
        elapsed.as_secs_f64(),
        rate(rows, elapsed),
        count(rows, Status::Completed),
        count(rows, Status::Failed),
        count(rows, Status::Rejected),
    );
    for extra in [Status::Cancelled, Status::Interrupted] {
        let n = count(rows, extra);
        if n > 0 {
            totals.push_str(&format!(", {n} {}", extra.as_str()));
        }
    }
    totals.push_str(&format!("; reports in {}", out.display()));
    format!("{}\n{totals}", table.render())
}

fn summary_json(rows: &[Row], elapsed: Duration) -> Value {
    let contracts: Vec<Value> = rows
        .iter()
        .map(|row| {
            let risk = top_risk(row.report.as_ref()).map(
                |risk| json!({"kind": risk.kind, "severity": risk.severity, "score": risk.score, "title": risk.title}),
            );
            json!({
                "contract": row.contract,
                "path": row.path.display().to_string(),
                "run_id": row.run_id,
                "status": row.status.as_str(),
                "resumed": row.resumed,
                "score": row.report.as_ref().map(|r| r.score),
                "top_risk": risk,
                "duration_ms": row.duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                "report": row.files.as_ref().map(|(json, _)| json.display().to_string()),
                "markdown": row.files.as_ref().map(|(_, md)| md.display().to_string()),
                "error": row.error,
            })
        })
        .collect();
    json!({
        "contracts": contracts,
        "total": rows.len(),
        "completed": count(rows, Status::Completed),
        "failed": count(rows, Status::Failed),
        "rejected": count(rows, Status::Rejected),
        "cancelled": count(rows, Status::Cancelled),
        "interrupted": count(rows, Status::Interrupted),
        "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "contracts_per_second": rate(rows, elapsed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(names: &[&str]) -> Vec<Row> {
        names.iter().map(|n| Row::new((*n).to_owned(), PathBuf::from(n))).collect()
    }

    #[test]
    fn report_names_are_distinct_in_input_order() {
        let mut rows = named(&["nda.md", "nda.txt", "lease.md", "nda-2.md", "nda", ".."]);
        assign_stems(&mut rows);
        let stems: Vec<&str> = rows.iter().map(|r| r.stem.as_str()).collect();
        assert_eq!(stems, ["nda", "nda-2", "lease", "nda-2-2", "nda-3", "contract"]);
    }

    #[test]
    fn only_contract_extensions_are_searched_for() {
        assert!(has_contract_extension(Path::new("a/b.md")));
        assert!(has_contract_extension(Path::new("b.MARKDOWN")));
        assert!(has_contract_extension(Path::new("b.txt")));
        assert!(!has_contract_extension(Path::new("b.pdf")));
        assert!(!has_contract_extension(Path::new("md")));
    }

    #[test]
    fn a_report_pair_is_written_whole_or_not_at_all() {
        let out = std::env::temp_dir().join(format!("gl-cli-unit-{}", Uuid::now_v7().simple()));
        fs::create_dir_all(out.join("b.md.tmp")).unwrap();

        let (json, markdown) = write_reports(&out, "a", "{}\n", "# a\n").unwrap();
        assert_eq!(
            (fs::read_to_string(&json).unwrap(), fs::read_to_string(&markdown).unwrap()),
            ("{}\n".into(), "# a\n".into())
        );
        // The Markdown's temporary file cannot be made: neither report appears, and the
        // JSON's temporary file is gone.
        let error = write_reports(&out, "b", "{}\n", "# b\n").unwrap_err();
        assert!(error.contains("b.md.tmp"), "{error}");
        assert!(!out.join("b.json").exists() && !out.join("b.md").exists() && !out.join("b.json.tmp").exists());
        fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn an_input_is_known_by_its_name_and_text_together() {
        assert_eq!(input_hash("nda.md", "text"), input_hash("nda.md", "text"));
        assert_ne!(input_hash("nda.md", "text"), input_hash("nda.md", "text."));
        assert_ne!(input_hash("ab", "c"), input_hash("a", "bc"));
    }

    #[test]
    fn a_failed_runs_error_reads_as_a_sentence() {
        let error = RunError::Aborted { reason: "the store went away".into() };
        let value = serde_json::to_value(&error).unwrap();
        assert_eq!(run_error(Some(&value)), "run aborted: the store went away");
        assert_eq!(run_error(Some(&json!("plain"))), "plain");
        assert_eq!(run_error(None), "unknown error");
    }
}
