//! Bit rot on purpose, for the lab's `corrupt` fault: where in a stopped node's log a flipped
//! bit must make [`super::Storage::open`] refuse to start (naming the file and offset) rather
//! than be mistaken for a torn tail. That is any byte of a record's payload outside the last
//! group commit: those records were synced and acknowledged, so damage to them is data loss
//! the node must not paper over.

use super::wal::{decode_record, is_batch_mark, parse_segment_name, Record, BATCH_MARK, HEADER};
use super::StorageError;
use std::fs;
use std::path::{Path, PathBuf};

/// One byte of a log segment to damage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub file: PathBuf,
    /// Byte offset of the damaged byte in `file`.
    pub offset: u64,
    /// Byte offset of the record holding it (what recovery reports).
    pub record: u64,
}

/// A byte of a synced record in the log of the data directory `data_dir`, chosen by `seed`
/// among all of them; `None` when the log holds no record outside its last group commit.
pub fn target(data_dir: &Path, seed: u64) -> Result<Option<Target>, StorageError> {
    let wal_dir = data_dir.join("wal");
    let io = |path: &Path, op| super::atomic::io_err(path, op);
    let mut segments: Vec<(u64, PathBuf)> = Vec::new();
    for item in fs::read_dir(&wal_dir).map_err(io(&wal_dir, "list"))? {
        let item = item.map_err(io(&wal_dir, "list"))?;
        if let Some(first) = item.file_name().to_str().and_then(parse_segment_name) {
            segments.push((first, item.path()));
        }
    }
    segments.sort();
    // (file, record offset, payload offset, payload length) of every synced record.
    let mut candidates: Vec<(usize, u64, u64, u64)> = Vec::new();
    for (i, (_, path)) in segments.iter().enumerate() {
        let bytes = fs::read(path).map_err(io(path, "read"))?;
        let is_last = i + 1 == segments.len();
        let mut records = Vec::new();
        let mut last_mark = 0;
        let mut at = 0;
        while at < bytes.len() {
            if is_batch_mark(&bytes, at) {
                last_mark = at;
                at += BATCH_MARK.len();
                continue;
            }
            match decode_record(&bytes, at) {
                Record::Entry { end, .. } => {
                    let len = end - at - HEADER;
                    records.push((at as u64, (at + HEADER) as u64, len as u64));
                    at = end;
                }
                Record::Undecodable(_) | Record::Bad(_) => break,
            }
        }
        // The last segment's last group commit may be torn by a crash: not a target.
        records.retain(|(record, _, _)| !is_last || (*record as usize) < last_mark);
        candidates.extend(records.into_iter().map(|(r, p, l)| (i, r, p, l)));
    }
    if candidates.is_empty() {
        return Ok(None);
    }
    let mixed = splitmix(seed);
    let (segment, record, payload, len) = candidates[(mixed % candidates.len() as u64) as usize];
    Ok(Some(Target {
        file: segments[segment].1.clone(),
        offset: payload + splitmix(mixed) % len,
        record,
    }))
}

/// A well-mixed 64-bit function of `x` (SplitMix64's finaliser), so neighbouring seeds pick
/// unrelated bytes.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// XORs `mask` into the byte at `offset` of `file` and syncs it (applying it twice restores
/// the byte).
pub fn flip(file: &Path, offset: u64, mask: u8) -> Result<(), StorageError> {
    use std::os::unix::fs::FileExt;
    let io = |op| super::atomic::io_err(file, op);
    let handle = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .map_err(io("open"))?;
    let mut byte = [0u8; 1];
    handle
        .read_exact_at(&mut byte, offset)
        .map_err(io("read"))?;
    byte[0] ^= mask;
    handle.write_all_at(&byte, offset).map_err(io("write"))?;
    handle.sync_all().map_err(io("fsync"))
}
