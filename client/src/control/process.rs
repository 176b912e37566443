//! Processes on this machine: whether a pid names a live process, and its state letter from
//! `/proc/PID/stat` (the one place both are decided, for nodes, stale nftables tables and
//! stale network namespaces alike); how the lab's node processes are asked to stop
//! ([`terminate`]) and how it waits for a process to change ([`wait_for`]).

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Interval of every wait-for-a-condition loop on processes.
pub const POLL: Duration = Duration::from_millis(20);

/// Some process (possibly a zombie) has this pid. A number that cannot be a pid (0, or
/// beyond `i32`) counts as alive: what such a name was made for is never taken for a dead
/// process's leftover and deleted.
pub fn alive(pid: u32) -> bool {
    match i32::try_from(pid) {
        Ok(raw) if raw > 0 => !matches!(kill(Pid::from_raw(raw), None), Err(Errno::ESRCH)),
        _ => true,
    }
}

/// This process's effective uid, from `/proc/self/status`; why not, when it cannot be read.
pub fn effective_uid() -> Result<u32, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("reading /proc/self/status: {e}"))?;
    parse_euid(&status).ok_or_else(|| "no `Uid:` line in /proc/self/status".to_string())
}

/// The effective uid from `/proc/self/status` (`Uid:\treal\teffective\tsaved\tfs`).
fn parse_euid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The state letter of process `pid` (`R`, `S`, `T` stopped, `Z` zombie, ...); `None` when
/// there is no such process.
pub fn state(pid: u32) -> Option<char> {
    stat_state(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The state letter of a `/proc/PID/stat` line: the command name may hold spaces and
/// parentheses, the state follows the last `)`.
pub fn stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Polls `done` every [`POLL`] until it holds (true) or `patience` passes (false).
pub fn wait_for(patience: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Asks every process in `procs` to exit: SIGCONT first (a stopped process does not act on
/// SIGTERM until it runs again, and a paused node must not outlive its grace for that), then
/// SIGTERM; waits up to `grace` until `gone` says each has exited. Returns the keys of the
/// processes still running, for the caller to SIGKILL and reap.
pub fn terminate<K: Copy>(
    procs: &[(K, Pid)],
    grace: Duration,
    mut gone: impl FnMut(K) -> bool,
) -> Vec<K> {
    for (_, pid) in procs {
        let _ = kill(*pid, Signal::SIGCONT);
        let _ = kill(*pid, Signal::SIGTERM);
    }
    wait_for(grace, || procs.iter().all(|(key, _)| gone(*key)));
    procs
        .iter()
        .map(|(key, _)| *key)
        .filter(|key| !gone(*key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euid_comes_from_the_second_uid_field() {
        let status =
            "Name:\traft-lab\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_euid(status), Some(0));
        assert_eq!(parse_euid("Uid:\t0\t1000\t1000\t1000\n"), Some(1000));
        assert_eq!(parse_euid("Name:\tx\n"), None);
    }
    use std::process::{Command, Stdio};

    /// A stopped process is resumed, so SIGTERM ends it within the grace; one that ignores
    /// SIGTERM is handed back for SIGKILL.
    #[test]
    fn terminate_resumes_the_stopped_and_returns_the_stubborn() {
        let spawn = |script: &str| {
            Command::new("sh")
                .args(["-c", script])
                .stdin(Stdio::null())
                .spawn()
                .expect("sh runs")
        };
        let mut stopped = spawn("exec sleep 600");
        let mut stubborn = spawn("trap '' TERM; while :; do sleep 1; done");
        let pid = |c: &std::process::Child| Pid::from_raw(c.id() as i32);
        kill(pid(&stopped), Signal::SIGSTOP).expect("SIGSTOP");
        assert!(wait_for(Duration::from_secs(10), || state(stopped.id()) == Some('T')));
        // The shell must have set its trap before it is asked to stop.
        assert!(wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(format!("/proc/{}/status", stubborn.id()))
                .ok()
                .and_then(|s| {
                    let line = s.lines().find(|l| l.starts_with("SigIgn:"))?.to_string();
                    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
                })
                .is_some_and(|mask| mask & (1 << (Signal::SIGTERM as u64 - 1)) != 0)
        }));
        let procs = [(1, pid(&stopped)), (2, pid(&stubborn))];
        let mut exited = |key: u32| {
            let child = if key == 1 {
                &mut stopped
            } else {
                &mut stubborn
            };
            !matches!(child.try_wait(), Ok(None))
        };
        let left = terminate(&procs, Duration::from_secs(2), &mut exited);
        assert_eq!(left, vec![2]);
        kill(pid(&stubborn), Signal::SIGKILL).expect("SIGKILL");
        stubborn.wait().expect("reaped");
        let status = stopped.wait().expect("reaped");
        assert!(status.code().is_none(), "ended by SIGTERM: {status:?}");
    }

    #[test]
    fn states_and_liveness() {
        assert_eq!(stat_state("42 (raft-node) S 1 42"), Some('S'));
        assert_eq!(stat_state("42 (a) b) (c) T 1"), Some('T'));
        assert_eq!(stat_state("42 (x) Z 1"), Some('Z'));
        assert_eq!(stat_state("garbage"), None);
        assert!(matches!(state(std::process::id()), Some('R' | 'S')));
        assert_eq!(state(i32::MAX as u32), None);
        assert!(alive(std::process::id()));
        assert!(
            alive(0) && alive(u32::MAX),
            "not a pid: never taken for dead"
        );
    }
}
