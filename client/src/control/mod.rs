//! The bottom layer, as Jepsen's `jepsen.control`: running commands on the hosts of the nodes
//! through a command template ([`template`]), facts about local processes ([`process`]), the
//! one process-wide cleanup registry that Ctrl-C runs ([`cleanup`]), files written atomically
//! and durably ([`files`]), and small helpers every layer above uses: [`concurrently`],
//! [`locked`], [`one_line`].

pub mod cleanup;
pub mod files;
pub mod process;
pub mod template;

use std::sync::{Mutex, MutexGuard};

/// Runs `f` on every item at once (one thread each); results in item order.
pub fn concurrently<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.iter().map(&f).collect();
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|item| s.spawn(move || f(item))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Locks a process-wide registry. A poisoned one only means a panic elsewhere; every change
/// to it is one insert or remove, so it is intact.
pub fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lines trimmed and joined with spaces, empty lines dropped: a multi-line message (a
/// parser's, a command's output) for a one-line error.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
