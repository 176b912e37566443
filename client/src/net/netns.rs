//! Network namespaces as hosts: each raft node gets a Linux network namespace of its own,
//! with its own IPv4 address on a bridge, so node-to-node traffic crosses separate network
//! stacks (and per-node nftables/tc rules apply to one node only). The lab process stays in
//! the root namespace and reaches every node through the bridge's address. This module only
//! builds and tears down that network; starting nodes inside it (`ip netns exec NS ...`) and
//! breaking it are someone else's job.
//!
//! # Layout
//!
//! One network ([`NetnsHosts`]) is a bridge in the root namespace holding `10.213.X.254/24`
//! (the [lab address](NetnsHosts::lab_ip)) and, for node `i` (1-based), a namespace whose
//! `eth0` holds `10.213.X.i/24`, joined to the bridge by a veth pair. `X` (1..=250) is the
//! first subnet in which no interface of the root namespace has an address and which no other
//! live network of this process holds.
//!
//! # Naming
//!
//! Every name starts with the prefix `rl{pid:x}x{k:x}`: `pid` is the creating process's id
//! and `k` a per-process counter, both in lowercase hex, so one process (a test binary, say)
//! can hold several networks at once. The bridge is `<prefix>b`, node `i`'s namespace is
//! `<prefix>n{i}` and its host-side veth `<prefix>v{i}` (the namespace side is `eth0`), all
//! within Linux's 15-byte interface names. Names that do not have exactly this shape are
//! never touched.
//!
//! # Cleanup
//!
//! [`NetnsHosts::destroy`] (also run by `Drop`) SIGKILLs whatever still runs inside the
//! namespaces, then deletes the veths, the namespaces and the bridge; it is idempotent.
//! Networks whose creating process died without cleaning up are *stale*: their name's pid is
//! not a live process. [`NetnsHosts::create`] first deletes those ([`delete_stale`]). For an
//! emergency exit (Ctrl-C), every network registers its teardown in [`cleanup`] while this
//! process holds it; the `NetnsHosts` values swept by [`cleanup::run_all`] then destroy quietly.
//!
//! # br_netfilter
//!
//! Where the `br_netfilter` module is loaded and `net.bridge.bridge-nf-call-iptables` is 1
//! (as on many hosts running containers), IPv4 traffic crossing the bridge also passes the
//! root namespace's iptables/nftables hooks (FORWARD for node to node). The kernel ORs the
//! per-bridge `nf_call_iptables` option with that sysctl, so a bridge cannot opt out of it on
//! its own; this module changes no sysctl and only logs (at debug level) that the hooks apply.
//! A root-namespace firewall that drops forwarded traffic would therefore cut nodes off from
//! each other.

use crate::control::cleanup::{self, Cleanup};
use crate::control::process;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Name of the interface inside every namespace.
const IFACE: &str = "eth0";
/// Linux's longest interface name (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;
/// Most nodes one network can hold: `.1` to `.253` (`.254` is the bridge).
const MAX_NODES: usize = 253;
/// Subnets `10.213.X.0/24` are tried for X in this range, in order.
const SUBNETS: std::ops::RangeInclusive<u8> = 1..=250;
/// How many subnets `create` tries when another process claims the same one at once.
const SUBNET_ATTEMPTS: usize = 8;

/// Per-process counter for the `k` in `rl{pid:x}x{k:x}`.
static COUNTER: AtomicU64 = AtomicU64::new(0);
/// Networks this process created (or is creating) and has not destroyed.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    prefixes: BTreeMap::new(),
    subnets: BTreeMap::new(),
});

/// What this process holds: each network's prefix with its Ctrl-C teardown (registered in
/// [`cleanup`]), and which subnet each holds so that concurrent `create` calls never pick the
/// same one.
struct Registry {
    prefixes: BTreeMap<String, Cleanup>,
    subnets: BTreeMap<String, u8>,
}

impl Registry {
    fn remove(&mut self, prefix: &str) -> bool {
        self.subnets.remove(prefix);
        self.prefixes.remove(prefix).is_some()
    }
}

/// The registry, even if a thread panicked while holding it (it stays consistent: every
/// change is a single insert or remove).
fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The command template that runs a command in a node's namespace (`{host}`: its name).
pub const EXEC_TEMPLATE: &str = "ip netns exec {host} sh -c";

/// Why building, inspecting or tearing down a namespace network failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The `ip` command is not installed (or not on `PATH`).
    #[error(
        "`{command}` could not start: the `ip` command (iproute2) is missing ({source}); \
         install iproute2 (e.g. `apt-get install iproute2`) or use local hosts"
    )]
    IpMissing {
        /// The command line that could not start.
        command: String,
        /// The error from starting it.
        source: std::io::Error,
    },
    /// Creating network namespaces needs root.
    #[error(
        "network namespaces need root, but the effective uid is {euid}: run raft-lab as root \
         (e.g. with sudo) or use local hosts"
    )]
    NotRoot {
        /// This process's effective uid.
        euid: u32,
    },
    /// A command could not be started for another reason than being missing.
    #[error("`{command}` could not start: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The error from starting it.
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// What it wrote on stderr (trimmed).
        stderr: String,
    },
    /// The effective uid could not be read from `/proc/self/status`.
    #[error("cannot tell whether we are root: {0}")]
    Uid(String),
    /// The node count is outside what one /24 network holds.
    #[error("a namespace network holds 1 to {MAX_NODES} nodes, not {0}")]
    Nodes(usize),
    /// A name would exceed Linux's 15-byte interface names.
    #[error("interface name `{0}` would be longer than {MAX_IFNAME} bytes (too many networks or nodes in this process)")]
    NameTooLong(String),
    /// Every subnet 10.213.1.0/24 to 10.213.250.0/24 is in use.
    #[error(
        "no free subnet 10.213.X.0/24 (X in 1..=250): every one has an address in \
         `ip -4 -o addr show` or is held by another network of this process{0}"
    )]
    NoFreeSubnet(String),
    /// The Ctrl-C cleanup swept the network while `create` was still building it.
    #[error("network {0} was removed by the Ctrl-C cleanup while it was being created")]
    Cancelled(String),
}

/// One node's host: its namespace and its address there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetnsHost {
    /// The network namespace's name (for `ip netns exec NAME ...` / `ip -n NAME ...`).
    pub name: String,
    /// The node's address, on `iface`.
    pub ip: Ipv4Addr,
    /// The interface inside the namespace that holds `ip`: always `"eth0"`.
    pub iface: String,
}

/// One network: a bridge in the root namespace plus one namespace per node, each joined to
/// the bridge by a veth pair. Torn down by [`destroy`](NetnsHosts::destroy) or on drop.
#[derive(Debug)]
pub struct NetnsHosts {
    prefix: String,
    bridge: String,
    lab_ip: Ipv4Addr,
    hosts: Vec<NetnsHost>,
    destroyed: bool,
}

impl NetnsHosts {
    /// Builds a network of `nodes` namespaces (1 to 253) on a new bridge, after deleting the
    /// stale networks of dead lab processes. If any step fails, removes what it had made
    /// before returning the error.
    pub fn create(nodes: usize) -> Result<NetnsHosts, NetnsError> {
        if nodes == 0 || nodes > MAX_NODES {
            return Err(NetnsError::Nodes(nodes));
        }
        check_available()?;
        delete_stale();

        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let names = Names::new(std::process::id(), k);
        for name in [names.bridge(), names.veth(nodes)] {
            if name.len() > MAX_IFNAME {
                return Err(NetnsError::NameTooLong(name));
            }
        }

        match build(&names, nodes) {
            Ok(net) => Ok(net),
            Err(err) => {
                if let Err(cleanup) = teardown(&names.prefix) {
                    tracing::warn!(prefix = %names.prefix, error = %cleanup, "netns: cleaning up after a failed create");
                }
                registry().remove(&names.prefix);
                Err(err)
            }
        }
    }

    /// The nodes' hosts: node `i` (1-based) is `hosts()[i - 1]`.
    pub fn hosts(&self) -> &[NetnsHost] {
        &self.hosts
    }

    /// The bridge's address in the root namespace: where the lab process reaches nodes from.
    pub fn lab_ip(&self) -> Ipv4Addr {
        self.lab_ip
    }

    /// The bridge's interface name (in the root namespace).
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Tears the network down: SIGKILLs every process still inside the namespaces, deletes
    /// the veths, the namespaces and the bridge. Idempotent; a quiet no-op once done, and for
    /// a network that Ctrl-C's [`cleanup::run_all`] already removed.
    pub fn destroy(&mut self) -> Result<(), NetnsError> {
        if self.destroyed {
            return Ok(());
        }
        // Held throughout, so that the subnet is not handed out again before its addresses
        // are gone, and so that a concurrent Ctrl-C cleanup does not tear down the same names.
        let mut registry = registry();
        if !registry.prefixes.contains_key(&self.prefix) {
            self.destroyed = true;
            return Ok(());
        }
        let result = teardown(&self.prefix);
        if result.is_ok() {
            registry.remove(&self.prefix);
            self.destroyed = true;
            tracing::info!(prefix = %self.prefix, bridge = %self.bridge, subnet = %subnet_text(self.lab_ip), "netns: destroyed network");
        }
        result
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        if let Err(err) = self.destroy() {
            tracing::warn!(prefix = %self.prefix, error = %err, "netns: destroying network on drop");
        }
    }
}

/// Builds the network for `names`: picks a subnet (registering the prefix), the bridge, then
/// the namespaces. The caller removes everything on error.
fn build(names: &Names, nodes: usize) -> Result<NetnsHosts, NetnsError> {
    let x = claim_subnet(names)?;
    let lab_ip = Ipv4Addr::new(10, 213, x, 254);
    let bridge = names.bridge();
    bridge_nf_note(&bridge);

    let mut hosts = Vec::with_capacity(nodes);
    for i in 1..=nodes {
        let ns = names.namespace(i);
        let veth = names.veth(i);
        let ip_i = Ipv4Addr::new(10, 213, x, node_octet(i));
        let cidr = format!("{ip_i}/24");
        ip(&["netns", "add", &ns])?;
        ip(&[
            "link", "add", "name", &veth, "type", "veth", "peer", "name", IFACE, "netns", &ns,
        ])?;
        ip(&["link", "set", "dev", &veth, "master", &bridge])?;
        ip(&["link", "set", "dev", &veth, "up"])?;
        ip(&["-n", &ns, "addr", "add", &cidr, "dev", IFACE])?;
        ip(&["-n", &ns, "link", "set", "dev", "lo", "up"])?;
        ip(&["-n", &ns, "link", "set", "dev", IFACE, "up"])?;
        hosts.push(NetnsHost {
            name: ns,
            ip: ip_i,
            iface: IFACE.to_string(),
        });
    }

    if !registry().prefixes.contains_key(&names.prefix) {
        return Err(NetnsError::Cancelled(names.prefix.clone()));
    }
    let net = NetnsHosts {
        prefix: names.prefix.clone(),
        bridge,
        lab_ip,
        hosts,
        destroyed: false,
    };
    let namespaces: Vec<&str> = net.hosts.iter().map(|h| h.name.as_str()).collect();
    tracing::info!(
        prefix = %net.prefix,
        bridge = %net.bridge,
        subnet = %subnet_text(lab_ip),
        lab_ip = %lab_ip,
        namespaces = ?namespaces,
        "netns: created network"
    );
    Ok(net)
}

/// Picks a free subnet, registers `names.prefix` as holding it, and creates the bridge with
/// `10.213.X.254/24`, up. If another process put an address in the same subnet at the same
/// time, gives that subnet up and tries the next. Returns X.
fn claim_subnet(names: &Names) -> Result<u8, NetnsError> {
    let bridge = names.bridge();
    let mut rejected = BTreeSet::new();
    for _ in 0..SUBNET_ATTEMPTS {
        let x = {
            let mut registry = registry();
            let listing = ip(&["-4", "-o", "addr", "show"])?;
            let mut taken: BTreeSet<u8> = registry.subnets.values().copied().collect();
            taken.extend(rejected.iter().copied());
            let Some(x) = choose_subnet(&listing, &taken) else {
                return Err(NetnsError::NoFreeSubnet(String::new()));
            };
            registry
                .prefixes
                .insert(names.prefix.clone(), delete_on_exit(&names.prefix));
            registry.subnets.insert(names.prefix.clone(), x);
            x
        };
        let cidr = format!("{}/24", Ipv4Addr::new(10, 213, x, 254));
        if !link_exists(&bridge)? {
            ip(&["link", "add", "name", &bridge, "type", "bridge"])?;
        }
        ip(&["addr", "add", &cidr, "dev", &bridge])?;
        let listing = ip(&["-4", "-o", "addr", "show"])?;
        let clash = subnet_users(&listing, x)
            .into_iter()
            .any(|iface| iface != bridge);
        if !clash {
            ip(&["link", "set", "dev", &bridge, "up"])?;
            return Ok(x);
        }
        tracing::debug!(subnet = %subnet_text(Ipv4Addr::new(10, 213, x, 0)), "netns: another process took the same subnet; trying the next");
        ip(&["addr", "del", &cidr, "dev", &bridge])?;
        rejected.insert(x);
    }
    Err(NetnsError::NoFreeSubnet(format!(
        " (other processes kept claiming the same subnets, {SUBNET_ATTEMPTS} attempts)"
    )))
}

/// Logs whether bridged traffic on `bridge` passes the root namespace's netfilter hooks (see
/// the module documentation: a bridge cannot opt out, so nothing is changed).
fn bridge_nf_note(bridge: &str) {
    match std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables") {
        Ok(value) if value.trim() == "1" => tracing::debug!(
            bridge,
            "netns: br_netfilter is on (bridge-nf-call-iptables=1): traffic between namespaces \
             passes the root namespace's FORWARD hooks; a per-bridge nf_call_iptables 0 cannot \
             override that, so nothing is changed"
        ),
        Ok(_) => tracing::debug!(
            bridge,
            "netns: br_netfilter loaded but bridge-nf-call-iptables=0"
        ),
        Err(_) => tracing::debug!(
            bridge,
            "netns: br_netfilter not loaded: bridged traffic skips iptables/nftables"
        ),
    }
}

/// Checks that namespace networks can be built here: `ip` runs and we are root (effective
/// uid 0). The error says what to install or do.
pub fn check_available() -> Result<(), NetnsError> {
    ip(&["-V"])?;
    let euid = crate::control::process::effective_uid().map_err(NetnsError::Uid)?;
    if euid != 0 {
        return Err(NetnsError::NotRoot { euid });
    }
    Ok(())
}

/// Deletes the networks (namespaces, veths, bridges) whose names carry the pid of a process
/// that is no longer alive, SIGKILLing whatever still runs inside those namespaces. Returns
/// the names it removed. Failures are logged, not returned: this is housekeeping.
pub fn delete_stale() -> Vec<String> {
    let me = std::process::id();
    let removal = remove_matching(|name| is_stale(name, me, process::alive));
    if !removal.removed.is_empty() {
        let prefixes: BTreeSet<String> = removal
            .removed
            .iter()
            .filter_map(|n| parse_name(n).map(|p| p.prefix()))
            .collect();
        tracing::info!(networks = ?prefixes, "netns: deleted stale networks of dead processes");
    }
    for err in removal.errors {
        tracing::warn!(error = %err, "netns: deleting stale networks");
    }
    removal.removed
}

/// The Ctrl-C teardown of network `prefix`, run after every other undo (the nodes inside and
/// the rules on them go first). The [`NetnsHosts`] concerned stays valid and its later
/// `destroy`/drop does nothing.
fn delete_on_exit(prefix: &str) -> Cleanup {
    let prefix = prefix.to_string();
    cleanup::register_host(move || {
        let mut registry = registry();
        if !registry.prefixes.contains_key(&prefix) {
            return;
        }
        match teardown(&prefix) {
            Ok(()) => tracing::info!(prefix = %prefix, "netns: deleted own network"),
            Err(err) => {
                tracing::warn!(prefix = %prefix, error = %err, "netns: deleting own network")
            }
        }
        registry.remove(&prefix);
    })
}

/// Removes everything named with `prefix` that exists: kills the processes in its
/// namespaces, deletes its veths, namespaces and bridge. Tries every step; returns the first
/// error.
fn teardown(prefix: &str) -> Result<(), NetnsError> {
    let removal = remove_matching(|name| parse_name(name).is_some_and(|p| p.prefix() == prefix));
    for err in &removal.errors {
        tracing::debug!(error = %err, "netns: teardown step failed");
    }
    match removal.errors.into_iter().next() {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// What [`remove_matching`] removed, and what failed.
struct Removal {
    removed: Vec<String>,
    errors: Vec<NetnsError>,
}

/// Removes the namespaces and links whose names `matches`: kills the processes in those
/// namespaces, then deletes the veths, the namespaces and the bridges, trying every step.
fn remove_matching(matches: impl Fn(&str) -> bool) -> Removal {
    let mut removal = Removal {
        removed: Vec::new(),
        errors: Vec::new(),
    };
    let mut listed = |args: &[&str], parse: fn(&str) -> Vec<String>| match ip(args) {
        Ok(out) => parse(&out).into_iter().filter(|n| matches(n)).collect(),
        Err(err) => {
            removal.errors.push(err);
            Vec::new()
        }
    };
    let namespaces: Vec<String> = listed(&["netns", "list"], parse_netns_names);
    let links: Vec<String> = listed(&["-o", "link", "show"], parse_link_names);
    for ns in &namespaces {
        kill_inside(ns);
    }
    // Deleting a veth end removes its peer synchronously; deleting only the namespace would
    // leave the host end around until the kernel frees the namespace, asynchronously.
    let (veths, bridges): (Vec<&String>, Vec<&String>) = links
        .iter()
        .partition(|n| matches!(parse_name(n), Some(p) if p.kind != Kind::Bridge));
    let steps = veths
        .into_iter()
        .map(|l| (l, delete_link(l)))
        .chain(namespaces.iter().map(|ns| (ns, delete_namespace(ns))))
        .chain(bridges.into_iter().map(|l| (l, delete_link(l))));
    for (name, result) in steps {
        match result {
            Ok(()) => removal.removed.push(name.clone()),
            Err(err) => removal.errors.push(err),
        }
    }
    removal
}

/// SIGKILLs every process inside namespace `ns` (never this process).
fn kill_inside(ns: &str) {
    let out = match ip(&["netns", "pids", ns]) {
        Ok(out) => out,
        Err(err) => {
            tracing::debug!(error = %err, "netns: listing processes in a namespace");
            return;
        }
    };
    let me = std::process::id();
    for pid in out.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
        if pid == me || pid == 0 || pid > i32::MAX as u32 {
            continue;
        }
        match kill(Pid::from_raw(pid as i32), Signal::SIGKILL) {
            Ok(()) => tracing::debug!(ns, pid, "netns: killed a process left in the namespace"),
            Err(Errno::ESRCH) => {}
            Err(err) => {
                tracing::warn!(ns, pid, error = %err, "netns: killing a process left in the namespace")
            }
        }
    }
}

/// Deletes link `name`; one that is already gone counts as deleted.
fn delete_link(name: &str) -> Result<(), NetnsError> {
    match ip(&["link", "del", "dev", name]) {
        Err(NetnsError::Command { stderr, .. }) if stderr.contains("Cannot find device") => Ok(()),
        other => other.map(drop),
    }
}

/// Deletes namespace `name`; one that is already gone counts as deleted.
fn delete_namespace(name: &str) -> Result<(), NetnsError> {
    match ip(&["netns", "delete", name]) {
        Err(NetnsError::Command { stderr, .. }) if stderr.contains("No such file") => Ok(()),
        other => other.map(drop),
    }
}

/// Whether link `name` exists in the root namespace.
fn link_exists(name: &str) -> Result<bool, NetnsError> {
    let out = ip(&["-o", "link", "show"])?;
    Ok(parse_link_names(&out).iter().any(|n| n == name))
}

/// Runs `ip ARGS...` and returns its stdout; any failure names the command and its stderr.
fn ip(args: &[&str]) -> Result<String, NetnsError> {
    let command = || format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                NetnsError::IpMissing {
                    command: command(),
                    source,
                }
            } else {
                NetnsError::Spawn {
                    command: command(),
                    source,
                }
            }
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(NetnsError::Command {
            command: command(),
            status: output.status.to_string(),
            stderr: if stderr.is_empty() {
                "(no stderr)".to_string()
            } else {
                stderr
            },
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `10.213.X.0/24` for an address in it, for logs.
fn subnet_text(ip: Ipv4Addr) -> String {
    let [a, b, c, _] = ip.octets();
    format!("{a}.{b}.{c}.0/24")
}

/// Node `i`'s last address byte (`i` is at most [`MAX_NODES`]).
fn node_octet(i: usize) -> u8 {
    u8::try_from(i).unwrap_or(u8::MAX)
}

// ---- pure parts ----

/// The names of one network.
struct Names {
    prefix: String,
}

impl Names {
    fn new(pid: u32, k: u64) -> Names {
        Names {
            prefix: format!("rl{pid:x}x{k:x}"),
        }
    }
    fn bridge(&self) -> String {
        format!("{}b", self.prefix)
    }
    fn namespace(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }
    fn veth(&self, i: usize) -> String {
        format!("{}v{i}", self.prefix)
    }
}

/// What a lab name names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bridge,
    Namespace(usize),
    Veth(usize),
}

/// A name of the shape `rl{pid:x}x{k:x}` + `b` | `n{i}` | `v{i}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LabName {
    pid: u32,
    k: u64,
    kind: Kind,
}

impl LabName {
    fn prefix(&self) -> String {
        format!("rl{:x}x{:x}", self.pid, self.k)
    }
}

/// Parses a lab name. The suffix is taken from the end (`b`, or `n`/`v` and decimal digits)
/// because `b` is also a hex digit; the rest must be exactly `rl{pid:x}x{k:x}` as this module
/// would write it (lowercase, no leading zeros), with `pid` a positive `i32`.
fn parse_name(name: &str) -> Option<LabName> {
    let (body, kind) = if let Some(body) = name.strip_suffix('b') {
        (body, Kind::Bridge)
    } else {
        let digits_at = name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (head, digits) = name.split_at(digits_at);
        if digits.is_empty() || digits.len() > 3 || digits.starts_with('0') {
            return None;
        }
        let i: usize = digits.parse().ok()?;
        if let Some(body) = head.strip_suffix('n') {
            (body, Kind::Namespace(i))
        } else if let Some(body) = head.strip_suffix('v') {
            (body, Kind::Veth(i))
        } else {
            return None;
        }
    };
    let rest = body.strip_prefix("rl")?;
    let (pid_hex, k_hex) = rest.split_once('x')?;
    let hex = |s: &str| {
        !s.is_empty() && s.len() <= 16 && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
    };
    if !hex(pid_hex) || !hex(k_hex) {
        return None;
    }
    let pid = u32::from_str_radix(pid_hex, 16).ok()?;
    let k = u64::from_str_radix(k_hex, 16).ok()?;
    if pid == 0 || pid > i32::MAX as u32 {
        return None;
    }
    let parsed = LabName { pid, k, kind };
    (parsed.prefix() == body).then_some(parsed)
}

/// Whether `name` is a lab name whose process is gone: its pid is not `me` and `alive` says
/// it is not running. Names of any other shape are never stale.
fn is_stale(name: &str, me: u32, alive: impl Fn(u32) -> bool) -> bool {
    match parse_name(name) {
        Some(parsed) => parsed.pid != me && !alive(parsed.pid),
        None => false,
    }
}

/// Namespace names from `ip netns list` (`NAME` or `NAME (id: N)` per line).
fn parse_netns_names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Interface names from `ip -o link show` (`N: NAME[@PEER]: <FLAGS> ...` per line).
fn parse_link_names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(": ");
            fields.next()?;
            let name = fields.next()?.trim();
            let name = name.split('@').next().unwrap_or(name);
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// `(interface, address)` pairs from `ip -4 -o addr show`
/// (`N: IFACE    inet A.B.C.D/LEN ...` per line).
fn parse_addresses(listing: &str) -> Vec<(String, Ipv4Addr)> {
    listing
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.next()?;
            let iface = words.next()?;
            let iface = iface.split('@').next().unwrap_or(iface).to_string();
            words.find(|w| *w == "inet")?;
            let cidr = words.next()?;
            let addr = cidr.split('/').next()?.parse().ok()?;
            Some((iface, addr))
        })
        .collect()
}

/// The interfaces in `listing` holding an address in `10.213.x.0/24`.
fn subnet_users(listing: &str, x: u8) -> Vec<String> {
    parse_addresses(listing)
        .into_iter()
        .filter(|(_, addr)| addr.octets()[..3] == [10, 213, x])
        .map(|(iface, _)| iface)
        .collect()
}

/// The first X in 1..=250 such that no interface in `listing` (`ip -4 -o addr show`) holds an
/// address in `10.213.X.0/24` (so in particular not `10.213.X.254`) and X is not in `taken`.
fn choose_subnet(listing: &str, taken: &BTreeSet<u8>) -> Option<u8> {
    let used: BTreeSet<u8> = parse_addresses(listing)
        .into_iter()
        .filter_map(|(_, addr)| match addr.octets() {
            [10, 213, x, _] => Some(x),
            _ => None,
        })
        .collect();
    SUBNETS
        .into_iter()
        .find(|x| !used.contains(x) && !taken.contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_the_parser() {
        let names = Names::new(0x3039, 0x1b);
        assert_eq!(names.prefix, "rl3039x1b");
        assert_eq!(names.bridge(), "rl3039x1bb");
        assert_eq!(names.namespace(3), "rl3039x1bn3");
        assert_eq!(names.veth(12), "rl3039x1bv12");
        let bridge = parse_name(&names.bridge()).unwrap();
        assert_eq!(
            bridge,
            LabName {
                pid: 0x3039,
                k: 0x1b,
                kind: Kind::Bridge
            }
        );
        assert_eq!(bridge.prefix(), names.prefix);
        assert_eq!(
            parse_name(&names.namespace(3)).unwrap().kind,
            Kind::Namespace(3)
        );
        assert_eq!(parse_name(&names.veth(12)).unwrap().kind, Kind::Veth(12));
        // `b` is a hex digit: the bridge of k=1 and the network of k=0x1b stay apart.
        assert_eq!(
            parse_name("rl3039x1b").unwrap(),
            LabName {
                pid: 0x3039,
                k: 1,
                kind: Kind::Bridge
            }
        );
        assert_eq!(parse_name("rl3039x1bn1").unwrap().k, 0x1b);
    }

    #[test]
    fn foreign_names_do_not_parse() {
        for name in [
            "eth0",
            "lo",
            "docker0",
            "br-1234",
            "rl",
            "rlb",
            "rlxb",
            "rl12b",
            "rl12x",
            "rl12xb",
            "rlx1b",
            "rl12x1",
            "rl12x1n",
            "rl12x1n01",
            "rl12x1q1",
            "rl12x1n1b1",
            "RL12x1b",
            "rl12X1b",
            "rl0c3x1b",
            "rl12x01b",
            "rl0x1b",
            "rlfffffffffx1b",
            "rl80000000x1b",
            "rl12x1n1234",
            "xrl12x1b",
            "rl-1x1b",
        ] {
            assert_eq!(parse_name(name), None, "{name}");
        }
        assert!(parse_name("rl7fffffffx0b").is_some());
    }

    #[test]
    fn staleness_needs_a_lab_name_a_dead_pid_and_not_ours() {
        let alive = |pid: u32| pid == 0x10;
        assert!(is_stale("rl20x0b", 1, alive));
        assert!(is_stale("rl20x3n2", 1, alive));
        assert!(is_stale("rl20x3v2", 1, alive));
        assert!(!is_stale("rl10x0b", 1, alive), "live pid");
        assert!(!is_stale("rl20x0b", 0x20, alive), "our own pid");
        assert!(!is_stale("br0", 1, alive));
        assert!(!is_stale("rl20x0", 1, alive), "no suffix: not ours");
        assert!(!is_stale("rl20x0n1", 1, |_| true));
    }

    #[test]
    fn listings_parse() {
        let netns = "rl1x0n2 (id: 1)\nrl1x0n1 (id: 0)\nother\n";
        assert_eq!(parse_netns_names(netns), ["rl1x0n2", "rl1x0n1", "other"]);
        let links = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n\
                     7: rl1x0b: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\\    link/ether 5a:1c:00:00:00:01\n\
                     9: rl1x0v1@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master rl1x0b state UP\\    link/ether 6e:00:00:00:00:02 link-netns rl1x0n1\n";
        assert_eq!(parse_link_names(links), ["lo", "rl1x0b", "rl1x0v1"]);
        let addrs = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                     4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever\n\
                     7: rl1x0b    inet 10.213.1.254/24 scope global rl1x0b\\       valid_lft forever preferred_lft forever\n";
        assert_eq!(
            parse_addresses(addrs),
            [
                ("lo".to_string(), Ipv4Addr::LOCALHOST),
                ("eth0".to_string(), Ipv4Addr::new(192, 0, 2, 2)),
                ("rl1x0b".to_string(), Ipv4Addr::new(10, 213, 1, 254)),
            ]
        );
        assert_eq!(subnet_users(addrs, 1), ["rl1x0b"]);
        assert!(subnet_users(addrs, 2).is_empty());
    }

    #[test]
    fn subnet_choice_skips_used_and_taken_subnets() {
        let none = BTreeSet::new();
        let plain = "1: lo    inet 127.0.0.1/8 scope host lo\\ valid_lft forever\n\
                     4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\ valid_lft forever\n";
        assert_eq!(choose_subnet(plain, &none), Some(1));
        assert_eq!(choose_subnet("", &none), Some(1));
        let used = format!(
            "{plain}7: rl1x0b    inet 10.213.1.254/24 scope global rl1x0b\\ x\n\
             8: br9    inet 10.213.2.7/24 scope global br9\\ x\n\
             9: eth1    inet 10.214.3.254/24 scope global eth1\\ x\n"
        );
        assert_eq!(choose_subnet(&used, &none), Some(3));
        assert_eq!(choose_subnet(&used, &BTreeSet::from([3, 4])), Some(5));
        let all: BTreeSet<u8> = (1..=250).collect();
        assert_eq!(choose_subnet(plain, &all), None);
        let almost: BTreeSet<u8> = (1..=249).collect();
        assert_eq!(choose_subnet(plain, &almost), Some(250));
    }

    #[test]
    fn names_fit_linux_interface_names() {
        // The largest pid Linux hands out (PID_MAX_LIMIT - 1) with 253 nodes leaves room for
        // 256 networks per process.
        let names = Names::new(4_194_303, 0xff);
        assert_eq!(names.veth(MAX_NODES).len(), MAX_IFNAME);
        assert!(names.bridge().len() <= MAX_IFNAME);
    }

    #[test]
    fn command_errors_name_the_command_and_stderr() {
        let err = ip(&["link", "show", "dev", "rl-no-such-device-x"]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("ip link show dev rl-no-such-device-x"),
            "{text}"
        );
        match err {
            NetnsError::IpMissing { .. } => assert!(text.contains("install iproute2"), "{text}"),
            _ => assert!(
                text.contains("does not exist") || text.contains("Cannot find"),
                "{text}"
            ),
        }
    }

    #[test]
    fn node_counts_outside_one_subnet_are_refused_up_front() {
        assert!(matches!(NetnsHosts::create(0), Err(NetnsError::Nodes(0))));
        assert!(matches!(
            NetnsHosts::create(254),
            Err(NetnsError::Nodes(254))
        ));
    }
}
