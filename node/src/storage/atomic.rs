//! Small checksummed files replaced atomically, and the fsync helpers everything else uses.
//!
//! Format: `[crc32c u32 LE of the payload][payload]`, where the payload is the postcard
//! encoding of one value. A new version is written to `<name>.tmp`, fsynced, renamed over
//! `<name>`, and the directory is fsynced: a reader sees the old file or the new one, never
//! a mix, so any checksum failure on read is real corruption, not a torn write. A replace
//! that fails before its rename took effect removes `<name>.tmp` (on a full disk it holds
//! space, and nothing depends on it). (Under the `skip-dir-fsync` catalogue bug the
//! directory is not synced: a power cut may undo the rename, or, in a new directory, the
//! file.)

use super::{StorageError, Syncs};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// Bytes in front of the payload (the checksum).
const HEADER: usize = 4;

/// Maps an I/O error on `path` during `op` to a [`StorageError::Io`].
pub(crate) fn io_err(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io { path, op, source }
}

/// Maps an I/O error on `path` during `op`, an operation that needed new space, whose
/// caller undoes what it left: ENOSPC is [`StorageError::NoSpace`] (retryable), anything
/// else [`StorageError::Io`]. Never for fsync: a failed fsync cannot be retried.
pub(crate) fn space_err(
    path: &Path,
    op: &'static str,
) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| {
        if source.raw_os_error() == Some(nix::libc::ENOSPC) {
            StorageError::NoSpace { path, op }
        } else {
            StorageError::Io { path, op, source }
        }
    }
}

/// Makes the directory entry changes in `dir` (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync directory"))
}

fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.tmp"))
}

/// Encodes `value` as the file's bytes: checksum, then postcard payload.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    let bytes = postcard::to_extend(value, vec![0u8; HEADER])
        .map_err(|e| StorageError::Encode(e.to_string()))?;
    let crc = crc32c::crc32c(&bytes[HEADER..]);
    let mut bytes = bytes;
    bytes[..HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(bytes)
}

/// Replaces `dir/name` with `bytes` (from [`encode`]) atomically; durable on return when
/// `syncs` syncs both files and directories. Returns the file's size.
pub(crate) fn replace(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    syncs: Syncs,
) -> Result<u64, StorageError> {
    let tmp = tmp_path(dir, name);
    let path = dir.join(name);
    let written = (|| {
        let mut file = File::create(&tmp).map_err(space_err(&tmp, "create"))?;
        file.write_all(bytes).map_err(space_err(&tmp, "write"))?;
        if syncs.files {
            file.sync_all().map_err(io_err(&tmp, "fsync"))?;
        }
        drop(file);
        // A rename that fails changed nothing.
        fs::rename(&tmp, &path).map_err(space_err(&path, "rename temporary file over"))
    })();
    if let Err(e) = written {
        match fs::remove_file(&tmp) {
            Err(rm) if rm.kind() != ErrorKind::NotFound => {
                // Harmless but for its space: the next replace truncates it, and the next
                // open removes it.
                tracing::warn!(file = %tmp.display(), error = %rm, "cannot remove temporary file");
            }
            _ => {}
        }
        return Err(e);
    }
    if syncs.dirs {
        sync_dir(dir)?;
    }
    Ok(bytes.len() as u64)
}

/// Reads `dir/name` back: `None` if it does not exist, the value and the file's size
/// otherwise. A short file, a checksum mismatch or an undecodable payload is
/// [`StorageError::Corrupt`].
pub(crate) fn load<T: DeserializeOwned>(
    dir: &Path,
    name: &str,
) -> Result<Option<(T, u64)>, StorageError> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path, "read")(e)),
    };
    let corrupt = |offset: u64, reason: String| StorageError::Corrupt {
        file: path.clone(),
        offset,
        reason,
    };
    if bytes.len() < HEADER {
        return Err(corrupt(
            0,
            format!("file is {} bytes, shorter than its checksum", bytes.len()),
        ));
    }
    let (head, payload) = bytes.split_at(HEADER);
    let stored = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let actual = crc32c::crc32c(payload);
    if stored != actual {
        return Err(corrupt(
            0,
            format!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"),
        ));
    }
    match postcard::take_from_bytes::<T>(payload) {
        Ok((value, [])) => Ok(Some((value, bytes.len() as u64))),
        Ok((_, rest)) => Err(corrupt(
            (bytes.len() - rest.len()) as u64,
            format!("{} unexpected bytes after the payload", rest.len()),
        )),
        Err(e) => Err(corrupt(HEADER as u64, format!("undecodable payload: {e}"))),
    }
}

/// Removes a `<name>.tmp` left behind by a crash during [`replace`] (it never became the
/// file, so nothing depended on it).
pub(crate) fn remove_stale(dir: &Path, name: &str) -> Result<(), StorageError> {
    let tmp = tmp_path(dir, name);
    match fs::remove_file(&tmp) {
        Ok(()) => {
            tracing::info!(file = %tmp.display(), "removed a temporary file left by a crash");
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&tmp, "remove")(e)),
    }
}
