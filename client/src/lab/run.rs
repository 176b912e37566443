//! `raft-lab run`: one workload against a real cluster, start to verdict.
//!
//! 1. Load the workload (flags override it); check `--bug`, and that partition nemeses can
//!    run (root + `nft`) before anything starts.
//! 2. Create `results/<workload>/<timestamp>/` and start a cluster in its `cluster/` folder
//!    (certificates, data, one log per node): local processes, or with `--hosts netns` one
//!    network namespace per node, or with `--db etcd` etcd members; or open `--cluster FILE`
//!    (local, or remote through its `[remote]` command template: see [`RunCluster`]); with
//!    `--db etcd --cluster FILE`, start fresh etcd members on the hosts FILE names.
//! 3. Wait for a leader; run the nemesis schedule and the generator together until the time
//!    limit; heal everything; wait `recovery_time`; final reads. Meanwhile the history is
//!    checked as it grows ([`online`](crate::lab::online), unless `--no-online-check`); with
//!    `--stop-on-anomaly` the first anomaly it finds stops the clients, heals the faults and
//!    skips recovery and final reads.
//! 4. Stop the cluster: always, also on errors and on Ctrl-C (the first Ctrl-C stops the
//!    generator and kills the nodes at once, the run then saves its partial history and ends
//!    with an error; a second Ctrl-C exits immediately).
//! 5. Check the whole history (its verdict is the run's), write `history.jsonl`,
//!    `history.edn`, `results.json`, `report.html`, point `results/latest` at the run, print
//!    the verdict line.

use crate::control::cleanup;
use crate::db::etcd::{self, check_version, etcd_binary, EtcdOptions};
use crate::db::local::{raft_lazyfs_binary, ClusterOptions, LazyDiskOptions};
use crate::db::Db;
use crate::history::Recorder;
use crate::kv::etcd::EtcdKv;
use crate::kv::system::Clients;
use crate::kv::KvCluster;
use crate::lab::check::{check_text, history_text};
use crate::lab::cluster::{Access, HostsMode, RunCluster};
use crate::lab::generator::{random_seed, Generator, Progress, ProgressView};
use crate::lab::online::{OnlineChecker, OnlineOutcome};
use crate::lab::summary::{summarize, SummaryInput};
use crate::lab::workload::{DbKind, Overrides, Workload};
use crate::nemesis::{
    self, NemesisContext, NemesisError, NemesisKind, NemesisReport, Schedule, ScheduleOptions,
};
use crate::report::results::OnlineSummary;
use crate::report::results::{self, RunSummary};
use anyhow::{anyhow, bail, Context};
use checker::Verdict;
use model::core::NodeId;
use node::config::ClusterConfig;
use node::transport::ClientConnector;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::info;

/// How long the cluster may take to elect its first leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default results root.
pub const DEFAULT_RESULTS: &str = "results";

/// Everything a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub verdict: Verdict,
    pub run_dir: PathBuf,
    pub summary: RunSummary,
}

/// Runs the workload in `workload_path` with `overrides`; returns the verdict (the caller maps
/// it to the exit code: valid 0, invalid 1, unknown 2; an `Err` is 3).
pub async fn run(workload_path: &Path, overrides: &Overrides) -> anyhow::Result<Verdict> {
    Ok(run_detailed(workload_path, overrides).await?.verdict)
}

/// [`run`], returning the run folder and the summary too (tests use it).
pub async fn run_detailed(
    workload_path: &Path,
    overrides: &Overrides,
) -> anyhow::Result<RunOutcome> {
    // With --cluster the node count is the cluster's ("2n" concurrency resolves against it).
    let mut effective = overrides.clone();
    if let Some(file) = &overrides.cluster {
        let config = ClusterConfig::load(file).map_err(|e| anyhow!("--cluster: {e}"))?;
        let n = config.nodes.len();
        if let Some(asked) = overrides.nodes.filter(|&asked| asked != n) {
            bail!(
                "--nodes {asked} contradicts --cluster {} ({n} nodes)",
                file.display()
            );
        }
        effective.nodes = Some(n);
    }
    let overrides = &effective;
    let workload = Workload::load(workload_path, overrides)?;
    let seed = workload.seed.unwrap_or_else(random_seed);
    let etcd_version = preflight(&workload, overrides)?;
    let nemesis_plan = plan_nemesis(&workload, overrides, seed)?;

    let root = overrides
        .results
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RESULTS));
    let (run_dir, started_at) =
        results::create_run_dir(&root, &workload.name).with_context(|| {
            format!(
                "--results: cannot create a run folder in {}",
                root.display()
            )
        })?;
    info!(dir = %run_dir.display(), seed, "run started");

    // Ctrl-C: stop the generator, kill the nodes and drop the nft tables at once. The same
    // signal, without `interrupted`, is the online check's stop at an anomaly.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let interrupted = Arc::new(AtomicBool::new(false));
    let watcher = {
        let interrupted = interrupted.clone();
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("raft-lab: interrupted: stopping the nodes and removing the nftables rules (Ctrl-C again to exit now)");
                interrupted.store(true, Ordering::SeqCst);
                let _ = stop_tx.send(true);
                cleanup::run_all();
                if tokio::signal::ctrl_c().await.is_ok() {
                    cleanup::run_all();
                    std::process::exit(130);
                }
            }
        })
    };

    let recorder = Recorder::new();
    let progress = Progress::new();
    let online = (!overrides.no_online_check).then(|| {
        OnlineChecker::start(
            recorder.clone(),
            overrides.stop_on_anomaly.then(|| stop_tx.clone()),
        )
    });
    let mut ctx = Ctx {
        workload: &workload,
        overrides,
        seed,
        run_dir: &run_dir,
        recorder: recorder.clone(),
        progress: progress.clone(),
        stop: stop_rx,
        interrupted: interrupted.clone(),
        cluster: None,
        nemesis_plan: Some(nemesis_plan),
        nemesis: None,
        applied: Vec::new(),
        errors: Vec::new(),
        workload_start_ns: 0,
        workload_s: 0.0,
    };
    let driven = drive(&mut ctx).await;
    // Before the full check, which then has the cores to itself.
    let online_outcome = match online {
        Some(online) => online.finish().await,
        None => OnlineOutcome::default(),
    };

    // Always: stop what we started (an etcd cluster on the hosts of --cluster is this run's
    // own), then save the evidence.
    let cluster = ctx.cluster.take();
    let owned = overrides.cluster.is_none() || workload.db == DbKind::Etcd;
    let stopped = stop_cluster(cluster.clone(), owned, run_dir.join("cluster")).await;
    if let Err(e) = &stopped {
        ctx.errors.push(format!("stopping the cluster: {e}"));
    }
    watcher.abort();
    let events = recorder.events();
    results::write_histories(&run_dir, &events)
        .with_context(|| format!("writing the history into {}", run_dir.display()))?;
    if !events.is_empty() {
        let _ = results::update_latest(&root, &run_dir);
    }
    if interrupted.load(Ordering::SeqCst) {
        bail!(
            "interrupted: the nodes were stopped; the partial history is in {}",
            run_dir.display()
        );
    }
    if let Err(e) = driven {
        bail!("{e:#} (run folder: {})", run_dir.display());
    }

    // Check.
    progress.set_phase("checking");
    if !overrides.quiet && !overrides.silent {
        eprintln!("checking {} history events...", events.len());
    }
    let report = check(&events, workload.check_timeout).await?;
    let report = with_online(report, &online_outcome, &mut ctx.errors);
    let online = online_summary(&online_outcome, overrides, ctx.workload_start_ns);
    let mut summary = summarize(
        SummaryInput {
            workload: &workload,
            seed,
            started_at,
            run_dir: &run_dir,
            cluster: match (&overrides.cluster, overrides.hosts, workload.db) {
                (Some(p), _, DbKind::Etcd) => format!("etcd (the hosts of {})", p.display()),
                (Some(p), _, _) => p.display().to_string(),
                (None, hosts, DbKind::Etcd) => {
                    let place = match hosts {
                        HostsMode::Local => "local",
                        HostsMode::Netns => "netns",
                    };
                    etcd_version
                        .as_deref()
                        .map_or(format!("etcd ({place})"), |v| format!("etcd {v} ({place})"))
                }
                (None, HostsMode::Local, DbKind::Raftlab) => "local".to_string(),
                (None, HostsMode::Netns, DbKind::Raftlab) => "netns".to_string(),
            },
            workload_start_ns: ctx.workload_start_ns,
            workload_s: ctx.workload_s,
            applied: std::mem::take(&mut ctx.applied),
            nemesis_report: ctx
                .nemesis
                .as_ref()
                .map_or(serde_json::Value::Null, NemesisReport::to_json),
            errors: std::mem::take(&mut ctx.errors),
            online,
        },
        &events,
        &report,
    );
    let mut verdict = report.valid;
    if verdict == Verdict::Valid && summary.counts.get("all").is_none_or(|c| c.ok == 0) {
        // Nothing succeeded: the run tested nothing, whatever the checker says.
        verdict = Verdict::Unknown;
        summary.verdict = results::verdict_name(verdict).into();
        summary.valid = verdict;
        summary
            .errors
            .push("no operation succeeded: the run tested nothing (verdict unknown)".into());
    }
    results::write_summary(&run_dir, &summary)
        .with_context(|| format!("writing results.json into {}", run_dir.display()))?;
    write_report(&run_dir, &summary, &report, &events)
        .with_context(|| format!("writing report.html into {}", run_dir.display()))?;
    results::update_latest(&root, &run_dir)
        .with_context(|| format!("updating {}", root.join("latest").display()))?;

    if verdict == Verdict::Valid && stopped.is_ok() && !overrides.keep_data {
        if let Some(cluster) = cluster {
            tokio::task::spawn_blocking(move || {
                cluster
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .drop_data()
            })
            .await
            .context("removing the nodes' data")?;
        }
    }
    if !overrides.silent {
        print_verdict(&summary, &report, &run_dir);
    }
    Ok(RunOutcome {
        verdict,
        run_dir,
        summary,
    })
}

/// What the phases share.
struct Ctx<'a> {
    workload: &'a Workload,
    overrides: &'a Overrides,
    seed: u64,
    run_dir: &'a Path,
    recorder: Recorder,
    progress: Arc<Progress>,
    /// Set by Ctrl-C or (`--stop-on-anomaly`) by the online check's first anomaly.
    stop: watch::Receiver<bool>,
    /// Ctrl-C: the run ends with an error.
    interrupted: Arc<AtomicBool>,
    cluster: Option<Arc<Mutex<RunCluster>>>,
    nemesis_plan: Option<(Vec<NemesisKind>, Schedule)>,
    nemesis: Option<NemesisReport>,
    /// Kind of every nemesis action applied.
    applied: Vec<String>,
    errors: Vec<String>,
    workload_start_ns: u64,
    workload_s: f64,
}

/// The nemesis kinds and the seeded schedule: a bad nemesis setting (too few nodes for
/// faults, bad timing) is an error before anything starts.
fn plan_nemesis(
    w: &Workload,
    overrides: &Overrides,
    seed: u64,
) -> anyhow::Result<(Vec<NemesisKind>, Schedule)> {
    let kinds = w
        .nemesis
        .iter()
        .map(|k| k.parse::<NemesisKind>())
        .collect::<Result<Vec<_>, _>>()?;
    let node_ids: Vec<NodeId> = match &overrides.cluster {
        Some(file) => ClusterConfig::load(file)
            .map_err(|e| anyhow!("--cluster: {e}"))?
            .ids()
            .collect(),
        None => (1..=w.nodes as NodeId).collect(),
    };
    let schedule = Schedule::with_options(
        seed,
        &kinds,
        &node_ids,
        ScheduleOptions {
            interval: w.nemesis_interval,
            duration: w.time_limit,
            fault_min: w.nemesis_duration,
            fault_max: w.nemesis_duration,
        },
    )?;
    info!(faults = schedule.faults.len(), "nemesis schedule ready");
    Ok((kinds, schedule))
}

/// Checks that cannot wait until the cluster runs. Returns the version of the `etcd` on this
/// machine when it is the system under test (read once, named in the results).
fn preflight(workload: &Workload, overrides: &Overrides) -> anyhow::Result<Option<String>> {
    if workload.db == DbKind::Etcd {
        return preflight_etcd(workload, overrides);
    }
    if let Some(bug) = &workload.bug {
        bug.parse::<model::bugs::Bug>()
            .map_err(|e| anyhow!("--bug: {e}"))?;
        if overrides.cluster.is_some() {
            bail!("--bug cannot be used with --cluster: the nodes already run; start them with the bug instead (raft-lab cluster up ... / raft-node run --bug NAME)");
        }
    }
    if let Some(path) = &overrides.cluster {
        if !path.is_file() {
            bail!("--cluster: {}: no such file", path.display());
        }
        if overrides.hosts != HostsMode::Local {
            bail!("--hosts makes a fresh cluster; it cannot be combined with --cluster");
        }
    }
    if overrides.hosts == HostsMode::Netns {
        crate::net::netns::check_available().map_err(|e| anyhow!("--hosts netns: {e}"))?;
    }
    let local = overrides.cluster.is_none() && overrides.hosts == HostsMode::Local;
    if local
        && workload
            .nemesis
            .iter()
            .any(|k| crate::lab::workload::OWN_INTERFACE_KINDS.contains(&k.as_str()))
    {
        bail!(
            "the latency nemesis needs nodes with network interfaces of \
             their own: add --hosts netns, or use a remote --cluster"
        );
    }
    if local {
        check_nft(workload)?;
    }
    Ok(None)
}

/// Partitions asked for on this machine: make (and drop) a table now, so that without nft or
/// root this is said before anything starts. The run makes its own table once the cluster
/// is up.
fn check_nft(workload: &Workload) -> anyhow::Result<()> {
    if workload.wants_partitions() {
        let asked: Vec<&str> = workload
            .nemesis
            .iter()
            .map(String::as_str)
            .filter(|k| crate::lab::workload::needs_nft(k))
            .collect();
        if let Err(e) = crate::net::nft::Nft::new() {
            bail!(
                "the workload asks for partition nemeses ({}) but they need nftables and root: \
                 {e}; run as root with nft installed, or choose --nemesis kill,pause",
                asked.join(",")
            );
        }
    }
    Ok(())
}

/// What `--db etcd` cannot combine with, said before anything starts; the local etcd's
/// version (none for members on the hosts of a `--cluster` file).
fn preflight_etcd(workload: &Workload, overrides: &Overrides) -> anyhow::Result<Option<String>> {
    if workload.bug.is_some() {
        bail!("--bug names raftlab's catalogue bugs; it cannot be used with --db etcd");
    }
    if let Some(file) = &overrides.cluster {
        return preflight_etcd_hosts(workload, overrides, file).map(|()| None);
    }
    let netns = overrides.hosts == HostsMode::Netns;
    if netns {
        crate::net::netns::check_available().map_err(|e| anyhow!("--hosts netns: {e}"))?;
    }
    check_etcd_ops(workload)?;
    let binary =
        etcd_binary(overrides.etcd_bin.as_deref()).map_err(|e| anyhow!("--db etcd: {e}"))?;
    let version = check_version(&binary).map_err(|e| anyhow!("--db etcd: {e}"))?;
    let groups = etcd::groups_possible();
    for name in &workload.nemesis {
        let kind: NemesisKind = name.parse()?;
        etcd::supports(kind.needs(), netns, groups)
            .map_err(|reason| NemesisError::Unsupported { kind, reason })?;
    }
    match overrides.etcd_port {
        // Fresh namespaces have every port free.
        Some(port) if !netns => {
            etcd::check_ports(workload.nodes, port).map_err(|e| anyhow!("--etcd-port: {e}"))?
        }
        _ => {}
    }
    if !netns {
        check_nft(workload)?;
    }
    Ok(Some(version))
}

fn check_etcd_ops(workload: &Workload) -> anyhow::Result<()> {
    if workload.mix.append > 0 {
        bail!("etcd has no append operation: set `append = 0` in the workload's ops");
    }
    Ok(())
}

/// What `--db etcd --cluster FILE` needs, said before anything starts: `[remote]` in the
/// file, members at IPv4 addresses with free peer ports, etcd 3.4+ on every host (asked
/// through the template, which also shows the hosts answer), nemesis kinds etcd can take.
fn preflight_etcd_hosts(
    workload: &Workload,
    overrides: &Overrides,
    file: &Path,
) -> anyhow::Result<()> {
    if overrides.hosts != HostsMode::Local {
        bail!("--hosts makes a fresh cluster here; with --cluster the etcd members run on the file's hosts");
    }
    if overrides.etcd_bin.is_some() || overrides.etcd_port.is_some() {
        bail!("--etcd-bin and --etcd-port are for members on this machine; with --cluster, name etcd in remote.etcd and the ports in each member's addr");
    }
    check_etcd_ops(workload)?;
    let config = ClusterConfig::load(file).map_err(|e| anyhow!("--cluster: {e}"))?;
    etcd::member_addrs(&config).map_err(|e| anyhow!("--cluster {}: {e}", file.display()))?;
    for name in &workload.nemesis {
        let kind: NemesisKind = name.parse()?;
        etcd::supports(kind.needs(), true, false)
            .map_err(|reason| NemesisError::Unsupported { kind, reason })?;
    }
    let hosts = etcd::EtcdHosts::open(config, false).map_err(|e| anyhow!("--cluster: {e}"))?;
    let versions = hosts
        .check_versions()
        .map_err(|e| anyhow!("--db etcd --cluster {}: {e}", file.display()))?;
    info!(?versions, "etcd on every member's host");
    Ok(())
}

/// Cluster up, workload + nemesis, heal, recovery, final reads. The cluster is left in
/// `ctx.cluster` for the caller to stop.
async fn drive(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let w = ctx.workload;
    let (kinds, schedule) = ctx
        .nemesis_plan
        .take()
        .ok_or_else(|| anyhow!("no nemesis schedule (a lab bug)"))?;

    ctx.progress.set_phase("starting the cluster");
    let cluster = match &ctx.overrides.cluster {
        Some(file) if w.db == DbKind::Etcd => {
            let (dir, file) = (ctx.run_dir.join("cluster"), file.clone());
            tokio::task::spawn_blocking(move || RunCluster::create_etcd_remote(&dir, &file))
                .await
                .context("starting the etcd cluster on its hosts")?
                .context("starting the etcd cluster on its hosts")?
        }
        Some(file) => {
            let file = file.clone();
            tokio::task::spawn_blocking(move || RunCluster::open(&file))
                .await
                .context("opening the cluster")?
                .map_err(|e| anyhow!("--cluster: {e:#}"))?
        }
        None if w.db == DbKind::Etcd => {
            let etcd = etcd_binary(ctx.overrides.etcd_bin.as_deref())?;
            let mut opts = EtcdOptions::new(w.nodes, etcd);
            if let Some(port) = ctx.overrides.etcd_port {
                opts.base_port = port;
                opts.fixed_port = true;
            }
            opts.netns = ctx.overrides.hosts == HostsMode::Netns;
            let dir = ctx.run_dir.join("cluster");
            tokio::task::spawn_blocking(move || RunCluster::create_etcd(&dir, &opts))
                .await
                .context("starting the etcd cluster")?
                .context("starting the etcd cluster")?
        }
        None => {
            // Lazy disks only when a fault needs them: FUSE is then required.
            let lazy_disks = if kinds.iter().any(|k| k.needs().lazy_disks) {
                Some(LazyDiskOptions {
                    binary: raft_lazyfs_binary()?,
                    seed: ctx.seed,
                })
            } else {
                None
            };
            let opts = ClusterOptions {
                nodes: w.nodes,
                bugs: w.bug.iter().cloned().collect(),
                lazy_disks,
                ..ClusterOptions::default()
            };
            let dir = ctx.run_dir.join("cluster");
            let hosts = ctx.overrides.hosts;
            tokio::task::spawn_blocking(move || match hosts {
                HostsMode::Local => RunCluster::create_local(&dir, &opts),
                HostsMode::Netns => RunCluster::create_netns(&dir, &opts),
            })
            .await
            .context("starting the cluster")?
            .context("starting the cluster")?
        }
    };
    let access = cluster.access().clone();
    // Hand the cluster to `ctx` (which always stops it) before any `?`.
    let kv = clients(&access, w);
    let mut stop = ctx.stop.clone();
    let leader = match &kv {
        Ok((_, connector)) => tokio::select! {
            r = cluster.leader(connector, LEADER_TIMEOUT) => r.map_err(anyhow::Error::from),
            _ = stop.wait_for(|s| *s) => Err(anyhow!("interrupted")),
        },
        Err(_) => Ok(0),
    };
    let network = nemesis::preflight(&kinds, &cluster);
    let cluster = Arc::new(Mutex::new(cluster));
    ctx.cluster = Some(cluster.clone());
    let (kv, connector) = kv?;
    let leader = leader?;
    let network = network?;
    info!(leader, "cluster ready");

    let view = ProgressView::start(ctx.progress.clone(), w.time_limit, ctx.overrides.quiet);
    ctx.progress.set_phase("workload");
    let prefix = if ctx.overrides.cluster.is_some() && w.db == DbKind::Raftlab {
        // A reused cluster keeps earlier runs' keys: this run's keys must be its own.
        format!("r{}-", crate::kv::fresh_client_id() % 1_000_000_007)
    } else {
        String::new()
    };
    let generator = Generator::new(
        w,
        ctx.seed,
        prefix,
        kv.clone(),
        ctx.recorder.clone(),
        ctx.progress.clone(),
    );
    let control: Arc<Mutex<dyn crate::db::Db>> = cluster;
    let nemesis_ctx = NemesisContext::new(control, ctx.recorder.clone())
        .with_client(connector.clone())
        .with_network(network);
    let mut state = nemesis_ctx.state();
    let progress = ctx.progress.clone();
    let mirror = tokio::spawn(async move {
        while state.changed().await.is_ok() {
            let now = state.borrow_and_update().clone();
            progress.set_nemesis(now);
        }
    });

    // The nemesis and the generator run together until the time limit; the nemesis heals
    // everything before it returns.
    let started = Instant::now();
    ctx.workload_start_ns = ctx.recorder.now();
    let until = started + w.time_limit;
    let (slots, nemesis_report) = tokio::join!(
        generator.run(until, ctx.stop.clone()),
        nemesis::run_nemesis(schedule, nemesis_ctx, ctx.stop.clone())
    );
    ctx.workload_s = started.elapsed().as_secs_f64();
    mirror.abort();
    ctx.progress.set_nemesis("healed");
    for (kind, n) in &nemesis_report.applied {
        ctx.applied
            .extend(std::iter::repeat_n(kind.name().to_string(), *n));
    }
    for e in &nemesis_report.errors {
        ctx.errors.push(format!("nemesis: {e}"));
    }
    if !nemesis_report.healed {
        ctx.errors
            .push("nemesis: not every fault could be healed (see the errors above)".into());
    }
    ctx.nemesis = Some(nemesis_report);

    if !w.recovery_time.is_zero() && !*stop.borrow() {
        ctx.progress.set_phase("recovery");
        tokio::select! {
            _ = tokio::time::sleep(w.recovery_time) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    if w.final_reads && !*stop.borrow() {
        ctx.progress.set_phase("final reads");
        generator.final_reads(slots, ctx.stop.clone()).await;
    }
    view.finish();
    if let Clients::Raftlab(kv) = &kv {
        kv.close().await;
    }
    if ctx.interrupted.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// The run's clients of the system under test, and the raftlab connector the nemesis and
/// `Db::leader` take (made from the same certificates; an etcd cluster does not use it).
fn clients(access: &Access, w: &Workload) -> anyhow::Result<(Clients, Arc<ClientConnector>)> {
    match access {
        Access::Raftlab(config) => {
            let kv = KvCluster::connect(config)?.with_timing(w.timing);
            let connector = kv.connector().clone();
            Ok((Clients::Raftlab(kv), connector))
        }
        Access::Etcd { members, certs } => {
            let kv = EtcdKv::new(members.clone(), certs)?.with_reads(w.read_consistency);
            let connector = ClientConnector::new(certs)
                .map_err(|e| anyhow!("the client certificate in {}: {e}", certs.display()))?;
            Ok((Clients::Etcd(kv), Arc::new(connector)))
        }
    }
}

/// Stops the nodes we started (`owned`; an opened `--cluster` is left running), copies a
/// remote cluster's node logs into `logs_dir`, tears namespaces down.
async fn stop_cluster(
    cluster: Option<Arc<Mutex<RunCluster>>>,
    owned: bool,
    logs_dir: PathBuf,
) -> anyhow::Result<()> {
    let Some(cluster) = cluster else {
        return Ok(());
    };
    tokio::task::spawn_blocking(move || {
        let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
        c.teardown(owned, &logs_dir)
    })
    .await
    .context("stopping the cluster")??;
    Ok(())
}

/// Checks the history with the checker library (on a blocking thread: it uses every core).
async fn check(
    events: &[crate::history::Record],
    timeout: Option<Duration>,
) -> anyhow::Result<checker::Report> {
    // The text, not a copy of the records, goes to the checker's thread.
    let text = history_text(events);
    tokio::task::spawn_blocking(move || check_text(&text, None, timeout))
        .await
        .context("the checker thread failed")?
}

/// The run's report: the full check's, except when the online check found an anomaly the
/// full check did not. An anomaly of a prefix is one of the whole history (see
/// [`crate::lab::online`]), so it stands when the full check gave up; a full check calling
/// valid what a prefix showed invalid would be a checker fault, said in the errors.
fn with_online(
    report: checker::Report,
    online: &OnlineOutcome,
    errors: &mut Vec<String>,
) -> checker::Report {
    let Some(found) = &online.found else {
        return report;
    };
    match report.valid {
        Verdict::Invalid => report,
        Verdict::Unknown => {
            errors.push(
                "the full check gave up; the verdict is the anomaly the online check found \
                 in a prefix of the history"
                    .into(),
            );
            found.report.clone()
        }
        Verdict::Valid => {
            errors.push(
                "the online check found an anomaly in a prefix of the history that the full \
                 check did not find: the two checks disagree (a checker fault); the verdict \
                 is the online check's"
                    .into(),
            );
            found.report.clone()
        }
    }
}

/// `results.json`'s `online`: when (seconds into the workload) the first anomaly was found.
fn online_summary(
    outcome: &OnlineOutcome,
    overrides: &Overrides,
    workload_start_ns: u64,
) -> OnlineSummary {
    let found = outcome.found.as_ref();
    OnlineSummary {
        enabled: !overrides.no_online_check,
        stop_on_anomaly: overrides.stop_on_anomaly,
        first_anomaly_s: found
            .map(|f| results::round3(f.at_ns.saturating_sub(workload_start_ns) as f64 / 1e9)),
        first_anomaly: found
            .and_then(|f| f.report.anomalies.first())
            .map(|a| a.message.clone()),
        stopped_early: found.is_some() && overrides.stop_on_anomaly,
        rounds: outcome.rounds,
        key_checks: outcome.key_checks,
        check_s: results::round3(outcome.check_s),
    }
}

/// `report.html` and `plots/`: the run's page (summary, timeline, plots, faults, anomalies).
fn write_report(
    dir: &Path,
    summary: &RunSummary,
    report: &checker::Report,
    events: &[crate::history::Record],
) -> std::io::Result<()> {
    crate::report::write(dir, summary, report, events)
}

/// The verdict line, the run folder, and any coverage warnings.
fn print_verdict(summary: &RunSummary, report: &checker::Report, dir: &Path) {
    let all = summary.counts.get("all").copied().unwrap_or_default();
    let applied: Vec<String> = summary
        .nemesis
        .applied
        .iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect();
    let head = match summary.valid {
        Verdict::Valid => "VALID: linearizable".to_string(),
        Verdict::Invalid => format!(
            "INVALID: not linearizable: {}",
            report
                .anomalies
                .first()
                .map_or("see the report", |a| a.message.as_str())
        ),
        Verdict::Unknown => "UNKNOWN: the check gave up or the run tested nothing".to_string(),
    };
    println!("{head}");
    println!(
        "{}: {} ops (ok {}, fail {}, info {}) on {} keys in {:.1} s, seed {}{}; faults: {}",
        summary.workload,
        all.total(),
        all.ok,
        all.fail,
        all.info,
        report.keys,
        summary.workload_s,
        summary.seed,
        summary
            .bug
            .as_ref()
            .map_or(String::new(), |b| format!(", bug {b}")),
        if applied.is_empty() {
            "none".to_string()
        } else {
            applied.join(", ")
        }
    );
    if let Some(at) = summary.online.first_anomaly_s {
        println!(
            "first anomaly found while running, {at:.1} s into the workload{}",
            if summary.online.stopped_early {
                "; the run stopped there (--stop-on-anomaly)"
            } else {
                ""
            }
        );
    }
    for w in &summary.nemesis.warnings {
        eprintln!("warning: {w}");
    }
    for e in &summary.errors {
        eprintln!("warning: {e}");
    }
    println!("results: {}", dir.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full check's verdict stands, except that an anomaly found online outlives a full
    /// check that gave up (or disagreed), said in the errors.
    #[test]
    fn an_online_anomaly_stands_when_the_full_check_gives_up() {
        use crate::history::{EventType, Recorder, Who};
        use serde_json::json;
        let r = Recorder::new();
        let op = |p, kind, f: &str, value| {
            r.record(Who::Process(p), kind, f, json!("k0"), value);
        };
        op(0, EventType::Invoke, "write", json!(1));
        op(0, EventType::Ok, "write", json!(1));
        let check = |events: &[crate::history::Record]| {
            check_text(&history_text(events), None, None).unwrap()
        };
        let valid = check(&r.events());
        op(1, EventType::Invoke, "read", json!(null));
        op(1, EventType::Ok, "read", json!(2));
        let invalid = check(&r.events());
        assert_eq!(
            (valid.valid, invalid.valid),
            (Verdict::Valid, Verdict::Invalid)
        );
        let online = OnlineOutcome {
            found: Some(crate::lab::online::Found {
                at_ns: 1,
                report: invalid.clone(),
            }),
            ..OnlineOutcome::default()
        };
        let mut gave_up = valid.clone();
        gave_up.valid = Verdict::Unknown;
        for (full, errors) in [(invalid, 0), (gave_up, 1), (valid.clone(), 1)] {
            let mut said = Vec::new();
            let report = with_online(full, &online, &mut said);
            assert_eq!(report.valid, Verdict::Invalid);
            assert_eq!(said.len(), errors, "{said:?}");
        }
        let mut said = Vec::new();
        let report = with_online(valid, &OnlineOutcome::default(), &mut said);
        assert_eq!((report.valid, said.len()), (Verdict::Valid, 0));
    }

    #[test]
    fn the_run_future_is_send() {
        fn send<T: Send>(_: &T) {}
        let o = Overrides::default();
        let f = run(Path::new("x.toml"), &o);
        send(&f);
    }

    /// Bad settings are refused before a run folder or a process exists.
    #[tokio::test]
    async fn bad_settings_fail_before_anything_starts() {
        let root = std::env::temp_dir().join(format!("raftlab-run-pre-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let file = root.join("w.toml");
        std::fs::write(&file, "nodes = 3\ntime_limit = 1\nnemesis = [\"kill\"]\n").unwrap();
        let results = root.join("results");
        let base = Overrides {
            results: Some(results.clone()),
            quiet: true,
            ..Overrides::default()
        };
        let cases: Vec<(Overrides, &str)> = vec![
            (
                Overrides {
                    bug: Some("eat-data".into()),
                    ..base.clone()
                },
                "--bug",
            ),
            (
                Overrides {
                    nodes: Some(2),
                    ..base.clone()
                },
                "at least 3 nodes",
            ),
            (
                Overrides {
                    cluster: Some(root.join("nope.toml")),
                    ..base.clone()
                },
                "--cluster",
            ),
            (
                Overrides {
                    nemesis: Some(vec!["flood".into()]),
                    ..base.clone()
                },
                "--nemesis",
            ),
            (
                Overrides {
                    nemesis: Some(vec!["latency".into()]),
                    ..base.clone()
                },
                "--hosts netns",
            ),
        ];
        for (o, needle) in cases {
            let err = run(&file, &o).await.unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let err = run(&root.join("missing.toml"), &base).await.unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
        assert!(!results.exists(), "no run folder for a refused run");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// `--db etcd` refuses, in one line and before a run folder or a process exists, a missing
    /// binary, an etcd older than 3.4 (a fake `etcd` script), a fixed port that is taken, and
    /// every nemesis kind its members on loopback cannot take, naming the kind and the reason.
    #[tokio::test]
    async fn bad_etcd_settings_fail_before_anything_starts() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = std::env::temp_dir().join(format!("raftlab-run-etcd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let fake = |name: &str, says: &str| {
            let path = root.join(name);
            std::fs::write(&path, format!("#!/bin/sh\necho '{says}'\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let old = fake("etcd-old", "etcd Version: 3.3.25");
        let mute = fake("etcd-mute", "hello");
        let good = fake("etcd-good", "etcd Version: 3.4.23");
        let file = root.join("w.toml");
        std::fs::write(
            &file,
            "db = \"etcd\"\nnodes = 3\ntime_limit = 1\nnemesis = [\"kill\"]\n",
        )
        .unwrap();
        let results = root.join("results");
        let base = Overrides {
            results: Some(results.clone()),
            quiet: true,
            etcd_bin: Some(good.clone()),
            ..Overrides::default()
        };
        let taken = std::net::TcpListener::bind((crate::db::local::local_node_ip(2), 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let cases: Vec<(Overrides, String)> = vec![
            (
                Overrides {
                    etcd_bin: Some(root.join("no-etcd")),
                    ..base.clone()
                },
                "etcd binary was not found".into(),
            ),
            (
                Overrides {
                    etcd_bin: Some(old),
                    ..base.clone()
                },
                "is etcd 3.3.25; the lab needs etcd 3.4 or later".into(),
            ),
            (
                Overrides {
                    etcd_bin: Some(mute),
                    ..base.clone()
                },
                "cannot read the version".into(),
            ),
            (
                Overrides {
                    etcd_port: Some(port),
                    ..base.clone()
                },
                format!("127.0.0.12:{port} is in use"),
            ),
        ];
        for (o, needle) in cases {
            let err = run(&file, &o).await.unwrap_err().to_string();
            assert!(err.contains(&needle), "{needle}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        assert!(!results.exists(), "no run folder for a refused run");

        // Every kind: those etcd on loopback cannot take are refused with the kind and why.
        let root_user = etcd::groups_possible();
        for kind in NemesisKind::ALL
            .into_iter()
            .chain(NemesisKind::OWN_INTERFACES)
        {
            let o = Overrides {
                nemesis: Some(vec![kind.name().into()]),
                ..base.clone()
            };
            // Refused once the placement (loopback here) is known.
            let result = Workload::load(&file, &o)
                .map_err(anyhow::Error::from)
                .and_then(|workload| preflight(&workload, &o).map(drop));
            let refused = match kind {
                NemesisKind::Latency => Some("network interfaces of their own"),
                k if k.needs_network() && !root_user => Some("group id"),
                _ => None,
            };
            match (refused, result) {
                (None, Ok(())) => {}
                (Some(reason), Err(e)) => {
                    let e = e.to_string();
                    assert!(e.contains(&format!("nemesis {kind} ")), "{e}");
                    assert!(e.contains(reason), "{kind}: {e}");
                }
                (None, Err(e)) if kind.needs_network() => {
                    // Root without nft: said as such.
                    assert!(e.to_string().contains("nftables"), "{kind}: {e}")
                }
                (refused, result) => panic!("{kind}: expected {refused:?}, got {result:?}"),
            }
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
