//! The `corrupt` fault's targets: a bit flipped where `storage::damage::target` points makes
//! recovery refuse to start, naming the file and the record's offset; flipping it back
//! restores every entry. Seeds vary the target; each failure names its seed.

use model::core::{Entry, EntryKind, HardState, Index};
use model::kv::{Command, Operation, Value};
use node::storage::damage::{flip, target};
use node::storage::{Storage, StorageError, StorageOptions};
use std::path::PathBuf;

fn entry(index: Index) -> Entry<Command> {
    Entry {
        term: 1,
        index,
        kind: EntryKind::Command(Command {
            client: 3,
            seq: index,
            op: Operation::Write {
                key: format!("k{}", index % 5),
                value: Value::Str(format!("v{index}")),
            },
            time_ms: index,
        }),
    }
}

fn fresh_dir(seed: u64) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("raftlab-damage-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_flipped_synced_record_is_refused_by_name_and_repaired_by_flipping_back() {
    for seed in 0..24u64 {
        let dir = fresh_dir(seed);
        // Small segments: targets fall in sealed segments and in the tail's earlier commits.
        let opts = StorageOptions {
            segment_bytes: 512,
            ..StorageOptions::default()
        };
        {
            let (mut storage, _) = Storage::open(&dir, opts).unwrap();
            let hs = HardState {
                term: 1,
                voted_for: Some(1),
            };
            storage.persist(Some(hs), None, &[]).unwrap();
            for batch in 0..8u64 {
                let batch: Vec<_> = (batch * 5 + 1..=batch * 5 + 5).map(entry).collect();
                storage.persist(None, None, &batch).unwrap();
            }
        }
        let t = target(&dir, seed).unwrap().expect("synced records exist");
        flip(&t.file, t.offset, 0x10).unwrap();
        match Storage::open(&dir, opts) {
            Err(StorageError::Corrupt { file, offset, .. }) => {
                assert_eq!(file, t.file, "seed {seed}");
                assert_eq!(offset, t.record, "seed {seed}");
            }
            Err(e) => panic!("seed {seed}: {t:?}: expected corruption, got {e}"),
            Ok(_) => panic!("seed {seed}: {t:?}: the damaged log was opened"),
        }
        flip(&t.file, t.offset, 0x10).unwrap();
        let (_, restored) = Storage::open(&dir, opts).unwrap();
        assert_eq!(restored.entries.len(), 40, "seed {seed}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_log_with_only_its_last_group_commit_has_no_target() {
    let dir = fresh_dir(1000);
    {
        let (mut storage, _) = Storage::open(&dir, StorageOptions::default()).unwrap();
        storage
            .persist(
                Some(HardState {
                    term: 1,
                    voted_for: None,
                }),
                None,
                &[entry(1), entry(2)],
            )
            .unwrap();
    }
    assert_eq!(target(&dir, 7).unwrap(), None);
    let _ = std::fs::remove_dir_all(&dir);
}
