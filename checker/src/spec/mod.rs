//! Sequential specifications that histories are checked against.
//!
//! A [`Model`] says, for a state and an operation, whether the operation could have produced
//! its observed result in that state and what state follows. Adding a model (a set, a queue)
//! means implementing this trait and naming it in [`ModelKind`].

pub mod cas_register;
pub mod mutex;

pub use cas_register::CasRegister;
pub use mutex::Mutex;

use crate::history::{Action, Func, Op, Value};
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification of one independent object (one key).
pub trait Model: Send + Sync {
    /// The object's state; hashed and compared by the search's memoisation.
    type State: Clone + Eq + Hash + Debug + Send + Sync;

    /// Facts about one key's ops, from [`facts`](Model::facts) (`()` when a model has none).
    type Facts;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `action` is applied to `state`, or `None` if the action's observed
    /// result is impossible in `state` (a read that saw another value, a cas that succeeded
    /// on a different value, a release of a free lock).
    fn step(&self, state: &Self::State, action: &Action) -> Option<Self::State>;

    /// Whether the model can interpret operations with this `f` at all.
    fn accepts(&self, f: Func) -> bool;

    // What follows is optional knowledge for the search's dead-end tests (see
    // `crate::search`); the defaults say nothing, which is always sound.

    /// The state `action` needs to apply, if it needs exactly one (a read of `v`, a cas
    /// from `v`); `None` when it applies in several or the model does not say.
    fn needs(&self, _action: &Action) -> Option<Self::State> {
        None
    }

    /// What `action` does to the state, as far as the model can say without the state.
    fn effect(&self, _action: &Action) -> Effect<Self::State> {
        Effect::Unknown
    }

    /// What the search may assume about one key's ops (`ops`, `fail` ones included) to cut
    /// dead ends with [`may_still_apply`](Model::may_still_apply); `None` when nothing.
    fn facts(&self, _ops: &[Op]) -> Option<Self::Facts> {
        None
    }

    /// [`step`](Model::step), knowing the key's facts: a model may map states that allow
    /// exactly the same sequences of this key's ops to one of them, so that the search
    /// explores them once.
    fn step_given(
        &self,
        _facts: &Self::Facts,
        state: &Self::State,
        action: &Action,
    ) -> Option<Self::State> {
        self.step(state, action)
    }

    /// `false` only if no sequence of this key's ops that do not set the state (no op whose
    /// [`effect`](Model::effect) is [`Effect::Sets`]) can take `state` to one in which
    /// `action`, an `ok` op not yet linearized, is legal: a conservative test, so that the
    /// search can drop a step after which some op that must still happen never can.
    fn may_still_apply(
        &self,
        _facts: &Self::Facts,
        _state: &Self::State,
        _action: &Action,
    ) -> bool {
        true
    }

    /// The states set by ops ([`Effect::Sets`]) after which `action` may be legal again
    /// where [`may_still_apply`](Model::may_still_apply) says no: every such state, and any
    /// others the model cannot rule out. The search keeps `action` in reach while an op that
    /// sets one of them is still to apply.
    fn revived_by(&self, _facts: &Self::Facts, _action: &Action) -> Vec<Self::State> {
        Vec::new()
    }
}

/// What an op does to the state when it applies, for the search's dead-end test: with every
/// op's effect known, a state an op needs can come back only through an op still to apply
/// that sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect<S> {
    /// Leaves the state as it was (a read).
    Keeps,
    /// Leaves this state whatever it was before (`write v`, `cas _ v`).
    Sets(S),
    /// Anything else (an append, or a model that does not say).
    Unknown,
}

/// The models `raft-check --model` offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// Read / write / cas / append on independent registers starting at `initial`.
    CasRegister { initial: Value },
    /// Acquire / release of a lock per key.
    Mutex,
}

impl ModelKind {
    /// The name used by `--model`.
    pub fn name(&self) -> &'static str {
        match self {
            ModelKind::CasRegister { .. } => "cas-register",
            ModelKind::Mutex => "mutex",
        }
    }

    /// Whether this model interprets operations with this `f`.
    pub fn accepts(&self, f: Func) -> bool {
        match self {
            ModelKind::CasRegister { initial } => CasRegister::new(initial.clone()).accepts(f),
            ModelKind::Mutex => Mutex.accepts(f),
        }
    }
}
