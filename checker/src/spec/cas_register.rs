//! The compare-and-set register: read, write, cas, and append on string values.

use super::{Effect, Model};
use crate::history::{Action, Func, Op, Status, Value};

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
    /// Only appends and reads: every state is a prefix of every later one.
    type Facts = GrowsOnly;

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

    fn facts(&self, ops: &[Op]) -> Option<GrowsOnly> {
        ops.iter()
            .filter(|op| op.status != Status::Fail)
            .all(|op| matches!(op.action, Action::Read(_) | Action::Append(_)))
            .then_some(GrowsOnly)
    }

    fn needs(&self, action: &Action) -> Option<Value> {
        match action {
            Action::Read(Some(v)) | Action::Cas(v, _) => Some(v.clone()),
            _ => None,
        }
    }

    fn effect(&self, action: &Action) -> Effect<Value> {
        match action {
            Action::Read(_) => Effect::Keeps,
            Action::Write(v) | Action::Cas(_, v) => Effect::Sets(v.clone()),
            _ => Effect::Unknown,
        }
    }

    /// With only appends, the state only grows: a read of `seen` can still happen only if
    /// the state is `seen` or a prefix of it.
    fn may_still_apply(&self, _: &GrowsOnly, state: &Value, action: &Action) -> bool {
        match (action, state) {
            (Action::Read(Some(seen)), Value::Str(now)) => {
                matches!(seen, Value::Str(seen) if seen.starts_with(now.as_str()))
            }
            // Nothing appended yet: `null` or any string may still be read.
            (Action::Read(Some(seen)), Value::Null) => !matches!(seen, Value::Int(_)),
            // Appends to a number are impossible: it stays.
            (Action::Read(Some(seen)), Value::Int(_)) => seen == state,
            _ => true,
        }
    }
}

/// The facts of a key with only appends and reads (`fail` ops aside).
#[derive(Clone, Copy, Debug)]
pub struct GrowsOnly;
