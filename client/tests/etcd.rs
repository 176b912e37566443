//! An etcd cluster as the system under test, through the `Db` trait: three members from the
//! `etcd` on `PATH`, with the lab's certificates; one is killed and restarted, one paused and
//! resumed, and a leader is found from etcd's status API each time. Skipped (saying why)
//! without `etcd`, unless `RAFTLAB_REQUIRE_ETCD=1`, where that is a failure.

use client::db::etcd::{etcd_binary, EtcdCluster, EtcdOptions};
use client::db::{Db, Needs};
use std::path::PathBuf;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

fn etcd() -> Option<PathBuf> {
    match etcd_binary(None) {
        Ok(path) => Some(path),
        Err(e) if std::env::var_os("RAFTLAB_REQUIRE_ETCD").is_some_and(|v| v == "1") => {
            panic!("RAFTLAB_REQUIRE_ETCD=1 but {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED the etcd test: {e}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_killed_restarted_paused_and_led() {
    let Some(etcd) = etcd() else { return };
    let dir = std::env::temp_dir().join(format!("raftlab-etcd-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut opts = EtcdOptions::new(3, etcd);
    opts.base_port = 24379;
    let mut cluster = EtcdCluster::create(&dir, &opts).expect("the etcd cluster starts");
    for file in ["certs/ca.pem", "certs/node-2.pem", "certs/client.key"] {
        assert!(dir.join(file).exists(), "{file}");
    }
    let nodes = Db::nodes(&cluster);
    assert_eq!(nodes.len(), 3);
    for node in &nodes {
        let ip = node.socket.expect("a client address").ip().to_string();
        assert_eq!(ip, format!("127.0.0.{}", 10 + node.id));
    }
    let leader = cluster.leader(PATIENCE).await.expect("a leader");
    assert!(dir.join(format!("data/node-{leader}")).is_dir());

    // The leader killed: the other two elect one of themselves.
    Db::kill(&mut cluster, leader).expect("kill");
    assert!(!cluster.is_running(leader));
    let next = cluster.leader(PATIENCE).await.expect("a new leader");
    assert_ne!(next, leader);

    // Restarted from its data directory: it rejoins, and a majority agrees on a leader.
    Db::start(&mut cluster, leader).expect("restart");
    assert!(cluster.is_running(leader));
    cluster
        .leader(PATIENCE)
        .await
        .expect("a leader after the restart");

    // A follower paused and resumed.
    let follower = (1..=3).find(|&id| id != next).unwrap_or(1);
    Db::pause(&mut cluster, follower).expect("pause");
    cluster
        .leader(PATIENCE)
        .await
        .expect("a leader with one paused");
    Db::resume(&mut cluster, follower).expect("resume");

    // Partitions are refused with the reason; signals are not.
    let partition = Needs {
        network: true,
        ..Needs::default()
    };
    let why = Db::supports(&cluster, partition).unwrap_err();
    assert!(why.contains("network namespace"), "{why}");
    let signals = Needs {
        processes: true,
        ..Needs::default()
    };
    assert_eq!(Db::supports(&cluster, signals), Ok(()));

    Db::teardown(&mut cluster, true, &dir).expect("teardown");
    for id in 1..=3 {
        assert!(!cluster.is_running(id), "member {id} stopped");
        let log = std::fs::read_to_string(dir.join(format!("node-{id}.log"))).unwrap_or_default();
        assert!(log.contains("starting etcd member"), "member {id}'s log");
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
