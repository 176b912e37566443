//! Deciding one key: the fastest sound and complete algorithm that applies to its ops.
//!
//! Shared by [`crate::check`] (every key) and [`crate::explain`] (prefixes of an invalid
//! key), so that neither needs the other's internals.

use crate::budget::{Budget, KeyOutcome};
use crate::history::Op;
use crate::spec::{CasRegister, ModelKind, Mutex};
use crate::{append, register, search};
use serde::Serialize;

/// Which algorithm decided a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Unique written values: the polynomial register check.
    Register,
    /// Unique prefix-free appends: the linear append check.
    Append,
    /// The general memoised search.
    Search,
}

/// Runs the fastest sound and complete algorithm that applies to these ops.
pub fn decide(ops: &[Op], model: &ModelKind, budget: &Budget) -> (KeyOutcome, Method) {
    match model {
        ModelKind::CasRegister { initial } => {
            if let Some(outcome) = register::check(ops, initial, budget) {
                (outcome, Method::Register)
            } else if let Some(outcome) = append::check(ops, initial, budget) {
                (outcome, Method::Append)
            } else {
                (
                    search::check(&CasRegister::new(initial.clone()), ops, budget),
                    Method::Search,
                )
            }
        }
        ModelKind::Mutex => (search::check(&Mutex, ops, budget), Method::Search),
    }
}
