//! Shared by the lab's integration tests.
#![allow(dead_code)] // each test binary uses a different part

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Builds `raft-node` into this test's target directory (same profile, so the lab finds it
/// beside its own binaries) and returns its path; `RAFT_NODE_BIN` overrides.
pub fn raft_node() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| built("node", "raft-node", "RAFT_NODE_BIN"))
        .clone()
}

/// Builds `raft-lazyfs` as [`raft_node`] builds `raft-node`; `RAFT_LAZYFS_BIN` overrides.
pub fn raft_lazyfs() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| built("lazyfs", "raft-lazyfs", "RAFT_LAZYFS_BIN"))
        .clone()
}

/// `cargo build -p package --bin bin` into this test's target directory, unless `env` names
/// the binary.
fn built(package: &str, bin: &str, env: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let mut build = Command::new(env!("CARGO"));
    // Cargo's per-package variables of this test would change build-script fingerprints and
    // make every nested build recompile half the tree.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" {
            build.env_remove(key);
        }
    }
    build
        .args(["build", "-p", package, "--bin", bin])
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo build runs");
    assert!(status.success(), "building {bin} failed");
    profile_dir.join(bin)
}

/// Whether FUSE mounts can be made here (/dev/fuse and fusermount3); says why not, and
/// panics instead when `RAFTLAB_REQUIRE_FUSE=1`. Builds `raft-lazyfs` when they can.
pub fn fuse_usable() -> bool {
    match lazyfs::fs::unavailable() {
        None => {
            raft_lazyfs();
            true
        }
        Some(why) if std::env::var_os("RAFTLAB_REQUIRE_FUSE").is_some_and(|v| v == "1") => {
            panic!("RAFTLAB_REQUIRE_FUSE=1 but {why}")
        }
        Some(why) => {
            eprintln!("skipping: lazy disks unavailable: {why}");
            false
        }
    }
}

/// Makes sure the `raft-node` binary the lab launches exists.
pub fn ensure_raft_node() {
    raft_node();
}

/// A fresh results root for one test.
pub fn results_root(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("raftlab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    root
}

/// Whether a datagram from `from` reaches `to` within 300 ms.
pub fn delivered(from: &UdpSocket, to: &UdpSocket) -> bool {
    let payload = b"ping";
    from.send_to(payload, to.local_addr().unwrap()).unwrap();
    to.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 16];
    loop {
        match to.recv_from(&mut buf) {
            Ok((n, src)) if src == from.local_addr().unwrap() && &buf[..n] == payload => {
                return true
            }
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

/// Namespaces need root and `ip`: skipped (saying why) without them, unless
/// `RAFTLAB_REQUIRE_NETNS=1` (CI), where that is a failure.
pub fn netns_available() -> bool {
    match client::net::netns::check_available() {
        Ok(()) => true,
        Err(e) if std::env::var_os("RAFTLAB_REQUIRE_NETNS").is_some_and(|v| v == "1") => {
            panic!("RAFTLAB_REQUIRE_NETNS=1 but network namespaces are unavailable: {e}")
        }
        Err(e) => {
            eprintln!("skipping: network namespaces unavailable: {e}");
            false
        }
    }
}

/// Names of this process's namespaces still present.
pub fn own_namespaces() -> Vec<String> {
    let prefix = format!("rl{:x}x", std::process::id());
    let out = Command::new("ip").args(["netns", "list"]).output();
    let listing = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// The `etcd` on `PATH`; `None` (saying why) without one, unless `RAFTLAB_REQUIRE_ETCD=1`
/// (CI), where that is a failure.
pub fn etcd() -> Option<PathBuf> {
    match client::db::etcd::etcd_binary(None) {
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

/// Runs `workloads/NAME.toml` with `overrides` and checks the run is judged valid.
pub async fn valid_run(
    name: &str,
    overrides: &client::lab::workload::Overrides,
) -> client::lab::run::RunOutcome {
    let workload = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workloads")
        .join(format!("{name}.toml"));
    let outcome = client::lab::run::run_detailed(&workload, overrides)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let summary = &outcome.summary;
    assert_eq!(outcome.verdict, checker::Verdict::Valid, "{summary:?}");
    outcome
}
