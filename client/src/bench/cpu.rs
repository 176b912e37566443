//! CPU accounting from `/proc`: busy seconds of given processes (`/proc/PID/stat`, user +
//! system) and of the whole machine (`/proc/stat`), sampled at both ends of a measurement
//! window and turned into cores used: by the system under test, by the load generator (this
//! process) and by everything else ("other load").

use std::time::Instant;

/// Clock ticks per second of `/proc` (`USER_HZ`: 100 on every Linux platform this runs on).
const TICKS_PER_SEC: f64 = 100.0;

/// Busy CPU seconds so far, at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    at: Instant,
    /// The system under test's processes together.
    system: f64,
    /// This process: the load generator.
    generator: f64,
    /// Every CPU of the machine.
    machine: f64,
}

/// Cores used between two samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub system: f64,
    pub generator: f64,
    /// The rest of the machine (never below 0).
    pub other: f64,
}

impl Sample {
    /// Samples the processes `pids` (the system under test), this process and the machine.
    pub fn take(pids: &[u32]) -> Sample {
        Sample {
            at: Instant::now(),
            system: pids
                .iter()
                .map(|pid| process_seconds(&pid.to_string()))
                .sum(),
            generator: process_seconds("self"),
            machine: machine_seconds(),
        }
    }

    /// The cores used from `self` to `later`.
    pub fn usage_until(&self, later: &Sample) -> Usage {
        let elapsed = later.at.duration_since(self.at).as_secs_f64();
        if elapsed <= 0.0 {
            return Usage::default();
        }
        let system = (later.system - self.system) / elapsed;
        let generator = (later.generator - self.generator) / elapsed;
        let machine = (later.machine - self.machine) / elapsed;
        Usage {
            system,
            generator,
            other: (machine - system - generator).max(0.0),
        }
    }
}

/// User + system CPU seconds of process `pid` (or `self`) so far; 0 when it is gone.
fn process_seconds(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat_seconds(&stat))
        .unwrap_or(0.0)
}

/// utime + stime of a `/proc/PID/stat` line, in seconds.
fn stat_seconds(stat: &str) -> f64 {
    // The command name (field 2) may hold spaces and parentheses: fields after its closing
    // parenthesis start at field 3; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / TICKS_PER_SEC
}

/// Busy CPU seconds of the whole machine so far (all CPUs); 0 when unreadable.
fn machine_seconds() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .map(|stat| busy_seconds(&stat))
        .unwrap_or(0.0)
}

/// The busy time of `/proc/stat`'s `cpu` line: user, nice, system, irq, softirq, steal
/// (everything but idle and iowait), in seconds.
fn busy_seconds(stat: &str) -> f64 {
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let ticks: f64 = cpu
        .split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, t)| t.parse::<f64>().ok())
        .sum();
    ticks / TICKS_PER_SEC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stat_fields_after_a_command_name_with_spaces() {
        let stat = "42 (raft node) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";
        assert!((stat_seconds(stat) - 3.0).abs() < 1e-9);
        assert_eq!(stat_seconds("garbage"), 0.0);
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 10 50 9000 300 5 5 30 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert!((busy_seconds(stat) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn other_load_is_the_machine_minus_the_measured_processes() {
        let start = Instant::now();
        let a = Sample {
            at: start,
            system: 1.0,
            generator: 1.0,
            machine: 10.0,
        };
        let b = Sample {
            at: start + std::time::Duration::from_secs(2),
            system: 3.0,
            generator: 2.0,
            machine: 16.0,
        };
        let usage = a.usage_until(&b);
        assert!((usage.system - 1.0).abs() < 1e-9);
        assert!((usage.generator - 0.5).abs() < 1e-9);
        assert!((usage.other - 1.5).abs() < 1e-9);
    }
}
