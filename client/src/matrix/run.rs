//! Running the matrix: the plan (recipes, seeds, usable fault kinds), one lab run after
//! another on a local cluster, the simulator and model columns beside them, the progress bar,
//! and the files rewritten after every run.

use super::detection::detection;
use super::models::{hunt, simulate};
use super::recipes::{CorrectPlan, Recipe, Recipes, Source, Tuning};
use super::render::{markdown, model_cell, sim_cell};
use super::RunRecord;
use super::{
    below_target, definitions, exit_code, BugRow, CorrectRow, Matrix, MatrixError, MatrixOptions,
};
use crate::lab::workload::{DbKind, Overrides, Workload};
use crate::nemesis::NemesisKind;
use crate::report::results;
use crate::report::results::round3;
use checker::Verdict;
use model::bugs::Bug;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Runs the matrix. `Err` only when it cannot start (bad options or recipes, no `raft-node`,
/// no results folder) or cannot write its results; failed runs are recorded as such.
pub async fn run(opts: &MatrixOptions) -> Result<Matrix, MatrixError> {
    if opts.seeds == 0 {
        return Err(MatrixError::Seeds);
    }
    if let Some(t) = opts.time_limit.filter(|t| !(t.is_finite() && *t > 0.0)) {
        return Err(MatrixError::TimeLimit(t));
    }
    let recipes = Recipes::load(&opts.recipes)?;
    let db = opts.db.or(recipes.db).unwrap_or_default();
    let (bugs, bugs_note) = bugs_for(db, opts.bugs.as_deref())?;
    let known = recipes.known.iter().filter(|k| k.db == db);
    if bugs.is_empty() && known.clone().next().is_none() && !opts.correct {
        return Err(MatrixError::Bugs(
            "nothing to run: no bug, no known behaviour and --no-correct".into(),
        ));
    }
    let system = system_name(db, opts)?;
    let partitions = crate::net::nft::Nft::new().is_ok();

    // Plan everything and validate every workload before the first cluster starts.
    let mut plan = Plan::default();
    for &bug in &bugs {
        let recipe = recipes.recipe(bug);
        let key = match recipe.source {
            Source::File => format!("bug.{bug}"),
            Source::Default => format!("bug.{bug} (default recipe)"),
        };
        let (kinds, nemesis_note) =
            plan_recipe(&recipes.path, &key, &recipe, partitions, db, opts)?;
        plan.bugs.push(BugRow {
            hunted: model::check::hunts::hunt(bug).is_some(),
            ..planned_row(bug.name(), &recipe, &kinds, nemesis_note, opts)
        });
        plan.recipes
            .push((bug, recipe.workload, kinds, recipe.tuning));
    }
    for k in known {
        let recipe = &k.recipe;
        let key = format!("known.{}", k.name);
        let (kinds, nemesis_note) = plan_recipe(&recipes.path, &key, recipe, partitions, db, opts)?;
        plan.known
            .push(planned_row(&k.name, recipe, &kinds, nemesis_note, opts));
        plan.known_runs
            .push((recipe.workload.clone(), kinds, recipe.tuning.clone()));
    }
    let c = recipes.correct_for(db);
    if opts.correct {
        validate(&recipes.path, "correct", &c.workload, &c.tuning, db, opts)?;
        for (name, kinds) in correct_rows(c) {
            let skipped = (kinds.iter().any(|k| k.needs_network()) && !partitions)
                .then(|| "network faults need nftables and root".to_string());
            plan.correct.push(CorrectRow {
                nemesis: name,
                workload: file_name(&c.workload),
                workload_path: c.workload.display().to_string(),
                skipped,
                runs: Vec::new(),
                valid: 0,
                invalid: 0,
                unknown: 0,
                errors: 0,
            });
            plan.correct_kinds.push(kinds);
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
        db: db.name().to_string(),
        system,
        bugs_note,
        seeds: opts.seeds,
        time_limit_s: opts.time_limit,
        sim_seeds: if opts.skip_model { 0 } else { opts.sim_seeds },
        model_columns: !opts.skip_model,
        partitions,
        definitions: definitions(),
        bugs: plan.bugs,
        correct: plan.correct,
        known: plan.known,
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
        + (matrix.correct.len() + matrix.known.len()) as u64 * opts.seeds;
    let bar = progress_bar(total, opts.quiet);
    let stopped = |rx: &watch::Receiver<bool>| *rx.borrow();

    'bugs: for (row, (bug, workload, kinds, tuning)) in plan.recipes.iter().enumerate() {
        for seed in 1..=opts.seeds {
            if stopped(&interrupt) {
                break 'bugs;
            }
            bar.set_message(format!("{bug}, seed {seed}"));
            let overrides = Overrides {
                stop_on_anomaly: true,
                ..overrides(opts, db, tuning, kinds, seed, &runs_root, Some(*bug))
            };
            let Some(record) = seeded_run(workload, overrides, &interrupt).await else {
                break 'bugs;
            };
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
    'known: for (row, (workload, kinds, tuning)) in plan.known_runs.iter().enumerate() {
        let name = matrix.known[row].bug.clone();
        for seed in 1..=opts.seeds {
            if stopped(&interrupt) {
                break 'known;
            }
            bar.set_message(format!("{name}, seed {seed}"));
            let overrides = Overrides {
                stop_on_anomaly: true,
                ..overrides(opts, db, tuning, kinds, seed, &runs_root, None)
            };
            let Some(record) = seeded_run(workload, overrides, &interrupt).await else {
                break 'known;
            };
            report_run(&bar, opts.quiet, &format!("{name} seed {seed}"), &record);
            matrix.known[row].runs.push(record);
            matrix.known[row].tally();
            bar.inc(1);
            out.write(&mut matrix)?;
        }
    }
    if opts.correct {
        'correct: for row in 0..matrix.correct.len() {
            if matrix.correct[row].skipped.is_some() {
                bar.inc(opts.seeds);
                continue;
            }
            let kinds = &plan.correct_kinds[row];
            let kind = matrix.correct[row].nemesis.clone();
            for seed in 1..=opts.seeds {
                if stopped(&interrupt) {
                    break 'correct;
                }
                bar.set_message(format!("correct build, {kind}, seed {seed}"));
                let overrides = overrides(opts, db, &c.tuning, kinds, seed, &runs_root, None);
                let Some(record) = seeded_run(&c.workload, overrides, &interrupt).await else {
                    break 'correct;
                };
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
pub(super) struct Plan {
    bugs: Vec<BugRow>,
    recipes: Vec<(Bug, PathBuf, Vec<NemesisKind>, Tuning)>,
    known: Vec<BugRow>,
    known_runs: Vec<(PathBuf, Vec<NemesisKind>, Tuning)>,
    correct: Vec<CorrectRow>,
    /// The kinds of each correct row.
    correct_kinds: Vec<Vec<NemesisKind>>,
}

/// The row of a bug or known behaviour before its runs (no model columns yet).
/// A bug's or known behaviour's recipe checked before anything runs: its workload (table
/// `key` of the recipes file) validated, and the nemesis kinds it can use here, with a note
/// when some were left out.
fn plan_recipe(
    recipes: &Path,
    key: &str,
    recipe: &Recipe,
    partitions: bool,
    db: DbKind,
    opts: &MatrixOptions,
) -> Result<(Vec<NemesisKind>, Option<String>), MatrixError> {
    validate(recipes, key, &recipe.workload, &recipe.tuning, db, opts)?;
    Ok(usable_kinds(&recipe.nemesis, partitions))
}

fn planned_row(
    name: &str,
    recipe: &Recipe,
    kinds: &[NemesisKind],
    nemesis_note: Option<String>,
    opts: &MatrixOptions,
) -> BugRow {
    BugRow {
        bug: name.to_string(),
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
        median_found_online_s: None,
        anomaly_kinds: Vec::new(),
        simulator: None,
        raft_model: None,
        hunted: false,
    }
}

/// The catalogue bugs to run on `db` (`asked`: `--bugs`, `None` when not given), and why none
/// run when the system cannot take them.
pub(super) fn bugs_for(
    db: DbKind,
    asked: Option<&[Bug]>,
) -> Result<(Vec<Bug>, Option<String>), MatrixError> {
    const NOT_ETCD: &str =
        "catalogue bugs are switches in raftlab's nodes and cannot apply to etcd";
    match (db, asked) {
        (DbKind::Raftlab, None) => Ok((Bug::ALL.to_vec(), None)),
        (DbKind::Raftlab, Some(bugs)) => Ok((bugs.to_vec(), None)),
        (DbKind::Etcd, Some(bugs)) if !bugs.is_empty() => {
            let names: Vec<&str> = bugs.iter().map(|b| b.name()).collect();
            Err(MatrixError::Bugs(format!(
                "{}: {NOT_ETCD} (leave --bugs out, or say none)",
                names.join(",")
            )))
        }
        (DbKind::Etcd, _) => Ok((Vec::new(), Some(NOT_ETCD.to_string()))),
    }
}

/// The correct column's rows: each kind alone, then (`combined`) all of them together as
/// `all`.
pub(super) fn correct_rows(plan: &CorrectPlan) -> Vec<(String, Vec<NemesisKind>)> {
    let mut rows: Vec<(String, Vec<NemesisKind>)> = plan
        .nemesis
        .iter()
        .map(|&k| (k.name().to_string(), vec![k]))
        .collect();
    if plan.combined && plan.nemesis.len() > 1 {
        rows.push(("all".to_string(), plan.nemesis.clone()));
    }
    rows
}

/// The system under test and its version, checking that it can be started.
fn system_name(db: DbKind, opts: &MatrixOptions) -> Result<String, MatrixError> {
    match db {
        DbKind::Raftlab => {
            crate::db::local::raft_node_binary().map_err(|e| MatrixError::Node(e.to_string()))?;
            Ok(format!("raftlab {}", env!("CARGO_PKG_VERSION")))
        }
        DbKind::Etcd => {
            let etcd = crate::db::etcd::etcd_binary(opts.etcd_bin.as_deref())
                .map_err(|e| MatrixError::Node(format!("--db etcd: {e}")))?;
            let version = crate::db::etcd::check_version(&etcd)
                .map_err(|e| MatrixError::Node(format!("--db etcd: {e}")))?;
            Ok(format!("etcd {version}"))
        }
    }
}

/// Where the matrix writes.
pub(super) struct Output {
    dir: PathBuf,
}

impl Output {
    /// Refreshes the derived fields and rewrites `matrix.json` and `matrix.md`.
    fn write(&self, matrix: &mut Matrix) -> Result<(), MatrixError> {
        matrix.below_target = below_target(matrix);
        matrix.exit_code = exit_code(matrix);
        let io = |path: PathBuf| move |error| MatrixError::Io { path, error };
        let json_path = self.dir.join("matrix.json");
        let json = serde_json::to_string_pretty(matrix).map_err(|e| MatrixError::Io {
            path: json_path.clone(),
            error: std::io::Error::other(e),
        })?;
        crate::control::files::write_atomically(&json_path, &(json + "\n"))
            .map_err(io(json_path.clone()))?;
        let md_path = self.dir.join("matrix.md");
        crate::control::files::write_atomically(&md_path, &markdown(matrix))
            .map_err(io(md_path.clone()))?;
        Ok(())
    }
}

/// Drops network fault kinds (partitions, `packet-loss`: nftables rules) when nftables is
/// unavailable; falls back to `kill` if none is left.
pub(super) fn usable_kinds(
    kinds: &[NemesisKind],
    partitions: bool,
) -> (Vec<NemesisKind>, Option<String>) {
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

pub(super) fn overrides(
    opts: &MatrixOptions,
    db: DbKind,
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
        db: Some(db),
        etcd_bin: opts.etcd_bin.clone(),
        quiet: true,
        silent: true,
        ..Overrides::default()
    }
}

/// Loads a recipe's workload with its overrides, so that a bad setting is reported before
/// any cluster starts.
pub(super) fn validate(
    recipes: &Path,
    key: &str,
    workload: &Path,
    tuning: &Tuning,
    db: DbKind,
    opts: &MatrixOptions,
) -> Result<(), MatrixError> {
    let o = overrides(opts, db, tuning, &[], 1, Path::new("."), None);
    Workload::load(workload, &o)
        .map(|_| ())
        .map_err(|e| MatrixError::Workload {
            recipes: recipes.to_path_buf(),
            key: key.to_string(),
            message: e.to_string(),
        })
}

/// One seeded run of the matrix; `None` when Ctrl-C cut it short (not a measurement).
async fn seeded_run(
    workload: &Path,
    overrides: Overrides,
    interrupt: &watch::Receiver<bool>,
) -> Option<RunRecord> {
    let record = lab_run(workload, overrides).await;
    let cut_short = *interrupt.borrow() && record.verdict == "error";
    (!cut_short).then_some(record)
}

/// One lab run, summarised; an error becomes a record with verdict `"error"`.
pub(super) async fn lab_run(workload: &Path, overrides: Overrides) -> RunRecord {
    let seed = overrides.seed.unwrap_or_default();
    let started = Instant::now();
    let outcome = crate::lab::run::run_detailed(workload, &overrides).await;
    let wall_s = round3(started.elapsed().as_secs_f64());
    let mut record = RunRecord {
        seed,
        verdict: "error".to_string(),
        detection_s: None,
        found_online_s: None,
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
        record.found_online_s = s.online.first_anomaly_s.map(round3);
        record.anomalies = detection.kinds;
    }
    record
}

pub(super) fn progress_bar(total: u64, quiet: bool) -> indicatif::ProgressBar {
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
pub(super) fn report_run(bar: &indicatif::ProgressBar, quiet: bool, what: &str, r: &RunRecord) {
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

pub(super) fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

pub(super) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    results::timestamps(secs).1
}
