//! Failover benchmark: how long the lab's clients go without an `ok` after the leader is
//! SIGKILLed, and after it is cut off from the other nodes (`isolate-leader`: nftables drops
//! between the nodes, clients still reach every node), on a local cluster.
//!
//! It drives the lab's own layers: `db::local` starts, kills and restarts the nodes,
//! `net::nft` cuts and heals the links, the partition is `nemesis::partition::isolate`, and
//! the clients are `kv` clients bound to a home node each, as `raft-lab run` makes them
//! (`route = "node"`), writing their own key at the lab's default pace.
//!
//! Per trial it reports the time from the fault taking effect to the first `ok` of any client,
//! and to the moment every client has had one (the longest stall of a client); p50, p99 and
//! max over the trials. Needs the release `raft-node` beside the bench (or `RAFT_NODE_BIN`)
//! and, for the partition, root with nftables:
//!
//! ```sh
//! cargo build --release -p node && cargo bench -p client --bench failover
//! ```
//!
//! Environment: `FAILOVER_TRIALS` (20 per fault), `FAILOVER_NODES` (5), `FAILOVER_CLIENTS`
//! (2 per node), `FAILOVER_SEED` (1; it places each fault at a random moment of the clients'
//! rhythm).

use anyhow::{bail, Context, Result};
use client::db::local::{ClusterOptions, LocalCluster};
use client::db::Db;
use client::kv::{KvCluster, OpResult};
use client::nemesis::{partition, NemesisKind};
use client::net::Network;
use client::report::stats::quantile;
use model::core::NodeId;
use model::kv::{Operation, Value};
use model::sim::rng::Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the lab's workloads use: `op_timeout = 5`.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two operations of one client: 10 clients at the lab's `rate = 100`.
const THINK: Duration = Duration::from_millis(100);
/// An `ok` this soon after the fault is an answer the old leader sent before it: not failover.
const IN_FLIGHT: Duration = Duration::from_millis(20);
/// A trial without every client back by then counts as this long (and is reported).
const GIVE_UP: Duration = Duration::from_secs(20);

/// The clients' view of one trial: when the fault took effect, and each client's first `ok`
/// after it.
struct Board {
    fault: Option<Instant>,
    first_ok: Vec<Option<Instant>>,
}

#[derive(Clone, Copy)]
enum Fault {
    Kill,
    IsolateLeader,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill leader (SIGKILL)",
            Fault::IsolateLeader => "isolate-leader (nftables)",
        }
    }
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v}: not a number")),
        Err(_) => Ok(default),
    }
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    if std::env::args().skip(1).any(|a| a != "--bench") {
        bail!("no arguments (settings come from FAILOVER_* environment variables)");
    }
    let trials = env_usize("FAILOVER_TRIALS", 20)?;
    let nodes = env_usize("FAILOVER_NODES", 5)?;
    let clients = env_usize("FAILOVER_CLIENTS", 2 * nodes)?;
    let seed = env_usize("FAILOVER_SEED", 1)? as u64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(bench(trials, nodes, clients, seed))
}

async fn bench(trials: usize, nodes: usize, clients: usize, seed: u64) -> Result<()> {
    // Under target/, where no other program's clean-up of the temporary directory reaches.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("failover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = ClusterOptions {
        nodes,
        ..ClusterOptions::default()
    };
    println!(
        "failover: seed {seed}, {nodes} nodes (tick {} ms, election timeout 11-20 ticks), \
         {clients} clients writing every {} ms, op timeout {} s, {trials} trials per fault",
        opts.tick_ms,
        THINK.as_millis(),
        OP_TIMEOUT.as_secs()
    );
    let mut db = LocalCluster::create(&dir, &opts).context("starting the cluster")?;
    let kv = KvCluster::connect(db.config()).context("connecting")?;
    let t = kv.timing();
    println!(
        "client timing (defaults): connect timeout {:?}, attempt timeout {:?}, node back-off {:?}",
        t.connect_timeout, t.attempt_timeout, t.node_backoff
    );
    let connector = kv.connector().clone();
    db.leader(&connector, Duration::from_secs(20))
        .await
        .context("waiting for the first leader")?;

    let board = Arc::new(Mutex::new(Board {
        fault: None,
        first_ok: vec![None; clients],
    }));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    let ids: Vec<NodeId> = kv.nodes().iter().map(|n| n.id).collect();
    for index in 0..clients {
        let home = ids.get(index % ids.len().max(1)).copied();
        tasks.spawn(drive(kv.clone(), home, index, board.clone(), stop.clone()));
    }
    // Let every client connect and settle.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut rng = Rng::new(seed);
    let mut network: Option<Box<dyn Network>> = None;
    let mut results = Vec::new();
    for fault in [Fault::Kill, Fault::IsolateLeader] {
        if let Fault::IsolateLeader = fault {
            match db.network() {
                Ok(n) => network = Some(n),
                Err(e) => {
                    println!("{}: skipped: {e}", fault.name());
                    continue;
                }
            }
        }
        let mut any = Vec::new();
        let mut all = Vec::new();
        for trial in 0..trials {
            let leader = db
                .leader(&connector, Duration::from_secs(20))
                .await
                .context("finding the leader")?;
            // A random phase of the clients' rhythm.
            tokio::time::sleep(Duration::from_millis(rng.range(100, 600))).await;
            {
                let mut b = lock(&board);
                b.first_ok.iter_mut().for_each(|f| *f = None);
            }
            match fault {
                Fault::Kill => tokio::task::block_in_place(|| db.kill(leader))?,
                Fault::IsolateLeader => {
                    let endpoints: BTreeMap<NodeId, SocketAddr> = db
                        .nodes()
                        .into_iter()
                        .filter_map(|n| Some((n.id, n.socket?)))
                        .collect();
                    let grouping = partition::isolate(NemesisKind::IsolateLeader, leader, &ids);
                    if let Some(net) = network.as_mut() {
                        net.cut(&grouping.drops(&endpoints), None)
                            .map_err(anyhow::Error::msg)
                            .context("cutting the leader off")?;
                    }
                }
            }
            let at = Instant::now();
            lock(&board).fault = Some(at);
            let (first, every) = wait_for_oks(&board, at).await;
            match fault {
                Fault::Kill => tokio::task::block_in_place(|| db.start(leader))?,
                Fault::IsolateLeader => {
                    if let Some(net) = network.as_mut() {
                        net.heal().map_err(anyhow::Error::msg).context("healing")?;
                    }
                }
            }
            lock(&board).fault = None;
            println!(
                "  {} trial {:>2}: leader {leader}, first ok {:.3} s, every client {:.3} s",
                fault.name(),
                trial + 1,
                first.as_secs_f64(),
                every.as_secs_f64()
            );
            any.push(first);
            all.push(every);
            db.leader(&connector, Duration::from_secs(20))
                .await
                .context("waiting for a leader after healing")?;
            // Let a restarted node catch up before the next fault.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        results.push((fault, any, all));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    drop(network);
    kv.close().await;
    tokio::task::block_in_place(|| db.stop_all()).context("stopping the cluster")?;

    println!("\ntime to the first ok after the fault (s), {trials} trials each:");
    println!("| fault | measure | p50 | p99 | max |");
    println!("|---|---|---:|---:|---:|");
    for (fault, any, all) in results {
        for (what, mut v) in [("first ok, any client", any), ("every client ok", all)] {
            v.sort();
            let q = |q| quantile(&v, q).map_or(f64::NAN, |d: Duration| d.as_secs_f64());
            println!(
                "| {} | {what} | {:.2} | {:.2} | {:.2} |",
                fault.name(),
                q(0.5),
                q(0.99),
                q(1.0)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn lock(board: &Mutex<Board>) -> std::sync::MutexGuard<'_, Board> {
    board.lock().unwrap_or_else(|p| p.into_inner())
}

/// Polls the board until every client had an `ok` after `at`: (first of any, last of all).
async fn wait_for_oks(board: &Mutex<Board>, at: Instant) -> (Duration, Duration) {
    loop {
        let now = Instant::now();
        {
            let b = lock(board);
            let firsts: Vec<Instant> = b.first_ok.iter().flatten().copied().collect();
            if firsts.len() == b.first_ok.len() || now - at >= GIVE_UP {
                let first = firsts.iter().min().map_or(GIVE_UP, |t| *t - at);
                let every = if firsts.len() == b.first_ok.len() {
                    firsts.iter().max().map_or(GIVE_UP, |t| *t - at)
                } else {
                    GIVE_UP
                };
                return (first, every);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One client process, as the lab's generator runs it: bound to `home`, a fresh client after
/// an `info`.
async fn drive(
    kv: KvCluster,
    home: Option<NodeId>,
    index: usize,
    board: Arc<Mutex<Board>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut client = kv.client_at(home, OP_TIMEOUT);
    let mut n: i64 = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let op = Operation::Write {
            key: format!("failover-{index}"),
            value: Value::Int(n),
        };
        let result = client.execute(op).await;
        let done = Instant::now();
        match result {
            OpResult::Ok(_) => {
                let mut b = lock(&board);
                if let Some(at) = b.fault {
                    if done >= at + IN_FLIGHT && b.first_ok[index].is_none() {
                        b.first_ok[index] = Some(done);
                    }
                }
            }
            OpResult::Info(_) => client = kv.client_at(home, OP_TIMEOUT),
            OpResult::Fail { .. } => {}
        }
        tokio::time::sleep(THINK).await;
    }
}
