//! Namespace networks for real: `create` builds namespaces with their addresses and a bridge,
//! UDP flows between namespaces and from the root namespace, and `destroy`, `Drop`,
//! `delete_stale` and the Ctrl-C cleanup (`cleanup::run_all`) leave nothing behind (and nothing else touched).
//!
//! Needs root and iproute2; without them the tests print why and pass, unless
//! `RAFTLAB_REQUIRE_NETNS=1` is set, in which case they fail. UDP endpoints inside a
//! namespace are this very test binary, re-run under `ip netns exec` as the `udp_helper` test
//! with its role in environment variables; the parent waits on the lines it prints.

use client::control::cleanup;
use client::net::netns::*;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Lines};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// Tests that build networks share this lock; the Ctrl-C cleanup (which removes every network of
/// this process) and `delete_stale` (whose hand-made stale network any `create` would sweep)
/// take it exclusively.
static NETWORKS: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    NETWORKS.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    NETWORKS.write().unwrap_or_else(|e| e.into_inner())
}

/// Whether to run: namespaces need root and `ip`. Skips (prints why) only for those two,
/// and not even then under `RAFTLAB_REQUIRE_NETNS=1`.
fn supported(test: &str) -> bool {
    match check_available() {
        Ok(()) => true,
        Err(err @ (NetnsError::IpMissing { .. } | NetnsError::NotRoot { .. })) => {
            if std::env::var("RAFTLAB_REQUIRE_NETNS").as_deref() == Ok("1") {
                panic!(
                    "{test}: RAFTLAB_REQUIRE_NETNS=1 but network namespaces are unavailable: {err}"
                );
            }
            eprintln!("skipping {test}: {err}");
            false
        }
        Err(err) => panic!("{test}: checking for network namespace support: {err}"),
    }
}

/// Runs `ip ARGS` and returns stdout; panics with stderr on failure.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn namespaces() -> Vec<String> {
    ip(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn links() -> Vec<String> {
    ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Whether `name` is one of the names of the network with `prefix` (`b`, `n{i}`, `v{i}`),
/// and not of another network whose prefix merely starts with the same characters.
fn belongs(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| {
        rest == "b"
            || (rest.len() > 1
                && (rest.starts_with('n') || rest.starts_with('v'))
                && rest[1..].chars().all(|c| c.is_ascii_digit()))
    })
}

fn prefix_of(net: &NetnsHosts) -> String {
    net.bridge()
        .strip_suffix('b')
        .expect("bridge name ends in b")
        .to_string()
}

/// What is left of the network with `prefix`: namespaces and links.
fn leftovers(prefix: &str) -> Vec<String> {
    namespaces()
        .into_iter()
        .chain(links())
        .filter(|n| belongs(n, prefix))
        .collect()
}

// ---- the UDP helper: this binary re-run inside a namespace ----

const ROLE: &str = "RAFTLAB_NETNS_UDP_ROLE";
const BIND: &str = "RAFTLAB_NETNS_UDP_BIND";
const TO: &str = "RAFTLAB_NETNS_UDP_TO";
const MESSAGE: &str = "RAFTLAB_NETNS_UDP_MESSAGE";
const MARK: &str = "RLHELPER";

/// Not a test: does nothing unless run by `in_namespace` with a role. `recv` binds
/// `BIND:0`, prints `RLHELPER ready PORT`, waits up to 10 s for one datagram and prints
/// `RLHELPER got MESSAGE from ADDR`. `send` binds `BIND:0` and sends `MESSAGE` to `TO`.
#[test]
fn udp_helper() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let bind: Ipv4Addr = std::env::var(BIND).unwrap().parse().unwrap();
    let socket = UdpSocket::bind((bind, 0)).unwrap();
    match role.as_str() {
        "recv" => {
            println!("{MARK} ready {}", socket.local_addr().unwrap().port());
            socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut buf = [0u8; 1500];
            let (len, from) = socket.recv_from(&mut buf).expect("no datagram within 10 s");
            println!(
                "{MARK} got {} from {from}",
                String::from_utf8_lossy(&buf[..len])
            );
        }
        "send" => {
            let to: std::net::SocketAddr = std::env::var(TO).unwrap().parse().unwrap();
            socket
                .send_to(std::env::var(MESSAGE).unwrap().as_bytes(), to)
                .unwrap();
            println!("{MARK} sent");
        }
        other => panic!("unknown helper role {other}"),
    }
}

/// This test binary, as the `udp_helper` test, inside namespace `ns`.
fn in_namespace(ns: &str, role: &str, bind: Ipv4Addr) -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(exe)
        .args(["--exact", "udp_helper", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(BIND, bind.to_string())
        .stdin(Stdio::null());
    cmd
}

/// A `recv` helper running in a namespace, past its `ready` line.
struct Receiver {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    port: u16,
}

impl Receiver {
    fn start(ns: &str, bind: Ipv4Addr) -> Receiver {
        let mut child = in_namespace(ns, "recv", bind)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn receiver");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(port) = marked(&line, "ready") {
                        break port.trim().parse().expect("port");
                    }
                }
                _ => {
                    let out = child.wait_with_output().unwrap();
                    panic!(
                        "receiver in {ns} ended before ready ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        };
        Receiver { child, lines, port }
    }

    /// Waits for the datagram; returns `(message, sender address)`. Reads the helper's
    /// output to its end (closing the pipe early would fail the helper's later writes).
    fn received(self) -> (String, String) {
        let mut got = String::new();
        for line in self.lines.map_while(Result::ok) {
            if let Some(rest) = marked(&line, "got") {
                got = rest.to_string();
            }
        }
        let out = self.child.wait_with_output().unwrap();
        assert!(
            out.status.success() && !got.is_empty(),
            "receiver got nothing ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let (message, from) = got.rsplit_once(" from ").expect("got MESSAGE from ADDR");
        let from_ip = from.rsplit_once(':').map(|(ip, _)| ip).unwrap_or(from);
        (message.to_string(), from_ip.to_string())
    }
}

/// The text after `RLHELPER WORD ` on a helper line (the test harness may print around it).
fn marked<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let at = line.find(MARK)?;
    let rest = line[at + MARK.len()..].trim_start().strip_prefix(word)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix(' ')
    }
}

/// Sends `message` from namespace `ns` (bound to `from`) to `to:port`.
fn send_from_namespace(ns: &str, from: Ipv4Addr, to: Ipv4Addr, port: u16, message: &str) {
    let out = in_namespace(ns, "send", from)
        .env(TO, format!("{to}:{port}"))
        .env(MESSAGE, message)
        .output()
        .expect("run sender");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().any(|l| marked(l, "sent").is_some()),
        "sender in {ns} failed ({}): {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sleep 30` inside a namespace, known to be running there; killed on drop if still alive.
struct Sleeper(Child);

impl Sleeper {
    /// Starts it and waits for its `ready` line, printed from inside the namespace.
    fn start(ns: &str) -> Sleeper {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", "echo ready; exec sleep 30"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sleeper");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "sleeper in {ns} did not start");
        Sleeper(child)
    }

    /// Waits for it to end (at most its 30 s); whether SIGKILL ended it.
    fn was_killed(&mut self) -> bool {
        self.0
            .wait()
            .is_ok_and(|status| status.signal() == Some(nix::libc::SIGKILL))
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---- the tests ----

#[test]
fn create_builds_a_working_network_and_destroy_removes_it() {
    if !supported("create_builds_a_working_network_and_destroy_removes_it") {
        return;
    }
    let _guard = shared();
    let mut net = NetnsHosts::create(3).expect("create 3 namespaces");
    let prefix = prefix_of(&net);
    let lab = net.lab_ip();
    let [a, b, x, last] = lab.octets();
    assert_eq!((a, b, last), (10, 213, 254), "lab ip {lab}");
    assert!((1..=250).contains(&x));

    let hosts = net.hosts().to_vec();
    assert_eq!(hosts.len(), 3);
    let listed = namespaces();
    for (i, host) in hosts.iter().enumerate() {
        let n = i + 1;
        assert_eq!(host.name, format!("{prefix}n{n}"));
        assert_eq!(host.ip, Ipv4Addr::new(10, 213, x, n as u8));
        assert_eq!(host.iface, "eth0");
        assert!(
            listed.contains(&host.name),
            "{} not in {listed:?}",
            host.name
        );
        let addrs = ip(&["-n", &host.name, "-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(
            addrs.contains(&format!("inet {}/24", host.ip)),
            "{}: {addrs}",
            host.name
        );
    }
    assert_eq!(net.bridge(), format!("{prefix}b"));
    let bridge_addrs = ip(&["-4", "-o", "addr", "show", "dev", net.bridge()]);
    assert!(
        bridge_addrs.contains(&format!("inet {lab}/24")),
        "{bridge_addrs}"
    );

    // Node 1 to node 2, across two namespaces and the bridge.
    let receiver = Receiver::start(&hosts[1].name, hosts[1].ip);
    send_from_namespace(
        &hosts[0].name,
        hosts[0].ip,
        hosts[1].ip,
        receiver.port,
        "one-to-two",
    );
    assert_eq!(
        receiver.received(),
        ("one-to-two".to_string(), hosts[0].ip.to_string())
    );

    // The lab (root namespace) to node 3.
    let receiver = Receiver::start(&hosts[2].name, hosts[2].ip);
    let socket = UdpSocket::bind((lab, 0)).expect("bind the lab address");
    socket
        .send_to(b"lab-to-three", (hosts[2].ip, receiver.port))
        .unwrap();
    assert_eq!(
        receiver.received(),
        ("lab-to-three".to_string(), lab.to_string())
    );

    // A process left inside a namespace is SIGKILLed by destroy.
    let mut left = Sleeper::start(&hosts[0].name);

    net.destroy().expect("destroy");
    assert!(
        left.was_killed(),
        "process in the namespace survived destroy"
    );
    assert_eq!(
        leftovers(&prefix),
        Vec::<String>::new(),
        "left after destroy"
    );
    net.destroy().expect("a second destroy is a no-op");
}

#[test]
fn drop_removes_the_network() {
    if !supported("drop_removes_the_network") {
        return;
    }
    let _guard = shared();
    let net = NetnsHosts::create(2).expect("create 2 namespaces");
    let prefix = prefix_of(&net);
    assert_eq!(leftovers(&prefix).len(), 5, "bridge, 2 namespaces, 2 veths");
    drop(net);
    assert_eq!(leftovers(&prefix), Vec::<String>::new(), "left after drop");
}

#[test]
fn networks_created_at_once_get_their_own_names_and_subnets() {
    if !supported("networks_created_at_once_get_their_own_names_and_subnets") {
        return;
    }
    let _guard = shared();
    let nets: Vec<NetnsHosts> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| NetnsHosts::create(1))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("create"))
            .collect()
    });
    let mut labs: Vec<Ipv4Addr> = nets.iter().map(|n| n.lab_ip()).collect();
    let mut bridges: Vec<&str> = nets.iter().map(|n| n.bridge()).collect();
    labs.sort();
    labs.dedup();
    bridges.sort();
    bridges.dedup();
    assert_eq!((labs.len(), bridges.len()), (3, 3), "{labs:?} {bridges:?}");
    let prefixes: Vec<String> = nets.iter().map(prefix_of).collect();
    drop(nets);
    for prefix in prefixes {
        assert_eq!(leftovers(&prefix), Vec::<String>::new());
    }
}

/// A pid no process has: searched downward from the largest Linux can hand out, offset by
/// our own pid so that two test processes at once pick different ones.
fn dead_pid() -> u32 {
    let me = std::process::id();
    (1..=4_194_303u32 - me % 1_000_000)
        .rev()
        .find(|&pid| {
            pid != me && kill(Pid::from_raw(pid as i32), None) == Err(nix::errno::Errno::ESRCH)
        })
        .expect("some pid is free")
}

#[test]
fn delete_stale_removes_networks_of_dead_processes_only() {
    if !supported("delete_stale_removes_networks_of_dead_processes_only") {
        return;
    }
    let _guard = exclusive();
    // Ours and alive: created first, since create itself sweeps stale networks.
    let live = NetnsHosts::create(1).expect("create");
    let live_prefix = prefix_of(&live);

    // A network as a dead lab process would have left it, made by hand, with a process
    // still inside; and a namespace whose name is close to but not of the pattern.
    let dead = format!("rl{:x}x0", dead_pid());
    let (bridge, ns, veth) = (format!("{dead}b"), format!("{dead}n1"), format!("{dead}v1"));
    let foreign = format!("{}y0n1", dead.trim_end_matches("x0"));
    ip(&["link", "add", "name", &bridge, "type", "bridge"]);
    ip(&["netns", "add", &ns]);
    ip(&["netns", "add", &foreign]);
    ip(&[
        "link", "add", "name", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ]);
    ip(&["link", "set", "dev", &veth, "master", &bridge]);
    let mut left = Sleeper::start(&ns);

    let removed = delete_stale();
    let still_there = leftovers(&dead);
    let foreign_kept = namespaces().contains(&foreign);
    let live_kept = leftovers(&live_prefix);
    ip(&["netns", "delete", &foreign]);

    assert_eq!(still_there, Vec::<String>::new(), "stale names left");
    // Another process's stale sweep running at this very moment could take some of these
    // names first; that is the one way this can fail without a bug here.
    for name in [&bridge, &ns, &veth] {
        assert!(
            removed.contains(name),
            "delete_stale reported {removed:?}, without {name}"
        );
    }
    assert!(left.was_killed(), "process in the stale namespace survived");
    assert!(
        !removed.iter().any(|n| belongs(n, &live_prefix)),
        "delete_stale reported live names: {removed:?}"
    );
    assert!(foreign_kept, "a name outside the pattern was touched");
    assert_eq!(
        live_kept.len(),
        3,
        "the live network was touched: {live_kept:?}"
    );
    drop(live);
    assert_eq!(leftovers(&live_prefix), Vec::<String>::new());
}

#[test]
fn delete_own_removes_every_network_and_later_destroys_are_quiet() {
    if !supported("delete_own_removes_every_network_and_later_destroys_are_quiet") {
        return;
    }
    let _guard = exclusive();
    let mut first = NetnsHosts::create(2).expect("create");
    let second = NetnsHosts::create(1).expect("create");
    let prefixes = [prefix_of(&first), prefix_of(&second)];
    let mut inside = Sleeper::start(&first.hosts()[1].name);

    cleanup::run_all();
    assert!(inside.was_killed(), "process survived the Ctrl-C cleanup");
    for prefix in &prefixes {
        assert_eq!(
            leftovers(prefix),
            Vec::<String>::new(),
            "left after the Ctrl-C cleanup"
        );
    }
    first
        .destroy()
        .expect("destroy after the Ctrl-C cleanup is a quiet no-op");
    drop(second);
    drop(first);
    cleanup::run_all(); // nothing left: still fine

    // The subnets are free again and a new network works as before.
    let mut again = NetnsHosts::create(1).expect("create after the Ctrl-C cleanup");
    let prefix = prefix_of(&again);
    again.destroy().expect("destroy");
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}
