//! The compare-and-set register: read, write, cas, and append on string values.

use super::Model;
use crate::history::{Action, Func, Value};

/// A register holding a [`Value`]; `Null` means empty.
#[derive(Clone, Debug)]
pub struct CasRegister {
    initial: Value,
}

impl CasRegister {
    pub fn new(initial: Value) -> Self {
        CasRegister { initial }
    }
}

impl Model for CasRegister {
    type State = Value;

    fn init(&self) -> Value {
        self.initial.clone()
    }

    fn step(&self, state: &Value, action: &Action) -> Option<Value> {
        match action {
            Action::Read(None) => Some(state.clone()),
            Action::Read(Some(seen)) => (seen == state).then(|| state.clone()),
            Action::Write(v) => Some(v.clone()),
            Action::Cas(expected, new) => (expected == state).then(|| new.clone()),
            Action::Append(suffix) => match state {
                Value::Null => Some(Value::Str(suffix.clone())),
                Value::Str(s) => Some(Value::Str(format!("{s}{suffix}"))),
                // Appending to a number is undefined in the history format: impossible.
                Value::Int(_) => None,
            },
            Action::Acquire | Action::Release => None,
        }
    }

    fn accepts(&self, f: Func) -> bool {
        matches!(f, Func::Read | Func::Write | Func::Cas | Func::Append)
    }
}
