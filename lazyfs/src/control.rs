//! The control socket: a unix stream socket on which each line is one command, answered by
//! one line.
//!
//! | command | effect | answer |
//! | --- | --- | --- |
//! | `lose-unsynced` | drop every held write, truncation and directory change: what a power cut leaves | `ok` |
//! | `tear` | of each file's last unsynced write, a seeded random subset of pages reaches the disk; then as `lose-unsynced` | `ok kept=K dropped=D` (pages) |
//! | `checkpoint` | sync everything, as if every file and directory were fsync'd | `ok` |
//! | `fill` | the disk is full from now on: writes past a file's allocated bytes, fallocate, create and mkdir fail with ENOSPC (overwrites, reads, fsync, unlink, rename and truncation still work) | `ok` |
//! | `free` | the space returns | `ok` |
//! | `status` | count what is held, and whether the disk is full | `ok held_pages=P held_bytes=B held_entries=E held_truncations=T full=true\|false` |
//!
//! Anything else, or a command that fails, answers `error <reason>`. A connection may send
//! any number of commands; commands are applied between FUSE requests (the layer is locked).

use crate::layer::Lazy;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// The layer shared by the FUSE session and the control socket.
pub type Shared = Arc<Mutex<Lazy>>;

/// Locks the layer; a panic elsewhere while holding it leaves a consistent-enough layer
/// (every operation validates before mutating), so poisoning is ignored.
pub fn lock(shared: &Shared) -> MutexGuard<'_, Lazy> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Applies one command line to the layer and returns the answer line (without newline).
pub fn execute(lazy: &mut Lazy, line: &str) -> String {
    match line.trim() {
        "lose-unsynced" => {
            lazy.lose_unsynced();
            "ok".to_string()
        }
        "tear" => match lazy.tear() {
            Ok((kept, dropped)) => format!("ok kept={kept} dropped={dropped}"),
            Err(e) => format!("error {e}"),
        },
        "checkpoint" => match lazy.checkpoint() {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error {e}"),
        },
        "fill" => {
            lazy.set_full(true);
            "ok".to_string()
        }
        "free" => {
            lazy.set_full(false);
            "ok".to_string()
        }
        "status" => {
            let s = lazy.status();
            format!(
                "ok held_pages={} held_bytes={} held_entries={} held_truncations={} full={}",
                s.held_pages, s.held_bytes, s.held_entries, s.held_truncations, s.full
            )
        }
        other => format!(
            "error unknown command {other:?} (lose-unsynced, tear, checkpoint, fill, free, status)"
        ),
    }
}

/// Accepts connections forever, answering each one's lines in turn.
pub fn serve(listener: &UnixListener, layer: &Shared) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(stream, layer) {
                    tracing::warn!(error = %e, "control connection failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
        }
    }
}

fn answer(stream: UnixStream, layer: &Shared) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        let reply = execute(&mut lock(layer), &line);
        tracing::info!(command = line.trim(), %reply, "control");
        writeln!(out, "{reply}")?;
    }
    Ok(())
}

/// Sends one command to the control socket at `socket` and returns its answer line.
pub fn request(socket: &Path, command: &str) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    writeln!(stream, "{command}")?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    Ok(reply.trim_end().to_string())
}
