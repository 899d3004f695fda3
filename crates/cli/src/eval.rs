//! `graphloop eval`: the contract analyser, run on the engine as `analyze` runs it,
//! scored against expert labels in CUAD's format with `graphloop_contracts::cuad`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use graphloop_contracts::cuad::{self, AnswerScores, Counts, Hits, CATEGORIES};
use graphloop_contracts::{ContractState, GRAPH_NAME};
use graphloop_core::UserContext;
use graphloop_postgres::PgStoreConfig;
use graphloop_runtime::{Engine, RunRecord, RunStatus};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::analyze::{read_contract, run_error};
use crate::engine;
use crate::render::{self, Table};

/// What `eval` was asked to do.
pub(crate) struct Options {
    /// The directory holding `labels.json`, `answers.json` and the contracts.
    pub(crate) dir: PathBuf,
    pub(crate) concurrency: Option<usize>,
    pub(crate) json: bool,
    pub(crate) model_latency: Option<Duration>,
    pub(crate) user: String,
    pub(crate) store: Option<PgStoreConfig>,
}

/// `labels.json`: `{file: {category: [labelled spans]}}`.
type Labels = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// One contract's entry in `answers.json`; its other keys (`contract_type`...) are ignored.
#[derive(Deserialize)]
struct Answered {
    /// `{category: value}`; a null value is no answer.
    #[serde(default)]
    answers: BTreeMap<String, Option<String>>,
}

/// A labelled contract, and what its run left.
struct Contract {
    file: String,
    /// Its final state, or why there is none.
    state: Result<ContractState, String>,
    /// From its run's start to its end.
    duration: Option<Duration>,
}

/// The scores of a whole evaluation.
struct Evaluation {
    dir: PathBuf,
    counts: BTreeMap<&'static str, Counts>,
    /// `None` without an `answers.json`.
    extraction: Option<AnswerScores>,
    /// Contracts in `labels.json`.
    labelled: usize,
    /// Runs started.
    runs: usize,
    /// From the first run's start to the last run's end.
    wall: Duration,
    /// The mean of the runs' own durations.
    mean_run: Option<Duration>,
    /// The contracts that could not be scored, and why.
    failures: Vec<(String, String)>,
}

/// Runs the evaluation and prints it; `Ok(false)` when some contract could not be
/// analysed (it is scored as finding nothing) or the engine did not shut down cleanly.
pub(crate) async fn run(options: Options) -> anyhow::Result<bool> {
    let labels: Labels = read_json(&options.dir.join("labels.json"), "{file: {category: [spans]}}")?
        .ok_or_else(|| anyhow::anyhow!("cannot read {}: no such file", options.dir.join("labels.json").display()))?;
    if labels.is_empty() {
        anyhow::bail!("{} labels no contracts", options.dir.join("labels.json").display());
    }
    let answers: Option<BTreeMap<String, Answered>> =
        read_json(&options.dir.join("answers.json"), "{file: {\"answers\": {category: value}}}")?;

    let mut contracts: Vec<Contract> = Vec::with_capacity(labels.len());
    let mut texts: Vec<(usize, String)> = Vec::new();
    for file in labels.keys() {
        let state = match read_contract(&options.dir.join(file)) {
            Ok(text) => {
                texts.push((contracts.len(), text));
                Err("its run was not started".to_owned()) // until its run says otherwise
            }
            Err(reason) => Err(reason),
        };
        contracts.push(Contract { file: file.clone(), state, duration: None });
    }

    let (runs, wall, shutdown_problem) = if texts.is_empty() {
        (0, Duration::ZERO, None)
    } else {
        let engine = engine::start(engine::Setup {
            runs: texts.len(),
            concurrency: options.concurrency,
            model_latency: options.model_latency,
            shutdown_timeout: None,
            store: options.store.clone(),
        })
        .await?;
        let started = Instant::now();
        let runs = run_all(&engine, &options.user, texts, &mut contracts).await;
        let wall = started.elapsed();
        let problem = match engine.shutdown().await {
            Ok(report) if report.complete => None,
            Ok(report) => Some(format!(
                "the engine did not shut down completely within its timeouts ({} run thread(s) still busy)",
                report.arbiters_left
            )),
            Err(error) => Some(format!("the engine did not shut down cleanly: {error}")),
        };
        (runs, wall, problem)
    };

    let evaluation = score(&options.dir, &labels, answers.as_ref(), &contracts, runs, wall);
    for (file, reason) in &evaluation.failures {
        eprintln!("error: {file}: {reason} (its labelled categories count as false negatives)");
    }
    if options.json {
        render::out_json(&evaluation_json(&evaluation))?;
    } else {
        render::out(&evaluation_table(&evaluation))?;
    }
    if let Some(problem) = &shutdown_problem {
        eprintln!("error: {problem}");
    }
    Ok(evaluation.failures.is_empty() && shutdown_problem.is_none())
}

/// A JSON file of the evaluation directory, `None` if it does not exist. Errors name the
/// file, and for bad JSON the shape expected and serde's message (one line).
fn read_json<T: DeserializeOwned>(path: &Path, shape: &str) -> anyhow::Result<Option<T>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => anyhow::bail!("cannot read {}: {error}", path.display()),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| anyhow::anyhow!("{} is not valid JSON of the form {shape}: {error}", path.display()))
}

/// Starts a run per readable contract, then waits for them all; returns how many ran.
async fn run_all(engine: &Engine, user: &str, texts: Vec<(usize, String)>, contracts: &mut [Contract]) -> usize {
    let mut started: Vec<(usize, Uuid)> = Vec::with_capacity(texts.len());
    for (index, text) in texts {
        let contract = &mut contracts[index];
        let input = ContractState::new(contract.file.clone(), text);
        match engine.start_run(GRAPH_NAME, &input, UserContext::new(user.to_owned())).await {
            Ok(run_id) => started.push((index, run_id)),
            Err(error) => contract.state = Err(format!("cannot start its run: {error}")),
        }
    }
    // The runs go on side by side in the engine: waiting for them in turn costs nothing.
    for &(index, run_id) in &started {
        let contract = &mut contracts[index];
        match engine.wait(run_id).await {
            Ok(run) => {
                contract.duration = render::between(run.started_at, run.finished_at);
                contract.state = final_state(&run);
            }
            Err(error) => contract.state = Err(format!("cannot follow its run {run_id}: {error}")),
        }
    }
    started.len()
}

/// A run's final state, or why it has none.
fn final_state(run: &RunRecord) -> Result<ContractState, String> {
    match (run.status, &run.output) {
        (RunStatus::Completed, Some(output)) => serde_json::from_value(output.clone())
            .map_err(|e| format!("its run {} completed, but its final state cannot be read: {e}", run.id)),
        (RunStatus::Completed, None) => Err(format!("its run {} completed without a final state", run.id)),
        (RunStatus::Failed, _) => Err(format!("its run {} failed: {}", run.id, run_error(run.error.as_ref()))),
        (status, _) => Err(format!("its run {} did not complete (it is {status})", run.id)),
    }
}

/// Scores every labelled contract; one without a final state counts as finding nothing.
fn score(
    dir: &Path,
    labels: &Labels,
    answers: Option<&BTreeMap<String, Answered>>,
    contracts: &[Contract],
    runs: usize,
    wall: Duration,
) -> Evaluation {
    let nothing = ContractState::default();
    let unlabelled = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let mut extraction = answers.map(|_| AnswerScores::default());
    let mut failures = Vec::new();
    for contract in contracts {
        let state = match &contract.state {
            Ok(state) => state,
            Err(reason) => {
                failures.push((contract.file.clone(), reason.clone()));
                &nothing
            }
        };
        let labelled = labels.get(&contract.file).unwrap_or(&unlabelled);
        cuad::score(&cuad::predictions(state), labelled, &mut counts);
        let answered = answers.and_then(|answers| answers.get(&contract.file));
        if let (Some(scores), Some(answered)) = (extraction.as_mut(), answered) {
            let values: BTreeMap<String, String> =
                answered.answers.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
            cuad::score_answers(state, &values, scores);
        }
    }
    let durations: Vec<Duration> = contracts.iter().filter_map(|c| c.duration).collect();
    let mean_run =
        u32::try_from(durations.len()).ok().filter(|&n| n > 0).map(|n| durations.iter().sum::<Duration>() / n);
    Evaluation { dir: dir.to_owned(), counts, extraction, labelled: contracts.len(), runs, wall, mean_run, failures }
}

impl Evaluation {
    /// Each covered category's counts, in `CATEGORIES` order.
    fn categories(&self) -> impl Iterator<Item = (&'static str, Counts)> + '_ {
        CATEGORIES.iter().map(|(name, _)| (*name, self.counts.get(name).copied().unwrap_or_default()))
    }

    /// Wall time per contract run.
    fn per_contract(&self) -> Option<Duration> {
        u32::try_from(self.runs).ok().filter(|&n| n > 0).map(|n| self.wall / n)
    }
}

fn two_places(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn evaluation_table(evaluation: &Evaluation) -> String {
    let mut table = Table::new(&["category", "TP", "FP", "FN", "precision", "recall", "F1", "evidence overlap"]);
    for (name, c) in evaluation.categories() {
        table.row(vec![
            name.to_owned(),
            c.true_positives.to_string(),
            c.false_positives.to_string(),
            c.false_negatives.to_string(),
            two_places(c.precision()),
            two_places(c.recall()),
            two_places(Some(c.f1())),
            two_places(c.overlap_rate()),
        ]);
    }
    let mut text = table.render();
    text.push_str(&format!(
        "\nmacro-F1 {:.3} over {} categories\n",
        cuad::macro_f1(&evaluation.counts),
        evaluation.counts.len()
    ));
    let hits = |h: Hits| format!("{}/{}", h.hits, h.total);
    match &evaluation.extraction {
        Some(e) => text.push_str(&format!(
            "extraction: governing law {}, agreement date {}, effective date {}, expiration date {}, \
             parties precision {} recall {}\n",
            hits(e.governing_law),
            hits(e.agreement_date),
            hits(e.effective_date),
            hits(e.expiration_date),
            hits(e.parties_found),
            hits(e.parties_expected),
        )),
        None => text.push_str("extraction: not scored (no answers.json)\n"),
    }
    text.push_str(&format!(
        "timing: {} contract{} in {} wall ({} per contract); mean run duration {}",
        evaluation.runs,
        if evaluation.runs == 1 { "" } else { "s" },
        render::duration(evaluation.wall),
        evaluation.per_contract().map_or_else(|| "-".to_owned(), |d| format!("{} ms", d.as_millis())),
        evaluation.mean_run.map_or_else(|| "-".to_owned(), render::duration),
    ));
    let failed = evaluation.failures.len();
    if failed > 0 {
        text.push_str(&format!(
            "\nnot analysed: {failed} of {} labelled contracts (see stderr; scored as finding nothing)",
            evaluation.labelled
        ));
    }
    text
}

fn hits_json(h: Hits) -> Value {
    json!({"hits": h.hits, "total": h.total, "rate": h.rate()})
}

fn evaluation_json(evaluation: &Evaluation) -> Value {
    let categories: Vec<Value> = evaluation
        .categories()
        .map(|(name, c)| {
            json!({
                "category": name,
                "true_positives": c.true_positives,
                "false_positives": c.false_positives,
                "false_negatives": c.false_negatives,
                "evidence_overlaps": c.evidence_overlaps,
                "precision": c.precision(),
                "recall": c.recall(),
                "f1": c.f1(),
                "overlap_rate": c.overlap_rate(),
            })
        })
        .collect();
    let extraction = evaluation.extraction.map(|e| {
        json!({
            "governing_law": hits_json(e.governing_law),
            "agreement_date": hits_json(e.agreement_date),
            "effective_date": hits_json(e.effective_date),
            "expiration_date": hits_json(e.expiration_date),
            "parties_found": hits_json(e.parties_found),
            "parties_expected": hits_json(e.parties_expected),
        })
    });
    let failed: Vec<Value> =
        evaluation.failures.iter().map(|(file, reason)| json!({"file": file, "error": reason})).collect();
    json!({
        "dir": evaluation.dir.display().to_string(),
        "categories": categories,
        "macro_f1": cuad::macro_f1(&evaluation.counts),
        "categories_scored": evaluation.counts.len(),
        "extraction": extraction,
        "timing": {
            "contracts": evaluation.runs,
            "wall_ms": ms(evaluation.wall),
            "ms_per_contract": evaluation.per_contract().map(ms),
            "mean_run_ms": evaluation.mean_run.map(ms),
        },
        "labelled": evaluation.labelled,
        "failed": failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(json: Value) -> Labels {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_contract_that_was_not_analysed_counts_as_finding_nothing() {
        let labels = labels(json!({"gone.txt": {"Governing Law": ["governed by the laws of Texas"], "Insurance": []}}));
        let answers: BTreeMap<String, Answered> = serde_json::from_value(json!({
            "gone.txt": {"contract_type": "Supply", "answers": {"Governing Law": "Texas", "Parties": null}}
        }))
        .unwrap();
        let contracts = [Contract { file: "gone.txt".into(), state: Err("no such file".into()), duration: None }];
        let evaluation = score(Path::new("eval"), &labels, Some(&answers), &contracts, 0, Duration::ZERO);

        assert_eq!(evaluation.counts["Governing Law"], Counts { false_negatives: 1, ..Counts::default() });
        assert_eq!(evaluation.counts["Insurance"], Counts::default());
        assert_eq!(evaluation.counts.len(), CATEGORIES.len());
        let extraction = evaluation.extraction.unwrap();
        assert_eq!(extraction.governing_law, Hits { hits: 0, total: 1 });
        assert_eq!(extraction.parties_expected, Hits::default(), "a null answer is no answer");
        assert_eq!(evaluation.failures, [("gone.txt".to_owned(), "no such file".to_owned())]);
        assert_eq!((evaluation.per_contract(), evaluation.mean_run), (None, None));
    }

    #[test]
    fn undefined_rates_show_as_dashes_and_missing_answers_say_so() {
        let labels = labels(json!({"a.txt": {}}));
        let contracts = [Contract { file: "a.txt".into(), state: Ok(ContractState::default()), duration: None }];
        let evaluation = score(Path::new("eval"), &labels, None, &contracts, 1, Duration::from_millis(40));
        let table = evaluation_table(&evaluation);
        let law = table.lines().nth(1).unwrap();
        assert_eq!(
            law.split_whitespace().collect::<Vec<_>>(),
            ["Governing", "Law", "0", "0", "0", "-", "-", "1.00", "-"]
        );
        assert!(table.contains("macro-F1 1.000 over 20 categories"), "{table}");
        assert!(table.contains("extraction: not scored (no answers.json)"), "{table}");
        assert!(
            table.contains("timing: 1 contract in 40 ms wall (40 ms per contract); mean run duration -"),
            "{table}"
        );
        assert!(!table.contains("not analysed"), "{table}");

        let json = evaluation_json(&evaluation);
        assert_eq!(json["categories"][0]["precision"], Value::Null);
        assert_eq!(json["extraction"], Value::Null);
    }

    #[test]
    fn the_json_files_name_themselves_when_they_are_not_valid() {
        let dir = std::env::temp_dir().join(format!("gl-cli-eval-unit-{}", Uuid::now_v7().simple()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("labels.json");
        assert!(read_json::<Labels>(&path, "{}").unwrap().is_none(), "a missing file is no file");

        fs::write(&path, "{\"a.txt\": [1]}").unwrap();
        let error = read_json::<Labels>(&path, "{file: {category: [spans]}}").unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "{} is not valid JSON of the form {{file: {{category: [spans]}}}}: invalid type: sequence, \
                 expected a map at line 1 column 10",
                path.display()
            )
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
