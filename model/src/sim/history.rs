//! The history a run records, in the JSON Lines history format.
//!
//! One line per event, in the simulator's real-time order: client invocations and
//! completions (`invoke`, `ok`, `fail`, `info`) and nemesis events (process `"nemesis"`,
//! type `info`). `time` is the simulated time in nanoseconds. Lines are the checker's
//! [`Record`]s, printed as it prints them.

use checker::history::{jsonl, EventType, Record, Who};
use serde_json::Value as Json;

/// Simulated milliseconds to the history's nanoseconds.
const NANOS_PER_TICK: u64 = 1_000_000;

/// The recorded events, as JSON Lines text.
#[derive(Clone, Debug, Default)]
pub struct History {
    text: String,
    next_index: u64,
    pub invokes: u64,
    pub oks: u64,
    pub fails: u64,
    pub infos: u64,
}

impl History {
    /// Records a client event.
    pub fn client(
        &mut self,
        time: u64,
        process: u64,
        kind: EventType,
        f: &str,
        key: &str,
        value: Json,
    ) {
        match kind {
            EventType::Invoke => self.invokes += 1,
            EventType::Ok => self.oks += 1,
            EventType::Fail => self.fails += 1,
            EventType::Info => self.infos += 1,
        }
        self.push(time, Who::Process(process), kind, f, Json::from(key), value);
    }

    /// Records a fault or its end.
    pub fn nemesis(&mut self, time: u64, f: &str, value: &str) {
        self.push(
            time,
            Who::Nemesis,
            EventType::Info,
            f,
            Json::Null,
            Json::from(value),
        );
    }

    fn push(&mut self, time: u64, who: Who, kind: EventType, f: &str, key: Json, value: Json) {
        let record = Record {
            index: self.next_index,
            time: time.saturating_mul(NANOS_PER_TICK),
            who,
            kind,
            f: f.to_owned(),
            key,
            value,
        };
        jsonl::write_record(&mut self.text, &record);
        self.next_index += 1;
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}
