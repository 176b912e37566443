//! The one process-wide cleanup registry. Whatever the lab changes outside its own memory (a
//! node process it started, a node it paused, an nftables table, rules on remote hosts, a
//! network namespace) registers how to undo it, and deregisters when it undid it itself. On
//! Ctrl-C, [`run_all`] runs every undo still registered, at once, so an interrupted run
//! leaves no frozen node, no stray process and no drop rule behind.

use super::locked;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

type Undo = Box<dyn FnOnce() + Send>;

/// Undos by key; `hosts` run after `undos` (what runs on a host goes before the host).
struct Registry {
    undos: BTreeMap<u64, Undo>,
    hosts: BTreeMap<u64, Undo>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    undos: BTreeMap::new(),
    hosts: BTreeMap::new(),
});
static NEXT: AtomicU64 = AtomicU64::new(0);
static RAN: AtomicBool = AtomicBool::new(false);

/// A registered undo. Dropping it deregisters the undo without running it: the resource was
/// cleaned up the ordinary way.
#[derive(Debug)]
#[must_use = "dropping the handle deregisters the undo"]
pub struct Cleanup {
    key: u64,
}

impl Cleanup {
    /// The undo has not run yet: [`run_all`] did not take it.
    pub fn pending(&self) -> bool {
        let registry = locked(&REGISTRY);
        registry.undos.contains_key(&self.key) || registry.hosts.contains_key(&self.key)
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut registry = locked(&REGISTRY);
        registry.undos.remove(&self.key);
        registry.hosts.remove(&self.key);
    }
}

/// Registers `undo` for [`run_all`].
pub fn register(undo: impl FnOnce() + Send + 'static) -> Cleanup {
    let key = NEXT.fetch_add(1, Ordering::Relaxed);
    locked(&REGISTRY).undos.insert(key, Box::new(undo));
    Cleanup { key }
}

/// Registers the removal of a host (a network namespace) for [`run_all`]: it runs after every
/// other undo, which may still need the host.
pub fn register_host(undo: impl FnOnce() + Send + 'static) -> Cleanup {
    let key = NEXT.fetch_add(1, Ordering::Relaxed);
    locked(&REGISTRY).hosts.insert(key, Box::new(undo));
    Cleanup { key }
}

/// Undoes everything still registered: every undo at once (each on a thread of its own, so
/// a slow remote host delays no other), then the hosts. Afterwards [`ran`] is true: clusters
/// refuse to start nodes (a nemesis healing a kill would otherwise restart one). Idempotent;
/// safe while the resources still exist (their own cleanup then finds nothing to do).
pub fn run_all() {
    RAN.store(true, Ordering::SeqCst);
    let (undos, hosts) = {
        let mut registry = locked(&REGISTRY);
        (
            std::mem::take(&mut registry.undos),
            std::mem::take(&mut registry.hosts),
        )
    };
    run_at_once(undos);
    run_at_once(hosts);
}

fn run_at_once(undos: BTreeMap<u64, Undo>) {
    std::thread::scope(|s| {
        for undo in undos.into_values() {
            s.spawn(undo);
        }
    });
}

/// Whether [`run_all`] has run in this process.
pub fn ran() -> bool {
    RAN.load(Ordering::SeqCst)
}
