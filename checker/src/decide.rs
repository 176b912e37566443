//! Deciding one key: the fastest sound and complete algorithm that applies to its ops.
//!
//! Shared by [`crate::check`] (every key) and [`crate::explain`] (prefixes of an invalid
//! key), so that neither needs the other's internals.

use crate::budget::{Budget, KeyOutcome, Want};
use crate::history::Op;
use crate::register::Conflict;
use crate::spec::{CasRegister, ModelKind, Mutex};
use crate::{append, register, search};
use serde::Serialize;

/// Which algorithm decided a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Unique written values: the polynomial register check.
    Register,
    /// Unique prefix-free puts and appends: reduced to the register check.
    Append,
    /// The general memoised search.
    Search,
}

/// What [`decide`] found.
#[derive(Clone, Debug)]
pub struct Decision {
    pub outcome: KeyOutcome,
    pub method: Method,
    /// For a refuted key, where the conflict shows in the history, when the algorithm can
    /// say (the register fast path can): a hint for [`crate::explain`].
    pub conflict: Option<Conflict>,
}

/// Runs the fastest sound and complete algorithm that applies to these ops. With
/// [`Want::Verdict`] a `Linearizable` order may be empty.
pub fn decide(ops: &[Op], model: &ModelKind, budget: &Budget, want: Want) -> Decision {
    let decision = |outcome, method| Decision {
        outcome,
        method,
        conflict: None,
    };
    match model {
        ModelKind::CasRegister { initial } => {
            if let Some((outcome, conflict)) =
                register::check_with_conflict(ops, initial, budget, want)
            {
                Decision {
                    outcome,
                    method: Method::Register,
                    conflict,
                }
            } else if let Some((outcome, conflict)) =
                append::check_with_conflict(ops, initial, budget, want)
            {
                Decision {
                    outcome,
                    method: Method::Append,
                    conflict,
                }
            } else {
                decision(
                    search::check(&CasRegister::new(initial.clone()), ops, budget),
                    Method::Search,
                )
            }
        }
        ModelKind::Mutex => decision(search::check(&Mutex, ops, budget), Method::Search),
    }
}
