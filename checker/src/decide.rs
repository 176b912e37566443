//! Deciding one key: the fastest sound and complete algorithm that applies to its ops.
//!
//! Shared by [`crate::check`] (every key) and [`crate::explain`] (prefixes of an invalid
//! key), so that neither needs the other's internals.

use crate::budget::{Budget, KeyOutcome};
use crate::history::Op;
use crate::spec::{CasRegister, ModelKind, Mutex};
use crate::{register, search};
use serde::Serialize;

/// Which algorithm decided a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Unique written values: the polynomial register check.
    Register,
    /// The general memoised search.
    Search,
}

/// Runs the fastest sound and complete algorithm that applies to these ops.
pub fn decide(ops: &[Op], model: &ModelKind, budget: &Budget) -> (KeyOutcome, Method) {
    match model {
        ModelKind::CasRegister { initial } => match register::check(ops, initial, budget) {
            Some(outcome) => (outcome, Method::Register),
            None => (
                search::check(&CasRegister::new(initial.clone()), ops, budget),
                Method::Search,
            ),
        },
        ModelKind::Mutex => (search::check(&Mutex, ops, budget), Method::Search),
    }
}
