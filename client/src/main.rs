//! `raft-lab`: runs workloads against a real cluster under real faults and judges the
//! history; also starts local clusters and talks to running ones.
//!
//! Exit codes (the contract's): 0 valid / success, 1 invalid (or a kv command that certainly
//! failed), 2 unknown, 3 bad input, bad usage or an error.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use client::kv::KvCluster;
use client::lab::workload::{parse_nemesis_list, Concurrency, Overrides};
use node::config::ClusterConfig;
use node::transport::ClientConnector;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// A Jepsen-style linearizability testing lab for raftlab clusters.
#[derive(Parser, Debug)]
#[command(name = "raft-lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a workload against a local cluster (or --cluster), with faults, and check it.
    Run {
        /// The workload file (see workloads/).
        workload: PathBuf,
        #[arg(long)]
        nodes: Option<usize>,
        #[arg(long)]
        time_limit: Option<f64>,
        /// Concurrent client processes: a number or "2n" (twice the nodes).
        #[arg(long)]
        concurrency: Option<String>,
        /// Total request rate in ops/s (0: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        /// Faults: kill, pause, kill-leader, pause-leader, kill-all, partition-halves,
        /// partition-majorities-ring, partition-bridge, isolate-leader, partition-one,
        /// freeze-leader, packet-loss, membership, transfer, latency (needs --hosts netns or
        /// a remote cluster), power-cut, lose-unsynced, disk-full, corrupt (storage faults:
        /// lazy disks, FUSE); or the groups partitions, all (every kind but latency and the
        /// storage faults), disk (the storage faults), none.
        #[arg(long)]
        nemesis: Option<String>,
        #[arg(long)]
        seed: Option<u64>,
        /// Where run folders go (default: results).
        #[arg(long)]
        results: Option<PathBuf>,
        /// Start the nodes with this catalogue bug switched on.
        #[arg(long)]
        bug: Option<String>,
        /// Use the running cluster this cluster.toml describes instead of starting one (with
        /// a [remote] section: nodes on other machines, controlled through its command
        /// template). With --db etcd: start a fresh etcd cluster on the machines it names
        /// (member N at its addr, peer port addr's + 1; remote.etcd, remote.dir), stopped at
        /// the end.
        #[arg(long)]
        cluster: Option<PathBuf>,
        /// Where a fresh cluster's nodes run: local processes on loopback addresses, or one
        /// Linux network namespace per node (root; enables the latency nemesis).
        #[arg(long, value_enum, default_value_t = client::lab::cluster::HostsMode::Local)]
        hosts: client::lab::cluster::HostsMode,
        /// The system under test: raftlab's nodes, or an etcd v3 cluster started from the
        /// `etcd` binary (overrides the workload's `db`).
        #[arg(long, value_enum)]
        db: Option<client::lab::workload::DbKind>,
        /// The `etcd` binary for `--db etcd` (default: `etcd` on PATH).
        #[arg(long)]
        etcd_bin: Option<PathBuf>,
        /// etcd's client port for `--db etcd` (the peer port is the next one): used as
        /// given, the run refused when it is taken (default: the first free pair from 2379).
        #[arg(long, value_name = "P")]
        etcd_port: Option<u16>,
        /// Keep etcd members' data directories after a valid run (an invalid or unknown run
        /// always keeps them; raftlab's nodes always keep theirs).
        #[arg(long)]
        keep_data: bool,
        /// Stop the run at the first anomaly the check while it runs finds (heal the faults,
        /// skip recovery and final reads), then check and report as usual: invalid.
        #[arg(long, conflicts_with = "no_online_check")]
        stop_on_anomaly: bool,
        /// Check the history only at the end, not while the run goes (to measure what the
        /// online check costs).
        #[arg(long)]
        no_online_check: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// The bug catalogue matrix: run every catalogue bug's recipe K times on a real local
    /// cluster, the correct build K times under each nemesis kind, and say what caught what.
    /// Writes results/matrix/<timestamp>/matrix.json and matrix.md. Exit 0 when every run
    /// of the correct build was valid, 1 when one was not, 2 when one was unknown, 3 on
    /// errors or Ctrl-C.
    Matrix {
        /// Runs per bug and per nemesis kind of the correct build (seeds 1..=K).
        #[arg(long, default_value_t = client::matrix::DEFAULT_SEEDS, value_name = "K")]
        seeds: u64,
        /// Seconds per run, overriding every recipe and workload.
        #[arg(long, value_name = "S")]
        time_limit: Option<f64>,
        /// Comma-separated catalogue bug names, "all", or "none" (only the correct build);
        /// default: all for raftlab, none for etcd (catalogue bugs cannot apply to it).
        #[arg(long, value_name = "LIST")]
        bugs: Option<String>,
        /// Run the correct build under every nemesis kind (the default).
        #[arg(long, overrides_with = "no_correct")]
        correct: bool,
        /// Do not run the correct build.
        #[arg(long, overrides_with = "correct")]
        no_correct: bool,
        /// Where the matrix folder goes (default: results, i.e. results/matrix/<timestamp>/).
        #[arg(long)]
        results: Option<PathBuf>,
        /// Skip the simulator and raft-model columns.
        #[arg(long)]
        skip_model: bool,
        /// Simulator seeds per bug.
        #[arg(long, default_value_t = client::matrix::DEFAULT_SIM_SEEDS, value_name = "N")]
        sim_seeds: u64,
        /// The recipes file (bug -> workload, faults, why).
        #[arg(long, default_value = client::matrix::recipes::DEFAULT_RECIPES, value_name = "FILE")]
        recipes: PathBuf,
        /// The system under test: raftlab, or etcd (default: the recipes file's `db`, else
        /// raftlab).
        #[arg(long, value_enum)]
        db: Option<client::lab::workload::DbKind>,
        /// The `etcd` binary for --db etcd (default: `etcd` on PATH).
        #[arg(long, value_name = "PATH")]
        etcd_bin: Option<PathBuf>,
        /// No progress bar and no per-run lines: only the table.
        #[arg(long)]
        quiet: bool,
    },
    /// raftlab and etcd side by side: the same closed-loop load (write, read, cas, cas-shared
    /// at 1, 8, 32, 128 clients) on fresh 3-node clusters of each, TLS and fsync on, in
    /// interleaved rounds. Prints the table; writes bench.json and bench.md to
    /// results/bench/<timestamp>/ (or --out).
    Bench(client::cli::bench::BenchArgs),
    /// One command against a running cluster: get KEY | put KEY VALUE | cas KEY OLD NEW |
    /// append KEY SUFFIX | status | leader.
    Kv {
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        /// Present certs/client-NAME.pem (from `raft-node certs --client NAME`) instead of
        /// the shared client certificate.
        #[arg(long, value_name = "NAME")]
        client: Option<String>,
        #[arg(required = true, num_args = 1.., trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Start, stop or inspect a local cluster that outlives this command.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// An interactive console (line editing, history, help) against a running cluster.
    Console {
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        /// Present certs/client-NAME.pem instead of the shared client certificate.
        #[arg(long, value_name = "NAME")]
        client: Option<String>,
    },
    /// Browse the runs over HTTP: a page listing every run, newest first, and their files.
    Serve {
        /// The results folder to serve.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Port to listen on (0: any free port; the printed URL shows which).
        #[arg(long, default_value_t = client::report::serve::DEFAULT_PORT)]
        port: u16,
        /// Address to listen on (0.0.0.0 exposes the results to the network).
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterAction {
    /// Create (if needed) and start a cluster: an existing cluster.toml, a new *.toml path,
    /// or a directory.
    Up {
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long)]
        bug: Option<String>,
    },
    /// Stop the nodes `up` started.
    Down {
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
    },
    /// Each node's process and Raft status.
    Status {
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
    },
    /// Add a node: written into cluster.toml, its certificate issued (unless present), started
    /// empty, added as a learner, promoted to voter once it holds the committed log.
    Add {
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        /// The new node's id: not in the cluster, and never one removed from it.
        #[arg(long)]
        id: u64,
        /// Where it listens (host:port).
        #[arg(long)]
        addr: String,
        /// Where raft-lab reaches its machine (remote clusters; default: addr's host).
        #[arg(long)]
        host: Option<String>,
    },
    /// Remove a node (leadership moves first if it leads), stop it, retire its id.
    Remove {
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        #[arg(long)]
        id: u64,
    },
    /// Move leadership to a voter.
    Transfer {
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        #[arg(long)]
        to: u64,
    },
    /// The membership as the leader reports it: ids, addresses, voter or learner, match index.
    Members {
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(3);
        }
    };
    // `serve` logs every request by default, like any web server.
    let default_filter = match cli.command {
        Command::Serve { .. } => "warn,client::report::serve=info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAFTLAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match &cli.command {
        Command::Bench(args) => args.runtime(),
        _ => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("raft-lab: cannot start tokio: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("raft-lab: {e:#}");
            ExitCode::from(3)
        }
    }
}

async fn dispatch(command: Command) -> Result<u8> {
    match command {
        Command::Run {
            workload,
            nodes,
            time_limit,
            concurrency,
            rate,
            nemesis,
            seed,
            results,
            bug,
            cluster,
            hosts,
            db,
            etcd_bin,
            etcd_port,
            keep_data,
            stop_on_anomaly,
            no_online_check,
            quiet,
        } => {
            let concurrency = concurrency
                .map(|c| c.parse::<Concurrency>())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--concurrency: {e}"))?;
            let nemesis = nemesis.map(|n| parse_nemesis_list(&n));
            let overrides = Overrides {
                nodes,
                time_limit,
                concurrency,
                rate,
                nemesis,
                seed,
                results,
                bug,
                cluster,
                hosts,
                db,
                etcd_bin,
                etcd_port,
                keep_data,
                quiet,
                silent: false,
                stop_on_anomaly,
                no_online_check,
            };
            let verdict = client::lab::run::run(&workload, &overrides).await?;
            Ok(verdict.exit_code() as u8)
        }
        Command::Matrix {
            seeds,
            time_limit,
            bugs,
            correct: _,
            no_correct,
            results,
            skip_model,
            sim_seeds,
            recipes,
            db,
            etcd_bin,
            quiet,
        } => {
            let mut opts = client::matrix::MatrixOptions::new(command_line());
            opts.seeds = seeds;
            opts.time_limit = time_limit;
            opts.bugs = bugs
                .map(|list| client::matrix::parse_bug_list(&list))
                .transpose()?;
            opts.db = db;
            opts.etcd_bin = etcd_bin;
            opts.correct = !no_correct;
            if let Some(results) = results {
                opts.results = results;
            }
            opts.skip_model = skip_model;
            opts.sim_seeds = sim_seeds;
            opts.recipes = recipes;
            opts.quiet = quiet;
            let matrix = client::matrix::run(&opts).await?;
            print!("{}", client::matrix::text(&matrix));
            if matrix.interrupted {
                anyhow::bail!("interrupted; the partial matrix is in {}", matrix.dir);
            }
            Ok(matrix.exit_code)
        }
        Command::Bench(args) => {
            client::cli::bench::run(args, command_line()).await?;
            Ok(0)
        }
        Command::Kv {
            config,
            client,
            command,
        } => {
            if command.len() == 1 && command[0] == "help" {
                println!("{}", client::cli::kv::HELP);
                return Ok(0);
            }
            let command = client::cli::kv::parse(&command).map_err(anyhow::Error::msg)?;
            let cluster = connect(&config, client.as_deref())?;
            let answer = client::cli::kv::execute(&cluster, command).await;
            println!("{}", answer.text);
            cluster.close().await;
            Ok(answer.code)
        }
        Command::Console { config, client } => {
            client::cli::console::run(connect(&config, client.as_deref())?).await?;
            Ok(0)
        }
        Command::Cluster { action } => cluster_action(action).await,
        Command::Serve {
            results,
            port,
            bind,
        } => {
            let server =
                client::report::serve::Server::bind(&results, SocketAddr::new(bind, port))?;
            println!("serving {} on {}", results.display(), server.url());
            tokio::task::spawn_blocking(move || server.run())
                .await
                .context("the server stopped")?;
            Ok(0)
        }
    }
}

/// The command line as typed (arguments with spaces quoted), for `matrix.md` and `bench.md`.
fn command_line() -> String {
    let mut words: Vec<String> = std::env::args()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect();
    if let Some(first) = words.first_mut() {
        // The binary as a user would type it, not the absolute path cargo ran.
        if let Some(name) = Path::new(first.as_str()).file_name() {
            if first.starts_with('/') {
                *first = name.to_string_lossy().into_owned();
            }
        }
    }
    words.join(" ")
}

/// The cluster of `config`, reached with the shared client certificate or `client-NAME`'s.
fn connect(config: &Path, client: Option<&str>) -> Result<KvCluster> {
    let config = ClusterConfig::load(config)?;
    let certs = &config.tls.certs_dir;
    let connector = ClientConnector::as_client(certs, client)
        .with_context(|| format!("certificates in {}", certs.display()))?;
    let subject = node::certs::Subject::Client(client.map(str::to_string));
    let namespace = node::certs::client_namespace(&subject.identity())
        .with_context(|| format!("{subject}: not a client identity"))?;
    Ok(KvCluster::with_connector(Arc::new(connector), &config).with_namespace(namespace))
}

async fn cluster_action(action: ClusterAction) -> Result<u8> {
    match action {
        ClusterAction::Up { config, nodes, bug } => {
            let report =
                client::cli::cluster::up(&config, nodes, bug.into_iter().collect()).await?;
            for (id, pid) in &report.started {
                println!("node {id} started (pid {pid})");
            }
            for id in &report.already_running {
                println!("node {id} was already running");
            }
            println!(
                "cluster: {}  (try: raft-lab kv --config {} status)",
                report.config.display(),
                report.config.display()
            );
            Ok(0)
        }
        ClusterAction::Down { config } => {
            let report = client::cli::cluster::down(&config).await?;
            for id in &report.stopped {
                println!("node {id} stopped");
            }
            for id in &report.not_running {
                println!("node {id} was not running");
            }
            Ok(0)
        }
        ClusterAction::Status { config } => {
            let nodes = client::cli::cluster::status(&config).await?;
            print!("{}", client::cli::cluster::format_status(&nodes));
            let reachable = nodes.iter().filter(|n| n.status.is_ok()).count();
            Ok(if reachable == 0 { 3 } else { 0 })
        }
        ClusterAction::Add {
            config,
            id,
            addr,
            host,
        } => {
            client::cli::membership::add(&config, id, &addr, host.as_deref()).await?;
            Ok(0)
        }
        ClusterAction::Remove { config, id } => {
            client::cli::membership::remove(&config, id).await?;
            Ok(0)
        }
        ClusterAction::Transfer { config, to } => {
            client::cli::membership::transfer(&config, to).await?;
            Ok(0)
        }
        ClusterAction::Members { config } => {
            let members = client::cli::membership::members(&config).await?;
            print!("{}", client::cli::membership::format_members(&members));
            Ok(0)
        }
    }
}
