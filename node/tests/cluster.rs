//! Real `raft-node` processes on loopback: elections, replication, SIGKILL of the leader,
//! catching up by log and by snapshot, foreign certificates, garbage on the wire.

mod support;

use model::kv::Value;
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
