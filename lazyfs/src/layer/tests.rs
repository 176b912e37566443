//! The lazy layer against a model of "what must survive": random operations on a few
//! names in two directories, checking the merged view after each and the backing directory
//! after each power cut.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// The subdirectory, durable from the start.
const SUB: &str = "s";
/// File slots: names `a`..`d` in the root (0..4) and in [`SUB`] (4..8).
const SLOTS: usize = 8;

fn slot_path(slot: usize) -> String {
    let name = ["a", "b", "c", "d"][slot % 4];
    if slot < 4 {
        name.to_string()
    } else {
        format!("{SUB}/{name}")
    }
}

/// 0: the root, 1: [`SUB`].
fn slot_dir(slot: usize) -> usize {
    slot / 4
}

#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    Write {
        slot: usize,
        offset: u64,
        len: usize,
        byte: u8,
    },
    SetLen {
        slot: usize,
        len: u64,
    },
    Fsync(usize),
    Rename(usize, usize),
    Unlink(usize),
    FsyncDir(usize),
    Lose,
    Checkpoint,
    /// The disk fills up (`true`) or its space returns.
    Full(bool),
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    prop_oneof![
        slot.clone().prop_map(Op::Create),
        (
            slot.clone(),
            0u64..3 * PAGE as u64,
            1usize..2 * PAGE,
            any::<u8>()
        )
            .prop_map(|(slot, offset, len, byte)| Op::Write {
                slot,
                offset,
                len,
                byte
            }),
        (slot.clone(), 0u64..3 * PAGE as u64).prop_map(|(slot, len)| Op::SetLen { slot, len }),
        slot.clone().prop_map(Op::Fsync),
        slot.clone().prop_map(Op::Fsync),
        (slot.clone(), slot.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        slot.prop_map(Op::Unlink),
        (0usize..2).prop_map(Op::FsyncDir),
        (0usize..2).prop_map(Op::FsyncDir),
        Just(Op::Lose),
        Just(Op::Checkpoint),
        any::<bool>().prop_map(Op::Full),
    ]
}

/// Files by identity: what a process sees, and what a power cut leaves. A directory sync
/// makes its visible entries durable, taking a file moved in from the other directory out
/// of that one's durable entries.
#[derive(Default)]
struct Model {
    visible: BTreeMap<usize, usize>,
    durable: BTreeMap<usize, usize>,
    content: HashMap<usize, Vec<u8>>,
    synced: HashMap<usize, Vec<u8>>,
    /// Bytes of each file that writes have filled (a write past them needs space).
    allocated: HashMap<usize, u64>,
    full: bool,
    next: usize,
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Create(slot) => {
                if !self.visible.contains_key(&slot) && !self.full {
                    self.visible.insert(slot, self.next);
                    self.allocated.insert(self.next, 0);
                    self.content.insert(self.next, Vec::new());
                    self.synced.insert(self.next, Vec::new());
                    self.next += 1;
                }
            }
            Op::Write {
                slot,
                offset,
                len,
                byte,
            } => {
                if let Some(id) = self.visible.get(&slot) {
                    let end = offset as usize + len;
                    let allocated = self.allocated.entry(*id).or_default();
                    if self.full && end as u64 > *allocated {
                        return;
                    }
                    *allocated = (*allocated).max(end as u64);
                    let c = self.content.entry(*id).or_default();
                    if c.len() < end {
                        c.resize(end, 0);
                    }
                    c[offset as usize..end].fill(byte);
                }
            }
            Op::SetLen { slot, len } => {
                if let Some(id) = self.visible.get(&slot) {
                    self.content.entry(*id).or_default().resize(len as usize, 0);
                    let allocated = self.allocated.entry(*id).or_default();
                    *allocated = (*allocated).min(len);
                }
            }
            Op::Fsync(slot) => {
                if let Some(id) = self.visible.get(&slot) {
                    let c = self.content[id].clone();
                    self.synced.insert(*id, c);
                }
            }
            Op::Rename(a, b) => {
                if let Some(id) = self.visible.remove(&a) {
                    self.visible.insert(b, id);
                }
            }
            Op::Unlink(slot) => {
                self.visible.remove(&slot);
            }
            Op::FsyncDir(dir) => {
                let now: BTreeMap<usize, usize> = self
                    .visible
                    .iter()
                    .filter(|(slot, _)| slot_dir(**slot) == dir)
                    .map(|(s, id)| (*s, *id))
                    .collect();
                let ids: HashSet<usize> = now.values().copied().collect();
                self.durable
                    .retain(|slot, id| slot_dir(*slot) != dir && !ids.contains(id));
                self.durable.extend(now);
            }
            Op::Lose => {
                self.visible = self.durable.clone();
                for id in self.visible.values() {
                    let s = self.synced[id].clone();
                    let allocated = self.allocated.entry(*id).or_default();
                    *allocated = (*allocated).min(s.len() as u64);
                    self.content.insert(*id, s);
                }
            }
            Op::Checkpoint => {
                for id in self.visible.values() {
                    let c = self.content[id].clone();
                    self.synced.insert(*id, c);
                }
                self.durable = self.visible.clone();
            }
            Op::Full(full) => self.full = full,
        }
    }
}

fn apply(lazy: &mut Lazy, op: &Op) {
    let sub = lazy.lookup(ROOT, OsStr::new(SUB)).unwrap();
    let place = |slot: usize| {
        let name = slot_path(slot);
        let name = name.rsplit('/').next().unwrap_or_default().to_string();
        (
            if slot_dir(slot) == 0 { ROOT } else { sub },
            OsString::from(name),
        )
    };
    let ino = |lazy: &Lazy, slot: usize| {
        let (dir, name) = place(slot);
        lazy.lookup(dir, &name).ok()
    };
    match *op {
        Op::Create(slot) => {
            let (dir, name) = place(slot);
            let _ = lazy.create(dir, &name);
        }
        Op::Write {
            slot,
            offset,
            len,
            byte,
        } => {
            if let Some(ino) = ino(lazy, slot) {
                match lazy.write(ino, offset, &vec![byte; len]) {
                    Ok(()) | Err(LayerError::NoSpace) => {}
                    Err(e) => panic!("write: {e}"),
                }
            }
        }
        Op::SetLen { slot, len } => {
            if let Some(ino) = ino(lazy, slot) {
                lazy.set_len(ino, len).unwrap();
            }
        }
        Op::Fsync(slot) => {
            if let Some(ino) = ino(lazy, slot) {
                lazy.sync(ino).unwrap();
            }
        }
        Op::Rename(a, b) => {
            if ino(lazy, a).is_some() {
                let ((da, na), (db, nb)) = (place(a), place(b));
                lazy.rename(da, &na, db, &nb).unwrap();
            }
        }
        Op::Unlink(slot) => {
            let (dir, name) = place(slot);
            let _ = lazy.unlink(dir, &name);
        }
        Op::FsyncDir(dir) => lazy.sync(if dir == 0 { ROOT } else { sub }).unwrap(),
        Op::Lose => lazy.lose_unsynced(),
        Op::Checkpoint => lazy.checkpoint().unwrap(),
        Op::Full(full) => lazy.set_full(full),
    }
}

/// Every file of the merged view, by path, with its content.
fn visible_of(lazy: &Lazy) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![(ROOT, String::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        for (name, attr) in lazy.readdir(dir).unwrap() {
            let path = format!("{prefix}{}", name.to_string_lossy());
            match attr.kind {
                Kind::Dir => dirs.push((attr.ino, format!("{path}/"))),
                Kind::File => {
                    let data = lazy.read(attr.ino, 0, attr.size as usize).unwrap();
                    out.insert(path, data);
                }
            }
        }
    }
    out
}

/// Every file under `dir` on disk, by path, with its content.
fn backing_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = dirs.pop() {
        for e in fs::read_dir(&path).unwrap() {
            let e = e.unwrap();
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            if e.file_type().unwrap().is_dir() {
                dirs.push((e.path(), format!("{name}/")));
            } else {
                out.insert(name, fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn expected(
    slots: &BTreeMap<usize, usize>,
    data: &HashMap<usize, Vec<u8>>,
) -> BTreeMap<String, Vec<u8>> {
    slots
        .iter()
        .map(|(slot, id)| (slot_path(*slot), data[id].clone()))
        .collect()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lazyfs-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn survives_like_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = temp_dir("prop");
        fs::create_dir(dir.join(SUB)).unwrap();
        let mut lazy = Lazy::open(&dir, 7).unwrap();
        let mut model = Model::default();
        for op in &ops {
            apply(&mut lazy, op);
            model.apply(op);
            prop_assert_eq!(
                visible_of(&lazy),
                expected(&model.visible, &model.content),
                "after {:?}",
                op
            );
            if matches!(op, Op::Lose | Op::Checkpoint) {
                prop_assert_eq!(
                    backing_of(&dir),
                    expected(&model.durable, &model.synced),
                    "backing after {:?}",
                    op
                );
            }
        }
        lazy.lose_unsynced();
        prop_assert_eq!(backing_of(&dir), expected(&model.durable, &model.synced));
        // A fresh layer over the backing directory (a restart) sees the same.
        prop_assert_eq!(
            visible_of(&Lazy::open(&dir, 7).unwrap()),
            expected(&model.durable, &model.synced)
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// Writes 8 pages and syncs them, overwrites them unsynced, tears: the tear's (kept,
/// dropped) counts and the file left on disk.
fn torn(tag: &str, seed: u64) -> ((usize, usize), Vec<u8>) {
    let dir = temp_dir(tag);
    let mut lazy = Lazy::open(&dir, seed).unwrap();
    let ino = lazy.create(ROOT, OsStr::new("f")).unwrap();
    lazy.sync(ROOT).unwrap();
    lazy.write(ino, 0, &vec![1u8; 8 * PAGE]).unwrap();
    lazy.sync(ino).unwrap();
    lazy.write(ino, 0, &vec![2u8; 8 * PAGE]).unwrap();
    let counts = lazy.tear().unwrap();
    let on_disk = fs::read(dir.join("f")).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    (counts, on_disk)
}

#[test]
fn tear_keeps_a_seeded_subset_of_the_last_write() {
    let ((kept, dropped), on_disk) = torn("tear", 3);
    assert_eq!(kept + dropped, 8);
    assert!(
        kept > 0 && dropped > 0,
        "seed 3 keeps some pages and drops some"
    );
    let new_pages = on_disk
        .chunks(PAGE)
        .filter(|p| p.iter().all(|&b| b == 2))
        .count();
    assert_eq!(new_pages, kept);
    assert!(on_disk
        .chunks(PAGE)
        .all(|p| p.iter().all(|&b| b == 1) || p.iter().all(|&b| b == 2)));
    // The same seed tears the same way.
    assert_eq!(torn("tear-again", 3), ((kept, dropped), on_disk));
}

/// A fresh layer in which `sub/file` holds `data`, all of it synced; returns the backing
/// directory, the layer and the subdirectory's inode.
fn durable_file_in_subdir(tag: &str, sub: &str, file: &str, data: &[u8]) -> (PathBuf, Lazy, Ino) {
    let dir = temp_dir(tag);
    let mut lazy = Lazy::open(&dir, 1).unwrap();
    let sub = lazy.mkdir(ROOT, OsStr::new(sub)).unwrap();
    let f = lazy.create(sub, OsStr::new(file)).unwrap();
    lazy.write(f, 0, data).unwrap();
    lazy.sync(f).unwrap();
    lazy.sync(ROOT).unwrap();
    lazy.sync(sub).unwrap();
    (dir, lazy, sub)
}

#[test]
fn subdirectories_need_their_parent_synced() {
    let (dir, mut lazy, sub) = durable_file_in_subdir("subdir", "wal", "seg", b"hello");
    let g = lazy.create(sub, OsStr::new("lost")).unwrap();
    lazy.sync(g).unwrap();
    lazy.lose_unsynced();
    assert_eq!(fs::read(dir.join("wal/seg")).unwrap(), b"hello");
    assert!(!dir.join("wal/lost").exists());
    assert_eq!(lazy.status(), Status::default());
    // A directory cannot move into itself.
    let inner = lazy.mkdir(sub, OsStr::new("inner")).unwrap();
    assert!(matches!(
        lazy.rename(ROOT, OsStr::new("wal"), inner, OsStr::new("x")),
        Err(LayerError::IntoItself)
    ));
    lazy.rmdir(sub, OsStr::new("inner")).unwrap();
    // rmdir of a synced directory reaches the disk with the parent's sync.
    lazy.unlink(sub, OsStr::new("seg")).unwrap();
    lazy.rmdir(ROOT, OsStr::new("wal")).unwrap();
    assert_eq!(lazy.status().held_entries, 1 + 1);
    lazy.sync(ROOT).unwrap();
    assert!(!dir.join("wal").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_moved_out_of_a_removed_directory_keeps_its_data() {
    let (dir, mut lazy, sub) = durable_file_in_subdir("move-out", "x", "y", b"payload");
    lazy.rename(sub, OsStr::new("y"), ROOT, OsStr::new("y"))
        .unwrap();
    lazy.rmdir(ROOT, OsStr::new("x")).unwrap();
    lazy.sync(ROOT).unwrap();
    lazy.lose_unsynced();
    assert_eq!(fs::read(dir.join("y")).unwrap(), b"payload");
    assert!(!dir.join("x").exists());
    assert_eq!(visible_of(&lazy).keys().collect::<Vec<_>>(), ["y"]);
    assert_eq!(
        backing_of(&dir).len(),
        1,
        "no staging names are left behind"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_full_disk_refuses_only_what_needs_new_space() {
    let dir = temp_dir("full");
    let mut lazy = Lazy::open(&dir, 1).unwrap();
    let f = lazy.create(ROOT, OsStr::new("f")).unwrap();
    lazy.write(f, 0, &[1; 100]).unwrap();
    lazy.sync(f).unwrap();
    lazy.sync(ROOT).unwrap();
    let g = lazy.create(ROOT, OsStr::new("g")).unwrap();
    // Grown without writing: a hole, as a sparse file's.
    lazy.set_len(g, 3 * PAGE as u64).unwrap();
    lazy.set_full(true);
    assert!(lazy.status().full);

    let no_space = |r: Result<_, LayerError>| match r {
        Err(e @ LayerError::NoSpace) => assert_eq!(e.errno(), libc::ENOSPC),
        other => panic!("expected no space, got {other:?}"),
    };
    no_space(lazy.write(f, 90, &[2; 20]).map(drop));
    no_space(lazy.write(g, 0, &[2; 1]).map(drop));
    no_space(lazy.allocate(f, 0, 200, false));
    no_space(lazy.create(ROOT, OsStr::new("new")).map(drop));
    no_space(lazy.mkdir(ROOT, OsStr::new("newdir")).map(drop));
    assert_eq!(
        lazy.read(f, 0, 200).unwrap(),
        vec![1; 100],
        "nothing changed"
    );

    // Overwrites of written bytes, syncs, renames, truncation and unlink still work.
    lazy.write(f, 10, &[3; 90]).unwrap();
    lazy.allocate(f, 0, 100, false).unwrap();
    lazy.sync(f).unwrap();
    lazy.rename(ROOT, OsStr::new("f"), ROOT, OsStr::new("h"))
        .unwrap();
    lazy.sync(ROOT).unwrap();
    lazy.set_len(f, 50).unwrap();
    lazy.unlink(ROOT, OsStr::new("g")).unwrap();
    lazy.sync(f).unwrap();
    assert_eq!(fs::read(dir.join("h")).unwrap()[10..], [3; 40]);
    // Truncated bytes are given back: writing them again needs space.
    no_space(lazy.write(f, 50, &[4; 1]).map(drop));

    lazy.set_full(false);
    assert!(!lazy.status().full);
    lazy.write(f, 50, &[4; 100]).unwrap();
    lazy.create(ROOT, OsStr::new("new")).unwrap();
    lazy.allocate(f, 0, 4 * PAGE as u64, false).unwrap();
    assert_eq!(lazy.attr(f).unwrap().size, 4 * PAGE as u64);
    // Allocated, so writable while full again.
    lazy.set_full(true);
    lazy.write(f, 3 * PAGE as u64, &[5; 10]).unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn backing_files_count_their_blocks_as_allocated() {
    let dir = temp_dir("full-backing");
    fs::write(dir.join("dense"), vec![7u8; 2 * PAGE]).unwrap();
    File::create(dir.join("sparse"))
        .unwrap()
        .set_len(4 * PAGE as u64)
        .unwrap();
    let mut lazy = Lazy::open(&dir, 1).unwrap();
    lazy.set_full(true);
    let dense = lazy.lookup(ROOT, OsStr::new("dense")).unwrap();
    let sparse = lazy.lookup(ROOT, OsStr::new("sparse")).unwrap();
    lazy.write(dense, 0, &[1; 2 * PAGE]).unwrap();
    assert!(matches!(
        lazy.write(sparse, 0, &[1; 10]),
        Err(LayerError::NoSpace)
    ));
    fs::remove_dir_all(&dir).unwrap();
}
