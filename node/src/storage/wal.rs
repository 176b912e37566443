//! The segmented write-ahead log of entries.
//!
//! Segments are files `wal/<index of their first entry, 20 digits>.log`, each a sequence of
//! group commits. A group commit (the records of one write and one fdatasync) is a
//! [`BATCH_MARK`] (`[0u32]["raftbtch"]`) followed by its records `[len u32 LE][crc32c u32 LE
//! of the payload][payload: postcard Entry]` (a record never has length 0, so a mark is
//! never mistaken for one). Indexes run contiguously through a segment and on into the
//! next; only the last segment (the tail) is written to. The log is physical: it may still
//! hold entries a snapshot covers (in a segment that also holds later ones); the caller
//! decides which entries count.
//!
//! The tail is preallocated: it is extended (sparsely, with `set_len`) to `segment_bytes`
//! when created, so an append writes inside the file and its fdatasync need not commit a
//! new file size (about half the latency on ext4). When syncing, the space just after the
//! last record is also written with zeros, [`ZERO_AHEAD`] bytes at a time, so that an
//! append does not allocate blocks either: an fdatasync that must also commit a block
//! allocation writes the inode too (ext4 measured here: a 2 KiB append's fdatasync 0.20 ms
//! into a hole, 0.11 ms over written zeros; writing 1 MiB of zeros and syncing, 1.5 ms once
//! per MiB). Zeros after the last record of the tail, written or not, are therefore
//! normal: a record never has length 0. A segment is cut back to its last
//! record before the next one is started, so only the tail has unused space.
//!
//! Durability rules, each chosen so that a crash at any point leaves a log that recovery
//! accepts, or a state the caller's recovery rules resolve:
//! - append: one write of all new records and one fdatasync of the tail; rolling to a new
//!   segment first cuts and syncs the old one, and the new file's directory entry is synced
//!   before the append returns;
//! - truncating a suffix: later segments are deleted newest first and the directory synced,
//!   then the segment holding the cut is truncated at the record boundary and synced;
//! - dropping segments a snapshot covers: oldest first (a crash leaves a contiguous suffix);
//! - clearing: newest first (a crash leaves a contiguous prefix);
//! - a full disk (ENOSPC while writing a group commit or its zeros, or creating a segment):
//!   the bytes of the group commit that did reach the file are overwritten with zeros
//!   (written blocks need no new space) and the tail's end stays where it was, so the next
//!   group commit is written at the same place and no record of the failed one can follow
//!   a later, shorter one (its fdatasync makes the zeros durable too); a segment just
//!   created is removed if it cannot be preallocated. The error is
//!   [`StorageError::NoSpace`] and the log stays usable. A crash before the next group
//!   commit may leave some of the failed one's bytes: it is then the last group commit,
//!   never acknowledged, which recovery treats as any torn tail.
//!
//! The catalogue's storage bugs ([`Syncs`]) leave some of these syncs out: `skip-fsync` never
//! syncs a segment (appends, seals, truncations), `periodic-fsync` leaves appends unsynced
//! until [`Wal::sync`] (seals and truncations are still synced at once), `skip-dir-fsync`
//! never syncs the directory.
//!
//! Recovery ([`Wal::open`]) accepts damage only in the last group commit of the last
//! segment: a power cut may leave the pages of that one write in any order (a bad record
//! followed by valid ones of the same batch), but it was never acknowledged, since its
//! fdatasync had not returned. Damage is in the last group commit when no batch mark follows
//! it: the next batch is written only once the previous one's fdatasync returned. The log is
//! truncated at the first bad record (the valid records before it are a prefix of that
//! batch) with a warning. Every other damage — damage followed by a later batch, damage in a
//! segment that is not the last, a record with a matching checksum that does not decode —
//! is [`StorageError::Corrupt`] naming the file and byte offset.

use super::atomic::{io_err, space_err, sync_dir};
use super::{LogSync, StorageError, Syncs};
use model::core::{Entry, Index, Term};
use model::kv::Command;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bytes in front of each record's payload: length and checksum.
pub(super) const HEADER: usize = 8;

/// Begins each group commit: a zero length (no record has one), then 8 bytes of magic, so
/// that damaged bytes do not pass for a mark by chance.
pub(super) const BATCH_MARK: [u8; 12] = *b"\0\0\0\0raftbtch";

/// Zeros written ahead of the tail's last record at a time (see the module doc).
const ZERO_AHEAD: u64 = 1 << 20;

/// What those writes copy from: a static (untouched zero pages) rather than a fresh
/// allocation, which cost a page-clearing fault on every use.
static ZEROS: [u8; ZERO_AHEAD as usize] = [0; ZERO_AHEAD as usize];

/// One segment file, as the log knows it.
#[derive(Debug)]
struct Segment {
    /// Index of its first entry (its name), also when it is still empty.
    first: Index,
    path: PathBuf,
    /// Byte offset of each record: entry `first + i` starts at `offsets[i]`.
    offsets: Vec<u64>,
    /// Term of each entry, for the snapshot rules of the caller.
    terms: Vec<Term>,
    /// End of the last record (the file may be longer: preallocated zeros).
    bytes: u64,
    /// End of the zeros written after the last record (blocks allocated up to here).
    zeroed: u64,
}

impl Segment {
    /// The index the next entry appended here would have.
    fn next(&self) -> Index {
        self.first + self.offsets.len() as Index
    }

    fn last(&self) -> Option<Index> {
        (!self.offsets.is_empty()).then(|| self.next() - 1)
    }
}

/// The write-ahead log of one data directory.
#[derive(Debug)]
pub(crate) struct Wal {
    dir: PathBuf,
    syncs: Syncs,
    segment_bytes: u64,
    /// `periodic-fsync`: when the oldest append the tail holds unsynced was written.
    unsynced_since: Option<Instant>,
    /// Sorted by first index, contiguous; the last one is the tail.
    segments: Vec<Segment>,
    /// Open handle of the tail segment.
    tail: Option<File>,
    /// Reused encoding buffer.
    scratch: Vec<u8>,
}

/// Extends `file` with zeros (sparsely) to `len` bytes if it is shorter; appends then write
/// inside the file.
fn preallocate(file: &File, path: &Path, len: u64) -> Result<(), StorageError> {
    let current = file.metadata().map_err(io_err(path, "stat"))?.len();
    if current < len {
        file.set_len(len).map_err(io_err(path, "preallocate"))?;
    }
    Ok(())
}

/// Writes `bytes` at `at`; on failure, how many of them reached the file, and why.
fn write_counted(file: &File, bytes: &[u8], at: u64) -> Result<(), (u64, std::io::Error)> {
    let mut done = 0;
    while done < bytes.len() {
        match file.write_at(&bytes[done..], at + done as u64) {
            Ok(0) => return Err((done as u64, std::io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done as u64, e)),
        }
    }
    Ok(())
}

/// Overwrites with zeros the `len` bytes at `at` a failed group commit wrote (blocks just
/// written: no new space needed). Failing that, the log is not what it seems: an I/O error.
fn undo_write(file: &File, path: &Path, at: u64, len: u64) -> Result<(), StorageError> {
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZERO_AHEAD);
        file.write_all_at(&ZEROS[..n as usize], at + done)
            .map_err(io_err(path, "undo a failed write in"))?;
        done += n;
    }
    Ok(())
}

/// The file name of the segment whose first entry is `first`.
pub(crate) fn segment_name(first: Index) -> String {
    format!("{first:020}.log")
}

pub(super) fn parse_segment_name(name: &str) -> Option<Index> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What one position of a segment holds.
pub(super) enum Record {
    Entry {
        entry: Entry<Command>,
        end: usize,
    },
    /// A record whose checksum matches but whose payload is not an entry.
    Undecodable(String),
    /// Not a complete record with a matching checksum (torn or damaged).
    Bad(String),
}

pub(super) fn decode_record(bytes: &[u8], at: usize) -> Record {
    let rest = &bytes[at..];
    if rest.len() < HEADER {
        return Record::Bad(format!(
            "incomplete record header ({} of {HEADER} bytes)",
            rest.len()
        ));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 {
        return Record::Bad("zero-length record".into());
    }
    if rest.len() - HEADER < len {
        return Record::Bad(format!(
            "record of {len} bytes is cut short ({} bytes left in the file)",
            rest.len() - HEADER
        ));
    }
    let payload = &rest[HEADER..HEADER + len];
    let actual = crc32c::crc32c(payload);
    if actual != crc {
        return Record::Bad(format!(
            "checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"
        ));
    }
    match postcard::take_from_bytes::<Entry<Command>>(payload) {
        Ok((entry, [])) => Record::Entry {
            entry,
            end: at + HEADER + len,
        },
        Ok((_, extra)) => Record::Undecodable(format!(
            "{} stray bytes after the entry in the record",
            extra.len()
        )),
        Err(e) => Record::Undecodable(format!(
            "checksum matches but the entry is undecodable: {e}"
        )),
    }
}

/// Whether a batch mark starts at `at`.
pub(super) fn is_batch_mark(bytes: &[u8], at: usize) -> bool {
    bytes[at..].starts_with(&BATCH_MARK)
}

/// Where the first batch mark in `bytes[from..]` starts: evidence that damage before it is
/// not in the last group commit, whose fdatasync never returned.
fn batch_mark_after(bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(BATCH_MARK.len())
        .position(|w| w == BATCH_MARK)
        .map(|p| from + p)
}

/// A segment's contents as read back.
#[derive(Debug)]
struct Scanned {
    entries: Vec<Entry<Command>>,
    offsets: Vec<u64>,
    /// Where valid records end; unused space or a torn tail starts here.
    valid: u64,
    /// Why the bytes after `valid` were refused (a torn tail), if they are not just zeros.
    torn: Option<String>,
}

/// Reads the records of a segment whose first entry is `first`. Damage is a torn tail only
/// in the last segment and only if no batch mark follows it (it is in the last batch).
fn scan(path: &Path, bytes: &[u8], first: Index, is_last: bool) -> Result<Scanned, StorageError> {
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut scanned = Scanned {
        entries: Vec::new(),
        offsets: Vec::new(),
        valid: 0,
        torn: None,
    };
    let mut at = 0;
    while at < bytes.len() {
        if is_batch_mark(bytes, at) {
            at += BATCH_MARK.len();
            continue;
        }
        match decode_record(bytes, at) {
            Record::Entry { entry, end } => {
                let expected = first + scanned.entries.len() as Index;
                if entry.index != expected {
                    return Err(corrupt(
                        at,
                        format!(
                            "record holds index {} where index {expected} belongs",
                            entry.index
                        ),
                    ));
                }
                scanned.offsets.push(at as u64);
                scanned.entries.push(entry);
                at = end;
            }
            Record::Undecodable(reason) => return Err(corrupt(at, reason)),
            Record::Bad(reason) => {
                if is_last && bytes[at..].iter().all(|&b| b == 0) {
                    // Preallocated space after the last record.
                    break;
                }
                if !is_last {
                    return Err(corrupt(
                        at,
                        format!("{reason} (in a segment that is not the last)"),
                    ));
                }
                if let Some(next) = batch_mark_after(bytes, at + 1) {
                    return Err(corrupt(
                        at,
                        format!(
                            "{reason}, yet a later group commit begins at byte offset {next} \
                             (the damaged one had been synced)"
                        ),
                    ));
                }
                scanned.torn = Some(reason);
                break;
            }
        }
    }
    scanned.valid = at as u64;
    Ok(scanned)
}

impl Wal {
    /// Opens the log in `dir` (which must exist) and reads every entry it holds, in order.
    /// A torn tail is truncated (with a warning); any other damage is an error.
    pub(crate) fn open(
        dir: &Path,
        syncs: Syncs,
        segment_bytes: u64,
    ) -> Result<(Wal, Vec<Entry<Command>>), StorageError> {
        let mut found = Vec::new();
        for item in fs::read_dir(dir).map_err(io_err(dir, "list"))? {
            let item = item.map_err(io_err(dir, "list"))?;
            let name = item.file_name();
            match name.to_str().and_then(parse_segment_name) {
                Some(first) => found.push((first, item.path())),
                None => tracing::warn!(
                    file = %item.path().display(),
                    "ignoring a file that is not a log segment"
                ),
            }
        }
        found.sort();
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            syncs,
            unsynced_since: None,
            segment_bytes,
            segments: Vec::new(),
            tail: None,
            scratch: Vec::new(),
        };
        let mut entries = Vec::new();
        let count = found.len();
        let mut tail_len = 0;
        for (n, (first, path)) in found.into_iter().enumerate() {
            if let Some(prev) = wal.segments.last() {
                if prev.offsets.is_empty() {
                    return Err(StorageError::Corrupt {
                        file: prev.path.clone(),
                        offset: 0,
                        reason: "empty segment before the last one".into(),
                    });
                }
                if first != prev.next() {
                    return Err(StorageError::Corrupt {
                        file: path,
                        offset: 0,
                        reason: format!(
                            "segment starts at index {first} but the one before it ends at index {}",
                            prev.next() - 1
                        ),
                    });
                }
            }
            let bytes = fs::read(&path).map_err(io_err(&path, "read"))?;
            let scanned = scan(&path, &bytes, first, n + 1 == count)?;
            if let Some(reason) = &scanned.torn {
                tracing::warn!(
                    file = %path.display(),
                    offset = scanned.valid,
                    dropped_bytes = bytes.len() as u64 - scanned.valid,
                    "torn record at the tail of the log ({reason}): truncating {} at byte offset {}",
                    path.display(),
                    scanned.valid
                );
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path, "open"))?;
                file.set_len(scanned.valid)
                    .map_err(io_err(&path, "truncate torn tail of"))?;
                if syncs.log != LogSync::Never {
                    file.sync_all().map_err(io_err(&path, "fsync"))?;
                }
                tail_len = scanned.valid;
            } else {
                tail_len = bytes.len() as u64;
            }
            wal.segments.push(Segment {
                first,
                path,
                terms: scanned.entries.iter().map(|e| e.term).collect(),
                offsets: scanned.offsets,
                bytes: scanned.valid,
                zeroed: scanned.valid,
            });
            entries.extend(scanned.entries);
        }
        wal.open_tail()?;
        if let (Some(seg), Some(file)) = (wal.segments.last(), wal.tail.as_ref()) {
            if tail_len < wal.segment_bytes {
                preallocate(file, &seg.path, wal.segment_bytes)?;
            }
        }
        Ok((wal, entries))
    }

    fn open_tail(&mut self) -> Result<(), StorageError> {
        self.tail = match self.segments.last() {
            Some(seg) => Some(
                OpenOptions::new()
                    .write(true)
                    .open(&seg.path)
                    .map_err(io_err(&seg.path, "open"))?,
            ),
            None => None,
        };
        Ok(())
    }

    /// Index of the first entry held (or of the empty tail segment's first slot).
    pub(crate) fn first_index(&self) -> Option<Index> {
        self.segments.first().map(|s| s.first)
    }

    /// The index the next appended entry must have; `None` if there are no segments.
    pub(crate) fn next_index(&self) -> Option<Index> {
        self.segments.last().map(Segment::next)
    }

    /// The first segment's file (for error messages).
    pub(crate) fn first_path(&self) -> Option<&Path> {
        self.segments.first().map(|s| s.path.as_path())
    }

    /// The term of the entry at `index`, if the log holds it.
    pub(crate) fn term_at(&self, index: Index) -> Option<Term> {
        let seg = self.segment_of(index)?;
        seg.terms.get((index - seg.first) as usize).copied()
    }

    fn segment_of(&self, index: Index) -> Option<&Segment> {
        let pos = self.segments.partition_point(|s| s.first <= index);
        self.segments[..pos].last()
    }

    /// Bytes on disk and number of segments.
    pub(crate) fn size(&self) -> (u64, usize) {
        (
            self.segments.iter().map(|s| s.bytes).sum(),
            self.segments.len(),
        )
    }

    /// Appends contiguous `entries`, which must start at [`next_index`](Self::next_index)
    /// (anywhere if the log has no segments). Durable on return when syncing.
    pub(crate) fn append(&mut self, entries: &[Entry<Command>]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if let Some(next) = self.next_index() {
            if first.index != next {
                return Err(StorageError::Contract(format!(
                    "log append at index {} but the log continues at {next}",
                    first.index
                )));
            }
        }
        let mut dir_changed = false;
        if self.segments.is_empty() {
            self.create_segment(first.index)?;
            dir_changed = true;
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.extend_from_slice(&BATCH_MARK);
        let mut offsets = Vec::with_capacity(entries.len());
        let mut terms = Vec::with_capacity(entries.len());
        let result = (|| {
            for entry in entries {
                let start = buf.len();
                buf.extend_from_slice(&[0; HEADER]);
                buf = postcard::to_extend(entry, std::mem::take(&mut buf))
                    .map_err(|e| StorageError::Encode(e.to_string()))?;
                let len = buf.len() - start - HEADER;
                let len32 = u32::try_from(len).map_err(|_| {
                    StorageError::Encode(format!("entry {} is {len} bytes, too large", entry.index))
                })?;
                let crc = crc32c::crc32c(&buf[start + HEADER..]);
                buf[start..start + 4].copy_from_slice(&len32.to_le_bytes());
                buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
                let tail_bytes = self.segments.last().map_or(0, |s| s.bytes);
                let tail_has_records = self.segments.last().is_some_and(|s| !s.offsets.is_empty());
                if (tail_has_records || !offsets.is_empty())
                    && tail_bytes + buf.len() as u64 > self.segment_bytes
                {
                    // Roll: what came before goes to the current tail, this record starts a
                    // new segment, in a group commit of its own.
                    self.write_tail(&buf[..start], &mut offsets, &mut terms)?;
                    buf.splice(..start, BATCH_MARK);
                    self.seal_tail()?;
                    self.create_segment(entry.index)?;
                    dir_changed = true;
                }
                let tail_bytes = self.segments.last().map_or(0, |s| s.bytes);
                offsets.push(tail_bytes + (buf.len() - HEADER - len) as u64);
                terms.push(entry.term);
            }
            self.write_tail(&buf, &mut offsets, &mut terms)?;
            if dir_changed && self.syncs.dirs {
                sync_dir(&self.dir)?;
            }
            Ok(())
        })();
        self.scratch = buf;
        result
    }

    /// Writes `bytes` (a batch mark and whole records whose offsets and terms are given) at
    /// the end of the tail segment and syncs it: one group commit. Nothing without records.
    fn write_tail(
        &mut self,
        bytes: &[u8],
        offsets: &mut Vec<u64>,
        terms: &mut Vec<Term>,
    ) -> Result<(), StorageError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let (Some(seg), Some(file)) = (self.segments.last_mut(), self.tail.as_ref()) else {
            return Err(StorageError::Contract("no tail segment to write to".into()));
        };
        if let Err((written, e)) = write_counted(file, bytes, seg.bytes) {
            undo_write(file, &seg.path, seg.bytes, written)?;
            return Err(space_err(&seg.path, "write")(e));
        }
        if self.syncs.log != LogSync::Never {
            let end = seg.bytes + bytes.len() as u64;
            if end > seg.zeroed {
                // Synced with this append: the next ones write over allocated blocks.
                let to = (end + ZERO_AHEAD).min(self.segment_bytes).max(end);
                if let Err((_, e)) = write_counted(file, &ZEROS[..(to - end) as usize], end) {
                    undo_write(file, &seg.path, seg.bytes, bytes.len() as u64)?;
                    return Err(space_err(&seg.path, "write zeros to")(e));
                }
                seg.zeroed = to;
            }
        }
        match self.syncs.log {
            LogSync::EveryWrite => file.sync_data().map_err(io_err(&seg.path, "fsync"))?,
            LogSync::Periodic => {
                self.unsynced_since.get_or_insert_with(Instant::now);
            }
            LogSync::Never => {}
        }
        seg.bytes += bytes.len() as u64;
        seg.offsets.append(offsets);
        seg.terms.append(terms);
        Ok(())
    }

    /// Cuts the tail's preallocated space off (only the tail may have any) and syncs it
    /// (also under `periodic-fsync`: a sealed segment is never synced again).
    fn seal_tail(&mut self) -> Result<(), StorageError> {
        let (Some(seg), Some(file)) = (self.segments.last(), self.tail.as_ref()) else {
            return Ok(());
        };
        file.set_len(seg.bytes)
            .map_err(io_err(&seg.path, "truncate"))?;
        if self.syncs.log != LogSync::Never {
            file.sync_all().map_err(io_err(&seg.path, "fsync"))?;
            self.unsynced_since = None;
        }
        Ok(())
    }

    /// `periodic-fsync`: when the oldest append not yet synced was written (`None`: all
    /// synced, or never synced at all).
    pub(crate) fn unsynced_since(&self) -> Option<Instant> {
        self.unsynced_since
    }

    /// `periodic-fsync`: fdatasyncs the tail, making every append so far durable.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        if self.unsynced_since.take().is_none() {
            return Ok(());
        }
        if let (Some(seg), Some(file)) = (self.segments.last(), self.tail.as_ref()) {
            file.sync_data().map_err(io_err(&seg.path, "fsync"))?;
        }
        Ok(())
    }

    /// Starts a new, empty, preallocated tail segment at `first` (the old tail must be
    /// sealed). The caller syncs the directory before reporting durability.
    fn create_segment(&mut self, first: Index) -> Result<(), StorageError> {
        let path = self.dir.join(segment_name(first));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(space_err(&path, "create segment"))?;
        if let Err(e) = file.set_len(self.segment_bytes) {
            drop(file);
            fs::remove_file(&path).map_err(io_err(&path, "remove unallocated segment"))?;
            return Err(space_err(&path, "preallocate")(e));
        }
        self.segments.push(Segment {
            first,
            path,
            offsets: Vec::new(),
            terms: Vec::new(),
            bytes: 0,
            zeroed: 0,
        });
        self.tail = Some(file);
        Ok(())
    }

    /// Removes every entry at or after `index`, durably.
    pub(crate) fn truncate_from(&mut self, index: Index) -> Result<(), StorageError> {
        if self.next_index().is_none_or(|next| index >= next) {
            return Ok(());
        }
        let keep = self.segments.partition_point(|s| s.first <= index);
        if keep == 0 {
            return self.clear();
        }
        if keep < self.segments.len() {
            self.tail = None;
            while self.segments.len() > keep {
                if let Some(seg) = self.segments.pop() {
                    fs::remove_file(&seg.path).map_err(io_err(&seg.path, "remove segment"))?;
                }
            }
            // (The appends left unsynced were in the removed tail; the new tail is sealed.)
            self.unsynced_since = None;
            if self.syncs.dirs {
                sync_dir(&self.dir)?;
            }
            self.open_tail()?;
        }
        let (Some(seg), Some(file)) = (self.segments.last_mut(), self.tail.as_ref()) else {
            return Ok(());
        };
        let keep_entries = (index - seg.first) as usize;
        if keep_entries < seg.offsets.len() {
            let cut = seg.offsets[keep_entries];
            file.set_len(cut).map_err(io_err(&seg.path, "truncate"))?;
            preallocate(file, &seg.path, self.segment_bytes)?;
            if self.syncs.log != LogSync::Never {
                // (`periodic-fsync` too: a truncation is synced at once, and with it every
                // append before it.)
                file.sync_all().map_err(io_err(&seg.path, "fsync"))?;
                self.unsynced_since = None;
            }
            seg.offsets.truncate(keep_entries);
            seg.terms.truncate(keep_entries);
            seg.bytes = cut;
            seg.zeroed = cut;
        }
        Ok(())
    }

    /// Deletes the segments whose entries are all at or before `index` (a snapshot covers
    /// them), oldest first, durably.
    pub(crate) fn drop_through(&mut self, index: Index) -> Result<(), StorageError> {
        let covered = self
            .segments
            .iter()
            .take_while(|s| s.last().is_some_and(|last| last <= index))
            .count();
        if covered == 0 {
            return Ok(());
        }
        if covered == self.segments.len() {
            self.tail = None;
            self.unsynced_since = None;
        }
        for seg in self.segments.drain(..covered) {
            fs::remove_file(&seg.path).map_err(io_err(&seg.path, "remove segment"))?;
        }
        if self.syncs.dirs {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Deletes every segment, newest first, durably.
    pub(crate) fn clear(&mut self) -> Result<(), StorageError> {
        if self.segments.is_empty() {
            return Ok(());
        }
        self.tail = None;
        self.unsynced_since = None;
        while let Some(seg) = self.segments.pop() {
            fs::remove_file(&seg.path).map_err(io_err(&seg.path, "remove segment"))?;
        }
        if self.syncs.dirs {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::core::EntryKind;

    fn entry(index: Index) -> Entry<Command> {
        Entry {
            term: 1,
            index,
            kind: EntryKind::Noop,
        }
    }

    fn record(e: &Entry<Command>) -> Vec<u8> {
        let payload = postcard::to_allocvec(e).unwrap();
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_name(42), "00000000000000000042.log");
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.log"), None);
        assert_eq!(parse_segment_name("00000000000000000042.log.tmp"), None);
    }

    #[test]
    fn torn_tail_only_in_the_last_segment() {
        let mut bytes = record(&entry(5));
        bytes.extend(record(&entry(6)));
        let whole = bytes.len();
        bytes.truncate(whole - 3);
        let path = Path::new("seg");
        let s = scan(path, &bytes, 5, true).unwrap();
        assert_eq!(s.entries, vec![entry(5)]);
        assert!(s.torn.is_some());
        assert_eq!(s.valid, record(&entry(5)).len() as u64);
        let err = scan(path, &bytes, 5, false).unwrap_err().to_string();
        assert!(err.contains("not the last"), "{err}");
    }

    #[test]
    fn zeros_after_the_tail_are_unused_space_and_wrong_index_is_corrupt() {
        let mut bytes = record(&entry(5));
        bytes.extend([0u8; 100]);
        let s = scan(Path::new("seg"), &bytes, 5, true).unwrap();
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.valid, record(&entry(5)).len() as u64);
        assert!(s.torn.is_none());
        // Not in a segment that is not the last.
        assert!(scan(Path::new("seg"), &bytes, 5, false).is_err());
        // Garbage then zeros: torn.
        let at = record(&entry(5)).len();
        bytes[at + 2] = 9;
        assert!(scan(Path::new("seg"), &bytes, 5, true)
            .unwrap()
            .torn
            .is_some());
        let bytes = record(&entry(9));
        assert!(scan(Path::new("seg"), &bytes, 5, true).is_err());
    }

    #[test]
    fn a_synced_append_writes_zeros_ahead_which_recovery_reads_as_unused_space() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("raftlab-wal-zeros-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let segment_bytes = 4 * ZERO_AHEAD;
        let (mut wal, _) = Wal::open(&dir, Syncs::ALL, segment_bytes).unwrap();
        wal.append(&[entry(1)]).unwrap();
        let path = dir.join(segment_name(1));
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(
            meta.len(),
            segment_bytes,
            "still preallocated to the segment size"
        );
        // Blocks allocated for the record and the zeros after it (512-byte units), not for
        // the rest of the segment.
        let allocated = meta.blocks() * 512;
        assert!(
            allocated >= ZERO_AHEAD && allocated < segment_bytes,
            "{allocated} bytes allocated"
        );
        wal.append(&[entry(2), entry(3)]).unwrap();
        drop(wal);
        let (wal, entries) = Wal::open(&dir, Syncs::ALL, segment_bytes).unwrap();
        assert_eq!(entries, vec![entry(1), entry(2), entry(3)]);
        assert_eq!(wal.next_index(), Some(4));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A fresh temporary directory for one test.
    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("raftlab-wal-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A log in a fresh directory holding two group commits, entry 1 then entries 2..=4;
    /// returns it and where entry 2 (the second group commit's first record) starts.
    fn two_group_commits(label: &str) -> (PathBuf, Wal, u64) {
        let dir = temp_dir(label);
        let (mut wal, _) = Wal::open(&dir, Syncs::ALL, 1 << 20).unwrap();
        wal.append(&[entry(1)]).unwrap();
        wal.append(&[entry(2), entry(3), entry(4)]).unwrap();
        let start = wal.segments[0].offsets[1];
        (dir, wal, start)
    }

    #[test]
    fn a_group_commit_torn_in_any_page_order_is_dropped_as_a_torn_tail() {
        // The last group commit's first record never reached the disk, its later ones did.
        let (dir, wal, start) = two_group_commits("torn-batch");
        let second = wal.segments[0].offsets[2];
        drop(wal);
        let path = dir.join(segment_name(1));
        let mut bytes = fs::read(&path).unwrap();
        bytes[start as usize..second as usize].fill(0);
        fs::write(&path, &bytes).unwrap();
        let (wal, entries) = Wal::open(&dir, Syncs::ALL, 1 << 20).unwrap();
        assert_eq!(entries, vec![entry(1)]);
        assert_eq!(wal.next_index(), Some(2));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_in_a_group_commit_followed_by_a_later_one_is_corruption() {
        let (dir, mut wal, start) = two_group_commits("mid-batch");
        wal.append(&[entry(5)]).unwrap();
        drop(wal);
        let path = dir.join(segment_name(1));
        let mut bytes = fs::read(&path).unwrap();
        bytes[start as usize + HEADER + 1] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        match Wal::open(&dir, Syncs::ALL, 1 << 20).unwrap_err() {
            StorageError::Corrupt { file, offset, .. } => {
                assert_eq!((file, offset), (path, start));
            }
            other => panic!("unexpected {other}"),
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
