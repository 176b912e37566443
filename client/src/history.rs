//! The history recorder: every invoke and completion, and every nemesis action, with a
//! monotonic timestamp, in real-time order.
//!
//! Events get their index when recorded, under one lock, so file order is the order in which
//! they happened (an invoke is recorded before its request is sent, a completion after its
//! reply arrived). The events are the checker's history records, written and read back by
//! its one JSON Lines writer and reader (and written as Jepsen EDN); they keep the lab's
//! names here so that the lab's modules read as before.

pub use checker::history::edn::write_records as to_edn;
pub use checker::history::jsonl::{read_records as from_jsonl, write_records as to_jsonl};
pub use checker::history::{EventType as Kind, Record as Event, Who};
use serde_json::Value as Json;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

/// Writes `text` to `path` and fsyncs it: a history is the run's evidence.
pub fn write_durably(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
