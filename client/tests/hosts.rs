//! The lab on separate network stacks, as CI runs it: a 5-node cluster, one Linux
//! network namespace per node on a bridge, started and faulted through the command template
//! (`ip netns exec {host} sh -c`: the code path a remote `ssh {host}` cluster takes), must
//! pass the kv workload under partitions, packet loss and latency; and leave nothing behind.
//! Also: through the default `ssh` template (a stand-in `ssh` first on `PATH`), a host ssh
//! would read as an option is refused before anything runs, and a good host comes after `--`.

mod support;

use support::{netns_available, own_namespaces, valid_run};

use client::lab::cluster::HostsMode;
use client::lab::workload::{parse_nemesis_list, Overrides};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_in_namespaces_pass_kv_under_partitions_loss_and_latency() {
    if !netns_available() {
        return;
    }
    support::ensure_raft_node();
    let root = support::results_root("hosts-netns");
    let overrides = Overrides {
        nodes: Some(5),
        time_limit: Some(20.0),
        nemesis: Some(parse_nemesis_list(
            "isolate-leader,packet-loss,latency,partition-halves,kill",
        )),
        seed: Some(9),
        results: Some(root.join("results")),
        hosts: HostsMode::Netns,
        quiet: true,
        ..Overrides::default()
    };
    let outcome = valid_run("ci", &overrides).await;
    let summary = &outcome.summary;
    assert!(summary.counts["all"].ok > 100, "{summary:?}");
    let applied = &summary.nemesis.applied;
    for kind in ["latency", "packet-loss"] {
        assert!(
            applied.get(kind).copied().unwrap_or(0) >= 1,
            "{kind} applied: {applied:?}"
        );
    }
    let partitions: u64 = ["isolate-leader", "partition-halves"]
        .iter()
        .filter_map(|k| applied.get(*k))
        .sum();
    assert!(partitions >= 1, "a partition applied: {applied:?}");

    // The nodes really lived on their own addresses, and logged into the run folder.
    let config = std::fs::read_to_string(outcome.run_dir.join("cluster/cluster.toml")).unwrap();
    assert!(config.contains("ip netns exec {host} sh -c"), "{config}");
    assert!(config.contains("addr = \"10.213."), "{config}");
    for id in 1..=5 {
        let log = outcome.run_dir.join(format!("cluster/node-{id}.log"));
        assert!(
            std::fs::metadata(&log).is_ok_and(|m| m.len() > 0),
            "{}",
            log.display()
        );
    }
    // Everything is torn down: no namespace of this process is left.
    assert_eq!(own_namespaces(), Vec::<String>::new());
}

/// `raft-lab cluster down` on a remote cluster file with the default command template, with
/// a stand-in `ssh` first on `PATH` that records its arguments: a node whose host starts with
/// `-` (ssh would take `-oProxyCommand=...` as an option and run it) makes the lab refuse the
/// file, naming the node, before any ssh runs; with a good host, ssh is run as
/// `ssh -- HOST COMMAND`, so no host can ever be read as an option.
#[test]
fn default_ssh_template_never_lets_a_host_be_an_option() {
    let dir = support::results_root("hosts-ssh");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = dir.join("ssh-calls");
    let ssh = bin.join("ssh");
    std::fs::write(
        &ssh,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let down = |host: &str| {
        let config = dir.join("cluster.toml");
        std::fs::write(
            &config,
            format!(
                "[[node]]\nid = 1\naddr = \"127.0.0.1:15901\"\nhost = \"{host}\"\n\
                 [remote]\ndir = \"{}\"\n",
                dir.display()
            ),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_raft-lab"))
            .args(["cluster", "down", "--config"])
            .arg(&config)
            .env("PATH", &path)
            .output()
            .expect("raft-lab runs")
    };

    let refused = down("-oProxyCommand=false");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("-oProxyCommand=false") && stderr.contains("node 1"),
        "{stderr}"
    );
    assert!(!calls.exists(), "ssh ran for a refused cluster file");

    let ok = down("db1");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let recorded = std::fs::read_to_string(&calls).expect("the stand-in ssh ran");
    let args: Vec<&str> = recorded.lines().collect();
    assert_eq!(args.get(..2), Some(&["--", "db1"][..]), "{recorded}");
    let _ = std::fs::remove_dir_all(&dir);
}
