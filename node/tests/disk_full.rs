//! A real `raft-node` whose data directory is on a lazyfs mount that fills up: it refuses
//! client writes while its writes fail for want of space, keeps running, and carries on by
//! itself once space returns, with no acknowledged write lost. Skipped (with the reason
//! printed) where /dev/fuse or `fusermount3` is missing, unless `RAFTLAB_REQUIRE_FUSE=1`.

mod support;

use model::kv::{Command, Operation, Outcome, Value};
use node::protocol::{Request, Response};
use std::path::Path;
use std::time::{Duration, Instant};
use support::Cluster;

/// Why FUSE cannot be used here, if it cannot.
fn fuse_missing() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|d| d.join("fusermount3").is_file()) {
        return Some("fusermount3 is not on PATH (Debian package fuse3)".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_until_space_returns() {
    if let Some(reason) = fuse_missing() {
        assert_ne!(
            std::env::var("RAFTLAB_REQUIRE_FUSE").as_deref(),
            Ok("1"),
            "RAFTLAB_REQUIRE_FUSE=1 but {reason}"
        );
        eprintln!("skipping the disk-full test: {reason}");
        return;
    }
    let mut cluster = Cluster::start("disk-full", 1, 1_000_000).await;
    cluster.leader(&[1]).await;
    let mut target = 1;
    let session = support::register_via(
        &cluster.client,
        &cluster.addrs,
        &cluster.dir,
        node::certs::SHARED_CLIENT_NAMESPACE,
        &mut target,
    )
    .await;
    let write = |seq: u64, value: i64| Command {
        client: session,
        seq,
        op: Operation::Write {
            key: "k".into(),
            value: Value::Int(value),
        },
        time_ms: 0,
    };
    let (outcome, _) = support::op_via(
        &cluster.client,
        &cluster.addrs,
        &cluster.dir,
        write(1, 1),
        &mut target,
    )
    .await;
    assert_eq!(outcome, Outcome::Written);

    // The node's data moves under a lazyfs mount, which fills up before the node restarts:
    // its election's new term needs a new `hardstate` file.
    cluster.kill(1);
    let data = cluster.dir.join("data");
    let backing = cluster.dir.join("backing");
    std::fs::rename(&data, &backing).unwrap();
    std::fs::create_dir(&data).unwrap();
    let control = cluster.dir.join("lazyfs.sock");
    let mount = lazyfs::fs::spawn(&backing, &data, &control, 1).unwrap();
    let command = |c: &str| lazyfs::control::request(&control, c).unwrap();
    assert_eq!(command("fill"), "ok");
    cluster.restart(1);

    // Writes are refused at once, saying why; the node keeps running.
    let request = Request::Op(write(2, 2));
    let deadline = Instant::now() + support::PATIENCE;
    let refusal = loop {
        assert!(cluster.exited(1).is_none(), "node 1 stopped");
        assert!(Instant::now() < deadline, "no disk-full refusal");
        let reply = cluster
            .client
            .call(1, cluster.addr(1), &request, Duration::from_secs(1))
            .await;
        match reply {
            Ok(Response::Refused(why)) if why.contains("disk is full") => break why,
            Ok(Response::Done(outcome)) => {
                panic!("a write was applied on a full disk: {outcome:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert!(refusal.contains("not proposed"), "{refusal}");

    // Space returns: the same write goes through, and the first one is still there.
    assert_eq!(command("free"), "ok");
    let (outcome, _) = support::op_via(
        &cluster.client,
        &cluster.addrs,
        &cluster.dir,
        write(2, 2),
        &mut target,
    )
    .await;
    assert_eq!(outcome, Outcome::Written);
    assert_eq!(cluster.read("k").await, Some(Value::Int(2)));
    assert!(cluster.exited(1).is_none(), "node 1 stopped");
    cluster.kill(1);
    let log = std::fs::read_to_string(cluster.dir.join("node-1.log")).unwrap();
    assert_eq!(
        log.matches("disk full: refusing client writes").count(),
        1,
        "{log}"
    );
    assert!(log.contains("writes resume"), "{log}");
    mount.unmount().unwrap();
    let _ = std::fs::remove_dir_all(&cluster.dir);
}
