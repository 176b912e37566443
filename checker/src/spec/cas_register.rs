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
    /// Keys with appends: strings grow between writes.
    type Facts = Appends;

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

    /// Keys with appends: the lengths of the strings that writes and cas set, so that
    /// [`revived_by`](Model::revived_by) can name the set values a wanted string starts with.
    fn facts(&self, ops: &[Op]) -> Option<Appends> {
        let mut appends = false;
        let mut set_lengths = Vec::new();
        for op in ops.iter().filter(|op| op.status != Status::Fail) {
            match &op.action {
                Action::Append(_) => appends = true,
                Action::Write(Value::Str(s)) | Action::Cas(_, Value::Str(s)) => {
                    set_lengths.push(s.len())
                }
                _ => {}
            }
        }
        set_lengths.sort_unstable();
        set_lengths.dedup();
        appends.then_some(Appends { set_lengths })
    }

    /// Between writes and cas the state only grows: a read of `seen` (a cas from `seen`) can
    /// still happen only if the state is `seen` or, both being strings, a prefix of it.
    fn may_still_apply(&self, _: &Appends, state: &Value, action: &Action) -> bool {
        match action {
            Action::Read(Some(wanted)) | Action::Cas(wanted, _) => grows_into(state, wanted),
            _ => true,
        }
    }

    /// A read of `seen` (a cas from `seen`) becomes possible again after a write of any
    /// value `seen` may grow from: `null`, or a prefix of `seen` of a length some write or cas
    /// sets.
    fn revived_by(&self, facts: &Appends, action: &Action) -> Vec<Value> {
        let wanted = match action {
            Action::Read(Some(wanted)) | Action::Cas(wanted, _) => wanted,
            _ => return Vec::new(),
        };
        match wanted {
            Value::Str(s) => std::iter::once(Value::Null)
                .chain(
                    facts
                        .set_lengths
                        .iter()
                        .filter_map(|&len| s.get(..len))
                        .map(|prefix| Value::Str(prefix.to_owned())),
                )
                .collect(),
            other => vec![other.clone()],
        }
    }
}

/// Whether appends alone can take `state` to `wanted`: a string only grows at its end, and
/// nothing can be appended to a number.
fn grows_into(state: &Value, wanted: &Value) -> bool {
    match (state, wanted) {
        (Value::Null, Value::Str(_)) => true,
        (Value::Str(now), Value::Str(wanted)) => wanted.starts_with(now.as_str()),
        _ => state == wanted,
    }
}

/// The facts of a key with appends (`fail` ops aside): the distinct lengths, in bytes, of
/// the strings its writes and cas set.
#[derive(Clone, Debug)]
pub struct Appends {
    set_lengths: Vec<usize>,
}
