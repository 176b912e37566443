//! Load benchmark of a real local 3-node cluster: `cargo bench -p node --bench cluster`.
//!
//! Starts three `raft-node` processes (the bench-profile build, i.e. release with debug
//! info) on loopback with `storage.fsync = true` and mutual TLS over QUIC (always on), then
//! for each operation (write, linearizable read, cas) and each concurrency C runs C client
//! tasks for a fixed time and prints ops/s and latency percentiles.
//!
//! - Each client task is sequential (one request outstanding, like a lab process), has its
//!   own client id (exactly-once session) and its own key `k<client>`: writes write it, reads
//!   read it (after writing it once), cas moves it from its current value to the next, so
//!   every cas succeeds and is checked to. No key is shared: this measures the replication
//!   pipeline, not contention.
//! - Clients talk to the leader directly (a redirect is followed once and remembered);
//!   reads are ReadIndex reads (no log entry), writes and cas go through the log.
//! - Each cell warms up (connections, sessions, the key) for `RAFTLAB_BENCH_WARMUP` seconds,
//!   then measures for `RAFTLAB_BENCH_SECS`; throughput counts operations that complete
//!   inside the window, and their latencies give the percentiles (client-side, including the
//!   QUIC stream per request).
//!
//! Columns besides the latencies: `retries` (redirects and failed attempts inside the
//! window; 0 in a healthy run), `commits/s` (the leader's commit index advance: equals ops/s
//! for writes and cas, 0 for reads), the CPU the leader, the two followers and this load
//! generator used (cores; it shares the machine with the nodes), CPU µs per operation for
//! all four together, and "other load": cores the rest of the machine used meanwhile (a
//! shared machine makes every number move; compare rows only with similar other load). A
//! leadership change during a cell is noted under its row, and the cluster's directory (node
//! logs) is then kept.
//!
//! Environment:
//! - `RAFTLAB_BENCH_SECS` (default 5), `RAFTLAB_BENCH_WARMUP` (default 1)
//! - `RAFTLAB_BENCH_CLIENTS` (default `1,8,32,128`)
//! - `RAFTLAB_BENCH_OPS` (default `write,read,cas`)
//! - `RAFTLAB_BENCH_REPEATS` (default 1): every cell this many times, interleaved; a summary
//!   with the median and the range follows
//! - `RAFTLAB_BENCH_CONNECTORS`: `shared` (default: one `ClientConnector`, so one QUIC
//!   connection to the leader carrying every client's streams), `per-client`, or a number N
//!   of connectors the clients are spread over
//! - `RAFTLAB_BENCH_CLIENT_THREADS` (default 0): worker threads of the load generator's
//!   tokio runtime; 0 for a current-thread runtime
//! - `RAFTLAB_BENCH_FSYNC=0` turns fsync off (to measure its share; never for the table)

#[path = "../tests/support/mod.rs"]
mod support;

use model::kv::{Command, Operation, Outcome, Value};
use node::transport::ClientConnector;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Cluster, Options};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Write,
    Read,
    Cas,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Write => "write",
            Kind::Read => "read",
            Kind::Cas => "cas",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Connectors {
    Shared,
    PerClient,
    Count(usize),
}

struct Settings {
    secs: f64,
    warmup: f64,
    clients: Vec<usize>,
    kinds: Vec<Kind>,
    repeats: usize,
    connectors: Connectors,
    fsync: bool,
    /// Worker threads of this process's tokio runtime (0: a current-thread runtime).
    client_threads: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: cannot parse")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Settings {
        let clients = std::env::var("RAFTLAB_BENCH_CLIENTS")
            .unwrap_or_else(|_| "1,8,32,128".into())
            .split(',')
            .map(|c| c.trim().parse().expect("RAFTLAB_BENCH_CLIENTS: numbers"))
            .collect();
        let kinds = std::env::var("RAFTLAB_BENCH_OPS")
            .unwrap_or_else(|_| "write,read,cas".into())
            .split(',')
            .map(|k| match k.trim() {
                "write" => Kind::Write,
                "read" => Kind::Read,
                "cas" => Kind::Cas,
                other => panic!("RAFTLAB_BENCH_OPS: unknown op {other:?}"),
            })
            .collect();
        let connectors = match std::env::var("RAFTLAB_BENCH_CONNECTORS").as_deref() {
            Err(_) | Ok("shared") => Connectors::Shared,
            Ok("per-client") => Connectors::PerClient,
            Ok(n) => Connectors::Count(n.parse().expect("RAFTLAB_BENCH_CONNECTORS")),
        };
        Settings {
            secs: env_or("RAFTLAB_BENCH_SECS", 5.0),
            warmup: env_or("RAFTLAB_BENCH_WARMUP", 1.0),
            clients,
            kinds,
            repeats: env_or("RAFTLAB_BENCH_REPEATS", 1usize).max(1),
            connectors,
            fsync: env_or("RAFTLAB_BENCH_FSYNC", 1u8) != 0,
            client_threads: env_or("RAFTLAB_BENCH_CLIENT_THREADS", 0),
        }
    }
}

/// What one cell measured.
struct Cell {
    kind: Kind,
    clients: usize,
    ops_per_sec: f64,
    /// Latencies of the operations completed in the window, sorted, in microseconds.
    p50: f64,
    p99: f64,
    p999: f64,
    /// Redirects and retries during the window (should be 0).
    retries: u64,
    /// The slowest operation, ms.
    max: f64,
    /// Anything unusual (a leadership change).
    note: String,
    /// Entries the leader committed per second during the window.
    commits_per_sec: f64,
    /// CPU used during the window, in cores: leader, the followers, this client process.
    cpu: [f64; 3],
    /// CPU used by everything else on the machine during the window, in cores.
    others: f64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// What every client task of a cell shares.
struct Window {
    addrs: Vec<(u64, String)>,
    dir: std::path::PathBuf,
    kind: Kind,
    /// Warm-up ends, measurement begins.
    start: Instant,
    end: Instant,
}

/// One client task: warm up until `start`, then run operations until `end`; returns the
/// latencies (µs) of those completed in `[start, end]` and the retries among them.
async fn client_task(
    connector: Arc<ClientConnector>,
    window: Arc<Window>,
    mut target: u64,
    client: u64,
) -> (Vec<u32>, u64) {
    let Window {
        ref addrs,
        ref dir,
        kind,
        start,
        end,
    } = *window;
    let key = format!("k{client}");
    let session = support::register_via(
        &connector,
        addrs,
        dir,
        node::certs::SHARED_CLIENT_NAMESPACE,
        &mut target,
    )
    .await;
    let mut seq = 0;
    let mut next = |op: Operation| {
        seq += 1;
        Command {
            client: session,
            seq,
            op,
            time_ms: 0,
        }
    };
    // The key holds `value` from here on.
    let mut value = 0i64;
    let (outcome, _) = support::op_via(
        &connector,
        addrs,
        dir,
        next(Operation::Write {
            key: key.clone(),
            value: Value::Int(value),
        }),
        &mut target,
    )
    .await;
    assert_eq!(outcome, Outcome::Written);
    let mut latencies = Vec::new();
    let mut retries = 0;
    loop {
        let op = match kind {
            Kind::Write => {
                value += 1;
                Operation::Write {
                    key: key.clone(),
                    value: Value::Int(value),
                }
            }
            Kind::Read => Operation::Read { key: key.clone() },
            Kind::Cas => Operation::Cas {
                key: key.clone(),
                expected: Some(Value::Int(value)),
                new: Value::Int(value + 1),
            },
        };
        let began = Instant::now();
        let (outcome, failed) =
            support::op_via(&connector, addrs, dir, next(op), &mut target).await;
        let done = Instant::now();
        match kind {
            Kind::Write => assert_eq!(outcome, Outcome::Written),
            Kind::Read => assert_eq!(outcome, Outcome::Value(Some(Value::Int(value)))),
            Kind::Cas => {
                assert_eq!(outcome, Outcome::Written, "cas on the client's own key");
                value += 1;
            }
        }
        if done >= start && done <= end {
            latencies.push(u32::try_from((done - began).as_micros()).unwrap_or(u32::MAX));
            retries += u64::from(failed);
        }
        if done >= end {
            return (latencies, retries);
        }
    }
}

async fn run_cell(
    cluster: &Cluster,
    settings: &Settings,
    kind: Kind,
    clients: usize,
    first_client: u64,
    leader: u64,
) -> Cell {
    let certs = cluster.certs();
    let connectors: Vec<Arc<ClientConnector>> = {
        let n = match settings.connectors {
            Connectors::Shared => 1,
            Connectors::PerClient => clients,
            Connectors::Count(n) => n.clamp(1, clients),
        };
        (0..n)
            .map(|_| Arc::new(ClientConnector::new(&certs).expect("client connector")))
            .collect()
    };
    let start = Instant::now() + Duration::from_secs_f64(settings.warmup);
    let end = start + Duration::from_secs_f64(settings.secs);
    let window = Arc::new(Window {
        addrs: cluster.addrs.clone(),
        dir: cluster.dir.clone(),
        kind,
        start,
        end,
    });
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            tokio::spawn(client_task(
                connectors[i % connectors.len()].clone(),
                window.clone(),
                leader,
                first_client + i as u64,
            ))
        })
        .collect();
    tokio::time::sleep_until(start.into()).await;
    let before = cluster.status(leader).await;
    let cpu_before = cpu_seconds(cluster, leader);
    let machine_before = machine_busy_seconds();
    let window_start = Instant::now();
    tokio::time::sleep_until(end.into()).await;
    let after = cluster.status(leader).await;
    let cpu_after = cpu_seconds(cluster, leader);
    let machine_after = machine_busy_seconds();
    let elapsed = window_start.elapsed().as_secs_f64();
    let cpu = [0, 1, 2].map(|i| (cpu_after[i] - cpu_before[i]) / elapsed);
    let others = ((machine_after - machine_before) / elapsed - cpu.iter().sum::<f64>()).max(0.0);
    let mut latencies = Vec::new();
    let mut retries = 0;
    for task in tasks {
        let (l, r) = task.await.expect("client task");
        latencies.extend(l);
        retries += r;
    }
    for connector in &connectors {
        connector.close().await;
    }
    latencies.sort_unstable();
    let commits_per_sec = match (&before, &after) {
        (Some(a), Some(b)) => b.commit_index.saturating_sub(a.commit_index) as f64 / elapsed,
        _ => f64::NAN,
    };
    let term = |s: &Option<node::protocol::NodeStatus>| s.as_ref().map(|s| (s.term, s.leader));
    let note = if term(&before) != term(&after) || after.is_none() {
        format!(
            "leadership changed during the window: (term, leader) {:?} -> {:?}",
            term(&before),
            term(&after)
        )
    } else {
        String::new()
    };
    Cell {
        kind,
        clients,
        ops_per_sec: latencies.len() as f64 / settings.secs,
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        p999: percentile(&latencies, 99.9),
        retries,
        max: latencies
            .last()
            .map_or(f64::NAN, |&l| f64::from(l) / 1000.0),
        note,
        commits_per_sec,
        cpu,
        others,
    }
}

/// Busy CPU seconds of the whole machine so far (all CPUs, from `/proc/stat`).
fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    // user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
    let ticks: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let busy: f64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, t)| t)
        .sum();
    busy / 100.0
}

/// User + system CPU seconds of a process so far (from `/proc/<pid>/stat`).
fn process_cpu(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12] // utime, stime (fields 14 and 15)
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    // The kernel reports in USER_HZ, 100 on every Linux platform Rust supports here.
    ticks / 100.0
}

/// CPU seconds so far: the leader, the followers together, this process.
fn cpu_seconds(cluster: &Cluster, leader: u64) -> [f64; 3] {
    let node = |id: u64| cluster.pid(id).map_or(0.0, |p| process_cpu(&p.to_string()));
    let followers = cluster
        .addrs
        .iter()
        .filter(|(id, _)| *id != leader)
        .map(|(id, _)| node(*id))
        .sum();
    [node(leader), followers, process_cpu("self")]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn print_row(cell: &Cell) {
    let [leader, followers, client] = cell.cpu;
    let cpu_per_op = (leader + followers + client) / cell.ops_per_sec * 1e6;
    println!(
        "| {:<5} | {:>7} | {:>9.0} | {:>8.2} | {:>8.2} | {:>8.2} | {:>8.2} | {:>7} | {:>9.0} | {leader:.2} / {followers:.2} / {client:.2} | {cpu_per_op:>6.0} | {:>10.2} |",
        cell.kind.name(),
        cell.clients,
        cell.ops_per_sec,
        cell.p50,
        cell.p99,
        cell.p999,
        cell.max,
        cell.retries,
        cell.commits_per_sec,
        cell.others,
    );
    if !cell.note.is_empty() {
        println!("  ^ {}", cell.note);
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` (or `--all-targets`) runs this
    // binary without it: then only say how to run it, rather than spend minutes here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("cluster bench: run with `cargo bench -p node --bench cluster`; skipping");
        return;
    }
    let settings = Settings::from_env();
    let runtime = match settings.client_threads {
        0 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .expect("tokio runtime");
    runtime.block_on(async {
        let cluster = Cluster::start_with(
            "bench",
            3,
            Options {
                tick_ms: 50,
                request_timeout_ms: 3000,
                snapshot_every: 10_000,
                fsync: settings.fsync,
            },
        )
        .await;
        let leader = cluster.leader(&[1, 2, 3]).await;
        println!(
            "3-node cluster on loopback, QUIC + mutual TLS, fsync {}, node binary {}",
            if settings.fsync { "on" } else { "OFF" },
            env!("CARGO_BIN_EXE_raft-node"),
        );
        println!(
            "leader: node {leader}; {} s per cell after {} s warm-up; connectors: {:?}; own key per client; load average {}",
            settings.secs, settings.warmup, settings.connectors, load_average()
        );
        println!("CPU columns: cores used during the window; \"other load\": cores used by the rest of the machine (CPUs: {})",
            std::thread::available_parallelism().map_or(0, |n| n.get()));
        println!("| op    | clients |     ops/s | p50 (ms) | p99 (ms) | p99.9 ms | max (ms) | retries | commits/s | CPU cores L / F+F / cli | CPU µs/op | other load |");
        println!("|-------|---------|-----------|----------|----------|----------|----------|---------|-----------|--------------------|--------|------------|");
        let mut cells = Vec::new();
        let mut next_client = 1000u64;
        let mut anomalies = false;
        for _ in 0..settings.repeats {
            for &kind in &settings.kinds {
                for &clients in &settings.clients {
                    // Leadership may have moved (it should not): measure whoever leads now.
                    let leader = cluster.leader(&[1, 2, 3]).await;
                    let cell =
                        run_cell(&cluster, &settings, kind, clients, next_client, leader).await;
                    anomalies |= cell.retries > 0 || !cell.note.is_empty();
                    next_client += clients as u64;
                    print_row(&cell);
                    cells.push(cell);
                }
            }
        }
        println!("load average at the end: {}", load_average());
        let now = cluster.leader(&[1, 2, 3]).await;
        if now != leader {
            println!("NOTE: leadership moved from node {leader} to node {now} during the run");
        }
        if settings.repeats > 1 {
            println!();
            println!("summary over {} repeats: median (min–max)", settings.repeats);
            println!("| op    | clients | ops/s | p50 (ms) | p99 (ms) | p99.9 (ms) | other load (cores) |");
            println!("|-------|---------|-------|----------|----------|------------|--------------------|");
            for &kind in &settings.kinds {
                for &clients in &settings.clients {
                    let same: Vec<&Cell> = cells
                        .iter()
                        .filter(|c| c.kind == kind && c.clients == clients)
                        .collect();
                    let stat = |f: &dyn Fn(&Cell) -> f64, digits: usize| {
                        let mut v: Vec<f64> = same.iter().map(|c| f(c)).collect();
                        let m = median(&mut v);
                        format!(
                            "{m:.digits$} ({:.digits$}–{:.digits$})",
                            v[0],
                            v[v.len() - 1]
                        )
                    };
                    println!(
                        "| {:<5} | {:>7} | {} | {} | {} | {} | {} |",
                        kind.name(),
                        clients,
                        stat(&|c| c.ops_per_sec, 0),
                        stat(&|c| c.p50, 2),
                        stat(&|c| c.p99, 2),
                        stat(&|c| c.p999, 2),
                        stat(&|c| c.others, 2),
                    );
                }
            }
        }
        if anomalies || std::env::var_os("RAFTLAB_BENCH_KEEP").is_some() {
            println!("node logs and data: {}", cluster.dir.display());
        } else {
            let dir = cluster.dir.clone();
            drop(cluster);
            let _ = std::fs::remove_dir_all(dir);
        }
    });
}
