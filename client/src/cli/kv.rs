//! One KV command against a running cluster, shared by `raft-lab kv` and `raft-lab console`:
//! parse it, run it through the client library, and say what happened.

use crate::kv::{KvCluster, OpResult};
use model::kv::{Operation, Outcome, Value};
use std::fmt::Write as _;
use std::time::Duration;

/// A command a person types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvCommand {
    Get(String),
    Put(String, Value),
    Cas(String, Option<Value>, Value),
    Append(String, String),
    Status,
    Leader,
}

/// The words `help` prints.
pub const HELP: &str = "\
get KEY               linearizable read
put KEY VALUE         write (integers stay integers, anything else is a string)
cas KEY OLD NEW       compare-and-set (OLD may be `null` for an absent key)
append KEY SUFFIX     append to a string value
status                every node's role, term, leader, commit and applied index
leader                the current leader";

/// Parses `words` (the command and its arguments).
pub fn parse(words: &[String]) -> Result<KvCommand, String> {
    let Some(name) = words.first() else {
        return Err("empty command; try `help`".into());
    };
    let arg = |i: usize, what: &str| {
        words
            .get(i)
            .cloned()
            .ok_or_else(|| format!("{name}: missing {what}"))
    };
    let command = match name.as_str() {
        "get" => KvCommand::Get(arg(1, "KEY")?),
        "put" => KvCommand::Put(arg(1, "KEY")?, value(&arg(2, "VALUE")?)),
        "cas" => {
            let old = arg(2, "OLD")?;
            let old = (old != "null").then(|| value(&old));
            KvCommand::Cas(arg(1, "KEY")?, old, value(&arg(3, "NEW")?))
        }
        "append" => KvCommand::Append(arg(1, "KEY")?, arg(2, "SUFFIX")?),
        "status" => KvCommand::Status,
        "leader" => KvCommand::Leader,
        other => return Err(format!("unknown command {other:?}; try `help`")),
    };
    let expected = match command {
        KvCommand::Get(_) => 2,
        KvCommand::Put(..) | KvCommand::Append(..) => 3,
        KvCommand::Cas(..) => 4,
        KvCommand::Status | KvCommand::Leader => 1,
    };
    if words.len() > expected {
        return Err(format!("{name}: too many arguments; try `help`"));
    }
    Ok(command)
}

fn value(text: &str) -> Value {
    text.parse::<i64>()
        .map(Value::Int)
        .unwrap_or_else(|_| Value::Str(text.to_string()))
}

fn show(value: &Option<Value>) -> String {
    match value {
        None => "(absent)".into(),
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::Str(s)) => format!("{s:?}"),
    }
}

/// How a command ended, with the contract's exit code: 0 ok, 1 failed (certainly no effect),
/// 2 unknown outcome, 3 error.
pub struct Answer {
    pub text: String,
    pub code: u8,
}

/// Runs one command.
pub async fn execute(cluster: &KvCluster, command: KvCommand) -> Answer {
    let op = match command {
        KvCommand::Status => return status(cluster).await,
        KvCommand::Leader => {
            return match cluster.wait_for_leader(Duration::from_secs(5)).await {
                Ok(leader) => Answer {
                    text: format!("leader: node {leader}"),
                    code: 0,
                },
                Err(e) => Answer {
                    text: format!("no leader: {e}"),
                    code: 2,
                },
            }
        }
        KvCommand::Get(key) => Operation::Read { key },
        KvCommand::Put(key, value) => Operation::Write { key, value },
        KvCommand::Cas(key, expected, new) => Operation::Cas { key, expected, new },
        KvCommand::Append(key, suffix) => Operation::Append { key, suffix },
    };
    let mut client = cluster.client(Duration::from_secs(10));
    match client.execute(op).await {
        OpResult::Ok(Outcome::Value(v)) => Answer {
            text: show(&v),
            code: 0,
        },
        OpResult::Ok(Outcome::Written) => Answer {
            text: "ok".into(),
            code: 0,
        },
        OpResult::Ok(Outcome::Appended { len }) => Answer {
            text: format!("ok: the value is now {len} bytes long"),
            code: 0,
        },
        OpResult::Ok(other) => Answer {
            text: format!("ok: {other:?}"),
            code: 0,
        },
        OpResult::Fail {
            outcome: Some(Outcome::CasMismatch { current }),
            ..
        } => Answer {
            text: format!("failed: the value is {}", show(&current)),
            code: 1,
        },
        OpResult::Fail { reason, .. } => Answer {
            text: format!("failed (no effect): {reason}"),
            code: 1,
        },
        OpResult::Info(reason) => Answer {
            text: format!("unknown outcome (it may or may not have happened): {reason}"),
            code: 2,
        },
    }
}

async fn status(cluster: &KvCluster) -> Answer {
    let mut text = String::new();
    let mut reachable = 0;
    for node in cluster.nodes() {
        match cluster.status(node.id).await {
            Ok(s) => {
                reachable += 1;
                let _ = writeln!(
                    text,
                    "node {} {:<22} {:<13} term {:<4} leader {:<6} commit {:<7} applied {:<7} log {}..{}{}",
                    s.id,
                    node.addr,
                    s.role,
                    s.term,
                    s.leader.map_or("-".into(), |l| l.to_string()),
                    s.commit_index,
                    s.applied_index,
                    s.snapshot_index + 1,
                    s.last_index,
                    if s.bugs.is_empty() {
                        String::new()
                    } else {
                        format!("  UNSAFE: {}", s.bugs.join(","))
                    }
                );
            }
            Err(e) => {
                let _ = writeln!(text, "node {} {:<22} unreachable: {e}", node.id, node.addr);
            }
        }
    }
    Answer {
        text: text.trim_end().to_string(),
        code: if reachable == 0 { 3 } else { 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(parse(&words("get k")), Ok(KvCommand::Get("k".into())));
        assert_eq!(
            parse(&words("put k 5")),
            Ok(KvCommand::Put("k".into(), Value::Int(5)))
        );
        assert_eq!(
            parse(&words("put k five")),
            Ok(KvCommand::Put("k".into(), Value::Str("five".into())))
        );
        assert_eq!(
            parse(&words("cas k null 1")),
            Ok(KvCommand::Cas("k".into(), None, Value::Int(1)))
        );
        assert_eq!(
            parse(&words("append k x")),
            Ok(KvCommand::Append("k".into(), "x".into()))
        );
        assert_eq!(parse(&words("status")), Ok(KvCommand::Status));
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(parse(&words("get")).unwrap_err().contains("missing KEY"));
        assert!(parse(&words("put k 1 2")).unwrap_err().contains("too many"));
        assert!(parse(&words("frobnicate"))
            .unwrap_err()
            .contains("unknown command"));
        assert!(parse(&[]).is_err());
    }
}
