//! Pairs invocations with completions (Jepsen semantics), turning events into [`Op`]s.
//!
//! Each process has at most one operation in flight: its invoke is completed by the process's
//! next `ok`, `fail` or `info` event. An invoke that is never completed is indeterminate, like
//! `info`. Here every value is also given the shape its `f` requires, so the checker never
//! sees a malformed action.

use super::{Action, Event, EventType, Func, Op, RawValue, Status, Value};
use crate::error::HistoryError;
use hashbrown::HashMap;

/// Pairs `events` (client events in real-time order, as the parsers return them) into ops.
///
/// Positions are indices into `events`. The result is ordered by invocation and `Op::id` is
/// the position in it. Errors name the offending line: an invoke while the process still has
/// one pending, a completion without a pending invoke, a completion whose `f` or key differs
/// from its invoke, an `ok` write/cas/append whose value differs from its invoke's, or a value
/// of the wrong shape for its `f`.
pub fn pair(events: &[Event]) -> Result<Vec<Op>, HistoryError> {
    let mut pairer = Pairer::with_capacity(events.len());
    for event in events {
        pairer.push(event.clone())?;
    }
    Ok(pairer.finish())
}

/// [`pair`] one event at a time, taking each by value: the parsers hand their events over
/// as they go, so no second copy of the history's events or values is ever made.
#[derive(Debug, Default)]
pub struct Pairer {
    ops: Vec<Op>,
    /// Process -> id of its pending op.
    pending: InFlight,
    /// Position of the next event.
    position: usize,
}

impl Pairer {
    /// A pairer expecting about `events` events (half of them invokes).
    pub fn with_capacity(events: usize) -> Self {
        Pairer {
            ops: Vec::with_capacity(events / 2 + 1),
            pending: InFlight::default(),
            position: 0,
        }
    }

    /// Adds the next event of the history; the errors are [`pair`]'s.
    pub fn push(&mut self, event: Event) -> Result<(), HistoryError> {
        let position = self.position;
        self.position += 1;
        if event.kind == EventType::Invoke {
            if let Some(earlier) = self
                .pending
                .get(event.process)
                .and_then(|id| self.ops.get(id))
            {
                return Err(HistoryError::at(
                    event.line,
                    format!(
                        "process {} invokes {} while its {} invoked at line {} is still pending \
                         (a process has at most one operation in flight)",
                        event.process,
                        event.f.name(),
                        earlier.action.func().name(),
                        earlier.invoke_line
                    ),
                ));
            }
            let id = self.ops.len();
            let action = invoke_action(event.line, event.f, event.value)?;
            self.ops.push(Op {
                id,
                process: event.process,
                key: event.key,
                action,
                // Until a completion says otherwise, the op never completed: indeterminate.
                status: Status::Info,
                invoke: position,
                complete: None,
                invoke_line: event.line,
                complete_line: None,
                index: event.index.unwrap_or(position as u64),
                invoke_time: event.time,
                complete_time: None,
            });
            self.pending.insert(event.process, id);
        } else {
            let op = self
                .pending
                .remove(event.process)
                .and_then(|id| self.ops.get_mut(id))
                .ok_or_else(|| {
                    HistoryError::at(
                        event.line,
                        format!(
                            "{} {} by process {} has no pending invoke",
                            kind_name(event.kind),
                            event.f.name(),
                            event.process
                        ),
                    )
                })?;
            complete(op, event, position)?;
        }
        Ok(())
    }

    /// The ops, ordered by invocation.
    pub fn finish(self) -> Vec<Op> {
        self.ops
    }
}

/// Each process's op in flight: a table indexed by process for the small numbers clients
/// use (a hash lookup per event was a third of the pairing), a map for the rest (Jepsen
/// gives a crashed process's successor a number one concurrency higher, without bound).
#[derive(Debug, Default)]
struct InFlight {
    small: Vec<usize>,
    large: HashMap<u64, usize>,
}

/// Processes below this are in the table; `NONE` marks a process with nothing in flight.
const SMALL_PROCESSES: u64 = 1 << 16;
const NONE: usize = usize::MAX;

impl InFlight {
    fn get(&self, process: u64) -> Option<usize> {
        match usize::try_from(process) {
            Ok(p) if process < SMALL_PROCESSES => {
                self.small.get(p).copied().filter(|&id| id != NONE)
            }
            _ => self.large.get(&process).copied(),
        }
    }

    fn insert(&mut self, process: u64, id: usize) {
        match usize::try_from(process) {
            Ok(p) if process < SMALL_PROCESSES => {
                if self.small.len() <= p {
                    self.small.resize(p + 1, NONE);
                }
                self.small[p] = id;
            }
            _ => {
                self.large.insert(process, id);
            }
        }
    }

    fn remove(&mut self, process: u64) -> Option<usize> {
        match usize::try_from(process) {
            Ok(p) if process < SMALL_PROCESSES => self
                .small
                .get_mut(p)
                .map(|slot| std::mem::replace(slot, NONE))
                .filter(|&id| id != NONE),
            _ => self.large.remove(&process),
        }
    }
}

fn kind_name(kind: EventType) -> &'static str {
    match kind {
        EventType::Invoke => "invoke",
        EventType::Ok => "ok",
        EventType::Fail => "fail",
        EventType::Info => "info",
    }
}

/// The action an invoke of `f` at `line` asks for, with its `value` checked against `f`.
fn invoke_action(line: usize, f: Func, value: RawValue) -> Result<Action, HistoryError> {
    let shape_error = |expected: &str, value: &RawValue| {
        Err(HistoryError::at(
            line,
            format!(
                "{} invoke value must be {expected}, got {}",
                f.name(),
                show(value)
            ),
        ))
    };
    match (f, value) {
        // Jepsen read invokes carry nil; any other scalar is tolerated and ignored.
        (Func::Read, RawValue::Scalar(_)) => Ok(Action::Read(None)),
        (Func::Read, value @ RawValue::Pair(..)) => shape_error("null", &value),
        (Func::Write, RawValue::Scalar(value)) => Ok(Action::Write(value)),
        (Func::Write, value @ RawValue::Pair(..)) => shape_error("a single value", &value),
        (Func::Cas, RawValue::Pair(old, new)) => Ok(Action::Cas(old, new)),
        (Func::Cas, value @ RawValue::Scalar(_)) => shape_error("[old, new]", &value),
        (Func::Append, RawValue::Scalar(Value::Str(s))) => Ok(Action::Append(s)),
        (Func::Append, value) => Err(HistoryError::at(
            line,
            format!("append value must be a string, got {}", show(&value)),
        )),
        (Func::Acquire, _) => Ok(Action::Acquire),
        (Func::Release, _) => Ok(Action::Release),
    }
}

/// Fills in `op` from its completion `event`.
fn complete(op: &mut Op, event: Event, position: usize) -> Result<(), HistoryError> {
    let fail = |message: String| Err(HistoryError::at(event.line, message));
    if event.f != op.action.func() {
        return fail(format!(
            "{} {} by process {} completes a {} invoked at line {}",
            kind_name(event.kind),
            event.f.name(),
            event.process,
            op.action.func().name(),
            op.invoke_line
        ));
    }
    if event.key != op.key {
        return fail(format!(
            "{} {} by process {} has key {}, but its invoke at line {} has key {}",
            kind_name(event.kind),
            event.f.name(),
            event.process,
            event.key,
            op.invoke_line,
            op.key
        ));
    }
    op.status = match event.kind {
        EventType::Ok => Status::Ok,
        EventType::Fail => Status::Fail,
        // `pair` sends only completions here; an invoke cannot reach this point.
        EventType::Info | EventType::Invoke => Status::Info,
    };
    if op.status == Status::Ok {
        match (&op.action, event.value) {
            (Action::Read(_), RawValue::Scalar(value)) => op.action = Action::Read(Some(value)),
            (Action::Read(_), value @ RawValue::Pair(..)) => {
                return fail(format!(
                    "ok read value must be a single value, got {}",
                    show(&value)
                ))
            }
            // What was written is what was invoked: a differing `ok` means a confused recorder.
            (Action::Write(_) | Action::Cas(..) | Action::Append(_), value) => {
                if !is_invoked_value(&op.action, &value) {
                    return fail(format!(
                        "ok {} value {} differs from its invoke's {} (line {})",
                        event.f.name(),
                        show(&value),
                        show(&invoked_value(&op.action)),
                        op.invoke_line
                    ));
                }
            }
            (Action::Acquire | Action::Release, _) => {}
        }
    }
    op.complete = match op.status {
        Status::Ok | Status::Fail => Some(position),
        // An info op may take effect at any time after its invoke: its interval is open.
        Status::Info => None,
    };
    op.complete_line = Some(event.line);
    op.complete_time = event.time;
    Ok(())
}

/// Whether `value` is what an invoke of `action` (write, cas or append) carried:
/// [`invoked_value`] without building it, since every `ok` completion is compared.
fn is_invoked_value(action: &Action, value: &RawValue) -> bool {
    match (action, value) {
        (Action::Write(written), RawValue::Scalar(value)) => written == value,
        (Action::Cas(old, new), RawValue::Pair(a, b)) => old == a && new == b,
        (Action::Append(suffix), RawValue::Scalar(Value::Str(s))) => suffix == s,
        _ => false,
    }
}

/// The value an invoke event carried for `action` (write, cas and append only).
fn invoked_value(action: &Action) -> RawValue {
    match action {
        Action::Write(value) => RawValue::Scalar(value.clone()),
        Action::Cas(old, new) => RawValue::Pair(old.clone(), new.clone()),
        Action::Append(s) => RawValue::Scalar(Value::Str(s.clone())),
        Action::Read(_) | Action::Acquire | Action::Release => RawValue::Scalar(Value::Null),
    }
}

/// A raw value as a history file would show it, for messages.
fn show(value: &RawValue) -> String {
    match value {
        RawValue::Scalar(v) => v.to_string(),
        RawValue::Pair(a, b) => format!("[{a}, {b}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds events from `(process, type, f, value)`; lines are 10, 20, 30... so that line
    /// numbers in messages cannot be confused with positions.
    fn events(spec: &[(u64, EventType, Func, RawValue)]) -> Vec<Event> {
        spec.iter()
            .enumerate()
            .map(|(i, (process, kind, f, value))| Event {
                line: 10 * (i + 1),
                index: None,
                time: Some(100 * i as i64),
                process: *process,
                kind: *kind,
                f: *f,
                key: Value::Null,
                value: value.clone(),
            })
            .collect()
    }

    fn int(i: i64) -> RawValue {
        RawValue::Scalar(Value::Int(i))
    }

    fn null() -> RawValue {
        RawValue::Scalar(Value::Null)
    }

    fn assert_error(events: &[Event], line: usize, fragment: &str) {
        match pair(events) {
            Err(HistoryError::Line { line: got, message }) => {
                assert_eq!(got, line, "{message}");
                assert!(
                    message.contains(fragment),
                    "{message:?} should contain {fragment:?}"
                );
            }
            other => panic!("expected an error at line {line}, got {other:?}"),
        }
    }

    use EventType::{Fail, Info, Invoke, Ok as Okay};

    #[test]
    fn pairs_concurrent_ops() {
        let history = events(&[
            (1, Invoke, Func::Write, int(5)),
            (2, Invoke, Func::Read, null()),
            (1, Okay, Func::Write, int(5)),
            (2, Okay, Func::Read, int(5)),
            (
                3,
                Invoke,
                Func::Cas,
                RawValue::Pair(Value::Int(5), Value::Int(6)),
            ),
            (
                4,
                Invoke,
                Func::Append,
                RawValue::Scalar(Value::Str("x".into())),
            ),
            (
                3,
                Fail,
                Func::Cas,
                RawValue::Pair(Value::Int(5), Value::Int(6)),
            ),
            (4, Info, Func::Append, null()),
            (5, Invoke, Func::Acquire, null()),
        ]);
        let ops = pair(&history).unwrap();
        assert_eq!(ops.len(), 5);
        assert_eq!(
            ops[0],
            Op {
                id: 0,
                process: 1,
                key: Value::Null,
                action: Action::Write(Value::Int(5)),
                status: Status::Ok,
                invoke: 0,
                complete: Some(2),
                invoke_line: 10,
                complete_line: Some(30),
                index: 0,
                invoke_time: Some(0),
                complete_time: Some(200),
            }
        );
        assert_eq!(ops[1].action, Action::Read(Some(Value::Int(5))));
        assert_eq!((ops[1].invoke, ops[1].complete), (1, Some(3)));
        assert_eq!(ops[2].action, Action::Cas(Value::Int(5), Value::Int(6)));
        assert_eq!((ops[2].status, ops[2].complete), (Status::Fail, Some(6)));
        // info: open interval, but the completion line is kept for reports.
        assert_eq!(ops[3].action, Action::Append("x".into()));
        assert_eq!(
            (ops[3].status, ops[3].complete, ops[3].complete_line),
            (Status::Info, None, Some(80))
        );
        // Never completed.
        assert_eq!(
            (ops[4].status, ops[4].complete, ops[4].complete_line),
            (Status::Info, None, None)
        );
        assert_eq!(
            ops.iter().map(|o| o.id).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn non_ok_reads_are_unknown_and_index_field_is_used() {
        let mut history = events(&[
            (1, Invoke, Func::Read, int(7)),
            (1, Fail, Func::Read, int(3)),
            (1, Invoke, Func::Read, null()),
            (
                1,
                Info,
                Func::Read,
                RawValue::Pair(Value::Null, Value::Null),
            ),
        ]);
        history[2].index = Some(42);
        let ops = pair(&history).unwrap();
        assert_eq!(ops[0].action, Action::Read(None));
        assert_eq!(ops[1].action, Action::Read(None));
        assert_eq!((ops[0].index, ops[1].index), (0, 42));
    }

    #[test]
    fn processes_of_any_number_pair_alike() {
        // Below and above the in-flight table's range, including the largest number.
        for process in [0, 7, SMALL_PROCESSES - 1, SMALL_PROCESSES, u64::MAX] {
            let history = events(&[
                (process, Invoke, Func::Write, int(1)),
                (3, Invoke, Func::Read, null()),
                (process, Okay, Func::Write, int(1)),
                (3, Okay, Func::Read, int(1)),
            ]);
            let ops = pair(&history).unwrap();
            assert_eq!(ops.len(), 2, "process {process}");
            assert_eq!((ops[0].process, ops[0].complete), (process, Some(2)));
            assert_error(
                &events(&[
                    (process, Invoke, Func::Write, int(1)),
                    (process, Invoke, Func::Read, null()),
                ]),
                20,
                "is still pending",
            );
            assert_error(
                &events(&[(process, Okay, Func::Write, int(1))]),
                10,
                "has no pending invoke",
            );
        }
    }

    #[test]
    fn empty_history_pairs_to_nothing() {
        assert_eq!(pair(&[]).unwrap(), vec![]);
    }

    #[test]
    fn error_double_invoke_names_both_lines() {
        let history = events(&[
            (1, Invoke, Func::Write, int(1)),
            (1, Invoke, Func::Read, null()),
        ]);
        assert_error(
            &history,
            20,
            "process 1 invokes read while its write invoked at line 10 is still pending",
        );
    }

    #[test]
    fn error_completion_without_invoke() {
        let history = events(&[
            (1, Invoke, Func::Write, int(1)),
            (1, Okay, Func::Write, int(1)),
            (1, Okay, Func::Write, int(1)),
        ]);
        assert_error(&history, 30, "ok write by process 1 has no pending invoke");
        assert_error(
            &events(&[(2, Info, Func::Read, null())]),
            10,
            "info read by process 2 has no pending invoke",
        );
    }

    #[test]
    fn error_completion_f_or_key_mismatch() {
        let history = events(&[
            (1, Invoke, Func::Write, int(1)),
            (1, Okay, Func::Read, int(1)),
        ]);
        assert_error(
            &history,
            20,
            "ok read by process 1 completes a write invoked at line 10",
        );
        let mut history = events(&[
            (1, Invoke, Func::Write, int(1)),
            (1, Fail, Func::Write, int(1)),
        ]);
        history[1].key = Value::Str("k".into());
        assert_error(
            &history,
            20,
            "has key \"k\", but its invoke at line 10 has key null",
        );
    }

    #[test]
    fn error_value_shapes() {
        let pair_value = RawValue::Pair(Value::Int(1), Value::Int(2));
        assert_error(
            &events(&[(1, Invoke, Func::Read, pair_value.clone())]),
            10,
            "read invoke value must be null",
        );
        assert_error(
            &events(&[(1, Invoke, Func::Write, pair_value.clone())]),
            10,
            "write invoke value must be a single value, got [1, 2]",
        );
        assert_error(
            &events(&[(1, Invoke, Func::Cas, int(1))]),
            10,
            "cas invoke value must be [old, new], got 1",
        );
        assert_error(
            &events(&[(1, Invoke, Func::Append, int(1))]),
            10,
            "append value must be a string, got 1",
        );
        assert_error(
            &events(&[(1, Invoke, Func::Append, null())]),
            10,
            "append value must be a string, got null",
        );
        let history = events(&[
            (1, Invoke, Func::Read, null()),
            (1, Okay, Func::Read, pair_value.clone()),
        ]);
        assert_error(
            &history,
            20,
            "ok read value must be a single value, got [1, 2]",
        );
    }

    #[test]
    fn error_ok_value_differs_from_invoke() {
        let history = events(&[
            (1, Invoke, Func::Write, int(1)),
            (1, Okay, Func::Write, int(2)),
        ]);
        assert_error(
            &history,
            20,
            "ok write value 2 differs from its invoke's 1 (line 10)",
        );
        let cas = |a, b| RawValue::Pair(Value::Int(a), Value::Int(b));
        let history = events(&[
            (1, Invoke, Func::Cas, cas(1, 2)),
            (1, Okay, Func::Cas, cas(1, 3)),
        ]);
        assert_error(&history, 20, "ok cas value [1, 3] differs");
        // fail and info completions may carry anything.
        let history = events(&[
            (1, Invoke, Func::Write, int(1)),
            (1, Info, Func::Write, null()),
        ]);
        assert!(pair(&history).is_ok());
    }
}
