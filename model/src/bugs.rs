//! The bug catalogue: deliberately unsafe behaviours, off by default.
//!
//! Each switch makes the system misbehave in exactly the named way, so that the simulator,
//! the model checker and the lab can prove they catch it. The names are the contract's and are
//! the same on every command line (`--bug NAME`).

use std::fmt;
use std::str::FromStr;

/// One catalogue bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bug {
    /// Grant a vote even after voting for another candidate in the same term.
    VoteTwice,
    /// Do not persist `voted_for`: a restarted server may vote again in the same term.
    ForgetVote,
    /// Commit entries of earlier terms by counting replicas (Raft paper, Figure 8).
    CommitOldTerm,
    /// Serve reads from local state, without ReadIndex's leadership confirmation.
    StaleRead,
    /// Hand entries to the state machine (and so acknowledge clients) once the leader has
    /// them durable, before a majority does.
    AckBeforeCommit,
    /// Ignore client sessions: a retried request is applied again.
    NoDedup,
}

impl Bug {
    pub const ALL: [Bug; 6] = [
        Bug::VoteTwice,
        Bug::ForgetVote,
        Bug::CommitOldTerm,
        Bug::StaleRead,
        Bug::AckBeforeCommit,
        Bug::NoDedup,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::VoteTwice => "vote-twice",
            Bug::ForgetVote => "forget-vote",
            Bug::CommitOldTerm => "commit-old-term",
            Bug::StaleRead => "stale-read",
            Bug::AckBeforeCommit => "ack-before-commit",
            Bug::NoDedup => "no-dedup",
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown bug name; the message lists the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown bug {0:?}; known bugs: vote-twice, forget-vote, commit-old-term, stale-read, ack-before-commit, no-dedup")]
pub struct UnknownBug(pub String);

impl FromStr for Bug {
    type Err = UnknownBug;
    fn from_str(s: &str) -> Result<Bug, UnknownBug> {
        Bug::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBug(s.to_string()))
    }
}

/// The set of switched-on bugs (usually empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bugs(u8);

impl Bugs {
    pub fn none() -> Self {
        Bugs(0)
    }

    pub fn with(self, bug: Bug) -> Self {
        Bugs(self.0 | 1 << bug as u8)
    }

    pub fn has(self, bug: Bug) -> bool {
        self.0 & (1 << bug as u8) != 0
    }

    pub fn any(self) -> bool {
        self.0 != 0
    }
}
