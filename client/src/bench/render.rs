//! The bench's results: what `bench.json` holds (every cell, the median and range of each
//! figure over the rounds, the raftlab / etcd ratios) and `bench.md`, the same as tables.

use super::stats::{ratio, Latency, Spread};
use super::system::Binaries;
use super::{BenchOp, BenchOptions, SystemKind};
use model::core::NodeId;
use serde::Serialize;
use std::fmt::Write as _;

/// What one cell measured.
#[derive(Clone, Debug, Serialize)]
pub struct CellResult {
    pub round: usize,
    pub system: SystemKind,
    pub op: BenchOp,
    pub clients: usize,
    /// Operations answered inside the window (ok + failed comparisons).
    pub ops: u64,
    pub ops_per_sec: f64,
    pub ok: u64,
    pub failed_compare: u64,
    /// Operations that ended otherwise (refused, timed out, unknown): not in `ops`.
    pub errors: u64,
    pub first_error: Option<String>,
    #[serde(flatten)]
    pub latency: Latency,
    /// CPU time of the system's processes and the load generator per answered operation.
    pub cpu_us_per_op: Option<f64>,
    /// Cores used during the window by the system's processes together.
    pub system_cores: f64,
    /// Cores used by the load generator (this process).
    pub generator_cores: f64,
    /// Cores used by the rest of the machine.
    pub other_cores: f64,
    /// The leader when the cell began.
    pub leader: NodeId,
    /// How far the leader's term advanced during the cell (each step an election); `None`
    /// when the leader did not answer afterwards.
    pub leader_changes: Option<u64>,
}

/// The settings the bench ran with.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub command: String,
    pub rounds: usize,
    pub warmup_secs: f64,
    pub secs: f64,
    pub clients: Vec<usize>,
    pub ops: Vec<BenchOp>,
    pub systems: Vec<SystemKind>,
    pub nodes: usize,
    /// Worker threads of the load generator's tokio runtime (1 for a current-thread one).
    pub generator_workers: usize,
}

impl Settings {
    pub fn of(opts: &BenchOptions) -> Settings {
        Settings {
            command: opts.command.clone(),
            rounds: opts.rounds,
            warmup_secs: opts.warmup.as_secs_f64(),
            secs: opts.window.as_secs_f64(),
            clients: opts.clients.clone(),
            ops: opts.ops.clone(),
            systems: opts.systems.clone(),
            nodes: opts.nodes,
            generator_workers: tokio::runtime::Handle::try_current()
                .map_or(0, |h| h.metrics().num_workers()),
        }
    }
}

/// One system as it was run.
#[derive(Clone, Debug, Serialize)]
pub struct SystemInfo {
    pub system: SystemKind,
    pub binary: String,
    pub version: Option<String>,
    pub nodes: usize,
    /// How the clients reach it.
    pub clients: String,
}

impl SystemInfo {
    pub fn of(kind: SystemKind, nodes: usize, binaries: &Binaries) -> SystemInfo {
        match kind {
            SystemKind::Raftlab => SystemInfo {
                system: kind,
                binary: binaries.raft_node.display().to_string(),
                version: crate::report::results::git_revision(),
                nodes,
                clients:
                    "QUIC + mutual TLS, fsync on; leader-direct, one shared connection per 32 \
                          clients, a session per client"
                        .into(),
            },
            SystemKind::Etcd => SystemInfo {
                system: kind,
                binary: binaries.etcd.display().to_string(),
                version: binaries.etcd_version.clone(),
                nodes,
                clients: "gRPC + mutual TLS, fsync on; leader only, one shared connection \
                          per 10 clients"
                    .into(),
            },
        }
    }
}

/// Where the machine stood.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub load_average_before: String,
    pub load_average_after: String,
}

/// One system at one (operation, clients) over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub system: SystemKind,
    pub op: BenchOp,
    pub clients: usize,
    pub rounds: usize,
    pub ops_per_sec: Option<Spread>,
    pub p50_ms: Option<Spread>,
    pub p99_ms: Option<Spread>,
    pub p999_ms: Option<Spread>,
    pub cpu_us_per_op: Option<Spread>,
    pub system_cores: Option<Spread>,
    pub generator_cores: Option<Spread>,
    pub other_cores: Option<Spread>,
    /// Sums over the rounds.
    pub ok: u64,
    pub failed_compare: u64,
    pub errors: u64,
    pub leader_changes: u64,
}

/// raftlab against etcd at one (operation, clients): ratios of the medians.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub op: BenchOp,
    pub clients: usize,
    /// raftlab ops/s over etcd's (above 1: raftlab does more).
    pub ops_per_sec: Option<f64>,
    /// raftlab p50 over etcd's (below 1: raftlab is faster).
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// raftlab CPU µs per op over etcd's.
    pub cpu_us_per_op: Option<f64>,
}

/// Everything `bench.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct Bench {
    pub started_at: String,
    pub settings: Settings,
    pub machine: Machine,
    pub systems: Vec<SystemInfo>,
    pub cells: Vec<CellResult>,
    pub summary: Vec<Summary>,
    pub ratios: Vec<Ratio>,
}

impl Bench {
    pub fn new(
        settings: Settings,
        started_at: String,
        load_average_before: String,
        load_average_after: String,
        systems: Vec<SystemInfo>,
        cells: Vec<CellResult>,
    ) -> Bench {
        let mut summary = Vec::new();
        let mut ratios = Vec::new();
        for &op in &settings.ops {
            for &clients in &settings.clients {
                for &system in &settings.systems {
                    let same: Vec<&CellResult> = cells
                        .iter()
                        .filter(|c| c.system == system && c.op == op && c.clients == clients)
                        .collect();
                    if !same.is_empty() {
                        summary.push(summarize(system, op, clients, &same));
                    }
                }
                let find = |system| {
                    summary.iter().find(|s: &&Summary| {
                        s.system == system && s.op == op && s.clients == clients
                    })
                };
                if let (Some(r), Some(e)) = (find(SystemKind::Raftlab), find(SystemKind::Etcd)) {
                    let median = |s: Option<Spread>| s.map(|s| s.median);
                    ratios.push(Ratio {
                        op,
                        clients,
                        ops_per_sec: ratio(median(r.ops_per_sec), median(e.ops_per_sec)),
                        p50: ratio(median(r.p50_ms), median(e.p50_ms)),
                        p99: ratio(median(r.p99_ms), median(e.p99_ms)),
                        cpu_us_per_op: ratio(median(r.cpu_us_per_op), median(e.cpu_us_per_op)),
                    });
                }
            }
        }
        Bench {
            started_at,
            machine: Machine {
                cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
                load_average_before,
                load_average_after,
            },
            settings,
            systems,
            cells,
            summary,
            ratios,
        }
    }
}

fn summarize(system: SystemKind, op: BenchOp, clients: usize, cells: &[&CellResult]) -> Summary {
    let spread =
        |f: &dyn Fn(&CellResult) -> Option<f64>| Spread::of(cells.iter().filter_map(|c| f(c)));
    Summary {
        system,
        op,
        clients,
        rounds: cells.len(),
        ops_per_sec: spread(&|c| Some(c.ops_per_sec)),
        p50_ms: spread(&|c| c.latency.p50_ms),
        p99_ms: spread(&|c| c.latency.p99_ms),
        p999_ms: spread(&|c| c.latency.p999_ms),
        cpu_us_per_op: spread(&|c| c.cpu_us_per_op),
        system_cores: spread(&|c| Some(c.system_cores)),
        generator_cores: spread(&|c| Some(c.generator_cores)),
        other_cores: spread(&|c| Some(c.other_cores)),
        ok: cells.iter().map(|c| c.ok).sum(),
        failed_compare: cells.iter().map(|c| c.failed_compare).sum(),
        errors: cells.iter().map(|c| c.errors).sum(),
        leader_changes: cells.iter().filter_map(|c| c.leader_changes).sum(),
    }
}

/// A figure: the median, with the range when there was more than one round.
fn show(s: Option<Spread>, digits: usize, rounds: usize) -> String {
    match s {
        None => "–".into(),
        Some(s) if rounds > 1 => format!(
            "{:.digits$} ({:.digits$}–{:.digits$})",
            s.median, s.min, s.max
        ),
        Some(s) => format!("{:.digits$}", s.median),
    }
}

fn show_ratio(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}"))
}

/// The summary table alone (what the command prints).
pub fn table(bench: &Bench) -> String {
    let mut md = String::new();
    md.push_str(
        "| op | clients | system | ops/s | p50 ms | p99 ms | p99.9 ms | CPU µs/op | cores system / generator | other load | ok / failed cmp / errors | leader changes |\n",
    );
    md.push_str("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in &bench.summary {
        let n = s.rounds;
        let median = |s: Option<Spread>| s.map_or("–".into(), |s| format!("{:.2}", s.median));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} / {} / {} | {} |",
            s.op.name(),
            s.clients,
            s.system.name(),
            show(s.ops_per_sec, 0, n),
            show(s.p50_ms, 2, n),
            show(s.p99_ms, 2, n),
            show(s.p999_ms, 2, n),
            show(s.cpu_us_per_op, 0, 1),
            median(s.system_cores),
            median(s.generator_cores),
            median(s.other_cores),
            s.ok,
            s.failed_compare,
            s.errors,
            s.leader_changes,
        );
    }
    if !bench.ratios.is_empty() {
        md.push_str("\n| op | clients | raftlab / etcd ops/s | p50 | p99 | CPU µs/op |\n");
        md.push_str("|---|---:|---:|---:|---:|---:|\n");
        for r in &bench.ratios {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                r.op.name(),
                r.clients,
                show_ratio(r.ops_per_sec),
                show_ratio(r.p50),
                show_ratio(r.p99),
                show_ratio(r.cpu_us_per_op),
            );
        }
    }
    md
}

/// `bench.md`: how it was run, the tables, and anything unusual. `kept`: the clusters'
/// folder was kept (errors or leader changes).
pub fn markdown(bench: &Bench, kept: bool) -> String {
    let s = &bench.settings;
    let mut md = String::from("# raft-lab bench\n\n");
    let _ = writeln!(md, "`{}`\n", s.command);
    let _ = writeln!(
        md,
        "Started {}; {} round(s), systems in turn (order flipped every round); per cell {} s \
         warm-up then {} s measured; {} nodes each on this machine ({} CPUs); closed loop, \
         one sequential client per key (`cas-shared`: one key for all); load generator on {} \
         thread(s).\n",
        bench.started_at,
        s.rounds,
        s.warmup_secs,
        s.secs,
        s.nodes,
        bench.machine.cpus,
        s.generator_workers
    );
    for sys in &bench.systems {
        let _ = writeln!(
            md,
            "- **{}** {}: `{}`; {}",
            sys.system.name(),
            sys.version.as_deref().unwrap_or("(version unknown)"),
            sys.binary,
            sys.clients
        );
    }
    let _ = writeln!(
        md,
        "- load average before {}, after {}; \"other load\": cores the rest of the machine \
         used during the window, the idle other system included (compare rows with similar \
         other load)\n",
        bench.machine.load_average_before, bench.machine.load_average_after
    );
    if s.rounds > 1 {
        md.push_str("Figures: median (min–max) over the rounds; cores: medians.\n\n");
    }
    md.push_str(&table(bench));
    let notes: Vec<String> = bench
        .cells
        .iter()
        .filter(|c| c.errors > 0 || c.leader_changes != Some(0))
        .map(|c| {
            format!(
                "- round {} {} {} x{}: {} errors{}; leader changes: {}",
                c.round,
                c.system.name(),
                c.op.name(),
                c.clients,
                c.errors,
                c.first_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (first: {e})")),
                c.leader_changes
                    .map_or("unknown (no answer after the cell)".into(), |n| n
                        .to_string())
            )
        })
        .collect();
    if !notes.is_empty() {
        md.push_str("\n## Notes\n\n");
        md.push_str(&notes.join("\n"));
        md.push('\n');
        if kept {
            md.push_str("\nThe clusters' files and logs are kept in `clusters/`.\n");
        }
    }
    md
}
