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
//! **The storage bugs.** A simulated crash is a power cut: only what was synced survives.
//! The storage keeps two disks: what the server has written (the page cache, which it reads
//! while it runs) and what is synced; a crash ([`crash`](Storage::crash)) puts the written
//! disk back to the synced one. Without a storage bug every write is synced when its Ready's
//! simulated fsync completes. With one:
//! - `skip-fsync`: log entries (appends and the truncations of an overwrite) are never
//!   synced; the hard state and snapshots are. A crash loses every entry appended since the
//!   server started or its last snapshot.
//! - `periodic-fsync`: log appends are acknowledged unsynced and synced by
//!   [`sync_log`](Storage::sync_log), which the runner calls once the oldest unsynced one is
//!   [`PERIODIC_SYNC_MS`] old; an overwrite syncs its truncation (and so everything written
//!   before it) at once, as the node's storage does. A crash loses the appends since the
//!   last sync.
//! - `skip-dir-fsync`: no directory entry of the server's data directory was ever made
//!   durable, so a crash loses everything it stored: it restarts empty, as a new server.

use crate::bugs::{Bug, Bugs};
use crate::core::{
    Entry, HardState, Index, Membership, NodeId, Restored, Snapshot, SnapshotMeta, Term,
};
use crate::kv::Command;
use crate::replica::Persist;

/// `periodic-fsync`: the log is synced once its oldest unsynced append is this many
/// simulated milliseconds old (the node's storage thread uses the same interval).
pub const PERIODIC_SYNC_MS: u64 = 200;

/// How a server's storage syncs its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LogSync {
    Always,
    Periodic,
    Never,
}

/// One view of a server's disk: the hard state, the snapshot and the log.
#[derive(Clone, Debug)]
struct Disk {
    hard_state: HardState,
    snapshot: Snapshot,
    /// `entries[i].index == snapshot.meta.index + 1 + i`.
    entries: Vec<Entry<Command>>,
}

/// What a server has on disk.
#[derive(Clone, Debug)]
pub struct Storage {
    /// What the server wrote: what it reads back while it runs.
    written: Disk,
    /// What survives a crash.
    synced: Disk,
    /// The disk of a new server (what `skip-dir-fsync` restarts from).
    empty: Disk,
    log_sync: LogSync,
    dir_sync: bool,
    /// `periodic-fsync`: entries written since the last sync of the log.
    unsynced: bool,
}

impl Storage {
    /// The empty disk of a new server of a cluster of `voters` (what `Replica::new` assumes).
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        let empty = Disk {
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
        };
        Storage {
            written: empty.clone(),
            synced: empty.clone(),
            empty,
            log_sync: LogSync::Always,
            dir_sync: true,
            unsynced: false,
        }
    }

    /// The same storage with the catalogue's storage bugs among `bugs` switched on
    /// (`skip-fsync` wins over `periodic-fsync`).
    pub fn with_bugs(mut self, bugs: Bugs) -> Self {
        self.log_sync = if bugs.has(Bug::SkipFsync) {
            LogSync::Never
        } else if bugs.has(Bug::PeriodicFsync) {
            LogSync::Periodic
        } else {
            LogSync::Always
        };
        self.dir_sync = !bugs.has(Bug::SkipDirFsync);
        self
    }

    pub fn hard_state(&self) -> HardState {
        self.written.hard_state
    }

    pub fn snapshot_index(&self) -> Index {
        self.written.snapshot.meta.index
    }

    pub fn last_index(&self) -> Index {
        self.written.last_index()
    }

    /// Writes a Ready's durable part, and syncs what the storage bugs leave synced. An
    /// error describes a Ready that breaks the contract (entries that would leave a hole
    /// in the stored log).
    pub fn persist(&mut self, persist: &Persist) -> Result<(), String> {
        if self.log_sync == LogSync::Always {
            self.written.persist(persist)?;
            return self.synced.persist(persist);
        }
        // The hard state and the snapshot file are synced as usual; the log is not.
        if let Some(hard_state) = persist.hard_state {
            self.written.hard_state = hard_state;
            self.synced.hard_state = hard_state;
        }
        if let Some(snapshot) = &persist.snapshot {
            self.written.install(snapshot);
            self.synced.install(snapshot);
        }
        let base = self.written.snapshot.meta.index;
        let overwritten = persist
            .entries
            .iter()
            .map(|e| e.index)
            .find(|&i| i > base && i <= self.written.last_index());
        let appended = self.written.append(&persist.entries)?;
        if self.log_sync == LogSync::Periodic {
            if let Some(first) = overwritten {
                // The node syncs a truncation at once, and with it everything written
                // before; the entries written after it wait for the next sync.
                let keep = (first - base - 1) as usize;
                self.synced.entries = self.written.entries[..keep].to_vec();
            }
            self.unsynced |= appended;
        }
        Ok(())
    }

    /// `periodic-fsync`: whether log entries were written since the last sync.
    pub fn log_unsynced(&self) -> bool {
        self.unsynced
    }

    /// `periodic-fsync`: syncs the log (everything written becomes durable).
    pub fn sync_log(&mut self) {
        if self.log_sync == LogSync::Periodic {
            self.synced.snapshot = self.written.snapshot.clone();
            self.synced.entries = self.written.entries.clone();
        }
        self.unsynced = false;
    }

    /// A crash (a power cut): only what was synced survives; under `skip-dir-fsync`
    /// nothing does. Returns how many written records (hard state, entries) were lost.
    pub fn crash(&mut self) -> usize {
        let survivor = if self.dir_sync {
            &self.synced
        } else {
            &self.empty
        };
        let lost_hard_state = usize::from(self.written.hard_state != survivor.hard_state);
        let lost_entries = self
            .written
            .entries
            .iter()
            .filter(|e| survivor.term_at(e.index) != Some(e.term))
            .count();
        self.written = survivor.clone();
        self.synced = survivor.clone();
        self.unsynced = false;
        lost_hard_state + lost_entries
    }

    /// Persists a compaction snapshot taken by the server itself (the snapshot file is
    /// synced; the segments it covers are removed from both views).
    pub fn compact(&mut self, snapshot: &Snapshot) {
        self.written.compact(snapshot);
        self.synced.compact(snapshot);
    }

    /// What a restarting server reads back.
    pub fn restored(&self) -> Restored<Command> {
        Restored {
            hard_state: self.written.hard_state,
            snapshot: self.written.snapshot.clone(),
            entries: self.written.entries.clone(),
        }
    }
}

impl Disk {
    fn last_index(&self) -> Index {
        self.snapshot.meta.index + self.entries.len() as Index
    }

    /// Makes a Ready's durable part durable. An error describes a Ready that breaks the
    /// contract (entries that would leave a hole in the stored log).
    fn persist(&mut self, persist: &Persist) -> Result<(), String> {
        if let Some(hard_state) = persist.hard_state {
            self.hard_state = hard_state;
        }
        if let Some(snapshot) = &persist.snapshot {
            self.install(snapshot);
        }
        self.append(&persist.entries).map(drop)
    }

    /// Writes `entries` over the log from their first index on (those a snapshot covers
    /// are ignored); returns whether any was written.
    fn append(&mut self, entries: &[Entry<Command>]) -> Result<bool, String> {
        let base = self.snapshot.meta.index;
        let fresh: Vec<&Entry<Command>> = entries.iter().filter(|e| e.index > base).collect();
        let Some(first) = fresh.first().map(|e| e.index) else {
            return Ok(false);
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
        Ok(true)
    }

    fn compact(&mut self, snapshot: &Snapshot) {
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

    fn vote(term: u64) -> HardState {
        HardState {
            term,
            voted_for: Some(3),
        }
    }

    /// Entries 1 and 2, then a vote with entries 3 and 4, written by a server with `bug`.
    fn written_with(bug: Bug) -> Storage {
        let mut s = Storage::new([1, 2, 3]).with_bugs(Bugs::none().with(bug));
        s.persist(&persist(vec![entry(1, 1), entry(2, 1)])).unwrap();
        let mut p = persist(vec![entry(3, 2), entry(4, 2)]);
        p.hard_state = Some(vote(2));
        s.persist(&p).unwrap();
        assert_eq!(s.last_index(), 4);
        s
    }

    #[test]
    fn a_crash_keeps_every_synced_write() {
        let mut s = written_with(Bug::VoteTwice);
        assert_eq!(s.crash(), 0);
        assert_eq!(s.last_index(), 4);
        assert_eq!(s.hard_state(), vote(2));
    }

    #[test]
    fn skip_fsync_loses_every_entry_and_keeps_the_hard_state() {
        let mut s = written_with(Bug::SkipFsync);
        assert_eq!(s.crash(), 4);
        assert_eq!(s.last_index(), 0);
        assert_eq!(s.hard_state(), vote(2));
    }

    #[test]
    fn periodic_fsync_loses_the_entries_since_the_last_sync() {
        let mut s = Storage::new([1, 2, 3]).with_bugs(Bugs::none().with(Bug::PeriodicFsync));
        s.persist(&persist(vec![entry(1, 1), entry(2, 1)])).unwrap();
        assert!(s.log_unsynced());
        s.sync_log();
        assert!(!s.log_unsynced());
        s.persist(&persist(vec![entry(3, 1), entry(4, 1)])).unwrap();
        // An overwrite syncs its truncation and what came before it, not what it writes.
        s.persist(&persist(vec![entry(4, 2), entry(5, 2)])).unwrap();
        assert!(s.log_unsynced());
        assert_eq!(s.crash(), 2);
        assert_eq!(
            s.restored().entries,
            vec![entry(1, 1), entry(2, 1), entry(3, 1)]
        );
    }

    #[test]
    fn skip_dir_fsync_loses_everything() {
        let mut s = written_with(Bug::SkipDirFsync);
        assert_eq!(s.crash(), 5);
        assert_eq!(s.last_index(), 0);
        assert_eq!(s.hard_state(), HardState::default());
        assert_eq!(s.restored().snapshot.meta.membership.voters.len(), 3);
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
