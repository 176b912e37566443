//! Real mounts: what survives `lose-unsynced` through the kernel, and node's `Storage`
//! recovering exactly what it synced. Skipped (with the reason printed) where /dev/fuse or
//! `fusermount3` is missing, unless `RAFTLAB_REQUIRE_FUSE=1`.

use lazyfs::control::request;
use lazyfs::fs::{spawn, Mount};
use model::core::{Entry, EntryKind, HardState};
use node::storage::{Storage, StorageError, StorageOptions, SyncBugs};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Whether to run: panics when FUSE is required and missing.
fn fuse_usable(tag: &str) -> bool {
    match lazyfs::fs::unavailable() {
        None => true,
        Some(reason) if std::env::var("RAFTLAB_REQUIRE_FUSE").as_deref() == Ok("1") => {
            panic!("{tag}: RAFTLAB_REQUIRE_FUSE=1 but {reason}")
        }
        Some(reason) => {
            eprintln!("skipping the {tag} mount test: {reason}");
            false
        }
    }
}

/// A backing directory, a mount point and a control socket, in a fresh temporary folder.
struct Lab {
    root: PathBuf,
    backing: PathBuf,
    mnt: PathBuf,
    control: PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let root = std::env::temp_dir().join(format!("lazyfs-mount-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let lab = Lab {
            backing: root.join("backing"),
            mnt: root.join("mnt"),
            control: root.join("control.sock"),
            root,
        };
        fs::create_dir_all(&lab.backing).unwrap();
        fs::create_dir_all(&lab.mnt).unwrap();
        lab
    }

    /// A fresh lab, mounted; `None` (after saying why) where FUSE cannot be used.
    fn mounted(tag: &str) -> Option<(Lab, Mount)> {
        if !fuse_usable(tag) {
            return None;
        }
        let lab = Lab::new(tag);
        let mount = spawn(&lab.backing, &lab.mnt, &lab.control, 11, false).unwrap();
        Some((lab, mount))
    }

    fn command(&self, command: &str) -> String {
        request(&self.control, command).unwrap()
    }
}

fn sync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

#[test]
fn lose_unsynced_keeps_only_what_was_synced() {
    let Some((lab, mount)) = Lab::mounted("lose") else {
        return;
    };
    let m = &lab.mnt;
    // Synced data and entry.
    let mut kept = File::create(m.join("kept")).unwrap();
    kept.write_all(b"durable").unwrap();
    kept.sync_data().unwrap();
    sync_dir(m);
    // Appended but not synced.
    kept.write_all(b" and lost").unwrap();
    // Data synced, entry never synced.
    fs::create_dir(m.join("sub")).unwrap();
    sync_dir(m);
    let mut orphan = File::create(m.join("sub/orphan")).unwrap();
    orphan.write_all(b"synced data, unsynced name").unwrap();
    orphan.sync_all().unwrap();
    // Atomic replace without the directory sync: the old version survives.
    fs::write(m.join("config"), b"v1").unwrap();
    File::open(m.join("config")).unwrap().sync_all().unwrap();
    sync_dir(m);
    fs::write(m.join("config.tmp"), b"v2").unwrap();
    File::open(m.join("config.tmp"))
        .unwrap()
        .sync_all()
        .unwrap();
    fs::rename(m.join("config.tmp"), m.join("config")).unwrap();
    assert_eq!(fs::read(m.join("config")).unwrap(), b"v2");
    assert_eq!(fs::read(m.join("kept")).unwrap(), b"durable and lost");
    assert!(lab.command("status").starts_with("ok held_pages=1 "));

    assert_eq!(lab.command("lose-unsynced"), "ok");
    drop((kept, orphan));
    assert_eq!(fs::read(m.join("kept")).unwrap(), b"durable");
    assert_eq!(fs::read(m.join("config")).unwrap(), b"v1");
    assert!(m.join("sub").is_dir());
    assert!(!m.join("sub/orphan").exists());
    assert!(!m.join("config.tmp").exists());
    assert_eq!(
        lab.command("status"),
        "ok held_pages=0 held_bytes=0 held_entries=0 held_truncations=0 full=false"
    );
    // The backing directory is what a restart of the filesystem sees.
    assert_eq!(fs::read(lab.backing.join("kept")).unwrap(), b"durable");
    assert!(lab.command("bogus").starts_with("error unknown command"));

    // checkpoint makes everything durable.
    fs::write(m.join("late"), b"checkpointed").unwrap();
    assert_eq!(lab.command("checkpoint"), "ok");
    assert_eq!(lab.command("lose-unsynced"), "ok");
    assert_eq!(fs::read(m.join("late")).unwrap(), b"checkpointed");

    // tear: some pages of the last unsynced write reach the disk, the rest do not.
    let page = lazyfs::layer::PAGE;
    fs::write(m.join("late"), vec![b'x'; 4 * page]).unwrap();
    let answer = lab.command("tear");
    let kept: usize = answer
        .strip_prefix("ok kept=")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("unexpected answer {answer:?}"));
    assert!(
        answer.ends_with(&format!("dropped={}", 4 - kept)),
        "{answer}"
    );
    let after = fs::read(m.join("late")).unwrap();
    let torn = after
        .chunks(page)
        .filter(|p| p.iter().all(|&b| b == b'x'))
        .count();
    assert_eq!(torn, kept, "{answer}");
    mount.unmount().unwrap();
    fs::remove_dir_all(&lab.root).unwrap();
}

fn noops(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry<model::kv::Command>> {
    indexes
        .map(|index| Entry {
            term,
            index,
            kind: EntryKind::Noop,
        })
        .collect()
}

#[test]
fn node_storage_recovers_exactly_what_it_synced() {
    let Some((lab, mount)) = Lab::mounted("storage") else {
        return;
    };
    let data = lab.mnt.join("data");
    let synced = HardState {
        term: 1,
        voted_for: Some(1),
    };
    {
        let (mut storage, restored) = Storage::open(&data, StorageOptions::default()).unwrap();
        assert!(restored.entries.is_empty());
        storage
            .persist(Some(synced), None, &noops(1..=5, 1))
            .unwrap();
    }
    {
        // The same process, forgetting to sync: nothing of this may survive a power cut.
        let unsynced = StorageOptions {
            fsync: false,
            ..StorageOptions::default()
        };
        let (mut storage, restored) = Storage::open(&data, unsynced).unwrap();
        assert_eq!(restored.entries.len(), 5);
        let later = HardState {
            term: 2,
            voted_for: Some(2),
        };
        storage
            .persist(Some(later), None, &noops(6..=10, 2))
            .unwrap();
    }
    let (_, restored) = Storage::open(&data, StorageOptions::default()).unwrap();
    assert_eq!(
        restored.entries.len(),
        10,
        "before the power cut, all is visible"
    );
    drop(restored);

    assert_eq!(lab.command("lose-unsynced"), "ok");
    let (_, restored) = Storage::open(&data, StorageOptions::default()).unwrap();
    assert_eq!(restored.hard_state, synced);
    let got: Vec<(u64, u64)> = restored.entries.iter().map(|e| (e.index, e.term)).collect();
    let want: Vec<(u64, u64)> = (1..=5).map(|i| (i, 1)).collect();
    assert_eq!(got, want);
    mount.unmount().unwrap();
    fs::remove_dir_all(&lab.root).unwrap();
}

/// The LOCK file's flock is kept by the kernel per mount: a second open is refused.
#[test]
fn flock_on_the_mount_excludes_a_second_storage() {
    let Some((lab, mount)) = Lab::mounted("flock") else {
        return;
    };
    let data = lab.mnt.join("data");
    let first = Storage::open(&data, StorageOptions::default()).unwrap();
    let second = Storage::open(&data, StorageOptions::default());
    assert!(
        matches!(second, Err(node::storage::StorageError::Locked { .. })),
        "{second:?}"
    );
    drop(first);
    mount.unmount().unwrap();
    fs::remove_dir_all(&lab.root).unwrap();
}

/// Entries of about 3 KiB each, so that one append spans many pages.
fn big(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry<model::kv::Command>> {
    indexes
        .map(|index| Entry {
            term,
            index,
            kind: EntryKind::Command(model::kv::Command {
                client: 1,
                seq: index,
                op: model::kv::Operation::Read {
                    key: "k".repeat(3000),
                },
                time_ms: 0,
            }),
        })
        .collect()
}

/// A torn unsynced append (some of its pages on disk, in any order): recovery keeps every
/// synced entry and at most a prefix of the torn ones. (A page of the append missing and a
/// later one on disk, which a power cut between a write and its fdatasync can leave, once
/// made `Storage::open` refuse the data directory; the log now marks where each group
/// commit begins.)
#[test]
fn node_storage_recovers_from_a_torn_append() {
    let Some((lab, mount)) = Lab::mounted("torn") else {
        return;
    };
    let data = lab.mnt.join("data");
    {
        let (mut storage, _) = Storage::open(&data, StorageOptions::default()).unwrap();
        // With the hard state a node writes before its first entries (a log without one
        // is refused).
        let first_term = model::core::HardState {
            term: 1,
            voted_for: None,
        };
        storage
            .persist(Some(first_term), None, &big(1..=5, 1))
            .unwrap();
    }
    {
        let unsynced = StorageOptions {
            fsync: false,
            ..StorageOptions::default()
        };
        let (mut storage, _) = Storage::open(&data, unsynced).unwrap();
        storage.persist(None, None, &big(6..=20, 1)).unwrap();
    }
    let answer = lab.command("tear");
    let restored = Storage::open(&data, StorageOptions::default());
    let (_, restored) = restored.unwrap_or_else(|e| panic!("after {answer}: {e}"));
    let got: Vec<u64> = restored.entries.iter().map(|e| e.index).collect();
    assert!(
        got.len() >= 5 && got.iter().copied().eq(1..=got.len() as u64),
        "{got:?}"
    );
    mount.unmount().unwrap();
    fs::remove_dir_all(&lab.root).unwrap();
}

/// fallocate(2) in its default mode.
fn fallocate(file: &File, offset: i64, len: i64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a descriptor `file` keeps open.
    match unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Asserts that `result` failed as a full disk fails.
fn assert_no_space<T: std::fmt::Debug>(result: std::io::Result<T>, what: &str) {
    match result {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::StorageFull, "{what}: {e}");
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{what}: {e}");
        }
        Ok(v) => panic!("{what}: succeeded on a full disk ({v:?})"),
    }
}

#[test]
fn a_full_disk_refuses_new_space_until_freed() {
    let Some((lab, mount)) = Lab::mounted("full") else {
        return;
    };
    let m = &lab.mnt;
    let path = m.join("f");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    file.write_all_at(b"0123456789", 0).unwrap();
    file.sync_all().unwrap();
    sync_dir(m);
    assert_eq!(lab.command("fill"), "ok");
    assert!(lab.command("status").ends_with(" full=true"));

    assert_no_space(file.write_all_at(b"more", 10), "an append");
    assert_no_space(File::create(m.join("g")), "a new file");
    assert_no_space(fs::create_dir(m.join("d")), "a new directory");
    assert_no_space(fallocate(&file, 0, 4096), "fallocate past the end");
    // What needs no new space still works.
    file.write_all_at(b"abc", 0).unwrap();
    file.sync_data().unwrap();
    let mut back = vec![0; 10];
    file.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, b"abc3456789");
    fs::rename(&path, m.join("h")).unwrap();
    fs::rename(m.join("h"), &path).unwrap();
    sync_dir(m);
    assert_eq!(fs::metadata(&path).unwrap().len(), 10);

    assert_eq!(lab.command("free"), "ok");
    assert!(lab.command("status").ends_with(" full=false"));
    file.write_all_at(b"more", 10).unwrap();
    file.sync_data().unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"abc3456789more");
    File::create(m.join("g")).unwrap();
    fallocate(&file, 0, 4096).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 4096);
    drop(file);
    mount.unmount().unwrap();
    fs::remove_dir_all(&lab.root).unwrap();
}

/// node's `Storage` on a disk that fills up: a persist that needs space fails with
/// `NoSpace`, the instance stays usable, the same persist succeeds once space returns, and
/// nothing a failed persist wrote is ever read back as an entry (a shorter group commit
/// written where a failed longer one began must not be followed by its records).
#[test]
fn node_storage_survives_a_full_disk() {
    let Some((lab, mount)) = Lab::mounted("storage-full") else {
        return;
    };
    let data = lab.mnt.join("data");
    let term = |term| HardState {
        term,
        voted_for: Some(1),
    };
    let (mut storage, _) = Storage::open(&data, StorageOptions::default()).unwrap();
    storage
        .persist(Some(term(1)), None, &noops(1..=5, 1))
        .unwrap();

    assert_eq!(lab.command("fill"), "ok");
    // A new hard state needs a new file.
    let err = storage
        .persist(Some(term(2)), None, &noops(6..=6, 2))
        .unwrap_err();
    assert!(matches!(err, StorageError::NoSpace { .. }), "{err:?}");
    assert!(
        err.to_string().contains("hardstate") && err.to_string().contains("no space left"),
        "{err}"
    );
    assert!(
        !fs::read_dir(&data).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")),
        "the temporary file of the failed replace is removed"
    );
    // Appends past the log's written space (about 4.5 MiB here) fail too, part way.
    let err = storage.persist(None, None, &big(6..=1500, 2)).unwrap_err();
    assert!(matches!(err, StorageError::NoSpace { .. }), "{err:?}");
    assert!(err.to_string().contains(".log"), "{err}");

    assert_eq!(lab.command("free"), "ok");
    // Still usable: the hard state goes through now, with one entry of the same size as
    // the first record of the failed append, where that append began.
    storage
        .persist(Some(term(2)), None, &big(6..=6, 2))
        .unwrap();
    drop(storage);

    assert_eq!(lab.command("lose-unsynced"), "ok");
    let (_, restored) = Storage::open(&data, StorageOptions::default()).unwrap();
    assert_eq!(restored.hard_state, term(2));
    let got: Vec<(u64, u64)> = restored.entries.iter().map(|e| (e.index, e.term)).collect();
    let mut want: Vec<(u64, u64)> = (1..=5).map(|i| (i, 1)).collect();
    want.push((6, 2));
    assert_eq!(got, want);
    mount.unmount().unwrap();
    fs::remove_dir_all(&lab.root).unwrap();
}

// ----- the catalogue's storage bugs, through a power cut ---------------------------------

/// The hard state the storage-bug tests write with their first entries.
const VOTE: HardState = HardState {
    term: 1,
    voted_for: Some(1),
};

fn with_bugs(bugs: SyncBugs) -> StorageOptions {
    StorageOptions {
        bugs,
        ..StorageOptions::default()
    }
}

/// Opens a storage in `data` with `bugs` and persists (acknowledges) a vote with entries
/// 1..=5 and then entries 6..=8, two group commits; `between` runs between them. The
/// storage is then dropped without any shutdown (as a killed process leaves it).
fn persist_two_batches(data: &Path, bugs: SyncBugs, between: impl FnOnce(&mut Storage)) {
    let (mut storage, restored) = Storage::open(data, with_bugs(bugs)).unwrap();
    assert!(restored.entries.is_empty());
    storage.persist(Some(VOTE), None, &noops(1..=5, 1)).unwrap();
    between(&mut storage);
    storage.persist(None, None, &noops(6..=8, 1)).unwrap();
}

/// What a restart on `data` recovers: the hard state and the entries' indexes.
fn recovered(data: &Path) -> (HardState, Vec<u64>) {
    let (_, restored) = Storage::open(data, StorageOptions::default()).unwrap();
    let indexes = restored.entries.iter().map(|e| e.index).collect();
    (restored.hard_state, indexes)
}

/// The same writes by the correct storage, in `data` on the same mount, which must survive
/// the power cut whole.
fn correct_storage_writes(data: &Path) {
    persist_two_batches(data, SyncBugs::default(), |_| {});
}

fn assert_correct_storage_survived(data: &Path) {
    assert_eq!(
        recovered(data),
        (VOTE, (1..=8).collect()),
        "the correct storage lost acknowledged writes in a power cut"
    );
}

/// `skip-fsync`: the log is written (a SIGKILL, which keeps the page cache, loses nothing)
/// but never synced, so a power cut loses every acknowledged entry; the vote is synced.
#[test]
fn skip_fsync_loses_every_acknowledged_append_in_a_power_cut() {
    let Some((lab, mount)) = Lab::mounted("skip-fsync") else {
        return;
    };
    let (correct, buggy) = (lab.mnt.join("correct"), lab.mnt.join("buggy"));
    correct_storage_writes(&correct);
    let bugs = SyncBugs {
        skip_fsync: true,
        ..SyncBugs::default()
    };
    persist_two_batches(&buggy, bugs, |_| {});
    assert_eq!(recovered(&buggy), (VOTE, (1..=8).collect()), "before");

    assert_eq!(lab.command("lose-unsynced"), "ok");
    assert_correct_storage_survived(&correct);
    assert_eq!(recovered(&buggy), (VOTE, Vec::new()));
    mount.unmount().unwrap();
    fs::remove_dir_all(&lab.root).unwrap();
}

/// `periodic-fsync`: the appends acknowledged after the last periodic sync (here called
/// directly, as the storage thread does once the oldest unsynced append is 200 ms old) are
/// lost in a power cut; the ones before it survive.
#[test]
fn periodic_fsync_loses_the_appends_after_the_last_sync_in_a_power_cut() {
    let Some((lab, mount)) = Lab::mounted("periodic-fsync") else {
        return;
    };
    let (correct, buggy) = (lab.mnt.join("correct"), lab.mnt.join("buggy"));
    correct_storage_writes(&correct);
    let bugs = SyncBugs {
        periodic_fsync: true,
        ..SyncBugs::default()
    };
    persist_two_batches(&buggy, bugs, |storage| {
        assert!(
            storage.sync_deadline().is_some(),
            "an append waits for a sync"
        );
        storage.sync_log().unwrap();
        assert_eq!(storage.sync_deadline(), None);
    });
    assert_eq!(recovered(&buggy), (VOTE, (1..=8).collect()), "before");

    assert_eq!(lab.command("lose-unsynced"), "ok");
    assert_correct_storage_survived(&correct);
    assert_eq!(recovered(&buggy), (VOTE, (1..=5).collect()));
    mount.unmount().unwrap();
    fs::remove_dir_all(&lab.root).unwrap();
}

/// `skip-dir-fsync`: the file data is synced, but no directory entry is: a power cut takes
/// a new data directory with its segment and hard state, and the node restarts empty.
#[test]
fn skip_dir_fsync_loses_a_new_data_directory_in_a_power_cut() {
    let Some((lab, mount)) = Lab::mounted("skip-dir-fsync") else {
        return;
    };
    let (correct, buggy) = (lab.mnt.join("correct"), lab.mnt.join("buggy"));
    correct_storage_writes(&correct);
    let bugs = SyncBugs {
        skip_dir_fsync: true,
        ..SyncBugs::default()
    };
    persist_two_batches(&buggy, bugs, |_| {});
    assert_eq!(recovered(&buggy), (VOTE, (1..=8).collect()), "before");

    assert_eq!(lab.command("lose-unsynced"), "ok");
    assert_correct_storage_survived(&correct);
    assert!(
        !buggy.exists(),
        "the data directory's own entry was never synced"
    );
    let (storage, restored) = Storage::open(&buggy, StorageOptions::default()).unwrap();
    assert!(storage.is_fresh());
    assert_eq!(restored.hard_state, HardState::default());
    assert!(restored.entries.is_empty());
    drop(storage);
    mount.unmount().unwrap();
    fs::remove_dir_all(&lab.root).unwrap();
}
