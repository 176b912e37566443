//! The `snapshot` file: the latest state-machine snapshot with its metadata, replaced
//! atomically (see [`super::atomic`] for the format and the write protocol). Only one
//! snapshot is kept; the log segments it covers are dropped after it is durable.

use super::atomic;
use super::{StorageError, Syncs};
use model::core::Snapshot;
use std::path::Path;

/// The file's name inside the data directory.
pub(crate) const FILE: &str = "snapshot";

/// Reads the stored snapshot and its size on disk; `None` if none was ever written.
pub(crate) fn load(dir: &Path) -> Result<Option<(Snapshot, u64)>, StorageError> {
    atomic::load::<Snapshot>(dir, FILE)
}

/// Replaces the stored snapshot (durable on return when `syncs` syncs files and directories); returns its size on disk.
pub(crate) fn store(dir: &Path, snapshot: &Snapshot, syncs: Syncs) -> Result<u64, StorageError> {
    let bytes = atomic::encode(snapshot)?;
    atomic::replace(dir, FILE, &bytes, syncs)
}
