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
//!    (the `[correct]` table of the recipes: every kind by default), and with `combined` K
//!    times under all of them together.
//! 4. The known behaviours of the system under test (`[known.NAME]` tables naming it), K times
//!    each: runs expected to be judged invalid, measured like a bug.
//!
//! **The system under test** is raftlab unless `--db etcd` (or `db = "etcd"` in the recipes
//! file). For etcd the correct column is etcd as is (the recipes' `[etcd]` table, else
//! `[correct]`); kinds etcd cannot take are skipped with the reason in the table
//! ([`DbKind::refuses`]); catalogue bugs, switches in raftlab's nodes, do not apply: naming one
//! with `--bugs` is refused, and the table says none ran. The tables name the system and its
//! version.
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
//!   runs (the mean of the two middle values for an even count). Bug and known-behaviour runs
//!   stop at the first anomaly the check while the run goes finds (`--stop-on-anomaly`), so
//!   they last about their time to detection, not their whole time limit; the time to
//!   detection stays the moment the anomaly shows in the history, not the moment a check
//!   found it (which adds the online check's polling and checking, a cost of the lab's
//!   machinery rather than the recipe's power to expose the bug). That is the next column.
//! * *found online*: seconds from the workload's start to when the check while the run goes
//!   found the first anomaly (`results.json`'s `online.first_anomaly_s`); median over the
//!   detected runs that have one.
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

mod detection;
mod models;
pub mod recipes;
mod render;
mod run;

pub use detection::{detection, Detection};
pub use render::{markdown, text};
pub use run::run;

use crate::lab::workload::DbKind;
use model::bugs::Bug;
use recipes::RecipeError;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

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
    /// The bugs to run, in catalogue order; `None`: every bug for raftlab, none for etcd.
    pub bugs: Option<Vec<Bug>>,
    /// The system under test; `None`: the recipes file's `db`, else raftlab.
    pub db: Option<DbKind>,
    /// The `etcd` binary for etcd (default: `etcd` on `PATH`).
    pub etcd_bin: Option<PathBuf>,
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
            bugs: None,
            db: None,
            etcd_bin: None,
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
    /// Seconds from the first invocation to when the check while the run goes found the
    /// first anomaly (invalid runs it caught).
    pub found_online_s: Option<f64>,
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
    /// Median of the detected runs' `found_online_s`.
    pub median_found_online_s: Option<f64>,
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
    /// The system under test (`raftlab`, `etcd`).
    pub db: String,
    /// The system under test and its version (`raftlab 0.1.0`, `etcd 3.4.23`).
    pub system: String,
    /// Why no catalogue bug ran, when the system cannot take them.
    pub bugs_note: Option<String>,
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
    /// Known behaviours of the system, expected invalid (the `bug` field names the behaviour).
    pub known: Vec<BugRow>,
    /// Bugs and known behaviours the lab detected in fewer than 9 of 10 runs.
    pub below_target: Vec<String>,
    pub interrupted: bool,
    pub exit_code: u8,
}

impl BugRow {
    /// Recomputes the detection count, the median and the anomaly kinds from the runs.
    fn tally(&mut self) {
        self.detected = self.runs.iter().filter(|r| r.verdict == "invalid").count();
        // The median of one time over the detected runs that have it.
        let median_of = |time: fn(&RunRecord) -> Option<f64>| {
            let times: Vec<f64> = self
                .runs
                .iter()
                .filter(|r| r.verdict == "invalid")
                .filter_map(time)
                .collect();
            median(&times)
        };
        self.median_detection_s = median_of(|r| r.detection_s);
        self.median_found_online_s = median_of(|r| r.found_online_s);
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

/// Bugs and known behaviours with runs that were detected in fewer than 9 of 10 of them.
fn below_target(m: &Matrix) -> Vec<String> {
    m.bugs
        .iter()
        .chain(&m.known)
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
            .chain(&m.known)
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
            "found_online_s",
            "seconds from the run's first client invocation to when the check while the run goes \
             found the first anomaly (and the run stopped there); detection_s plus the lab's \
             polling and checking",
        ),
        (
            "median_found_online_s",
            "median of found_online_s over the detected runs that have one",
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

#[cfg(test)]
mod tests {
    use super::detection::{failing_from_json, failing_summary};
    use super::render::{detected_cell, median_cell, BUG_HEADER};
    use super::run::{bugs_for, correct_rows, usable_kinds};
    use super::*;
    use crate::nemesis::NemesisKind;
    use std::collections::HashMap;

    fn run(verdict: &str, detection_s: Option<f64>, anomalies: &[&str]) -> RunRecord {
        RunRecord {
            seed: 1,
            verdict: verdict.to_string(),
            detection_s,
            found_online_s: detection_s.map(|s| s + 0.5),
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
            median_found_online_s: None,
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
            db: "raftlab".into(),
            system: "raftlab 0.1.0".into(),
            bugs_note: None,
            seeds: 3,
            time_limit_s: Some(8.0),
            sim_seeds: 20,
            model_columns: true,
            partitions: true,
            definitions: definitions(),
            bugs,
            correct,
            known: Vec::new(),
            below_target: Vec::new(),
            interrupted: false,
            exit_code: 0,
        };
        m.below_target = below_target(&m);
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
        assert!(t.starts_with("system under test: raftlab 0.1.0\n\n"), "{t}");
        let first = t.lines().nth(2).unwrap();
        for h in BUG_HEADER {
            assert!(first.contains(h), "{first}");
        }
        let stale = t.lines().find(|l| l.starts_with("stale-read")).unwrap();
        for cell in [
            "ci.toml",
            "isolate-leader,partition-halves",
            "1/1",
            "2.5 s",
            "3.0 s",
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
        assert!(
            md.contains("|---|---|---|---:|---:|---:|---|---:|---|"),
            "{md}"
        );
        assert!(md.contains("| `stale-read` | ci.toml | isolate-leader, partition-halves | 1/1 | 2.5 s | 3.0 s | read | 17/20 | Linearizable |"), "{md}");
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
    fn catalogue_bugs_do_not_apply_to_etcd() {
        assert_eq!(
            bugs_for(DbKind::Raftlab, None).unwrap(),
            (Bug::ALL.to_vec(), None)
        );
        let (bugs, note) = bugs_for(DbKind::Etcd, None).unwrap();
        assert!(bugs.is_empty());
        assert!(note.unwrap().contains("cannot apply to etcd"));
        assert!(bugs_for(DbKind::Etcd, Some(&[])).unwrap().0.is_empty());
        let e = bugs_for(DbKind::Etcd, Some(&[Bug::StaleRead]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--bugs: stale-read: catalogue bugs"), "{e}");
    }

    #[test]
    fn the_correct_column_of_a_system() {
        let plan = recipes::CorrectPlan {
            workload: PathBuf::from("ci.toml"),
            nemesis: vec![NemesisKind::Kill, NemesisKind::Transfer, NemesisKind::Pause],
            combined: true,
            tuning: recipes::Tuning::default(),
        };
        let names = |rows: Vec<(String, Vec<NemesisKind>)>| {
            rows.into_iter()
                .map(|(n, k)| (n, k.len()))
                .collect::<Vec<_>>()
        };
        // Each kind alone, then all of them together.
        assert_eq!(
            names(correct_rows(&plan)),
            vec![
                ("kill".to_string(), 1),
                ("transfer".to_string(), 1),
                ("pause".to_string(), 1),
                ("all".to_string(), 3)
            ]
        );
        let alone = recipes::CorrectPlan {
            combined: false,
            ..plan
        };
        assert_eq!(correct_rows(&alone).len(), 3);
    }

    #[test]
    fn a_system_and_its_known_behaviours_in_the_tables() {
        let mut m = matrix(
            Vec::new(),
            vec![correct_row("kill", vec![run("valid", None, &[])])],
        );
        m.db = "etcd".into();
        m.system = "etcd 3.4.23".into();
        m.bugs_note = Some("catalogue bugs cannot apply to etcd".into());
        m.known = vec![bug_row(
            "serializable-reads",
            vec![
                run("invalid", Some(0.5), &["read"]),
                run("valid", None, &[]),
            ],
        )];
        m.below_target = below_target(&m);
        assert_eq!(m.below_target, vec!["serializable-reads"]);
        let t = text(&m);
        assert!(t.starts_with("system under test: etcd 3.4.23"), "{t}");
        assert!(
            t.contains("etcd 3.4.23 as it ships, each nemesis alone:"),
            "{t}"
        );
        assert!(
            t.contains("no catalogue bug ran: catalogue bugs cannot apply to etcd"),
            "{t}"
        );
        assert!(
            t.contains(
                "known behaviours judged invalid in fewer than 9/10 runs: serializable-reads 1/2"
            ),
            "{t}"
        );
        let md = markdown(&m);
        assert!(
            md.starts_with("## Bug catalogue matrix: etcd 3.4.23"),
            "{md}"
        );
        assert!(md.contains("3 seed(s) per row, 8 s per run.\n"), "{md}");
        assert!(
            md.contains("| `serializable-reads` | ci.toml | isolate-leader, partition-halves | 1/2 | 0.5 s | 1.0 s | read |"),
            "{md}"
        );
        assert!(md.contains("- `serializable-reads`: because"), "{md}");
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
