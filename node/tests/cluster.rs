//! Real `raft-node` processes on loopback: elections, replication, SIGKILL of the leader,
//! catching up by log and by snapshot, foreign certificates, garbage on the wire, client
//! sessions (unknown ids, the value limit, sessions restored from a snapshot), the exit code
//! of a node whose storage fails.

mod support;

use model::kv::{Command, Operation, Outcome, Value};
use node::protocol::{Request, Response};
use node::transport::ClientConnector;
use std::time::Duration;
use support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_replicate_survive_leader_kill_and_catch_up() {
    let mut cluster = Cluster::start("three", 3, 40).await;
    let leader = cluster.leader(&[1, 2, 3]).await;

    for i in 0..20 {
        cluster.write(&format!("k{i}"), i).await;
    }
    // Every node applies the writes (replication), whatever its role.
    let commit = cluster
        .status(leader)
        .await
        .expect("leader answers")
        .commit_index;
    for id in 1..=3 {
        cluster.applied(id, commit).await;
    }

    // Kill the leader: another is elected and no acknowledged write is lost.
    cluster.kill(leader);
    let survivors: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    let second = cluster.leader(&survivors).await;
    assert_ne!(second, leader);
    for i in 0..20 {
        assert_eq!(cluster.read(&format!("k{i}")).await, Some(Value::Int(i)));
    }

    // While the old leader is down, write enough for the others to compact their logs
    // (snapshot_every = 40): it must then catch up by snapshot, then by log.
    for i in 20..120 {
        cluster.write(&format!("k{i}"), i).await;
    }
    let status = cluster.status(second).await.expect("leader answers");
    assert!(status.snapshot_index > 0, "leader compacted: {status:?}");
    cluster.restart(leader);
    let caught_up = cluster.applied(leader, status.commit_index).await;
    assert!(
        caught_up.snapshot_index > 0,
        "caught up by snapshot: {caught_up:?}"
    );
    for i in [0, 57, 119] {
        assert_eq!(cluster.read(&format!("k{i}")).await, Some(Value::Int(i)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_lose_no_acknowledged_write_when_the_leader_dies() {
    let mut cluster = Cluster::start("five", 5, 1000).await;
    let leader = cluster.leader(&[1, 2, 3, 4, 5]).await;
    for i in 0..10 {
        cluster.write("x", i).await;
    }
    cluster.kill(leader);
    let survivors: Vec<u64> = (1..=5).filter(|&id| id != leader).collect();
    cluster.leader(&survivors).await;
    assert_eq!(cluster.read("x").await, Some(Value::Int(9)));
    cluster.write("x", 10).await;
    assert_eq!(cluster.read("x").await, Some(Value::Int(10)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_foreign_ca_is_refused_and_garbage_leaves_nodes_serving() {
    let mut cluster = Cluster::start("foreign", 3, 1000).await;
    cluster.leader(&[1, 2, 3]).await;
    cluster.write("a", 1).await;

    // Node 3 comes back with certificates from another CA: every peer refuses it.
    cluster.kill(3);
    let foreign = cluster.path("foreign-certs");
    support::foreign_certs(&cluster.config, &foreign);
    let foreign_data = cluster.path("foreign-data");
    cluster.spawn(
        3,
        &[
            "--certs",
            foreign.to_str().expect("utf-8 path"),
            "--data",
            foreign_data.to_str().expect("utf-8 path"),
        ],
    );
    let impostor = ClientConnector::new(&foreign).expect("foreign client");
    let deadline = std::time::Instant::now() + support::PATIENCE;
    let impostor_status = loop {
        if let Ok(Response::Status(status)) = impostor
            .call(3, cluster.addr(3), &Request::Status, Duration::from_secs(1))
            .await
        {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "impostor never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The real cluster keeps working with two nodes and never lets node 3 in.
    let leader = cluster.leader(&[1, 2]).await;
    cluster.write("a", 2).await;
    // The link to the real node 3 dies (idle timeout) and is never re-established.
    let deadline = std::time::Instant::now() + support::PATIENCE;
    loop {
        let status = cluster.status(leader).await.expect("leader answers");
        let peer3 = status
            .peers
            .iter()
            .find(|p| p.id == 3)
            .expect("peer 3 listed");
        if !peer3.connected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(impostor_status.leader.is_none(), "{impostor_status:?}");
    let impostor_now = loop {
        if let Ok(Response::Status(status)) = impostor
            .call(3, cluster.addr(3), &Request::Status, Duration::from_secs(1))
            .await
        {
            break status;
        }
    };
    assert_eq!(
        impostor_now.last_index, 0,
        "nothing replicated to the impostor"
    );
    assert!(impostor_now.leader.is_none(), "{impostor_now:?}");
    // Our client certificate is refused by the impostor, and its by our nodes.
    assert!(cluster
        .client
        .call(3, cluster.addr(3), &Request::Status, Duration::from_secs(1))
        .await
        .is_err());
    assert!(impostor
        .call(1, cluster.addr(1), &Request::Status, Duration::from_secs(1))
        .await
        .is_err());

    // Garbage datagrams at every node: they keep serving.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for id in 1..=2 {
        for len in [1usize, 17, 1200, 1500] {
            let junk: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            socket.send_to(&junk, cluster.addr(id)).expect("send junk");
        }
    }
    cluster.write("a", 3).await;
    assert_eq!(cluster.read("a").await, Some(Value::Int(3)));
}

/// Runs `command` on the one-node `cluster` to its outcome.
async fn call(cluster: &Cluster, command: Command) -> Outcome {
    let mut target = 1;
    support::op_via(
        &cluster.client,
        &cluster.addrs,
        &cluster.dir,
        command,
        &mut target,
    )
    .await
    .0
}

/// A request under a session the cluster never registered is answered "session expired" and
/// not applied; a value above the limit is refused naming it; and a session restored from a
/// snapshot after a crash still answers a retry with the remembered result, without applying
/// it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_refuse_unknown_ids_and_big_values_and_survive_a_restart_from_a_snapshot() {
    let mut cluster = Cluster::start("sessions", 1, 3).await;
    cluster.leader(&[1]).await;
    let shared = node::certs::SHARED_CLIENT_NAMESPACE;
    let command = |client, seq, op| Command {
        client,
        seq,
        op,
        time_ms: 0,
    };
    let mut target = 1;

    let stranger = node::certs::client_id(shared, 1 << 39);
    let write = Operation::Write {
        key: "k".into(),
        value: Value::Int(1),
    };
    assert_eq!(
        call(&cluster, command(stranger, 1, write)).await,
        Outcome::SessionExpired
    );

    let session = cluster.register(&mut target).await;
    let limit = model::kv::DEFAULT_MAX_VALUE_BYTES;
    let big = Operation::Write {
        key: "big".into(),
        value: Value::Str("x".repeat(limit as usize + 1)),
    };
    assert_eq!(
        call(&cluster, command(session, 1, big)).await,
        Outcome::TooLarge {
            size: limit + 1,
            limit
        }
    );
    let append = command(
        session,
        2,
        Operation::Append {
            key: "s".into(),
            suffix: "ab".into(),
        },
    );
    assert_eq!(
        call(&cluster, append.clone()).await,
        Outcome::Appended { len: 2 }
    );
    let after_append = cluster.status(1).await.expect("node answers").applied_index;
    // Enough entries for the node to compact (snapshot_every = 3) past the append.
    for i in 0..6 {
        cluster.write("w", i).await;
    }
    cluster.kill(1);
    cluster.restart(1);
    cluster.leader(&[1]).await;
    let status = cluster.status(1).await.expect("node answers");
    assert!(
        status.snapshot_index >= after_append,
        "restarted from a snapshot covering the append: {status:?}"
    );
    assert_eq!(call(&cluster, append).await, Outcome::Appended { len: 2 });
    assert_eq!(cluster.read("k").await, None);
    assert_eq!(cluster.read("big").await, None);
    assert_eq!(cluster.read("s").await, Some(Value::Str("ab".into())));
}

/// A node whose log write fails stops with exit code 4, which the systemd unit does not
/// restart: a restart would read the log through the page cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_exits_with_code_4() {
    let mut cluster = Cluster::start("storage-failure", 1, 1_000_000).await;
    // Small segments: the log soon needs a new one. ([storage] is the file's last table.)
    cluster.kill(1);
    let mut toml = std::fs::read_to_string(&cluster.config).unwrap();
    toml.push_str("segment_bytes = 4096\n");
    std::fs::write(&cluster.config, toml).unwrap();
    cluster.restart(1);
    cluster.leader(&[1]).await;
    cluster.write("k", 0).await;
    let last = cluster.status(1).await.expect("node answers").last_index;
    // Directories where the next segments' files go: creating one fails (also as root).
    let wal = cluster.dir.join("data/node-1/wal");
    for index in last + 1..=last + 400 {
        std::fs::create_dir(wal.join(format!("{index:020}.log"))).unwrap();
    }
    // Writes until the node stops: one of them needs a new segment.
    let mut target = 1;
    let session = cluster.register(&mut target).await;
    let deadline = std::time::Instant::now() + support::PATIENCE;
    let mut seq = 0;
    let status = loop {
        if let Some(status) = cluster.exited(1) {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "node 1 kept running");
        seq += 1;
        let request = Request::Op(Command {
            client: session,
            seq,
            op: Operation::Write {
                key: "k".into(),
                value: Value::Str("v".repeat(200)),
            },
            time_ms: 0,
        });
        let _ = cluster
            .client
            .call(1, cluster.addr(1), &request, Duration::from_secs(1))
            .await;
    };
    assert_eq!(status.code(), Some(4), "{status}");
    // ... which is the code the systemd unit does not restart.
    let unit =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/raft-node@.service");
    let unit = std::fs::read_to_string(&unit).unwrap();
    assert!(
        unit.lines()
            .any(|l| l.trim() == "RestartPreventExitStatus=4"),
        "{unit}"
    );
    let log = std::fs::read_to_string(cluster.dir.join("node-1.log")).unwrap();
    assert!(log.contains("create segment"), "{log}");
}
