//! Shared by the lab's integration tests.
#![allow(dead_code)] // each test binary uses a different part

/// Makes sure the `raft-node` binary the lab launches exists (CI builds it with the
/// workspace; a lone `cargo test -p client` may not have).
pub fn ensure_raft_node() {
    if client::cluster::raft_node_binary().is_ok() {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "-p", "node", "--bin", "raft-node"])
        .status()
        .expect("running cargo build");
    assert!(
        status.success(),
        "cargo build -p node --bin raft-node failed"
    );
}

/// A fresh results root for one test.
pub fn results_root(name: &str) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("raftlab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    root
}
