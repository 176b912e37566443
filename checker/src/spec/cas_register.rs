//! The compare-and-set register: read, write, cas, and append on string values.

use super::{Effect, Model};
use crate::history::{Action, Func, Op, Status, Value};
use aho_corasick::AhoCorasick;
use hashbrown::HashSet;

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
    /// [`revived_by`](Model::revived_by) can name the set values a wanted string starts with,
    /// and the appended strings no read or cas ever holds.
    fn facts(&self, ops: &[Op]) -> Option<Appends> {
        let mut appended: Vec<&str> = Vec::new();
        let mut wanted: Vec<&str> = Vec::new();
        let mut set_lengths = Vec::new();
        for op in ops.iter().filter(|op| op.status != Status::Fail) {
            match &op.action {
                Action::Append(s) => appended.push(s),
                Action::Write(Value::Str(s)) => set_lengths.push(s.len()),
                Action::Cas(expected, new) => {
                    if let Value::Str(s) = new {
                        set_lengths.push(s.len());
                    }
                    if let Value::Str(s) = expected {
                        wanted.push(s);
                    }
                }
                Action::Read(Some(Value::Str(s))) => wanted.push(s),
                _ => {}
            }
        }
        if appended.is_empty() {
            return None;
        }
        set_lengths.sort_unstable();
        set_lengths.dedup();
        let unread = unread(appended, &wanted);
        Some(Appends {
            set_lengths,
            unread: unread.iter().map(|s| s.to_string()).collect(),
            unreadable: unread.first().map(|s| Value::Str(s.to_string())),
        })
    }

    /// A state that holds an appended string no read or cas holds can never be read, nor
    /// can a cas apply to it, nor anything appended to it make it readable: until the next
    /// write, every such state allows the same ops. So the search keeps one of them, the
    /// [`Appends::unreadable`] state, instead of one per order of the appends that led there
    /// (with puts hiding appends nobody saw, that was every order of them).
    fn step_given(&self, facts: &Appends, state: &Value, action: &Action) -> Option<Value> {
        if let (Action::Append(suffix), Some(unreadable)) = (action, &facts.unreadable) {
            if !matches!(state, Value::Int(_))
                && (state == unreadable || facts.unread.contains(suffix.as_str()))
            {
                return Some(unreadable.clone());
            }
        }
        self.step(state, action)
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

/// The facts of a key with appends (`fail` ops aside).
#[derive(Clone, Debug)]
pub struct Appends {
    /// The distinct lengths, in bytes, of the strings its writes and cas set.
    set_lengths: Vec<usize>,
    /// Appended strings that no `ok` read's value and no cas's expected value holds.
    unread: HashSet<String>,
    /// The one state that stands for every state holding an unread string: the first of
    /// them, alone (`None` when there are none).
    unreadable: Option<Value>,
}

/// The appended strings that occur in none of the `wanted` strings, sorted: one pass over
/// the wanted strings with an automaton of every appended one. Empty when the automaton
/// cannot be built (it then claims nothing).
fn unread<'a>(mut appended: Vec<&'a str>, wanted: &[&str]) -> Vec<&'a str> {
    appended.sort_unstable();
    appended.dedup();
    let Ok(automaton) = AhoCorasick::new(&appended) else {
        return Vec::new();
    };
    let mut seen = vec![false; appended.len()];
    for haystack in wanted {
        for found in automaton.find_overlapping_iter(*haystack) {
            seen[found.pattern().as_usize()] = true;
        }
    }
    appended
        .into_iter()
        .zip(seen)
        .filter(|(_, seen)| !seen)
        .map(|(s, _)| s)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;

    fn op(action: Action) -> Op {
        Op {
            id: 0,
            process: 0,
            key: Value::Null,
            action,
            status: Status::Ok,
            invoke: 0,
            complete: Some(1),
            invoke_line: 1,
            complete_line: Some(2),
            index: 0,
            invoke_time: None,
            complete_time: None,
        }
    }

    fn str(s: &str) -> Value {
        Value::Str(s.into())
    }

    #[test]
    fn unread_appends_are_those_no_read_or_cas_holds() {
        assert_eq!(
            unread(vec!["b,", "a,", "c,"], &["a,b,", "xc,"]),
            Vec::<&str>::new()
        );
        assert_eq!(unread(vec!["b,", "a,", "c,"], &["a,"]), vec!["b,", "c,"]);
        // A cas's expected value counts as read; a failed op's does not.
        let model = CasRegister::new(Value::Null);
        let mut failed = op(Action::Read(Some(str("c,"))));
        failed.status = Status::Fail;
        let ops = [
            op(Action::Append("a,".into())),
            op(Action::Append("b,".into())),
            op(Action::Append("c,".into())),
            op(Action::Cas(str("b,"), str("p,"))),
            failed,
        ];
        let facts = model.facts(&ops).unwrap();
        assert_eq!(facts.unreadable, Some(str("a,")));
        assert!(facts.unread.contains("c,") && !facts.unread.contains("b,"));
    }

    #[test]
    fn every_state_holding_an_unread_string_is_one() {
        let model = CasRegister::new(Value::Null);
        let ops = [
            op(Action::Append("a,".into())),
            op(Action::Append("b,".into())),
            op(Action::Append("c,".into())),
            op(Action::Read(Some(str("c,")))),
        ];
        let facts = model.facts(&ops).unwrap();
        let run = |order: &[&str]| {
            order.iter().try_fold(str("p,"), |state, s| {
                model.step_given(&facts, &state, &Action::Append((*s).into()))
            })
        };
        // "a," and "b," are never read: both orders, and "c," after them, end alike.
        assert_eq!(run(&["a,", "b,"]), run(&["b,", "a,"]));
        assert_eq!(run(&["a,", "b,", "c,"]), run(&["b,"]));
        // Appends of read strings grow the state as usual, and writes reset it.
        assert_eq!(run(&["c,"]), Some(str("p,c,")));
        let after = model.step_given(&facts, &str("a,"), &Action::Write(str("q,")));
        assert_eq!(after, Some(str("q,")));
    }
}
