//! Processes on this machine: whether a pid names a live process, and its state letter from
//! `/proc/PID/stat`. The one place both are decided, for nodes, stale nftables tables and
//! stale network namespaces alike.

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Some process (possibly a zombie) has this pid. A number that cannot be a pid (0, or
/// beyond `i32`) counts as alive: what such a name was made for is never taken for a dead
/// process's leftover and deleted.
pub fn alive(pid: u32) -> bool {
    match i32::try_from(pid) {
        Ok(raw) if raw > 0 => !matches!(kill(Pid::from_raw(raw), None), Err(Errno::ESRCH)),
        _ => true,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
