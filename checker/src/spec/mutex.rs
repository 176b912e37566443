//! A lock: `acquire` succeeds only when free, `release` only when held.

use super::Model;
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
}
