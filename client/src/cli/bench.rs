//! `raft-lab bench`: its flags, the checks made before anything starts (every binary found),
//! the results folder, and the table printed at the end.

use crate::bench::system::Binaries;
use crate::bench::{self, BenchOp, BenchOptions, SystemKind};
use crate::db::etcd::{check_version, etcd_binary};
use crate::db::local::raft_node_binary;
use crate::report::results;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Where results folders go by default (`results/bench/<timestamp>/`).
const DEFAULT_RESULTS: &str = "results";

/// The flags of `raft-lab bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Rounds: every cell this many times, interleaved; medians and ranges when above 1.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub rounds: usize,
    /// Seconds measured per cell.
    #[arg(long, default_value_t = 5.0, value_name = "S")]
    pub secs: f64,
    /// Seconds of warm-up per cell before the measurement.
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    pub warmup: f64,
    /// Client counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 32, 128], value_name = "LIST")]
    pub clients: Vec<usize>,
    /// Operations, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = BenchOp::ALL, value_name = "LIST")]
    pub ops: Vec<BenchOp>,
    /// Systems under test, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [SystemKind::Raftlab, SystemKind::Etcd], value_name = "LIST")]
    pub systems: Vec<SystemKind>,
    /// Nodes (members) of each system.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// The `etcd` binary (default: `etcd` on PATH).
    #[arg(long, value_name = "PATH")]
    pub etcd_bin: Option<PathBuf>,
    /// The results folder (default: results/bench/<timestamp>/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Worker threads of the load generator's tokio runtime; 0: one thread (a
    /// current-thread runtime, which wakes a sequential client without a cross-thread hop).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub generator_threads: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl BenchArgs {
    /// The tokio runtime the bench runs on (see `--generator-threads`).
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        match self.generator_threads {
            0 => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            n => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(n)
                .enable_all()
                .build(),
        }
    }
}

/// Checks the flags and finds the binaries, runs the bench, prints the table and where the
/// results are.
pub async fn run(args: BenchArgs, command: String) -> Result<()> {
    let seconds = |flag: &str, s: f64| {
        Duration::try_from_secs_f64(s).map_err(|_| anyhow::anyhow!("{flag} {s}: not a duration"))
    };
    let mut opts = BenchOptions {
        rounds: args.rounds,
        warmup: seconds("--warmup", args.warmup)?,
        window: seconds("--secs", args.secs)?,
        clients: args.clients,
        ops: dedup(args.ops),
        systems: dedup(args.systems),
        nodes: args.nodes,
        binaries: Binaries {
            raft_node: PathBuf::from("raft-node"),
            etcd: PathBuf::from("etcd"),
            etcd_version: None,
        },
        out: PathBuf::new(),
        quiet: args.quiet,
        command,
    };
    bench::validate(&opts)?;
    if opts.systems.contains(&SystemKind::Raftlab) {
        opts.binaries.raft_node = raft_node_binary()?;
    }
    if opts.systems.contains(&SystemKind::Etcd) {
        opts.binaries.etcd = etcd_binary(args.etcd_bin.as_deref())?;
        opts.binaries.etcd_version = Some(check_version(&opts.binaries.etcd)?);
    }
    opts.out = match args.out {
        Some(dir) => dir,
        None => {
            let root = PathBuf::from(DEFAULT_RESULTS);
            results::create_run_dir(&root, "bench")
                .with_context(|| format!("cannot create a folder in {}", root.display()))?
                .0
        }
    };
    let bench = bench::run(&opts).await?;
    print!("{}", bench::render::table(&bench));
    println!(
        "results: {} and bench.md",
        opts.out.join("bench.json").display()
    );
    Ok(())
}

/// `items` without repeats, in their first order.
fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}
