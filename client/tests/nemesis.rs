//! The nemesis for real: nftables drops between UDP sockets on loopback addresses (drop, heal,
//! table removed, stale tables of dead runs deleted), a schedule of every fault kind run
//! against a real 3-node cluster, and the Ctrl-C cleanup.
//!
//! Partition tests need root and `nft`; without them they print why and pass (CI installs
//! nftables and runs as root).

mod support;

use client::control::cleanup;
use client::db::local::{ClusterOptions, LocalCluster};
use client::history::{Recorder, Who};
use client::kv::status;
use client::nemesis::{
    self, partition, run_nemesis, NemesisContext, NemesisKind, Schedule, ScheduleOptions,
};
use client::net::nft::{self, Nft};
use node::transport::ClientConnector;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{delivered, raft_node};
use tokio::sync::watch;

const PATIENCE: Duration = Duration::from_secs(30);

/// One test at a time: the Ctrl-C cleanup test stops everything this process started.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

fn serial_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.blocking_lock()
}

/// `Some(reason)` when partitions cannot be tested here.
fn no_nft() -> Option<String> {
    match Nft::new() {
        Ok(nft) => {
            drop(nft);
            None
        }
        Err(e) => Some(e.to_string()),
    }
}

fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("raftlab-nemesis-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn tables() -> String {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn nft_drops_exactly_the_cut_links_heals_and_removes_its_table() {
    let _serial = serial_blocking();
    if let Some(reason) = no_nft() {
        return skip("nft partition", &reason);
    }
    let a = UdpSocket::bind("127.0.0.21:0").unwrap();
    let b = UdpSocket::bind("127.0.0.22:0").unwrap();
    let c = UdpSocket::bind("127.0.0.23:0").unwrap();
    let addr = |s: &UdpSocket| -> SocketAddr { s.local_addr().unwrap() };
    assert!(delivered(&a, &b) && delivered(&b, &a));

    let mut nft = Nft::new().unwrap();
    let table = nft.table().to_string();
    assert!(tables().contains(&table));
    nft.apply(&[(addr(&a), addr(&b)), (addr(&b), addr(&a))], None)
        .unwrap();
    assert_eq!(nft.rule_count(), 2);
    assert!(nft.list().unwrap().contains("drop"));
    assert!(!delivered(&a, &b), "a -> b should be dropped");
    assert!(!delivered(&b, &a), "b -> a should be dropped");
    assert!(
        delivered(&c, &b) && delivered(&a, &c),
        "other links are untouched"
    );

    // Replacing the rules is atomic and complete: now only a -> c is cut.
    nft.apply(&[(addr(&a), addr(&c))], None).unwrap();
    assert!(delivered(&a, &b) && !delivered(&a, &c) && delivered(&c, &a));

    nft.heal().unwrap();
    assert!(delivered(&a, &b) && delivered(&b, &a) && delivered(&a, &c));
    nft.teardown().unwrap();
    assert!(!tables().contains(&table), "table deleted");

    // Drop deletes the table too, rules and all.
    let mut nft = Nft::new().unwrap();
    let table = nft.table().to_string();
    nft.apply(&[(addr(&a), addr(&b))], None).unwrap();
    drop(nft);
    assert!(!tables().contains(&table));
    assert!(delivered(&a, &b));
}

#[test]
fn stale_tables_of_dead_runs_are_deleted_live_ones_kept() {
    let _serial = serial_blocking();
    if let Some(reason) = no_nft() {
        return skip("stale nft tables", &reason);
    }
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let stale = format!("raftlab_{dead_pid}_0");
    // pid 1 is alive: a "concurrent run" that must be left alone.
    let live = "raftlab_1_999".to_string();
    for table in [&stale, &live] {
        let ok = Command::new("nft")
            .args(["add", "table", "inet", table])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let nft = Nft::new().unwrap();
    let listing = tables();
    assert!(!listing.contains(&stale), "{listing}");
    assert!(listing.contains(&live), "{listing}");
    drop(nft);
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", &live])
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_on_a_real_cluster_is_applied_recorded_and_healed() {
    let _serial = serial().await;
    let partitions = no_nft();
    let kinds: Vec<NemesisKind> = match &partitions {
        None => NemesisKind::ALL.to_vec(),
        Some(reason) => {
            skip(
                "partitions on a real cluster (kill and pause still run)",
                reason,
            );
            vec![NemesisKind::Kill, NemesisKind::Pause]
        }
    };
    let dir = temp_dir("real");
    let cluster = LocalCluster::create(
        &dir,
        &ClusterOptions {
            nodes: 3,
            raft_node: raft_node(),
            tick_ms: 20,
            base_port: 16301,
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    let client = Arc::new(ClientConnector::new(&cluster.config().tls.certs_dir).unwrap());
    cluster.leader(&client, PATIENCE).await.unwrap();

    let schedule = Schedule::with_options(
        42,
        &kinds,
        &cluster.ids(),
        ScheduleOptions {
            interval: Duration::from_millis(700),
            duration: Duration::from_secs(12),
            fault_min: Duration::from_millis(300),
            fault_max: Duration::from_millis(700),
        },
    )
    .unwrap();
    let scheduled = schedule.counts();
    assert!(scheduled.values().all(|&n| n > 0), "{scheduled:?}");

    let own_tables = || -> Vec<String> {
        let ours = format!("raftlab_{}_", std::process::id());
        tables()
            .lines()
            .filter(|l| l.contains(&ours))
            .map(str::to_string)
            .collect()
    };
    let before = own_tables();
    let network = nemesis::preflight(&kinds, &cluster).unwrap();
    let cluster = Arc::new(Mutex::new(cluster));
    let recorder = Recorder::new();
    let ctx = NemesisContext::new(cluster.clone(), recorder.clone())
        .with_client(client.clone())
        .with_network(network);
    let (_stop, stop_rx) = watch::channel(false);
    let report = run_nemesis(schedule, ctx, stop_rx).await;

    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.healed && !report.stopped_early);
    assert_eq!(report.applied, scheduled);
    assert!(report.not_applied.is_empty());
    assert_eq!(
        own_tables(),
        before,
        "the run's table is removed at the end"
    );

    // Every fault has its start and end event, in order.
    let events = recorder.events();
    eprintln!("{}", checker::history::jsonl::write_records(&events));
    assert!(events
        .iter()
        .all(|e| e.who == Who::Nemesis && e.value.get("error").is_none()));
    let count = |f: &str| events.iter().filter(|e| e.f == f).count();
    // `kill-leader`, `pause-leader` and `freeze-leader` record `kill` and `pause` of the node
    // they took down; `kill-all` records a `kill` of every node; `freeze-leader` also records
    // `start-partition` and `stop-partition` (as every network fault does).
    let planned =
        |kinds: &[NemesisKind]| -> usize { kinds.iter().filter_map(|k| scheduled.get(k)).sum() };
    let power_cuts = scheduled.get(&NemesisKind::KillAll).copied().unwrap_or(0);
    assert_eq!(
        count("kill"),
        planned(&[NemesisKind::Kill, NemesisKind::KillLeader]) + power_cuts * 3
    );
    assert_eq!(
        count("pause"),
        planned(&[
            NemesisKind::Pause,
            NemesisKind::PauseLeader,
            NemesisKind::FreezeLeader
        ])
    );
    let network: Vec<NemesisKind> = kinds
        .iter()
        .copied()
        .filter(|k| k.needs_network())
        .collect();
    assert_eq!(count("start-partition"), planned(&network));
    assert_eq!(count("kill"), count("start"));
    assert_eq!(count("pause"), count("resume"));
    assert_eq!(count("start-partition"), count("stop-partition"));
    // A member removed is added back; a transfer is one event.
    assert_eq!(count("remove-member"), planned(&[NemesisKind::Membership]));
    assert_eq!(count("add-member"), count("remove-member"));
    assert_eq!(count("transfer"), planned(&[NemesisKind::Transfer]));
    if partitions.is_none() {
        // Leader faults record the leader they found: `null` only when none answered in
        // time (right after a power cut, say), so at least one of them found it.
        let leader_cuts: Vec<&client::history::Record> = events
            .iter()
            .filter(|e| {
                e.f == "start-partition"
                    && ["isolate-leader", "freeze-leader"]
                        .contains(&e.value["nemesis"].as_str().unwrap_or(""))
            })
            .collect();
        assert!(leader_cuts
            .iter()
            .any(|e| e.value["nemesis"] == "isolate-leader"));
        for cut in &leader_cuts {
            let leader = &cut.value["leader"];
            assert!(
                leader.is_null() || *leader == cut.value["groups"][0][0],
                "{:?}",
                cut.value
            );
        }
        assert!(
            leader_cuts.iter().any(|e| e.value["leader"].is_u64()),
            "{leader_cuts:?}"
        );
        // Every freeze: cut, pause of the node cut off, its resume, then the heal.
        let freezes: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.f == "start-partition" && e.value["nemesis"] == "freeze-leader")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(freezes.len(), scheduled[&NemesisKind::FreezeLeader]);
        for i in freezes {
            let cut = &events[i];
            let node = cut.value["groups"][0][0]
                .as_u64()
                .expect("the node cut off");
            let after = |f: &str, from: usize| {
                events[from..]
                    .iter()
                    .position(|e| {
                        e.f == f
                            && (f == "stop-partition" || e.value["node"].as_u64() == Some(node))
                    })
                    .map(|p| p + from)
                    .unwrap_or_else(|| panic!("no {f} after the freeze of n{node}"))
            };
            let paused = after("pause", i);
            let resumed = after("resume", paused);
            let healed = after("stop-partition", i);
            assert!(
                paused < resumed && resumed < healed,
                "{i}: {paused} {resumed} {healed}"
            );
            assert_eq!(events[healed].value["nemesis"], "freeze-leader");
        }
    }

    // Healed: every node runs unpaused and the whole cluster agrees on a leader again.
    let cluster = Arc::try_unwrap(cluster).unwrap().into_inner().unwrap();
    for id in cluster.ids() {
        assert!(
            cluster.is_running(id) && !cluster.is_paused(id),
            "node {id}"
        );
    }
    let leader = cluster.leader(&client, PATIENCE).await.unwrap();
    let all: Vec<(u64, String)> = cluster.node_addrs();
    let members = client::kv::admin::Admin::new(&client, all.clone(), PATIENCE)
        .members()
        .await
        .unwrap();
    assert!(
        members.members.iter().all(|m| m.voter) && members.members.len() == 3,
        "every node a voter again: {members:?}"
    );
    let statuses = status::status_all(&client, &all, Duration::from_secs(2)).await;
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut statuses = statuses;
    while statuses
        .iter()
        .any(|(_, s)| s.as_ref().map(|s| s.leader) != Ok(Some(leader)))
    {
        assert!(std::time::Instant::now() < deadline, "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        statuses = status::status_all(&client, &all, Duration::from_secs(2)).await;
    }
    client.close().await;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_and_rejoins_after_healing() {
    let _serial = serial().await;
    if let Some(reason) = no_nft() {
        return skip("isolating a real leader", &reason);
    }
    let dir = temp_dir("isolate");
    let cluster = LocalCluster::create(
        &dir,
        &ClusterOptions {
            nodes: 3,
            raft_node: raft_node(),
            tick_ms: 20,
            base_port: 16321,
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    let client = ClientConnector::new(&cluster.config().tls.certs_dir).unwrap();
    let old = cluster.leader(&client, PATIENCE).await.unwrap();
    let endpoints = cluster
        .ids()
        .into_iter()
        .map(|id| (id, cluster.node_addr(id).unwrap()))
        .collect();
    let grouping = partition::isolate(NemesisKind::IsolateLeader, old, &cluster.ids());
    let mut nft = Nft::new().unwrap();
    nft.apply(&grouping.drops(&endpoints), None).unwrap();

    // The other two elect a new leader; the client (another port) still reaches everyone.
    let others: Vec<(u64, String)> = cluster
        .node_addrs()
        .into_iter()
        .filter(|(id, _)| *id != old)
        .collect();
    let new = status::find_leader(&client, &others, 3, PATIENCE)
        .await
        .unwrap();
    assert_ne!(new, old);
    let statuses = status::status_all(&client, &cluster.node_addrs(), Duration::from_secs(2)).await;
    assert!(statuses.iter().all(|(_, s)| s.is_ok()), "{statuses:?}");

    nft.heal().unwrap();
    let all = cluster.node_addrs();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let statuses = status::status_all(&client, &all, Duration::from_secs(2)).await;
        let leaders: Vec<Option<u64>> = statuses
            .iter()
            .map(|(_, s)| s.as_ref().ok().and_then(|s| s.leader))
            .collect();
        if leaders.iter().all(|l| l.is_some() && *l == leaders[0]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(nft);
    client.close().await;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The emergency cleanup is process-wide and final (owned clusters start nothing after it),
/// so it runs in a child process of its own.
#[test]
fn emergency_cleanup_stops_nodes_resumes_paused_and_deletes_tables() {
    let _serial = serial_blocking();
    let status = Command::new(std::env::current_exe().unwrap())
        .env("RAFT_NODE_BIN", raft_node())
        .args([
            "--exact",
            "emergency_cleanup_in_this_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "the child test failed: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a child process by emergency_cleanup_stops_nodes_resumes_paused_and_deletes_tables"]
async fn emergency_cleanup_in_this_process() {
    let dir = temp_dir("ctrlc");
    let mut cluster = LocalCluster::create(
        &dir,
        &ClusterOptions {
            nodes: 3,
            raft_node: raft_node(),
            tick_ms: 20,
            base_port: 16311,
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    let pids: Vec<u32> = cluster
        .ids()
        .iter()
        .map(|&i| cluster.pid(i).unwrap())
        .collect();
    cluster.pause(1).unwrap();
    let nft = Nft::new().ok();
    let table = nft.as_ref().map(|n| n.table().to_string());

    cleanup::run_all();
    cleanup::run_all(); // idempotent

    for pid in &pids {
        let dead = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit_once(')').unwrap().1.trim_start().starts_with('Z'))
            .unwrap_or(true);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut dead = dead;
        while !dead && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            dead = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.rsplit_once(')').unwrap().1.trim_start().starts_with('Z'))
                .unwrap_or(true);
        }
        assert!(dead, "pid {pid} survived the emergency cleanup");
    }
    match table {
        Some(table) => assert!(!tables().contains(&table)),
        None => skip("nft part of the emergency cleanup", "no nft or not root"),
    }
    // After the cleanup an owned cluster starts nothing (a healing nemesis would), and the
    // table object finds nothing left to heal or delete.
    assert!(cleanup::ran());
    let err = cluster.start(2).unwrap_err();
    assert!(err.to_string().contains("interrupted"), "{err}");
    if let Some(mut nft) = nft {
        nft.heal().unwrap();
        nft.teardown().unwrap();
    }
    cluster.stop_all().unwrap();
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nft_errors_name_the_problem() {
    // Whatever this machine has, an error (if any) says what is missing.
    if let Err(e) = Nft::new() {
        let text = e.to_string();
        assert!(
            text.contains("nft")
                && (text.contains("install") || text.contains("root") || text.contains("failed")),
            "{text}"
        );
        let refusal = nemesis::NemesisError::Partitions(e).to_string();
        assert!(refusal.contains("kill,pause"), "{refusal}");
    } else {
        let _ = nft::TABLE_PREFIX;
    }
}
