//! etcd members on "remote" hosts, through a REAL command template against this machine:
//! `env RAFTLAB_HOST={host} sh -c`, so every host is this machine but every action takes the
//! path `ssh {host}` takes (the version check, the certificates copied, `nohup etcd` with a
//! pid file, /proc checks, signals, logs fetched back, data removed, all shell commands
//! through the template). Three members on 127.0.0.31-33: started, led, killed and
//! restarted, paused and resumed, stopped, their logs fetched; a short `raft-lab run --db
//! etcd --cluster` under kills, pauses and membership changes judged valid, leaving nothing
//! running and no data on the hosts. With `ip netns exec {host} sh -c` as the template (one
//! network namespace per member, made by the test: root and `ip`; `RAFTLAB_REQUIRE_NETNS=1`
//! makes their absence a failure) a run under partitions by address is judged valid. Bad
//! input (etcd missing or too old on a host, a host that does not answer, colliding ports,
//! flags for members on this machine) is refused in one line
//! before anything starts. The Ctrl-C cleanup kills the members on their hosts. Skipped
//! (saying why) without `etcd`, unless `RAFTLAB_REQUIRE_ETCD=1`.

mod support;

use client::db::etcd::EtcdCluster;
use client::db::Db;
use client::lab::workload::{parse_nemesis_list, DbKind, Overrides};
use client::net::netns::NetnsHosts;
use node::config::ClusterConfig;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{etcd, netns_available, valid_run};

const TEMPLATE: &str = "env RAFTLAB_HOST={host} sh -c";
const PATIENCE: Duration = Duration::from_secs(30);

/// One etcd cluster at a time: two would share two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A client port `P` with `P + 1` free too on `ip`, from `base` on in steps of 10.
fn free_pair(ip: Ipv4Addr, base: u16) -> u16 {
    (0..200)
        .map(|k| base + 10 * k)
        .find(|&p| TcpListener::bind((ip, p)).is_ok() && TcpListener::bind((ip, p + 1)).is_ok())
        .expect("a free pair of ports")
}

/// `root/cluster.toml`: member N at `addrs[N-1]` (with `host` when given), `[remote]` with
/// `command`, `etcd` and `dir` = `root/hosts`.
fn write_cluster(
    root: &Path,
    members: &[Member],
    command: &str,
    etcd: &str,
    iface: &str,
) -> PathBuf {
    let mut text = String::new();
    for (i, (addr, host)) in members.iter().enumerate() {
        let _ = writeln!(text, "[[node]]\nid = {}\naddr = \"{addr}\"", i + 1);
        if let Some(host) = host {
            let _ = writeln!(text, "host = {host:?}");
        }
    }
    let _ = write!(
        text,
        "\n[remote]\ncommand = {command:?}\netcd = {etcd:?}\ndir = {:?}\niface = {iface:?}\n",
        root.join("hosts").display().to_string()
    );
    let path = root.join("cluster.toml");
    std::fs::write(&path, text).expect("cluster.toml");
    path
}

/// A member's client address and, if not its address's host, where the template reaches it.
type Member = (SocketAddr, Option<String>);

/// A fresh folder `name` and its `cluster.toml`: three members on 127.0.0.31-33 through the
/// local template, running `etcd`.
fn loopback_cluster(name: &str, etcd: &Path) -> (PathBuf, PathBuf) {
    let root = fresh_root(name);
    let etcd = etcd.display().to_string();
    let members: Vec<Member> = (1..=3)
        .map(|n| {
            let ip = Ipv4Addr::new(127, 0, 0, 30 + n);
            (SocketAddr::new(ip.into(), free_pair(ip, 27379)), None)
        })
        .collect();
    let file = write_cluster(&root, &members, TEMPLATE, &etcd, "lo");
    (root, file)
}

/// `raft-lab run --db etcd --cluster FILE --nemesis NEMESIS --results RESULTS --quiet`.
fn on_hosts(file: PathBuf, nemesis: &str, results: PathBuf) -> Overrides {
    Overrides {
        db: Some(DbKind::Etcd),
        cluster: Some(file),
        nemesis: Some(parse_nemesis_list(nemesis)),
        results: Some(results),
        quiet: true,
        ..Overrides::default()
    }
}

/// `raft-lab run workloads/ci.toml` with `overrides` refused, in one line holding `needle`.
async fn refused(overrides: &Overrides, needle: &str) {
    let workload = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/ci.toml");
    let err = client::lab::run::run(&workload, overrides)
        .await
        .expect_err(needle)
        .to_string();
    eprintln!("refused: {err}");
    assert!(err.contains(needle), "{needle}: {err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

fn fresh_root(name: &str) -> PathBuf {
    support::results_root(&format!("etcd-remote-{name}"))
}

/// The etcd cluster of `file` started on its hosts, its lab folder `root/lab`.
async fn start_on_hosts(root: &Path, file: &Path) -> EtcdCluster {
    let config = ClusterConfig::load(file).expect("cluster.toml");
    let lab = root.join("lab");
    tokio::task::spawn_blocking(move || EtcdCluster::create_remote(&lab, config))
        .await
        .expect("the start thread")
        .expect("the members start on their hosts")
}

/// Pids of live processes whose command line mentions `text` (our host folder).
fn processes_mentioning(text: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let state = client::control::process::state(*pid);
            String::from_utf8_lossy(&cmdline).contains(text) && !matches!(state, Some('Z') | None)
        })
        .collect()
}

/// Polls `condition` every 50 ms until it holds or `PATIENCE` passed.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_hosts_are_started_led_killed_paused_stopped_and_logged() {
    let Some(etcd) = etcd() else { return };
    let _serial = SERIAL.lock().await;
    let (root, file) = loopback_cluster("lifecycle", &etcd);
    let hosts_dir = root.join("hosts").display().to_string();
    let mut cluster = start_on_hosts(&root, &file).await;
    assert!(
        root.join("hosts/certs/node-2.key").is_file(),
        "certificates copied"
    );
    let leader = cluster.leader(PATIENCE).await.expect("a leader");

    // Killed through the template: the others elect another; restarted, it rejoins.
    let (mut cluster, pid) = tokio::task::spawn_blocking(move || {
        let pid = cluster.pid(leader).expect("the leader's pid");
        cluster.kill(leader).expect("kill");
        (cluster, pid)
    })
    .await
    .expect("the kill thread");
    assert!(!cluster.is_running(leader));
    assert!(!processes_mentioning(&hosts_dir).contains(&pid));
    let next = cluster.leader(PATIENCE).await.expect("a leader of two");
    assert_ne!(next, leader);
    cluster.start(leader).expect("restart");
    assert!(cluster.is_running(leader));

    // Paused and resumed by signal on its host.
    let follower = (1..=3).find(|id| *id != next).expect("a follower");
    let pid = cluster.pid(follower).expect("the follower's pid");
    cluster.pause(follower).expect("pause");
    eventually("paused", || {
        client::control::process::state(pid) == Some('T')
    });
    cluster.resume(follower).expect("resume");
    eventually("resumed", || {
        client::control::process::state(pid) != Some('T')
    });
    cluster.leader(PATIENCE).await.expect("a leader of three");

    // Stopped, the logs fetched into the lab's folder, the data removed on the hosts.
    let logs = root.join("logs");
    let mut cluster = tokio::task::spawn_blocking(move || {
        Db::teardown(&mut cluster, true, &logs).expect("teardown");
        Db::drop_data(&mut cluster);
        cluster
    })
    .await
    .expect("the teardown thread");
    for id in 1..=3 {
        let log =
            std::fs::read_to_string(root.join(format!("logs/node-{id}.log"))).unwrap_or_default();
        assert!(
            log.contains("=== raft-lab: starting etcd member"),
            "member {id}: {log}"
        );
        assert!(!cluster.is_running(id));
    }
    assert!(
        !root.join("hosts/data/node-1").exists(),
        "data removed on the host"
    );
    assert_eq!(processes_mentioning(&hosts_dir), Vec::<u32>::new());
    drop(cluster);
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_hosts_is_valid_under_kills_pauses_and_membership() {
    let Some(etcd) = etcd() else { return };
    let _serial = SERIAL.lock().await;
    let (root, file) = loopback_cluster("run", &etcd);
    // Faults at 3, 6 and 9 s: one of each kind.
    let overrides = Overrides {
        time_limit: Some(13.0),
        seed: Some(31),
        ..on_hosts(file, "kill,pause,membership", root.join("results"))
    };
    let outcome = valid_run("ci", &overrides).await;
    let summary = &outcome.summary;
    assert!(
        summary.cluster.starts_with("etcd (the hosts of"),
        "{}",
        summary.cluster
    );
    eprintln!("applied: {:?}", summary.nemesis.applied);
    for kind in ["kill", "pause", "membership"] {
        assert!(
            summary.nemesis.applied.get(kind) >= Some(&1),
            "{kind} applied: {:?}",
            summary.nemesis
        );
    }
    for id in 1..=3 {
        let log = outcome.run_dir.join(format!("cluster/node-{id}.log"));
        assert!(log.is_file(), "member {id}'s log fetched");
    }
    assert!(
        !root
            .join("hosts/data")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "no data left on the hosts"
    );
    let hosts_dir = root.join("hosts").display().to_string();
    assert_eq!(processes_mentioning(&hosts_dir), Vec::<u32>::new());
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_namespace_hosts_is_valid_under_partitions_by_address() {
    let Some(etcd) = etcd() else { return };
    if !netns_available() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let root = fresh_root("netns");
    let net = NetnsHosts::create(3).expect("three namespaces");
    let members: Vec<Member> = net
        .hosts()
        .iter()
        .map(|h| (SocketAddr::new(h.ip.into(), 2379), Some(h.name.clone())))
        .collect();
    let iface = net.hosts()[0].iface.clone();
    let file = write_cluster(
        &root,
        &members,
        client::net::netns::EXEC_TEMPLATE,
        &etcd.display().to_string(),
        &iface,
    );
    let overrides = Overrides {
        time_limit: Some(12.0),
        seed: Some(32),
        ..on_hosts(
            file,
            "partition-halves,isolate-leader",
            root.join("results"),
        )
    };
    let outcome = valid_run("ci", &overrides).await;
    let applied = &outcome.summary.nemesis.applied;
    eprintln!("applied: {applied:?}");
    assert!(
        applied
            .keys()
            .any(|k| k.starts_with("partition") || k == "isolate-leader"),
        "a partition was applied: {applied:?}"
    );
    let hosts_dir = root.join("hosts").display().to_string();
    assert_eq!(processes_mentioning(&hosts_dir), Vec::<u32>::new());
    drop(net);
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hosts_are_refused_before_anything_starts() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = fresh_root("bad");
    let old = root.join("etcd-old");
    std::fs::write(&old, "#!/bin/sh\necho 'etcd Version: 3.3.25'\n").expect("fake etcd");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let old = old.display().to_string();
    let members = |base: u16| -> Vec<Member> {
        (1..=3u16)
            .map(|n| {
                (
                    SocketAddr::new(Ipv4Addr::new(127, 0, 0, 30 + n as u8).into(), base + 10 * n),
                    None,
                )
            })
            .collect()
    };
    let unreachable =
        "env RAFTLAB_HOST={host} sh -c 'echo ssh: connect to host {host} port 22: Connection refused >&2; exit 255'";
    let collided: Vec<Member> = vec![
        ("127.0.0.31:27400".parse().expect("addr"), None),
        ("127.0.0.31:27401".parse().expect("addr"), None),
        ("127.0.0.31:27410".parse().expect("addr"), None),
    ];
    let cases: Vec<(Vec<Member>, &str, &str, &str, String)> = vec![
        (
            members(27500),
            TEMPLATE,
            "/nonexistent/etcd",
            "kill",
            "/nonexistent/etcd not found on 127.0.0.31".into(),
        ),
        (
            members(27500),
            TEMPLATE,
            &old,
            "kill",
            "is etcd 3.3.25; the lab needs etcd 3.4 or later".into(),
        ),
        (
            members(27500),
            unreachable,
            "etcd",
            "kill",
            "Connection refused".into(),
        ),
        (
            collided,
            TEMPLATE,
            "etcd",
            "kill",
            "member 2's client port".into(),
        ),
    ];
    for (members, command, etcd, nemesis, needle) in cases {
        let dir = root.join("case");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("case dir");
        let file = write_cluster(&dir, &members, command, etcd, "lo");
        let results = dir.join("results");
        let overrides = Overrides {
            time_limit: Some(1.0),
            ..on_hosts(file, nemesis, results.clone())
        };
        refused(&overrides, &needle).await;
        assert!(!results.exists(), "no run folder for a refused run");
        assert!(!dir.join("hosts/pids").exists(), "nothing started");
    }
    // Flags for members on this machine do not mix with the file's hosts.
    let file = write_cluster(&root, &members(27500), TEMPLATE, "etcd", "lo");
    for (overrides, needle) in [
        (
            Overrides {
                etcd_port: Some(2379),
                ..on_hosts(file.clone(), "kill", root.join("results"))
            },
            "--etcd-port",
        ),
        (
            Overrides {
                hosts: client::lab::cluster::HostsMode::Netns,
                ..on_hosts(file.clone(), "kill", root.join("results"))
            },
            "--hosts",
        ),
    ] {
        refused(&overrides, needle).await;
        assert!(
            !root.join("results").exists(),
            "no run folder for a refused run"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// The Ctrl-C cleanup is process-wide and final (owned clusters start nothing after it), so
/// it runs in a child process of its own.
#[test]
fn ctrl_c_kills_the_members_on_their_hosts() {
    if etcd().is_none() {
        return;
    }
    let _serial = SERIAL.blocking_lock();
    let status = std::process::Command::new(std::env::current_exe().expect("this test"))
        .args([
            "--exact",
            "ctrl_c_in_this_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .status()
        .expect("the child test runs");
    assert!(status.success(), "the child test failed: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a child process by ctrl_c_kills_the_members_on_their_hosts"]
async fn ctrl_c_in_this_process() {
    let Some(etcd) = etcd() else { return };
    let (root, file) = loopback_cluster("ctrlc", &etcd);
    let hosts_dir = root.join("hosts").display().to_string();
    let mut cluster = start_on_hosts(&root, &file).await;
    let leader = cluster.leader(PATIENCE).await.expect("a leader");
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.pause(follower).expect("pause");
    assert_eq!(processes_mentioning(&hosts_dir).len(), 3);

    client::control::cleanup::run_all();
    eventually("every member killed", || {
        processes_mentioning(&hosts_dir).is_empty()
    });
    let refused = cluster.start(follower).expect_err("no start after Ctrl-C");
    assert!(refused.to_string().contains("interrupted"), "{refused}");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&root);
}
