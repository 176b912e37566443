//! Durable storage: round trips, segment rolling and trimming, torn tails, corruption,
//! real SIGKILL crashes, and a property test against the simulator's in-memory model of the
//! persistence contract (`model::sim::storage::Storage`).
//!
//! The crash test re-executes this test binary as its child (`crash_child`, selected by an
//! environment variable; a no-op otherwise), synchronises only on the child's `acked N`
//! lines, and SIGKILLs it after a seeded number of acknowledgements.

use model::core::{
    Entry, EntryKind, HardState, Index, Membership, Restored, Snapshot, SnapshotMeta, Term,
};
use model::kv::{Command, Operation, Value};
use model::replica::Persist;
use model::sim::rng::Rng;
use model::sim::storage::Storage as Model;
use node::storage::{Storage, StorageError, StorageOptions, SyncBugs};
use proptest::prelude::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

// ----- helpers -------------------------------------------------------------------------

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "raftlab-storage-{}-{label}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn opts(segment_bytes: u64) -> StorageOptions {
    StorageOptions {
        fsync: true,
        segment_bytes,
        bugs: SyncBugs::default(),
    }
}

/// An entry whose payload names its index and term (and has some length to it).
fn entry(index: Index, term: Term) -> Entry<Command> {
    Entry {
        term,
        index,
        kind: EntryKind::Command(Command {
            client: 7,
            seq: index,
            op: Operation::Write {
                key: format!("key-{}", index % 13),
                value: Value::Str(format!(
                    "value-{index}-{term}-{}",
                    "x".repeat((index % 17) as usize)
                )),
            },
            time_ms: index,
        }),
    }
}

fn entries(range: std::ops::RangeInclusive<Index>, term: Term) -> Vec<Entry<Command>> {
    range.map(|i| entry(i, term)).collect()
}

fn snapshot(index: Index, term: Term, data: &[u8]) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            membership: Membership::of_voters([1, 2, 3]),
        },
        data: Arc::new(data.to_vec()),
    }
}

fn open(dir: &Path, segment_bytes: u64) -> (Storage, Restored<Command>) {
    match Storage::open(dir, opts(segment_bytes)) {
        Ok(pair) => pair,
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

fn reopen(storage: Storage, dir: &Path, segment_bytes: u64) -> (Storage, Restored<Command>) {
    drop(storage);
    open(dir, segment_bytes)
}

fn assert_restored(actual: &Restored<Command>, expected: &Restored<Command>, context: &str) {
    assert_eq!(
        actual.hard_state, expected.hard_state,
        "{context}: hard state"
    );
    assert_eq!(actual.snapshot, expected.snapshot, "{context}: snapshot");
    assert_eq!(actual.entries, expected.entries, "{context}: entries");
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Bytes of the mark that begins each group commit in a segment: a zero length, then a
/// nonzero magic number.
const BATCH_MARK: usize = 12;

/// Start offsets of the records of a segment file (which may end in preallocated zeros),
/// and where the last one ends.
fn record_offsets(bytes: &[u8]) -> (Vec<usize>, usize) {
    let mut offsets = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            if bytes[at..(at + BATCH_MARK).min(bytes.len())]
                .iter()
                .any(|&b| b != 0)
            {
                at += BATCH_MARK;
                continue;
            }
            break;
        }
        offsets.push(at);
        at += 8 + len;
    }
    (offsets, at)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("wal")).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        if item.file_type().unwrap().is_file() {
            std::fs::copy(item.path(), to.join(item.file_name())).unwrap();
        }
    }
    for item in std::fs::read_dir(from.join("wal")).unwrap() {
        let item = item.unwrap();
        std::fs::copy(item.path(), to.join("wal").join(item.file_name())).unwrap();
    }
}

/// The hard state a node writes with its first entries (a log without one is refused).
const FIRST_TERM: HardState = HardState {
    term: 1,
    voted_for: None,
};

/// Persists one Ready's worth in the node's storage and in the simulator's storage model.
fn persist_both(
    storage: &mut Storage,
    model: &mut Model,
    hard_state: Option<HardState>,
    snapshot: Option<&Snapshot>,
    entries: &[Entry<Command>],
) {
    storage.persist(hard_state, snapshot, entries).unwrap();
    model_persist(model, hard_state, snapshot, entries);
}

fn model_persist(
    model: &mut Model,
    hard_state: Option<HardState>,
    snapshot: Option<&Snapshot>,
    entries: &[Entry<Command>],
) {
    model
        .persist(&Persist {
            hard_state,
            snapshot: snapshot.cloned(),
            entries: entries.to_vec(),
            early_messages: Vec::new(),
            messages: Vec::new(),
        })
        .unwrap();
}

// ----- round trips -----------------------------------------------------------------------

#[test]
fn a_new_directory_is_fresh_and_empty() {
    let tmp = TempDir::new("fresh");
    let (storage, restored) = open(tmp.path(), 4096);
    assert!(storage.is_fresh());
    assert_restored(&restored, &Model::new([]).restored(), "new directory");
    assert_eq!(storage.stats().segments, 0);
    assert_eq!(storage.stats().last_index, 0);
    // A bootstrap snapshot at index 0 makes the membership durable.
    let mut storage = storage;
    let boot = snapshot(0, 0, b"");
    storage.save_snapshot(&boot).unwrap();
    let (storage, restored) = reopen(storage, tmp.path(), 4096);
    assert!(!storage.is_fresh());
    assert_eq!(restored.snapshot, boot);
}

#[test]
fn a_directory_of_another_format_is_refused_before_anything_is_read() {
    // A directory this version wrote reopens.
    let tmp = TempDir::new("format");
    let (mut storage, _) = open(tmp.path(), 4096);
    storage.save_snapshot(&snapshot(0, 0, b"")).unwrap();
    let (storage, _) = reopen(storage, tmp.path(), 4096);
    drop(storage);
    // Another version's mark, older or newer: refused, naming both versions.
    let other = tmp.path().join("FORMAT");
    let original = std::fs::read(&other).unwrap();
    for version in [
        node::storage::FORMAT_VERSION - 1,
        node::storage::FORMAT_VERSION + 1,
    ] {
        let mut bytes = original.clone();
        let payload = postcard::to_allocvec(&version).unwrap();
        bytes.truncate(4);
        bytes.extend_from_slice(&payload);
        bytes[..4].copy_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        std::fs::write(&other, &bytes).unwrap();
        match Storage::open(tmp.path(), opts(4096)) {
            Err(StorageError::Format {
                found, expected, ..
            }) => assert_eq!((found, expected), (version, node::storage::FORMAT_VERSION)),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
    // State without a mark predates versioning: refused as format 1.
    std::fs::remove_file(&other).unwrap();
    match Storage::open(tmp.path(), opts(4096)) {
        Err(e @ StorageError::Format { found: 1, .. }) => {
            assert!(e.to_string().contains("format 1"), "{e}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn entries_hard_state_and_snapshots_round_trip() {
    let tmp = TempDir::new("round-trip");
    let (mut storage, _) = open(tmp.path(), 4096);
    let mut model = Model::new([]);
    let hs = HardState {
        term: 3,
        voted_for: Some(2),
    };
    let batch = entries(1..=20, 3);
    persist_both(&mut storage, &mut model, Some(hs), None, &batch);
    let (mut storage, restored) = reopen(storage, tmp.path(), 4096);
    assert_restored(&restored, &model.restored(), "after appends");

    // A compaction snapshot, then more entries and a new vote.
    let snap = snapshot(12, 3, b"state at 12");
    storage.save_snapshot(&snap).unwrap();
    model.compact(&snap);
    let hs = HardState {
        term: 4,
        voted_for: None,
    };
    let batch = entries(21..=25, 4);
    persist_both(&mut storage, &mut model, Some(hs), None, &batch);
    let (storage, restored) = reopen(storage, tmp.path(), 4096);
    assert_restored(&restored, &model.restored(), "after compaction");
    assert_eq!(restored.entries.first().map(|e| e.index), Some(13));
    let stats = storage.stats();
    assert_eq!((stats.snapshot_index, stats.last_index), (12, 25));
}

#[test]
fn overwriting_a_suffix_across_segment_boundaries() {
    let tmp = TempDir::new("overwrite");
    // Small segments: a few records each.
    let (mut storage, _) = open(tmp.path(), 256);
    let mut model = Model::new([]);
    let batch = entries(1..=40, 1);
    persist_both(&mut storage, &mut model, Some(FIRST_TERM), None, &batch);
    let before = segments(tmp.path());
    assert!(
        before.len() >= 5,
        "expected several segments, got {before:?}"
    );
    assert_eq!(storage.stats().segments, before.len());

    // Overwrite from index 9: everything from the segment holding 9 on is rewritten.
    let batch = entries(9..=12, 2);
    persist_both(&mut storage, &mut model, None, None, &batch);
    let after = segments(tmp.path());
    assert!(after.len() < before.len(), "{after:?}");
    assert_eq!(storage.stats().last_index, 12);
    let (mut storage, restored) = reopen(storage, tmp.path(), 256);
    assert_restored(&restored, &model.restored(), "after overwrite");

    // Overwrite exactly at a segment's first index.
    let second_first: Index = after[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let batch = entries(second_first..=second_first + 30, 3);
    persist_both(&mut storage, &mut model, None, None, &batch);
    let (_storage, restored) = reopen(storage, tmp.path(), 256);
    assert_restored(
        &restored,
        &model.restored(),
        "after overwrite at a segment start",
    );
}

#[test]
fn compaction_drops_covered_segments_and_survives_reopen() {
    let tmp = TempDir::new("compact");
    let (mut storage, _) = open(tmp.path(), 256);
    let mut model = Model::new([]);
    let batch = entries(1..=60, 1);
    persist_both(&mut storage, &mut model, Some(FIRST_TERM), None, &batch);
    let before = storage.stats();

    let snap = snapshot(45, 1, b"kv at 45");
    storage.save_snapshot(&snap).unwrap();
    model.compact(&snap);
    let after = storage.stats();
    assert!(after.segments < before.segments);
    assert!(after.log_bytes < before.log_bytes);
    // Every remaining segment holds something after 45; the first starts at or before 46.
    let files = segments(tmp.path());
    assert_eq!(files.len(), after.segments);
    let first: Index = files[0]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(first <= 46, "{files:?}");
    // An older snapshot is ignored.
    storage.save_snapshot(&snapshot(10, 1, b"old")).unwrap();

    let (mut storage, restored) = reopen(storage, tmp.path(), 256);
    assert_restored(&restored, &model.restored(), "after compaction");

    // Compacting everything leaves no segment; appending starts a new one.
    let snap = snapshot(60, 1, b"kv at 60");
    storage.save_snapshot(&snap).unwrap();
    model.compact(&snap);
    assert_eq!(storage.stats().segments, 0);
    let batch = entries(61..=63, 2);
    persist_both(&mut storage, &mut model, None, None, &batch);
    let (_storage, restored) = reopen(storage, tmp.path(), 256);
    assert_restored(&restored, &model.restored(), "after compacting all");
}

#[test]
fn a_received_snapshot_keeps_a_matching_suffix_and_discards_the_rest() {
    let tmp = TempDir::new("install");
    let (mut storage, _) = open(tmp.path(), 512);
    let mut model = Model::new([]);
    let batch = entries(1..=30, 2);
    persist_both(&mut storage, &mut model, Some(FIRST_TERM), None, &batch);

    // Matching (index 10 has term 2): entries 11..=30 are kept.
    let snap = snapshot(10, 2, b"ten");
    persist_both(&mut storage, &mut model, None, Some(&snap), &[]);
    let (mut storage, restored) = reopen(storage, tmp.path(), 512);
    assert_restored(&restored, &model.restored(), "matching snapshot");
    assert_eq!(restored.entries.len(), 20);

    // Not matching (index 20 has term 2, not 5): the whole log goes; entries after it
    // arrive in the same Ready.
    let snap = snapshot(20, 5, b"twenty");
    let hs = HardState {
        term: 5,
        voted_for: None,
    };
    let batch = entries(19..=23, 5);
    persist_both(&mut storage, &mut model, Some(hs), Some(&snap), &batch);
    assert_eq!(storage.stats().last_index, 23);
    let (mut storage, restored) = reopen(storage, tmp.path(), 512);
    assert_restored(&restored, &model.restored(), "non-matching snapshot");
    assert_eq!(restored.entries.first().map(|e| e.index), Some(21));

    // Beyond the end of the log.
    let snap = snapshot(100, 6, b"hundred");
    persist_both(&mut storage, &mut model, None, Some(&snap), &[]);
    let batch = entries(101..=102, 6);
    persist_both(&mut storage, &mut model, None, None, &batch);
    let (_storage, restored) = reopen(storage, tmp.path(), 512);
    assert_restored(&restored, &model.restored(), "snapshot beyond the log");
}

#[test]
fn an_interrupted_snapshot_install_recovers_as_the_contract_says() {
    // The crash hit after the new snapshot file was in place but before the log was
    // trimmed: the stale suffix must not come back.
    let tmp = TempDir::new("interrupted");
    let (mut storage, _) = open(tmp.path(), 256);
    storage
        .persist(Some(FIRST_TERM), None, &entries(1..=30, 1))
        .unwrap();
    drop(storage);
    let snap = snapshot(15, 2, b"from a new leader");
    let payload = postcard::to_allocvec(&snap).unwrap();
    let mut file = crc32c::crc32c(&payload).to_le_bytes().to_vec();
    file.extend_from_slice(&payload);
    std::fs::write(tmp.path().join("snapshot"), &file).unwrap();

    let (mut storage, restored) = open(tmp.path(), 256);
    assert_eq!(restored.snapshot, snap);
    assert!(restored.entries.is_empty(), "{:?}", restored.entries);
    // And the log continues from the snapshot.
    storage.persist(None, None, &entries(16..=17, 2)).unwrap();
    let (_storage, restored) = reopen(storage, tmp.path(), 256);
    assert_eq!(restored.entries, entries(16..=17, 2));
}

#[test]
fn contract_violations_are_refused_without_writing() {
    let tmp = TempDir::new("contract");
    let (mut storage, _) = open(tmp.path(), 4096);
    storage
        .persist(Some(FIRST_TERM), None, &entries(1..=5, 1))
        .unwrap();
    let hole = storage.persist(None, None, &entries(7..=8, 1));
    assert!(matches!(hole, Err(StorageError::Contract(_))), "{hole:?}");
    let mut gappy = entries(6..=7, 1);
    gappy.push(entry(9, 1));
    assert!(matches!(
        storage.persist(None, None, &gappy),
        Err(StorageError::Contract(_))
    ));
    // Still usable, nothing changed.
    storage.persist(None, None, &entries(6..=6, 1)).unwrap();
    let (_storage, restored) = reopen(storage, tmp.path(), 4096);
    assert_eq!(restored.entries, entries(1..=6, 1));
}

#[test]
fn storage_can_move_to_its_own_thread() {
    fn is_send<T: Send>() {}
    is_send::<Storage>();
    is_send::<StorageError>();
}

#[test]
fn a_data_directory_is_opened_by_one_process_at_a_time() {
    let tmp = TempDir::new("lock");
    let (_storage, _) = open(tmp.path(), 4096);
    match Storage::open(tmp.path(), opts(4096)) {
        Err(StorageError::Locked { .. }) => {}
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
}

// ----- torn tails and corruption --------------------------------------------------------

/// A directory with a few segments whose last one holds several records.
fn populated(label: &str) -> (TempDir, Vec<Entry<Command>>) {
    let tmp = TempDir::new(label);
    let (mut storage, _) = open(tmp.path(), 512);
    let all = entries(1..=30, 1);
    storage.persist(Some(FIRST_TERM), None, &[]).unwrap();
    for chunk in all.chunks(4) {
        storage.persist(None, None, chunk).unwrap();
    }
    drop(storage);
    let files = segments(tmp.path());
    assert!(files.len() >= 3, "{files:?}");
    let last = std::fs::read(files.last().unwrap()).unwrap();
    assert!(record_offsets(&last).0.len() >= 3);
    (tmp, all)
}

#[test]
fn a_torn_last_record_is_truncated_at_every_offset() {
    let (template, all) = populated("torn-template");
    let files = segments(template.path());
    let last_name = files.last().unwrap().file_name().unwrap().to_owned();
    let bytes = std::fs::read(files.last().unwrap()).unwrap();
    let (offsets, end) = record_offsets(&bytes);
    let start = *offsets.last().unwrap();
    // Two shapes of a torn write: the file cut short, or (in the preallocated tail) the
    // record's last bytes never written.
    for zeroed in [false, true] {
        for cut in start..end {
            let context = format!("cut at {cut} (record {start}..{end}), zeroed: {zeroed}");
            let tmp = TempDir::new("torn");
            copy_dir(template.path(), tmp.path());
            let segment = tmp.path().join("wal").join(&last_name);
            if zeroed {
                let mut damaged = bytes.clone();
                damaged[cut..end].fill(0);
                std::fs::write(&segment, &damaged).unwrap();
            } else {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&segment)
                    .unwrap()
                    .set_len(cut as u64)
                    .unwrap();
            }
            let (mut storage, restored) = open(tmp.path(), 512);
            assert_eq!(restored.entries, all[..all.len() - 1], "{context}");
            let after = std::fs::read(&segment).unwrap();
            assert_eq!(after[..start], bytes[..start], "{context}");
            assert!(after[start..].iter().all(|&b| b == 0), "{context}");
            // The log goes on where the torn record was.
            storage.persist(None, None, &entries(30..=31, 2)).unwrap();
            let (_storage, restored) = reopen(storage, tmp.path(), 512);
            let mut expected = all[..29].to_vec();
            expected.extend(entries(30..=31, 2));
            assert_eq!(restored.entries, expected, "{context}, then appended");
        }
    }
}

#[test]
fn a_damaged_last_record_followed_by_garbage_is_treated_as_torn() {
    let (tmp, all) = populated("torn-flip");
    let last = segments(tmp.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let (offsets, end) = record_offsets(&bytes);
    let start = *offsets.last().unwrap();
    bytes[start + (end - start) / 2] ^= 0xFF;
    bytes[end + 5] = 0x55;
    bytes.extend([0u8; 300]);
    std::fs::write(&last, &bytes).unwrap();
    // The truncation is logged as a warning naming the file and offset.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let (_storage, restored) =
        tracing::subscriber::with_default(subscriber, || open(tmp.path(), 512));
    assert_eq!(restored.entries, all[..all.len() - 1]);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains(&last.display().to_string()), "{log}");
    assert!(log.contains(&format!("byte offset {start}")), "{log}");
}

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn expect_corrupt(dir: &Path, file: &Path, offset: usize) {
    match Storage::open(dir, opts(512)) {
        Err(e @ StorageError::Corrupt { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains(&file.display().to_string()),
                "message does not name {}: {message}",
                file.display()
            );
            assert!(
                message.contains(&format!("byte offset {offset}")),
                "message does not name offset {offset}: {message}"
            );
        }
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(_) => panic!("opened a corrupt data directory"),
    }
}

#[test]
fn a_flipped_byte_in_the_middle_of_the_last_segment_refuses_to_start() {
    let (tmp, _) = populated("flip-tail-segment");
    let last = segments(tmp.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let (offsets, _) = record_offsets(&bytes);
    // The segment holds at least three records and the last group commit two (entries 29
    // and 30): the first record is in an earlier group commit, synced before the last began.
    let victim = offsets[0];
    bytes[victim + 12] ^= 0x01;
    std::fs::write(&last, &bytes).unwrap();
    expect_corrupt(tmp.path(), &last, victim);
}

#[test]
fn a_flipped_byte_in_an_earlier_segment_refuses_to_start() {
    let (tmp, _) = populated("flip-early-segment");
    let first = segments(tmp.path()).remove(0);
    let bytes = std::fs::read(&first).unwrap();
    let (offsets, end) = record_offsets(&bytes);
    assert_eq!(
        end,
        bytes.len(),
        "a segment before the last has no unused space"
    );
    // Even the last record of a segment that is not the last is not a torn tail.
    for victim in [offsets[1], *offsets.last().unwrap()] {
        let mut damaged = bytes.clone();
        damaged[victim + 9] ^= 0x80;
        std::fs::write(&first, &damaged).unwrap();
        expect_corrupt(tmp.path(), &first, victim);
    }
    // A cut-short earlier segment too, and one with zeros after its last record.
    let mut short = bytes.clone();
    short.truncate(bytes.len() - 3);
    std::fs::write(&first, &short).unwrap();
    expect_corrupt(tmp.path(), &first, *offsets.last().unwrap());
    let mut padded = bytes.clone();
    padded.extend([0u8; 64]);
    std::fs::write(&first, &padded).unwrap();
    expect_corrupt(tmp.path(), &first, bytes.len());
}

#[test]
fn a_missing_segment_refuses_to_start() {
    let (tmp, _) = populated("gap");
    let files = segments(tmp.path());
    std::fs::remove_file(&files[1]).unwrap();
    expect_corrupt(tmp.path(), &files[2], 0);
}

#[test]
fn damaged_hard_state_or_snapshot_refuses_to_start() {
    for name in ["hardstate", "snapshot"] {
        let tmp = TempDir::new("damaged-file");
        let (mut storage, _) = open(tmp.path(), 512);
        storage
            .persist(
                Some(HardState {
                    term: 9,
                    voted_for: Some(1),
                }),
                None,
                &entries(1..=10, 9),
            )
            .unwrap();
        storage.save_snapshot(&snapshot(5, 9, b"five")).unwrap();
        drop(storage);
        let path = tmp.path().join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 1;
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        expect_corrupt(tmp.path(), &path, 0);
    }
}

// ----- crash test: a child process SIGKILLed while writing -----------------------------

const CHILD_DIR: &str = "RAFTLAB_STORAGE_CRASH_DIR";
const CHILD_SEED: &str = "RAFTLAB_STORAGE_CRASH_SEED";
const CRASH_SEGMENT_BYTES: u64 = 1024;

/// One step of the crash workload.
#[derive(Clone, Debug)]
enum Step {
    /// A Ready's durable part.
    Persist {
        hard_state: Option<HardState>,
        snapshot: Option<Snapshot>,
        entries: Vec<Entry<Command>>,
    },
    /// A compaction snapshot.
    Compact(Snapshot),
}

/// A seeded stream of steps and the model state they lead to; the child and the parent
/// generate the same stream.
struct Workload {
    rng: Rng,
    model: Model,
    term: Term,
}

impl Workload {
    fn new(seed: u64) -> Self {
        Workload {
            rng: Rng::new(seed),
            model: Model::new([]),
            term: 1,
        }
    }

    fn next_step(&mut self) -> Step {
        let base = self.model.snapshot_index();
        let last = self.model.last_index();
        let restored = self.model.restored();
        let term_at = |i: Index| {
            if i == base {
                restored.snapshot.meta.term
            } else {
                restored.entries[(i - base - 1) as usize].term
            }
        };
        let roll = self.rng.below(100);
        let step = if roll < 6 && last > base {
            let k = self.rng.range(base + 1, last);
            Step::Compact(snapshot(k, term_at(k), &self.rng.next_u64().to_le_bytes()))
        } else if roll < 10 {
            // A snapshot from a leader: matching, conflicting, or beyond the log.
            let k = self.rng.range(base + 1, last + 3);
            let term = if k <= last && self.rng.chance(0.5) {
                term_at(k)
            } else {
                self.term += 1;
                self.term
            };
            let entries = if self.rng.chance(0.5) {
                entries(k + 1..=k + self.rng.range(1, 4), self.term)
            } else {
                Vec::new()
            };
            Step::Persist {
                hard_state: Some(HardState {
                    term: self.term,
                    voted_for: None,
                }),
                snapshot: Some(snapshot(k, term, &[k as u8; 40])),
                entries,
            }
        } else {
            // Entries: mostly appends, sometimes overwriting a recent suffix in a new term.
            let overwrite = roll < 22 && last > base;
            let from = if overwrite {
                self.rng.range(base.max(last.saturating_sub(6)) + 1, last)
            } else {
                last + 1
            };
            let hard_state = (overwrite || self.rng.chance(0.05)).then(|| {
                self.term += 1;
                HardState {
                    term: self.term,
                    voted_for: Some(self.rng.range(1, 3)),
                }
            });
            let n = self.rng.range(1, 6);
            Step::Persist {
                hard_state,
                snapshot: None,
                entries: entries(from..=from + n - 1, self.term),
            }
        };
        match &step {
            Step::Persist {
                hard_state,
                snapshot,
                entries,
            } => model_persist(&mut self.model, *hard_state, snapshot.as_ref(), entries),
            Step::Compact(s) => self.model.compact(s),
        }
        step
    }
}

fn apply(storage: &mut Storage, step: &Step) -> Result<(), StorageError> {
    match step {
        Step::Persist {
            hard_state,
            snapshot,
            entries,
        } => storage.persist(*hard_state, snapshot.as_ref(), entries),
        Step::Compact(s) => storage.save_snapshot(s),
    }
}

/// The child's role (a no-op unless the parent set the environment): persist steps
/// forever, printing `acked N` after the N-th persist returned.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(seed)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_SEED)) else {
        return;
    };
    let seed: u64 = seed.parse().unwrap();
    let (mut storage, _) = open(Path::new(&dir), CRASH_SEGMENT_BYTES);
    let mut workload = Workload::new(seed);
    let stdout = std::io::stdout();
    for n in 1..=1_000_000u64 {
        let step = workload.next_step();
        apply(&mut storage, &step).unwrap();
        use std::io::Write;
        let mut out = stdout.lock();
        writeln!(out, "acked {n}").unwrap();
        out.flush().unwrap();
    }
}

/// Which state a crash during `step` (from `before` to `after`) left, if it is one the
/// contract allows: the acknowledged state, the in-flight step complete, or the in-flight
/// step's entries partly written (the stored log up to where they start, then a prefix of
/// them). Anything else (an acknowledged entry lost or changed) is `None`.
fn crash_state(
    actual: &Restored<Command>,
    before: &Model,
    step: &Step,
    after: &Model,
) -> Option<&'static str> {
    let (b, a) = (before.restored(), after.restored());
    if actual.hard_state != b.hard_state && actual.hard_state != a.hard_state {
        return None;
    }
    let same_log =
        |m: &Restored<Command>| actual.snapshot == m.snapshot && actual.entries == m.entries;
    if same_log(&b) {
        return Some("the acknowledged state");
    }
    if same_log(&a) {
        return Some("the in-flight persist complete");
    }
    match step {
        Step::Persist {
            snapshot: None,
            entries,
            ..
        } => {
            let first = entries.first()?;
            let kept = (first.index - b.snapshot.meta.index - 1) as usize;
            (actual.snapshot == b.snapshot
                && actual.entries.len() >= kept
                && a.entries.starts_with(&actual.entries))
            .then_some("the in-flight persist partly written")
        }
        _ => None,
    }
}

fn crash_once(seed: u64) {
    let mut rng = Rng::new(seed ^ 0xC0FFEE);
    let target = rng.range(50, 500);
    println!("crash test: seed {seed}, SIGKILL after {target} acks");
    let tmp = TempDir::new("crash");
    std::fs::create_dir_all(tmp.path()).unwrap();
    let mut child = Process::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, tmp.path())
        .env(CHILD_SEED, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let stdout = child.stdout.take().unwrap();
    let mut acked = 0u64;
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Some(n) = line.strip_prefix("acked ") else {
            continue;
        };
        acked = n.trim().parse().unwrap();
        if acked >= target && !killed {
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
            killed = true;
        }
        // Keep reading: every ack the child printed before it died counts.
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "seed {seed}: the child stopped after {acked} acks: {status}"
    );

    let mut workload = Workload::new(seed);
    for _ in 0..acked {
        workload.next_step();
    }
    let before = workload.model.clone();
    let step = workload.next_step();
    let (_storage, restored) = open(tmp.path(), CRASH_SEGMENT_BYTES);
    let Some(state) = crash_state(&restored, &before, &step, &workload.model) else {
        panic!(
            "seed {seed}: after {acked} acks and a SIGKILL during {step:?}\n\
             restored {restored:?}\nacknowledged state {:?}",
            before.restored()
        );
    };
    println!(
        "crash test: seed {seed}: {acked} acks before the kill; recovered {state}: \
         snapshot at {}, {} entries",
        restored.snapshot.meta.index,
        restored.entries.len()
    );
}

#[test]
fn acknowledged_entries_survive_sigkill() {
    let seeds: Vec<u64> = match std::env::var("RAFTLAB_CRASH_SEEDS") {
        Ok(list) => list.split(',').map(|s| s.trim().parse().unwrap()).collect(),
        Err(_) => (1..=12).collect(),
    };
    for seed in seeds {
        crash_once(seed);
    }
}

// ----- property test against the model --------------------------------------------------

#[derive(Clone, Debug)]
enum Action {
    Append {
        n: u64,
        vote: bool,
    },
    Overwrite {
        back: u64,
        n: u64,
    },
    Compact {
        at: u64,
    },
    Receive {
        at: u64,
        matching: bool,
        with_entries: u64,
    },
    Reopen,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        5 => (1u64..8, any::<bool>()).prop_map(|(n, vote)| Action::Append { n, vote }),
        2 => (0u64..10, 1u64..8).prop_map(|(back, n)| Action::Overwrite { back, n }),
        1 => any::<u64>().prop_map(|at| Action::Compact { at }),
        1 => (any::<u64>(), any::<bool>(), 0u64..4)
            .prop_map(|(at, matching, with_entries)| Action::Receive { at, matching, with_entries }),
        1 => Just(Action::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn storage_behaves_like_the_contract_model(
        actions in proptest::collection::vec(action(), 1..40),
        segment_bytes in 64u64..1024,
    ) {
        against_the_model(&actions, segment_bytes)?;
    }
}

// (The storage bugs leave syncs out, which no test can observe without a power cut: the
// lazyfs crate's mount tests check them through a real FUSE mount.)
fn against_the_model(actions: &[Action], segment_bytes: u64) -> Result<(), TestCaseError> {
    let tmp = TempDir::new("prop");
    let options = StorageOptions {
        fsync: false,
        segment_bytes,
        bugs: SyncBugs::default(),
    };
    let (mut storage, _) = Storage::open(tmp.path(), options).unwrap();
    let mut model = Model::new([]);
    let model_write = |model: &mut Model, persist: Persist| {
        model.persist(&persist).unwrap();
    };
    let write = |hard_state: Option<HardState>,
                 snapshot: Option<&Snapshot>,
                 entries: &[Entry<Command>]| Persist {
        hard_state,
        snapshot: snapshot.cloned(),
        entries: entries.to_vec(),
        early_messages: Vec::new(),
        messages: Vec::new(),
    };
    // The first term, which a node writes with (or before) its first entries.
    storage.persist(Some(FIRST_TERM), None, &[]).unwrap();
    model_write(&mut model, write(Some(FIRST_TERM), None, &[]));
    let mut term: Term = 1;
    for (step, action) in actions.iter().enumerate() {
        let base = model.snapshot_index();
        let last = model.last_index();
        let restored = model.restored();
        let term_at = |i: Index| {
            if i == base {
                restored.snapshot.meta.term
            } else {
                restored.entries[(i - base - 1) as usize].term
            }
        };
        match *action {
            Action::Append { n, vote } => {
                let hs = vote.then(|| {
                    term += 1;
                    HardState {
                        term,
                        voted_for: Some(term % 3),
                    }
                });
                let batch = entries(last + 1..=last + n, term);
                storage.persist(hs, None, &batch).unwrap();
                model_write(&mut model, write(hs, None, &batch));
            }
            Action::Overwrite { back, n } => {
                let from = (last.saturating_sub(back) + 1).max(base + 1);
                term += 1;
                let batch = entries(from..=from + n - 1, term);
                storage.persist(None, None, &batch).unwrap();
                model_write(&mut model, write(None, None, &batch));
            }
            Action::Compact { at } => {
                if last > base {
                    let k = base + 1 + at % (last - base);
                    let snap = snapshot(k, term_at(k), &at.to_le_bytes());
                    storage.save_snapshot(&snap).unwrap();
                    model.compact(&snap);
                }
            }
            Action::Receive {
                at,
                matching,
                with_entries,
            } => {
                let k = base + 1 + at % (last - base + 3);
                let t = if matching && k <= last {
                    term_at(k)
                } else {
                    term += 1;
                    term
                };
                let snap = snapshot(k, t, &at.to_be_bytes());
                let batch = entries(k + 1..=k + with_entries, term);
                storage.persist(None, Some(&snap), &batch).unwrap();
                model_write(&mut model, write(None, Some(&snap), &batch));
            }
            Action::Reopen => {
                drop(storage);
                let (s, restored) = Storage::open(tmp.path(), options).unwrap();
                storage = s;
                assert_restored(&restored, &model.restored(), &format!("step {step}"));
            }
        }
        let stats = storage.stats();
        prop_assert_eq!(stats.snapshot_index, model.snapshot_index());
        prop_assert_eq!(stats.last_index, model.last_index());
    }
    drop(storage);
    let (_storage, restored) = Storage::open(tmp.path(), options).unwrap();
    assert_restored(&restored, &model.restored(), "final reopen");
    Ok(())
}

// ----- throughput (not a test: run with --ignored --nocapture, ideally --release) --------

#[test]
#[ignore]
fn measure_persist_throughput() {
    let tmp = TempDir::new("throughput");
    for (label, per_call) in [("1 entry", 1u64), ("10 entries", 10)] {
        let mut rounds = Vec::new();
        for round in 0..5 {
            let dir = tmp.path().join(format!("{per_call}-{round}"));
            let (mut storage, _) = open(&dir, 64 << 20);
            let calls = 1000u64;
            let start = std::time::Instant::now();
            for call in 0..calls {
                let first = call * per_call + 1;
                storage
                    .persist(None, None, &entries(first..=first + per_call - 1, 1))
                    .unwrap();
            }
            rounds.push(start.elapsed().as_secs_f64());
        }
        let mut sorted = rounds.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "1000 persist calls of {label} with fsync, 5 rounds: {} s; median {:.3} s \
             ({:.0} us/call), best {:.3} s",
            rounds
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(" "),
            sorted[2],
            sorted[2] * 1e3,
            sorted[0]
        );
    }
}

#[test]
fn a_log_without_a_hard_state_refuses_to_start() {
    let tmp = TempDir::new("no-hard-state");
    let (mut storage, _) = open(tmp.path(), 4096);
    let hs = HardState {
        term: 4,
        voted_for: Some(1),
    };
    storage.persist(Some(hs), None, &entries(1..=5, 4)).unwrap();
    drop(storage);
    std::fs::remove_file(tmp.path().join("hardstate")).unwrap();
    // Starting at term 0 with no vote could vote a second time in term 4.
    match Storage::open(tmp.path(), opts(4096)) {
        Err(e @ StorageError::MissingHardState { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains(&tmp.path().display().to_string()),
                "{message}"
            );
        }
        Err(e) => panic!("expected a missing hard state, got {e}"),
        Ok((_, restored)) => panic!(
            "opened a log of {} entries at term {}",
            restored.entries.len(),
            restored.hard_state.term
        ),
    }
}
