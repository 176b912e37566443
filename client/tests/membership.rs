//! Membership and leadership from the command line's library, on a real local cluster: three
//! nodes up, writes, node 4 added (certificate issued, learner, caught up, promoted), the
//! original leader removed (leadership moves first), leadership moved by hand, the cluster
//! restarted from its edited `cluster.toml`, and every acknowledged write read back with
//! each voter leading in turn. Bad requests get one clear error and change nothing.

mod support;

use client::cli::membership;
use client::db::local::{self, ClusterOptions};
use client::kv::{KvCluster, OpResult};
use model::core::NodeId;
use model::kv::{Operation, Outcome, Value};
use node::config::ClusterConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::raft_node;

const OP_TIMEOUT: Duration = Duration::from_secs(10);

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("raftlab-membership-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options() -> ClusterOptions {
    ClusterOptions {
        nodes: 3,
        raft_node: raft_node(),
        tick_ms: 20,
        base_port: 24100,
        stop_grace: Duration::from_secs(5),
        ..ClusterOptions::default()
    }
}

async fn write(path: &Path, key: &str, value: i64) {
    let kv = KvCluster::connect(&ClusterConfig::load(path).unwrap()).unwrap();
    let result = kv
        .client(OP_TIMEOUT)
        .execute(Operation::Write {
            key: key.into(),
            value: Value::Int(value),
        })
        .await;
    kv.close().await;
    assert_eq!(result, OpResult::Ok(Outcome::Written), "write {key}");
}

async fn read(path: &Path, key: &str) -> OpResult {
    let kv = KvCluster::connect(&ClusterConfig::load(path).unwrap()).unwrap();
    let result = kv
        .client(OP_TIMEOUT)
        .execute(Operation::Read { key: key.into() })
        .await;
    kv.close().await;
    result
}

fn voters(m: &client::kv::admin::Members) -> Vec<NodeId> {
    m.members.iter().filter(|m| m.voter).map(|m| m.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_remove_transfer_and_every_voter_holds_every_write() {
    support::ensure_raft_node();
    let dir = temp_dir("script");
    let path = dir.join("cluster.toml");
    let (cluster, _) = local::up(&path, &options()).expect("cluster up");
    drop(cluster);
    for i in 0..5 {
        write(&path, &format!("k{i}"), i).await;
    }

    let before = membership::members(&path).await.expect("members");
    assert_eq!(voters(&before), vec![1, 2, 3]);
    let first_leader = before.leader;

    membership::add(&path, 4, "127.0.0.14:24104", None)
        .await
        .expect("add node 4");
    assert!(path.with_file_name("certs").join("node-4.pem").is_file());
    let after_add = membership::members(&path).await.expect("members");
    assert_eq!(voters(&after_add), vec![1, 2, 3, 4]);
    for i in 5..8 {
        write(&path, &format!("k{i}"), i).await;
    }

    membership::remove(&path, first_leader)
        .await
        .expect("remove the first leader");
    let config = ClusterConfig::load(&path).expect("edited cluster.toml");
    assert!(config.node(first_leader).is_none());
    assert!(config.removed.contains(&first_leader));
    assert_eq!(config.bootstrap, vec![1, 2, 3]);
    let remaining = membership::members(&path).await.expect("members");
    assert!(!voters(&remaining).contains(&first_leader));
    assert_ne!(remaining.leader, first_leader);

    // Bad requests: one clear error each, nothing changed.
    let err = membership::add(&path, first_leader, "127.0.0.19:24109", None)
        .await
        .expect_err("a removed id");
    assert!(format!("{err:#}").contains("never reused"), "{err:#}");
    let err = membership::add(&path, 5, "127.0.0.14:24104", None)
        .await
        .expect_err("an address in use");
    assert!(
        format!("{err:#}").contains("already used by node 4"),
        "{err:#}"
    );
    let err = membership::transfer(&path, 9)
        .await
        .expect_err("unknown id");
    assert!(format!("{err:#}").contains("not in the cluster"), "{err:#}");

    // The cluster restarts from the edited file: every node replays its log from the
    // bootstrap voters.
    local::down(&path).expect("down");
    let (cluster, _) = local::up(&path, &options()).expect("up again");
    drop(cluster);
    for to in voters(&remaining) {
        membership::transfer(&path, to).await.expect("transfer");
        let m = membership::members(&path).await.expect("members");
        assert_eq!(m.leader, to);
        for i in 0..8 {
            let got = read(&path, &format!("k{i}")).await;
            assert_eq!(
                got,
                OpResult::Ok(Outcome::Value(Some(Value::Int(i)))),
                "k{i} with node {to} leading"
            );
        }
    }
    let last = membership::members(&path).await.expect("members");
    println!("{}", membership::format_members(&last));
    local::down(&path).expect("down");
}
