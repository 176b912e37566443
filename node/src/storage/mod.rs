//! Durable storage of one node: the hard state, the latest snapshot and the log, written
//! exactly as the Ready persistence contract ([`model::core::Ready`]) says.
//!
//! ```text
//! <data dir>/
//!   LOCK                     flock'ed while open: one process per data directory
//!   FORMAT                   [crc32c][postcard u32]: the encoding version of the files below
//!   hardstate                [crc32c][postcard HardState]   replaced atomically
//!   snapshot                 [crc32c][postcard Snapshot]    replaced atomically
//!   wal/<first index>.log    segments of group commits: a batch mark, then
//!                            [len][crc32c][postcard Entry] records
//! ```
//!
//! A data directory written with another encoding ([`FORMAT_VERSION`]; one with state and no
//! `FORMAT` file predates versioning) is refused with [`StorageError::Format`] before
//! anything is read, rather than reported as corrupt halfway through the log.
//!
//! Blocking std I/O: the runtime calls it from a dedicated thread. Each [`Storage::persist`]
//! is one group commit (one write and one fdatasync in the common case of appending).
//!
//! Recovery ([`Storage::open`]) reads the snapshot, the hard state and the segments in
//! order. Damage in the last group commit of the last segment (a crash during its write,
//! whose pages may reach the disk in any order; it was never acknowledged) is truncated from
//! its first bad record on, with a warning; any other damage — in a group commit followed by
//! a later one, in a segment that is not the last, a gap in the indexes, a bad checksum in
//! `hardstate` or `snapshot` — refuses to open with [`StorageError::Corrupt`], naming the file and byte
//! offset. Entries the snapshot covers are skipped; the entries after it are kept if they
//! follow on from it (the log holds the snapshot's index with the snapshot's term, or starts
//! right after it) and discarded otherwise, as the contract says for an installed snapshot
//! (that state is what a crash between writing a snapshot and trimming the log leaves).
//! A log without a `hardstate` file beside it (no crash leaves one: the hard state is written
//! before any entry) refuses to open with [`StorageError::MissingHardState`]: starting at
//! term 0 with no vote could vote twice in one term.
//!
//! After any I/O error the instance refuses further writes ([`StorageError::Failed`]): what
//! reached the disk is unknown (a failed fsync cannot be retried), so the node must stop and
//! recover by reopening. Except a full disk: ENOSPC from a write, a file creation or an
//! allocation (never from an fsync) is [`StorageError::NoSpace`]; the failed call undoes
//! what it wrote (the log's tail stays where it was, a replace's temporary file is
//! removed) and the instance stays usable, so the caller retries the same call once space
//! returns.
//!
//! **The storage bugs of the catalogue** ([`SyncBugs`], `--bug NAME`) leave syncs out and
//! hold nothing in memory: what they lose, they lose only in a power cut (the lab's lazyfs
//! `lose-unsynced`), never in a SIGKILL, which keeps the operating system's page cache.
//! - `skip-fsync`: log appends are written at once and acknowledged, but no log segment is
//!   ever fdatasync'd or fsync'd (appends, seals, truncations); the hard state, snapshot and
//!   directories are synced as usual. A power cut loses every entry appended since each
//!   segment was created.
//! - `periodic-fsync` (Redis's `appendfsync everysec`): log appends are written at once and
//!   acknowledged; the tail is fdatasync'd by [`Storage::sync_log`], which the storage thread
//!   calls once the oldest unsynced append is [`PERIODIC_FSYNC_INTERVAL`] old
//!   ([`Storage::sync_deadline`]) and at a clean shutdown. Seals and truncations are still
//!   synced at once. A power cut loses the appends since the last sync.
//! - `skip-dir-fsync`: no directory is ever fsync'd (after a segment is created or removed,
//!   after `hardstate`, `snapshot` or `FORMAT` is renamed over its temporary file, after the
//!   data and log directories are created); file data is synced. A power cut may undo any
//!   of those directory changes, and loses a new node's whole data directory.

mod atomic;
pub mod damage;
mod hard_state;
mod snapshot;
mod wal;

use model::bugs::{Bug, Bugs};
use model::core::{Entry, HardState, Index, Restored, Snapshot, SnapshotMeta, Term};
use model::kv::Command;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;
use wal::Wal;

/// Name of the log directory inside the data directory.
const WAL_DIR: &str = "wal";
/// Name of the lock file inside the data directory.
const LOCK_FILE: &str = "LOCK";
/// Name of the file holding the data directory's [`FORMAT_VERSION`].
const FORMAT_FILE: &str = "FORMAT";
/// The encoding of the log's entries and of the snapshot. Bumped on any incompatible change
/// of the stored types (commands and the state machine, which the snapshot holds). 1: data
/// directories without a `FORMAT` file; 2: commands carry the leader's time, and the state
/// machine its sessions' clock; 3: log segments mark where each group commit begins.
pub const FORMAT_VERSION: u32 = 3;

/// How to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageOptions {
    /// fsync before reporting durability. Off only for benchmarks: a crash of the machine
    /// (not just the process) may then lose acknowledged data.
    pub fsync: bool,
    /// Start a new log segment when the current one would grow past this many bytes (a
    /// single record larger than this gets a segment of its own).
    pub segment_bytes: u64,
    /// The catalogue's storage bugs: syncs to leave out. None outside the lab.
    pub bugs: SyncBugs,
}

/// The syncs the catalogue's storage bugs leave out (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncBugs {
    /// `skip-fsync`: never sync a log segment.
    pub skip_fsync: bool,
    /// `periodic-fsync`: leave log appends unsynced until [`Storage::sync_log`].
    pub periodic_fsync: bool,
    /// `skip-dir-fsync`: never sync a directory.
    pub skip_dir_fsync: bool,
}

impl SyncBugs {
    /// The storage bugs among `bugs` (the others live in the core or the runtime).
    pub fn of(bugs: Bugs) -> SyncBugs {
        SyncBugs {
            skip_fsync: bugs.has(Bug::SkipFsync),
            periodic_fsync: bugs.has(Bug::PeriodicFsync),
            skip_dir_fsync: bugs.has(Bug::SkipDirFsync),
        }
    }
}

/// `periodic-fsync`: the log is synced once its oldest unsynced append is this old.
pub const PERIODIC_FSYNC_INTERVAL: Duration = Duration::from_millis(200);

/// How the log segments are synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogSync {
    /// Every append, seal and truncation before it returns.
    EveryWrite,
    /// `periodic-fsync`: appends by [`Storage::sync_log`]; seals and truncations at once.
    Periodic,
    /// `skip-fsync`, or `fsync` off.
    Never,
}

/// Which syncs this instance makes, from [`StorageOptions`]: consulted at every sync point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Syncs {
    /// The hard state, snapshot and `FORMAT` files (and their temporary files).
    pub(crate) files: bool,
    pub(crate) log: LogSync,
    /// Directories, after an entry in them is created, renamed over or removed.
    pub(crate) dirs: bool,
}

impl Syncs {
    /// Every sync: the correct storage.
    #[cfg(test)]
    pub(crate) const ALL: Syncs = Syncs {
        files: true,
        log: LogSync::EveryWrite,
        dirs: true,
    };

    /// The syncs `opts` asks for: none without `fsync`; `skip-fsync` wins over
    /// `periodic-fsync`.
    fn of(opts: &StorageOptions) -> Syncs {
        let bugs = opts.bugs;
        let log = if !opts.fsync || bugs.skip_fsync {
            LogSync::Never
        } else if bugs.periodic_fsync {
            LogSync::Periodic
        } else {
            LogSync::EveryWrite
        };
        Syncs {
            files: opts.fsync,
            log,
            dirs: opts.fsync && !bugs.skip_dir_fsync,
        }
    }
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            fsync: true,
            segment_bytes: 64 << 20,
            bugs: SyncBugs::default(),
        }
    }
}

impl From<&crate::config::Storage> for StorageOptions {
    fn from(config: &crate::config::Storage) -> Self {
        StorageOptions {
            fsync: config.fsync,
            segment_bytes: config.segment_bytes,
            bugs: SyncBugs::default(),
        }
    }
}

/// Sizes for status pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Bytes of records in the log segments (the tail's preallocated space not counted).
    pub log_bytes: u64,
    /// Number of log segments.
    pub segments: usize,
    /// Bytes of the snapshot file (0 if none).
    pub snapshot_bytes: u64,
    /// Index of the stored snapshot (0 if none).
    pub snapshot_index: Index,
    /// Index of the last stored entry (the snapshot's if there is none after it).
    pub last_index: Index,
}

/// Why storage could not do what was asked.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    /// Damage that recovery must not paper over; the node must not start on it.
    #[error("{}: corrupt at byte offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The log holds entries but the term and vote are gone: starting at term 0 with no
    /// vote could vote twice in one term.
    #[error(
        "{}: the log holds entries up to index {last} but there is no `hardstate` file: \
         the term and vote are lost, and starting at term 0 could vote twice in one term \
         (restore the file, or start the node on an empty data directory)",
        path.display()
    )]
    MissingHardState { path: PathBuf, last: Index },
    #[error("{}: the data directory is in use by another process", path.display())]
    Locked { path: PathBuf },
    /// Written by another version of raft-node: nothing was read.
    #[error(
        "{}: stored in format {found}, this raft-node reads format {expected} only \
         (start the node on an empty data directory, or with the raft-node that wrote it)",
        path.display()
    )]
    Format {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// The caller broke the persistence contract (nothing was written).
    #[error("refused to persist: {0}")]
    Contract(String),
    #[error("cannot encode for storage: {0}")]
    Encode(String),
    /// An earlier write failed; this instance writes nothing more.
    #[error("storage stopped after an earlier failure ({0}); reopen to recover")]
    Failed(String),
    /// The disk is full: a write, file creation or allocation got ENOSPC. What the failed
    /// call had written was undone and the instance stays usable: the same call may be
    /// retried once space returns.
    #[error("{}: cannot {op}: no space left on device", path.display())]
    NoSpace { path: PathBuf, op: &'static str },
}

impl StorageError {
    /// Whether the disk failed (now or in an earlier write of this instance), rather than
    /// the data being refused: what reached the disk is then unknown.
    pub fn is_io_failure(&self) -> bool {
        matches!(
            self,
            StorageError::Io { .. } | StorageError::Failed(_) | StorageError::NoSpace { .. }
        )
    }
}

/// Refuses a data directory of another format; marks an empty one with this format.
fn check_format(dir: &Path, wal_dir: &Path, syncs: Syncs) -> Result<(), StorageError> {
    let found = match atomic::load::<u32>(dir, FORMAT_FILE)? {
        Some((version, _)) => version,
        None => {
            let has_state = [hard_state::FILE, snapshot::FILE]
                .iter()
                .any(|name| dir.join(name).exists())
                || fs::read_dir(wal_dir)
                    .map_err(atomic::io_err(wal_dir, "list"))?
                    .next()
                    .is_some();
            if !has_state {
                let bytes = atomic::encode(&FORMAT_VERSION)?;
                atomic::replace(dir, FORMAT_FILE, &bytes, syncs)?;
                return Ok(());
            }
            1
        }
    };
    if found == FORMAT_VERSION {
        Ok(())
    } else {
        Err(StorageError::Format {
            path: dir.to_path_buf(),
            found,
            expected: FORMAT_VERSION,
        })
    }
}

/// One node's durable state.
#[derive(Debug)]
pub struct Storage {
    dir: PathBuf,
    syncs: Syncs,
    /// Held for the lifetime of the instance.
    _lock: Flock<File>,
    hard_state: HardState,
    /// The stored snapshot's metadata (its data is not kept in memory).
    snapshot: SnapshotMeta,
    snapshot_bytes: u64,
    wal: Wal,
    /// The data directory held no state when opened.
    fresh: bool,
    /// Set by the first failed write.
    failed: Option<String>,
}

impl Storage {
    /// Opens (creating if absent) the data dir and recovers: returns what the core restarts
    /// from.
    ///
    /// A new data directory gives the default hard state, the default snapshot (index 0, no
    /// members) and no entries; see [`is_fresh`](Self::is_fresh). A caller bootstrapping a
    /// cluster should then store its initial membership with
    /// [`save_snapshot`](Self::save_snapshot) (an index-0 snapshot) before anything else, so
    /// that a restart finds it.
    pub fn open(
        dir: &Path,
        opts: StorageOptions,
    ) -> Result<(Storage, Restored<Command>), StorageError> {
        let syncs = Syncs::of(&opts);
        create_dir_durably(dir, syncs.dirs)?;
        let wal_dir = dir.join(WAL_DIR);
        create_dir_durably(&wal_dir, syncs.dirs)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(atomic::io_err(&lock_path, "open"))?;
        let lock =
            Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
                if errno == nix::errno::Errno::EWOULDBLOCK {
                    StorageError::Locked {
                        path: dir.to_path_buf(),
                    }
                } else {
                    atomic::io_err(&lock_path, "lock")(std::io::Error::from(errno))
                }
            })?;
        atomic::remove_stale(dir, hard_state::FILE)?;
        atomic::remove_stale(dir, snapshot::FILE)?;
        atomic::remove_stale(dir, FORMAT_FILE)?;
        check_format(dir, &wal_dir, syncs)?;

        let stored_hard_state = hard_state::load(dir)?;
        let stored_snapshot = snapshot::load(dir)?;
        let (mut wal, mut entries) = Wal::open(&wal_dir, syncs, opts.segment_bytes)?;
        // `persist` writes the hard state before any entry, and every entry has a term above
        // 0, so no crash leaves entries without one: it was lost or removed.
        if let (None, Some(last)) = (stored_hard_state, entries.last()) {
            return Err(StorageError::MissingHardState {
                path: dir.to_path_buf(),
                last: last.index,
            });
        }
        let fresh = stored_hard_state.is_none() && stored_snapshot.is_none() && entries.is_empty();
        let (snapshot, snapshot_bytes) = stored_snapshot.unwrap_or_default();
        let meta = &snapshot.meta;

        if let Some(first) = wal.first_index() {
            if first > meta.index + 1 {
                return Err(StorageError::Corrupt {
                    file: wal.first_path().map(Path::to_path_buf).unwrap_or_default(),
                    offset: 0,
                    reason: format!(
                        "the log starts at index {first} but the snapshot ends at index {}: \
                         entries {}..={} are missing",
                        meta.index,
                        meta.index + 1,
                        first - 1
                    ),
                });
            }
            let follows = first == meta.index + 1 || wal.term_at(meta.index) == Some(meta.term);
            if follows {
                entries.retain(|e| e.index > meta.index);
                wal.drop_through(meta.index)?;
            } else {
                let after = entries.iter().filter(|e| e.index > meta.index).count();
                if after > 0 {
                    tracing::warn!(
                        snapshot_index = meta.index,
                        snapshot_term = meta.term,
                        discarded = after,
                        "the log does not follow on from the snapshot (an interrupted snapshot \
                         install): discarding the {after} entries after it, as the persistence contract says"
                    );
                }
                entries.clear();
                wal.clear()?;
            }
        }

        let storage = Storage {
            dir: dir.to_path_buf(),
            syncs,
            _lock: lock,
            hard_state: stored_hard_state.unwrap_or_default(),
            snapshot: snapshot.meta.clone(),
            snapshot_bytes,
            wal,
            fresh,
            failed: None,
        };
        let restored = Restored {
            hard_state: storage.hard_state,
            snapshot,
            entries,
        };
        Ok((storage, restored))
    }

    /// Whether the data directory held no state (no hard state, snapshot or entries) when
    /// opened: a brand-new server.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Step 1 of a Ready: hard state, received snapshot, entries (overwrite from
    /// `entries[0].index`) — durable (fsync) when it returns. One call = one group commit.
    /// (Under `skip-fsync` and `periodic-fsync` the entries are only written when it
    /// returns; see the module documentation.)
    ///
    /// Exactly the contract of [`model::core::Ready`]: the snapshot replaces the stored one
    /// and every stored entry up to its index, and every stored entry after it too unless
    /// the stored entry at its index has its term; entries at or before the (new) snapshot
    /// index are ignored; the rest overwrite the stored entries from their first index on.
    /// Entries that would leave a hole, or are not contiguous, are refused with
    /// [`StorageError::Contract`] before anything is written.
    pub fn persist(
        &mut self,
        hard_state: Option<HardState>,
        snapshot: Option<&Snapshot>,
        entries: &[Entry<Command>],
    ) -> Result<(), StorageError> {
        self.usable()?;
        if let Some(pair) = entries.windows(2).find(|w| w[1].index != w[0].index + 1) {
            return Err(StorageError::Contract(format!(
                "entries are not contiguous: index {} after {}",
                pair[1].index, pair[0].index
            )));
        }
        // Where the log will stand once the snapshot (if any) is installed.
        let (base, next) = match snapshot {
            Some(s) if self.follows(&s.meta) => (s.meta.index, self.next_index()),
            Some(s) => (s.meta.index, s.meta.index + 1),
            None => (self.snapshot.index, self.next_index()),
        };
        let fresh = &entries[entries.partition_point(|e| e.index <= base)..];
        if let Some(first) = fresh.first() {
            if first.index > next {
                return Err(StorageError::Contract(format!(
                    "entries start at index {} but the stored log ends at {}",
                    first.index,
                    next - 1
                )));
            }
        }
        let result = self.persist_unchecked(hard_state, snapshot, fresh);
        self.note(result)
    }

    fn persist_unchecked(
        &mut self,
        hard_state: Option<HardState>,
        snapshot: Option<&Snapshot>,
        entries: &[Entry<Command>],
    ) -> Result<(), StorageError> {
        if let Some(hs) = hard_state {
            if hs != self.hard_state {
                hard_state::store(&self.dir, &hs, self.syncs)?;
                self.hard_state = hs;
            }
        }
        if let Some(s) = snapshot {
            self.install(s)?;
        }
        if let Some(first) = entries.first() {
            if first.index < self.next_index() {
                self.wal.truncate_from(first.index)?;
            }
            self.wal.append(entries)?;
        }
        Ok(())
    }

    /// `periodic-fsync`: fdatasyncs the log's tail, making every append so far durable. A
    /// no-op when nothing is left unsynced (always, without the bug).
    pub fn sync_log(&mut self) -> Result<(), StorageError> {
        self.usable()?;
        let result = self.wal.sync();
        self.note(result)
    }

    /// `periodic-fsync`: when [`sync_log`](Self::sync_log) is due (`None`: nothing unsynced).
    pub fn sync_deadline(&self) -> Option<Instant> {
        self.wal
            .unsynced_since()
            .map(|since| since + PERIODIC_FSYNC_INTERVAL)
    }

    /// A compaction snapshot made by this node: write it durably, then drop log segments
    /// wholly covered by it. A snapshot older than the stored one is ignored.
    pub fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.usable()?;
        if snapshot.meta.index < self.snapshot.index {
            return Ok(());
        }
        let result = self.install(snapshot);
        self.note(result)
    }

    /// Sizes for status pages: bytes of log on disk, number of segments.
    pub fn stats(&self) -> StorageStats {
        let (log_bytes, segments) = self.wal.size();
        StorageStats {
            log_bytes,
            segments,
            snapshot_bytes: self.snapshot_bytes,
            snapshot_index: self.snapshot.index,
            last_index: self.next_index() - 1,
        }
    }

    /// Writes the snapshot durably, then trims the log: the entries it covers always, and
    /// the ones after it too unless they follow on from it.
    fn install(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let follows = self.follows(&snapshot.meta);
        self.snapshot_bytes = snapshot::store(&self.dir, snapshot, self.syncs)?;
        self.snapshot = snapshot.meta.clone();
        if follows {
            self.wal.drop_through(snapshot.meta.index)
        } else {
            self.wal.clear()
        }
    }

    /// Whether the stored log holds the snapshot's last entry (or is the snapshot's end).
    fn follows(&self, meta: &SnapshotMeta) -> bool {
        self.term_at(meta.index) == Some(meta.term)
    }

    fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.index {
            Some(self.snapshot.term)
        } else if index < self.snapshot.index {
            None
        } else {
            self.wal.term_at(index)
        }
    }

    /// The index the next entry would have.
    fn next_index(&self) -> Index {
        self.wal
            .next_index()
            .unwrap_or(self.snapshot.index + 1)
            .max(self.snapshot.index + 1)
    }

    fn usable(&self) -> Result<(), StorageError> {
        match &self.failed {
            Some(why) => Err(StorageError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Remembers a failed write: what reached the disk is unknown from here on.
    fn note(&mut self, result: Result<(), StorageError>) -> Result<(), StorageError> {
        if let Err(e) = &result {
            let retryable = matches!(e, StorageError::Contract(_) | StorageError::NoSpace { .. });
            if !retryable {
                tracing::error!(dir = %self.dir.display(), error = %e, "storage write failed");
                self.failed = Some(e.to_string());
            }
        }
        result
    }
}

/// Creates `dir` (and missing ancestors) if absent; when `sync_dirs`, syncs the parent of
/// each directory it created so the new entries survive a crash.
fn create_dir_durably(dir: &Path, sync_dirs: bool) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.is_dir())
        .collect();
    fs::create_dir_all(dir).map_err(atomic::io_err(dir, "create directory"))?;
    if sync_dirs {
        for created in missing.iter().rev() {
            if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
                atomic::sync_dir(parent)?;
            }
        }
    }
    Ok(())
}
