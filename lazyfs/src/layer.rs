//! The in-memory lazy layer: the merged view a process sees, over a backing directory that
//! holds only what a disk would keep after a power cut.
//!
//! - File data written is held as whole pages ([`PAGE`] bytes) until the file is synced
//!   ([`Lazy::sync`] on a file): the pages are then written to the backing file, which is
//!   fsync'd. A truncation is held too (as a low-water mark past which old bytes read as
//!   zeros) and applied at the same sync.
//! - Directory entry changes (create, mkdir, unlink, rmdir, rename) change only the visible
//!   namespace; [`Lazy::sync`] on a directory makes its backing directory equal to its
//!   visible entries (moving, creating and deleting backing entries) and fsyncs it. A
//!   rename across directories becomes durable with the destination's sync.
//! - A file synced while no durable entry names it keeps its synced bytes in memory: they
//!   reach the backing directory with the directory sync that links it.
//! - [`Lazy::lose_unsynced`] drops everything held (the state a power cut leaves);
//!   [`Lazy::tear`] first lets a seeded random subset of each file's last unsynced write
//!   reach the disk; [`Lazy::checkpoint`] syncs everything.
//!
//! A full disk ([`Lazy::set_full`]): while full, every operation that needs new blocks or
//! a new directory entry fails with [`LayerError::NoSpace`] (ENOSPC): a write or
//! [`Lazy::allocate`] past the file's allocated bytes, create and mkdir. A file's allocated
//! bytes are the prefix that writes have filled (a file grown with `set_len` has a hole
//! there, as a sparse file on a real disk; a file found in the backing directory counts its
//! backing blocks). Overwrites of allocated bytes, reads, syncs, unlink, rmdir, rename and
//! truncation still succeed. Syncs write the held pages to the backing directory whatever
//! the flag says: the space they need was granted when they were written.
//!
//! Known simplification: syncing a directory that no durable entry names yet (its parent was
//! not synced since it was created) makes nothing durable; a later sync of it, once linked,
//! does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Bytes in one held page.
pub const PAGE: usize = 4096;
/// The root directory's inode number (FUSE's).
pub const ROOT: Ino = 1;
/// Backing names used while a directory sync moves entries around (never visible).
const STAGE_PREFIX: &str = ".lazyfs-stage-";

/// An inode number of the merged view.
pub type Ino = u64;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("{}: cannot {op}: {error}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        /// Not a `source`: the message already ends with it.
        error: std::io::Error,
    },
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("a directory cannot move into itself")]
    IntoItself,
    #[error("no space left on device")]
    NoSpace,
}

impl LayerError {
    /// The errno a system call reports for this error.
    pub fn errno(&self) -> i32 {
        match self {
            LayerError::Io { error, .. } => error.raw_os_error().unwrap_or(libc::EIO),
            LayerError::NotFound => libc::ENOENT,
            LayerError::Exists => libc::EEXIST,
            LayerError::NotDir => libc::ENOTDIR,
            LayerError::IsDir => libc::EISDIR,
            LayerError::NotEmpty => libc::ENOTEMPTY,
            LayerError::IntoItself => libc::EINVAL,
            LayerError::NoSpace => libc::ENOSPC,
        }
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LayerError {
    let path = path.to_path_buf();
    move |error| LayerError::Io { op, path, error }
}

/// A file or a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// What `stat` shows of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
}

/// Counts of what is held in memory (`status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Pages written and not synced.
    pub held_pages: usize,
    /// Their bytes.
    pub held_bytes: u64,
    /// Directory entries whose visible and durable states differ.
    pub held_entries: usize,
    /// Files with an unsynced truncation.
    pub held_truncations: usize,
    /// Whether the disk is full ([`Lazy::set_full`]).
    pub full: bool,
}

#[derive(Debug, Default)]
struct FileState {
    /// Visible length.
    len: u64,
    /// Length of the synced content.
    synced_len: u64,
    /// Unsynced truncation: synced bytes at or past this read as zeros.
    zero_from: Option<u64>,
    /// Unsynced pages, whole, by page number.
    dirty: BTreeMap<u64, Vec<u8>>,
    /// Pages of the last unsynced write (for `tear`).
    last_write: Vec<u64>,
    /// Synced content while no durable entry names the file (else it is the backing file).
    orphan: Option<Vec<u8>>,
    /// Bytes from the start that have blocks: a write past them needs new space.
    allocated: u64,
}

#[derive(Debug, Default)]
struct DirState {
    visible: BTreeMap<OsString, Ino>,
    durable: BTreeMap<OsString, Ino>,
}

#[derive(Debug)]
enum Body {
    File(FileState),
    Dir(DirState),
}

#[derive(Debug)]
struct Node {
    body: Body,
    /// The durable entry naming this inode (parent, name); the root has none but is durable.
    durable_at: Option<(Ino, OsString)>,
    /// Whether a visible entry names it.
    visible: bool,
    /// Open file handles.
    open: u32,
}

/// The lazy layer over one backing directory.
#[derive(Debug)]
pub struct Lazy {
    backing: PathBuf,
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    rng: u64,
    /// The disk is full: operations needing new space fail with ENOSPC.
    full: bool,
}

impl Lazy {
    /// Opens the layer over `backing` (its whole tree becomes the durable and visible state).
    pub fn open(backing: &Path, seed: u64) -> Result<Lazy, LayerError> {
        let mut lazy = Lazy {
            backing: backing.to_path_buf(),
            nodes: HashMap::new(),
            next_ino: ROOT + 1,
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
            full: false,
        };
        lazy.nodes.insert(
            ROOT,
            Node {
                body: Body::Dir(DirState::default()),
                durable_at: None,
                visible: true,
                open: 0,
            },
        );
        lazy.scan(ROOT, backing)?;
        Ok(lazy)
    }

    fn scan(&mut self, dir: Ino, path: &Path) -> Result<(), LayerError> {
        for item in fs::read_dir(path).map_err(io_err("list", path))? {
            let item = item.map_err(io_err("list", path))?;
            let name = item.file_name();
            if name.to_string_lossy().starts_with(STAGE_PREFIX) {
                continue;
            }
            let meta = item.metadata().map_err(io_err("stat", &item.path()))?;
            let body = if meta.is_dir() {
                Body::Dir(DirState::default())
            } else if meta.is_file() {
                Body::File(FileState {
                    len: meta.len(),
                    synced_len: meta.len(),
                    // Sparse files: their blocks, as if they were a prefix.
                    allocated: meta.len().min(meta.blocks() * 512),
                    ..FileState::default()
                })
            } else {
                tracing::warn!(path = %item.path().display(), "skipping what is neither a file nor a directory");
                continue;
            };
            let ino = self.fresh(body, Some((dir, name.clone())));
            self.dir_mut(dir)?.visible.insert(name.clone(), ino);
            self.dir_mut(dir)?.durable.insert(name, ino);
            if meta.is_dir() {
                self.scan(ino, &item.path())?;
            }
        }
        Ok(())
    }

    fn fresh(&mut self, body: Body, durable_at: Option<(Ino, OsString)>) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                body,
                durable_at,
                visible: true,
                open: 0,
            },
        );
        ino
    }

    fn node(&self, ino: Ino) -> Result<&Node, LayerError> {
        self.nodes.get(&ino).ok_or(LayerError::NotFound)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, LayerError> {
        self.nodes.get_mut(&ino).ok_or(LayerError::NotFound)
    }

    fn dir(&self, ino: Ino) -> Result<&DirState, LayerError> {
        match &self.node(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(LayerError::NotDir),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut DirState, LayerError> {
        match &mut self.node_mut(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(LayerError::NotDir),
        }
    }

    fn file(&self, ino: Ino) -> Result<&FileState, LayerError> {
        match &self.node(ino)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(LayerError::IsDir),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut FileState, LayerError> {
        match &mut self.node_mut(ino)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(LayerError::IsDir),
        }
    }

    /// The backing path of `ino`'s durable entry, if a chain of durable entries reaches it.
    fn durable_path(&self, ino: Ino) -> Option<PathBuf> {
        if ino == ROOT {
            return Some(self.backing.clone());
        }
        let (parent, name) = self.nodes.get(&ino)?.durable_at.as_ref()?;
        Some(self.durable_path(*parent)?.join(name))
    }

    /// The inode `name` in `parent` names.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino, LayerError> {
        self.dir(parent)?
            .visible
            .get(name)
            .copied()
            .ok_or(LayerError::NotFound)
    }

    /// What `stat` shows of `ino`.
    pub fn attr(&self, ino: Ino) -> Result<Attr, LayerError> {
        let node = self.node(ino)?;
        Ok(match &node.body {
            Body::File(f) => Attr {
                ino,
                kind: Kind::File,
                size: f.len,
            },
            Body::Dir(d) => Attr {
                ino,
                kind: Kind::Dir,
                size: d.visible.len() as u64,
            },
        })
    }

    /// The visible entries of `dir`, by name.
    pub fn readdir(&self, dir: Ino) -> Result<Vec<(OsString, Attr)>, LayerError> {
        self.dir(dir)?
            .visible
            .iter()
            .map(|(name, &ino)| Ok((name.clone(), self.attr(ino)?)))
            .collect()
    }

    fn add_entry(&mut self, parent: Ino, name: &OsStr, body: Body) -> Result<Ino, LayerError> {
        if self.dir(parent)?.visible.contains_key(name) {
            return Err(LayerError::Exists);
        }
        if self.full {
            return Err(LayerError::NoSpace);
        }
        let ino = self.fresh(body, None);
        self.dir_mut(parent)?.visible.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// Creates an empty file (held until `parent` is synced).
    pub fn create(&mut self, parent: Ino, name: &OsStr) -> Result<Ino, LayerError> {
        let body = Body::File(FileState {
            orphan: Some(Vec::new()),
            ..FileState::default()
        });
        self.add_entry(parent, name, body)
    }

    /// Creates an empty directory (held until `parent` is synced).
    pub fn mkdir(&mut self, parent: Ino, name: &OsStr) -> Result<Ino, LayerError> {
        self.add_entry(parent, name, Body::Dir(DirState::default()))
    }

    /// Removes the file `name` from `parent` (held until `parent` is synced).
    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<(), LayerError> {
        let ino = self.lookup(parent, name)?;
        self.file(ino)?;
        self.detach(parent, name, ino)
    }

    /// Removes the empty directory `name` from `parent` (held until `parent` is synced).
    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<(), LayerError> {
        let ino = self.lookup(parent, name)?;
        if !self.dir(ino)?.visible.is_empty() {
            return Err(LayerError::NotEmpty);
        }
        self.detach(parent, name, ino)
    }

    fn detach(&mut self, parent: Ino, name: &OsStr, ino: Ino) -> Result<(), LayerError> {
        self.dir_mut(parent)?.visible.remove(name);
        self.node_mut(ino)?.visible = false;
        self.collect(ino);
        Ok(())
    }

    /// Forgets `ino` if nothing names it or holds it open any more.
    fn collect(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.get(&ino) {
            if ino != ROOT && !node.visible && node.open == 0 && node.durable_at.is_none() {
                self.nodes.remove(&ino);
            }
        }
    }

    /// Renames (replacing a file, or an empty directory with a directory); held until the
    /// destination directory is synced.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
    ) -> Result<(), LayerError> {
        let ino = self.lookup(parent, name)?;
        self.dir(new_parent)?;
        if self.visibly_under(new_parent, ino) {
            return Err(LayerError::IntoItself);
        }
        if let Ok(old) = self.lookup(new_parent, new_name) {
            if old == ino {
                return Ok(());
            }
            match (self.attr(ino)?.kind, &self.node(old)?.body) {
                (Kind::File, Body::Dir(_)) => return Err(LayerError::IsDir),
                (Kind::Dir, Body::File(_)) => return Err(LayerError::NotDir),
                (Kind::Dir, Body::Dir(d)) if !d.visible.is_empty() => {
                    return Err(LayerError::NotEmpty)
                }
                _ => {}
            }
            self.detach(new_parent, new_name, old)?;
        }
        self.dir_mut(parent)?.visible.remove(name);
        self.dir_mut(new_parent)?
            .visible
            .insert(new_name.to_owned(), ino);
        Ok(())
    }

    /// Whether `ino` is `dir` or visibly inside it.
    fn visibly_under(&self, ino: Ino, dir: Ino) -> bool {
        ino == dir
            || self.dir(dir).is_ok_and(|d| {
                d.visible
                    .values()
                    .any(|&child| self.visibly_under(ino, child))
            })
    }

    /// Notes an open handle on `ino` (an unlinked file stays readable while open).
    pub fn opened(&mut self, ino: Ino) -> Result<(), LayerError> {
        self.node_mut(ino)?.open += 1;
        Ok(())
    }

    /// Notes a handle on `ino` closed.
    pub fn released(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.open = node.open.saturating_sub(1);
        }
        self.collect(ino);
    }

    /// `len` bytes of `ino`'s synced content from `offset`, zeros past its end.
    fn read_synced(&self, ino: Ino, offset: u64, len: usize) -> Result<Vec<u8>, LayerError> {
        let f = self.file(ino)?;
        let mut buf = vec![0u8; len];
        if let Some(orphan) = &f.orphan {
            let start = (offset.min(orphan.len() as u64)) as usize;
            let end = (offset + len as u64).min(orphan.len() as u64) as usize;
            buf[..end - start].copy_from_slice(&orphan[start..end]);
        } else if let Some(path) = self.durable_path(ino) {
            let file = File::open(&path).map_err(io_err("open", &path))?;
            let mut done = 0;
            while done < len {
                let n = file
                    .read_at(&mut buf[done..], offset + done as u64)
                    .map_err(io_err("read", &path))?;
                if n == 0 {
                    break;
                }
                done += n;
            }
        }
        if let Some(z) = f.zero_from {
            let from = z.saturating_sub(offset).min(len as u64) as usize;
            buf[from..].fill(0);
        }
        Ok(buf)
    }

    /// What a read of `size` bytes at `offset` returns (short at the end of the file).
    pub fn read(&self, ino: Ino, offset: u64, size: usize) -> Result<Vec<u8>, LayerError> {
        let f = self.file(ino)?;
        let end = (offset + size as u64).min(f.len);
        if end <= offset {
            return Ok(Vec::new());
        }
        let mut buf = self.read_synced(ino, offset, (end - offset) as usize)?;
        let page = PAGE as u64;
        for (&no, data) in f.dirty.range(offset / page..=(end - 1) / page) {
            let start = (no * page).max(offset);
            let stop = ((no + 1) * page).min(end);
            buf[(start - offset) as usize..(stop - offset) as usize]
                .copy_from_slice(&data[(start - no * page) as usize..(stop - no * page) as usize]);
        }
        Ok(buf)
    }

    /// Writes `data` at `offset` (held in memory until the file is synced).
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<(), LayerError> {
        let page = PAGE as u64;
        let end = offset + data.len() as u64;
        let allocated = self.file(ino)?.allocated;
        if self.full && end > allocated {
            return Err(LayerError::NoSpace);
        }
        let mut touched = Vec::new();
        if !data.is_empty() {
            for no in offset / page..=(end - 1) / page {
                let start = (no * page).max(offset);
                let stop = ((no + 1) * page).min(end);
                if !self.file(ino)?.dirty.contains_key(&no) {
                    // A page the write covers whole need not be read first.
                    let current = if stop - start == page {
                        vec![0; PAGE]
                    } else {
                        self.read_page(ino, no)?
                    };
                    self.file_mut(ino)?.dirty.insert(no, current);
                }
                let f = self.file_mut(ino)?;
                if let Some(p) = f.dirty.get_mut(&no) {
                    p[(start - no * page) as usize..(stop - no * page) as usize].copy_from_slice(
                        &data[(start - offset) as usize..(stop - offset) as usize],
                    );
                }
                touched.push(no);
            }
        }
        let f = self.file_mut(ino)?;
        f.len = f.len.max(end);
        f.allocated = f.allocated.max(end);
        f.last_write = touched;
        Ok(())
    }

    /// fallocate: blocks for `offset..offset + len`, growing the file to cover them unless
    /// `keep_size`. Fails with [`LayerError::NoSpace`] when full and new blocks are needed.
    pub fn allocate(
        &mut self,
        ino: Ino,
        offset: u64,
        len: u64,
        keep_size: bool,
    ) -> Result<(), LayerError> {
        let end = offset.saturating_add(len);
        let f = self.file(ino)?;
        if end <= f.allocated {
            return Ok(());
        }
        if self.full {
            return Err(LayerError::NoSpace);
        }
        if !keep_size && end > f.len {
            self.set_len(ino, end)?;
        }
        let f = self.file_mut(ino)?;
        // Blocks past the end (KEEP_SIZE) are not modelled: a later write there asks again.
        f.allocated = f.allocated.max(end.min(f.len));
        Ok(())
    }

    /// Fills the disk (`true`) or gives its space back (`false`).
    pub fn set_full(&mut self, full: bool) {
        self.full = full;
    }

    /// Whether the disk is full.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The visible content of page `no`, whole (zeros past the end of the file).
    fn read_page(&self, ino: Ino, no: u64) -> Result<Vec<u8>, LayerError> {
        let mut page = self.read(ino, no * PAGE as u64, PAGE)?;
        page.resize(PAGE, 0);
        Ok(page)
    }

    /// Sets the file's length (held until the file is synced).
    pub fn set_len(&mut self, ino: Ino, len: u64) -> Result<(), LayerError> {
        let f = self.file_mut(ino)?;
        f.allocated = f.allocated.min(len);
        if len < f.len {
            f.zero_from = Some(f.zero_from.map_or(len, |z| z.min(len)));
            let page = PAGE as u64;
            let first_gone = len.div_ceil(page);
            f.dirty.retain(|&no, _| no < first_gone);
            if len % page != 0 {
                if let Some(p) = f.dirty.get_mut(&(len / page)) {
                    p[(len % page) as usize..].fill(0);
                }
            }
        }
        f.len = len;
        Ok(())
    }

    /// fsync: a file's held data and length reach the disk; a directory's backing entries
    /// become its visible ones.
    pub fn sync(&mut self, ino: Ino) -> Result<(), LayerError> {
        match self.node(ino)?.body {
            Body::File(_) => self.sync_file(ino),
            Body::Dir(_) => self.sync_dir(ino),
        }
    }

    fn sync_file(&mut self, ino: Ino) -> Result<(), LayerError> {
        let path = self.durable_path(ino);
        let f = self.file_mut(ino)?;
        let page = PAGE as u64;
        let len = f.len;
        let pages = std::mem::take(&mut f.dirty);
        let zero_from = f.zero_from.take();
        f.last_write.clear();
        if let Some(orphan) = &mut f.orphan {
            if let Some(z) = zero_from {
                orphan.truncate(z as usize);
            }
            orphan.resize(len as usize, 0);
            for (no, data) in &pages {
                let start = (no * page).min(len) as usize;
                let stop = ((no + 1) * page).min(len) as usize;
                orphan[start..stop].copy_from_slice(&data[..stop - start]);
            }
        } else if let Some(path) = path {
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err("open", &path))?;
            if let Some(z) = zero_from {
                file.set_len(z).map_err(io_err("truncate", &path))?;
            }
            write_pages(&file, &path, &pages, len, pages.keys().copied())?;
            file.set_len(len).map_err(io_err("truncate", &path))?;
            file.sync_all().map_err(io_err("fsync", &path))?;
        }
        self.file_mut(ino)?.synced_len = len;
        Ok(())
    }

    fn sync_dir(&mut self, dir: Ino) -> Result<(), LayerError> {
        let Some(dir_path) = self.durable_path(dir) else {
            tracing::debug!(dir, "directory sync before the directory itself is durable");
            return Ok(());
        };
        let d = self.dir(dir)?;
        let visible = d.visible.clone();
        let durable = d.durable.clone();
        // Entries leaving their names are moved aside first (keeping their durable entry,
        // under a staging name, so that what is under them stays reachable), so that swaps,
        // chains and moves out of a removed directory work.
        let mut staged = Vec::new();
        for (name, &ino) in &durable {
            if visible.get(name) != Some(&ino) {
                let stage = OsString::from(format!("{STAGE_PREFIX}{ino}"));
                let from = dir_path.join(name);
                fs::rename(&from, dir_path.join(&stage)).map_err(io_err("rename", &from))?;
                let d = self.dir_mut(dir)?;
                d.durable.remove(name);
                d.durable.insert(stage.clone(), ino);
                self.node_mut(ino)?.durable_at = Some((dir, stage.clone()));
                staged.push((ino, stage));
            }
        }
        let mut other_dirs = HashSet::new();
        for (name, &ino) in &visible {
            if durable.get(name) == Some(&ino) {
                continue;
            }
            let to = dir_path.join(name);
            if let (Some(from), Some((p, n))) =
                (self.durable_path(ino), self.node(ino)?.durable_at.clone())
            {
                fs::rename(&from, &to).map_err(io_err("rename", &from))?;
                self.dir_mut(p)?.durable.remove(&n);
                if p != dir {
                    other_dirs.insert(p);
                }
            } else {
                match &mut self.node_mut(ino)?.body {
                    Body::File(f) => {
                        let content = f.orphan.take().unwrap_or_default();
                        let file = File::create(&to).map_err(io_err("create", &to))?;
                        // Sparse like the file it stands for: zero pages stay holes.
                        file.set_len(content.len() as u64)
                            .map_err(io_err("truncate", &to))?;
                        for (no, chunk) in content.chunks(PAGE).enumerate() {
                            if chunk.iter().any(|&b| b != 0) {
                                file.write_all_at(chunk, (no * PAGE) as u64)
                                    .map_err(io_err("write", &to))?;
                            }
                        }
                        file.sync_all().map_err(io_err("fsync", &to))?;
                    }
                    Body::Dir(d) => {
                        fs::create_dir(&to).map_err(io_err("create directory", &to))?;
                        d.durable.clear();
                    }
                }
            }
            self.node_mut(ino)?.durable_at = Some((dir, name.clone()));
            self.dir_mut(dir)?.durable.insert(name.clone(), ino);
        }
        for (ino, stage) in staged {
            if self.dir(dir)?.durable.get(&stage) != Some(&ino) {
                continue; // placed under a visible name above
            }
            let path = dir_path.join(&stage);
            self.forget_durable(ino, &path)?;
            self.dir_mut(dir)?.durable.remove(&stage);
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(io_err("remove", &path))?;
        }
        fsync_dir(&dir_path)?;
        for p in other_dirs {
            if let Some(path) = self.durable_path(p) {
                fsync_dir(&path)?;
            }
        }
        Ok(())
    }

    /// `ino` (at backing `path`, about to be deleted) and what is under it lose their
    /// durable entries: a file still named or open keeps its synced bytes in memory.
    fn forget_durable(&mut self, ino: Ino, path: &Path) -> Result<(), LayerError> {
        let Some(node) = self.nodes.get(&ino) else {
            return Ok(());
        };
        let keep = node.visible || node.open > 0;
        let children = match &node.body {
            Body::Dir(d) => d.durable.clone(),
            Body::File(_) => BTreeMap::new(),
        };
        if keep {
            let content = match &node.body {
                Body::File(_) => Some(fs::read(path).map_err(io_err("read", path))?),
                Body::Dir(_) => None,
            };
            let node = self.node_mut(ino)?;
            node.durable_at = None;
            match &mut node.body {
                Body::File(f) => f.orphan = content,
                Body::Dir(d) => d.durable.clear(),
            }
        } else {
            self.node_mut(ino)?.durable_at = None;
        }
        for (name, child) in children {
            self.forget_durable(child, &path.join(name))?;
        }
        self.collect(ino);
        Ok(())
    }

    /// The power cut: every held write, truncation and directory change is dropped.
    pub fn lose_unsynced(&mut self) {
        let mut gone = Vec::new();
        for (&ino, node) in &mut self.nodes {
            if ino != ROOT && node.durable_at.is_none() {
                gone.push(ino);
                continue;
            }
            node.visible = true;
            match &mut node.body {
                Body::File(f) => {
                    f.dirty.clear();
                    f.last_write.clear();
                    f.zero_from = None;
                    f.len = f.synced_len;
                    f.allocated = f.allocated.min(f.len);
                }
                Body::Dir(d) => d.visible = d.durable.clone(),
            }
        }
        for ino in gone {
            self.nodes.remove(&ino);
        }
    }

    /// A torn power cut: of each file's last unsynced write, a seeded random subset of its
    /// pages reaches the disk first; then everything else held is lost. Returns the pages
    /// kept and dropped.
    pub fn tear(&mut self) -> Result<(usize, usize), LayerError> {
        let (mut kept, mut dropped) = (0, 0);
        let mut inos: Vec<Ino> = self.nodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let Body::File(f) = &self.node(ino)?.body else {
                continue;
            };
            if f.last_write.is_empty() {
                continue;
            }
            let last = f.last_write.clone();
            let chosen: Vec<u64> = last.iter().copied().filter(|_| self.coin()).collect();
            kept += chosen.len();
            dropped += last.len() - chosen.len();
            let path = self.durable_path(ino);
            let f = self.file_mut(ino)?;
            let len = f.len;
            let end = chosen
                .iter()
                .map(|no| ((no + 1) * PAGE as u64).min(len))
                .max()
                .unwrap_or(0);
            if let Some(orphan) = &mut f.orphan {
                if orphan.len() < end as usize {
                    orphan.resize(end as usize, 0);
                }
                for no in &chosen {
                    let start = (no * PAGE as u64) as usize;
                    let stop = ((no + 1) * PAGE as u64).min(len) as usize;
                    if let Some(data) = f.dirty.get(no) {
                        orphan[start..stop].copy_from_slice(&data[..stop - start]);
                    }
                }
            } else if let Some(path) = path {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err("open", &path))?;
                write_pages(&file, &path, &f.dirty, len, chosen.iter().copied())?;
                file.sync_all().map_err(io_err("fsync", &path))?;
            }
            f.synced_len = f.synced_len.max(end);
        }
        self.lose_unsynced();
        Ok((kept, dropped))
    }

    /// One seeded fair coin flip (splitmix64).
    fn coin(&mut self) -> bool {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) & 1 == 1
    }

    /// Syncs every file, then every directory from the root down: nothing stays held.
    pub fn checkpoint(&mut self) -> Result<(), LayerError> {
        let mut files: Vec<Ino> = self
            .nodes
            .iter()
            .filter(|(_, n)| matches!(n.body, Body::File(_)))
            .map(|(&ino, _)| ino)
            .collect();
        files.sort_unstable();
        for ino in files {
            self.sync_file(ino)?;
        }
        let mut queue = vec![ROOT];
        while let Some(dir) = queue.pop() {
            self.sync_dir(dir)?;
            for &child in self.dir(dir)?.visible.values() {
                if matches!(self.node(child)?.body, Body::Dir(_)) {
                    queue.push(child);
                }
            }
        }
        Ok(())
    }

    /// Counts of what is held.
    pub fn status(&self) -> Status {
        let mut s = Status {
            full: self.full,
            ..Status::default()
        };
        for node in self.nodes.values() {
            match &node.body {
                Body::File(f) => {
                    s.held_pages += f.dirty.len();
                    s.held_bytes += (f.dirty.len() * PAGE) as u64;
                    s.held_truncations += usize::from(f.zero_from.is_some());
                }
                Body::Dir(d) => {
                    let differ = |a: &BTreeMap<OsString, Ino>, b: &BTreeMap<OsString, Ino>| {
                        a.iter().filter(|(k, v)| b.get(*k) != Some(v)).count()
                    };
                    s.held_entries +=
                        differ(&d.visible, &d.durable) + differ(&d.durable, &d.visible);
                }
            }
        }
        s
    }
}

/// Writes the given held `pages` (clipped to the file length `len`) into `file` at `path`.
fn write_pages(
    file: &File,
    path: &Path,
    held: &BTreeMap<u64, Vec<u8>>,
    len: u64,
    pages: impl Iterator<Item = u64>,
) -> Result<(), LayerError> {
    for no in pages {
        let start = no * PAGE as u64;
        if start >= len {
            continue;
        }
        let stop = ((no + 1) * PAGE as u64).min(len);
        if let Some(data) = held.get(&no) {
            file.write_all_at(&data[..(stop - start) as usize], start)
                .map_err(io_err("write", path))?;
        }
    }
    Ok(())
}

fn fsync_dir(path: &Path) -> Result<(), LayerError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", path))
}

#[cfg(test)]
mod tests;
