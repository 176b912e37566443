//! `raft-lab matrix`: the bug catalogue matrix — how well the lab catches each
//! catalogue bug, and that the correct build raises no false alarm.
//!
//! 1. For every catalogue bug ([`Bug::ALL`], or `--bugs`), run its recipe ([`recipes`],
//!    `workloads/matrix.toml`: a workload and the faults that expose the bug) on a real local
//!    cluster with the bug switched on, K times with seeds `1..=K`, one run after another (runs
//!    share loopback addresses). A bug without a recipe runs the default (`ci.toml` under
//!    every fault) and the table says `(default)`.
//! 2. Unless `--skip-model`, for each bug: the deterministic simulator with the schedule aimed
//!    at it (`SimConfig::targeting(seed, bug).with_bug(bug)`, seeds `0..N`, N = `--sim-seeds`,
//!    default 20) and the stateright hunt for it (`model::check::hunts::hunt`), which names the
//!    violated property ("—" for a bug the model has no hunt for).
//! 3. Unless `--no-correct`, the correct build (no bug) K times under each nemesis kind alone
//!    (the `[correct]` table of the recipes: every kind by default).
//!
//! Without nftables or root, network fault kinds (partitions, `freeze-leader`, `packet-loss`)
//! are left out: a bug recipe keeps its other kinds (or falls back to `kill`), a correct run
//! of such a kind is skipped; both are noted.
//!
//! **Output**: `results/matrix/<timestamp>/` (`--results DIR` for another root) holds
//! `matrix.json` (every row and every run, with its own folder under `runs/`) and `matrix.md`
//! (the same tables in Markdown, with the command line, ready for the README); both are
//! rewritten after every run, so an interrupted matrix leaves what it measured. The table is
//! printed on stdout at the end, with a line naming the bugs detected in fewer than 9 of 10
//! runs. One progress bar over all steps on stderr, unless `--quiet`.
//!
//! **Definitions**
//! * *detected*: the run's verdict is invalid (the checker found the history not linearizable).
//! * *time to detection*: seconds from the run's first client invocation (the workload's start)
//!   to the completion of the earliest operation the checker could not place. The run's history
//!   is re-checked with every anomaly asked for (the run's own check stops at the first invalid
//!   key, which need not be the earliest), and the earliest completion among the failing
//!   operations is taken (the `time` fields of `history.jsonl`). The median is over the detected
//!   runs (the mean of the two middle values for an even count).
//! * *anomaly*: the `f` of each operation the checker could not place, with its status when
//!   not `ok` (e.g. `read`, `cas (fail)`); "not explained" when the checker's explanation ran
//!   out of budget.
//!
//! **Exit codes**: `0` every correct run was valid (and nothing failed to run); `1` a correct
//! run was invalid — a real bug in the lab or the node, reported loudly; `2` no correct run
//! was invalid but one was unknown (the check gave up, or nothing succeeded); `3` bad input,
//! a run that could not be carried out, or Ctrl-C (the partial matrix is written). Bug
//! detection rates never change the exit code: they are the measurement.
//!
//! Ctrl-C stops the run in progress (its cluster is stopped and its nftables rules deleted by
//! [`crate::lab::run`]), writes the partial matrix and ends with 3; a second Ctrl-C exits at once.

pub mod recipes;

use crate::lab::workload::{Overrides, Workload};
use crate::nemesis::NemesisKind;
use crate::report::results;
use checker::history::{Format, Status};
use checker::Verdict;
use model::bugs::Bug;
use model::sim::SimConfig;
use recipes::{RecipeError, Recipes, Source, Tuning};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{oneshot, watch};

/// Simulator seeds per bug unless `--sim-seeds`.
pub const DEFAULT_SIM_SEEDS: u64 = 20;
/// Seeds per bug and per nemesis kind unless `--seeds`.
pub const DEFAULT_SEEDS: u64 = 10;
/// The share of runs a bug must be detected in (9 of 10).
const TARGET: (usize, usize) = (9, 10);
/// Budget of the re-check that finds every anomaly of an invalid run.
const RECHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Guard on one stateright hunt (they take seconds).
const HUNT_TIMEOUT: Duration = Duration::from_secs(300);

/// What `raft-lab matrix` was asked to do.
#[derive(Clone, Debug)]
pub struct MatrixOptions {
    /// The recipes file (`workloads/matrix.toml`).
    pub recipes: PathBuf,
    /// K: runs per bug and per nemesis kind of the correct build (seeds `1..=K`).
    pub seeds: u64,
    /// Overrides every recipe's and workload's time limit.
    pub time_limit: Option<f64>,
    /// The bugs to run, in catalogue order.
    pub bugs: Vec<Bug>,
    /// Run the correct build under every nemesis kind.
    pub correct: bool,
    /// Results root: the matrix goes to `<results>/matrix/<timestamp>/`.
    pub results: PathBuf,
    /// Skip the simulator and raft-model columns.
    pub skip_model: bool,
    /// Simulator seeds per bug.
    pub sim_seeds: u64,
    /// No progress bar, no per-run lines.
    pub quiet: bool,
    /// The command line, for `matrix.md`.
    pub command_line: String,
}

impl MatrixOptions {
    /// The defaults of `raft-lab matrix`: every bug, K = 10, the correct build, both model
    /// columns, `workloads/matrix.toml`, `results/`.
    pub fn new(command_line: String) -> Self {
        MatrixOptions {
            recipes: PathBuf::from(recipes::DEFAULT_RECIPES),
            seeds: DEFAULT_SEEDS,
            time_limit: None,
            bugs: Bug::ALL.to_vec(),
            correct: true,
            results: PathBuf::from(crate::lab::run::DEFAULT_RESULTS),
            skip_model: false,
            sim_seeds: DEFAULT_SIM_SEEDS,
            quiet: false,
            command_line,
        }
    }
}

/// Why the matrix could not start or could not write its results.
#[derive(Debug, Error)]
pub enum MatrixError {
    #[error(transparent)]
    Recipes(#[from] RecipeError),
    #[error("--bugs: {0}")]
    Bugs(String),
    #[error("--seeds: must be at least 1")]
    Seeds,
    #[error("--time-limit: must be a number > 0, got {0}")]
    TimeLimit(f64),
    /// A recipe's workload does not load with the recipe's overrides.
    #[error("{}: {key}: {message}", recipes.display())]
    Workload {
        recipes: PathBuf,
        key: String,
        message: String,
    },
    #[error("{0}")]
    Node(String),
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        /// Not a `source`: the message already says it.
        error: std::io::Error,
    },
}

/// `all`, or a comma-separated list of catalogue bug names (returned in catalogue order,
/// without duplicates).
pub fn parse_bug_list(list: &str) -> Result<Vec<Bug>, MatrixError> {
    let mut chosen = BTreeSet::new();
    let mut none = false;
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if word == "all" {
            chosen.extend(Bug::ALL);
        } else if word == "none" {
            // Only the correct build's runs.
            none = true;
        } else {
            chosen.insert(
                word.parse::<Bug>()
                    .map_err(|e| MatrixError::Bugs(e.to_string()))?,
            );
        }
    }
    if chosen.is_empty() && !none {
        return Err(MatrixError::Bugs(
            "name at least one bug, \"all\", or \"none\" (only the correct build)".to_string(),
        ));
    }
    Ok(Bug::ALL
        .into_iter()
        .filter(|b| chosen.contains(b))
        .collect())
}

/// One lab run of the matrix.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub seed: u64,
    /// `"valid"`, `"invalid"`, `"unknown"`, or `"error"` (the run could not be carried out).
    pub verdict: String,
    /// Seconds from the first invocation to the completion of the earliest operation the
    /// checker could not place (invalid runs).
    pub detection_s: Option<f64>,
    /// Anomaly kinds (see the module documentation).
    pub anomalies: Vec<String>,
    /// ok / fail / info operations.
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Faults applied, per kind.
    pub faults_applied: BTreeMap<String, u64>,
    /// Seconds the workload phase lasted.
    pub workload_s: f64,
    /// Wall-clock seconds of the whole run (cluster start to verdict).
    pub wall_s: f64,
    /// The run's own results folder.
    pub run_dir: Option<String>,
    pub error: Option<String>,
    /// The run's warnings (faults never applied, nodes that did not stop cleanly...).
    pub warnings: Vec<String>,
}

/// The simulator column of a bug.
#[derive(Clone, Debug, Serialize)]
pub struct SimColumn {
    pub caught: u64,
    pub seeds: u64,
    /// How it was caught: the violated property, or "history not linearizable".
    pub by: BTreeMap<String, u64>,
    pub seconds: f64,
    /// The simulator failed (a panic): nothing measured.
    pub error: Option<String>,
}

/// The raft-model column of a bug whose hunt ran.
#[derive(Clone, Debug, Serialize)]
pub struct ModelColumn {
    /// The violated property, if the hunt found one.
    pub property: Option<String>,
    /// The property the hunt is meant to find.
    pub expected: Option<String>,
    pub unique_states: usize,
    pub max_depth: usize,
    pub seconds: f64,
    pub error: Option<String>,
}

/// One bug's row.
#[derive(Clone, Debug, Serialize)]
pub struct BugRow {
    pub bug: String,
    /// `"file"` (a recipe of the recipes file) or `"default"`.
    pub recipe: String,
    /// The workload file's name.
    pub workload: String,
    pub workload_path: String,
    /// The faults actually run (partition kinds left out without nftables).
    pub nemesis: Vec<String>,
    /// Why the faults differ from the recipe's, if they do.
    pub nemesis_note: Option<String>,
    /// The time limit override (`None`: the workload's own).
    pub time_limit_s: Option<f64>,
    pub why: String,
    pub note: Option<String>,
    pub runs: Vec<RunRecord>,
    /// Runs with an invalid verdict.
    pub detected: usize,
    pub median_detection_s: Option<f64>,
    /// Every anomaly kind seen over the runs.
    pub anomaly_kinds: Vec<String>,
    /// `None` with `--skip-model` (or not reached).
    pub simulator: Option<SimColumn>,
    /// `None` with `--skip-model`, when the model has no hunt for the bug, or not reached;
    /// see `hunted`.
    pub raft_model: Option<ModelColumn>,
    /// Whether `model::check::hunts` has a hunt for this bug.
    pub hunted: bool,
}

/// The correct build under one nemesis kind.
#[derive(Clone, Debug, Serialize)]
pub struct CorrectRow {
    pub nemesis: String,
    pub workload: String,
    pub workload_path: String,
    /// Why it did not run (partitions without nftables).
    pub skipped: Option<String>,
    pub runs: Vec<RunRecord>,
    pub valid: usize,
    pub invalid: usize,
    pub unknown: usize,
    pub errors: usize,
}

/// `matrix.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Matrix {
    pub command: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub git_revision: Option<String>,
    /// The matrix folder.
    pub dir: String,
    pub recipes: String,
    /// K.
    pub seeds: u64,
    pub time_limit_s: Option<f64>,
    /// Simulator seeds per bug (0 with `--skip-model`).
    pub sim_seeds: u64,
    pub model_columns: bool,
    /// Whether partition faults could run (nftables and root).
    pub partitions: bool,
    /// The definitions of the columns (as in the module documentation).
    pub definitions: BTreeMap<&'static str, &'static str>,
    pub bugs: Vec<BugRow>,
    pub correct: Vec<CorrectRow>,
    /// Bugs the lab detected in fewer than 9 of 10 runs.
    pub below_target: Vec<String>,
    pub interrupted: bool,
    pub exit_code: u8,
}

/// Runs the matrix. `Err` only when it cannot start (bad options or recipes, no `raft-node`,
/// no results folder) or cannot write its results; failed runs are recorded as such.
pub async fn run(opts: &MatrixOptions) -> Result<Matrix, MatrixError> {
    if opts.seeds == 0 {
        return Err(MatrixError::Seeds);
    }
    if let Some(t) = opts.time_limit.filter(|t| !(t.is_finite() && *t > 0.0)) {
        return Err(MatrixError::TimeLimit(t));
    }
    if opts.bugs.is_empty() && !opts.correct {
        return Err(MatrixError::Bugs(
            "nothing to run: no bug and --no-correct".into(),
        ));
    }
    let recipes = Recipes::load(&opts.recipes)?;
    crate::db::local::raft_node_binary().map_err(|e| MatrixError::Node(e.to_string()))?;
    let partitions = crate::net::nft::Nft::new().is_ok();

    // Plan everything and validate every workload before the first cluster starts.
    let mut plan = Plan::default();
    for &bug in &opts.bugs {
        let recipe = recipes.recipe(bug);
        let (kinds, nemesis_note) = usable_kinds(&recipe.nemesis, partitions);
        let key = match recipe.source {
            Source::File => format!("bug.{bug}"),
            Source::Default => format!("bug.{bug} (default recipe)"),
        };
        validate(&recipes.path, &key, &recipe.workload, &recipe.tuning, opts)?;
        plan.bugs.push(BugRow {
            bug: bug.name().to_string(),
            recipe: recipe.source.name().to_string(),
            workload: file_name(&recipe.workload),
            workload_path: recipe.workload.display().to_string(),
            nemesis: kinds.iter().map(|k| k.name().to_string()).collect(),
            nemesis_note,
            time_limit_s: opts.time_limit.or(recipe.tuning.time_limit),
            why: recipe.why.clone(),
            note: recipe.note.clone(),
            runs: Vec::new(),
            detected: 0,
            median_detection_s: None,
            anomaly_kinds: Vec::new(),
            simulator: None,
            raft_model: None,
            hunted: model::check::hunts::hunt(bug).is_some(),
        });
        plan.recipes
            .push((bug, recipe.workload, kinds, recipe.tuning));
    }
    if opts.correct {
        let c = &recipes.correct;
        validate(&recipes.path, "correct", &c.workload, &c.tuning, opts)?;
        for &kind in &c.nemesis {
            plan.correct.push(CorrectRow {
                nemesis: kind.name().to_string(),
                workload: file_name(&c.workload),
                workload_path: c.workload.display().to_string(),
                skipped: (kind.needs_network() && !partitions)
                    .then(|| "network faults need nftables and root".to_string()),
                runs: Vec::new(),
                valid: 0,
                invalid: 0,
                unknown: 0,
                errors: 0,
            });
        }
    }

    let (dir, started_at) =
        results::create_run_dir(&opts.results, "matrix").map_err(|error| MatrixError::Io {
            path: opts.results.join("matrix"),
            error,
        })?;
    let runs_root = dir.join("runs");
    let mut matrix = Matrix {
        command: opts.command_line.clone(),
        started_at,
        finished_at: None,
        git_revision: results::git_revision(),
        dir: dir.display().to_string(),
        recipes: recipes.path.display().to_string(),
        seeds: opts.seeds,
        time_limit_s: opts.time_limit,
        sim_seeds: if opts.skip_model { 0 } else { opts.sim_seeds },
        model_columns: !opts.skip_model,
        partitions,
        definitions: definitions(),
        bugs: plan.bugs,
        correct: plan.correct,
        below_target: Vec::new(),
        interrupted: false,
        exit_code: 0,
    };
    let out = Output { dir: dir.clone() };
    out.write(&mut matrix)?;
    if !partitions && !opts.quiet {
        eprintln!(
            "raft-lab matrix: nftables or root unavailable: network faults are left out (see the notes in the table)"
        );
    }

    // Ctrl-C: the run in progress stops itself (crate::lab::run); the matrix stops after it.
    let (interrupt_tx, interrupt) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = interrupt_tx.send(true);
            eprintln!("raft-lab matrix: interrupted: stopping after the current step and writing the partial matrix (Ctrl-C again to exit now)");
            if tokio::signal::ctrl_c().await.is_ok() {
                crate::control::cleanup::run_all();
                std::process::exit(130);
            }
        }
    });

    let model_steps = if opts.skip_model { 0 } else { 1 };
    let total = plan.recipes.len() as u64 * (opts.seeds + model_steps)
        + matrix.correct.len() as u64 * opts.seeds;
    let bar = progress_bar(total, opts.quiet);
    let stopped = |rx: &watch::Receiver<bool>| *rx.borrow();

    'bugs: for (row, (bug, workload, kinds, tuning)) in plan.recipes.iter().enumerate() {
        for seed in 1..=opts.seeds {
            if stopped(&interrupt) {
                break 'bugs;
            }
            bar.set_message(format!("{bug}, seed {seed}"));
            let overrides = overrides(opts, tuning, kinds, seed, &runs_root, Some(*bug));
            let record = lab_run(workload, overrides).await;
            if stopped(&interrupt) && record.verdict == "error" {
                // Cut short by Ctrl-C: not a measurement.
                break 'bugs;
            }
            report_run(&bar, opts.quiet, &format!("{bug} seed {seed}"), &record);
            matrix.bugs[row].runs.push(record);
            matrix.bugs[row].tally();
            bar.inc(1);
            out.write(&mut matrix)?;
        }
        if !opts.skip_model && !stopped(&interrupt) {
            bar.set_message(format!("{bug}: simulator and raft-model"));
            let mut rx = interrupt.clone();
            let sim = tokio::select! {
                sim = simulate(*bug, opts.sim_seeds) => Some(sim),
                _ = rx.wait_for(|s| *s) => None,
            };
            let Some(sim) = sim else { break 'bugs };
            matrix.bugs[row].simulator = Some(sim);
            if matrix.bugs[row].hunted {
                let hunt = tokio::select! {
                    hunt = hunt(*bug) => Some(hunt),
                    _ = rx.wait_for(|s| *s) => None,
                };
                let Some(hunt) = hunt else { break 'bugs };
                matrix.bugs[row].raft_model = hunt;
            }
            if !opts.quiet {
                let r = &matrix.bugs[row];
                bar.suspend(|| {
                    eprintln!(
                        "{bug}: simulator {}, raft-model {}",
                        sim_cell(r),
                        model_cell(r, true)
                    )
                });
            }
            bar.inc(1);
            out.write(&mut matrix)?;
        }
    }
    if opts.correct {
        let c = &recipes.correct;
        'correct: for row in 0..matrix.correct.len() {
            if matrix.correct[row].skipped.is_some() {
                bar.inc(opts.seeds);
                continue;
            }
            let kind: NemesisKind = c.nemesis[row];
            for seed in 1..=opts.seeds {
                if stopped(&interrupt) {
                    break 'correct;
                }
                bar.set_message(format!("correct build, {kind}, seed {seed}"));
                let overrides = overrides(opts, &c.tuning, &[kind], seed, &runs_root, None);
                let record = lab_run(&c.workload, overrides).await;
                if stopped(&interrupt) && record.verdict == "error" {
                    break 'correct;
                }
                if record.verdict == "invalid" {
                    bar.suspend(|| {
                        eprintln!(
                            "raft-lab matrix: FALSE ALARM? the CORRECT build was judged NOT LINEARIZABLE under {kind} (seed {seed}): {}",
                            record.run_dir.as_deref().unwrap_or("no run folder")
                        )
                    });
                }
                report_run(
                    &bar,
                    opts.quiet,
                    &format!("correct {kind} seed {seed}"),
                    &record,
                );
                matrix.correct[row].runs.push(record);
                matrix.correct[row].tally();
                bar.inc(1);
                out.write(&mut matrix)?;
            }
        }
    }
    bar.finish_and_clear();
    watcher.abort();

    matrix.interrupted = stopped(&interrupt);
    matrix.finished_at = Some(now_rfc3339());
    out.write(&mut matrix)?;
    Ok(matrix)
}

/// What the matrix will run.
#[derive(Default)]
struct Plan {
    bugs: Vec<BugRow>,
    recipes: Vec<(Bug, PathBuf, Vec<NemesisKind>, Tuning)>,
    correct: Vec<CorrectRow>,
}

/// Where the matrix writes.
struct Output {
    dir: PathBuf,
}

impl Output {
    /// Refreshes the derived fields and rewrites `matrix.json` and `matrix.md`.
    fn write(&self, matrix: &mut Matrix) -> Result<(), MatrixError> {
        matrix.below_target = below_target(&matrix.bugs);
        matrix.exit_code = exit_code(matrix);
        let io = |path: PathBuf| move |error| MatrixError::Io { path, error };
        let json_path = self.dir.join("matrix.json");
        let json = serde_json::to_string_pretty(matrix).map_err(|e| MatrixError::Io {
            path: json_path.clone(),
            error: std::io::Error::other(e),
        })?;
        crate::report::files::write_atomically(&json_path, &(json + "\n"))
            .map_err(io(json_path.clone()))?;
        let md_path = self.dir.join("matrix.md");
        crate::report::files::write_atomically(&md_path, &markdown(matrix))
            .map_err(io(md_path.clone()))?;
        Ok(())
    }
}

impl BugRow {
    /// Recomputes the detection count, the median and the anomaly kinds from the runs.
    fn tally(&mut self) {
        self.detected = self.runs.iter().filter(|r| r.verdict == "invalid").count();
        let times: Vec<f64> = self
            .runs
            .iter()
            .filter(|r| r.verdict == "invalid")
            .filter_map(|r| r.detection_s)
            .collect();
        self.median_detection_s = median(&times);
        let kinds: BTreeSet<&String> = self.runs.iter().flat_map(|r| &r.anomalies).collect();
        self.anomaly_kinds = kinds.into_iter().cloned().collect();
    }
}

impl CorrectRow {
    fn tally(&mut self) {
        let count = |v: &str| self.runs.iter().filter(|r| r.verdict == v).count();
        self.valid = count("valid");
        self.invalid = count("invalid");
        self.unknown = count("unknown");
        self.errors = count("error");
    }
}

/// The median of `values` (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Bugs with runs that were detected in fewer than 9 of 10 of them.
fn below_target(rows: &[BugRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| !r.runs.is_empty() && r.detected * TARGET.1 < TARGET.0 * r.runs.len())
        .map(|r| r.bug.clone())
        .collect()
}

/// The exit code (see the module documentation).
pub fn exit_code(m: &Matrix) -> u8 {
    let correct: Vec<&RunRecord> = m.correct.iter().flat_map(|r| &r.runs).collect();
    let all = || {
        m.bugs
            .iter()
            .flat_map(|r| &r.runs)
            .chain(correct.iter().copied())
    };
    if correct.iter().any(|r| r.verdict == "invalid") {
        1
    } else if m.interrupted || all().any(|r| r.verdict == "error") {
        3
    } else if correct.iter().any(|r| r.verdict == "unknown") {
        2
    } else {
        0
    }
}

fn definitions() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("detected", "the run's verdict is invalid (the history is not linearizable)"),
        (
            "detection_s",
            "seconds from the run's first client invocation to the completion of the earliest \
             operation the checker could not place (history re-checked with every anomaly)",
        ),
        (
            "median_detection_s",
            "median of detection_s over the detected runs (mean of the middle two for an even count)",
        ),
        (
            "anomalies",
            "the f of each operation the checker could not place, with its status when not ok",
        ),
        (
            "simulator",
            "seeds 0..N of SimConfig::targeting(seed, bug).with_bug(bug) caught (a safety property \
             violated or the history not linearizable)",
        ),
        (
            "raft_model",
            "the property violated by the bug's hunt in model::check::hunts (stops at the first violation)",
        ),
    ])
}

/// Drops network fault kinds (partitions, `packet-loss`: nftables rules) when nftables is
/// unavailable; falls back to `kill` if none is left.
fn usable_kinds(kinds: &[NemesisKind], partitions: bool) -> (Vec<NemesisKind>, Option<String>) {
    if partitions || !kinds.iter().any(|k| k.needs_network()) {
        return (kinds.to_vec(), None);
    }
    let mut left: Vec<NemesisKind> = kinds
        .iter()
        .copied()
        .filter(|k| !k.needs_network())
        .collect();
    if left.is_empty() {
        left.push(NemesisKind::Kill);
    }
    let names = |ks: &[NemesisKind]| ks.iter().map(|k| k.name()).collect::<Vec<_>>().join(",");
    let note = format!(
        "network faults need nftables and root: ran {} instead of {}",
        names(&left),
        names(kinds)
    );
    (left, Some(note))
}

fn overrides(
    opts: &MatrixOptions,
    tuning: &Tuning,
    kinds: &[NemesisKind],
    seed: u64,
    runs_root: &Path,
    bug: Option<Bug>,
) -> Overrides {
    Overrides {
        nodes: tuning.nodes,
        time_limit: opts.time_limit.or(tuning.time_limit),
        concurrency: tuning.concurrency,
        rate: tuning.rate,
        nemesis: Some(kinds.iter().map(|k| k.name().to_string()).collect()),
        seed: Some(seed),
        results: Some(runs_root.to_path_buf()),
        bug: bug.map(|b| b.name().to_string()),
        quiet: true,
        silent: true,
        ..Overrides::default()
    }
}

/// Loads a recipe's workload with its overrides, so that a bad setting is reported before
/// any cluster starts.
fn validate(
    recipes: &Path,
    key: &str,
    workload: &Path,
    tuning: &Tuning,
    opts: &MatrixOptions,
) -> Result<(), MatrixError> {
    let o = overrides(opts, tuning, &[], 1, Path::new("."), None);
    Workload::load(workload, &o)
        .map(|_| ())
        .map_err(|e| MatrixError::Workload {
            recipes: recipes.to_path_buf(),
            key: key.to_string(),
            message: e.to_string(),
        })
}

/// One lab run, summarised; an error becomes a record with verdict `"error"`.
async fn lab_run(workload: &Path, overrides: Overrides) -> RunRecord {
    let seed = overrides.seed.unwrap_or_default();
    let started = Instant::now();
    let outcome = crate::lab::run::run_detailed(workload, &overrides).await;
    let wall_s = round3(started.elapsed().as_secs_f64());
    let mut record = RunRecord {
        seed,
        verdict: "error".to_string(),
        detection_s: None,
        anomalies: Vec::new(),
        ok: 0,
        fail: 0,
        info: 0,
        faults_applied: BTreeMap::new(),
        workload_s: 0.0,
        wall_s,
        run_dir: None,
        error: None,
        warnings: Vec::new(),
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            record.error = Some(format!("{e:#}"));
            return record;
        }
    };
    let s = &outcome.summary;
    let all = s.counts.get("all").copied().unwrap_or_default();
    record.verdict = results::verdict_name(outcome.verdict).to_string();
    record.ok = all.ok;
    record.fail = all.fail;
    record.info = all.info;
    record.faults_applied = s.nemesis.applied.clone();
    record.workload_s = s.workload_s;
    record.run_dir = Some(outcome.run_dir.display().to_string());
    record.warnings = s
        .nemesis
        .warnings
        .iter()
        .chain(&s.errors)
        .cloned()
        .collect();
    if outcome.verdict == Verdict::Invalid {
        let dir = outcome.run_dir.clone();
        let fallback = s.anomalies.clone();
        let detection = tokio::task::spawn_blocking(move || detection(&dir, &fallback))
            .await
            .unwrap_or_default();
        record.detection_s = detection.seconds.map(round3);
        record.anomalies = detection.kinds;
    }
    record
}

/// When and how an invalid run was caught.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detection {
    pub seconds: Option<f64>,
    pub kinds: Vec<String>,
}

/// Reads `history.jsonl` of an invalid run, re-checks it asking for every anomaly, and returns
/// the time to detection and the anomaly kinds (see the module documentation). If the
/// re-check gives up, `fallback` (the run's own `anomalies`, as in `results.json`) is used.
pub fn detection(run_dir: &Path, fallback: &Json) -> Detection {
    let Ok(ops) = checker::history::read_file(&run_dir.join("history.jsonl"), Some(Format::Jsonl))
    else {
        return Detection::default();
    };
    let start = ops.iter().filter_map(|op| op.invoke_time).min();
    let completed: HashMap<u64, Option<i64>> =
        ops.iter().map(|op| (op.index, op.complete_time)).collect();
    let mut options = checker::CheckOptions::new(checker::ModelKind::CasRegister {
        initial: checker::history::Value::Null,
    });
    options.all_anomalies = true;
    options.timeout = Some(RECHECK_TIMEOUT);
    // (index of the failing op, kind); None for an anomaly the checker could not explain.
    let failing: Vec<Option<(u64, String)>> = match checker::check(ops, &options) {
        Ok(report) if !report.anomalies.is_empty() => report
            .anomalies
            .iter()
            .map(|a| a.op.as_ref().map(|op| (op.index, kind(op.f, op.status))))
            .collect(),
        _ => fallback
            .as_array()
            .map(|list| list.iter().map(failing_from_json).collect())
            .unwrap_or_default(),
    };
    failing_summary(&failing, &completed, start)
}

/// The failing op of one anomaly of `results.json`.
fn failing_from_json(anomaly: &Json) -> Option<(u64, String)> {
    let op = anomaly.get("op")?;
    let index = op.get("index")?.as_u64()?;
    let f = op.get("f")?.as_str()?;
    let status: Status = serde_json::from_value(op.get("status")?.clone()).ok()?;
    Some((index, kind(f, status)))
}

/// Earliest completion (seconds after `start`) and the distinct kinds of the failing ops.
fn failing_summary(
    failing: &[Option<(u64, String)>],
    completed: &HashMap<u64, Option<i64>>,
    start: Option<i64>,
) -> Detection {
    let seconds = failing
        .iter()
        .flatten()
        .filter_map(|(index, _)| {
            let done = (*completed.get(index)?)?;
            Some((done - start?) as f64 / 1e9)
        })
        .min_by(f64::total_cmp);
    let kinds: BTreeSet<String> = failing
        .iter()
        .map(|f| {
            f.as_ref()
                .map_or("not explained".to_string(), |(_, k)| k.clone())
        })
        .collect();
    Detection {
        seconds,
        kinds: kinds.into_iter().collect(),
    }
}

/// An anomaly kind: the failing op's `f`, with its status when not ok.
fn kind(f: &str, status: Status) -> String {
    match status {
        Status::Ok => f.to_string(),
        Status::Fail => format!("{f} (fail)"),
        Status::Info => format!("{f} (info)"),
    }
}

/// Runs `work` on its own thread (not tokio's blocking pool: an abandoned hunt must not keep
/// the runtime from shutting down after Ctrl-C).
async fn off_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    rx.await.map_err(|_| format!("the {name} thread panicked"))
}

/// The simulator column: `seeds` seeds of the schedule aimed at `bug`, with the bug on.
async fn simulate(bug: Bug, seeds: u64) -> SimColumn {
    let started = Instant::now();
    let result = off_thread("simulator", move || {
        let mut caught = 0;
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for seed in 0..seeds {
            let report = model::sim::run(&SimConfig::targeting(seed, bug).with_bug(bug));
            if report.caught() {
                caught += 1;
                let how = report
                    .violation
                    .as_ref()
                    .map_or("history not linearizable", |v| v.property);
                *by.entry(how.to_string()).or_default() += 1;
            }
        }
        (caught, by)
    })
    .await;
    let seconds = round3(started.elapsed().as_secs_f64());
    match result {
        Ok((caught, by)) => SimColumn {
            caught,
            seeds,
            by,
            seconds,
            error: None,
        },
        Err(e) => SimColumn {
            caught: 0,
            seeds,
            by: BTreeMap::new(),
            seconds,
            error: Some(e),
        },
    }
}

/// The raft-model column: the bug's hunt, if the model has one.
async fn hunt(bug: Bug) -> Option<ModelColumn> {
    let mut run = model::check::hunts::hunt(bug)?;
    run.timeout = Some(HUNT_TIMEOUT);
    let expected = model::check::hunts::expected(bug).map(str::to_string);
    let started = Instant::now();
    let result = off_thread("raft-model", move || {
        let report = model::check::cli::run(&run);
        (
            report.violated().first().map(|p| p.to_string()),
            report.unique_states,
            report.max_depth,
        )
    })
    .await;
    let seconds = round3(started.elapsed().as_secs_f64());
    Some(match result {
        Ok((property, unique_states, max_depth)) => ModelColumn {
            property,
            expected,
            unique_states,
            max_depth,
            seconds,
            error: None,
        },
        Err(e) => ModelColumn {
            property: None,
            expected,
            unique_states: 0,
            max_depth: 0,
            seconds,
            error: Some(e),
        },
    })
}

fn progress_bar(total: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} matrix [{elapsed_precise}] [{bar:30}] {pos}/{len} (eta {eta}) {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// One line per run on stderr (unless quiet).
fn report_run(bar: &indicatif::ProgressBar, quiet: bool, what: &str, r: &RunRecord) {
    if quiet {
        return;
    }
    let detail = match r.verdict.as_str() {
        "invalid" => format!(
            "INVALID ({}) at {}",
            r.anomalies.join(", "),
            r.detection_s
                .map_or("?".to_string(), |s| format!("{s:.1} s"))
        ),
        "error" => format!("ERROR: {}", r.error.as_deref().unwrap_or("?")),
        v => v.to_string(),
    };
    bar.suspend(|| {
        eprintln!(
            "{what}: {detail}; {} ok ops{}",
            r.ok,
            r.run_dir
                .as_ref()
                .map_or(String::new(), |d| format!("; {d}"))
        )
    });
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    results::timestamps(secs).1
}

// ---- rendering ------------------------------------------------------------------------

const DASH: &str = "—";

fn workload_cell(r: &BugRow) -> String {
    if r.recipe == "default" {
        format!("{} (default)", r.workload)
    } else {
        r.workload.clone()
    }
}

fn detected_cell(r: &BugRow) -> String {
    format!("{}/{}", r.detected, r.runs.len())
}

fn median_cell(r: &BugRow) -> String {
    r.median_detection_s
        .map_or(DASH.to_string(), |s| format!("{s:.1} s"))
}

fn anomaly_cell(r: &BugRow) -> String {
    if r.anomaly_kinds.is_empty() {
        DASH.to_string()
    } else {
        r.anomaly_kinds.join(", ")
    }
}

fn sim_cell(r: &BugRow) -> String {
    match &r.simulator {
        Some(s) if s.error.is_some() => "error".to_string(),
        Some(s) => format!("{}/{}", s.caught, s.seeds),
        None => DASH.to_string(),
    }
}

fn model_cell(r: &BugRow, model_columns: bool) -> String {
    if !model_columns || !r.hunted {
        return DASH.to_string();
    }
    match &r.raft_model {
        Some(m) if m.error.is_some() => "error".to_string(),
        Some(m) => m
            .property
            .clone()
            .unwrap_or_else(|| "not found".to_string()),
        None => DASH.to_string(),
    }
}

const BUG_HEADER: [&str; 8] = [
    "bug",
    "workload",
    "nemesis",
    "detected",
    "median time to detection",
    "anomaly",
    "simulator",
    "raft-model",
];

const CORRECT_HEADER: [&str; 6] = [
    "nemesis", "workload", "valid", "invalid", "unknown", "errors",
];

fn bug_cells(m: &Matrix) -> Vec<Vec<String>> {
    m.bugs
        .iter()
        .map(|r| {
            vec![
                r.bug.clone(),
                workload_cell(r),
                r.nemesis.join(","),
                detected_cell(r),
                median_cell(r),
                anomaly_cell(r),
                sim_cell(r),
                model_cell(r, m.model_columns),
            ]
        })
        .collect()
}

fn correct_cells(m: &Matrix) -> Vec<Vec<String>> {
    m.correct
        .iter()
        .map(|r| {
            if let Some(why) = &r.skipped {
                let skipped = format!("skipped: {why}");
                return vec![
                    r.nemesis.clone(),
                    r.workload.clone(),
                    skipped,
                    String::new(),
                    String::new(),
                    String::new(),
                ];
            }
            let n = r.runs.len();
            vec![
                r.nemesis.clone(),
                r.workload.clone(),
                format!("{}/{n}", r.valid),
                if r.invalid > 0 {
                    format!("{} INVALID", r.invalid)
                } else {
                    "0".to_string()
                },
                r.unknown.to_string(),
                r.errors.to_string(),
            ]
        })
        .collect()
}

/// A plain-text table with aligned columns.
fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(w - width(cell)));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A Markdown table; `right` marks right-aligned columns.
fn markdown_table(header: &[&str], right: &[usize], rows: &[Vec<String>]) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = format!(
        "| {} |\n|{}|\n",
        header.join(" | "),
        (0..header.len())
            .map(|i| if right.contains(&i) { "---:" } else { "---" })
            .collect::<Vec<_>>()
            .join("|")
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} |",
            row.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
        );
    }
    out
}

/// The summary lines under the tables.
fn summary_lines(m: &Matrix) -> Vec<String> {
    let mut lines = Vec::new();
    let not_run: Vec<&str> = m
        .bugs
        .iter()
        .filter(|r| r.runs.is_empty())
        .map(|r| r.bug.as_str())
        .collect();
    if !not_run.is_empty() {
        lines.push(format!("not run by the lab: {}", not_run.join(", ")));
    }
    if m.bugs.len() > not_run.len() {
        if m.below_target.is_empty() {
            lines.push(format!(
                "every bug run was detected by the lab in at least {}/{} of its runs",
                TARGET.0, TARGET.1
            ));
        } else {
            let weak: Vec<String> = m
                .bugs
                .iter()
                .filter(|r| m.below_target.contains(&r.bug))
                .map(|r| {
                    let model = model_cell(r, m.model_columns);
                    if model != DASH && model != "not found" && model != "error" {
                        format!("{} {} (raft-model: {model})", r.bug, detected_cell(r))
                    } else {
                        format!("{} {}", r.bug, detected_cell(r))
                    }
                })
                .collect();
            lines.push(format!(
                "detected by the lab in fewer than {}/{} runs: {}",
                TARGET.0,
                TARGET.1,
                weak.join(", ")
            ));
        }
    }
    if !m.correct.is_empty() {
        let invalid: usize = m.correct.iter().map(|r| r.invalid).sum();
        let runs: usize = m.correct.iter().map(|r| r.runs.len()).sum();
        if invalid > 0 {
            lines.push(format!(
                "FALSE ALARMS: {invalid} of {runs} runs of the correct build were judged NOT linearizable: a real bug to fix (see matrix.json for their folders)"
            ));
        } else {
            lines.push(format!("correct build: no anomaly in {runs} runs"));
        }
    }
    let errors: usize = m
        .bugs
        .iter()
        .flat_map(|r| &r.runs)
        .chain(m.correct.iter().flat_map(|r| &r.runs))
        .filter(|r| r.verdict == "error")
        .count();
    if errors > 0 {
        lines.push(format!("{errors} runs failed to run (see matrix.json)"));
    }
    if m.interrupted {
        lines.push("interrupted: the matrix is partial".to_string());
    }
    lines
}

/// The table printed on stdout at the end.
pub fn text(m: &Matrix) -> String {
    let mut out = String::new();
    if !m.bugs.is_empty() {
        out.push_str(&text_table(&BUG_HEADER, &bug_cells(m)));
    }
    if !m.correct.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "correct build (no bug), each nemesis alone:");
        out.push_str(&text_table(&CORRECT_HEADER, &correct_cells(m)));
    }
    out.push('\n');
    for line in summary_lines(m) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "matrix: {}", m.dir);
    out
}

/// `matrix.md`: the tables in Markdown with the command line, the recipes' reasons and the
/// definitions.
pub fn markdown(m: &Matrix) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Bug catalogue matrix\n");
    let _ = writeln!(
        out,
        "`{}` — {}{}; {} seed(s) per bug{}{}.\n",
        m.command,
        m.started_at,
        m.git_revision.as_ref().map_or(String::new(), |g| format!(
            ", git {}",
            &g[..g.len().min(12)]
        )),
        m.seeds,
        m.time_limit_s
            .map_or(String::new(), |t| format!(", {t} s per run")),
        if m.model_columns {
            format!(", simulator {} seeds per bug", m.sim_seeds)
        } else {
            ", model columns skipped".to_string()
        }
    );
    if m.interrupted {
        let _ = writeln!(out, "**Interrupted: partial results.**\n");
    }
    if !m.bugs.is_empty() {
        out.push_str(&markdown_table(
            &BUG_HEADER,
            &[3, 4, 6],
            &bug_cells(m)
                .into_iter()
                .map(|mut row| {
                    row[0] = format!("`{}`", row[0]);
                    row[2] = row[2].replace(',', ", ");
                    row
                })
                .collect::<Vec<_>>(),
        ));
        out.push('\n');
    }
    if !m.correct.is_empty() {
        let _ = writeln!(out, "The correct build (no bug), each nemesis alone:\n");
        out.push_str(&markdown_table(
            &CORRECT_HEADER,
            &[2, 3, 4, 5],
            &correct_cells(m),
        ));
        out.push('\n');
    }
    for line in summary_lines(m) {
        let _ = writeln!(out, "{line}.  ");
    }
    if !m.bugs.is_empty() {
        let _ = writeln!(out, "\nWhy these faults:\n");
        for r in &m.bugs {
            let _ = write!(out, "- `{}`: {}", r.bug, r.why);
            if let Some(note) = &r.note {
                let _ = write!(out, " ({note})");
            }
            if let Some(note) = &r.nemesis_note {
                let _ = write!(out, " [{note}]");
            }
            out.push('\n');
        }
    }
    let _ = writeln!(out, "\nColumns:\n");
    for (name, meaning) in &m.definitions {
        let _ = writeln!(out, "- `{name}`: {meaning}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(verdict: &str, detection_s: Option<f64>, anomalies: &[&str]) -> RunRecord {
        RunRecord {
            seed: 1,
            verdict: verdict.to_string(),
            detection_s,
            anomalies: anomalies.iter().map(|s| s.to_string()).collect(),
            ok: 100,
            fail: 0,
            info: 0,
            faults_applied: BTreeMap::new(),
            workload_s: 8.0,
            wall_s: 12.0,
            run_dir: Some("results/matrix/x/runs/ci/1".into()),
            error: None,
            warnings: Vec::new(),
        }
    }

    fn bug_row(bug: &str, runs: Vec<RunRecord>) -> BugRow {
        let mut row = BugRow {
            bug: bug.to_string(),
            recipe: "file".into(),
            workload: "ci.toml".into(),
            workload_path: "workloads/ci.toml".into(),
            nemesis: vec!["isolate-leader".into(), "partition-halves".into()],
            nemesis_note: None,
            time_limit_s: None,
            why: "because".into(),
            note: None,
            runs,
            detected: 0,
            median_detection_s: None,
            anomaly_kinds: Vec::new(),
            simulator: Some(SimColumn {
                caught: 17,
                seeds: 20,
                by: BTreeMap::new(),
                seconds: 1.0,
                error: None,
            }),
            raft_model: Some(ModelColumn {
                property: Some("Linearizable".into()),
                expected: Some("Linearizable".into()),
                unique_states: 10,
                max_depth: 12,
                seconds: 0.3,
                error: None,
            }),
            hunted: true,
        };
        row.tally();
        row
    }

    fn correct_row(kind: &str, runs: Vec<RunRecord>) -> CorrectRow {
        let mut row = CorrectRow {
            nemesis: kind.to_string(),
            workload: "ci.toml".into(),
            workload_path: "workloads/ci.toml".into(),
            skipped: None,
            runs,
            valid: 0,
            invalid: 0,
            unknown: 0,
            errors: 0,
        };
        row.tally();
        row
    }

    fn matrix(bugs: Vec<BugRow>, correct: Vec<CorrectRow>) -> Matrix {
        let mut m = Matrix {
            command: "raft-lab matrix --seeds 3".into(),
            started_at: "2026-11-29T20:00:00Z".into(),
            finished_at: None,
            git_revision: Some("0123456789abcdef".into()),
            dir: "results/matrix/x".into(),
            recipes: "workloads/matrix.toml".into(),
            seeds: 3,
            time_limit_s: Some(8.0),
            sim_seeds: 20,
            model_columns: true,
            partitions: true,
            definitions: definitions(),
            bugs,
            correct,
            below_target: Vec::new(),
            interrupted: false,
            exit_code: 0,
        };
        m.below_target = below_target(&m.bugs);
        m.exit_code = exit_code(&m);
        m
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[4.0]), Some(4.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn a_row_tallies_detections_medians_and_kinds() {
        let row = bug_row(
            "stale-read",
            vec![
                run("invalid", Some(3.0), &["read"]),
                run("valid", None, &[]),
                run("invalid", Some(1.0), &["read", "cas (fail)"]),
                run("invalid", None, &["not explained"]),
            ],
        );
        assert_eq!(row.detected, 3);
        assert_eq!(row.median_detection_s, Some(2.0));
        assert_eq!(
            row.anomaly_kinds,
            vec!["cas (fail)", "not explained", "read"]
        );
        assert_eq!(detected_cell(&row), "3/4");
        assert_eq!(median_cell(&row), "2.0 s");
    }

    #[test]
    fn tables_show_every_column_and_the_weak_bugs() {
        let m = matrix(
            vec![
                bug_row("stale-read", vec![run("invalid", Some(2.5), &["read"])]),
                bug_row("vote-twice", vec![run("valid", None, &[])]),
            ],
            vec![correct_row("kill", vec![run("valid", None, &[])])],
        );
        assert_eq!(m.below_target, vec!["vote-twice"]);
        assert_eq!(m.exit_code, 0);
        let t = text(&m);
        let first = t.lines().next().unwrap();
        for h in BUG_HEADER {
            assert!(first.contains(h), "{first}");
        }
        let stale = t.lines().find(|l| l.starts_with("stale-read")).unwrap();
        for cell in [
            "ci.toml",
            "isolate-leader,partition-halves",
            "1/1",
            "2.5 s",
            "read",
            "17/20",
            "Linearizable",
        ] {
            assert!(stale.contains(cell), "{cell}: {stale}");
        }
        assert!(
            t.contains("fewer than 9/10 runs: vote-twice 0/1 (raft-model: Linearizable)"),
            "{t}"
        );
        assert!(t.contains("correct build: no anomaly in 1 runs"), "{t}");
        let md = markdown(&m);
        assert!(md.contains("`raft-lab matrix --seeds 3`"), "{md}");
        assert!(
            md.contains("| bug | workload | nemesis | detected |"),
            "{md}"
        );
        assert!(md.contains("|---|---|---|---:|---:|---|---:|---|"), "{md}");
        assert!(md.contains("| `stale-read` | ci.toml | isolate-leader, partition-halves | 1/1 | 2.5 s | read | 17/20 | Linearizable |"), "{md}");
        assert!(md.contains("- `stale-read`: because"), "{md}");
    }

    #[test]
    fn exit_codes() {
        let ok = || correct_row("kill", vec![run("valid", None, &[])]);
        let bugs = || vec![bug_row("stale-read", vec![run("valid", None, &[])])];
        assert_eq!(matrix(bugs(), vec![ok()]).exit_code, 0);
        let bad = correct_row("pause", vec![run("invalid", Some(1.0), &["read"])]);
        let m = matrix(bugs(), vec![ok(), bad]);
        assert_eq!(m.exit_code, 1);
        assert!(
            text(&m).contains("FALSE ALARMS: 1 of 2 runs"),
            "{}",
            text(&m)
        );
        let unknown = correct_row("pause", vec![run("unknown", None, &[])]);
        assert_eq!(matrix(bugs(), vec![ok(), unknown]).exit_code, 2);
        let failed = vec![bug_row("stale-read", vec![run("error", None, &[])])];
        assert_eq!(matrix(failed, vec![ok()]).exit_code, 3);
        let mut m = matrix(bugs(), vec![ok()]);
        m.interrupted = true;
        assert_eq!(exit_code(&m), 3);
    }

    #[test]
    fn detection_takes_the_earliest_failing_completion() {
        let completed = HashMap::from([
            (4, Some(3_500_000_000)),
            (9, Some(2_000_000_000)),
            (12, None),
        ]);
        let failing = vec![
            Some((4, "read".to_string())),
            Some((9, "cas (fail)".to_string())),
            Some((12, "write (info)".to_string())),
            None,
        ];
        let d = failing_summary(&failing, &completed, Some(500_000_000));
        assert_eq!(d.seconds, Some(1.5));
        assert_eq!(
            d.kinds,
            vec!["cas (fail)", "not explained", "read", "write (info)"]
        );
        let from_json = failing_from_json(&serde_json::json!({
            "key": "k1", "op": {"index": 7, "process": 2, "f": "read", "value": 3, "status": "ok", "line": 8}
        }));
        assert_eq!(from_json, Some((7, "read".to_string())));
    }

    #[test]
    fn bug_lists() {
        assert_eq!(parse_bug_list("all").unwrap(), Bug::ALL.to_vec());
        assert_eq!(parse_bug_list("none").unwrap(), Vec::<Bug>::new());
        assert_eq!(
            parse_bug_list("no-dedup, stale-read,no-dedup").unwrap(),
            vec![Bug::StaleRead, Bug::NoDedup]
        );
        let e = parse_bug_list("stale-read,eat-data")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--bugs: unknown bug \"eat-data\""), "{e}");
        assert!(parse_bug_list(" , ").is_err());
    }

    #[test]
    fn partitions_fall_back_without_nftables() {
        let kinds = [NemesisKind::IsolateLeader, NemesisKind::Kill];
        assert_eq!(usable_kinds(&kinds, true), (kinds.to_vec(), None));
        let (left, note) = usable_kinds(&kinds, false);
        assert_eq!(left, vec![NemesisKind::Kill]);
        assert!(note.unwrap().contains("instead of isolate-leader,kill"));
        let (left, _) = usable_kinds(&[NemesisKind::PartitionHalves], false);
        assert_eq!(left, vec![NemesisKind::Kill]);
        // packet-loss is nftables rules too.
        let (left, _) = usable_kinds(&[NemesisKind::Pause, NemesisKind::PacketLoss], false);
        assert_eq!(left, vec![NemesisKind::Pause]);
    }
}
