//! The remote cluster through a REAL command template against this machine:
//! `env RAFTLAB_HOST={host} sh -c`, so every "host" is this machine but every action takes the
//! same path as `ssh {host}` (pid files, /proc checks, signals, logs and nft/tc all run as
//! shell commands through the template). Real `raft-node` processes: start, leader, pause,
//! resume, kill, restart, log collection, stop; the network: an nftables table per network
//! with real packet drops, netem on a throwaway veth interface (where the kernel has netem),
//! teardown; the Ctrl-C cleanup.
//!
//! Network parts need root, `nft` and `tc`: without them they print why and pass, unless
//! `RAFTLAB_REQUIRE_NETNS=1` (then they fail).

mod support;

use client::control::template::CommandTemplate;
use client::control::{cleanup, process};
use client::db::remote::{RemoteCluster, RemoteError};
use client::kv::status;
use client::nemesis::{partition, NemesisKind};
use client::net::remote::RemoteNetwork;
use client::net::Network;
use model::core::NodeId;
use node::config::{ClusterConfig, NodeEntry};
use node::transport::ClientConnector;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;
use support::{delivered, raft_node};

const TEMPLATE: &str = "env RAFTLAB_HOST={host} sh -c";
const PATIENCE: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// One test at a time where the process-wide registries matter (the Ctrl-C cleanup sweeps
/// every network of this process).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// `Some(reason)` when nft/tc rules cannot be tested here.
fn no_network() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Some(format!("not root (euid {euid})"));
    }
    for (program, arg) in [("nft", "--version"), ("tc", "-V")] {
        match Command::new(program).arg(arg).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => return Some(format!("`{program} {arg}` failed: {}", out.status)),
            Err(e) => return Some(format!("`{program}` is missing: {e}")),
        }
    }
    None
}

/// Prints why a test is skipped, or fails when `RAFTLAB_REQUIRE_NETNS=1`.
fn skip(test: &str, reason: &str) {
    if std::env::var("RAFTLAB_REQUIRE_NETNS").is_ok_and(|v| v == "1") {
        panic!("{test}: cannot run: {reason} (RAFTLAB_REQUIRE_NETNS=1)");
    }
    eprintln!("SKIPPED {test}: {reason}");
}

fn temp_dir(name: &str) -> PathBuf {
    support::results_root(&format!("remote-{name}"))
}

fn free_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `dir/cluster.toml` (3 nodes on 127.0.0.21-23, `[remote]` with the local template)
/// and the certificates.
fn write_cluster(name: &str, raft_node: &str) -> (PathBuf, ClusterConfig) {
    let dir = temp_dir(name);
    let mut text = String::new();
    for id in 1..=3 {
        let ip = format!("127.0.0.{}", 20 + id);
        let port = free_port(&ip);
        let _ = write!(text, "[[node]]\nid = {id}\naddr = \"{ip}:{port}\"\n\n");
    }
    let _ = write!(
        text,
        "[timing]\ntick_ms = 20\n\n[remote]\ncommand = \"{TEMPLATE}\"\nraft_node = {raft_node:?}\n\
         dir = {:?}\n",
        dir.display().to_string()
    );
    let path = dir.join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    let config = ClusterConfig::load(&path).unwrap();
    node::certs::generate(&config, &config.tls.certs_dir, false).unwrap();
    (dir, config)
}

fn template() -> CommandTemplate {
    CommandTemplate::parse(TEMPLATE).unwrap()
}

/// Runs `command` through the template on `node`'s "host"; its stdout.
fn on_host(node: &NodeEntry, command: &str) -> String {
    let out = template()
        .run(node, command, None, COMMAND_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The /proc state letter of `pid` on `node`'s host (`None`: no such process).
fn state_on_host(node: &NodeEntry, pid: u32) -> Option<char> {
    let stat = on_host(node, &format!("cat /proc/{pid}/stat 2>/dev/null || true"));
    process::stat_state(&stat)
}

fn leader(config: &ClusterConfig) -> NodeId {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = ClientConnector::new(&config.tls.certs_dir).expect("client certificate");
        let nodes: Vec<(NodeId, String)> = config
            .nodes
            .iter()
            .map(|n| (n.id, n.addr.clone()))
            .collect();
        let leader = status::find_leader(&client, &nodes, nodes.len(), PATIENCE).await;
        client.close().await;
        leader.unwrap_or_else(|e| panic!("{e}"))
    })
}

fn tables(node: &NodeEntry) -> String {
    on_host(node, "nft list tables")
}

#[test]
fn nodes_start_pause_resume_die_restart_log_and_stop_through_the_template() {
    let _serial = serial();
    let binary = raft_node().display().to_string();
    let (dir, config) = write_cluster("lifecycle", &binary);
    let nodes = config.nodes.clone();
    let mut c = RemoteCluster::open(config.clone()).unwrap();
    c.set_owned(true);
    c.start_all().unwrap();
    let mut pids = BTreeMap::new();
    for id in 1..=3 {
        let pid = c.pid(id).unwrap().expect("node runs");
        assert!(dir.join(format!("pids/node-{id}.pid")).exists());
        pids.insert(id, pid);
    }
    // Starting running nodes is a no-op.
    c.start_all().unwrap();
    for id in 1..=3 {
        assert_eq!(c.pid(id).unwrap(), Some(pids[&id]));
    }
    leader(&config);

    // Pause: the process is stopped on its host; resume: running again.
    c.pause(2).unwrap();
    assert!(c.is_paused(2));
    assert_eq!(state_on_host(&nodes[1], pids[&2]), Some('T'));
    assert!(c.is_running(2).unwrap(), "a paused node runs");
    c.resume(2).unwrap();
    assert!(!c.is_paused(2));
    assert!(matches!(
        state_on_host(&nodes[1], pids[&2]),
        Some('R' | 'S' | 'D')
    ));

    // Kill: gone (or an unreaped zombie), pid file removed; a second kill says not running.
    c.kill(3).unwrap();
    assert_eq!(c.pid(3).unwrap(), None);
    assert!(matches!(
        state_on_host(&nodes[2], pids[&3]),
        None | Some('Z')
    ));
    assert!(!dir.join("pids/node-3.pid").exists());
    let err = c.kill(3).unwrap_err();
    assert!(
        matches!(err, RemoteError::NotRunning { id: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("127.0.0.23"), "{err}");
    c.start(3).unwrap();
    let restarted = c.pid(3).unwrap().expect("node 3 runs again");
    assert_ne!(restarted, pids[&3]);
    leader(&config);

    // Logs: one per node, node 3's with two start banners.
    let logs = dir.join("collected");
    c.collect_logs(&logs).unwrap();
    for id in 1..=3 {
        let log = std::fs::read_to_string(logs.join(format!("node-{id}.log"))).unwrap();
        assert!(
            log.starts_with(&format!("=== raft-lab: starting node {id} ===\n")),
            "{log}"
        );
        assert!(log.len() > 40, "node {id}'s log holds its output: {log}");
    }
    let log3 = std::fs::read_to_string(logs.join("node-3.log")).unwrap();
    assert_eq!(log3.matches("=== raft-lab: starting node 3").count(), 2);

    // The Ctrl-C cleanup resumes a paused node and removes the network's table.
    c.pause(1).unwrap();
    let network = match no_network() {
        None => Some(c.network().unwrap()),
        Some(reason) => {
            skip("emergency cleanup of a remote table", &reason);
            None
        }
    };
    cleanup::run_all();
    assert!(cleanup::ran());
    assert!(matches!(
        state_on_host(&nodes[0], pids[&1]),
        Some('R' | 'S' | 'D')
    ));
    if let Some(mut network) = network {
        let table = network.table().to_string();
        assert!(!tables(&nodes[0]).contains(&table), "table removed");
        // Swept networks are no-ops, cuts are refused.
        network.heal().unwrap();
        assert!(network.cut(&[], None).is_err());
        network.teardown().unwrap();
    }
    // An owned cluster starts nothing after the cleanup.
    c.kill(2).unwrap();
    let err = c.start(2).unwrap_err().to_string();
    assert!(err.contains("interrupted"), "{err}");

    c.stop_all().unwrap();
    for id in 1..=3 {
        assert_eq!(c.pid(id).unwrap(), None, "node {id} stopped");
        assert!(!dir.join(format!("pids/node-{id}.pid")).exists());
    }
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_that_cannot_start_is_reported_with_its_log() {
    let (dir, config) = write_cluster("nostart", "/nonexistent/raft-node");
    let mut c = RemoteCluster::open(config).unwrap();
    // No node ever ran: no logs to collect, and that is fine.
    let logs = dir.join("collected");
    c.collect_logs(&logs).unwrap();
    assert_eq!(std::fs::read_dir(&logs).unwrap().count(), 0);
    assert_eq!(c.pid(1).unwrap(), None);
    let err = c.start(1).unwrap_err().to_string();
    assert!(err.contains("node 1 on 127.0.0.21"), "{err}");
    assert!(err.contains("/nonexistent/raft-node"), "{err}");
    assert!(err.contains("node-1.log"), "{err}");
    assert!(err.contains("exited at once"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_nft_or_tc_on_a_host_is_named() {
    let nodes: Vec<NodeEntry> = (1..=2)
        .map(|id| NodeEntry {
            id,
            addr: format!("127.0.0.{}:1500{id}", 40 + id),
            host: Some(format!("db{id}")),
        })
        .collect();
    // Hosts without nft on their PATH.
    let template =
        CommandTemplate::parse("env PATH=/nonexistent RAFTLAB_HOST={host} /bin/sh -c").unwrap();
    let err = RemoteNetwork::create(template, &nodes, "eth0")
        .unwrap_err()
        .to_string();
    assert!(err.contains("nft (nftables) is not installed"), "{err}");
    assert!(err.contains("db1") && err.contains("db2"), "{err}");
    assert!(err.contains("failed on 2 of 2 hosts"), "{err}");
}

#[test]
fn partitions_and_netem_on_every_host_through_the_template() {
    let _serial = serial();
    if let Some(reason) = no_network() {
        return skip("remote network", &reason);
    }
    let sockets: Vec<UdpSocket> = (1..=3)
        .map(|i| UdpSocket::bind(format!("127.0.0.{}:0", 40 + i)).unwrap())
        .collect();
    let addr = |i: usize| -> SocketAddr { sockets[i].local_addr().unwrap() };
    let nodes: Vec<NodeEntry> = (0..3)
        .map(|i| NodeEntry {
            id: i as NodeId + 1,
            addr: addr(i).to_string(),
            host: None,
        })
        .collect();
    let mut network = RemoteNetwork::create(template(), &nodes, "lo").unwrap();
    let table = network.table().to_string();
    assert!(table.starts_with(&format!("raftlab_r{}_", std::process::id())));
    assert_eq!(network.hosts().len(), 3);
    assert!(tables(&nodes[0]).contains(&table));

    // Isolate node 1: both directions to 2 and 3 dropped, 2 <-> 3 untouched.
    let grouping = partition::isolate(NemesisKind::PartitionOne, 1, &[1, 2, 3]);
    let endpoints: BTreeMap<NodeId, SocketAddr> =
        (0..3).map(|i| (i as NodeId + 1, addr(i))).collect();
    network.cut(&grouping.drops(&endpoints), None).unwrap();
    let listing = on_host(&nodes[1], &format!("nft list table inet {table}"));
    assert_eq!(listing.matches(" drop").count(), 4, "{listing}");
    assert!(
        listing.contains(&format!("udp sport {}", addr(0).port())),
        "{listing}"
    );
    assert!(!delivered(&sockets[0], &sockets[1]) && !delivered(&sockets[1], &sockets[0]));
    assert!(!delivered(&sockets[2], &sockets[0]));
    assert!(delivered(&sockets[1], &sockets[2]) && delivered(&sockets[2], &sockets[1]));

    network.heal().unwrap();
    let listing = on_host(&nodes[1], &format!("nft list table inet {table}"));
    assert!(!listing.contains(" drop"), "{listing}");
    assert!(delivered(&sockets[0], &sockets[1]) && delivered(&sockets[1], &sockets[0]));

    // netem on a throwaway veth pair (never on this machine's lo).
    let veth = format!("rltd{:x}", std::process::id());
    let added = Command::new("ip")
        .args([
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{veth}p"),
        ])
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "ip link add {veth} type veth: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    // Some kernels are built without sch_netem: then only the error path can be checked.
    let probe = Command::new("tc")
        .args([
            "qdisc", "replace", "dev", &veth, "root", "netem", "delay", "1ms",
        ])
        .output()
        .unwrap();
    let kernel_netem = probe.status.success();
    let qdisc = |node: &NodeEntry| on_host(node, &format!("tc qdisc show dev {veth}"));
    let result = std::panic::catch_unwind(|| {
        let mut shaped = RemoteNetwork::create(template(), &nodes[..1], &veth).unwrap();
        let installed = shaped.delay(true).unwrap();
        let shown = qdisc(&nodes[0]);
        if kernel_netem {
            assert!(
                installed.starts_with("netem delay 50ms 40ms"),
                "{installed}"
            );
            assert!(
                shown.contains("netem") && shown.contains("delay 50ms"),
                "{shown}"
            );
        } else {
            // This kernel has no sch_netem: the lab falls back to a token bucket.
            assert!(
                installed.contains("tbf") && installed.contains("no netem"),
                "{installed}"
            );
            assert!(shown.contains("tbf"), "{shown}");
        }
        shaped.delay(false).unwrap();
        let shown = qdisc(&nodes[0]);
        assert!(
            !shown.contains("netem") && !shown.contains("tbf"),
            "{shown}"
        );
        // Dropping a network that installed a delay removes it too.
        shaped.delay(true).unwrap();
        let shaped_table = shaped.table().to_string();
        drop(shaped);
        let shown = qdisc(&nodes[0]);
        assert!(
            !shown.contains("netem") && !shown.contains("tbf"),
            "{shown}"
        );
        assert!(!tables(&nodes[0]).contains(&shaped_table));
    });
    let _ = Command::new("ip").args(["link", "del", &veth]).output();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }

    // Teardown removes the table; twice is fine; afterwards cuts are refused.
    network.teardown().unwrap();
    assert!(!tables(&nodes[0]).contains(&table));
    network.teardown().unwrap();
    assert!(network.cut(&[], None).is_err());
    network.heal().unwrap();
}
