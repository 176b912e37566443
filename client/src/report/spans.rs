//! The history as intervals, for pictures: each operation from its invoke to its completion,
//! and each fault from the nemesis action that started it to the one that ended it.
//!
//! Processes run one operation at a time (a process that saw `info` is renamed), so an
//! operation is a process's invoke paired with that process's next completion. Faults pair
//! `start-partition` with the next `stop-partition`, and `kill`/`pause` of a node with the
//! next `start`/`resume` of the same node. Anything still open at the end of the history is
//! open-ended (`end_ns: None`).

use crate::history::{EventType, Record, Who};
use serde_json::Value as Json;
use std::collections::HashMap;

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail,
    /// `info`, or never completed: it may or may not have taken effect.
    Info,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// One operation as an interval.
#[derive(Clone, Debug, PartialEq)]
pub struct OpSpan {
    /// The invoke event's index in the history.
    pub index: u64,
    pub process: u64,
    pub f: String,
    pub key: Json,
    /// The invoke's value (what was asked).
    pub request: Json,
    /// The completion's value (what came back); `null` if it never completed.
    pub response: Json,
    pub start_ns: u64,
    /// `None`: never completed.
    pub end_ns: Option<u64>,
    pub outcome: Outcome,
}

impl OpSpan {
    /// Latency in nanoseconds, for completed operations.
    pub fn latency_ns(&self) -> Option<u64> {
        self.end_ns.map(|end| end.saturating_sub(self.start_ns))
    }
}

/// The kind of a fault interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    Partition,
    Kill,
    Pause,
    /// A full disk, or a damaged log until it is repaired.
    Disk,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Disk => "disk",
        }
    }
}

/// One fault as an interval.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpan {
    pub kind: FaultKind,
    /// What a person reads: the partition's description, or "kill node 3".
    pub label: String,
    pub start_ns: u64,
    /// `None`: still in effect when the history ends.
    pub end_ns: Option<u64>,
}

/// Every operation of the history, in invocation order.
pub fn op_spans(events: &[Record]) -> Vec<OpSpan> {
    let mut spans = Vec::new();
    let mut open: HashMap<u64, usize> = HashMap::new();
    for e in events {
        let Who::Process(process) = e.who else {
            continue;
        };
        let outcome = match e.kind {
            EventType::Invoke => {
                open.insert(process, spans.len());
                spans.push(OpSpan {
                    index: e.index,
                    process,
                    f: e.f.clone(),
                    key: e.key.clone(),
                    request: e.value.clone(),
                    response: Json::Null,
                    start_ns: e.time,
                    end_ns: None,
                    outcome: Outcome::Info,
                });
                continue;
            }
            EventType::Ok => Outcome::Ok,
            EventType::Fail => Outcome::Fail,
            EventType::Info => Outcome::Info,
        };
        if let Some(at) = open.remove(&process) {
            let span = &mut spans[at];
            span.end_ns = Some(e.time);
            span.response = e.value.clone();
            span.outcome = outcome;
        }
    }
    spans
}

/// Every fault of the history, in the order they started.
pub fn fault_spans(events: &[Record]) -> Vec<FaultSpan> {
    let mut spans: Vec<FaultSpan> = Vec::new();
    let mut open: HashMap<(FaultKind, Option<u64>), usize> = HashMap::new();
    for e in events.iter().filter(|e| e.who == Who::Nemesis) {
        // A failed action changed nothing.
        if e.value.get("error").is_some() {
            continue;
        }
        let node = e.value.get("node").and_then(Json::as_u64);
        let (kind, starts) = match e.f.as_str() {
            "start-partition" => (FaultKind::Partition, true),
            "stop-partition" => (FaultKind::Partition, false),
            "kill" => (FaultKind::Kill, true),
            "start" => (FaultKind::Kill, false),
            "pause" => (FaultKind::Pause, true),
            "resume" => (FaultKind::Pause, false),
            "disk-full" | "corrupt" => (FaultKind::Disk, true),
            "disk-free" | "repair" => (FaultKind::Disk, false),
            _ => continue,
        };
        let slot = (
            kind,
            if kind == FaultKind::Partition {
                None
            } else {
                node
            },
        );
        if starts {
            let label = match (kind, node) {
                (FaultKind::Partition, _) => e
                    .value
                    .get("description")
                    .and_then(Json::as_str)
                    .unwrap_or("partition")
                    .to_string(),
                (FaultKind::Disk, Some(n)) => format!("{} node {n}", e.f),
                (_, Some(n)) => format!("{} node {n}", kind.name()),
                (_, None) => kind.name().to_string(),
            };
            open.insert(slot, spans.len());
            spans.push(FaultSpan {
                kind,
                label,
                start_ns: e.time,
                end_ns: None,
            });
        } else if let Some(at) = open.remove(&slot) {
            spans[at].end_ns = Some(e.time);
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(index: u64, time: u64, who: Who, kind: EventType, f: &str, value: Json) -> Record {
        Record {
            index,
            time,
            who,
            kind,
            f: f.into(),
            key: json!(1),
            value,
        }
    }

    #[test]
    fn operations_pair_with_their_process_completion() {
        let p = Who::Process;
        let events = vec![
            event(0, 10, p(0), EventType::Invoke, "write", json!(5)),
            event(1, 11, p(1), EventType::Invoke, "read", Json::Null),
            event(2, 20, p(1), EventType::Ok, "read", json!(5)),
            event(3, 30, p(0), EventType::Info, "write", json!(5)),
            event(4, 40, p(2), EventType::Invoke, "cas", json!([5, 6])),
        ];
        let spans = op_spans(&events);
        assert_eq!(spans.len(), 3);
        assert_eq!(
            (spans[0].end_ns, spans[0].outcome),
            (Some(30), Outcome::Info)
        );
        assert_eq!(
            (spans[1].latency_ns(), spans[1].outcome),
            (Some(9), Outcome::Ok)
        );
        assert_eq!(spans[1].response, json!(5));
        assert_eq!((spans[2].end_ns, spans[2].outcome), (None, Outcome::Info));
    }

    #[test]
    fn faults_pair_start_and_end_per_node() {
        let n = Who::Nemesis;
        let i = EventType::Info;
        let events = vec![
            event(0, 1, n, i, "kill", json!({"node": 1})),
            event(1, 2, n, i, "pause", json!({"node": 2})),
            event(2, 3, n, i, "start", json!({"node": 1})),
            event(
                3,
                4,
                n,
                i,
                "start-partition",
                json!({"description": "halves"}),
            ),
            event(
                4,
                5,
                n,
                i,
                "kill",
                json!({"node": 3, "error": "no such process"}),
            ),
            event(5, 6, n, i, "stop-partition", json!({})),
        ];
        let spans = fault_spans(&events);
        let summary: Vec<_> = spans
            .iter()
            .map(|s| (s.label.as_str(), s.start_ns, s.end_ns))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("kill node 1", 1, Some(3)),
                ("pause node 2", 2, None),
                ("halves", 4, Some(6)),
            ]
        );
    }
}
