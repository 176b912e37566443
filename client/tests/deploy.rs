//! `docs/deploy.md`, followed step by step, with network namespaces standing in for the
//! machines. The guide refers to this test: when a step of the guide changes, change it here.
//!
//! Four namespaces (`NetnsHosts::create(4)`: three in the cluster, one waiting for §10) are
//! the "machines"; `ip netns exec {host} sh -c`
//! replaces `ssh {host}` in `cluster.toml`'s `[remote]` section, the only difference. What it
//! proves, section by section:
//!
//! - §1 the guide's example `cluster.toml` is valid; one written the same way for the
//!   namespaces (per-node `host`, `[storage]`, `[remote]`) serves the lab, the nodes and
//!   `raft-lab kv` alike;
//! - §2 `raft-node certs --config cluster.toml` makes the certificates the guide lists;
//! - §3 `nft -c -f deploy/nftables-raftlab.conf` accepts the firewall, and the firewall, with
//!   the peer network set to the namespaces' subnet, lets the cluster, the lab and the
//!   nemesis through (it is loaded on every machine for the rest of the test);
//! - §5/§6 `raft-lab cluster up` starts every node, `cluster status` prints the documented
//!   columns (the guide's sample lines parse the same way; one leader, every pid), `kv put`
//!   and `kv get` print what the guide says;
//! - §7 every node in turn is stopped (SIGTERM through its pid file) and started again with
//!   `cluster up` (which starts only the missing one), and catches up before the next;
//! - §6 `raft-lab run ... --cluster cluster.toml` with partitions, packet loss, latency (tbf
//!   where the kernel has no netem) and kills is valid, applies faults, leaves no nftables
//!   table or qdisc behind, copies the node logs into the run folder and leaves the cluster
//!   running; `cluster down` stops it;
//! - §4 the `ExecStart=` line of `deploy/raft-node@.service` (paths moved to the temporary
//!   folder) runs each node on the same data (the value written before is still there), and
//!   the unit's `KillSignal` stops each cleanly within its `TimeoutStopSec`;
//! - §10-12 `cluster add` brings node 4 in on the fourth machine (certificate issued, started
//!   there, learner, voter), `cluster members` shows four voters, `cluster remove` takes the
//!   leader out (leadership moves first) and retires its id (a second `add` of it is
//!   refused), `cluster transfer` makes every remaining voter lead in turn, each reading
//!   back what was written; §8 one node's certificate is renewed and picked up on SIGHUP
//!   without a restart; §9 a named client's certificate, revoked in `cluster.toml` and
//!   SIGHUP, is refused while the shared client is still served.
//!
//! Not exercised: copying files between machines, `useradd`, `systemctl` and `journalctl`
//! (no systemd here). Needs root, iproute2 and nftables: without them the test prints why
//! and passes, unless `RAFTLAB_REQUIRE_NETNS=1` (then it fails).

mod support;

use client::db::remote::RemoteCluster;
use client::net::netns::{check_available, NetnsError, NetnsHosts};
use node::config::ClusterConfig;
use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The port of every node (the guide's and the firewall's).
const PORT: u16 = 15001;
/// How long a leader, a catch-up or a successful kv command may take.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long one `raft-lab` command other than `run` may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);
/// How long the 16-second `raft-lab run` may take, checking included.
const RUN_LIMIT: Duration = Duration::from_secs(180);
/// Poll interval of [`wait_until`].
const POLL: Duration = Duration::from_millis(100);
/// The nemeses of the §6 run.
const NEMESES: [&str; 4] = ["partition-halves", "packet-loss", "latency", "kill"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `Some(reason)` when this machine cannot stand in for three machines.
fn unsupported() -> Option<String> {
    match check_available() {
        Ok(()) => {}
        Err(err @ (NetnsError::IpMissing { .. } | NetnsError::NotRoot { .. })) => {
            return Some(err.to_string())
        }
        Err(err) => panic!("checking for network namespace support: {err}"),
    }
    match Command::new("nft").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("`nft --version` failed: {}", out.status)),
        Err(e) => Some(format!("`nft` (nftables) is missing: {e}")),
    }
}

/// Polls `f` every [`POLL`] until it answers `Ok`, or panics after `limit` with its last
/// answer.
fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {limit:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Waits up to `limit` for `child` to exit (polling): `None` if it still runs.
fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for pid {}: {e}", child.id()),
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(command: &str, out: &Output) -> String {
    format!(
        "`{command}`: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Runs `ip netns exec NS sh -c SCRIPT` (what the `[remote]` template does): its output.
fn on_machine(ns: &str, script: &str) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", script])
        .output()
        .unwrap_or_else(|e| panic!("ip netns exec {ns} sh -c {script:?}: {e}"))
}

/// Like [`on_machine`], and it must succeed: its stdout.
fn on_machine_ok(ns: &str, script: &str) -> String {
    let out = on_machine(ns, script);
    assert!(out.status.success(), "{}", show(script, &out));
    text(&out.stdout)
}

/// One line of `raft-lab cluster status`.
#[derive(Clone, Debug)]
struct StatusLine {
    id: u64,
    addr: String,
    pid: Option<u32>,
    /// The node's own answer, or why it is unreachable.
    answer: Result<Answer, String>,
}

#[derive(Clone, Debug)]
struct Answer {
    role: String,
    term: u64,
    leader: Option<u64>,
    commit: u64,
    applied: u64,
}

/// Parses one status line as the guide describes it: `node N ADDR PROCESS` then either
/// `ROLE term T leader L commit C applied A` or `unreachable: WHY`.
fn parse_status_line(line: &str) -> Result<StatusLine, String> {
    let bad = |what: &str| format!("{what} in status line {line:?}");
    let number = |word: Option<&str>, what: &str| -> Result<u64, String> {
        word.and_then(|w| w.parse().ok()).ok_or_else(|| bad(what))
    };
    let mut words = line.split_whitespace().peekable();
    if words.next() != Some("node") {
        return Err(bad("no `node`"));
    }
    let id = number(words.next(), "no node id")?;
    let addr = words.next().ok_or_else(|| bad("no address"))?.to_string();
    let pid = match (words.next(), words.next()) {
        (Some("pid"), pid) => {
            let pid = number(pid, "no pid")? as u32;
            words.next_if_eq(&"(paused)");
            Some(pid)
        }
        (Some("no"), Some("process")) => None,
        _ => return Err(bad("no process column")),
    };
    let rest: Vec<&str> = words.collect();
    let answer = match rest.as_slice() {
        ["unreachable:", why @ ..] => Err(why.join(" ")),
        [role, "term", term, "leader", leader, "commit", commit, "applied", applied] => {
            Ok(Answer {
                role: role.to_string(),
                term: number(Some(term), "no term")?,
                leader: match *leader {
                    "-" => None,
                    l => Some(number(Some(l), "no leader")?),
                },
                commit: number(Some(commit), "no commit index")?,
                applied: number(Some(applied), "no applied index")?,
            })
        }
        _ => return Err(bad("neither an answer nor `unreachable:`")),
    };
    Ok(StatusLine {
        id,
        addr,
        pid,
        answer,
    })
}

/// A healthy cluster as `cluster status` shows it: the leader's id and every line.
#[derive(Debug)]
struct Healthy {
    leader: u64,
    lines: Vec<StatusLine>,
}

impl Healthy {
    fn line(&self, id: u64) -> &StatusLine {
        self.lines.iter().find(|l| l.id == id).expect("every node")
    }
    fn answer(&self, id: u64) -> &Answer {
        self.line(id).answer.as_ref().expect("healthy: reachable")
    }
}

/// Whether the lab knows the nodes' processes (it started them: pid files) or not (systemd
/// started them).
#[derive(Clone, Copy, PartialEq)]
enum Pids {
    Shown,
    None,
}

/// The deployment under test: the temporary folder, the machines, `cluster.toml`.
struct Deployment {
    dir: PathBuf,
    machines: NetnsHosts,
    /// Absolute path of `cluster.toml` (the lab is always run in `dir` and given the
    /// relative `cluster.toml`, as a user would).
    config: PathBuf,
    raft_node: PathBuf,
    /// Names the captured output files of the commands.
    commands: usize,
}

impl Deployment {
    fn ns(&self, id: u64) -> &str {
        &self.machines.hosts()[id as usize - 1].name
    }

    fn addr(&self, id: u64) -> String {
        format!("{}:{PORT}", self.machines.hosts()[id as usize - 1].ip)
    }

    /// `<tmp>/var/lib/raftlab`: the machines' `/var/lib/raftlab` (data, pid files, logs).
    fn var_lib(&self) -> PathBuf {
        self.dir.join("var/lib/raftlab")
    }

    fn remote(&self) -> RemoteCluster {
        let config = ClusterConfig::load(&self.config).unwrap_or_else(|e| panic!("{e}"));
        RemoteCluster::open(config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `program args` in `dir` within `limit` (killed and failed after it); output to
    /// files, so that no process it leaves behind can hold a pipe open.
    fn run(&mut self, program: &Path, args: &[&str], limit: Duration) -> Output {
        self.commands += 1;
        let out_dir = self.dir.join("commands");
        std::fs::create_dir_all(&out_dir).unwrap();
        let stdout_path = out_dir.join(format!("{}.stdout", self.commands));
        let stderr_path = out_dir.join(format!("{}.stderr", self.commands));
        let line = format!("{} {}", program.display(), args.join(" "));
        let mut child = Command::new(program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let Some(status) = wait_child(&mut child, limit) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{line}` did not finish within {limit:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        };
        Output {
            status,
            stdout: std::fs::read(&stdout_path).unwrap(),
            stderr: std::fs::read(&stderr_path).unwrap(),
        }
    }

    /// `raft-lab ARGS` in the deployment's folder.
    fn lab(&mut self, args: &[&str]) -> Output {
        let limit = if args.first() == Some(&"run") {
            RUN_LIMIT
        } else {
            COMMAND_LIMIT
        };
        self.run(Path::new(env!("CARGO_BIN_EXE_raft-lab")), args, limit)
    }

    /// `raft-lab ARGS`, which must exit 0: its stdout.
    fn lab_ok(&mut self, args: &[&str]) -> String {
        let out = self.lab(args);
        let line = format!("raft-lab {}", args.join(" "));
        assert!(out.status.success(), "{}", show(&line, &out));
        text(&out.stdout)
    }

    /// `raft-lab cluster status --config cluster.toml`, parsed (every line must parse, one
    /// per node, each at its address).
    fn status(&mut self) -> Result<Vec<StatusLine>, String> {
        let out = self.lab(&["cluster", "status", "--config", "cluster.toml"]);
        let stdout = text(&out.stdout);
        let lines: Vec<StatusLine> = stdout
            .lines()
            .map(parse_status_line)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{e}\n{}", show("raft-lab cluster status", &out)))?;
        let ids: Vec<u64> = lines.iter().map(|l| l.id).collect();
        assert_eq!(ids, [1, 2, 3], "one line per node:\n{stdout}");
        for line in &lines {
            assert_eq!(line.addr, self.addr(line.id), "{stdout}");
        }
        Ok(lines)
    }

    /// `Ok` when status shows every node reachable, one term, one leader that every node
    /// follows, and (`Pids::Shown`) every node's pid.
    fn healthy(&mut self, pids: Pids) -> Result<Healthy, String> {
        let lines = self.status()?;
        let table = format!("{lines:#?}");
        let mut leaders = Vec::new();
        for line in &lines {
            let answer = line
                .answer
                .as_ref()
                .map_err(|e| format!("node {} unreachable: {e}", line.id))?;
            if answer.role == "leader" {
                leaders.push(line.id);
            }
            if (pids == Pids::Shown) != line.pid.is_some() {
                return Err(format!("node {}'s pid: {:?}\n{table}", line.id, line.pid));
            }
        }
        let [leader] = leaders[..] else {
            return Err(format!("leaders: {leaders:?}\n{table}"));
        };
        let answers: Vec<&Answer> = lines
            .iter()
            .filter_map(|l| l.answer.as_ref().ok())
            .collect();
        if answers.iter().any(|a| a.leader != Some(leader)) {
            return Err(format!("not every node follows node {leader}\n{table}"));
        }
        if answers.iter().any(|a| a.term != answers[0].term) {
            return Err(format!("terms differ\n{table}"));
        }
        Ok(Healthy { leader, lines })
    }

    fn wait_healthy(&mut self, what: &str, pids: Pids) -> Healthy {
        wait_until(what, PATIENCE, || self.healthy(pids))
    }

    /// `raft-lab kv --config cluster.toml ARGS` until it exits 0 (a leader may be in the
    /// making): its stdout, trimmed.
    fn kv(&mut self, args: &[&str]) -> String {
        let mut full = vec!["kv", "--config", "cluster.toml"];
        full.extend_from_slice(args);
        wait_until(&format!("raft-lab {}", full.join(" ")), PATIENCE, || {
            let out = self.lab(&full);
            if out.status.success() {
                Ok(text(&out.stdout).trim().to_string())
            } else {
                Err(show(&full.join(" "), &out))
            }
        })
    }

    fn put(&mut self, key: &str, value: &str) {
        assert_eq!(self.kv(&["put", key, value]), "ok");
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // Also on failure: SIGKILLs whatever runs in the namespaces, deletes them.
        if let Err(e) = self.machines.destroy() {
            eprintln!("destroying the namespaces: {e}");
        }
    }
}

/// One section of the guide, run against the deployment.
type Step = fn(&mut Deployment);

/// §1: `cluster.toml` as a user writes it, with the machines' paths under `dir`.
fn cluster_toml(machines: &NetnsHosts, dir: &Path, raft_node: &Path) -> String {
    let var_lib = dir.join("var/lib/raftlab");
    let mut toml = String::new();
    for (i, host) in machines.hosts().iter().take(3).enumerate() {
        let _ = writeln!(
            toml,
            "[[node]]\nid = {}\naddr = \"{}:{PORT}\"\nhost = {:?}\n",
            i + 1,
            host.ip,
            host.name
        );
    }
    let _ = write!(
        toml,
        "[storage]\ndata_dir = {var_lib:?}\n\n\
         [remote]\ncommand = \"ip netns exec {{host}} sh -c\"\nraft_node = {raft_node:?}\n\
         config = {config:?}\ndir = {var_lib:?}\niface = \"eth0\"\n",
        config = dir.join("cluster.toml"),
    );
    toml
}

/// The parts of `deploy/raft-node@.service` the test runs.
struct Unit {
    exec_start: String,
    kill_signal: nix::sys::signal::Signal,
    timeout_stop: Duration,
}

fn read_unit() -> Unit {
    let path = workspace().join("deploy/raft-node@.service");
    let unit = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let key = |name: &str| -> String {
        let values: Vec<&str> = unit
            .lines()
            .filter_map(|l| l.trim().strip_prefix(name)?.strip_prefix('='))
            .collect();
        assert_eq!(values.len(), 1, "one {name}= in {path:?}");
        values[0].trim().to_string()
    };
    let signal = key("KillSignal");
    Unit {
        exec_start: key("ExecStart"),
        kill_signal: signal
            .parse()
            .unwrap_or_else(|e| panic!("KillSignal={signal}: {e}")),
        timeout_stop: Duration::from_secs(
            key("TimeoutStopSec")
                .parse()
                .expect("TimeoutStopSec in seconds"),
        ),
    }
}

#[test]
fn the_deployment_guide_works_step_by_step() {
    if let Some(reason) = unsupported() {
        if std::env::var("RAFTLAB_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("the deployment guide test cannot run: {reason} (RAFTLAB_REQUIRE_NETNS=1)");
        }
        eprintln!("SKIPPED the deployment guide test: {reason}");
        return;
    }
    let started = Instant::now();
    let dir = support::results_root("deploy");
    eprintln!("deployment test folder: {}", dir.display());

    // §1: three machines and one cluster.toml.
    // A fourth machine waits outside the cluster for §10.
    let machines = NetnsHosts::create(4).unwrap_or_else(|e| panic!("{e}"));
    let raft_node = support::raft_node();
    let config = dir.join("cluster.toml");
    std::fs::write(&config, cluster_toml(&machines, &dir, &raft_node)).unwrap();
    let mut d = Deployment {
        dir: dir.clone(),
        machines,
        config,
        raft_node,
        commands: 0,
    };
    guide_example_loads();
    let loaded = ClusterConfig::load(&d.config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.nodes[0].control_host(), d.ns(1));
    assert_eq!(loaded.data_dir(2), d.var_lib().join("node-2"));

    let steps: [(&str, Step); 8] = [
        ("§2 certificates", certificates),
        ("§3 firewall", firewall),
        ("§6 cluster up, §5 status and kv", up_status_and_kv),
        ("§7 rotating every node", rotate_every_node),
        ("§6 raft-lab run --cluster", run_under_faults),
        ("§6 cluster down", down),
        ("§4 the systemd unit's command line", systemd_unit_command),
        (
            "§10-12 add, remove, transfer; §8 renew; §9 revoke",
            membership,
        ),
    ];
    for (name, step) in steps {
        let at = Instant::now();
        step(&mut d);
        eprintln!("{name}: ok ({:.1} s)", at.elapsed().as_secs_f64());
    }

    d.machines.destroy().unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "deployment guide: every step passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// §1: the guide's example `cluster.toml` is valid and means what the guide says.
fn guide_example_loads() {
    let guide = std::fs::read_to_string(workspace().join("docs/deploy.md")).unwrap();
    let example = guide
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/deploy.md §1 has a ```toml block");
    let path = Path::new("/etc/raftlab/cluster.toml");
    let config = ClusterConfig::parse(path, example)
        .unwrap_or_else(|e| panic!("docs/deploy.md §1's cluster.toml: {e}"));
    assert_eq!(config.ids().collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(config.nodes[2].control_host(), "db3");
    assert_eq!(config.data_dir(1), Path::new("/var/lib/raftlab/node-1"));
    assert_eq!(config.tls.certs_dir, Path::new("/etc/raftlab/certs"));
    let remote = config.remote.expect("[remote]");
    assert_eq!(remote.command, "ssh {host}");
    assert_eq!(remote.dir.as_deref(), Some(Path::new("/var/lib/raftlab")));
}

/// §2: `raft-node certs --config cluster.toml`.
fn certificates(d: &mut Deployment) {
    let raft_node = d.raft_node.clone();
    let out = d.run(
        &raft_node,
        &["certs", "--config", "cluster.toml"],
        COMMAND_LIMIT,
    );
    assert!(out.status.success(), "{}", show("raft-node certs", &out));
    let certs = d.dir.join("certs");
    for file in [
        "ca.pem",
        "ca.key",
        "node-1.pem",
        "node-1.key",
        "node-2.pem",
        "node-2.key",
        "node-3.pem",
        "node-3.key",
        "client.pem",
        "client.key",
    ] {
        let meta = std::fs::metadata(certs.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        if file.ends_with(".key") {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
        }
    }
}

/// §3: the firewall file passes `nft -c -f`; set to this network, it is loaded on every
/// machine and stays for the rest of the test (so every later step goes through it).
fn firewall(d: &mut Deployment) {
    let file = workspace().join("deploy/nftables-raftlab.conf");
    let out = Command::new("nft")
        .arg("-c")
        .arg("-f")
        .arg(&file)
        .output()
        .expect("nft runs");
    assert!(out.status.success(), "{}", show("nft -c -f", &out));

    let rules = std::fs::read_to_string(&file).unwrap();
    let lab = d.machines.lab_ip().octets();
    let subnet = format!("{}.{}.{}.0/24", lab[0], lab[1], lab[2]);
    assert!(rules.contains("10.0.0.0/24") && rules.contains(&format!("dport {PORT}")));
    let ours = d.dir.join("nftables-raftlab.conf");
    std::fs::write(&ours, rules.replace("10.0.0.0/24", &subnet)).unwrap();
    for id in 1..=3 {
        let ns = d.ns(id).to_string();
        on_machine_ok(&ns, &format!("nft -f '{}'", ours.display()));
        let table = on_machine_ok(&ns, "nft list table inet raftlab_firewall");
        assert!(table.contains(&subnet), "{table}");
    }
}

/// §6 `cluster up`, §5 `cluster status`, `kv put`, `kv get`.
fn up_status_and_kv(d: &mut Deployment) {
    let out = d.lab_ok(&["cluster", "up", "--config", "cluster.toml"]);
    for id in 1..=3 {
        assert!(
            out.contains(&format!("node {id} started (pid ")),
            "cluster up:\n{out}"
        );
    }
    let healthy = d.wait_healthy("a leader after `cluster up`", Pids::Shown);
    let remote = d.remote();
    for line in &healthy.lines {
        assert_eq!(line.pid, remote.pid(line.id).unwrap(), "{healthy:?}");
        let answer = healthy.answer(line.id);
        assert!(
            answer.term >= 1 && answer.applied <= answer.commit,
            "{healthy:?}"
        );
    }
    // The guide's sample lines have the same shape.
    let guide = std::fs::read_to_string(workspace().join("docs/deploy.md")).unwrap();
    let samples: Vec<&str> = guide
        .lines()
        .filter(|l| l.starts_with("node ") && l.contains(":15001"))
        .collect();
    assert!(!samples.is_empty(), "docs/deploy.md §5 shows status lines");
    for sample in samples {
        parse_status_line(sample).unwrap_or_else(|e| panic!("docs/deploy.md: {e}"));
    }

    d.put("greeting", "hello");
    assert_eq!(d.kv(&["get", "greeting"]), "\"hello\"");
}

/// §7: each node in turn stopped (SIGTERM through its pid file, on its machine), started
/// again by `cluster up`, and caught up before the next; the cluster takes a write after each.
fn rotate_every_node(d: &mut Deployment) {
    let pid_dir = d.var_lib().join("pids");
    for id in 1..=3u64 {
        let before = d.wait_healthy(&format!("every node up before rotating {id}"), Pids::Shown);
        let commit = before.answer(before.leader).commit;
        let old_pid = before.line(id).pid.unwrap();

        let ns = d.ns(id).to_string();
        on_machine_ok(
            &ns,
            &format!("kill -TERM $(cat '{}/node-{id}.pid')", pid_dir.display()),
        );
        let remote = d.remote();
        wait_until(&format!("node {id} gone"), PATIENCE, || {
            match remote.pid(id).unwrap() {
                None => Ok(()),
                Some(pid) => Err(format!("pid {pid} runs")),
            }
        });
        let stopped = d.status().unwrap();
        let line = &stopped[id as usize - 1];
        assert!(
            line.pid.is_none() && line.answer.is_err(),
            "status of stopped node {id}: {line:?}"
        );

        let out = d.lab_ok(&["cluster", "up", "--config", "cluster.toml"]);
        assert!(out.contains(&format!("node {id} started (pid ")), "{out}");
        for other in (1..=3).filter(|&o| o != id) {
            assert!(
                out.contains(&format!("node {other} was already running")),
                "{out}"
            );
        }
        let after = wait_until(&format!("node {id} catches up"), PATIENCE, || {
            let h = d.healthy(Pids::Shown)?;
            let answer = h.answer(id);
            if answer.role != "follower" || answer.applied < commit {
                return Err(format!(
                    "node {id}: {answer:?}, the leader's commit was {commit}"
                ));
            }
            Ok(h)
        });
        assert_ne!(after.line(id).pid, Some(old_pid), "node {id} was restarted");
        d.put(&format!("rotated-{id}"), &id.to_string());
    }
    assert_eq!(d.kv(&["get", "greeting"]), "\"hello\"");
}

/// §6 `raft-lab run ... --cluster cluster.toml`: valid, faults applied and healed, logs
/// copied, the cluster left running.
fn run_under_faults(d: &mut Deployment) {
    let workload = workspace().join("workloads/ci.toml");
    let results = d.dir.join("results");
    let nemesis = NEMESES.join(",");
    let out = d.lab(&[
        "run",
        workload.to_str().unwrap(),
        "--cluster",
        "cluster.toml",
        "--nemesis",
        &nemesis,
        "--time-limit",
        "16",
        "--seed",
        "3",
        "--results",
        results.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", show("raft-lab run", &out));

    let run_dir = std::fs::canonicalize(results.join("latest")).expect("results/latest");
    assert_eq!(
        run_dir.parent().map(Path::to_path_buf),
        Some(std::fs::canonicalize(results.join("ci")).unwrap()),
        "the run folder is results/ci/<timestamp>"
    );
    let json = std::fs::read_to_string(run_dir.join("results.json")).expect("results.json");
    let summary: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(summary["verdict"], "valid", "{json}");
    assert_eq!(summary["cluster"], "cluster.toml", "{json}");
    let nemesis = &summary["nemesis"];
    for kind in NEMESES {
        assert!(
            nemesis["requested"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == kind),
            "{kind} requested: {nemesis}"
        );
    }
    // 16 s with ci.toml's 3 s interval: one round of faults, every kind once.
    for kind in NEMESES {
        assert!(
            nemesis["applied"][kind].as_u64().unwrap_or(0) >= 1,
            "{kind} was applied: {nemesis}"
        );
    }
    eprintln!("faults applied: {}", nemesis["applied"]);
    assert_eq!(nemesis["report"]["healed"], true, "{nemesis}");
    assert_eq!(
        nemesis["report"]["errors"],
        serde_json::json!([]),
        "{nemesis}"
    );

    // The node logs, copied from the machines.
    for id in 1..=3 {
        let log = run_dir.join(format!("cluster/node-{id}.log"));
        let log = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{log:?}: {e}"));
        let starts = log
            .matches(&format!("=== raft-lab: starting node {id} ===\n"))
            .count();
        assert!(starts >= 2, "node {id}: up, then rotated: {starts} starts");
    }
    // Nothing of the faults left on the machines: no table of the run, no qdisc.
    for id in 1..=3 {
        let ns = d.ns(id).to_string();
        let tables = on_machine_ok(&ns, "nft list tables");
        assert!(!tables.contains("raftlab_r"), "node {id}: {tables}");
        assert!(tables.contains("raftlab_firewall"), "node {id}: {tables}");
        let qdisc = on_machine_ok(&ns, "tc qdisc show dev eth0");
        assert!(
            !qdisc.contains("netem") && !qdisc.contains("tbf"),
            "node {id}: {qdisc}"
        );
    }
    // A run leaves a --cluster running (the nemesis restarted what it killed).
    d.wait_healthy("the cluster after the run", Pids::Shown);
    assert_eq!(d.kv(&["get", "rotated-3"]), "3");
}

/// §6 `cluster down`: every node stopped.
fn down(d: &mut Deployment) {
    let out = d.lab_ok(&["cluster", "down", "--config", "cluster.toml"]);
    let remote = d.remote();
    for id in 1..=3 {
        assert!(out.contains(&format!("node {id} stopped")), "{out}");
        assert_eq!(remote.pid(id).unwrap(), None, "node {id} is gone");
    }
}

/// §10-12 and §8: the cluster up again; node 4 added on the fourth machine (certificate
/// issued, started there through the template, learner, caught up, voter); the first leader
/// removed (leadership moves first) and its id retired; leadership moved by hand; every voter
/// leads in turn and reads the data back; one node's certificate renewed and reloaded on
/// SIGHUP without a restart; a client's certificate revoked; `cluster down` stops the nodes
/// the file now lists.
fn membership(d: &mut Deployment) {
    d.lab_ok(&["cluster", "up", "--config", "cluster.toml"]);
    d.wait_healthy("a leader before changing the membership", Pids::Shown);
    d.put("membership", "before");
    let addr = d.addr(4);
    let host = d.ns(4).to_string();
    let out = d.lab_ok(&[
        "cluster",
        "add",
        "--config",
        "cluster.toml",
        "--id",
        "4",
        "--addr",
        &addr,
        "--host",
        &host,
    ]);
    for step in [
        "certificate for node 4 issued",
        "node 4 started",
        "node 4 added as a learner",
        "node 4 is a voter",
    ] {
        assert!(
            out.contains(step),
            "cluster add: {step}:
{out}"
        );
    }
    assert!(d.dir.join("certs/node-4.pem").is_file());
    let members = d.lab_ok(&["cluster", "members", "--config", "cluster.toml"]);
    let leader: u64 = members
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("leader node "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "cluster members names the leader:
{members}"
            )
        });
    for id in 1..=4 {
        assert!(
            members
                .lines()
                .any(|l| l.starts_with(&format!("node {id} ")) && l.contains("voter")),
            "node {id} a voter:
{members}"
        );
    }
    d.put("membership", "four voters");

    let out = d.lab_ok(&[
        "cluster",
        "remove",
        "--config",
        "cluster.toml",
        "--id",
        &leader.to_string(),
    ]);
    assert!(out.contains(&format!("node {leader} removed")), "{out}");
    assert!(out.contains("its id retired"), "{out}");
    let config = ClusterConfig::load(&d.config).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.node(leader).is_none() && config.removed.contains(&leader));
    let err = d.lab(&[
        "cluster",
        "add",
        "--config",
        "cluster.toml",
        "--id",
        &leader.to_string(),
        "--addr",
        &d.addr(leader),
    ]);
    assert!(!err.status.success());
    assert!(
        text(&err.stderr).contains("never reused"),
        "{}",
        show("add", &err)
    );

    let voters: Vec<u64> = config.ids().collect();
    for &to in &voters {
        let out = d.lab_ok(&[
            "cluster",
            "transfer",
            "--config",
            "cluster.toml",
            "--to",
            &to.to_string(),
        ]);
        assert!(out.contains(&format!("node {to} leads")), "{out}");
        assert_eq!(d.kv(&["get", "membership"]), "\"four voters\"");
    }

    // §8: one node's certificate renewed and picked up on SIGHUP, without a restart.
    let renewed = *voters.last().expect("a voter");
    let subject = format!("node-{renewed}");
    let raft_node = d.raft_node.clone();
    let out = d.run(
        &raft_node,
        &["certs", "--config", "cluster.toml", "--renew", &subject],
        COMMAND_LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        show("raft-node certs --renew", &out)
    );
    let pid_file = d.var_lib().join(format!("pids/node-{renewed}.pid"));
    let pid_before = std::fs::read_to_string(&pid_file).expect("pid file");
    on_machine_ok(
        d.ns(renewed),
        &format!("kill -HUP $(cat '{}')", pid_file.display()),
    );
    let log = d.var_lib().join(format!("node-{renewed}.log"));
    wait_until("the renewed certificate reloaded", PATIENCE, || {
        let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
        if text.contains("SIGHUP: reloaded TLS material") && !text.contains("nothing changed") {
            Ok(())
        } else {
            Err(format!("{} has no reload line yet", log.display()))
        }
    });
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid file"),
        pid_before,
        "renewed without a restart"
    );
    d.put("membership", "renewed");
    assert_eq!(d.kv(&["get", "membership"]), "\"renewed\"");

    // §9: a named client's certificate revoked on the running cluster.
    let out = d.run(
        &raft_node,
        &["certs", "--config", "cluster.toml", "--client", "alice"],
        COMMAND_LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        show("raft-node certs --client", &out)
    );
    assert_eq!(d.kv(&["--client", "alice", "put", "who", "alice"]), "ok");
    let out = d.run(
        &raft_node,
        &["certs", "--fingerprint", "certs/client-alice.pem"],
        COMMAND_LIMIT,
    );
    let fingerprint = text(&out.stdout)
        .lines()
        .find(|l| l.starts_with("sha256:"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{}", show("raft-node certs --fingerprint", &out)));
    let mut toml = std::fs::read_to_string(&d.config).expect("cluster.toml");
    toml.push_str(&format!("\n[tls]\nrevoked = [\"{fingerprint}\"]\n"));
    std::fs::write(&d.config, toml).expect("cluster.toml");
    for &id in &voters {
        let pid_file = d.var_lib().join(format!("pids/node-{id}.pid"));
        on_machine_ok(
            d.ns(id),
            &format!("kill -HUP $(cat '{}')", pid_file.display()),
        );
    }
    wait_until("alice refused", PATIENCE, || {
        let out = d.lab(&[
            "kv",
            "--config",
            "cluster.toml",
            "--client",
            "alice",
            "put",
            "who",
            "again",
        ]);
        let said = text(&out.stdout);
        if out.status.code() == Some(1) && said.to_lowercase().contains("revoked") {
            Ok(())
        } else {
            Err(show("raft-lab kv --client alice", &out))
        }
    });
    assert_eq!(
        d.kv(&["get", "who"]),
        "\"alice\"",
        "nothing of alice's after the revocation"
    );

    let out = d.lab_ok(&["cluster", "down", "--config", "cluster.toml"]);
    for id in voters {
        assert!(out.contains(&format!("node {id} stopped")), "{out}");
    }
}

/// Kills the unit-started nodes still running when dropped (a failed test).
struct Children(Vec<(u64, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// §4: the unit's `ExecStart=` with its paths moved into the temporary folder, run on each
/// machine: the cluster comes back on the same data; the unit's `KillSignal` stops each node
/// cleanly within `TimeoutStopSec`.
fn systemd_unit_command(d: &mut Deployment) {
    let unit = read_unit();
    let guide = std::fs::read_to_string(workspace().join("docs/deploy.md")).unwrap();
    let instance_1 = unit.exec_start.replace("%i", "1");
    assert!(
        guide.contains(&instance_1),
        "docs/deploy.md §4 shows the unit's command line for node 1:\n{instance_1}"
    );

    let var_lib = d.var_lib().display().to_string();
    let config = d.config.display().to_string();
    let raft_node = d.raft_node.display().to_string();
    let mut children = Children(Vec::new());
    for id in 1..=3u64 {
        let argv: Vec<String> = unit
            .exec_start
            .split_whitespace()
            .map(|word| {
                word.replace("%i", &id.to_string())
                    .replace("/usr/local/bin/raft-node", &raft_node)
                    .replace("/etc/raftlab/cluster.toml", &config)
                    .replace("/var/lib/raftlab", &var_lib)
            })
            .collect();
        assert!(
            argv.iter().all(|w| !w.starts_with("/etc/")
                && !w.starts_with("/usr/")
                && !w.starts_with("/var/")),
            "every path of ExecStart moved: {argv:?}"
        );
        assert!(
            argv.contains(&format!("{var_lib}/node-{id}")),
            "the unit's data directory is the one the lab's nodes used: {argv:?}"
        );
        let log = std::fs::File::create(d.dir.join(format!("unit-node-{id}.log"))).unwrap();
        // As systemd runs it: from /, with an empty environment.
        let child = Command::new("ip")
            .args(["netns", "exec", d.ns(id)])
            .args(&argv)
            .current_dir("/")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("ip netns exec {argv:?}: {e}"));
        children.0.push((id, child));
    }

    // The lab did not start these: no pid files, so status shows no process.
    d.wait_healthy("a leader among the unit-run nodes", Pids::None);
    assert_eq!(d.kv(&["get", "greeting"]), "\"hello\"", "the data survived");
    assert_eq!(d.kv(&["get", "rotated-1"]), "1");
    d.put("greeting", "again");

    for (id, child) in &mut children.0 {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, unit.kill_signal)
            .unwrap_or_else(|e| panic!("{} to node {id}: {e}", unit.kill_signal));
        let status = wait_child(child, unit.timeout_stop).unwrap_or_else(|| {
            panic!(
                "node {id} did not exit within TimeoutStopSec ({:?}) of {}",
                unit.timeout_stop, unit.kill_signal
            )
        });
        assert!(
            status.success(),
            "node {id} stopped by {}: {status} (signal {:?}); its output: {}",
            unit.kill_signal,
            status.signal(),
            std::fs::read_to_string(d.dir.join(format!("unit-node-{id}.log"))).unwrap_or_default()
        );
    }
}
