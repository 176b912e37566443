//! The FUSE filesystem: each request is answered from the [`Lazy`] layer, and [`spawn`]
//! mounts it with its control socket.
//!
//! Files are opened with `FOPEN_DIRECT_IO` and attributes and entries are never cached, so
//! every read and write reaches the layer and a `lose-unsynced` is seen at once. Supported:
//! lookup, getattr, setattr (size only; times are accepted and ignored), create, mkdir,
//! unlink, rmdir, rename (without flags), open, read, write, flush, release, fsync,
//! opendir, readdir, releasedir, fsyncdir, statfs, access and fallocate (modes 0 and
//! `FALLOC_FL_KEEP_SIZE`). `flock` and POSIX locks are
//! not forwarded: the kernel then keeps them itself, per mount, which is what one data
//! directory's LOCK needs. Everything else answers ENOSYS and is logged (symlink and link
//! here, which answer ENOSPC instead while the disk is full; the rest by fuser's defaults, whose `log` records the binary routes into `tracing`). Permissions are not kept: files show mode 0644,
//! directories 0755, owned by the backing directory's owner.

use crate::control::{self, lock, Shared};
use crate::layer::{Attr, Kind, LayerError, Lazy};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Nothing is cached by the kernel: a power cut must be visible at once.
const TTL: Duration = Duration::ZERO;

/// Why mounting failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error("{}: cannot {op}: {error}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        /// Not a `source`: the message already ends with it.
        error: std::io::Error,
    },
}

/// The FUSE filesystem over a shared layer.
pub struct LazyFs {
    layer: Shared,
    uid: u32,
    gid: u32,
}

/// A running mount: the FUSE session (in its own thread) and the control socket's thread.
pub struct Mount {
    session: fuser::BackgroundSession,
}

impl Mount {
    /// Unmounts and waits for the session's thread.
    pub fn unmount(self) -> std::io::Result<()> {
        self.session.umount_and_join()
    }

    /// Waits until the filesystem is unmounted from outside (`fusermount3 -u`).
    pub fn join(self) -> std::io::Result<()> {
        self.session.join()
    }
}

/// Why mounts cannot be made on this machine (`None`: they can): /dev/fuse and
/// `fusermount3` (Debian package `fuse3`) are needed.
pub fn unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|d| d.join("fusermount3").is_file()) {
        return Some("fusermount3 is not on PATH (Debian package fuse3)".into());
    }
    None
}

/// Mounts `backing` at `mountpoint`, answering control commands on the unix socket
/// `control` (replaced if present). The control thread lives as long as the process. With
/// `auto_unmount` (as root only), the mount is removed when the process dies, however it
/// dies; such a mount must be unmounted from outside (`fusermount3 -u`), not by
/// [`Mount::unmount`], and at most one per process.
pub fn spawn(
    backing: &Path,
    mountpoint: &Path,
    control: &Path,
    seed: u64,
    auto_unmount: bool,
) -> Result<Mount, MountError> {
    let meta = std::fs::metadata(backing).map_err(|error| MountError::Io {
        op: "stat",
        path: backing.to_path_buf(),
        error,
    })?;
    let layer: Shared = Arc::new(Mutex::new(Lazy::open(backing, seed)?));
    match std::fs::remove_file(control) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(MountError::Io {
                op: "remove stale socket",
                path: control.to_path_buf(),
                error: e,
            })
        }
        _ => {}
    }
    let listener = UnixListener::bind(control).map_err(|error| MountError::Io {
        op: "bind",
        path: control.to_path_buf(),
        error,
    })?;
    let served = Arc::clone(&layer);
    std::thread::Builder::new()
        .name("lazyfs-control".into())
        .spawn(move || control::serve(&listener, &served))
        .map_err(|error| MountError::Io {
            op: "spawn control thread for",
            path: control.to_path_buf(),
            error,
        })?;
    let fs = LazyFs {
        layer: Arc::clone(&layer),
        uid: meta.uid(),
        gid: meta.gid(),
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![fuser::MountOption::FSName("raft-lazyfs".into())];
    // The mount goes away with this process however it ends (fusermount3 watches it), so a
    // killed lab leaves no dead mount behind. It needs `allow_root`, which only root may set
    // without `user_allow_other` in /etc/fuse.conf.
    // SAFETY: geteuid has no preconditions and cannot fail.
    if auto_unmount && unsafe { libc::geteuid() } == 0 {
        config.mount_options.push(fuser::MountOption::AutoUnmount);
        config.acl = fuser::SessionACL::RootAndOwner;
    }
    let session = fuser::spawn_mount(fs, mountpoint, &config).map_err(|error| MountError::Io {
        op: "mount",
        path: mountpoint.to_path_buf(),
        error,
    })?;
    Ok(Mount { session })
}

fn errno(e: &LayerError) -> Errno {
    tracing::debug!(error = %e, "request failed");
    Errno::from_i32(e.errno())
}

impl LazyFs {
    /// Refuses an entry kind the layer does not support: ENOSPC on a full disk (as any new
    /// entry there), else ENOSYS.
    fn refuse_new_entry(&self, reply: ReplyEntry) {
        if lock(&self.layer).is_full() {
            reply.error(Errno::ENOSPC);
        } else {
            reply.error(Errno::ENOSYS);
        }
    }

    fn file_attr(&self, a: Attr) -> FileAttr {
        let now = SystemTime::now();
        let (kind, perm, nlink) = match a.kind {
            Kind::File => (FileType::RegularFile, 0o644, 1),
            Kind::Dir => (FileType::Directory, 0o755, 2),
        };
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: crate::layer::PAGE as u32,
            flags: 0,
        }
    }

    fn reply_entry(&self, result: Result<Attr, LayerError>, reply: ReplyEntry) {
        match result {
            Ok(a) => reply.entry(&TTL, &self.file_attr(a), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn reply_attr(&self, result: Result<Attr, LayerError>, reply: ReplyAttr) {
        match result {
            Ok(a) => reply.attr(&TTL, &self.file_attr(a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn reply_empty(result: Result<(), LayerError>, reply: ReplyEmpty) {
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let layer = lock(&self.layer);
        let result = layer.lookup(parent.0, name).and_then(|ino| layer.attr(ino));
        self.reply_entry(result, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.reply_attr(lock(&self.layer).attr(ino.0), reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if mode.is_some() || uid.is_some() || gid.is_some() {
            tracing::warn!(
                ino = ino.0,
                ?mode,
                ?uid,
                ?gid,
                "chmod/chown are not supported"
            );
            reply.error(Errno::ENOSYS);
            return;
        }
        let mut layer = lock(&self.layer);
        let result = match size {
            Some(len) => layer.set_len(ino.0, len),
            None => Ok(()),
        };
        self.reply_attr(result.and_then(|()| layer.attr(ino.0)), reply);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut layer = lock(&self.layer);
        let result = layer.mkdir(parent.0, name).and_then(|ino| layer.attr(ino));
        self.reply_entry(result, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::reply_empty(lock(&self.layer).unlink(parent.0, name), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::reply_empty(lock(&self.layer).rmdir(parent.0, name), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            tracing::warn!(%flags, "rename flags (RENAME_NOREPLACE, RENAME_EXCHANGE) are not supported");
            reply.error(Errno::ENOSYS);
            return;
        }
        let result = lock(&self.layer).rename(parent.0, name, newparent.0, newname);
        Self::reply_empty(result, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match lock(&self.layer).opened(ino.0) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut layer = lock(&self.layer);
        let result = layer.create(parent.0, name).and_then(|ino| {
            layer.opened(ino)?;
            layer.attr(ino)
        });
        match result {
            Ok(a) => reply.created(
                &TTL,
                &self.file_attr(a),
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match lock(&self.layer).read(ino.0, offset, size as usize) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match lock(&self.layer).write(ino.0, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.layer).released(ino.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::reply_empty(lock(&self.layer).sync(ino.0), reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match lock(&self.layer).readdir(ino.0) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(&e)),
        };
        let dots = [
            (OsStr::new(".").to_owned(), ino.0, FileType::Directory),
            (OsStr::new("..").to_owned(), ino.0, FileType::Directory),
        ];
        let all = dots.into_iter().chain(entries.into_iter().map(|(name, a)| {
            let kind = match a.kind {
                Kind::File => FileType::RegularFile,
                Kind::Dir => FileType::Directory,
            };
            (name, a.ino, kind)
        }));
        for (i, (name, child, kind)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        // The layer syncs a file or a directory alike.
        self.fsync(req, ino, fh, datasync, reply);
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        tracing::warn!(parent = parent.0, ?link_name, "symlink is not supported");
        self.refuse_new_entry(reply);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        _newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        tracing::warn!(ino = ino.0, ?newname, "hard links are not supported");
        self.refuse_new_entry(reply);
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let keep_size = match mode {
            0 => false,
            libc::FALLOC_FL_KEEP_SIZE => true,
            other => {
                tracing::warn!(ino = ino.0, mode = other, "fallocate mode is not supported");
                reply.error(Errno::EOPNOTSUPP);
                return;
            }
        };
        let result = lock(&self.layer).allocate(ino.0, offset, length, keep_size);
        Self::reply_empty(result, reply);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        Self::reply_empty(lock(&self.layer).attr(ino.0).map(|_: Attr| ()), reply);
    }
}

/// The inode numbers the layer uses are FUSE's (the root is 1).
const _: () = assert!(crate::layer::ROOT == INodeNo::ROOT.0);
