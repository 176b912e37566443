//! The history a run records, in the contract's JSON Lines format.
//!
//! One line per event, in the simulator's real-time order: client invocations and
//! completions (`invoke`, `ok`, `fail`, `info`) and nemesis events (process `"nemesis"`,
//! type `info`). `time` is the simulated time in nanoseconds.

use serde_json::{json, Value as Json};

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
    /// Records a client event; `kind` is `invoke`, `ok`, `fail` or `info`.
    pub fn client(&mut self, time: u64, process: u64, kind: &str, f: &str, key: &str, value: Json) {
        match kind {
            "invoke" => self.invokes += 1,
            "ok" => self.oks += 1,
            "fail" => self.fails += 1,
            _ => self.infos += 1,
        }
        let line = json!({
            "index": self.next_index,
            "time": time.saturating_mul(NANOS_PER_TICK),
            "process": process,
            "type": kind,
            "f": f,
            "key": key,
            "value": value,
        });
        self.push(line);
    }

    /// Records a fault or its end.
    pub fn nemesis(&mut self, time: u64, f: &str, value: &str) {
        let line = json!({
            "index": self.next_index,
            "time": time.saturating_mul(NANOS_PER_TICK),
            "process": "nemesis",
            "type": "info",
            "f": f,
            "value": value,
        });
        self.push(line);
    }

    fn push(&mut self, line: Json) {
        self.next_index += 1;
        self.text.push_str(&line.to_string());
        self.text.push('\n');
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> String {
        self.text
    }
}
