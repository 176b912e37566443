//! The nemesis: real faults on a seeded schedule, every action recorded in the history.
//!
//! Kinds (the contract's names): `kill`, `pause`, `partition-halves`,
//! `partition-majorities-ring`, `partition-bridge`, `isolate-leader`, `partition-one`; and
//! `kill-leader`, `pause-leader` (the node that leads when the fault starts: a leader dying or
//! freezing with requests in flight is what exposes retry and lease bugs); `freeze-leader`
//! (the leader cut off from the other nodes as by `isolate-leader` and SIGSTOPped at once,
//! SIGCONTed three quarters into the fault still cut off, the links healed at its end: a VM
//! suspended by its hypervisor while its peers' packets are dropped, or a stop-the-world GC
//! pause during a network blip; it wakes alone, trusting whatever it believed, with its
//! clients' requests waiting in its socket); `kill-all` (every node SIGKILLed at once, all
//! restarted when the fault ends: a crash of every process, which keeps the page cache; with
//! `power-cut` the only faults that take down more than a minority, so they run alone); `packet-loss` (10 % of the packets on
//! every link between nodes dropped at random, by nftables); `latency` (`tc` delay on every
//! node's interface, see [`netem`]: only on hosts with interfaces of their own, i.e. `--hosts
//! netns` or a remote cluster); `membership` and `transfer` (a voter out of the membership
//! and back, a leadership hand-over: see [`membership`]); the storage faults `power-cut`,
//! `lose-unsynced`, `disk-full` and `corrupt` (what a node finds on its disk after a power cut
//! that drops unsynced writes, a full disk, bit rot: see [`disk`]). Lists also accept `all`
//! (every kind but `latency` and the storage faults), `partitions` (the five pure partition
//! shapes), `disk` (the storage faults) and `none` ([`parse_kinds`]). Network faults
//! (partitions, `freeze-leader`, `packet-loss`, `latency`) run one at a time; `freeze-leader`
//! also takes a node down (the minority rule of kills and pauses applies to it).
//!
//! How a run uses it:
//! 1. [`parse_kinds`], then [`Schedule::new`] (seed, kinds, node ids, interval, time limit);
//! 2. [`preflight`]: checks the cluster can take each kind ([`Db::supports`]) and, when
//!    network faults are asked for, gets the cluster's [`Network`] ([`Db::network`]:
//!    the run's nftables table here, or rules on every host of a remote cluster); without
//!    `nft` or root it fails with a message saying so (drop the partition kinds and
//!    `freeze-leader` to run kill/pause only);
//! 3. [`run_nemesis`] executes the schedule in real time, stops early on the stop signal,
//!    and always heals everything before returning (resume the paused, frozen leaders
//!    included whether or not their wake-up came, start the killed, flush the partition
//!    rules): also when its future is dropped midway. It returns a
//!    [`NemesisReport`]: requested kinds, scheduled and applied counts (fault coverage).
//!
//! History events (`process: "nemesis"`, type `info`), each recorded right after the action
//! took effect, with an `"error"` field when it failed:
//! `start-partition` (`{"nemesis", "groups", "views", "description"}`; `isolate-leader` and
//! `freeze-leader` add `"leader"`: the leader found, `null` when the fallback node was taken),
//! `stop-partition` (`{"nemesis", "description"}`), `kill`, `start`, `pause`, `resume`
//! (`{"node": N}`), `remove-member`, `add-member` (`{"node": N}`), `transfer`
//! (`{"from": N, "to": M}`). `packet-loss` and `latency` are recorded as `start-partition` and
//! `stop-partition` too (network faults: `{"nemesis", "description"}`, the description saying
//! what was installed). `freeze-leader` records three steps: `start-partition` then `pause` of
//! the isolated node at its start, `resume` at its wake-up, `stop-partition` at its end (a
//! fault ended before its wake-up records `resume` then `stop-partition`). The storage faults'
//! events are listed in [`disk`].

pub mod disk;
pub mod kill;
mod kinds;
pub mod membership;
pub mod partition;
pub mod pause;
mod runner;
pub mod schedule;

pub use kinds::{names, parse_kinds, NemesisError, NemesisKind};
pub use partition::Grouping;
pub use runner::{run_nemesis, NemesisContext, NemesisReport};
pub use schedule::{Action, Fault, PlannedFault, Schedule, ScheduleOptions, Step};

use crate::db::{Db, DbError};
use crate::history::Recorder;
use crate::net::Network;
use serde_json::{json, Value as Json};

/// Checks that `control` can take every kind, and gets its [`Network`] when partitions or
/// netem are asked for (`None` otherwise). Refuses partitions without `nft` or root, naming
/// why.
pub fn preflight(
    kinds: &[NemesisKind],
    control: &dyn Db,
) -> Result<Option<Box<dyn Network>>, NemesisError> {
    for &kind in kinds {
        control
            .supports(kind.needs())
            .map_err(|reason| NemesisError::Unsupported { kind, reason })?;
    }
    if kinds.iter().any(|k| k.needs_network()) {
        Ok(Some(control.network()?))
    } else {
        Ok(None)
    }
}

/// Records nemesis event `f`, adding the error if the action failed.
fn record<E: std::fmt::Display>(
    recorder: &Recorder,
    f: &str,
    mut value: Json,
    result: &Result<(), E>,
) {
    if let (Err(e), Some(map)) = (result, value.as_object_mut()) {
        map.insert("error".into(), json!(e.to_string()));
    }
    recorder.nemesis(f, value);
}
