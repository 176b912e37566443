//! The history recorder: every invoke and completion, and every nemesis action, with a
//! monotonic timestamp, in real-time order; written as the contract's JSON Lines and as
//! Jepsen EDN.
//!
//! Events get their index when recorded, under one lock, so file order is the order in which
//! they happened (an invoke is recorded before its request is sent, a completion after its
//! reply arrived).

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
