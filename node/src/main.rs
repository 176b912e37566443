//! `raft-node`: runs one node of a cluster, or makes the cluster's certificates.
//!
//! Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 3 bad usage, bad configuration or a fatal
//! error (one line on stderr naming what is wrong), [`EXIT_STORAGE_FAILURE`] (4) a storage
//! I/O error: a write or fdatasync of the data directory failed (or reading it at start).
//! After a failed fdatasync what reached the disk is unknown, and a restart would read the
//! log back through the page cache, which may still hold records the disk never got: it
//! could acknowledge them again, or vote from a term the disk lost. So exit 4 must not be
//! restarted automatically (the systemd unit says `RestartPreventExitStatus=4`); an operator
//! checks the disk, then restarts the node (after a reboot, or on an empty data directory
//! to catch up from the others).

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use model::bugs::{Bug, Bugs};
use model::core::{Config, Membership};
use model::replica::Replica;
use node::config::ClusterConfig;
use node::storage::{Storage, StorageError, StorageOptions, SyncBugs};
use node::transport::credentials::Credentials;
use node::transport::Transport;
use node::{certs, runtime};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tracing::{error, info, warn};

/// One node of a raftlab cluster: the Raft core over QUIC with mutual TLS.
#[derive(Parser, Debug)]
#[command(name = "raft-node", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run node N of the cluster described by cluster.toml.
    Run {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        id: u64,
        /// Certificates directory (default: the config's tls.certs_dir, `certs/` beside it).
        #[arg(long)]
        certs: Option<PathBuf>,
        /// Data directory of this node (default: `data/node-N/` beside cluster.toml).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Switch on a deliberately unsafe behaviour from the bug catalogue (repeatable).
        #[arg(long = "bug")]
        bugs: Vec<String>,
        /// Seed of the election-timeout randomness (default: from the clock and pid).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Make a cluster CA, one certificate per node, and the shared client certificate; or
    /// renew one certificate, issue a named client's, or print a certificate's fingerprint.
    Certs {
        #[arg(long, required_unless_present = "fingerprint")]
        config: Option<PathBuf>,
        /// Certificates directory (default: the config's tls.certs_dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing CA (every node and client then needs the new files).
        #[arg(long, conflicts_with_all = ["renew", "client"])]
        force: bool,
        /// Lifetime of new node and client certificates, in days (never past the CA's end).
        #[arg(long, default_value_t = certs::DEFAULT_DAYS,
              value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
        /// Lifetime of a new CA certificate, in days.
        #[arg(long, default_value_t = certs::DEFAULT_CA_DAYS,
              conflicts_with_all = ["renew", "client"],
              value_parser = clap::value_parser!(u32).range(1..=36500))]
        ca_days: u32,
        /// Sign a new certificate for node-N, client or client-NAME with the existing CA and
        /// key, replacing its certificate file.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["client", "fingerprint"])]
        renew: Option<String>,
        /// With --renew: make a new key too (the old one leaked).
        #[arg(long, requires = "renew")]
        new_key: bool,
        /// Make client-NAME.pem and client-NAME.key: a client with an identity of its own.
        #[arg(long, value_name = "NAME", conflicts_with = "fingerprint")]
        client: Option<String>,
        /// Print the fingerprint and serial of the certificate(s) in FILE, the values
        /// `[tls] revoked` takes, and exit.
        #[arg(long, value_name = "FILE")]
        fingerprint: Option<PathBuf>,
    },
}

/// Exit code of a node stopped by a storage I/O error (see the module documentation).
const EXIT_STORAGE_FAILURE: u8 = 4;

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAFTLAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let result = match cli.command {
        Command::Run {
            config,
            id,
            certs,
            data,
            bugs,
            seed,
        } => run(config, id, certs, data, bugs, seed),
        Command::Certs {
            config,
            out,
            force,
            days,
            ca_days,
            renew,
            new_key,
            client,
            fingerprint,
        } => match (fingerprint, config) {
            (Some(file), _) => print_fingerprint(&file),
            (None, Some(config)) => {
                let what = match (renew, client) {
                    (Some(subject), _) => CertsJob::Renew { subject, new_key },
                    (None, Some(name)) => CertsJob::Client(name),
                    (None, None) => CertsJob::All { force, ca_days },
                };
                make_certs(config, out, days, what)
            }
            (None, None) => Err(anyhow!("certs: --config is required")),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raft-node: {e:#}");
            let storage_failed = e.chain().any(|cause| {
                cause
                    .downcast_ref::<StorageError>()
                    .is_some_and(StorageError::is_io_failure)
            });
            ExitCode::from(if storage_failed {
                EXIT_STORAGE_FAILURE
            } else {
                3
            })
        }
    }
}

/// What `raft-node certs` was asked to make.
enum CertsJob {
    /// The CA and every certificate.
    All { force: bool, ca_days: u32 },
    /// A new certificate for one identity.
    Renew { subject: String, new_key: bool },
    /// A named client's first certificate.
    Client(String),
}

fn make_certs(config: PathBuf, out: Option<PathBuf>, days: u32, job: CertsJob) -> Result<()> {
    let config = ClusterConfig::load(&config)?;
    let out = out.unwrap_or_else(|| config.tls.certs_dir.clone());
    let issued = match job {
        CertsJob::All { force, ca_days } => {
            certs::generate_with(&config, &out, force, &certs::Validity { days, ca_days })?;
            println!(
                "wrote the cluster CA ({ca_days} days), {} node certificates and a client \
                 certificate ({days} days) to {}",
                config.nodes.len(),
                out.display()
            );
            return Ok(());
        }
        CertsJob::Renew { subject, new_key } => {
            let subject: certs::Subject = subject.parse().map_err(|e| anyhow!("--renew: {e}"))?;
            certs::renew(&config, &out, &subject, new_key, days)?
        }
        CertsJob::Client(name) => certs::issue_client(&out, &name, days)?,
    };
    if let Some(key) = &issued.new_key {
        println!("wrote {} (new key, mode 0600)", key.display());
    }
    println!(
        "wrote {}: valid until {}{}",
        issued.cert.display(),
        certs::format_utc(issued.info.not_after),
        if issued.clamped_to_ca {
            " (the end of the CA's validity; renew the CA to go further)"
        } else {
            ""
        }
    );
    println!("fingerprint {}", issued.info.fingerprint());
    Ok(())
}

/// `raft-node certs --fingerprint FILE`: one block per certificate in the file.
fn print_fingerprint(file: &std::path::Path) -> Result<()> {
    for info in certs::describe(file)? {
        println!("{}", info.fingerprint());
        println!("{}", info.serial_number());
        println!("names: {}", info.names.join(", "));
        println!("not after: {}", certs::format_utc(info.not_after));
        println!(
            "to revoke it, add to cluster.toml: [tls] revoked = [\"{}\"]",
            info.fingerprint()
        );
    }
    Ok(())
}

fn run(
    config_path: PathBuf,
    id: u64,
    certs_dir: Option<PathBuf>,
    data: Option<PathBuf>,
    bug_names: Vec<String>,
    seed: Option<u64>,
) -> Result<()> {
    let config = ClusterConfig::load(&config_path)?;
    if config.node(id).is_none() {
        bail!(
            "--id {id}: no such node in {} (ids: {:?})",
            config_path.display(),
            config.ids().collect::<Vec<_>>()
        );
    }
    let mut bugs = Bugs::none();
    for name in &bug_names {
        let bug: Bug = name.parse().map_err(|e| anyhow!("--bug: {e}"))?;
        warn!("UNSAFE: bug {bug} is switched on; this node is deliberately incorrect");
        bugs = bugs.with(bug);
    }
    let seed = seed.unwrap_or_else(clock_seed);
    let certs_dir = certs_dir.unwrap_or_else(|| config.tls.certs_dir.clone());
    let data_dir = data.unwrap_or_else(|| config.data_dir(id));

    let (storage, mut restored) = Storage::open(
        &data_dir,
        StorageOptions {
            fsync: config.storage.fsync,
            segment_bytes: config.storage.segment_bytes,
            // The catalogue bugs that live in storage rather than in the core.
            bugs: SyncBugs::of(bugs),
        },
    )
    .with_context(|| format!("data directory {}", data_dir.display()))?;
    let raft_config = Config {
        election_ticks: config.timing.election_ticks,
        heartbeat_ticks: config.timing.heartbeat_ticks,
        seed,
        bugs,
        ..Config::with_settings(id, config.raft)
    };
    info!(
        id,
        seed,
        term = restored.hard_state.term,
        snapshot = restored.snapshot.meta.index,
        entries = restored.entries.len(),
        "recovered"
    );
    if restored.snapshot.meta.index == 0 {
        // No snapshot yet: the cluster starts from the voters cluster.toml bootstraps it
        // with (later changes are in the log, and in snapshots once compacted). A node
        // added later starts from the same voters and learns the rest from the leader.
        restored.snapshot.meta.membership = Membership::of_voters(config.bootstrap.iter().copied());
    }
    let replica = Replica::restore(raft_config, restored, config.storage.snapshot_every)?
        .with_kv_config(config.kv_config());

    // One thread runs the core task, the transport and the client service: every hop
    // between them is then a plain task switch, not a cross-thread wake-up, which matters
    // more here than parallelism (the storage writer has its own thread). Measured: one
    // client's writes 1,350/s -> 1,570-1,700/s, no loss at 128 clients.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(async move {
        let (transport, inbound) = Transport::start(&config, id, &certs_dir)
            .await
            .with_context(|| format!("certificates in {}", certs_dir.display()))?;
        info!(id, addr = %config.node(id).map(|n| n.addr.as_str()).unwrap_or("?"), "serving");
        let credentials = transport.credentials();
        tokio::select! {
            result = runtime::run(config, replica, storage, transport, inbound) => {
                result.context("node stopped")
            }
            signal = shutdown_signal() => {
                info!(%signal, "shutting down");
                Ok(())
            }
            never = reload_on_hangup(credentials) => match never {},
        }
    })
}

// A node allocates and frees small buffers for every packet, message and request (quinn's
// frames, postcard encodings, entries, channel nodes); glibc's malloc took about a tenth of
// a node's CPU under load, mimalloc takes much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resolves on SIGTERM or SIGINT, naming it.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the node can still be stopped by SIGKILL.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// On every SIGHUP, re-reads the node's certificate, key, CA and deny-list, logging what
/// changed; a bad file keeps the old material and is logged as an error.
async fn reload_on_hangup(credentials: Arc<Credentials>) -> std::convert::Infallible {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        warn!("no SIGHUP handler: certificates are read only at start");
        return std::future::pending().await;
    };
    loop {
        if hangup.recv().await.is_none() {
            return std::future::pending().await;
        }
        match credentials.reload() {
            Ok(changes) if changes.is_empty() => {
                info!("SIGHUP: reloaded TLS material, nothing changed")
            }
            Ok(changes) => {
                for change in changes {
                    info!(%change, "SIGHUP: reloaded TLS material");
                }
            }
            Err(e) => error!(error = %e, "SIGHUP: reload failed; keeping the current certificates"),
        }
    }
}

/// A seed that differs between processes and runs; logged so a run can be replayed.
fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}
