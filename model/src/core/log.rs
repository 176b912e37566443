//! The replicated log as one server holds it: a snapshot prefix, then entries, with the
//! marks that say what is durable, committed and applied.
//!
//! ```text
//!  snapshot.index   applied      commit        stable        last
//!  ------|-------------|-----------|--------------|-------------|
//!  compacted   applied      committed, not yet   durable,     not yet
//!                           handed to apply      uncommitted  durable
//! ```
//! Entries are handed to the caller for persistence once (see [`RaftLog::take_unstable`]);
//! a conflicting suffix truncated before it became durable is handed out again.

use super::types::{Entry, EntryKind, Index, Membership, Snapshot, SnapshotMeta, Term};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RaftLog<C> {
    /// The latest snapshot; everything up to `snapshot.meta.index` is compacted away.
    snapshot: Snapshot,
    /// `entries[i].index == snapshot.meta.index + 1 + i`.
    entries: Vec<Entry<C>>,
    /// Entries up to here are durable.
    stable: Index,
    /// Entries up to here were handed out for persistence and await `mark_stable`.
    handed: Index,
    /// A received snapshot waiting to be persisted and installed by the caller.
    pending_snapshot: Option<Snapshot>,
    pub(crate) commit: Index,
    pub(crate) applied: Index,
}

impl<C: Clone> RaftLog<C> {
    /// A log restored from durable state: a snapshot and the entries after it.
    pub fn restore(snapshot: Snapshot, entries: Vec<Entry<C>>, commit: Index) -> Self {
        let base = snapshot.meta.index;
        let last = base + entries.len() as Index;
        debug_assert!(entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == base + 1 + i as Index));
        RaftLog {
            snapshot,
            entries,
            stable: last,
            handed: last,
            pending_snapshot: None,
            // A persisted commit index may exceed what survived of the log only if storage
            // lost acknowledged entries; never claim more than we hold.
            commit: commit.clamp(base, last),
            applied: base,
        }
    }

    pub fn first_index(&self) -> Index {
        self.snapshot.meta.index + 1
    }

    pub fn last_index(&self) -> Index {
        self.snapshot.meta.index + self.entries.len() as Index
    }

    pub fn last_term(&self) -> Term {
        self.entries
            .last()
            .map_or(self.snapshot.meta.term, |e| e.term)
    }

    pub fn stable_index(&self) -> Index {
        self.stable
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The term of the entry at `index`, if the log still knows it (compacted entries are
    /// only known at the snapshot boundary).
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.meta.index {
            return Some(self.snapshot.meta.term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub fn entry(&self, index: Index) -> Option<&Entry<C>> {
        let base = self.snapshot.meta.index;
        if index <= base {
            return None;
        }
        self.entries.get((index - base - 1) as usize)
    }

    /// Up to `max` entries starting at `from` (which must be in the log).
    pub fn slice(&self, from: Index, max: usize) -> Vec<Entry<C>> {
        let base = self.snapshot.meta.index;
        if from <= base {
            return Vec::new();
        }
        let start = (from - base - 1) as usize;
        let end = start.saturating_add(max).min(self.entries.len());
        self.entries
            .get(start..end)
            .map_or_else(Vec::new, <[_]>::to_vec)
    }

    /// The voting rule's "at least as up-to-date" (Raft paper, section 5.4.1).
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// The first index of the term of the entry at `index` in this log (fast backtracking).
    pub fn first_index_of_term_at(&self, index: Index) -> Index {
        let Some(term) = self.term(index) else {
            return index;
        };
        let mut first = index;
        while first > self.first_index() && self.term(first - 1) == Some(term) {
            first -= 1;
        }
        first
    }

    /// The last index holding an entry of `term`, if any.
    pub fn last_index_of_term(&self, term: Term) -> Option<Index> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.term == term)
            .map(|e| e.index)
            .or((self.snapshot.meta.term == term).then_some(self.snapshot.meta.index))
    }

    /// Appends entries a leader created.
    pub fn append(&mut self, entry: Entry<C>) {
        assert_eq!(
            entry.index,
            self.last_index() + 1,
            "log must stay contiguous"
        );
        self.entries.push(entry);
    }

    /// Follower side of AppendEntries after the consistency check passed: skips entries it
    /// already has, truncates at the first conflict (never below commit), appends the rest.
    /// Returns the index of the last entry now known to match the leader's, and whether a
    /// conflicting suffix was truncated.
    pub fn merge(&mut self, prev_index: Index, entries: &[Entry<C>]) -> (Index, bool) {
        let mut truncated = false;
        for (offset, entry) in entries.iter().enumerate() {
            debug_assert_eq!(entry.index, prev_index + 1 + offset as Index);
            match self.term(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    // Log Matching + Leader Completeness: a committed entry never conflicts.
                    assert!(
                        entry.index > self.commit,
                        "conflict at committed index {} (commit {})",
                        entry.index,
                        self.commit
                    );
                    self.truncate_from(entry.index);
                    self.entries.extend_from_slice(&entries[offset..]);
                    truncated = true;
                    break;
                }
                None if entry.index <= self.snapshot.meta.index => continue,
                None => {
                    self.entries.extend_from_slice(&entries[offset..]);
                    break;
                }
            }
        }
        (prev_index + entries.len() as Index, truncated)
    }

    /// Drops every entry after `index` (which must not be below the commit index); returns
    /// whether anything was dropped. Only the `truncate-on-append` bug calls it: a correct
    /// follower truncates at a conflict, in [`merge`](Self::merge).
    pub fn truncate_after(&mut self, index: Index) -> bool {
        assert!(
            index >= self.commit,
            "truncating committed entries after {index} (commit {})",
            self.commit
        );
        if index >= self.last_index() || index < self.snapshot.meta.index {
            return false;
        }
        self.truncate_from(index + 1);
        true
    }

    /// Drops entries from `index` on; anything dropped that was handed out but not yet
    /// durable will be handed out again in its new form.
    fn truncate_from(&mut self, index: Index) {
        let keep = (index - self.snapshot.meta.index - 1) as usize;
        self.entries.truncate(keep);
        self.stable = self.stable.min(index - 1);
        self.handed = self.handed.min(index - 1);
    }

    /// Raises the commit index (never lowers it).
    pub fn commit_to(&mut self, index: Index) {
        if index > self.commit {
            assert!(
                index <= self.last_index(),
                "commit {} beyond last index {}",
                index,
                self.last_index()
            );
            self.commit = index;
        }
    }

    /// Entries not yet handed out for persistence; marks them handed.
    pub fn take_unstable(&mut self) -> Vec<Entry<C>> {
        let from = self.handed + 1;
        let out = self.slice(from, usize::MAX);
        self.handed = self.last_index();
        out
    }

    pub fn has_unstable(&self) -> bool {
        self.handed < self.last_index() || self.pending_snapshot.is_some()
    }

    /// The caller made everything it was handed durable.
    pub fn mark_stable(&mut self) {
        self.stable = self.stable.max(self.handed);
    }

    /// Committed, durable entries not yet handed to the state machine; marks them applied.
    /// `ahead_of_commit` (the `ack-before-commit` bug) also hands out durable uncommitted ones.
    pub fn take_committed(&mut self, ahead_of_commit: bool) -> Vec<Entry<C>> {
        let upto = if ahead_of_commit {
            self.stable
        } else {
            self.commit.min(self.stable)
        };
        if upto <= self.applied {
            return Vec::new();
        }
        let out = self.slice(self.applied + 1, (upto - self.applied) as usize);
        self.applied = upto;
        out
    }

    pub fn has_committed_to_apply(&self) -> bool {
        self.commit.min(self.stable) > self.applied
    }

    /// The caller has applied up to `index` and gives the state machine's snapshot at that
    /// point: entries up to it are discarded.
    pub fn compact(&mut self, index: Index, membership: Membership, data: Vec<u8>) -> bool {
        if index <= self.snapshot.meta.index || index > self.applied {
            return false;
        }
        let Some(term) = self.term(index) else {
            return false;
        };
        let drop = (index - self.snapshot.meta.index) as usize;
        self.entries.drain(..drop);
        self.snapshot = Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                membership,
            },
            data: std::sync::Arc::new(data),
        };
        true
    }

    /// Installs a snapshot sent by the leader. Keeps the entries after it if they match
    /// (thesis 5.3: a snapshot of a prefix must not erase a longer matching log).
    pub fn install(&mut self, snapshot: Snapshot) -> bool {
        let meta = &snapshot.meta;
        if meta.index <= self.commit {
            return false;
        }
        if self.term(meta.index) == Some(meta.term) {
            let drop = (meta.index - self.snapshot.meta.index) as usize;
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
        }
        let index = meta.index;
        self.snapshot = snapshot.clone();
        self.pending_snapshot = Some(snapshot);
        self.commit = index;
        self.applied = index;
        self.stable = self.stable.clamp(index, self.last_index());
        self.handed = self.handed.clamp(index, self.last_index());
        true
    }

    /// A received snapshot the caller must persist and restore its state machine from.
    pub fn take_pending_snapshot(&mut self) -> Option<Snapshot> {
        self.pending_snapshot.take()
    }

    /// The membership in effect after the entry at `index`: the last change at or before it.
    pub fn membership_at(&self, index: Index) -> Membership {
        let mut membership = self.snapshot.meta.membership.clone();
        for entry in self.entries.iter().take_while(|e| e.index <= index) {
            if let EntryKind::Membership(change) = &entry.kind {
                if let Ok(next) = membership.apply(change) {
                    membership = next;
                }
            }
        }
        membership
    }

    /// Index of the last membership change in the log after the snapshot, if any.
    pub fn last_membership_change(&self) -> Option<Index> {
        self.entries
            .iter()
            .rev()
            .find(|e| matches!(e.kind, EntryKind::Membership(_)))
            .map(|e| e.index)
    }
}
