//! The safety properties of the Raft paper (Figure 3), checked after every simulator event.
//!
//! * **Election Safety**: at most one leader per term, over the whole run.
//! * **Log Matching**: if two logs have an entry with the same index and term, the logs are
//!   identical up to it. Checked entry by entry: by induction it is enough that, across all
//!   servers and all time, an (index, term) pair always names the same entry and follows the
//!   same term at index - 1. Only the entries a server added since the last check are looked
//!   at, so the check costs O(new entries) per event.
//! * **Leader Completeness**: a leader's log holds every entry committed in an earlier term:
//!   checked in full when a server becomes leader, and for each newly committed entry
//!   against the current leaders of later terms.
//! * **State Machine Safety**: no two servers apply different entries at the same index
//!   (also: no two servers commit different entries at the same index, and a snapshot never
//!   disagrees with what was applied at its index).
//!
//! Violations are values ([`Breach`]), never panics.

use crate::core::{Entry, EntryKind, Index, NodeId, Raft, Role, SnapshotMeta, Term};
use crate::kv::Command;
use std::collections::BTreeMap;

pub const ELECTION_SAFETY: &str = "Election Safety";
pub const LOG_MATCHING: &str = "Log Matching";
pub const LEADER_COMPLETENESS: &str = "Leader Completeness";
pub const STATE_MACHINE_SAFETY: &str = "State Machine Safety";

/// A violated property and what shows it.
pub type Breach = (&'static str, String);

/// What is known about one committed index.
#[derive(Clone, Copy, Debug)]
struct Committed {
    term: Term,
    /// The lowest current term of a server seen holding it as committed: it was committed
    /// in this term or an earlier one.
    in_term: Term,
    by: NodeId,
}

/// What the checker last saw of one server.
#[derive(Clone, Debug, Default)]
struct View {
    /// Rescan the whole log (new server, or just restarted).
    fresh: bool,
    last: (Index, Term),
    commit: Index,
    /// The term in which this server was last seen leading.
    led: Option<Term>,
}

/// The run-wide record the properties are checked against.
#[derive(Clone, Debug, Default)]
pub struct Invariants {
    /// Term -> its leader.
    leaders: BTreeMap<Term, NodeId>,
    /// (index, term) -> (term at index - 1, the entry's payload), over all logs ever seen.
    entries: BTreeMap<(Index, Term), (Term, EntryKind<Command>)>,
    /// Index -> the committed entry's term, and the earliest term in which a server was
    /// seen knowing it committed (with that server). Leaders of later terms must hold it.
    committed: BTreeMap<Index, Committed>,
    /// Index -> the entry applied there (by any server).
    applied: BTreeMap<Index, (Term, EntryKind<Command>)>,
    views: BTreeMap<NodeId, View>,
    /// Leaders seen (one per term).
    pub elections: u64,
}

impl Invariants {
    pub fn new() -> Self {
        Invariants::default()
    }

    /// A server (re)starts: its log is read back from disk and will be checked in full.
    pub fn restarted(&mut self, id: NodeId) {
        self.views.insert(
            id,
            View {
                fresh: true,
                ..View::default()
            },
        );
    }

    /// Checks every running server; `servers` are the running servers' cores.
    pub fn check(&mut self, servers: &[&Raft<Command>]) -> Result<(), Breach> {
        let mut newly_committed: Vec<(Index, Term, Term)> = Vec::new();
        for raft in servers {
            self.check_server(raft, &mut newly_committed)?;
        }
        // Leader Completeness for what was just committed: every leader of a later term
        // must already hold it.
        for (index, term, commit_term) in newly_committed {
            for raft in servers.iter().filter(|r| r.role() == Role::Leader) {
                if raft.term() > commit_term && !holds(raft, index, term) {
                    return Err((
                        LEADER_COMPLETENESS,
                        format!(
                            "entry {index} (term {term}) was committed in term {commit_term}, \
                             but leader {} of term {} does not hold it ({})",
                            raft.id(),
                            raft.term(),
                            describe_at(raft, index)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_server(
        &mut self,
        raft: &Raft<Command>,
        newly_committed: &mut Vec<(Index, Term, Term)>,
    ) -> Result<(), Breach> {
        let id = raft.id();
        let mut view = self.views.remove(&id).unwrap_or(View {
            fresh: true,
            ..View::default()
        });
        let result = self.check_with_view(raft, &mut view, newly_committed);
        self.views.insert(id, view);
        result
    }

    fn check_with_view(
        &mut self,
        raft: &Raft<Command>,
        view: &mut View,
        newly_committed: &mut Vec<(Index, Term, Term)>,
    ) -> Result<(), Breach> {
        let id = raft.id();
        let log = raft.log();

        // Election Safety.
        if raft.role() == Role::Leader {
            let term = raft.term();
            match self.leaders.get(&term) {
                Some(&other) if other != id => {
                    return Err((
                        ELECTION_SAFETY,
                        format!("servers {other} and {id} are both leader of term {term}"),
                    ))
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(term, id);
                    self.elections += 1;
                }
            }
            if view.led != Some(term) {
                view.led = Some(term);
                self.check_new_leader(raft)?;
            }
        }

        // Log Matching, on the entries added since the last look.
        let last = (log.last_index(), log.last_term());
        if view.fresh || last != view.last {
            let from = if !view.fresh && log.term(view.last.0) == Some(view.last.1) {
                // The log still holds our last seen tail: it only grew past it.
                view.last.0 + 1
            } else {
                // Truncated and replaced: entries up to the commit point cannot change.
                let floor = if view.fresh { 0 } else { view.commit };
                (floor + 1).max(log.first_index())
            };
            for index in from..=last.0 {
                let Some(entry) = log.entry(index) else {
                    continue;
                };
                let prev = log.term(index - 1).unwrap_or(0);
                self.check_entry(id, entry, prev)?;
            }
            view.last = last;
            view.fresh = false;
        }

        // Commitment: committed entries never differ between servers.
        let commit = raft.commit_index();
        if commit > view.commit {
            let from = (view.commit + 1).max(log.snapshot().meta.index);
            for index in from..=commit {
                let Some(term) = log.term(index) else {
                    continue;
                };
                let in_term = raft.term();
                match self.committed.get_mut(&index) {
                    Some(c) if c.term != term => {
                        return Err((
                            STATE_MACHINE_SAFETY,
                            format!(
                                "server {id} committed entry {index} of term {term}, but server \
                                 {} committed entry {index} of term {}",
                                c.by, c.term
                            ),
                        ))
                    }
                    Some(c) => {
                        if in_term < c.in_term {
                            c.in_term = in_term;
                            c.by = id;
                        }
                    }
                    None => {
                        self.committed.insert(
                            index,
                            Committed {
                                term,
                                in_term,
                                by: id,
                            },
                        );
                        newly_committed.push((index, term, in_term));
                    }
                }
            }
        }
        view.commit = commit;
        Ok(())
    }

    fn check_entry(
        &mut self,
        id: NodeId,
        entry: &Entry<Command>,
        prev: Term,
    ) -> Result<(), Breach> {
        match self.entries.get(&(entry.index, entry.term)) {
            Some((seen_prev, seen_kind)) => {
                if *seen_prev != prev {
                    return Err((
                        LOG_MATCHING,
                        format!(
                            "server {id} holds entry {} of term {} after an entry of term {prev}, \
                             another log holds it after term {seen_prev}",
                            entry.index, entry.term
                        ),
                    ));
                }
                if *seen_kind != entry.kind {
                    return Err((
                        LOG_MATCHING,
                        format!(
                            "two different entries at index {} of term {}: server {id} holds \
                             {:?}, another log held {:?}",
                            entry.index, entry.term, entry.kind, seen_kind
                        ),
                    ));
                }
            }
            None => {
                self.entries
                    .insert((entry.index, entry.term), (prev, entry.kind.clone()));
            }
        }
        Ok(())
    }

    /// Leader Completeness at the moment a server becomes leader: it holds every entry
    /// committed in an earlier term. (A leader of an older term can still be elected late,
    /// e.g. on a delayed vote, after a later term committed entries it does not have.)
    fn check_new_leader(&self, raft: &Raft<Command>) -> Result<(), Breach> {
        let base = raft.log().snapshot().meta.index;
        for (&index, c) in self.committed.range(base..) {
            if c.in_term < raft.term() && !holds(raft, index, c.term) {
                return Err((
                    LEADER_COMPLETENESS,
                    format!(
                        "server {} became leader of term {} without entry {index} (term {}), \
                         committed by term {} (server {} knew it); it has {}",
                        raft.id(),
                        raft.term(),
                        c.term,
                        c.in_term,
                        c.by,
                        describe_at(raft, index)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A server applied these entries to its state machine.
    pub fn applied(&mut self, id: NodeId, entries: &[Entry<Command>]) -> Result<(), Breach> {
        for entry in entries {
            match self.applied.get(&entry.index) {
                Some((term, kind)) if *term != entry.term || *kind != entry.kind => {
                    return Err((
                        STATE_MACHINE_SAFETY,
                        format!(
                            "server {id} applied entry {} (term {}, {:?}), but another server \
                             applied a different entry there (term {term}, {kind:?})",
                            entry.index, entry.term, entry.kind
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    self.applied
                        .insert(entry.index, (entry.term, entry.kind.clone()));
                }
            }
        }
        Ok(())
    }

    /// A server installed a snapshot sent by the leader.
    pub fn installed(&mut self, id: NodeId, meta: &SnapshotMeta) -> Result<(), Breach> {
        let applied = self.applied.get(&meta.index).map(|(t, _)| *t);
        let committed = self.committed.get(&meta.index).map(|c| c.term);
        for (what, term) in [("applied", applied), ("committed", committed)] {
            if let Some(term) = term {
                if term != meta.term {
                    return Err((
                        STATE_MACHINE_SAFETY,
                        format!(
                            "server {id} installed a snapshot up to entry {} of term {}, but the \
                             entry {what} there is of term {term}",
                            meta.index, meta.term
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Number of distinct entries ever seen in any log.
    pub fn entries_seen(&self) -> usize {
        self.entries.len()
    }
}

/// Whether `raft`'s log holds an entry of `term` at `index` (compacted entries count as held:
/// they are covered by the snapshot, whose own boundary is checked exactly).
fn holds(raft: &Raft<Command>, index: Index, term: Term) -> bool {
    let log = raft.log();
    let base = log.snapshot().meta.index;
    if index < base {
        return true;
    }
    log.term(index) == Some(term)
}

fn describe_at(raft: &Raft<Command>, index: Index) -> String {
    match raft.log().term(index) {
        Some(t) => format!("term {t} at {index}"),
        None => format!("no entry at {index}; last index {}", raft.last_index()),
    }
}
