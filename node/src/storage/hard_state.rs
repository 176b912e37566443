//! The `hardstate` file: the current term and vote, replaced atomically on every change
//! (see [`super::atomic`] for the format and the write protocol).

use super::atomic;
use super::{StorageError, Syncs};
use model::core::HardState;
use std::path::Path;

/// The file's name inside the data directory.
pub(crate) const FILE: &str = "hardstate";

/// Reads the stored hard state; `None` if none was ever written.
pub(crate) fn load(dir: &Path) -> Result<Option<HardState>, StorageError> {
    Ok(atomic::load::<HardState>(dir, FILE)?.map(|(hs, _)| hs))
}

/// Replaces the stored hard state (durable on return when `syncs` syncs files and directories).
pub(crate) fn store(dir: &Path, hard_state: &HardState, syncs: Syncs) -> Result<(), StorageError> {
    let bytes = atomic::encode(hard_state)?;
    atomic::replace(dir, FILE, &bytes, syncs).map(drop)
}
