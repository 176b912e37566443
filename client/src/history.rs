//! The history recorder: every invoke and completion, and every nemesis action, with a
//! monotonic timestamp, in real-time order; written as the contract's JSON Lines and as
//! Jepsen EDN.
//!
//! Events get their index when recorded, under one lock, so file order is the order in which
//! they happened (an invoke is recorded before its request is sent, a completion after its
//! reply arrived). [`from_jsonl`] reads the JSON Lines back, so a report can be rebuilt from a
//! results folder.

use serde_json::{json, Value as Json};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Who an event belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Process(u64),
    Nemesis,
}

/// An event type of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Invoke, Kind::Ok, Kind::Fail, Kind::Info];

    fn name(self) -> &'static str {
        match self {
            Kind::Invoke => "invoke",
            Kind::Ok => "ok",
            Kind::Fail => "fail",
            Kind::Info => "info",
        }
    }
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub index: u64,
    /// Nanoseconds since the recorder started.
    pub time: u64,
    pub who: Who,
    pub kind: Kind,
    pub f: String,
    /// The key (`null` for nemesis events).
    pub key: Json,
    pub value: Json,
}

/// A shared, append-only history.
#[derive(Clone, Debug)]
pub struct Recorder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    events: Mutex<Vec<Event>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            inner: Arc::new(Inner {
                start: Instant::now(),
                events: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Records an event now and returns its index.
    pub fn record(&self, who: Who, kind: Kind, f: &str, key: Json, value: Json) -> u64 {
        // A poisoned lock only means another recording thread panicked; the events
        // themselves are intact, so keep recording.
        let mut events = self
            .inner
            .events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let index = events.len() as u64;
        events.push(Event {
            index,
            time: self.inner.start.elapsed().as_nanos() as u64,
            who,
            kind,
            f: f.to_string(),
            key,
            value,
        });
        index
    }

    /// A nemesis action (`start-partition`, `kill`, ...), recorded as an `info` event.
    pub fn nemesis(&self, f: &str, value: Json) -> u64 {
        self.record(Who::Nemesis, Kind::Info, f, Json::Null, value)
    }

    /// Nanoseconds since the recorder started.
    pub fn now(&self) -> u64 {
        self.inner.start.elapsed().as_nanos() as u64
    }

    /// A copy of everything recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.inner
            .events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// The contract's JSON Lines.
pub fn to_jsonl(events: &[Event]) -> String {
    let mut out = String::with_capacity(events.len() * 96);
    for e in events {
        let process = match e.who {
            Who::Process(p) => json!(p),
            Who::Nemesis => json!("nemesis"),
        };
        let line = json!({
            "index": e.index,
            "time": e.time,
            "process": process,
            "type": e.kind.name(),
            "f": e.f,
            "key": e.key,
            "value": e.value,
        });
        let _ = writeln!(out, "{line}");
    }
    out
}

/// A line of a JSON Lines history that cannot be read as an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct HistoryFileError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

/// Reads the contract's JSON Lines (as [`to_jsonl`] writes them) back into events.
///
/// Blank lines are skipped; fields beyond the contract's are ignored; a missing `index` is
/// the event's position, a missing `key` or `value` is `null`. `time` must be an integer:
/// pictures of a history need its timestamps.
pub fn from_jsonl(text: &str) -> Result<Vec<Event>, HistoryFileError> {
    let mut events = Vec::new();
    for (at, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event =
            event_from_line(line, events.len() as u64).map_err(|message| HistoryFileError {
                line: at + 1,
                message,
            })?;
        events.push(event);
    }
    Ok(events)
}

/// One JSON Lines event; `position` is its place among the events read so far.
fn event_from_line(line: &str, position: u64) -> Result<Event, String> {
    let json: Json = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Json::Object(mut map) = json else {
        return Err(format!("expected a JSON object, got {json}"));
    };
    let field = |map: &serde_json::Map<String, Json>, name: &str| -> Result<Json, String> {
        map.get(name)
            .cloned()
            .ok_or_else(|| format!("missing field \"{name}\""))
    };
    let index = match map.get("index") {
        None => position,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("\"index\" must be a non-negative integer, got {v}"))?,
    };
    let time = field(&map, "time")?;
    let time = time.as_u64().ok_or_else(|| {
        format!("\"time\" must be a non-negative integer (nanoseconds), got {time}")
    })?;
    let who = match field(&map, "process")? {
        Json::String(s) if s == "nemesis" => Who::Nemesis,
        v => Who::Process(v.as_u64().ok_or_else(|| {
            format!("\"process\" must be a non-negative integer or \"nemesis\", got {v}")
        })?),
    };
    let kind = field(&map, "type")?;
    let kind = Kind::ALL
        .into_iter()
        .find(|k| kind.as_str() == Some(k.name()))
        .ok_or_else(|| format!("\"type\" must be invoke, ok, fail or info, got {kind}"))?;
    let f = match field(&map, "f")? {
        Json::String(f) => f,
        v => return Err(format!("\"f\" must be a string, got {v}")),
    };
    Ok(Event {
        index,
        time,
        who,
        kind,
        f,
        key: map.remove("key").unwrap_or(Json::Null),
        value: map.remove("value").unwrap_or(Json::Null),
    })
}

/// Jepsen/Knossos EDN: one vector of op maps, independent keys as `[k v]` tuples.
pub fn to_edn(events: &[Event]) -> String {
    let mut out = String::with_capacity(events.len() * 96);
    out.push_str("[\n");
    for e in events {
        let (process, value) = match e.who {
            Who::Process(p) => (
                p.to_string(),
                format!("[{} {}]", edn(&e.key), edn(&e.value)),
            ),
            Who::Nemesis => (":nemesis".to_string(), edn(&e.value)),
        };
        let _ = writeln!(
            out,
            "{{:index {}, :time {}, :type :{}, :process {}, :f :{}, :value {}}}",
            e.index,
            e.time,
            e.kind.name(),
            process,
            e.f,
            value
        );
    }
    out.push_str("]\n");
    out
}

/// A JSON value as EDN.
fn edn(value: &Json) -> String {
    match value {
        Json::Null => "nil".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => Json::String(s.clone()).to_string(),
        Json::Array(items) => format!("[{}]", items.iter().map(edn).collect::<Vec<_>>().join(" ")),
        Json::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!(":{k} {}", edn(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Writes `text` to `path` and fsyncs it: a history is the run's evidence.
pub fn write_durably(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// JSON values without floats (whose text form need not read back bit-identical).
    fn json_value() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::from),
            any::<i64>().prop_map(Json::from),
            any::<u64>().prop_map(Json::from),
            ".{0,12}".prop_map(Json::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Json::from),
                prop::collection::btree_map("[a-z<\"]{0,4}", inner, 0..4)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    fn event() -> impl Strategy<Value = Event> {
        (
            any::<u64>(),
            any::<u64>(),
            prop_oneof![any::<u64>().prop_map(Who::Process), Just(Who::Nemesis)],
            prop::sample::select(Kind::ALL.to_vec()),
            ".{0,10}",
            json_value(),
            json_value(),
        )
            .prop_map(|(index, time, who, kind, f, key, value)| Event {
                index,
                time,
                who,
                kind,
                f,
                key,
                value,
            })
    }

    proptest! {
        #[test]
        fn jsonl_reads_back_what_it_wrote(events in prop::collection::vec(event(), 0..20)) {
            prop_assert_eq!(from_jsonl(&to_jsonl(&events)), Ok(events));
        }
    }

    #[test]
    fn bad_jsonl_names_the_line_and_the_problem() {
        let good = r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"read","key":1}"#;
        let cases = [
            ("{\"index\":", "not JSON"),
            ("[1,2]", "expected a JSON object"),
            (
                r#"{"time":1,"process":0,"type":"ok"}"#,
                "missing field \"f\"",
            ),
            (
                r#"{"time":null,"process":0,"type":"ok","f":"read"}"#,
                "\"time\"",
            ),
            (
                r#"{"time":-5,"process":0,"type":"ok","f":"read"}"#,
                "\"time\"",
            ),
            (
                r#"{"time":1,"process":"p1","type":"ok","f":"read"}"#,
                "\"process\"",
            ),
            (
                r#"{"time":1,"process":1,"type":"done","f":"read"}"#,
                "\"type\"",
            ),
            (r#"{"time":1,"process":1,"type":"ok","f":3}"#, "\"f\""),
            (
                r#"{"index":-1,"time":1,"process":1,"type":"ok","f":"read"}"#,
                "\"index\"",
            ),
        ];
        for (bad, expected) in cases {
            let text = format!("{good}\n\n{bad}\n");
            let error = from_jsonl(&text).expect_err(bad);
            assert_eq!(error.line, 3, "{bad}");
            assert!(error.message.contains(expected), "{bad}: {error}");
            assert!(error.to_string().starts_with("line 3: "), "{error}");
        }
        let events = from_jsonl(&format!("{good}\n")).expect("a good line");
        assert_eq!(events[0].value, Json::Null);
    }

    #[test]
    fn both_formats_read_back_as_the_same_ops() {
        let r = Recorder::new();
        r.record(
            Who::Process(0),
            Kind::Invoke,
            "write",
            json!("k1"),
            json!(5),
        );
        r.nemesis("start-partition", json!("halves"));
        r.record(Who::Process(0), Kind::Ok, "write", json!("k1"), json!(5));
        r.record(
            Who::Process(1),
            Kind::Invoke,
            "cas",
            json!("k1"),
            json!([5, 6]),
        );
        r.record(
            Who::Process(1),
            Kind::Fail,
            "cas",
            json!("k1"),
            json!([5, 6]),
        );
        r.record(
            Who::Process(2),
            Kind::Invoke,
            "read",
            json!("k1"),
            Json::Null,
        );
        r.record(Who::Process(2), Kind::Ok, "read", json!("k1"), json!(5));
        let events = r.events();
        let jsonl = checker::history::parse(
            to_jsonl(&events).as_bytes(),
            checker::history::Format::Jsonl,
        )
        .unwrap();
        let edn =
            checker::history::parse(to_edn(&events).as_bytes(), checker::history::Format::Edn)
                .unwrap();
        assert_eq!(jsonl.len(), 3);
        let strip = |ops: Vec<checker::history::Op>| {
            ops.into_iter()
                .map(|o| (o.process, o.key, o.action, o.status, o.invoke, o.complete))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(jsonl), strip(edn));
    }
}
