//! The local cluster launcher against real `raft-node` processes: leader election, kill and
//! restart, pause and resume, stop_all and Drop leaving no process, `cluster up|down|status`
//! with pid files, and errors that name what failed.

mod support;

use client::cli::cluster;
use client::db::local::{self, ClusterError, ClusterOptions, LocalCluster};
use nix::sys::signal::kill as send_signal;
use nix::unistd::Pid;
use node::transport::ClientConnector;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::raft_node;

const PATIENCE: Duration = Duration::from_secs(30);

/// Cluster tests run one at a time: they share two cores and the loopback addresses.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("raftlab-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(base_port: u16) -> ClusterOptions {
    ClusterOptions {
        nodes: 3,
        raft_node: raft_node(),
        tick_ms: 20,
        base_port,
        stop_grace: Duration::from_secs(5),
        ..ClusterOptions::default()
    }
}

/// No process with this pid, or only its zombie.
fn gone(pid: u32) -> bool {
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next())
        })
        .flatten();
    send_signal(Pid::from_raw(pid as i32), None).is_err() || state == Some('Z')
}

fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(')')
        .unwrap()
        .1
        .trim_start()
        .chars()
        .next()
        .unwrap()
}

fn connector(cluster: &LocalCluster) -> ClientConnector {
    ClientConnector::new(&cluster.config().tls.certs_dir).expect("client certificate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_restart_pause_resume_stop() {
    let _serial = serial().await;
    let dir = temp_dir("lifecycle");
    let mut c = LocalCluster::create(&dir, &options(16101)).expect("cluster starts");
    for file in [
        "cluster.toml",
        "certs/ca.pem",
        "certs/client.key",
        "pids/node-2.pid",
    ] {
        assert!(dir.join(file).exists(), "{file}");
    }
    for id in 1..=3 {
        assert_eq!(
            c.node_ip(id).unwrap().to_string(),
            format!("127.0.0.{}", 10 + id)
        );
        assert!(c.is_running(id));
        assert_eq!(c.log_path(id), dir.join(format!("node-{id}.log")));
    }
    let client = connector(&c);
    let leader = c.leader(&client, PATIENCE).await.expect("a leader");
    assert!(dir.join("data/node-1").is_dir());

    // Kill a follower: gone, pid file gone; the other two still have a leader.
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let pid = c.pid(follower).unwrap();
    c.kill(follower).unwrap();
    assert!(gone(pid) && !c.is_running(follower));
    assert!(!c.pid_path(follower).exists());
    assert!(matches!(
        c.kill(follower),
        Err(ClusterError::NotRunning { .. })
    ));
    c.leader(&client, PATIENCE)
        .await
        .expect("leader with one node down");
    c.restart(follower).unwrap();
    assert_ne!(c.pid(follower), Some(pid));
    assert!(c.pid_path(follower).exists());

    // Kill the leader: the others elect a new one.
    let old = c.leader(&client, PATIENCE).await.unwrap();
    c.kill(old).unwrap();
    let new = c.leader(&client, PATIENCE).await.expect("a new leader");
    assert_ne!(new, old);
    c.start(old).unwrap();
    c.start(old).unwrap(); // already running: no-op

    // Pause and resume.
    let pid = c.pid(old).unwrap();
    c.pause(old).unwrap();
    assert_eq!(state(pid), 'T');
    assert!(c.is_running(old) && c.is_paused(old));
    c.resume(old).unwrap();
    assert_ne!(state(pid), 'T');
    c.leader(&client, PATIENCE).await.unwrap();

    // stop_all, with one node paused: nothing left.
    c.pause(leader).unwrap();
    let pids: Vec<u32> = (1..=3).map(|i| c.pid(i).unwrap()).collect();
    c.stop_all().unwrap();
    for (i, pid) in pids.iter().enumerate() {
        assert!(gone(*pid), "node {} pid {pid} still there", i + 1);
        assert!(!c.is_running(i as u64 + 1));
        assert!(!c.pid_path(i as u64 + 1).exists());
    }
    let log = std::fs::read_to_string(c.log_path(1)).unwrap();
    assert!(log.contains("=== raft-lab: starting node 1"));
    client.close().await;
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_stops_every_node_even_a_paused_one() {
    let _serial = serial().await;
    let dir = temp_dir("drop");
    let mut c = LocalCluster::create(&dir, &options(16111)).unwrap();
    let pids: Vec<u32> = (1..=3).map(|i| c.pid(i).unwrap()).collect();
    c.pause(2).unwrap();
    let started = Instant::now();
    drop(c);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "clean exits, no grace timeout"
    );
    for pid in pids {
        assert!(gone(pid), "pid {pid} survived Drop");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_status_down_with_pid_files() {
    let _serial = serial().await;
    let dir = temp_dir("up");
    let opts = ClusterOptions {
        bugs: vec!["stale-read".into()],
        ..options(16121)
    };
    let (c, report) = local::up(&dir, &opts).expect("cluster up");
    assert_eq!(report.started.len(), 3);
    assert!(report.already_running.is_empty());
    let config = report.config.clone();
    assert_eq!(config, dir.join("cluster.toml"));
    let client = connector(&c);
    c.leader(&client, PATIENCE).await.unwrap();
    let pids: Vec<u32> = report.started.iter().map(|(_, pid)| *pid).collect();
    drop(c); // detached: the nodes keep running
    for pid in &pids {
        assert!(!gone(*pid));
    }

    // Opened through the pid files: the same processes, with the bug they were started with.
    let opened = LocalCluster::open(&config).unwrap();
    for (id, pid) in &report.started {
        assert!(opened.is_running(*id));
        assert_eq!(opened.pid(*id), Some(*pid));
    }
    assert_eq!(opened.bugs(), ["stale-read".to_string()]);
    drop(opened);

    let reports = cluster::status(&config).await.unwrap();
    assert_eq!(reports.len(), 3);
    for r in &reports {
        let status = r.status.as_ref().expect("node answers status");
        assert_eq!(status.bugs, vec!["stale-read".to_string()]);
        assert!(r.pid.is_some());
        // A fresh certificate (one year by default) is reported and far from expiring.
        let not_after = status.cert_not_after.expect("certificate end reported");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(not_after > now + 300 * 86_400, "{not_after}");
    }
    let table = cluster::format_status(&reports);
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.lines().all(|l| l.contains(" term ")), "{table}");

    // `up` again: nothing to start.
    let (_, again) = local::up(&config, &opts).unwrap();
    assert_eq!(again.already_running, vec![1, 2, 3]);

    let down = local::down(&config).unwrap();
    assert_eq!(down.stopped, vec![1, 2, 3]);
    for pid in &pids {
        assert!(gone(*pid), "pid {pid} survived down");
    }
    for id in 1..=3 {
        assert!(!dir.join(format!("pids/node-{id}.pid")).exists());
    }
    let down = local::down(&config).unwrap();
    assert_eq!(down.not_running, vec![1, 2, 3]);
    let reports = cluster::status(&config).await.unwrap();
    assert!(reports.iter().all(|r| r.status.is_err() && r.pid.is_none()));
    client.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_what_failed() {
    let _serial = serial().await;
    let dir = temp_dir("errors");

    let err = LocalCluster::create(
        &dir,
        &ClusterOptions {
            bugs: vec!["no-such-bug".into()],
            ..options(16131)
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("no-such-bug"), "{err}");

    let err = LocalCluster::create(
        &dir,
        &ClusterOptions {
            nodes: 0,
            ..options(16131)
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("not 0"), "{err}");

    let missing = PathBuf::from("/nonexistent/raft-node");
    let err = LocalCluster::create(
        &dir,
        &ClusterOptions {
            raft_node: missing.clone(),
            ..options(16131)
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/raft-node"), "{err}");

    // A cluster.toml is there now: create refuses to overwrite it.
    let err = LocalCluster::create(&dir, &options(16131)).unwrap_err();
    assert!(matches!(err, ClusterError::Exists(_)), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    // Nodes that exit at once: the leader wait says so and points at the logs.
    let mut c = LocalCluster::create(
        &dir,
        &ClusterOptions {
            raft_node: PathBuf::from("/bin/false"),
            ..options(16131)
        },
    )
    .unwrap();
    let client = connector(&c);
    let err = c
        .leader(&client, Duration::from_millis(500))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("node 1 exited") && err.contains(&dir.display().to_string()),
        "{err}"
    );
    assert!(matches!(
        c.kill(9),
        Err(ClusterError::UnknownNode { id: 9, .. })
    ));
    assert!(matches!(
        c.pause(1),
        Err(ClusterError::NotRunning { id: 1 })
    ));
    c.stop_all().unwrap();
    client.close().await;
    drop(c);

    let err = LocalCluster::open(Path::new("/nonexistent/cluster.toml")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/cluster.toml"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_binary_is_found_beside_the_executable_or_through_the_environment() {
    // Test executables live in target/<profile>/deps; raft-node one level up.
    let _ = raft_node();
    let found = local::raft_node_binary().expect("raft-node found");
    assert!(found.ends_with("raft-node"), "{}", found.display());
}
