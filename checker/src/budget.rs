//! Limits on a check: a deadline, a memory budget, and cancellation shared by all keys.
//!
//! The search polls [`Budget::exhausted`] and charges its memo tables with
//! [`Budget::charge`]; when either limit is hit the verdict is `unknown`, never a guess.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// Why a check gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    Timeout,
    Memory,
    /// Another key already decided the verdict (first invalid key stops the rest).
    Cancelled,
}

impl GiveUp {
    /// The words reports use for a give-up reason.
    pub fn name(self) -> &'static str {
        match self {
            GiveUp::Timeout => "timeout",
            GiveUp::Memory => "memory limit",
            GiveUp::Cancelled => "cancelled",
        }
    }
}

/// Shared limits for one `check` call.
#[derive(Debug)]
pub struct Budget {
    deadline: Option<Instant>,
    memory_limit: usize,
    memory_used: AtomicUsize,
    cancelled: AtomicBool,
}

impl Budget {
    /// A budget ending at `deadline` (if any) and allowing `memory_limit` bytes of search state.
    pub fn new(deadline: Option<Instant>, memory_limit: usize) -> Self {
        Budget {
            deadline,
            memory_limit,
            memory_used: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
        }
    }

    /// No deadline and no practical memory limit (tests, small histories).
    pub fn unlimited() -> Self {
        Budget::new(None, usize::MAX)
    }

    /// Whether the search must stop now, and why.
    pub fn exhausted(&self) -> Option<GiveUp> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Some(GiveUp::Cancelled);
        }
        if self.memory_used.load(Ordering::Relaxed) > self.memory_limit {
            return Some(GiveUp::Memory);
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Some(GiveUp::Timeout),
            _ => None,
        }
    }

    /// Records `bytes` more of search state; returns the give-up reason once over budget.
    pub fn charge(&self, bytes: usize) -> Option<GiveUp> {
        let used = self.memory_used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        (used > self.memory_limit).then_some(GiveUp::Memory)
    }

    /// Returns `bytes` when a key's search finishes and frees its tables.
    pub fn release(&self, bytes: usize) {
        self.memory_used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// A budget with the same deadline and memory limit but nothing used and not cancelled:
    /// explaining an anomaly must not be stopped by the cancellation that anomaly caused.
    pub fn fresh(&self) -> Budget {
        Budget::new(self.deadline, self.memory_limit)
    }

    /// Stops every search sharing this budget.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

/// What a decision must produce besides its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// The verdict alone: a fast path then leaves a `Linearizable` order empty instead of
    /// sorting its placements into one (most of its work on a valid key).
    Verdict,
    /// A `Linearizable` outcome lists its linearization.
    Witness,
}

/// The verdict for one key's operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOutcome {
    /// A witness: positions (in the key's op slice) of the ops that took effect, in
    /// linearization order. `info` ops left out did not take effect.
    Linearizable(Vec<usize>),
    NotLinearizable,
    Unknown(GiveUp),
}
