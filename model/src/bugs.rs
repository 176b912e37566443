//! The bug catalogue: deliberately unsafe behaviours, off by default.
//!
//! Each switch makes the system misbehave in exactly the named way, so that the simulator,
//! the model checker and the lab can prove they catch it. The names are fixed and are
//! the same on every command line (`--bug NAME`).
//!
//! | name | where | what goes wrong |
//! |---|---|---|
//! | `vote-twice` | core | a second vote is granted in the same term |
//! | `forget-vote` | core | `voted_for` is left out of the persisted hard state |
//! | `commit-old-term` | core | entries of earlier terms are committed by counting (Figure 8) |
//! | `stale-read` | core | reads are answered from local state on any server, unchecked |
//! | `ack-before-commit` | core | the leader applies (and acknowledges) entries before a majority has them |
//! | `no-dedup` | state machine | client sessions are ignored: a retry is applied twice |
//! | `lease-read` | core | the leader answers reads from local state while its tick-counted lease lasts |
//! | `apply-uncommitted` | core | followers apply entries as soon as they are durable, before they commit |
//! | `truncate-on-append` | core | a follower truncates its log after `prev` on every AppendEntries |
//! | `skip-fsync` | storage | log appends are written but never fsync'd |
//! | `concurrent-membership` | core | the leader accepts a membership change while another is uncommitted |
//! | `send-before-persist` | runtime | a Ready's messages leave before its writes are durable |
//! | `periodic-fsync` | storage | log appends are acknowledged at once and fsync'd every 200 ms |
//! | `skip-dir-fsync` | storage | directories are never fsync'd after files are created, renamed or removed |
//!
//! The core's bugs switch on in [`crate::core::Raft`] (and so in the simulator, the stateright
//! model and the node alike). `skip-fsync` lives below the core, in the storage the caller
//! provides, and so do `periodic-fsync` and `skip-dir-fsync`: the node's storage
//! (`node/src/storage`) and the simulator's storage model ([`crate::sim::storage`]) implement
//! them; the stateright model, which persists every Ready atomically and has neither
//! directories nor a page cache, accepts the names and ignores them. `send-before-persist` lives in the caller's
//! handling of a Ready: the node's runtime, the simulator's runner and the stateright
//! model's staged Ready handling each implement it.

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
    /// A leader serves reads from local state, without a heartbeat round, while its lease
    /// holds: fewer than an election timeout of its *own ticks* since it last heard from a
    /// quorum. Ticks are not time: a leader that was paused (SIGSTOP, a GC pause, a frozen VM)
    /// missed the ticks of the pause and wakes up still trusting its lease, after another
    /// leader was elected.
    LeaseRead,
    /// Followers apply entries to the state machine as soon as they are durable, before
    /// they are committed; an entry later truncated stays applied, and the entry that
    /// replaces it is never applied.
    ApplyUncommitted,
    /// A follower whose log matches at `prev` truncates everything after `prev` before
    /// appending the entries, instead of only from the first conflicting entry: a delayed
    /// or duplicated AppendEntries erases entries it already acknowledged.
    TruncateOnAppend,
    /// Storage writes log appends to the file and acknowledges them, but never fsyncs the
    /// log: a SIGKILL loses nothing (the page cache survives it), a power cut loses every
    /// entry appended since the segment was created. Hard state and snapshots are synced.
    SkipFsync,
    /// The leader accepts a membership change while an earlier one is still uncommitted:
    /// two single-server changes in flight can make the old and the newest configuration's
    /// majorities disjoint (removing two of three voters leaves the leader a majority of
    /// one), so two leaders commit different entries (thesis 4.1).
    ConcurrentMembership,
    /// The caller sends a Ready's messages before its hard state and entries are durable
    /// (an "optimisation" of the persist-then-send order): a crash in between loses a vote
    /// or an acknowledged entry that the messages already promised.
    SendBeforePersist,
    /// Storage acknowledges log appends once written and fdatasyncs the log at most every
    /// 200 ms (Redis's `appendfsync everysec`): a power cut loses the entries acknowledged
    /// since the last sync.
    PeriodicFsync,
    /// Storage never fsyncs a directory: files it creates, renames over others or removes
    /// (log segments, `hardstate`, `snapshot`, the data directory itself) may be undone by
    /// a power cut although their data was synced; a new node's whole data directory is lost.
    SkipDirFsync,
}

impl Bug {
    pub const ALL: [Bug; 14] = [
        Bug::VoteTwice,
        Bug::ForgetVote,
        Bug::CommitOldTerm,
        Bug::StaleRead,
        Bug::AckBeforeCommit,
        Bug::NoDedup,
        Bug::LeaseRead,
        Bug::ApplyUncommitted,
        Bug::TruncateOnAppend,
        Bug::SkipFsync,
        Bug::ConcurrentMembership,
        Bug::SendBeforePersist,
        Bug::PeriodicFsync,
        Bug::SkipDirFsync,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::VoteTwice => "vote-twice",
            Bug::ForgetVote => "forget-vote",
            Bug::CommitOldTerm => "commit-old-term",
            Bug::StaleRead => "stale-read",
            Bug::AckBeforeCommit => "ack-before-commit",
            Bug::NoDedup => "no-dedup",
            Bug::LeaseRead => "lease-read",
            Bug::ApplyUncommitted => "apply-uncommitted",
            Bug::TruncateOnAppend => "truncate-on-append",
            Bug::SkipFsync => "skip-fsync",
            Bug::ConcurrentMembership => "concurrent-membership",
            Bug::SendBeforePersist => "send-before-persist",
            Bug::PeriodicFsync => "periodic-fsync",
            Bug::SkipDirFsync => "skip-dir-fsync",
        }
    }

    /// What goes wrong, in a line.
    pub fn what(self) -> &'static str {
        match self {
            Bug::VoteTwice => "a second vote is granted in the same term",
            Bug::ForgetVote => "votedFor is left out of the persisted hard state",
            Bug::CommitOldTerm => "entries of earlier terms are committed by counting (Figure 8)",
            Bug::StaleRead => "reads are answered from local state on any server, unchecked",
            Bug::AckBeforeCommit => {
                "the leader applies (and acknowledges) entries before a majority has them"
            }
            Bug::NoDedup => "client sessions are ignored: a retry is applied twice",
            Bug::LeaseRead => {
                "the leader answers reads from local state while its tick-counted lease lasts"
            }
            Bug::ApplyUncommitted => {
                "followers apply entries as soon as they are durable, before they commit"
            }
            Bug::TruncateOnAppend => {
                "a follower truncates its log after prev on every AppendEntries"
            }
            Bug::SkipFsync => "log appends are written but never fsync'd",
            Bug::ConcurrentMembership => {
                "the leader accepts a membership change while another is uncommitted"
            }
            Bug::SendBeforePersist => "a Ready's messages leave before its writes are durable",
            Bug::PeriodicFsync => "log appends are acknowledged at once and fsync'd every 200 ms",
            Bug::SkipDirFsync => {
                "directories are never fsync'd after files are created, renamed or removed"
            }
        }
    }

    /// Where the lab (`raft-lab run --bug NAME`, recipes in `workloads/matrix.toml`)
    /// catches it, as measured by `raft-lab matrix`.
    pub fn lab(self) -> &'static str {
        match self {
            Bug::StaleRead => "10/10 runs: isolate.toml under isolate-leader",
            Bug::AckBeforeCommit => "10/10 runs: ci.toml under isolate-leader",
            Bug::ApplyUncommitted => "10/10 runs: uncommitted.toml under isolate-leader",
            Bug::LeaseRead => "9-10/10 runs: lease.toml under freeze-leader",
            Bug::SkipFsync | Bug::PeriodicFsync | Bug::SkipDirFsync => {
                "10/10 runs: ci.toml under power-cut (lazy disks lose what was not synced)"
            }
            Bug::TruncateOnAppend => {
                "never: the node's QUIC streams keep each link in order, which the bug needs broken"
            }
            Bug::ConcurrentMembership => {
                "never: the lab's membership nemesis makes one change at a time and waits for it, so no change is ever proposed while another is uncommitted"
            }
            Bug::SendBeforePersist => {
                "rarely: needs a kill between a vote's send and its write (kill, kill-all): a SIGKILL keeps written pages"
            }
            Bug::VoteTwice | Bug::ForgetVote | Bug::CommitOldTerm | Bug::NoDedup => {
                "rarely: needs an exact interleaving a real cluster seldom reaches in minutes"
            }
        }
    }

    /// Why the stateright model cannot express it, for a bug that lives below the core.
    pub fn below_the_model(self) -> Option<&'static str> {
        match self {
            Bug::SkipFsync | Bug::PeriodicFsync | Bug::SkipDirFsync => Some(
                "it lives in the node's storage; the model persists each Ready atomically as the persistence contract says, and has no directories or page cache",
            ),
            _ => None,
        }
    }

    /// Every name, comma-separated (for messages).
    pub fn names() -> String {
        Bug::ALL.map(Bug::name).join(", ")
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown bug name; the message lists the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown bug {0:?}; known bugs: {names}", names = Bug::names())]
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
pub struct Bugs(u32);

impl Bugs {
    pub fn none() -> Self {
        Bugs(0)
    }

    pub fn with(self, bug: Bug) -> Self {
        Bugs(self.0 | 1 << bug as u32)
    }

    pub fn has(self, bug: Bug) -> bool {
        self.0 & (1 << bug as u32) != 0
    }

    pub fn any(self) -> bool {
        self.0 != 0
    }

    /// The switched-on bugs, in catalogue order.
    pub fn iter(self) -> impl Iterator<Item = Bug> {
        Bug::ALL.into_iter().filter(move |b| self.has(*b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_is_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for bug in Bug::ALL {
            assert_eq!(bug.name().parse::<Bug>(), Ok(bug));
            assert!(seen.insert(bug.name()), "duplicate name {bug}");
            assert!(Bugs::none().with(bug).has(bug));
        }
    }

    #[test]
    fn unknown_name_lists_every_bug() {
        let message = "lease".parse::<Bug>().unwrap_err().to_string();
        for bug in Bug::ALL {
            assert!(message.contains(bug.name()), "{message}");
        }
    }

    #[test]
    fn bug_sets_are_independent() {
        let bugs = Bugs::none().with(Bug::SkipFsync).with(Bug::VoteTwice);
        assert_eq!(
            bugs.iter().collect::<Vec<_>>(),
            vec![Bug::VoteTwice, Bug::SkipFsync]
        );
        assert!(!bugs.has(Bug::LeaseRead));
    }
}
