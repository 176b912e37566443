//! One server's durable state, exactly as the Ready persistence contract says to write it.
//!
//! The simulator keeps this across crashes; everything else of a server is lost when it
//! crashes. A [`Persist`] is written atomically when its simulated fsync completes: its hard
//! state replaces the stored one; its snapshot replaces the stored snapshot and every stored
//! entry up to the snapshot's index, and every stored entry after it too unless the stored
//! entry at that index has the snapshot's term; its entries overwrite the stored entries from
//! `entries[0].index` on (dropping everything after). A compaction snapshot (from
//! [`Advanced::snapshot`](crate::replica::Advanced)) replaces the stored snapshot and drops the
//! entries it covers. A restart reads back a [`Restored`].
//!
//! **The `skip-fsync` bug.** With it, the runner acknowledges a Ready at once and
//! [`buffer`](Storage::buffer)s its hard state and entries instead of persisting them: they
//! reach the disk only at the next [`flush`](Storage::flush) (every few milliseconds or
//! records, as the node's buggy storage does), and a crash loses whatever was not flushed
//! ([`lose_unsynced`](Storage::lose_unsynced)) — exactly what a power failure does to writes
//! that were never fsync'd. Snapshots are still written synchronously (after a flush).

use crate::core::{
    Entry, HardState, Index, Membership, NodeId, Restored, Snapshot, SnapshotMeta, Term,
};
use crate::kv::Command;
use crate::replica::Persist;

/// What a server has on disk.
#[derive(Clone, Debug)]
pub struct Storage {
    hard_state: HardState,
    snapshot: Snapshot,
    /// `entries[i].index == snapshot.meta.index + 1 + i`.
    entries: Vec<Entry<Command>>,
    /// `skip-fsync`: acknowledged writes not yet on disk, oldest first.
    unsynced: Vec<Persist>,
}

impl Storage {
    /// The empty disk of a new server of a cluster of `voters` (what `Replica::new` assumes).
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Storage {
            hard_state: HardState::default(),
            snapshot: Snapshot {
                meta: SnapshotMeta {
                    index: 0,
                    term: 0,
                    membership: Membership::of_voters(voters),
                },
                data: Default::default(),
            },
            entries: Vec::new(),
            unsynced: Vec::new(),
        }
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn snapshot_index(&self) -> Index {
        self.snapshot.meta.index
    }

    pub fn last_index(&self) -> Index {
        self.snapshot.meta.index + self.entries.len() as Index
    }

    /// Makes a Ready's durable part durable. An error describes a Ready that breaks the
    /// contract (entries that would leave a hole in the stored log).
    pub fn persist(&mut self, persist: &Persist) -> Result<(), String> {
        if let Some(hard_state) = persist.hard_state {
            self.hard_state = hard_state;
        }
        if let Some(snapshot) = &persist.snapshot {
            self.install(snapshot);
        }
        let base = self.snapshot.meta.index;
        let fresh: Vec<&Entry<Command>> =
            persist.entries.iter().filter(|e| e.index > base).collect();
        let Some(first) = fresh.first().map(|e| e.index) else {
            return Ok(());
        };
        if first > self.last_index() + 1 {
            return Err(format!(
                "Ready entries start at index {first} but the stored log ends at {}",
                self.last_index()
            ));
        }
        self.entries.truncate((first - base - 1) as usize);
        for (offset, entry) in fresh.iter().enumerate() {
            if entry.index != first + offset as Index {
                return Err(format!(
                    "Ready entries are not contiguous: index {} after {}",
                    entry.index,
                    first + offset as Index - 1
                ));
            }
            self.entries.push((*entry).clone());
        }
        Ok(())
    }

    /// `skip-fsync`: keeps a Ready's hard state and entries in memory only (its snapshot, if
    /// any, is persisted at once, after flushing what is buffered). Returns how many records
    /// (hard states and entries) are now buffered.
    pub fn buffer(&mut self, persist: &Persist) -> Result<usize, String> {
        if persist.snapshot.is_some() {
            self.flush()?;
            self.persist(persist)?;
        } else if persist.hard_state.is_some() || !persist.entries.is_empty() {
            self.unsynced.push(Persist {
                hard_state: persist.hard_state,
                snapshot: None,
                entries: persist.entries.clone(),
                early_messages: Vec::new(),
                messages: Vec::new(),
            });
        }
        Ok(self.unsynced_records())
    }

    /// Number of buffered records (hard states and entries) not yet on disk.
    pub fn unsynced_records(&self) -> usize {
        self.unsynced
            .iter()
            .map(|p| usize::from(p.hard_state.is_some()) + p.entries.len())
            .sum()
    }

    /// Writes every buffered write to disk, in order.
    pub fn flush(&mut self) -> Result<(), String> {
        for persist in std::mem::take(&mut self.unsynced) {
            self.persist(&persist)?;
        }
        Ok(())
    }

    /// A crash: the buffered writes are gone. Returns how many records were lost.
    pub fn lose_unsynced(&mut self) -> usize {
        let lost = self.unsynced_records();
        self.unsynced.clear();
        lost
    }

    /// Persists a compaction snapshot taken by the server itself.
    pub fn compact(&mut self, snapshot: &Snapshot) {
        if snapshot.meta.index > self.snapshot.meta.index {
            self.install(snapshot);
        }
    }

    /// The snapshot replaces the stored one and every stored entry up to its index, and
    /// every stored entry after it too unless the stored entry at its index has the
    /// snapshot's term (then the suffix follows on from the snapshot and is kept).
    fn install(&mut self, snapshot: &Snapshot) {
        let index = snapshot.meta.index;
        let base = self.snapshot.meta.index;
        if self.term_at(index) == Some(snapshot.meta.term) && index >= base {
            let drop = ((index - base) as usize).min(self.entries.len());
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
        }
        self.snapshot = snapshot.clone();
    }

    fn term_at(&self, index: Index) -> Option<Term> {
        let base = self.snapshot.meta.index;
        if index == base {
            return Some(self.snapshot.meta.term);
        }
        if index < base {
            return None;
        }
        self.entries
            .get((index - base - 1) as usize)
            .map(|e| e.term)
    }

    /// What a restarting server reads back.
    pub fn restored(&self) -> Restored<Command> {
        Restored {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EntryKind;

    fn entry(index: Index, term: u64) -> Entry<Command> {
        Entry {
            term,
            index,
            kind: EntryKind::Noop,
        }
    }

    fn persist(entries: Vec<Entry<Command>>) -> Persist {
        Persist {
            hard_state: None,
            snapshot: None,
            entries,
            early_messages: Vec::new(),
            messages: Vec::new(),
        }
    }

    #[test]
    fn entries_overwrite_from_their_first_index() {
        let mut s = Storage::new([1, 2, 3]);
        s.persist(&persist(vec![entry(1, 1), entry(2, 1), entry(3, 1)]))
            .unwrap();
        s.persist(&persist(vec![entry(2, 2)])).unwrap();
        let r = s.restored();
        assert_eq!(r.entries, vec![entry(1, 1), entry(2, 2)]);
        assert!(s.persist(&persist(vec![entry(5, 2)])).is_err());
    }

    #[test]
    fn a_snapshot_that_does_not_match_the_stored_log_replaces_all_of_it() {
        let mut s = Storage::new([1]);
        s.persist(&persist((1..=10).map(|i| entry(i, 1)).collect()))
            .unwrap();
        let mut snap = s.restored().snapshot;
        snap.meta.index = 5;
        snap.meta.term = 2;
        let mut p = persist(Vec::new());
        p.snapshot = Some(snap.clone());
        s.persist(&p).unwrap();
        assert!(s.restored().entries.is_empty());
        // A matching one keeps the suffix.
        let mut s = Storage::new([1]);
        s.persist(&persist((1..=10).map(|i| entry(i, 1)).collect()))
            .unwrap();
        snap.meta.term = 1;
        p.snapshot = Some(snap);
        s.persist(&p).unwrap();
        assert_eq!(s.restored().entries.len(), 5);
    }

    #[test]
    fn unsynced_writes_are_lost_by_a_crash_and_kept_by_a_flush() {
        let mut s = Storage::new([1, 2, 3]);
        s.persist(&persist(vec![entry(1, 1)])).unwrap();
        let mut p = persist(vec![entry(2, 1), entry(3, 1)]);
        p.hard_state = Some(HardState {
            term: 2,
            voted_for: Some(3),
        });
        assert_eq!(s.buffer(&p).unwrap(), 3);
        assert_eq!(s.lose_unsynced(), 3);
        assert_eq!(s.last_index(), 1);
        assert_eq!(s.hard_state(), HardState::default());
        s.buffer(&p).unwrap();
        s.flush().unwrap();
        assert_eq!(s.unsynced_records(), 0);
        assert_eq!(s.last_index(), 3);
        assert_eq!(s.hard_state().voted_for, Some(3));
    }

    #[test]
    fn compaction_drops_covered_entries() {
        let mut s = Storage::new([1]);
        s.persist(&persist((1..=5).map(|i| entry(i, 1)).collect()))
            .unwrap();
        let mut snap = s.restored().snapshot;
        snap.meta.index = 3;
        snap.meta.term = 1;
        s.compact(&snap);
        assert_eq!(s.restored().entries, vec![entry(4, 1), entry(5, 1)]);
        assert_eq!(s.last_index(), 5);
    }
}
