//! `graphloop`: the command-line tool of the graphloop workflow engine.
//!
//! - `graphloop analyze`: runs the contract-analysis workflow on the engine, one run per
//!   contract, with live progress, and writes a JSON and a Markdown report per contract.
//! - `graphloop eval`: runs the same workflow on contracts labelled in CUAD's format and
//!   scores it against the labels: per-category counts, macro-F1, extraction hits, timing.
//! - `graphloop runs list|show|events`: inspects the runs kept in PostgreSQL.
//! - `graphloop graph show`: prints a workflow graph as Mermaid or Graphviz DOT.
//!
//! This binary is glue: it parses flags, wires the engine, the store and the contract
//! graph together, and prints. It holds no workflow logic of its own.
//!
//! Exit status: 0 on success, 1 when something failed (a contract, a run not found, the
//! database), 2 for a usage error, 130 after Ctrl-C.

mod analyze;
mod engine;
mod eval;
mod render;
mod runs;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use graphloop_contracts::{contract_graph, RuleModel, GRAPH_NAME};
use graphloop_postgres::PgStoreConfig;
use graphloop_runtime::RunStatus;
use uuid::Uuid;

/// Analyse contracts with graphloop's contract-analysis workflow, and inspect its runs.
///
/// Without --database-url, runs live in an in-memory store and are gone when the command
/// ends; with it, every run, event and checkpoint is kept in PostgreSQL, and an analysis
/// stopped by Ctrl-C (or a crash) resumes from its checkpoints when `analyze` is given
/// the same contracts again.
#[derive(Debug, Parser)]
#[command(name = "graphloop", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
struct Global {
    /// PostgreSQL URL for runs, events and checkpoints [default: in memory, gone at exit]
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    database_url: Option<String>,

    /// PostgreSQL schema for graphloop's tables (created if missing)
    #[arg(
        long,
        env = "GRAPHLOOP_SCHEMA",
        global = true,
        hide_env_values = true,
        default_value = "public",
        value_name = "NAME",
        help_heading = "Global options"
    )]
    schema: String,

    /// The user whose runs are started and listed
    #[arg(
        long,
        env = "GRAPHLOOP_USER",
        global = true,
        hide_env_values = true,
        default_value = "local",
        value_name = "ID",
        help_heading = "Global options"
    )]
    user: String,
}

impl Global {
    /// The PostgreSQL store, when a database URL is given.
    fn store(&self) -> Option<PgStoreConfig> {
        self.database_url.as_ref().map(|url| PgStoreConfig::new(url.clone()).schema(self.schema.clone()))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Analyse contracts: one workflow run per contract, a JSON and a Markdown report each
    ///
    /// Each PATH is a contract file (taken whatever its extension) or a directory, searched
    /// recursively for .txt, .md and .markdown files (hidden files and directories are
    /// skipped). Files that are missing, unreadable, empty, binary or larger than the
    /// limit are reported as rejected; the others still run. The --out directory is
    /// never searched.
    ///
    /// With --database-url, an unfinished run of --user (left by an interrupted or
    /// crashed `analyze`) is resumed from its last checkpoint, and reported as "resumed",
    /// when this command is given the same contract again: the same file name and the
    /// same text. Other unfinished runs are left alone (another `analyze` may be running
    /// them); if --user has any, one line on stderr counts them.
    ///
    /// Exit status: 0 if every contract completed, 1 if any failed or was rejected (or
    /// the engine did not shut down cleanly), 130 after Ctrl-C. Ctrl-C lets running
    /// steps reach their checkpoint (at most --shutdown-timeout), writes the reports of
    /// the contracts that completed meanwhile, and prints the summary; a second Ctrl-C
    /// prints the summary so far and exits at once. Reports already written are kept.
    Analyze(AnalyzeArgs),

    /// Score the contract analyser against expert labels in CUAD's format
    ///
    /// DIR holds labels.json, {file: {category: [labelled text spans]}} (an empty list: the
    /// clause is absent), the contracts it names (paths relative to DIR), and optionally
    /// answers.json, {file: {"answers": {category: value}}} (other keys are ignored).
    ///
    /// Every labelled contract is analysed as `analyze` analyses it: one run per contract
    /// on the engine (--concurrency, --model-latency and --database-url as for analyze; no
    /// reports are written). Each run's final state is then scored for the CUAD
    /// categories graphloop covers: a category is predicted when the analyser finds it,
    /// and labelled when its list of spans is not empty. The table has per category the
    /// true and false positives, false negatives, precision, recall, F1 and the share of
    /// true positives whose evidence overlaps a labelled span ("-" where undefined), then
    /// the macro-F1 over the categories, then, with answers.json, the extraction: hits out
    /// of the answers given for governing law, agreement, effective and expiration dates,
    /// and the parties' precision and recall. Timing: the contracts run, the wall time from
    /// the first run's start to the last run's end, that per contract, and the mean of the
    /// runs' own durations. --json prints all of it as one JSON object instead.
    ///
    /// A labelled contract that is missing or unreadable, or whose run fails, is named on
    /// stderr with the reason, and counts as finding nothing: its labelled categories are
    /// false negatives and its answers misses. The others are still scored.
    ///
    /// Exit status: 0 if every labelled contract was analysed, 1 if one was not, or if
    /// labels.json is missing or it or answers.json is not valid JSON.
    Eval(EvalArgs),

    /// Inspect the runs kept in PostgreSQL (needs --database-url)
    #[command(subcommand)]
    Runs(RunsCommand),

    /// Show a workflow graph the CLI knows
    #[command(subcommand)]
    Graph(GraphCommand),
}

/// The options of `graphloop analyze`.
#[derive(Debug, Args)]
struct AnalyzeArgs {
    /// Contract files, or directories to search for .txt, .md and .markdown files
    #[arg(required = true, value_name = "PATHS")]
    paths: Vec<PathBuf>,

    /// Directory for the reports (NAME.json and NAME.md per contract; created if missing)
    #[arg(long, default_value = "./reports", value_name = "DIR")]
    out: PathBuf,

    #[command(flatten)]
    run: RunArgs,

    /// After Ctrl-C, how long running steps may go on to reach their checkpoint before
    /// they are stopped at their last one
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    shutdown_timeout: Duration,
}

/// The options `analyze` and `eval` share: how contracts are run and what is printed.
#[derive(Debug, Args)]
struct RunArgs {
    /// Contracts analysed at once [default: the engine's, from the open-file limit]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: Option<u16>,

    /// Print one JSON object on stdout instead of the table
    #[arg(long)]
    json: bool,

    /// Delay per model call, to emulate a hosted language model (200ms, 1.5s, 0)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    model_latency: Option<Duration>,
}

/// The options of `graphloop eval`.
#[derive(Debug, Args)]
struct EvalArgs {
    /// The directory with labels.json, the contracts it names and, optionally, answers.json
    #[arg(value_name = "DIR")]
    dir: PathBuf,

    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// List --user's runs, newest first
    List(ListArgs),
    /// Show one run: status, progress, timings, error, and a contract's report summary
    Show(ShowArgs),
    /// Print a run's stored events, one line each
    Events(EventsArgs),
}

/// The options of `graphloop runs list`.
#[derive(Debug, Args)]
struct ListArgs {
    /// Only runs with this status
    #[arg(long, value_name = "STATUS", value_parser = parse_status)]
    status: Option<RunStatus>,
    /// Only runs of this graph
    #[arg(long, value_name = "NAME")]
    graph: Option<String>,
    /// At most this many runs
    #[arg(long, default_value_t = 50, value_name = "N")]
    limit: usize,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

/// The options of `graphloop runs show`.
#[derive(Debug, Args)]
struct ShowArgs {
    /// The run's id
    #[arg(value_name = "ID", value_parser = parse_run_id)]
    id: Uuid,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

/// The options of `graphloop runs events`.
#[derive(Debug, Args)]
struct EventsArgs {
    /// The run's id
    #[arg(value_name = "ID", value_parser = parse_run_id)]
    id: Uuid,
    /// Start at this event (events are numbered from 1)
    #[arg(long = "from", default_value_t = 1, value_name = "SEQ")]
    from_seq: u64,
    /// Print JSON instead of lines
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum GraphCommand {
    /// Print a graph as a Mermaid flowchart or Graphviz DOT
    Show {
        /// The graph's name (known: contract-analysis)
        #[arg(value_name = "NAME")]
        name: String,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Mermaid)]
        format: Format,
    },
}

/// How `graph show` renders a graph.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// A Mermaid flowchart
    Mermaid,
    /// Graphviz DOT
    Dot,
}

/// A mistake on the command line found after parsing: exits with status 2, like clap's own.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Exit statuses.
const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            let code = if error.is::<UsageError>() { EXIT_USAGE } else { EXIT_FAILED };
            // `{:#}` prints anyhow's chain of contexts on one line: "outer: inner: cause".
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli { global, command } = cli;
    match command {
        Command::Analyze(args) => {
            let options = analyze::Options {
                paths: args.paths,
                out: args.out,
                concurrency: args.run.concurrency.map(usize::from),
                json: args.run.json,
                model_latency: args.run.model_latency,
                shutdown_timeout: args.shutdown_timeout,
                user: global.user.clone(),
                store: global.store(),
            };
            Ok(match analyze::run(options).await? {
                analyze::Verdict::AllCompleted => ExitCode::SUCCESS,
                analyze::Verdict::SomeFailed => ExitCode::from(EXIT_FAILED),
                analyze::Verdict::Interrupted => ExitCode::from(EXIT_INTERRUPTED),
                // A second Ctrl-C: returning would wait for the engine's threads and the
                // reports being written; the summary so far is printed already.
                analyze::Verdict::Abandoned => std::process::exit(i32::from(EXIT_INTERRUPTED)),
            })
        }
        Command::Eval(args) => {
            let options = eval::Options {
                dir: args.dir,
                concurrency: args.run.concurrency.map(usize::from),
                json: args.run.json,
                model_latency: args.run.model_latency,
                user: global.user.clone(),
                store: global.store(),
            };
            let all_scored = eval::run(options).await?;
            Ok(if all_scored { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
        }
        Command::Runs(command) => {
            let store = global.store().ok_or_else(|| {
                UsageError("runs are kept in PostgreSQL only: pass --database-url or set DATABASE_URL".into())
            })?;
            match command {
                RunsCommand::List(a) => runs::list(store, &global.user, a.status, a.graph, a.limit, a.json).await?,
                RunsCommand::Show(a) => runs::show(store, &global.user, a.id, a.json).await?,
                RunsCommand::Events(a) => runs::events(store, &global.user, a.id, a.from_seq, a.json).await?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Graph(GraphCommand::Show { name, format }) => {
            if name != GRAPH_NAME {
                return Err(UsageError(format!("unknown graph `{name}`; known graphs: {GRAPH_NAME}")).into());
            }
            let graph = contract_graph(Arc::new(RuleModel))?;
            let text = match format {
                Format::Mermaid => graph.to_mermaid(),
                Format::Dot => graph.to_dot(),
            };
            render::out(&text)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `200ms`, `1.5s`, `2m`, `1h`, `0`: a duration for --model-latency and --shutdown-timeout.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration (examples: 200ms, 1.5s, 0)"))?;
    let seconds = match unit.trim() {
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "" => return Err(format!("`{text}` needs a unit: ms, s, m or h (examples: 200ms, 1.5s)")),
        other => return Err(format!("unknown unit `{other}` in `{text}`: use us, ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is out of range"))
}

fn parse_status(text: &str) -> Result<RunStatus, String> {
    RunStatus::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| {
        let known: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown status `{text}`; one of: {}", known.join(", "))
    })
}

fn parse_run_id(text: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text.trim())
        .map_err(|_| format!("`{text}` is not a run id (a UUID like 0190f5c4-8d4e-7d2a-9b1e-3f6a2c1d9e07)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_take_a_unit_except_zero() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_duration("200").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("fast").unwrap_err().contains("not a duration"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn statuses_and_ids_are_parsed_with_a_clear_error() {
        assert_eq!(parse_status("completed"), Ok(RunStatus::Completed));
        assert!(parse_status("done").unwrap_err().contains("one of: queued, running"));
        assert!(parse_run_id("nope").unwrap_err().contains("not a run id"));
        assert!(parse_run_id("0190f5c4-8d4e-7d2a-9b1e-3f6a2c1d9e07").is_ok());
    }
}
