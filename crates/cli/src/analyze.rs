//! `graphloop analyze`: one contract-analysis run per contract on the engine, followed
//! live, each report written as soon as its run ends, then a summary.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use graphloop_contracts::{
    check_text, contract_graph, to_markdown, ContractState, LatencyModel, Model, Report, RuleModel, GRAPH_NAME,
    MAX_CONTRACT_BYTES,
};
use graphloop_core::{RunError, UserContext};
use graphloop_postgres::PgStoreConfig;
use graphloop_runtime::{
    AdmissionConfig, Engine, EngineConfig, EngineError, RunRecord, RunStatus, StoreFactory, Streamed,
};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::render::{self, ContractBar, Progress, Table};

/// File extensions searched for in directories.
const EXTENSIONS: [&str; 3] = ["txt", "md", "markdown"];

/// How long, after a shutdown, the followers of unfinished runs get to notice it.
const FOLLOWERS_GRACE: Duration = Duration::from_secs(5);

/// What `analyze` was asked to do.
pub(crate) struct Options {
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) out: PathBuf,
    pub(crate) concurrency: Option<usize>,
    pub(crate) json: bool,
    pub(crate) model_latency: Option<Duration>,
    pub(crate) user: String,
    pub(crate) store: Option<PgStoreConfig>,
}

/// How the batch went, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every contract completed.
    AllCompleted,
    /// Some contract failed, was rejected or cancelled.
    SomeFailed,
    /// Ctrl-C stopped the batch.
    Interrupted,
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
    /// The path it was read from (`None` for a resumed run no input matched).
    path: Option<PathBuf>,
    /// Its text, until its run is started; or why it was rejected.
    text: Option<Result<String, String>>,
    /// The base name of its report files in the output directory.
    stem: String,
    run_id: Option<Uuid>,
    resumed: bool,
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
        let mut row = Row::new(contract, Some(path));
        if let Err(reason) = &text {
            row.status = Status::Rejected;
            row.error = Some(reason.clone());
        }
        row.text = Some(text);
        row
    }

    fn new(contract: String, path: Option<PathBuf>) -> Self {
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

/// What a follower learnt of its run's end.
struct Ended {
    status: Status,
    report: Option<Report>,
    files: Option<(PathBuf, PathBuf)>,
    duration: Option<Duration>,
    error: Option<String>,
}

/// Runs the batch; the verdict decides the exit status.
pub(crate) async fn run(options: Options) -> anyhow::Result<Verdict> {
    let started = Instant::now();
    let mut rows: Vec<Row> = contract_paths(&options.paths)
        .into_iter()
        .map(|candidate| match candidate {
            Candidate::File(path) => {
                let text = read_contract(&path);
                Row::input(path, text)
            }
            Candidate::Unlisted(path, reason) => Row::input(path, Err(reason)),
        })
        .collect();
    if rows.is_empty() {
        anyhow::bail!("no contracts to analyze: the directories given hold no .txt, .md or .markdown files");
    }
    fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create the output directory {}", options.out.display()))?;

    // Ctrl-C is listened for from now on; a second one exits at once.
    let (interrupt_tx, interrupted) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = interrupt_tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("second Ctrl-C: exiting now; reports already written are complete");
                std::process::exit(130);
            }
        }
    });

    let model: Arc<dyn Model> = match options.model_latency {
        Some(latency) => Arc::new(LatencyModel::new(Arc::new(RuleModel), latency)),
        None => Arc::new(RuleModel),
    };
    // Admission must never refuse part of the batch: room for all of it, and the default
    // room besides for the runs `recover` resumes.
    let mut config = EngineConfig::new().queue_capacity(rows.len() + AdmissionConfig::default().queue_capacity);
    if let Some(runs) = options.concurrency {
        config = config.max_running(runs);
    }
    let store_name = options.store.as_ref().map(StoreFactory::describe);
    if let Some(store) = options.store.clone() {
        config = config.store(store);
    }
    let engine = Engine::start(config).await.with_context(|| match &store_name {
        Some(store) => format!("cannot open the store {store}"),
        None => "cannot start the engine".to_owned(),
    })?;

    let mut batch = Batch { engine: engine.clone(), interrupted, shut_down: false };
    let verdict = batch.run(&options, model, &mut rows, started).await;
    if !batch.shut_down {
        engine.shutdown().await.context("the engine did not shut down cleanly")?;
    }
    let verdict = verdict?;
    let elapsed = started.elapsed();
    if options.json {
        render::out_json(&summary_json(&rows, elapsed))?;
    } else {
        render::out(&summary_table(&rows, elapsed, &options.out))?;
    }
    if verdict == Verdict::Interrupted {
        let unfinished = rows.iter().filter(|r| r.status == Status::Interrupted).count();
        if options.store.is_some() {
            eprintln!(
                "{unfinished} unfinished contract(s) are checkpointed in the database: run the same command again \
                 to resume them"
            );
        } else {
            eprintln!("{unfinished} unfinished contract(s) were not kept (in-memory store; --database-url keeps them)");
        }
    }
    Ok(verdict)
}

/// The batch on a started engine.
struct Batch {
    engine: Engine,
    interrupted: watch::Receiver<bool>,
    shut_down: bool,
}

impl Batch {
    async fn run(
        &mut self,
        options: &Options,
        model: Arc<dyn Model>,
        rows: &mut Vec<Row>,
        started: Instant,
    ) -> anyhow::Result<Verdict> {
        let engine = self.engine.clone();
        engine.register(contract_graph(model).context("the contract-analysis graph does not compile")?)?;
        // Nothing is resumed once Ctrl-C was pressed: it would only be stopped again.
        if options.store.is_some() && !self.is_interrupted() {
            self.adopt_resumed(rows, &options.user).await?;
        }
        assign_stems(rows);

        let progress = Progress::new(rows.len());
        let mut followers = JoinSet::new();
        for (index, row) in rows.iter_mut().enumerate() {
            if self.is_interrupted() {
                break;
            }
            let bar = progress.contract(&row.contract);
            if row.status == Status::Rejected {
                bar.finish(Status::Rejected.as_str());
                progress.done();
                continue;
            }
            let run_id = match (row.run_id, row.text.take()) {
                (Some(run_id), _) => run_id,
                (None, Some(Ok(text))) => {
                    let input = ContractState::new(row.contract.clone(), text);
                    match engine.start_run(GRAPH_NAME, &input, UserContext::new(options.user.clone())).await {
                        Ok(run_id) => run_id,
                        Err(error) => {
                            row.status = Status::Failed;
                            row.error = Some(format!("cannot start its run: {error}"));
                            bar.finish(Status::Failed.as_str());
                            progress.done();
                            continue;
                        }
                    }
                }
                (None, _) => continue,
            };
            row.run_id = Some(run_id);
            let (engine, stem, out) = (engine.clone(), row.stem.clone(), options.out.clone());
            followers.spawn(async move { (index, follow(engine, run_id, bar, &out, &stem).await) });
        }

        while !self.is_interrupted() {
            let mut interrupted = self.interrupted.clone();
            tokio::select! {
                next = followers.join_next() => match next {
                    Some(joined) => {
                        record(rows, joined);
                        progress.done();
                    }
                    None => break,
                },
                // An error means no Ctrl-C can come (the listener could not be installed).
                Ok(_) = interrupted.wait_for(|&yes| yes) => {}
            }
        }

        let verdict = if self.is_interrupted() {
            progress.say(
                "interrupted: stopping runs at their next step boundary (reports already written are kept; \
                 Ctrl-C again to exit at once)",
            );
            self.shut_down = true;
            // The followers go on while the engine shuts down: a run that ends meanwhile
            // still gets its report.
            let shutdown = engine.shutdown();
            tokio::pin!(shutdown);
            let mut stopped = false;
            while !stopped {
                tokio::select! {
                    result = &mut shutdown => {
                        result.context("the engine did not shut down cleanly")?;
                        stopped = true;
                    }
                    Some(joined) = followers.join_next() => {
                        record(rows, joined);
                        progress.done();
                    }
                }
            }
            // The engine is gone: the followers still waiting see their streams end.
            let _ = tokio::time::timeout(FOLLOWERS_GRACE, async {
                while let Some(joined) = followers.join_next().await {
                    record(rows, joined);
                    progress.done();
                }
            })
            .await;
            followers.abort_all();
            for row in rows.iter_mut().filter(|r| r.status == Status::Pending) {
                row.status = Status::Interrupted;
            }
            Verdict::Interrupted
        } else if rows.iter().all(|r| r.status == Status::Completed) {
            Verdict::AllCompleted
        } else {
            Verdict::SomeFailed
        };
        progress.finish(&format!("in {}", render::duration(started.elapsed())));
        Ok(verdict)
    }

    fn is_interrupted(&self) -> bool {
        *self.interrupted.borrow()
    }

    /// Resumes the runs of this graph and user an earlier process left unfinished (other
    /// graphs' and users' runs are left to their own processes), and follows them: as the
    /// row of an input with the same name and text (the contract is not analysed twice),
    /// or as a row of its own.
    async fn adopt_resumed(&self, rows: &mut Vec<Row>, user: &str) -> anyhow::Result<()> {
        let resumed = self
            .engine
            .recover_where(|run| run.graph == GRAPH_NAME && run.user.user_id == user)
            .await
            .context("cannot resume the unfinished runs")?;
        for run_id in resumed {
            let run = self.engine.status(run_id).await?.run;
            let input: ContractState = serde_json::from_value(run.input).unwrap_or_default();
            let same = rows.iter().position(|row| {
                row.run_id.is_none()
                    && row.contract == input.name
                    && matches!(&row.text, Some(Ok(text)) if *text == input.text)
            });
            let row = match same {
                Some(index) => &mut rows[index],
                None => {
                    let name = if input.name.is_empty() { run_id.to_string() } else { input.name };
                    rows.push(Row::new(name, None));
                    let last = rows.len() - 1;
                    &mut rows[last]
                }
            };
            row.run_id = Some(run_id);
            row.resumed = true;
            row.text = None;
        }
        Ok(())
    }
}

/// Puts what a follower found into its row.
fn record(rows: &mut [Row], joined: Result<(usize, Ended), tokio::task::JoinError>) {
    // A follower that panicked or was aborted leaves its row pending (then interrupted).
    let Ok((index, ended)) = joined else { return };
    if let Some(row) = rows.get_mut(index) {
        row.status = ended.status;
        row.report = ended.report;
        row.files = ended.files;
        row.duration = ended.duration;
        row.error = ended.error;
    }
}

/// Follows one run on its bar until it ends, then writes its reports.
async fn follow(engine: Engine, run_id: Uuid, mut bar: ContractBar, out: &Path, stem: &str) -> Ended {
    if let Ok(mut events) = engine.subscribe(run_id, 1).await {
        while let Some(item) = events.next().await {
            match &item {
                Streamed::Event(record) => bar.event(&record.event),
                Streamed::Progress { event, .. } => bar.event(event),
            }
        }
    }
    let mut ended = match engine.wait(run_id).await {
        Ok(run) => outcome_of(&run),
        Err(EngineError::ShuttingDown) => {
            Ended { status: Status::Interrupted, report: None, files: None, duration: None, error: None }
        }
        Err(error) => Ended {
            status: Status::Failed,
            report: None,
            files: None,
            duration: None,
            error: Some(format!("cannot follow its run: {error}")),
        },
    };
    if let Some(report) = &ended.report {
        match write_reports(out, stem, report) {
            Ok(files) => ended.files = Some(files),
            Err(error) => {
                ended.status = Status::Failed;
                ended.error = Some(format!("its run completed, but the report could not be written: {error}"));
            }
        }
    }
    bar.finish(ended.status.as_str());
    ended
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
    Ended { status, report, files: None, duration, error }
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
    /// A directory that could not be listed, and why.
    Unlisted(PathBuf, String),
}

/// The files to analyse: files as given, directories searched recursively for contract
/// files (sorted by path; hidden entries and symbolic links to directories skipped).
fn contract_paths(paths: &[PathBuf]) -> Vec<Candidate> {
    let mut seen = HashSet::new();
    let mut candidates = Vec::new();
    for path in paths {
        if fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            let mut found = Vec::new();
            let mut unlisted = Vec::new();
            walk(path, &mut found, &mut unlisted);
            found.sort();
            candidates.extend(found.into_iter().filter(|p| seen.insert(p.clone())).map(Candidate::File));
            candidates.extend(unlisted.into_iter().map(|(p, reason)| Candidate::Unlisted(p, reason)));
        } else if seen.insert(path.clone()) {
            // Missing, unreadable or odd files are rejected with a reason when read.
            candidates.push(Candidate::File(path.clone()));
        }
    }
    candidates
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>, unlisted: &mut Vec<(PathBuf, String)>) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            unlisted.push((dir.to_owned(), format!("cannot list the directory: {error}")));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            walk(&path, found, unlisted);
        } else if has_contract_extension(&path) && !fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            found.push(path);
        }
    }
}

fn has_contract_extension(path: &Path) -> bool {
    path.extension().is_some_and(|ext| EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// A contract's text, or why it cannot be analysed. The size is checked before reading,
/// and the read is bounded, so an enormous file is never read into memory.
fn read_contract(path: &Path) -> Result<String, String> {
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

/// Writes `<stem>.json` and `<stem>.md` in `out`, each atomically.
fn write_reports(out: &Path, stem: &str, report: &Report) -> io::Result<(PathBuf, PathBuf)> {
    let json_path = out.join(format!("{stem}.json"));
    let mut json = serde_json::to_string_pretty(report).map_err(io::Error::other)?;
    json.push('\n');
    write_atomically(&json_path, json.as_bytes())?;
    let markdown_path = out.join(format!("{stem}.md"));
    write_atomically(&markdown_path, to_markdown(report).as_bytes())?;
    Ok((json_path, markdown_path))
}

/// Writes `<path>.tmp` in the same directory, then renames it over `path`: a reader (or
/// a Ctrl-C) sees the old file or the whole new one, never half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let written = File::create(&tmp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
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
        let contract = match &row.path {
            Some(path) if ambiguous.contains(row.contract.as_str()) => path.display().to_string(),
            _ => row.contract.clone(),
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
                "path": row.path.as_ref().map(|p| p.display().to_string()),
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
        names.iter().map(|n| Row::new((*n).to_owned(), None)).collect()
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
    fn a_failed_runs_error_reads_as_a_sentence() {
        let error = RunError::Aborted { reason: "the store went away".into() };
        let value = serde_json::to_value(&error).unwrap();
        assert_eq!(run_error(Some(&value)), "run aborted: the store went away");
        assert_eq!(run_error(Some(&json!("plain"))), "plain");
        assert_eq!(run_error(None), "unknown error");
    }
}
