//! Bug hunts: for each catalogue bug the model covers, the narrow configuration in which the
//! checker finds it quickly, and the property it is expected to violate. The default check
//! ([`super::portfolio`]) catches each of these bugs too, with the node's own protocol
//! settings; a hunt switches pre-vote and check-quorum off, so that elections take the fewest
//! steps, and finds its bug in seconds without a scenario's partition or order of candidates.
//!
//! One place for these setups: `model/tests/stateright.rs` asserts that each hunt finds its
//! property, and `raft-lab matrix` runs them for its "raft-model" column. Every hunt stops at
//! the first violation and finishes in seconds in a release build (or a test build, where the
//! model is optimised too):
//!
//! | bug | property | configuration | search |
//! |-----|----------|---------------|--------|
//! | `vote-twice` | Votes Are Durable | 1 client op, terms ≤ 1, 6 in flight | BFS, depth ≤ 12 |
//! | `forget-vote` | Votes Are Durable | one crash, terms ≤ 1, 6 in flight | BFS, depth ≤ 14 |
//! | `stale-read` | Linearizable | 1 heartbeat, 1 retry | BFS, depth ≤ 16 |
//! | `commit-old-term` | Leader Completeness | [`figure_8`] | BFS |
//! | `no-dedup` | Linearizable | write, read, cas; 1 retry; terms ≤ 1; only server 1 campaigns | DFS |
//! | `ack-before-commit` | State Machine Safety | no client, 6 in flight | BFS, depth ≤ 12 |
//! | `apply-uncommitted` | State Machine Safety | no client, 6 in flight | BFS, depth ≤ 14 |
//! | `lease-read` | Linearizable | write, read; 1 retry; logs ≤ 3; 6 in flight; servers 1 and 2 campaign | DFS, depth ≤ 24 |
//! | `truncate-on-append` | Leader Completeness | 1 write, 1 heartbeat, logs ≤ 2, 6 in flight, servers 1 and 2 campaign | DFS, depth ≤ 22 |
//!
//! `no-dedup` needs a retried cas whose second application answers "mismatch" before the
//! first one's reply arrives (32 steps): breadth-first that is ~700k states, depth-first a
//! few seconds. `ack-before-commit` and `apply-uncommitted` need no client: a server applies
//! its first leader's no-op before it commits, and the next leader commits its own no-op at
//! that index (6 and 8 steps). `lease-read` needs no pause in the model: its timers are
//! nondeterministic, so a deposed leader may count no tick between its last quorum and the
//! client's read, exactly as a SIGSTOPped one (about 20 s depth-first: a leader now tells its
//! followers a new commit index at once, so more messages are in flight than breadth-first
//! can afford). `truncate-on-append` needs the
//! unordered network the node's QUIC streams never produce: the leader's first probe (its
//! no-op) and the heartbeat's resend (no-op and write) overtake each other, the follower cuts
//! the acknowledged write, and elects a leader without it (20 steps, 35–60 s depth-first). Any
//! other bug has no hunt ([`hunt`] returns `None`): it lives below the model (`skip-fsync`,
//! `periodic-fsync`, `skip-dir-fsync`: the model persists every Ready atomically).

use super::properties::{LEADER_COMPLETENESS, LINEARIZABLE, STATE_MACHINE_SAFETY, VOTES_DURABLE};
use super::runner::{Run, Strategy};
use super::Setup;
use crate::bugs::{Bug, Bugs};
use crate::core::Settings;

/// The hunts' narrower core: pre-vote and check-quorum off, leaders that do not tick, and
/// one tick to an election timeout, so that elections take the fewest steps. A hunt finds a
/// bug fast; the default portfolio ([`super::portfolio`]) proves the core as the nodes run
/// it.
fn base(bugs: Bugs) -> Setup {
    Setup {
        settings: Settings {
            pre_vote: false,
            check_quorum: false,
            ..Settings::default()
        },
        max_heartbeats: 0,
        election_ticks: 1,
        bugs,
        ..Setup::default()
    }
}

/// Figure 8's model: the scenario needs four terms (two elections by each of two servers),
/// so the hunt narrows the model: only servers 1 and 2 campaign, links are ordered (like the
/// node's QUIC streams), a leader sends one entry per AppendEntries, and no client runs (the
/// old-term entry is the first leader's no-op). The correct core satisfies every property in
/// it (explored exhaustively by the tests).
pub fn figure_8(bugs: Bugs) -> Setup {
    Setup {
        ops: 0,
        max_term: 4,
        max_log: 2,
        max_in_flight: 5,
        campaigners: Some(2),
        ordered: true,
        settings: Settings {
            max_batch: 1,
            ..base(bugs).settings
        },
        ..base(bugs)
    }
}

/// The hunt for `bug`: a run with only that bug switched on that stops at the first
/// violation; `None` when the model has no hunt for it (see the module documentation).
pub fn hunt(bug: Bug) -> Option<Run> {
    let bugs = Bugs::none().with(bug);
    let (setup, depth, strategy) = match bug {
        Bug::VoteTwice => (
            Setup {
                ops: 1,
                max_in_flight: 6,
                max_term: 1,
                ..base(bugs)
            },
            Some(12),
            Strategy::Bfs,
        ),
        Bug::ForgetVote => (
            Setup {
                ops: 0,
                max_in_flight: 6,
                max_term: 1,
                max_crashes: 1,
                ..base(bugs)
            },
            Some(14),
            Strategy::Bfs,
        ),
        // A read served from local state: the client's retry reaches a server that has not
        // heard of its write yet.
        Bug::StaleRead => (
            Setup {
                max_heartbeats: 1,
                max_retries: 1,
                ..base(bugs)
            },
            Some(16),
            Strategy::Bfs,
        ),
        // Committing an entry of an earlier term by counting replicas lets a later leader
        // lack it.
        Bug::CommitOldTerm => (figure_8(bugs), None, Strategy::Bfs),
        // A cas retried after its first attempt took effect is applied again and answers
        // "mismatch": the client sees a failed cas that nevertheless changed the value.
        Bug::NoDedup => (
            Setup {
                ops: 3,
                max_retries: 1,
                max_term: 1,
                campaigners: Some(1),
                ..base(bugs)
            },
            None,
            Strategy::Dfs,
        ),
        // A leader applies (and would acknowledge) its no-op before a majority has it; the
        // next leader, elected without it, commits another entry at that index.
        Bug::AckBeforeCommit => (
            Setup {
                ops: 0,
                max_in_flight: 6,
                ..base(bugs)
            },
            Some(12),
            Strategy::Bfs,
        ),
        // A follower applies the first leader's no-op before it commits; the next leader
        // replaces it.
        Bug::ApplyUncommitted => (
            Setup {
                ops: 0,
                max_in_flight: 6,
                ..base(bugs)
            },
            Some(14),
            Strategy::Bfs,
        ),
        // A deposed leader whose clock has not moved since its last quorum still trusts its
        // lease: the client's retried read reaches it after the new leader took its write.
        Bug::LeaseRead => (
            Setup {
                max_retries: 1,
                max_log: 3,
                max_in_flight: 6,
                campaigners: Some(2),
                ..base(bugs)
            },
            Some(24),
            Strategy::Dfs,
        ),
        // A stale, shorter AppendEntries arriving after a longer one makes a follower cut
        // an entry it acknowledged; the leader counted that ack to commit it, and the
        // follower then wins an election without it.
        Bug::TruncateOnAppend => (
            Setup {
                ops: 1,
                max_heartbeats: 1,
                max_in_flight: 6,
                max_log: 2,
                campaigners: Some(2),
                ..base(bugs)
            },
            Some(22),
            Strategy::Dfs,
        ),
        _ => return None,
    };
    Some(Run {
        depth,
        strategy,
        stop_at_first_violation: true,
        ..Run::bfs(setup)
    })
}

/// The property [`hunt`]`(bug)` is expected to find violated.
pub fn expected(bug: Bug) -> Option<&'static str> {
    match bug {
        // The second vote overwrites the durable record of the first while the first is
        // still in flight (before two leaders are elected, which takes more steps).
        Bug::VoteTwice => Some(VOTES_DURABLE),
        // The vote is missing from the durable state as soon as it is granted.
        Bug::ForgetVote => Some(VOTES_DURABLE),
        Bug::StaleRead | Bug::NoDedup | Bug::LeaseRead => Some(LINEARIZABLE),
        Bug::CommitOldTerm | Bug::TruncateOnAppend => Some(LEADER_COMPLETENESS),
        Bug::AckBeforeCommit | Bug::ApplyUncommitted => Some(STATE_MACHINE_SAFETY),
        _ => None,
    }
}

/// The catalogue bugs that have a hunt, in catalogue order.
pub fn hunted() -> Vec<Bug> {
    Bug::ALL
        .into_iter()
        .filter(|&b| hunt(b).is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hunt_has_an_expectation_and_stops_at_the_first_violation() {
        for bug in Bug::ALL {
            assert_eq!(hunt(bug).is_some(), expected(bug).is_some(), "{bug}");
            if let Some(run) = hunt(bug) {
                assert!(run.stop_at_first_violation, "{bug}");
                assert_eq!(run.setup.bugs, Bugs::none().with(bug), "{bug}");
            }
        }
        assert!(hunted().len() >= 9);
    }
}
