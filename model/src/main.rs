//! `raft-model`: model-checks the raftlab Raft core with stateright.
//!
//! ```text
//! raft-model check [--scenario NAME]... [--bug NAME]... [--json] [--threads K]
//!                  [--depth N] [--bfs | --dfs | --simulation SEED] [--timeout SECONDS] [--first]
//!                  [model options: --servers N --clients N --ops N --crashes N --max-term T ...]
//! raft-model scenarios               # the default portfolio: names and what each covers
//! raft-model bugs [--json]           # the catalogue, and where each bug is caught
//! raft-model hunt NAME [--json]      # the narrow, fast hunt for one bug
//! raft-model explore [--port 3000] [--scenario NAME] [model options]
//! ```
//! `check` with no options runs the default portfolio ([`model::check::portfolio`]): the core
//! as the nodes run it, each scenario explored exhaustively. Model options override every
//! chosen scenario's bounds. It exits 1 if a safety property was violated, 2 if `--timeout`
//! cut a search short with nothing found (unknown), 0 otherwise, and 3 on a usage error.

use clap::{Args, Parser, Subcommand};
use model::bugs::{Bug, Bugs};
use model::check::cli::{self, Outcome};
use model::check::portfolio::{self, Scenario};
use model::check::runner::{Run, Strategy};
use model::check::{hunts, Setup};
use stateright::Model;
use std::process::ExitCode;
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
    /// Check the default portfolio (or the chosen scenarios) and every property.
    Check(CheckArgs),
    /// List the default portfolio's scenarios.
    Scenarios,
    /// List the bug catalogue and where each bug is caught.
    Bugs {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run the narrow, fast hunt for one catalogue bug.
    Hunt {
        /// The bug's catalogue name.
        name: String,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Checker threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Serve stateright's Explorer (a web UI) on localhost.
    Explore {
        #[arg(long, default_value_t = 3000)]
        port: u16,
        /// The portfolio scenario to explore (default: the first).
        #[arg(long, value_name = "NAME")]
        scenario: Option<String>,
        #[command(flatten)]
        model: ModelArgs,
    },
}

/// Overrides of a scenario's bounds; each applies to every chosen scenario.
#[derive(Args)]
struct ModelArgs {
    /// Number of servers.
    #[arg(long)]
    servers: Option<usize>,
    /// Number of clients.
    #[arg(long)]
    clients: Option<usize>,
    /// Operations per client (write, read, cas, read, ...).
    #[arg(long)]
    ops: Option<usize>,
    /// Highest term an election may reach.
    #[arg(long)]
    max_term: Option<u64>,
    /// Only the first N servers ever start an election (fewer: a narrower, deeper search).
    #[arg(long, value_name = "N")]
    campaigners: Option<usize>,
    /// The server that may start the election of each term, in order (comma-separated;
    /// e.g. `2,1`: server 2 for term 1, server 1 for term 2).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    elections: Vec<u64>,
    /// Longest log explored.
    #[arg(long)]
    max_log: Option<u64>,
    /// Most messages in flight explored.
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Servers that may be crashed at once (crash and restart from durable state).
    #[arg(long)]
    crashes: Option<usize>,
    /// Ticks each server may take as leader (each one a heartbeat).
    #[arg(long)]
    heartbeats: Option<u8>,
    /// Request timeouts (re-sends) each client may take.
    #[arg(long)]
    retries: Option<u8>,
    /// Base election timeout in ticks (trust in a leader lasts that long).
    #[arg(long)]
    election_ticks: Option<u32>,
    /// Most entries in one AppendEntries (1 exposes Figure 8's old-term commit).
    #[arg(long)]
    max_batch: Option<usize>,
    /// Compact the log every N applied entries.
    #[arg(long, value_name = "N")]
    compact_every: Option<u64>,
    /// Leadership transfers the operator may ask each leader for.
    #[arg(long)]
    transfers: Option<u8>,
    /// Split each Ready: early messages sent at once (and a writing Ready's commits applied
    /// and answered), writes made durable, the rest sent and advanced at a later step.
    #[arg(long)]
    staged: bool,
    /// The network may lose messages.
    #[arg(long)]
    lossy: bool,
    /// The network may deliver a message more than once.
    #[arg(long, conflicts_with = "ordered")]
    duplicating: bool,
    /// Messages between two actors arrive in the order sent (like the node's QUIC streams).
    #[arg(long)]
    ordered: bool,
    /// Cut the link between servers A and B for the whole run (repeatable; replaces the
    /// scenario's cuts): `--cut 1-2` is a bridge, server 3 reaching both sides.
    #[arg(long = "cut", value_name = "A-B", value_parser = parse_link)]
    cut: Vec<(u64, u64)>,
    /// Switch the core's pre-vote off (the nodes run with it on).
    #[arg(long)]
    no_pre_vote: bool,
    /// Switch the core's check-quorum off (the nodes run with it on).
    #[arg(long)]
    no_check_quorum: bool,
    /// Switch a catalogue bug on in every server (repeatable).
    #[arg(long = "bug", value_name = "NAME")]
    bugs: Vec<String>,
}

/// Parses a link `A-B` between two servers.
fn parse_link(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| format!("`{text}` is not a link: expected two server ids as A-B"))?;
    let id = |s: &str| {
        s.trim()
            .parse::<u64>()
            .ok()
            .filter(|&id| id >= 1)
            .ok_or_else(|| format!("`{s}` in `{text}` is not a server id (1, 2, ...)"))
    };
    let (a, b) = (id(a)?, id(b)?);
    if a == b {
        return Err(format!("`{text}` links a server to itself"));
    }
    Ok((a, b))
}

impl ModelArgs {
    fn bugs(&self) -> anyhow::Result<Bugs> {
        let mut bugs = Bugs::none();
        for name in &self.bugs {
            bugs = bugs.with(name.parse::<Bug>()?);
        }
        Ok(bugs)
    }

    /// Applies the overrides to `setup`.
    fn apply(&self, mut s: Setup) -> anyhow::Result<Setup> {
        let or = |v: Option<usize>, d: usize| v.unwrap_or(d);
        s.servers = or(self.servers, s.servers);
        anyhow::ensure!(s.servers >= 1, "--servers must be at least 1");
        if self.servers.is_some() {
            s.voters = s.servers;
        }
        s.clients = or(self.clients, s.clients);
        s.ops = or(self.ops, s.ops);
        s.max_term = self.max_term.unwrap_or(s.max_term);
        s.campaigners = self.campaigners.or(s.campaigners);
        if !self.elections.is_empty() {
            s.elections = self.elections.clone();
        }
        s.max_log = self.max_log.unwrap_or(s.max_log);
        s.max_in_flight = or(self.max_in_flight, s.max_in_flight);
        s.max_crashes = or(self.crashes, s.max_crashes);
        s.max_heartbeats = self.heartbeats.unwrap_or(s.max_heartbeats);
        s.max_retries = self.retries.unwrap_or(s.max_retries);
        s.election_ticks = self.election_ticks.unwrap_or(s.election_ticks).max(1);
        s.settings.max_batch = or(self.max_batch, s.settings.max_batch).max(1);
        s.compact_every = self.compact_every.unwrap_or(s.compact_every);
        s.transfers = self.transfers.unwrap_or(s.transfers);
        s.staged |= self.staged;
        s.lossy |= self.lossy;
        s.duplicating |= self.duplicating;
        s.ordered |= self.ordered;
        if s.duplicating {
            s.ordered = false;
        }
        if !self.cut.is_empty() {
            s.cut = self.cut.clone();
        }
        let servers = s.servers as u64;
        let unknown = (s.elections.iter())
            .chain(s.cut.iter().flat_map(|(a, b)| [a, b]))
            .find(|&&id| id == 0 || id > servers)
            .copied();
        if let Some(id) = unknown {
            anyhow::bail!("server {id} in --elections or --cut: the servers are 1..={servers}");
        }
        s.settings.pre_vote &= !self.no_pre_vote;
        s.settings.check_quorum &= !self.no_check_quorum;
        s.bugs = self.bugs()?;
        Ok(s)
    }
}

#[derive(Args)]
struct CheckArgs {
    /// Check only this portfolio scenario (repeatable; `raft-model scenarios` lists them).
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
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
    /// Stop each scenario after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Checker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Stop at the first violated safety property (implied by --bug).
    #[arg(long)]
    first: bool,
    /// Print one JSON object on stdout instead of the report.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version are not errors.
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(3);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("raft-model: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn threads(asked: Option<usize>) -> usize {
    asked.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The portfolio scenarios called `names` (all of them if none).
fn chosen(names: &[String]) -> anyhow::Result<Vec<Scenario>> {
    let all = portfolio::portfolio();
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|name| {
            all.iter().find(|s| s.name == name).cloned().ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown scenario {name:?}; scenarios: {}",
                    all.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                )
            })
        })
        .collect()
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Cmd::Check(args) => check(args),
        Cmd::Scenarios => {
            let scenarios = portfolio::portfolio();
            let width = scenarios.iter().map(|s| s.name.len()).max().unwrap_or(0);
            for s in scenarios {
                println!("{:<width$}  {}", s.name, s.covers);
            }
            Ok(0)
        }
        Cmd::Bugs { json } => {
            let rows = cli::catalogue();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", cli::render_catalogue(&rows));
            }
            Ok(0)
        }
        Cmd::Hunt {
            name,
            json,
            threads: asked,
        } => {
            let bug: Bug = name.parse()?;
            let Some(mut run) = hunts::hunt(bug) else {
                anyhow::bail!(
                    "no hunt for {bug}: the model cannot express it (see `raft-model bugs`)"
                );
            };
            run.threads = threads(asked);
            let scenario = Scenario {
                name: "hunt",
                covers: "the narrow, fast configuration that finds this bug",
                setup: run.setup.clone(),
                strategy: run.strategy,
                depth: run.depth,
            };
            let outcome = cli::check_scenarios(&[scenario], run.setup.bugs, &run, json);
            Ok(outcome.exit_code(false))
        }
        Cmd::Explore {
            port,
            scenario,
            model,
        } => {
            let names: Vec<String> = scenario.into_iter().collect();
            let first = chosen(&names)?
                .into_iter()
                .next()
                .ok_or_else(|| anyhow::anyhow!("the portfolio is empty"))?;
            let setup = model.apply(first.setup)?;
            let address = format!("localhost:{port}");
            println!(
                "raft-model explore: scenario {} on http://{address}/",
                first.name
            );
            for line in setup.describe() {
                println!("  {line}");
            }
            let _checker = setup.into_model().checker().serve(address.as_str());
            // The Explorer answers on its own thread until the process is stopped.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

fn check(args: CheckArgs) -> anyhow::Result<u8> {
    let mut scenarios = chosen(&args.scenarios)?;
    for s in &mut scenarios {
        s.setup = args.model.apply(s.setup.clone())?;
        if args.depth.is_some() {
            s.depth = args.depth;
        }
        if args.dfs {
            s.strategy = Strategy::Dfs;
        } else if args.bfs {
            s.strategy = Strategy::Bfs;
        } else if let Some(seed) = args.simulation {
            s.strategy = Strategy::Simulation(seed);
        }
    }
    let bugs = args.model.bugs()?;
    let mut timeout = args.timeout.map(Duration::from_secs);
    if args.simulation.is_some() && timeout.is_none() {
        // Random walks never end by themselves.
        timeout = Some(Duration::from_secs(30));
    }
    let template = Run {
        timeout,
        threads: threads(args.threads),
        stop_at_first_violation: args.first || bugs.any(),
        ..Run::bfs(Setup::default())
    };
    let outcome: Outcome = cli::check_scenarios(&scenarios, bugs, &template, args.json);
    Ok(outcome.exit_code(args.timeout.is_some() && args.depth.is_none()))
}

// The checker clones and drops millions of small states; mimalloc makes that about a fifth
// cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
