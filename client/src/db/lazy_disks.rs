//! Each node's data directory on a disk of its own that can lose power: the directory is a
//! `raft-lazyfs` mount (a FUSE filesystem that holds file data until it is fsync'd and
//! directory entries until their directory is fsync'd), so a simulated power cut really loses
//! what a node never synced. A SIGKILL alone cannot: the kernel keeps the pages a killed
//! process wrote.
//!
//! ```text
//! <data dir>/node-N/          the mount the node writes through (its usual data directory)
//! <data dir>/node-N.durable/  what reached the "disk": the backing directory
//! <cluster dir>/lazyfs/node-N.sock   the mount's control socket
//! <cluster dir>/lazyfs/node-N.log    the raft-lazyfs process's log
//! ```
//!
//! Used by the clusters whose data directories are on this machine (local processes and
//! network namespaces: namespaces share this machine's mounts). Every mount registers its
//! unmount in [`cleanup`], so Ctrl-C leaves none behind.

use crate::control::cleanup::{self, Cleanup};
use crate::control::process::wait_for;
use model::core::NodeId;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use thiserror::Error;
use tracing::{info, warn};

/// Why a cluster without lazy disks refuses the faults that need them.
pub const NEEDS_LAZY_DISKS: &str = "this fault needs each node's data directory on a lazy \
     disk (raft-lazyfs): local and --hosts netns clusters started by raft-lab run have them \
     when a nemesis needs them; clusters opened with --cluster do not";

/// How long a new mount may take to appear.
const MOUNT_PATIENCE: Duration = Duration::from_secs(10);
/// How long `raft-lazyfs` may take to exit once unmounted.
const EXIT_PATIENCE: Duration = Duration::from_secs(5);

/// What can go wrong with the lazy disks; every message names the node or the path.
#[derive(Debug, Error)]
pub enum LazyDiskError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "node {id}: {mountpoint} did not become a raft-lazyfs mount within {MOUNT_PATIENCE:?} \
         (see {log}; FUSE needs /dev/fuse and fusermount3, Debian package fuse3)"
    )]
    NotMounted {
        id: NodeId,
        mountpoint: PathBuf,
        log: PathBuf,
    },
    #[error("node {id}: no lazy disk (the cluster was made without them)")]
    NoDisk { id: NodeId },
    #[error("node {id}: the lazy disk's control socket {socket}: {source}")]
    Control {
        id: NodeId,
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("node {id}: the lazy disk refused {command:?}: {answer}")]
    Refused {
        id: NodeId,
        command: String,
        answer: String,
    },
    #[error("node {id}: cannot unmount {mountpoint}: {reason}")]
    Unmount {
        id: NodeId,
        mountpoint: PathBuf,
        reason: String,
    },
}

/// One node's mount.
#[derive(Debug)]
struct Disk {
    mountpoint: PathBuf,
    socket: PathBuf,
    process: Child,
    /// Unmounts (lazily) and kills the process on Ctrl-C, until unmounted the ordinary way.
    _unmount_on_exit: Cleanup,
}

/// The lazy disks of a cluster's nodes, mounted until [`LazyDisks::unmount_all`] or drop.
#[derive(Debug, Default)]
pub struct LazyDisks {
    disks: BTreeMap<NodeId, Disk>,
}

impl LazyDisks {
    /// Mounts a lazy disk at each `(id, data dir)` (made empty if missing), backed by
    /// `<data dir>.durable`, with control sockets and logs in `state_dir`; `seed` seeds each
    /// disk's choice of torn pages (plus the node id). Everything mounted so far is
    /// unmounted again when one fails.
    pub fn mount(
        binary: &Path,
        state_dir: &Path,
        data_dirs: &[(NodeId, PathBuf)],
        seed: u64,
    ) -> Result<LazyDisks, LazyDiskError> {
        let mut disks = LazyDisks::default();
        for (id, data_dir) in data_dirs {
            let disk = Disk::mount(binary, state_dir, *id, data_dir, seed.wrapping_add(*id))?;
            disks.disks.insert(*id, disk);
        }
        Ok(disks)
    }

    pub fn is_empty(&self) -> bool {
        self.disks.is_empty()
    }

    /// Sends one control command (`lose-unsynced`, `tear`, `checkpoint`, `status`, ...) to
    /// node `id`'s disk and returns its answer after `ok` (an `error ...` answer is an error).
    pub fn command(&self, id: NodeId, command: &str) -> Result<String, LazyDiskError> {
        let disk = self.disks.get(&id).ok_or(LazyDiskError::NoDisk { id })?;
        let answer = lazyfs::control::request(&disk.socket, command).map_err(|source| {
            LazyDiskError::Control {
                id,
                socket: disk.socket.clone(),
                source,
            }
        })?;
        match answer.strip_prefix("ok") {
            Some(rest) => Ok(rest.trim().to_string()),
            None => Err(LazyDiskError::Refused {
                id,
                command: command.to_string(),
                answer,
            }),
        }
    }

    /// Unmounts every disk (the nodes must be stopped: a busy mount is detached lazily) and
    /// waits for each `raft-lazyfs` to exit. Tries every disk; returns the first failure.
    pub fn unmount_all(&mut self) -> Result<(), LazyDiskError> {
        let mut first = None;
        for (id, disk) in std::mem::take(&mut self.disks) {
            if let Err(e) = disk.unmount(id) {
                warn!("{e}");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for LazyDisks {
    fn drop(&mut self) {
        let _ = self.unmount_all();
    }
}

impl Disk {
    fn mount(
        binary: &Path,
        state_dir: &Path,
        id: NodeId,
        mountpoint: &Path,
        seed: u64,
    ) -> Result<Disk, LazyDiskError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| LazyDiskError::Io { what, path, source }
        };
        let backing = PathBuf::from(format!("{}.durable", mountpoint.display()));
        let socket = state_dir.join(format!("node-{id}.sock"));
        let log_path = state_dir.join(format!("node-{id}.log"));
        for dir in [
            &backing,
            &mountpoint.to_path_buf(),
            &state_dir.to_path_buf(),
        ] {
            std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io("open log", &log_path))?;
        let stderr = log.try_clone().map_err(io("open log", &log_path))?;
        let mut process = Command::new(binary)
            .arg("mount")
            .arg("--backing")
            .arg(&backing)
            .arg("--mountpoint")
            .arg(mountpoint)
            .arg("--control")
            .arg(&socket)
            .arg("--seed")
            .arg(seed.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(io("start", binary))?;
        let pid = process.id();
        let unmount_at = mountpoint.to_path_buf();
        let unmount_on_exit = cleanup::register(move || {
            let _ = fusermount(&unmount_at, true);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        });
        let mounted = wait_for(MOUNT_PATIENCE, || {
            is_mount(mountpoint) || !matches!(process.try_wait(), Ok(None))
        }) && is_mount(mountpoint);
        if !mounted {
            let _ = process.kill();
            let _ = process.wait();
            return Err(LazyDiskError::NotMounted {
                id,
                mountpoint: mountpoint.to_path_buf(),
                log: log_path,
            });
        }
        info!(id, mountpoint = %mountpoint.display(), "lazy disk mounted");
        Ok(Disk {
            mountpoint: mountpoint.to_path_buf(),
            socket,
            process,
            _unmount_on_exit: unmount_on_exit,
        })
    }

    fn unmount(mut self, id: NodeId) -> Result<(), LazyDiskError> {
        let failed = |reason: String| LazyDiskError::Unmount {
            id,
            mountpoint: self.mountpoint.clone(),
            reason,
        };
        let mut result = fusermount(&self.mountpoint, false)
            .or_else(|busy| fusermount(&self.mountpoint, true).map_err(|_| busy))
            .map_err(failed);
        let exited = wait_for(EXIT_PATIENCE, || {
            !matches!(self.process.try_wait(), Ok(None))
        });
        if !exited {
            let _ = self.process.kill();
            let _ = self.process.wait();
            if result.is_ok() {
                result = Err(LazyDiskError::Unmount {
                    id,
                    mountpoint: self.mountpoint.clone(),
                    reason: "raft-lazyfs did not exit once unmounted; killed".into(),
                });
            }
        }
        let _ = std::fs::remove_file(&self.socket);
        result
    }
}

/// `fusermount3 -u [-z] MOUNTPOINT`; the tool's message when it fails.
fn fusermount(mountpoint: &Path, lazy: bool) -> Result<(), String> {
    let mut command = Command::new("fusermount3");
    command.arg("-u").arg("-q");
    if lazy {
        command.arg("-z");
    }
    let output = command
        .arg(mountpoint)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run fusermount3: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(crate::control::one_line(&String::from_utf8_lossy(
            &output.stderr,
        )))
    }
}

/// Whether `path` is the root of another filesystem than its parent's.
fn is_mount(path: &Path) -> bool {
    let (Ok(inner), Some(Ok(outer))) = (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) else {
        return false;
    };
    inner.dev() != outer.dev()
}
