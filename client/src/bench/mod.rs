//! `raft-lab bench`: raftlab and etcd side by side under the same closed-loop load, on the
//! same machine, both with TLS and fsync on.
//!
//! Both systems are started once (3 nodes each by default, [`system`]) and measured in
//! interleaved rounds: within a round every (operation, clients) cell runs on each system in
//! turn, and the systems' order flips every round, so that neither always goes first into a
//! machine warmed (or loaded) by the other. A cell sets its clients up, lets them run for the
//! warm-up, then measures for the window ([`load`]); the CPU the system's processes, this
//! process (the load generator) and the rest of the machine used meanwhile comes from `/proc`
//! ([`cpu`]), and the leader's term before and after tells whether leadership changed. The
//! results ([`render`]) are each cell, the median and range of every figure over the rounds
//! ([`stats`]), and the raftlab / etcd ratio per (operation, clients).
//!
//! ```text
//! OUT/bench.json        settings, machine, systems, every cell, summaries, ratios
//! OUT/bench.md          the same as tables
//! OUT/clusters/         the clusters' files and logs: removed after a clean run
//! ```

pub mod cpu;
pub mod load;
pub mod render;
pub mod stats;
pub mod system;

use crate::control::cleanup;
use crate::report::results;
use cpu::Sample;
use indicatif::{ProgressBar, ProgressStyle};
use render::{Bench, CellResult, Settings, SystemInfo};
use serde::Serialize;
use stats::Latency;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use system::{Binaries, System};
use thiserror::Error;
use tracing::info;

/// The operations a cell can measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BenchOp {
    /// Write the client's own key.
    Write,
    /// Read the client's own key (linearizable).
    Read,
    /// Compare-and-set the client's own key (always matches).
    Cas,
    /// Compare-and-set one key every client shares (contention: comparisons fail).
    CasShared,
}

impl BenchOp {
    pub const ALL: [BenchOp; 4] = [
        BenchOp::Write,
        BenchOp::Read,
        BenchOp::Cas,
        BenchOp::CasShared,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BenchOp::Write => "write",
            BenchOp::Read => "read",
            BenchOp::Cas => "cas",
            BenchOp::CasShared => "cas-shared",
        }
    }
}

/// The systems the bench can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SystemKind {
    Raftlab,
    Etcd,
}

impl SystemKind {
    pub fn name(self) -> &'static str {
        match self {
            SystemKind::Raftlab => "raftlab",
            SystemKind::Etcd => "etcd",
        }
    }
}

/// What went wrong; every variant names the system (and the operation) it concerns.
#[derive(Debug, Error)]
pub enum BenchError {
    #[error("{0}")]
    Input(String),
    #[error("cannot start {}: {reason}", system.name())]
    Start { system: SystemKind, reason: String },
    #[error("{}: no leader: {reason}", system.name())]
    NoLeader { system: SystemKind, reason: String },
    #[error("{}{}: {reason}", system.name(), op.map_or(String::new(), |op| format!(" {}", op.name())))]
    Cell {
        system: SystemKind,
        op: Option<BenchOp>,
        reason: String,
    },
    #[error("stopping {}: {reason}", system.name())]
    Stop { system: SystemKind, reason: String },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("interrupted: the nodes were stopped")]
    Interrupted,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub rounds: usize,
    pub warmup: Duration,
    pub window: Duration,
    pub clients: Vec<usize>,
    pub ops: Vec<BenchOp>,
    pub systems: Vec<SystemKind>,
    /// Nodes (members) of each system.
    pub nodes: usize,
    pub binaries: Binaries,
    /// The folder the results go into (created if missing).
    pub out: PathBuf,
    /// No progress bar.
    pub quiet: bool,
    /// The command line, for the results.
    pub command: String,
}

/// Checks what needs no process: lists not empty, no 0 clients, a window, a round.
pub fn validate(opts: &BenchOptions) -> Result<(), BenchError> {
    let bad = |why: &str| Err(BenchError::Input(why.to_string()));
    if opts.rounds == 0 {
        return bad("--rounds must be at least 1");
    }
    if opts.window.is_zero() {
        return bad("--secs must be above 0");
    }
    if opts.clients.is_empty() || opts.clients.contains(&0) {
        return bad("--clients: every count must be at least 1");
    }
    if opts.ops.is_empty() {
        return bad("--ops: name at least one of write, read, cas, cas-shared");
    }
    if opts.systems.is_empty() {
        return bad("--systems: name at least one of raftlab, etcd");
    }
    if opts.nodes == 0 {
        return bad("--nodes must be at least 1");
    }
    Ok(())
}

/// Runs the bench and writes `bench.json` and `bench.md` into `opts.out`.
pub async fn run(opts: &BenchOptions) -> Result<Bench, BenchError> {
    validate(opts)?;
    let io = |what, path: &PathBuf| {
        let path = path.clone();
        move |source| BenchError::Io { what, path, source }
    };
    std::fs::create_dir_all(&opts.out).map_err(io("create", &opts.out))?;
    let clusters_dir = opts.out.join("clusters");
    let started_at = now_rfc3339();
    let load_before = load_average();

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("raft-lab bench: interrupted: stopping the nodes");
                stop.store(true, Ordering::SeqCst);
                cleanup::run_all();
            }
        })
    };
    let measured = measure_all(opts, &clusters_dir, &stop).await;
    watcher.abort();
    let (systems, cells) = measured?;

    let bench = Bench::new(
        Settings::of(opts),
        started_at,
        load_before,
        load_average(),
        systems,
        cells,
    );
    let clean = bench
        .cells
        .iter()
        .all(|c| c.errors == 0 && c.leader_changes == Some(0));
    if clean {
        std::fs::remove_dir_all(&clusters_dir).map_err(io("remove", &clusters_dir))?;
    }
    let json = opts.out.join("bench.json");
    let text = serde_json::to_string_pretty(&bench).map_err(|e| BenchError::Io {
        what: "encode",
        path: json.clone(),
        source: e.into(),
    })?;
    std::fs::write(&json, text + "\n").map_err(io("write", &json))?;
    let md = opts.out.join("bench.md");
    std::fs::write(&md, render::markdown(&bench, !clean)).map_err(io("write", &md))?;
    Ok(bench)
}

/// Starts every system, runs every round, stops the systems.
async fn measure_all(
    opts: &BenchOptions,
    clusters_dir: &std::path::Path,
    stop: &AtomicBool,
) -> Result<(Vec<SystemInfo>, Vec<CellResult>), BenchError> {
    let mut systems = Vec::new();
    for &kind in &opts.systems {
        let dir = clusters_dir.join(kind.name());
        systems.push(System::start(kind, &dir, opts.nodes, &opts.binaries)?);
        info!(system = kind.name(), "started");
    }
    let infos = systems
        .iter()
        .map(|s| SystemInfo::of(s.kind(), opts.nodes, &opts.binaries))
        .collect();
    let per_round = opts.ops.len() * opts.clients.len() * systems.len();
    let bar = progress_bar(opts, per_round * opts.rounds);
    let mut cells = Vec::new();
    for round in 1..=opts.rounds {
        for &op in &opts.ops {
            for &clients in &opts.clients {
                // Round 1 in the order given, round 2 reversed, and so on.
                let order: Vec<&System> = if round % 2 == 1 {
                    systems.iter().collect()
                } else {
                    systems.iter().rev().collect()
                };
                for system in order {
                    if stop.load(Ordering::SeqCst) {
                        return Err(BenchError::Interrupted);
                    }
                    bar.set_message(format!(
                        "round {round}: {} {} x{clients}",
                        system.kind().name(),
                        op.name()
                    ));
                    let cell = Cell {
                        round,
                        op,
                        clients,
                        index: cells.len(),
                    };
                    let result = cell.run(system, opts).await?;
                    if stop.load(Ordering::SeqCst) {
                        return Err(BenchError::Interrupted);
                    }
                    bar.inc(1);
                    cells.push(result);
                }
            }
        }
    }
    bar.finish_and_clear();
    for system in systems {
        system.stop()?;
    }
    Ok((infos, cells))
}

/// One cell: an operation at a client count on one system in one round.
struct Cell {
    round: usize,
    op: BenchOp,
    clients: usize,
    /// Unique within the bench (keys are named after it).
    index: usize,
}

impl Cell {
    async fn run(&self, system: &System, opts: &BenchOptions) -> Result<CellResult, BenchError> {
        let kind = system.kind();
        let failed = |reason: String| BenchError::Cell {
            system: kind,
            op: Some(self.op),
            reason,
        };
        let (leader, term_before) = system.leader().await?;
        let clients = system.clients(leader, self.clients).await?;
        let workers = load::set_up(clients, self.op, self.index)
            .await
            .map_err(failed)?;
        let start = Instant::now() + opts.warmup;
        let end = start + opts.window;
        let running = tokio::spawn(load::run(workers, start, end));
        let pids = system.pids();
        tokio::time::sleep_until(start.into()).await;
        let before = Sample::take(&pids);
        tokio::time::sleep_until(end.into()).await;
        let after = Sample::take(&pids);
        let mut tally = running
            .await
            .map_err(|e| failed(format!("the load generator failed: {e}")))?
            .map_err(failed)?;
        let term_after = system.term(leader).await;
        let usage = before.usage_until(&after);
        let secs = opts.window.as_secs_f64();
        let ops = tally.answered();
        let cpu_us_per_op =
            (ops > 0).then(|| (usage.system + usage.generator) * secs / ops as f64 * 1e6);
        Ok(CellResult {
            round: self.round,
            system: kind,
            op: self.op,
            clients: self.clients,
            ops,
            ops_per_sec: ops as f64 / secs,
            ok: tally.ok,
            failed_compare: tally.failed_compare,
            errors: tally.errors,
            first_error: tally.first_error.take(),
            latency: Latency::of(&mut tally.micros),
            cpu_us_per_op,
            system_cores: usage.system,
            generator_cores: usage.generator,
            other_cores: usage.other,
            leader,
            leader_changes: match (term_before, term_after) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            },
        })
    }
}

fn progress_bar(opts: &BenchOptions, cells: usize) -> ProgressBar {
    if opts.quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(cells as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} bench [{elapsed_precise}] [{bar:30}] {pos}/{len} cells (eta {eta}) {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// The 1, 5 and 15 minute load averages (`?` when unreadable).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    results::timestamps(secs).1
}
