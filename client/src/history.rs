//! The history recorder: every invoke and completion, and every nemesis action, with a
//! monotonic timestamp, in real-time order.
//!
//! Events get their index when recorded, under one lock, so file order is the order in which
//! they happened (an invoke is recorded before its request is sent, a completion after its
//! reply arrived). The events are the checker's history records ([`Record`]), written by its
//! one JSON Lines writer (`checker::history::jsonl`) and EDN writer; the nemesis, the lab and
//! the reports all record into one [`Recorder`].

pub use checker::history::{EventType, Record, Who};
use serde_json::Value as Json;
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
    events: Mutex<Vec<Record>>,
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
    pub fn record(&self, who: Who, kind: EventType, f: &str, key: Json, value: Json) -> u64 {
        // A poisoned lock only means another recording thread panicked; the events
        // themselves are intact, so keep recording.
        let mut events = self
            .inner
            .events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let index = events.len() as u64;
        events.push(Record {
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
        self.record(Who::Nemesis, EventType::Info, f, Json::Null, value)
    }

    /// Nanoseconds since the recorder started.
    pub fn now(&self) -> u64 {
        self.inner.start.elapsed().as_nanos() as u64
    }

    /// A copy of everything recorded so far.
    pub fn events(&self) -> Vec<Record> {
        self.events_from(0)
    }

    /// A copy of the events recorded since the first `start` (the online check reads the
    /// history as it grows without copying it all each time).
    pub fn events_from(&self, start: usize) -> Vec<Record> {
        let events = self
            .inner
            .events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        events
            .get(start..)
            .map_or_else(Vec::new, <[Record]>::to_vec)
    }
}
