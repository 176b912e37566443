//! The shell commands a remote cluster runs on a node's host through the command template
//! (probe, start, kill, stop, pause, resume, logs, files installed), each a POSIX `sh` script
//! that answers in one word or a few `key value` lines, and the parsing of those answers.
//!
//! A node's process is its pid AND its start time ([`NodeProcess`], both from the probe, which
//! also checked its command line). The kill, stop and pause commands re-check the start time
//! in the same shell right before each signal: if the node died since the probe and its pid
//! now names another process, that process is never signalled (they answer `other`).

use super::program::Program;
use super::NO_LOG_STATUS;
use crate::control::template::shell_quote;
use model::core::NodeId;
use node::config::NodeEntry;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use tracing::warn;

pub(super) fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

pub(super) fn quoted(path: &Path) -> String {
    shell_quote(&path_str(path))
}

/// `DIR/pids/node-N.pid`.
pub fn pid_file(dir: &Path, id: NodeId) -> PathBuf {
    dir.join("pids").join(format!("node-{id}.pid"))
}

/// `DIR/node-N.log`.
pub fn log_file(dir: &Path, id: NodeId) -> PathBuf {
    dir.join(format!("node-{id}.log"))
}

/// A node's process on its host: its pid and its start time (field 22 of /proc/PID/stat,
/// clock ticks since boot), which together name one process, however pids are reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeProcess {
    pub pid: u32,
    pub start: u64,
}

/// Prints `pid P`, `state S` and `start T` (of /proc/P/stat) and one `arg A` line per
/// argument of /proc/P/cmdline, as far as they exist; always exits 0.
pub fn probe_command(dir: &Path, id: NodeId) -> String {
    format!(
        "p=$(tr -d ' \\t\\r\\n' 2>/dev/null < {pid_file}); \
         case \"$p\" in ''|*[!0-9]*) exit 0;; esac; echo \"pid $p\"; \
         {STAT_OF_P}; [ -n \"$st\" ] || exit 0; echo \"state $st\"; echo \"start $t\"; \
         tr '\\000' '\\n' 2>/dev/null < /proc/$p/cmdline | sed 's/^/arg /'; exit 0",
        pid_file = quoted(&pid_file(dir, id)),
    )
}

/// Sets `st` to the state letter and `t` to the start time of process `$p` (both empty when
/// there is no such process). The command name in parentheses may hold spaces and `)`: the
/// fields are counted after the last `) `, where the state is the first and the start time
/// the twentieth.
const STAT_OF_P: &str = "s=$(cat /proc/$p/stat 2>/dev/null); s=${s##*') '}; \
                         set -- $s; st=${1-}; t=${20-}";

/// Sets `p` and `want` to `node`'s pid and start time and defines `ours`, true while `$p`
/// still is that process (called right before each signal, in the same shell as the signal);
/// answers `other` and exits at once when `$p` already names another process (the node is
/// gone and its pid reused). No process `$p` at all is left to the command.
fn guard(node: NodeProcess) -> String {
    format!(
        "p={pid}; want={start}; \
         ours() {{ {STAT_OF_P}; [ -n \"$st\" ] && [ \"$t\" = \"$want\" ]; }}; \
         {STAT_OF_P}; if [ -n \"$st\" ] && [ \"$t\" != \"$want\" ]; then echo other; exit 0; fi",
        pid = node.pid,
        start = node.start,
    )
}

/// Waits up to `ms` for process `$p` to be gone, a zombie or another process than the one
/// started at `$want`; sets `gone` to 1 or 0.
pub(super) fn wait_gone(ms: u64) -> String {
    let steps = ms.div_ceil(50);
    format!(
        "gone=0; n=0; while :; do {STAT_OF_P}; \
         if [ -z \"$st\" ] || [ \"$st\" = Z ] || [ \"$st\" = X ] || [ \"$t\" != \"$want\" ]; \
         then gone=1; break; fi; \
         [ $n -ge {steps} ] && break; n=$((n+1)); \
         sleep 0.05 2>/dev/null || {{ sleep 1; n=$((n+19)); }}; done"
    )
}

/// Starts node `id` of `program` in the background on its host: the banner line, then
/// `nohup PROGRAM ...` appending to the log, its pid to the pid file.
pub fn start_command(program: &dyn Program, dir: &Path, id: NodeId) -> String {
    let log = quoted(&log_file(dir, id));
    format!(
        "mkdir -p {pids} && cd {dir} && echo {banner} >> {log} || exit 1; \
         nohup {node} >> {log} 2>&1 < /dev/null & echo $! > {pid_file}",
        pids = quoted(&dir.join("pids")),
        dir = quoted(dir),
        banner = shell_quote(&program.banner(id)),
        node = program.command(id),
        pid_file = quoted(&pid_file(dir, id)),
    )
}

/// Writes standard input to `path` (its directory made first, the file readable by its
/// owner only, replaced whole through a temporary of this shell's own beside it).
pub fn install_command(path: &Path) -> String {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = format!("{}.tmp.$$", quoted(path));
    format!(
        "mkdir -p {dir} && umask 077 && cat > {tmp} && mv -f {tmp} {path}",
        dir = quoted(dir),
        path = quoted(path),
    )
}

/// SIGCONT + SIGKILL to `node`, waits up to `patience_ms` until it is gone; removes the pid
/// file if it names its pid. Prints `gone`, `stuck`, or `other` (see [`guard`]).
pub fn kill_command(dir: &Path, id: NodeId, node: NodeProcess, patience_ms: u64) -> String {
    let pid_file = quoted(&pid_file(dir, id));
    format!(
        "{guard}; ours && kill -s CONT $p 2>/dev/null; ours && kill -s KILL $p 2>/dev/null; \
         {wait}; \
         if [ $gone = 1 ]; then \
         if [ \"$(cat {pid_file} 2>/dev/null)\" = \"$p\" ]; then rm -f {pid_file}; fi; \
         echo gone; else echo stuck; fi",
        guard = guard(node),
        wait = wait_gone(patience_ms),
    )
}

/// SIGCONT + SIGTERM to `node`, up to `grace_ms` for it to go, then SIGKILL and up to
/// `patience_ms`; removes the pid file if it names its pid. Prints `stopped`, `killed`,
/// `stuck`, or `other` (see [`guard`]).
pub fn stop_command(
    dir: &Path,
    id: NodeId,
    node: NodeProcess,
    grace_ms: u64,
    patience_ms: u64,
) -> String {
    let pid_file = quoted(&pid_file(dir, id));
    format!(
        "{guard}; how=stopped; ours && kill -s CONT $p 2>/dev/null; \
         ours && kill -s TERM $p 2>/dev/null; {grace}; \
         if [ $gone = 0 ]; then how=killed; ours && kill -s KILL $p 2>/dev/null; {patience}; fi; \
         if [ $gone = 1 ]; then \
         if [ \"$(cat {pid_file} 2>/dev/null)\" = \"$p\" ]; then rm -f {pid_file}; fi; \
         echo $how; else echo stuck; fi",
        guard = guard(node),
        grace = wait_gone(grace_ms),
        patience = wait_gone(patience_ms),
    )
}

/// SIGSTOP to `node`, then waits up to `wait_ms` for state `T`; prints the last state seen,
/// or `other` (see [`guard`]); fails when there is no such process.
pub fn pause_command(node: NodeProcess, wait_ms: u64) -> String {
    let steps = wait_ms.div_ceil(50);
    let guard = guard(node);
    format!(
        "{guard}; {{ ours && kill -s STOP $p; }} || exit 1; n=0; while :; do {STAT_OF_P}; \
         case \"$st\" in T|t|Z|X|'') break;; esac; [ $n -ge {steps} ] && break; n=$((n+1)); \
         sleep 0.05 2>/dev/null || break; done; echo \"$st\""
    )
}

/// SIGCONT to `node` (also from the Ctrl-C cleanup, possibly long after the pause: the
/// guard matters there most); prints `other` (see [`guard`]); fails when there is no such
/// process.
pub fn resume_command(node: NodeProcess) -> String {
    format!("{}; ours && kill -s CONT $p", guard(node))
}

/// `cat` of node `id`'s log; exit status 3 when there is none.
pub fn log_command(dir: &Path, id: NodeId) -> String {
    let log = quoted(&log_file(dir, id));
    format!("[ -e {log} ] || exit {NO_LOG_STATUS}; cat {log}")
}

pub(super) fn log_tail_command(dir: &Path, id: NodeId) -> String {
    let log = quoted(&log_file(dir, id));
    format!("tail -n 5 {log} 2>/dev/null || true")
}

/// What [`probe_command`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// The pid file's pid.
    pub pid: Option<u32>,
    /// Its /proc state letter (`None`: no such process).
    pub state: Option<char>,
    /// Its start time (see [`NodeProcess`]).
    pub start: Option<u64>,
    /// Its command line.
    pub args: Vec<String>,
}

pub fn parse_probe(output: &str) -> Probe {
    let mut probe = Probe::default();
    for line in output.lines() {
        if let Some(pid) = line.strip_prefix("pid ") {
            probe.pid = pid.trim().parse().ok();
        } else if let Some(state) = line.strip_prefix("state ") {
            probe.state = state.trim().chars().next();
        } else if let Some(start) = line.strip_prefix("start ") {
            probe.start = start.trim().parse().ok();
        } else if let Some(arg) = line.strip_prefix("arg ") {
            probe.args.push(arg.to_string());
        } else if line == "arg" {
            // `sed 's/^/arg /'` of an empty argument.
            probe.args.push(String::new());
        }
    }
    probe
}

/// The probe's process if it is a live (not zombie) process of node `id` of `program`.
pub fn believed(probe: &Probe, program: &dyn Program, id: NodeId) -> Option<NodeProcess> {
    let node = NodeProcess {
        pid: probe.pid?,
        start: probe.start?,
    };
    let alive = matches!(probe.state, Some(s) if s != 'Z' && s != 'X');
    (alive && program.is_node(&probe.args, id)).then_some(node)
}

/// `path` made absolute against this process's working directory (`""` is that directory).
pub(super) fn local_absolute(path: &Path) -> PathBuf {
    if path.as_os_str().is_empty() {
        return std::env::current_dir().unwrap_or_default();
    }
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `node.addr` resolved (IPv4 preferred), `None` with a warning when it does not resolve.
pub(super) fn resolve(node: &NodeEntry) -> Option<SocketAddr> {
    match node.addr.to_socket_addrs() {
        Ok(addrs) => {
            let all: Vec<SocketAddr> = addrs.collect();
            all.iter().find(|a| a.is_ipv4()).or(all.first()).copied()
        }
        Err(e) => {
            warn!(id = node.id, addr = %node.addr, "cannot resolve: {e}");
            None
        }
    }
}
