//! A full disk. `Storage` on a tiny tmpfs (a real ENOSPC, no FUSE; skipped with the reason
//! printed where it cannot be mounted, e.g. not as root): a persist that finds no space
//! fails with `NoSpace`, leaves nothing behind and succeeds once space returns. And a real
//! `raft-node` whose data directory is on a lazyfs mount that fills up: it refuses client
//! writes while its writes fail for want of space, keeps running, and carries on by itself
//! once space returns, with no acknowledged write lost (skipped, with the reason printed,
//! where /dev/fuse or `fusermount3` is missing, unless `RAFTLAB_REQUIRE_FUSE=1`).

mod support;

use model::core::{Entry, EntryKind, HardState};
use model::kv::{Command, Operation, Outcome, Value};
use node::protocol::{Request, Response};
use node::storage::{Storage, StorageError, StorageOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command as Process;
use std::time::{Duration, Instant};
use support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_until_space_returns() {
    if let Some(reason) = lazyfs::fs::unavailable() {
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
    let session = cluster.register(&mut target).await;
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
    let mount = lazyfs::fs::spawn(&backing, &data, &control, 1, false).unwrap();
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

/// A tmpfs of a few MiB, unmounted (and its mount point removed) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts one, or says why it cannot.
    fn mount(tag: &str, size: &str) -> Result<Tmpfs, String> {
        let dir = std::env::temp_dir().join(format!("raftlab-tmpfs-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = Process::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!(
                "mount -t tmpfs failed (root needed): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Process::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Entries of about 3 KiB each.
fn big(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry<Command>> {
    indexes
        .map(|index| Entry {
            term,
            index,
            kind: EntryKind::Command(Command {
                client: 1,
                seq: index,
                op: Operation::Write {
                    key: "k".into(),
                    value: Value::Str("v".repeat(3000)),
                },
                time_ms: 0,
            }),
        })
        .collect()
}

#[test]
fn storage_on_a_full_tmpfs_fails_with_no_space_and_recovers() {
    let fs = match Tmpfs::mount("full", "4m") {
        Ok(fs) => fs,
        Err(reason) => {
            eprintln!("skipping the tmpfs test: {reason}");
            return;
        }
    };
    let data = fs.0.join("data");
    let hs = |term| HardState {
        term,
        voted_for: Some(1),
    };
    let (mut storage, _) = Storage::open(&data, StorageOptions::default()).unwrap();
    storage.persist(Some(hs(1)), None, &big(1..=5, 1)).unwrap();
    // Everything else the disk has goes to a filler file.
    let filler = fs.0.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![1u8; 64 << 10];
    let full = loop {
        if let Err(e) = file.write_all(&chunk) {
            break e;
        }
    };
    assert_eq!(full.raw_os_error(), Some(28), "{full}");
    drop(file);

    let err = storage.persist(Some(hs(2)), None, &[]).unwrap_err();
    assert!(matches!(err, StorageError::NoSpace { .. }), "{err:?}");
    assert!(err.to_string().contains("no space left on device"), "{err}");
    assert!(!data.join("hardstate.tmp").exists());
    // More than the log's zeros ahead (1 MiB): a short write, then ENOSPC.
    let err = storage.persist(None, None, &big(6..=1000, 1)).unwrap_err();
    assert!(matches!(err, StorageError::NoSpace { .. }), "{err:?}");

    std::fs::remove_file(&filler).unwrap();
    storage.persist(Some(hs(2)), None, &big(6..=6, 2)).unwrap();
    drop(storage);
    let (_, restored) = Storage::open(&data, StorageOptions::default()).unwrap();
    assert_eq!(restored.hard_state, hs(2));
    let got: Vec<(u64, u64)> = restored.entries.iter().map(|e| (e.index, e.term)).collect();
    let mut want: Vec<(u64, u64)> = (1..=5).map(|i| (i, 1)).collect();
    want.push((6, 2));
    assert_eq!(got, want, "none of the failed append's records");
}
