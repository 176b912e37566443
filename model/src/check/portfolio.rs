//! The default check: a fixed portfolio of bounded scenarios of the core as the nodes run it
//! (pre-vote and check-quorum on, leaders that tick), each explored exhaustively for the
//! correct core, each covering one path the nodes use. `raft-model check` with no options
//! runs them all; with `--bug NAME` it runs them with the bug switched on and stops at the
//! first violation. Every catalogue bug the model can express is caught by one of them
//! ([`catches`] says which; `model/tests/stateright.rs` proves it).

use super::runner::Strategy;
use super::spec::Op;
use super::Setup;
use crate::bugs::Bug;
use crate::core::{MembershipChange, Settings};

/// One scenario of the portfolio.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// A short name (`raft-model check --scenario NAME`).
    pub name: &'static str,
    /// What it covers, in a sentence.
    pub covers: &'static str,
    pub setup: Setup,
    pub strategy: Strategy,
    /// A depth bound, where the scenario needs one to stay within the time budget (the
    /// search is then exhaustive up to that depth).
    pub depth: Option<usize>,
}

/// The portfolio, cheapest first (so that `--bug` stops early where it can).
pub fn portfolio() -> Vec<Scenario> {
    // Shared narrowing: no client unless the scenario is about clients, two servers that
    // start elections, three messages in flight on a lossy network (stale messages can be
    // lost, so that elections need not wait for the network to drain).
    let quiet = Setup {
        ops: 0,
        max_heartbeats: 0,
        election_ticks: 1,
        campaigners: Some(2),
        max_in_flight: 3,
        lossy: true,
        ..Setup::default()
    };
    // Figure 8 of the Raft paper needs four terms (two elections by each of two servers),
    // links ordered like the node's QUIC streams, and one entry per AppendEntries.
    let figure_8 = Setup {
        max_term: 4,
        max_log: 2,
        max_in_flight: 4,
        ordered: true,
        lossy: false,
        settings: Settings {
            max_batch: 1,
            ..Settings::default()
        },
        ..quiet.clone()
    };
    vec![
        Scenario {
            name: "membership-growth",
            covers: "server 3 joins as a learner, catches up and is promoted; then the first leader is removed and steps down",
            setup: Setup {
                voters: 2,
                max_term: 2,
                max_log: 4,
                lossy: false,
                max_in_flight: 3,
                membership: vec![
                    MembershipChange::AddLearner {
                        id: 3,
                        addr: String::new(),
                    },
                    MembershipChange::PromoteLearner(3),
                    MembershipChange::Remove(1),
                ],
                ..quiet.clone()
            },
            strategy: Strategy::Bfs,
            depth: None,
        },
        Scenario {
            name: "compaction-and-snapshot",
            covers: "a write, log compaction after every applied entry, InstallSnapshot with a KV restore to a follower that missed the entries",
            setup: Setup {
                ops: 1,
                compact_every: 1,
                max_term: 1,
                campaigners: Some(1),
                ..quiet.clone()
            },
            strategy: Strategy::Bfs,
            depth: None,
        },
        Scenario {
            name: "membership-shrink",
            covers: "two voters removed one after the other from three, while the others may elect a new leader",
            setup: Setup {
                max_term: 2,
                max_log: 3,
                max_in_flight: 2,
                membership: vec![MembershipChange::Remove(3), MembershipChange::Remove(2)],
                ..quiet.clone()
            },
            strategy: Strategy::Bfs,
            depth: None,
        },
        Scenario {
            name: "reads-across-a-leader-change",
            covers: "a write then a read with a client retry at another server, leaders that tick (heartbeats, check-quorum), a second term (ReadIndex against stale and lease reads)",
            setup: Setup {
                ops: 2,
                max_retries: 1,
                max_heartbeats: 1,
                max_term: 2,
                campaigners: Some(2),
                max_log: 3,
                max_in_flight: 4,
                ..Setup::default()
            },
            strategy: Strategy::Bfs,
            depth: Some(22),
        },
        Scenario {
            name: "client-retries",
            covers: "a compare-and-set retried at another server and back to the leader after a timeout (sessions make retries exactly-once)",
            setup: Setup {
                ops: 1,
                script: Some(vec![Op::Cas {
                    expected: None,
                    new: 1,
                }]),
                max_retries: 1,
                max_term: 1,
                campaigners: Some(1),
                max_heartbeats: 0,
                election_ticks: 1,
                ..Setup::default()
            },
            strategy: Strategy::Bfs,
            depth: None,
        },
        Scenario {
            name: "reordered-appends",
            covers: "a write and a heartbeat on an unordered network: AppendEntries and their answers overtake each other",
            setup: Setup {
                ops: 1,
                max_heartbeats: 1,
                max_term: 1,
                max_in_flight: 4,
                max_log: 2,
                lossy: false,
                ..quiet.clone()
            },
            strategy: Strategy::Bfs,
            depth: None,
        },
        Scenario {
            name: "leadership-transfer",
            covers: "the operator hands leadership to the next server (catch-up, TimeoutNow, an election that may depose a leader with a lease), the transfer timeout of a ticking leader",
            setup: Setup {
                transfers: 1,
                max_term: 2,
                max_heartbeats: 1,
                campaigners: Some(1),
                lossy: false,
                ..quiet.clone()
            },
            strategy: Strategy::Bfs,
            depth: None,
        },
        Scenario {
            name: "figure-8-across-a-bridge",
            covers: "Figure 8 across a bridge: servers 1 and 2 cannot reach each other, server 3 votes for each in turn over four terms; an entry of an earlier term on a majority is not yet committed",
            setup: Setup {
                max_in_flight: 5,
                cut: vec![(1, 2)],
                ..figure_8.clone()
            },
            strategy: Strategy::Bfs,
            depth: None,
        },
        Scenario {
            name: "elections-in-two-terms",
            covers: "two terms of elections on a lossy network: a second leader elected without the first one's entries",
            setup: Setup {
                max_term: 2,
                ..quiet.clone()
            },
            strategy: Strategy::Bfs,
            depth: None,
        },
        Scenario {
            name: "staged-ready",
            covers: "each Ready staged: a leader's replication sent and a writing Ready's commits answered first, then the writes, the rest sent later; input stepped in between; a crash between any two",
            setup: Setup {
                staged: true,
                max_crashes: 1,
                max_term: 1,
                ..quiet.clone()
            },
            strategy: Strategy::Bfs,
            depth: Some(16),
        },
        Scenario {
            name: "figure-8",
            covers: "Figure 8 of the Raft paper: four terms, one entry per AppendEntries, ordered links",
            setup: figure_8,
            strategy: Strategy::Bfs,
            depth: None,
        },
        Scenario {
            name: "overtaking-appends-then-a-new-leader",
            covers: "servers 1 and 2 cannot reach each other: server 1 leads term 1 with server 3, a write's AppendEntries and a heartbeat's resend overtake each other at server 3, then server 3 leads term 2 with server 2's vote",
            setup: Setup {
                ops: 1,
                max_heartbeats: 1,
                max_term: 2,
                campaigners: None,
                elections: vec![1, 3],
                cut: vec![(1, 2)],
                // A leader checks its quorum every other tick, so its first heartbeat can
                // come before any follower has answered it.
                election_ticks: 2,
                max_log: 2,
                max_in_flight: 4,
                lossy: false,
                ..quiet.clone()
            },
            strategy: Strategy::Bfs,
            depth: None,
        },
        Scenario {
            name: "reads-from-a-deposed-leader",
            covers: "servers 2 and 3 cannot reach each other: server 2 leads term 1 with server 1's vote, server 1 leads term 2 with server 3's; a write, a read and a retry reach both leaders",
            setup: Setup {
                ops: 2,
                max_retries: 1,
                max_heartbeats: 0,
                election_ticks: 1,
                max_term: 2,
                campaigners: Some(2),
                elections: vec![2, 1],
                cut: vec![(2, 3)],
                max_log: 3,
                max_in_flight: 5,
                ..Setup::default()
            },
            strategy: Strategy::Bfs,
            depth: Some(26),
        },
        Scenario {
            name: "elections-with-a-crash",
            covers: "pre-vote and election in one term on a lossy network, one crash and restart from durable state at any point",
            setup: Setup {
                max_term: 1,
                max_crashes: 1,
                ..quiet.clone()
            },
            strategy: Strategy::Bfs,
            depth: None,
        },
    ]
}

/// The first scenario of the portfolio, in its order, that catches `bug` — where
/// `raft-model check --bug NAME` stops (measured; `model/tests/stateright.rs` holds each to
/// it), or `None` where the bug lives below the model (`skip-fsync`, `periodic-fsync`,
/// `skip-dir-fsync`: the model makes every Ready durable as the persistence contract says).
pub fn catches(bug: Bug) -> Option<&'static str> {
    match bug {
        Bug::VoteTwice
        | Bug::ForgetVote
        | Bug::AckBeforeCommit
        | Bug::ApplyUncommitted
        | Bug::ConcurrentMembership => Some("membership-growth"),
        Bug::StaleRead => Some("reads-across-a-leader-change"),
        Bug::NoDedup => Some("client-retries"),
        Bug::SendBeforePersist => Some("staged-ready"),
        Bug::CommitOldTerm => Some("figure-8-across-a-bridge"),
        Bug::TruncateOnAppend => Some("overtaking-appends-then-a-new-leader"),
        Bug::LeaseRead => Some("reads-from-a-deposed-leader"),
        Bug::SkipFsync | Bug::PeriodicFsync | Bug::SkipDirFsync => None,
    }
}
