//! `raft-model`: model-checks the Raft core with stateright (issue #6).
//!
//! ```text
//! raft-model check [--servers N] [--clients N] [--ops N] [--depth N]
//!                  [--bfs | --dfs | --simulation SEED] [--timeout SECONDS]
//!                  [--bug NAME]... [--crashes N] [--lossy] [--duplicating]
//!                  [--max-term T] [--max-log L] [--max-in-flight M] [--max-batch B]
//!                  [--heartbeats H] [--retries R] [--threads K]
//! raft-model explore [--port 3000] [same model options]
//! ```
//! `check` prints unique states, states/s, the maximum depth, each property's verdict and a
//! trace per violation; it exits 1 if a safety property was violated, 2 if `--timeout` cut
//! the search short with nothing found (unknown), 0 otherwise, and 3 on a usage error.
//! `explore` serves stateright's Explorer on localhost.

use clap::{Args, Parser, Subcommand};
use model::bugs::{Bug, Bugs};
use model::check::cli::{run, Run, Strategy};
use model::check::Setup;
use stateright::Model;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "raft-model",
    about = "Model-check the raftlab Raft core with stateright"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Explore the state space and check every property.
    Check(CheckArgs),
    /// Serve stateright's Explorer (a web UI) on localhost.
    Explore {
        #[arg(long, default_value_t = 3000)]
        port: u16,
        #[command(flatten)]
        model: ModelArgs,
    },
}

#[derive(Args)]
struct ModelArgs {
    /// Number of servers.
    #[arg(long, default_value_t = Setup::default().servers)]
    servers: usize,
    /// Number of clients.
    #[arg(long, default_value_t = Setup::default().clients)]
    clients: usize,
    /// Operations per client (write, read, cas, read, ...).
    #[arg(long, default_value_t = Setup::default().ops)]
    ops: usize,
    /// Highest term an election may reach.
    #[arg(long, default_value_t = Setup::default().max_term)]
    max_term: u64,
    /// Only the first N servers ever start an election (fewer: a narrower, deeper bug hunt).
    #[arg(long, value_name = "N")]
    campaigners: Option<usize>,
    /// Longest log explored.
    #[arg(long, default_value_t = Setup::default().max_log)]
    max_log: u64,
    /// Most messages in flight explored.
    #[arg(long, default_value_t = Setup::default().max_in_flight)]
    max_in_flight: usize,
    /// Servers that may be crashed at once (crash and restart from durable state).
    #[arg(long, default_value_t = Setup::default().max_crashes)]
    crashes: usize,
    /// Heartbeats each server may send as leader.
    #[arg(long, default_value_t = Setup::default().max_heartbeats)]
    heartbeats: u8,
    /// Request timeouts (re-sends) each client may take.
    #[arg(long, default_value_t = Setup::default().max_retries)]
    retries: u8,
    /// Most entries in one AppendEntries (1 exposes Figure 8's old-term commit).
    #[arg(long, default_value_t = Setup::default().max_batch)]
    max_batch: usize,
    /// The network may lose messages.
    #[arg(long)]
    lossy: bool,
    /// The network may deliver a message more than once.
    #[arg(long, conflicts_with = "ordered")]
    duplicating: bool,
    /// Messages between two actors arrive in the order sent (like the node's QUIC streams).
    #[arg(long)]
    ordered: bool,
    /// Enable the core's pre-vote.
    #[arg(long)]
    pre_vote: bool,
    /// Enable the core's check-quorum (leader lease).
    #[arg(long)]
    check_quorum: bool,
    /// Switch a catalogue bug on in every server (repeatable).
    #[arg(long = "bug", value_name = "NAME")]
    bugs: Vec<String>,
}

impl ModelArgs {
    fn setup(&self) -> anyhow::Result<Setup> {
        let mut bugs = Bugs::none();
        for name in &self.bugs {
            bugs = bugs.with(name.parse::<Bug>()?);
        }
        anyhow::ensure!(self.servers >= 1, "--servers must be at least 1");
        Ok(Setup {
            servers: self.servers,
            clients: self.clients,
            ops: self.ops,
            max_term: self.max_term,
            campaigners: self.campaigners,
            max_log: self.max_log,
            max_in_flight: self.max_in_flight,
            max_crashes: self.crashes,
            max_heartbeats: self.heartbeats,
            max_retries: self.retries,
            max_batch: self.max_batch.max(1),
            lossy: self.lossy,
            duplicating: self.duplicating,
            ordered: self.ordered,
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            bugs,
        })
    }
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Do not explore paths deeper than this.
    #[arg(long)]
    depth: Option<usize>,
    /// Breadth-first search (the default; shortest counterexamples).
    #[arg(long, conflicts_with_all = ["dfs", "simulation"])]
    bfs: bool,
    /// Depth-first search.
    #[arg(long, conflicts_with = "simulation")]
    dfs: bool,
    /// Random walks from this seed.
    #[arg(long, value_name = "SEED")]
    simulation: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Checker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Stop at the first violated safety property.
    #[arg(long)]
    first: bool,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 3 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    match real_main(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("raft-model: {e:#}");
            std::process::exit(3);
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Cmd::Check(args) => {
            let setup = args.model.setup()?;
            let strategy = match (args.dfs, args.simulation) {
                (true, _) => Strategy::Dfs,
                (_, Some(seed)) => Strategy::Simulation(seed),
                _ => Strategy::Bfs,
            };
            let mut timeout = args.timeout.map(Duration::from_secs);
            if matches!(strategy, Strategy::Simulation(_)) && timeout.is_none() {
                // Random walks never end by themselves.
                timeout = Some(Duration::from_secs(30));
            }
            println!("raft-model check: {setup:?} strategy {strategy:?}");
            let report = run(&Run {
                setup,
                strategy,
                depth: args.depth,
                timeout,
                target_states: None,
                threads: args.threads,
                stop_at_first_violation: args.first,
            });
            report.print();
            // A search cut short by its timeout proved nothing: "unknown", as the contract
            // says for a check that gave up.
            let gave_up = args.timeout.is_some() && !report.exhausted;
            Ok(if !report.violated().is_empty() {
                1
            } else if gave_up && args.depth.is_none() {
                2
            } else {
                0
            })
        }
        Cmd::Explore { port, model } => {
            let setup = model.setup()?;
            let address = format!("localhost:{port}");
            println!("raft-model explore: serving stateright's Explorer on http://{address}/");
            let _checker = setup.into_model().checker().serve(address.as_str());
            // The Explorer answers on its own thread until the process is stopped.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}
