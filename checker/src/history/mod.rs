//! Histories: the events a test recorded, and the operations they pair up into.
//!
//! A history file is a sequence of events in real-time order (file order; `time` is only
//! informative). Everything that writes a history (the lab, the simulator, the synthetic
//! generator) records [`Record`]s and prints them with [`jsonl::write_record`]; reports read
//! them back with [`jsonl::read_records`]. The checker reads the same lines as typed client
//! [`Event`]s ([`jsonl::parse`], or [`edn::parse`] for Jepsen's EDN), and
//! [`pair`](pairing::pair) turns those into [`Op`]s: one per invocation, with the completion
//! that belongs to it. The checker works on `Op`s only.

mod bytes;
pub mod edn;
pub mod jsonl;
pub mod pairing;

use serde::{Deserialize, Serialize};
use std::fmt;

/// A register value or a key: histories only use null, integers and strings.
///
/// `Null` is the absent/empty value. EDN keywords and symbols are read as strings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Int(i64),
    Str(String),
}

/// One word for an integer (the derived hash also hashed which variant it is: half of the
/// register check's hashing). Equal values still hash equally; `Null` and `Int(0)` merely
/// share a hash.
impl std::hash::Hash for Value {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Value::Null => state.write_i64(0),
            Value::Int(i) => state.write_i64(*i),
            Value::Str(s) => s.hash(state),
        }
    }
}

/// Keys are independent registers; `Null` is the single-register history.
pub type Key = Value;

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl Value {
    /// The value as a history file prints it.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Str(s) => serde_json::Value::from(s.as_str()),
        }
    }
}

/// Who performed an event: a client process, or the nemesis (ignored by the checker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Who {
    Process(u64),
    Nemesis,
}

/// The four event types of Jepsen histories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::Invoke,
        EventType::Ok,
        EventType::Fail,
        EventType::Info,
    ];

    /// The name used in history files (`type`).
    pub fn name(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }

    /// The event type a `type` name names, from its bytes.
    pub fn from_name_bytes(name: &[u8]) -> Option<EventType> {
        Some(match name {
            b"invoke" => EventType::Invoke,
            b"ok" => EventType::Ok,
            b"fail" => EventType::Fail,
            b"info" => EventType::Info,
            _ => return None,
        })
    }
}

/// One event as a history file holds it: what every history writer records and prints.
///
/// Unlike an [`Event`], a record keeps nemesis events, any `f`, and any JSON key and value:
/// reports draw faults and errors from them.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Position in the history, from 0.
    pub index: u64,
    /// Nanoseconds since the start of the run.
    pub time: u64,
    pub who: Who,
    pub kind: EventType,
    pub f: String,
    /// The key (`null` for single-register histories and nemesis events).
    pub key: serde_json::Value,
    pub value: serde_json::Value,
}

/// The operation functions the models understand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Func {
    Read,
    Write,
    Cas,
    Append,
    Acquire,
    Release,
}

impl Func {
    /// The name used in history files (`f`).
    pub fn name(self) -> &'static str {
        match self {
            Func::Read => "read",
            Func::Write => "write",
            Func::Cas => "cas",
            Func::Append => "append",
            Func::Acquire => "acquire",
            Func::Release => "release",
        }
    }

    /// Parses an `f` name; `None` for anything the models do not know.
    pub fn from_name(name: &str) -> Option<Func> {
        Func::from_name_bytes(name.as_bytes())
    }

    /// [`Func::from_name`] on the name's bytes (no UTF-8 check needed: the names are ASCII).
    pub fn from_name_bytes(name: &[u8]) -> Option<Func> {
        Some(match name {
            b"read" => Func::Read,
            b"write" => Func::Write,
            b"cas" => Func::Cas,
            b"append" => Func::Append,
            b"acquire" => Func::Acquire,
            b"release" => Func::Release,
            _ => return None,
        })
    }
}

/// An event's `value` field, before it is given meaning by its `f`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RawValue {
    Scalar(Value),
    /// A two-element vector such as a cas `[old, new]`.
    Pair(Value, Value),
}

/// One line of a history (JSON Lines) or one op map (EDN), for a client process.
///
/// Nemesis events are dropped by the parsers; they never reach the checker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// 1-based line in the file where the event starts: every error names it.
    pub line: usize,
    /// The event's own `index` field, if it had one.
    pub index: Option<u64>,
    /// Informative nanoseconds since the start of the run.
    pub time: Option<i64>,
    pub process: u64,
    pub kind: EventType,
    pub f: Func,
    pub key: Key,
    pub value: RawValue,
}

/// What an operation did, with the shapes its `f` requires.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A read; `None` when the result is unknown (the read did not complete with `ok`).
    Read(Option<Value>),
    Write(Value),
    /// Compare-and-set: `(expected, new)`.
    Cas(Value, Value),
    /// Append a string to the current string value.
    Append(String),
    Acquire,
    Release,
}

impl Action {
    pub fn func(&self) -> Func {
        match self {
            Action::Read(_) => Func::Read,
            Action::Write(_) => Func::Write,
            Action::Cas(_, _) => Func::Cas,
            Action::Append(_) => Func::Append,
            Action::Acquire => Func::Acquire,
            Action::Release => Func::Release,
        }
    }

    /// The value as a history file would print it (for reports).
    pub fn value_json(&self) -> serde_json::Value {
        match self {
            Action::Read(v) => v
                .as_ref()
                .map(Value::to_json)
                .unwrap_or(serde_json::Value::Null),
            Action::Write(v) => v.to_json(),
            Action::Cas(a, b) => serde_json::Value::Array(vec![a.to_json(), b.to_json()]),
            Action::Append(s) => serde_json::Value::String(s.clone()),
            Action::Acquire | Action::Release => serde_json::Value::Null,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Read(Some(v)) => write!(f, "read {v}"),
            Action::Read(None) => f.write_str("read ?"),
            Action::Write(v) => write!(f, "write {v}"),
            Action::Cas(a, b) => write!(f, "cas {a}->{b}"),
            Action::Append(s) => write!(f, "append {s:?}"),
            Action::Acquire => f.write_str("acquire"),
            Action::Release => f.write_str("release"),
        }
    }
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Took effect between its invocation and completion.
    Ok,
    /// Certainly had no effect.
    Fail,
    /// Indeterminate: `info`, or never completed. May take effect at any time after its
    /// invocation, or never.
    Info,
}

/// One operation: an invocation paired with its completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Position in [`pairing::pair`]'s output (ordered by invocation).
    pub id: usize,
    pub process: u64,
    pub key: Key,
    pub action: Action,
    pub status: Status,
    /// Position of the invoke event among the history's client events: real-time order.
    pub invoke: usize,
    /// Position of the completion event; `None` for `info` and never-completed ops, whose
    /// interval extends to the end of time.
    pub complete: Option<usize>,
    /// Line of the invoke event, and of the completion event if any.
    pub invoke_line: usize,
    pub complete_line: Option<usize>,
    /// The invoke event's `index` field if present, else its position.
    pub index: u64,
    /// Informative times of invoke and completion, for reports.
    pub invoke_time: Option<i64>,
    pub complete_time: Option<i64>,
}

impl Op {
    /// End of the op's real-time interval: its completion, or `usize::MAX` when open-ended.
    pub fn end(&self) -> usize {
        self.complete.unwrap_or(usize::MAX)
    }
}

/// A history file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON Lines (`history.jsonl`, `docs/history-format.md`).
    Jsonl,
    /// Jepsen/Knossos EDN (`history.edn`).
    Edn,
}

impl Format {
    /// The format a file's extension names: `.jsonl`, `.ndjson` or `.json` → JSON Lines,
    /// `.edn` → EDN (case-insensitive); `None` for anything else.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "edn" => Some(Format::Edn),
            _ => None,
        }
    }

    /// The name used by `--format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Edn => "edn",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    /// Parses a `--format` value: `jsonl` or `edn`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_lowercase().as_str() {
            "jsonl" | "json" => Ok(Format::Jsonl),
            "edn" => Ok(Format::Edn),
            _ => Err(format!(
                "unknown history format {name:?}: expected jsonl or edn"
            )),
        }
    }
}

/// Parses `input` in `format` into client events (nemesis events dropped).
pub fn parse_events(input: &[u8], format: Format) -> Result<Vec<Event>, crate::HistoryError> {
    match format {
        Format::Jsonl => jsonl::parse(input),
        Format::Edn => edn::parse(input),
    }
}

/// Parses `input` in `format` and pairs it into operations.
pub fn parse(input: &[u8], format: Format) -> Result<Vec<Op>, crate::HistoryError> {
    pair_runs(input.len(), |consume| match format {
        Format::Jsonl => jsonl::parse_runs(input, consume),
        Format::Edn => {
            edn::parse(input)?.into_iter().for_each(consume);
            Ok(())
        }
    })
}

/// Pairs the events `parse` hands over, as it hands them over. `bytes` is the input's size,
/// for an estimate of the ops.
///
/// A syntax or shape error anywhere in the file comes before a pairing error, as if the
/// whole file were parsed before pairing began.
fn pair_runs(
    bytes: usize,
    parse: impl FnOnce(&mut jsonl::Consume<'_>) -> Result<(), crate::HistoryError>,
) -> Result<Vec<Op>, crate::HistoryError> {
    // ~90 bytes per event (a little less is assumed, so that ops are not reallocated).
    let mut pairer = pairing::Pairer::with_capacity(bytes / 80);
    let mut pair_error = None;
    parse(&mut |event| {
        if pair_error.is_none() {
            pair_error = pairer.push(event).err();
        }
    })?;
    match pair_error {
        Some(err) => Err(err),
        None => Ok(pairer.finish()),
    }
}

/// Reads, parses and pairs a history file. The format is `format` if given, else the one the
/// extension names. An unreadable file or an unknown extension is a
/// [`HistoryError::File`](crate::HistoryError::File) naming the path; syntax and shape
/// problems are [`HistoryError::Line`](crate::HistoryError::Line) (the caller adds the path).
/// A JSON Lines file is read a block at a time: a large one is never in memory whole.
pub fn read_file(
    path: &std::path::Path,
    format: Option<Format>,
) -> Result<Vec<Op>, crate::HistoryError> {
    let format = match format.or_else(|| Format::from_path(path)) {
        Some(format) => format,
        None => {
            return Err(crate::HistoryError::File(format!(
                "{}: unknown history format (expected a .jsonl or .edn file, or --format \
                 jsonl|edn)",
                path.display()
            )))
        }
    };
    let file_error =
        |message: String| crate::HistoryError::File(format!("{}: {message}", path.display()));
    match format {
        Format::Jsonl => {
            let file = std::fs::File::open(path).map_err(|err| file_error(err.to_string()))?;
            // Unknown for a pipe.
            let bytes = file
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .and_then(|m| usize::try_from(m.len()).ok());
            pair_runs(bytes.unwrap_or(0), |consume| {
                jsonl::read_runs(file, bytes, consume)
            })
            .map_err(|err| match err {
                crate::HistoryError::File(message) => file_error(message),
                line => line,
            })
        }
        Format::Edn => {
            let input = std::fs::read(path).map_err(|err| file_error(err.to_string()))?;
            parse(&input, format)
        }
    }
}
