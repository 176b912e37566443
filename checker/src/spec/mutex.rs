//! A lock: `acquire` succeeds only when free, `release` only when held.

use super::{Effect, Model};
use crate::history::{Action, Func};

/// The mutex model; its state is "held".
#[derive(Clone, Copy, Debug, Default)]
pub struct Mutex;

impl Model for Mutex {
    type State = bool;
    type Facts = ();

    fn init(&self) -> bool {
        false
    }

    fn step(&self, held: &bool, action: &Action) -> Option<bool> {
        match action {
            Action::Acquire => (!held).then_some(true),
            Action::Release => held.then_some(false),
            _ => None,
        }
    }

    fn accepts(&self, f: Func) -> bool {
        matches!(f, Func::Acquire | Func::Release)
    }

    fn needs(&self, action: &Action) -> Option<bool> {
        match action {
            Action::Acquire => Some(false),
            Action::Release => Some(true),
            _ => None,
        }
    }

    fn effect(&self, action: &Action) -> Effect<bool> {
        match action {
            Action::Acquire => Effect::Sets(true),
            Action::Release => Effect::Sets(false),
            _ => Effect::Unknown,
        }
    }
}
