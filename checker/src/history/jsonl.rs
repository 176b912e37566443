//! The contract's JSON Lines history format (`history.jsonl`): one event object per line.
//!
//! Each line is deserialized by serde_json straight into a [`LineFields`] of borrowed
//! [`Json`] scalars (no `serde_json::Value` trees, no per-field allocation unless a string
//! has escapes), then checked field by field so that every error names the line and the
//! field at fault. Nemesis events are dropped here and never reach pairing.

use super::{Event, EventType, Func, RawValue, Value};
use crate::error::HistoryError;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Parses a JSON Lines history into its client events, in file (real-time) order.
///
/// Blank and whitespace-only lines are skipped; nemesis events are dropped without looking at
/// their other fields. Empty input is a valid, empty history.
pub fn parse(input: &[u8]) -> Result<Vec<Event>, HistoryError> {
    // Editors on some platforms prepend a byte-order mark; it is not part of the first line.
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    // ~90 bytes per event in practice: one allocation up front instead of ~20 regrowths.
    let mut events = Vec::with_capacity(input.len() / 80 + 1);
    for (line_index, bytes) in lines(input).enumerate() {
        if let Some(event) = parse_line(line_index + 1, bytes)? {
            events.push(event);
        }
    }
    Ok(events)
}

/// The lines of `input` (without their `\n`), found with memchr: the hot loop of a big file.
fn lines(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(input);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b'\n', current) {
            Some(end) => {
                rest = current.get(end + 1..);
                current.get(..end)
            }
            None => {
                rest = None;
                // A trailing newline leaves an empty last "line"; it is blank, so harmless.
                Some(current)
            }
        }
    })
}

/// One line: `Ok(None)` for blank lines and nemesis events.
fn parse_line(line: usize, bytes: &[u8]) -> Result<Option<Event>, HistoryError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let text = std::str::from_utf8(bytes).map_err(|err| {
        HistoryError::at(
            line,
            format!("invalid UTF-8 at column {}", err.valid_up_to() + 1),
        )
    })?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let fields = deserializer
        .deserialize_map(LineVisitor)
        .and_then(|fields| deserializer.end().map(|()| fields))
        .map_err(|err| json_error(line, &err))?;
    fields.into_event(line)
}

/// Turns a serde_json error into a line error. serde_json counts lines within the one line it
/// was given, so its "at line 1 column N" suffix is replaced by the column alone.
fn json_error(line: usize, err: &serde_json::Error) -> HistoryError {
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    match err.classify() {
        serde_json::error::Category::Data => HistoryError::at(
            line,
            format!("each line must be one JSON object: {message}"),
        ),
        serde_json::error::Category::Eof => HistoryError::at(
            line,
            format!("invalid JSON: the line ends inside a value ({message})"),
        ),
        _ => HistoryError::at(
            line,
            format!("invalid JSON at column {}: {message}", err.column()),
        ),
    }
}

/// Any JSON value, kept just precisely enough to validate a field and report what it was.
#[derive(Debug, PartialEq)]
enum Json<'a> {
    Null,
    Bool(bool),
    /// Integers that fit an `i64`.
    Int(i64),
    /// Non-negative integers above `i64::MAX` (still valid for `index` and `process`).
    BigUint(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Objects are never valid in a field we read; their content is skipped.
    Object,
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde_json's recursion limit (128) bounds the nesting of arrays read here.
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(match i64::try_from(v) {
            Ok(small) => Json::Int(small),
            Err(_) => Json::BigUint(v),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Float(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut elements = Vec::new();
        while let Some(element) = seq.next_element()? {
            elements.push(element);
        }
        Ok(Json::Array(elements))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Json::Object)
    }
}

/// Renders a value the way it appeared (abbreviated), for "got ..." in error messages.
impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Int(i) => write!(f, "{i}"),
            Json::BigUint(u) => write!(f, "{u}"),
            Json::Float(x) => write!(f, "{x:?}"),
            Json::Str(s) => {
                const SHOWN: usize = 40;
                if s.chars().count() > SHOWN {
                    let head: String = s.chars().take(SHOWN).collect();
                    write!(f, "{head:?}...")
                } else {
                    write!(f, "{s:?}")
                }
            }
            Json::Array(elements) => {
                const SHOWN: usize = 4;
                f.write_str("[")?;
                for (i, element) in elements.iter().take(SHOWN).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{element}")?;
                }
                if elements.len() > SHOWN {
                    write!(f, ", ... ({} elements)", elements.len())?;
                }
                f.write_str("]")
            }
            Json::Object => f.write_str("an object"),
        }
    }
}

impl Json<'_> {
    /// A register value or key: null, an `i64` or a string.
    fn to_scalar(&self) -> Option<Value> {
        match self {
            Json::Null => Some(Value::Null),
            Json::Int(i) => Some(Value::Int(*i)),
            Json::Str(s) => Some(Value::Str(s.as_ref().to_owned())),
            _ => None,
        }
    }

    fn as_non_negative(&self) -> Option<u64> {
        match *self {
            Json::Int(i) => u64::try_from(i).ok(),
            Json::BigUint(u) => Some(u),
            _ => None,
        }
    }
}

/// The fields of one event line that the checker reads; `None` = absent.
#[derive(Default)]
struct LineFields<'a> {
    index: Option<Json<'a>>,
    time: Option<Json<'a>>,
    process: Option<Json<'a>>,
    kind: Option<Json<'a>>,
    f: Option<Json<'a>>,
    key: Option<Json<'a>>,
    value: Option<Json<'a>>,
    /// The first known field that appeared twice: reported after parsing, with the line.
    duplicate: Option<&'static str>,
}

/// The names of the fields in an event object; anything else is skipped.
enum FieldName {
    Index,
    Time,
    Process,
    Type,
    F,
    Key,
    Value,
    Other,
}

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(FieldNameVisitor)
    }
}

struct FieldNameVisitor;

impl Visitor<'_> for FieldNameVisitor {
    type Value = FieldName;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match v {
            "index" => FieldName::Index,
            "time" => FieldName::Time,
            "process" => FieldName::Process,
            "type" => FieldName::Type,
            "f" => FieldName::F,
            "key" => FieldName::Key,
            "value" => FieldName::Value,
            _ => FieldName::Other,
        })
    }
}

struct LineVisitor;

impl<'de> Visitor<'de> for LineVisitor {
    type Value = LineFields<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = LineFields::default();
        while let Some(name) = map.next_key::<FieldName>()? {
            let (slot, label) = match name {
                FieldName::Index => (&mut fields.index, "index"),
                FieldName::Time => (&mut fields.time, "time"),
                FieldName::Process => (&mut fields.process, "process"),
                FieldName::Type => (&mut fields.kind, "type"),
                FieldName::F => (&mut fields.f, "f"),
                FieldName::Key => (&mut fields.key, "key"),
                FieldName::Value => (&mut fields.value, "value"),
                FieldName::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let value = map.next_value::<Json<'de>>()?;
            if slot.is_some() {
                fields.duplicate.get_or_insert(label);
            } else {
                *slot = Some(value);
            }
        }
        Ok(fields)
    }
}

impl LineFields<'_> {
    /// Validates the fields; `Ok(None)` for a nemesis event.
    fn into_event(self, line: usize) -> Result<Option<Event>, HistoryError> {
        let fail = |message: String| Err(HistoryError::at(line, message));
        if let Some(name) = self.duplicate {
            return fail(format!("field \"{name}\" appears twice"));
        }
        let process = match self.process {
            None => return fail("missing field \"process\"".into()),
            Some(Json::Str(s)) if s == "nemesis" => return Ok(None),
            Some(other) => match other.as_non_negative() {
                Some(p) => p,
                None => {
                    return fail(format!(
                        "\"process\" must be a non-negative integer or \"nemesis\", got {other}"
                    ))
                }
            },
        };
        let kind = match self.kind {
            None => return fail("missing field \"type\"".into()),
            Some(Json::Str(s)) => match &*s {
                "invoke" => EventType::Invoke,
                "ok" => EventType::Ok,
                "fail" => EventType::Fail,
                "info" => EventType::Info,
                _ => {
                    return fail(format!(
                        "\"type\" must be \"invoke\", \"ok\", \"fail\" or \"info\", got {:?}",
                        &*s
                    ))
                }
            },
            Some(other) => {
                return fail(format!(
                    "\"type\" must be \"invoke\", \"ok\", \"fail\" or \"info\", got {other}"
                ))
            }
        };
        let f = match self.f {
            None => return fail("missing field \"f\"".into()),
            Some(Json::Str(s)) => match Func::from_name(&s) {
                Some(f) => f,
                None => {
                    return fail(format!(
                        "unknown \"f\" {:?}: expected read, write, cas, append, acquire or release",
                        &*s
                    ))
                }
            },
            Some(other) => return fail(format!("\"f\" must be a string, got {other}")),
        };
        let key = match &self.key {
            None => Value::Null,
            Some(json) => match json.to_scalar() {
                Some(key) => key,
                None => {
                    return fail(format!(
                        "\"key\" must be a string, an integer or null, got {json}"
                    ))
                }
            },
        };
        let value = match self.value {
            None => RawValue::Scalar(Value::Null),
            Some(json) => match raw_value(&json) {
                Some(value) => value,
                None => {
                    return fail(format!(
                        "\"value\" must be null, an integer, a string or a 2-element array of \
                         those, got {json}"
                    ))
                }
            },
        };
        let index = match self.index {
            None | Some(Json::Null) => None,
            Some(other) => match other.as_non_negative() {
                Some(index) => Some(index),
                None => {
                    return fail(format!(
                        "\"index\" must be a non-negative integer, got {other}"
                    ))
                }
            },
        };
        let time = match self.time {
            None | Some(Json::Null) => None,
            Some(Json::Int(t)) => Some(t),
            Some(other) => {
                return fail(format!(
                    "\"time\" must be an integer (nanoseconds) or null, got {other}"
                ))
            }
        };
        Ok(Some(Event {
            line,
            index,
            time,
            process,
            kind,
            f,
            key,
            value,
        }))
    }
}

/// `value`: a scalar, or a 2-element array of scalars (cas `[old, new]`).
fn raw_value(json: &Json<'_>) -> Option<RawValue> {
    match json {
        Json::Array(elements) => match elements.as_slice() {
            [old, new] => Some(RawValue::Pair(old.to_scalar()?, new.to_scalar()?)),
            _ => None,
        },
        other => other.to_scalar().map(RawValue::Scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(line: usize, process: u64, kind: EventType, f: Func, value: RawValue) -> Event {
        Event {
            line,
            index: None,
            time: None,
            process,
            kind,
            f,
            key: Value::Null,
            value,
        }
    }

    /// The error a one-line (or multi-line) input produces, as `(line, message)`.
    fn error_of(input: &str) -> (usize, String) {
        match parse(input.as_bytes()) {
            Err(HistoryError::Line { line, message }) => (line, message),
            other => panic!("expected a line error for {input:?}, got {other:?}"),
        }
    }

    fn assert_error(input: &str, line: usize, fragment: &str) {
        let (got_line, message) = error_of(input);
        assert_eq!(got_line, line, "line for {input:?}: {message}");
        assert!(
            message.contains(fragment),
            "message for {input:?} should contain {fragment:?}: {message}"
        );
    }

    const GOOD: &str = r#"{"process":1,"type":"invoke","f":"read","value":null}"#;

    #[test]
    fn parses_contract_example() {
        let input = concat!(
            r#"{"index":0,"time":1200,"process":3,"type":"invoke","f":"write","key":"k7","value":5}"#,
            "\n",
            r#"{"index":1,"time":3400,"process":3,"type":"ok","f":"write","key":"k7","value":5}"#,
            "\n",
            r#"{"index":2,"time":3500,"process":"nemesis","type":"info","f":"start-partition","value":"majorities-ring"}"#,
            "\n"
        );
        let events = parse(input.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0],
            Event {
                line: 1,
                index: Some(0),
                time: Some(1200),
                process: 3,
                kind: EventType::Invoke,
                f: Func::Write,
                key: Value::Str("k7".into()),
                value: RawValue::Scalar(Value::Int(5)),
            }
        );
        assert_eq!(events[1].kind, EventType::Ok);
        assert_eq!(events[1].line, 2);
    }

    #[test]
    fn skips_blank_lines_and_counts_them() {
        let input = format!("\n  \t\r\n{GOOD}\r\n\n{GOOD}");
        let events = parse(input.as_bytes()).unwrap();
        assert_eq!(events.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 5]);
    }

    #[test]
    fn empty_input_is_an_empty_history() {
        assert_eq!(parse(b"").unwrap(), vec![]);
        assert_eq!(parse(b"\n\n  \n").unwrap(), vec![]);
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let input = format!("\u{feff}{GOOD}\n");
        assert_eq!(parse(input.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn reads_every_value_shape_and_key_kind() {
        let input = concat!(
            r#"{"process":0,"type":"invoke","f":"cas","key":7,"value":[1,"x"]}"#,
            "\n",
            r#"{"process":0,"type":"ok","f":"cas","key":7,"value":[null,2]}"#,
            "\n",
            r#"{"process":1,"type":"invoke","f":"append","key":null,"value":"a\"\u00e9"}"#,
            "\n",
            r#"{"process":18446744073709551615,"type":"info","f":"acquire","index":18446744073709551615,"time":-5}"#,
        );
        let events = parse(input.as_bytes()).unwrap();
        assert_eq!(
            events[0].value,
            RawValue::Pair(Value::Int(1), Value::Str("x".into()))
        );
        assert_eq!(events[0].key, Value::Int(7));
        assert_eq!(events[1].value, RawValue::Pair(Value::Null, Value::Int(2)));
        assert_eq!(
            events[2].value,
            RawValue::Scalar(Value::Str("a\"\u{e9}".into()))
        );
        assert_eq!(events[2].key, Value::Null);
        assert_eq!(
            events[3],
            Event {
                index: Some(u64::MAX),
                time: Some(-5),
                ..event(
                    4,
                    u64::MAX,
                    EventType::Info,
                    Func::Acquire,
                    RawValue::Scalar(Value::Null)
                )
            }
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let input =
            r#"{"node":"n1","process":2,"error":{"a":[1,{"b":2}]},"type":"fail","f":"release"}"#;
        assert_eq!(
            parse(input.as_bytes()).unwrap(),
            vec![event(
                1,
                2,
                EventType::Fail,
                Func::Release,
                RawValue::Scalar(Value::Null)
            )]
        );
    }

    #[test]
    fn nemesis_events_are_dropped_whatever_their_fields() {
        let input = concat!(
            r#"{"process":"nemesis","type":"info","f":"kill","value":{"n1":[1.5,true]}}"#,
            "\n",
            r#"{"process":"nemesis"}"#,
        );
        assert_eq!(parse(input.as_bytes()).unwrap(), vec![]);
    }

    #[test]
    fn error_bad_process() {
        let input = format!("{GOOD}\n\n{GOOD}\n\n\n\n{}", GOOD.replace("1", "true"));
        assert_error(
            &input,
            7,
            r#""process" must be a non-negative integer or "nemesis", got true"#,
        );
        assert_error(&GOOD.replace("1", "-1"), 1, "got -1");
        assert_error(&GOOD.replace("1", "\"n1\""), 1, r#"got "n1""#);
        assert_error(&GOOD.replace("1", "1.0"), 1, "got 1.0");
    }

    #[test]
    fn error_missing_fields() {
        assert_error(
            r#"{"type":"ok","f":"read"}"#,
            1,
            r#"missing field "process""#,
        );
        assert_error(r#"{"process":0,"f":"read"}"#, 1, r#"missing field "type""#);
        assert_error(r#"{"process":0,"type":"ok"}"#, 1, r#"missing field "f""#);
    }

    #[test]
    fn error_bad_type() {
        assert_error(&GOOD.replace("invoke", "done"), 1, r#""type" must be"#);
        assert_error(&GOOD.replace("\"invoke\"", "3"), 1, "got 3");
    }

    #[test]
    fn error_unknown_f_names_it() {
        assert_error(&GOOD.replace("read", "incr"), 1, r#"unknown "f" "incr""#);
        assert_error(
            &GOOD.replace("\"read\"", "[1]"),
            1,
            r#""f" must be a string, got [1]"#,
        );
    }

    #[test]
    fn error_bad_key() {
        let input = GOOD.replace("\"value\"", "\"key\":1.5,\"value\"");
        assert_error(
            &input,
            1,
            r#""key" must be a string, an integer or null, got 1.5"#,
        );
        let input = GOOD.replace("\"value\"", "\"key\":[1],\"value\"");
        assert_error(&input, 1, "got [1]");
    }

    #[test]
    fn error_bad_value_shapes() {
        for (value, shown) in [
            ("1.5", "1.5"),
            ("true", "true"),
            ("{\"a\":1}", "an object"),
            ("[1,2,3]", "[1, 2, 3]"),
            ("[1]", "[1]"),
            ("[[1,2],3]", "[[1, 2], 3]"),
            ("[1,true]", "[1, true]"),
            ("99999999999999999999", "1e20"),
        ] {
            let input = format!("{GOOD}\n{}", GOOD.replace("null", value));
            assert_error(&input, 2, &format!("\"value\" must be null, an integer, a string or a 2-element array of those, got {shown}"));
        }
    }

    #[test]
    fn error_bad_index_and_time() {
        let with = |extra: &str| GOOD.replace("{", &format!("{{{extra},"));
        assert_error(
            &with(r#""index":-1"#),
            1,
            r#""index" must be a non-negative integer, got -1"#,
        );
        assert_error(&with(r#""index":"0""#), 1, r#"got "0""#);
        assert_error(&with(r#""time":1.5"#), 1, r#""time" must be an integer"#);
        assert_error(
            &with(r#""time":18446744073709551615"#),
            1,
            "got 18446744073709551615",
        );
        assert!(parse(with(r#""time":null,"index":null"#).as_bytes()).is_ok());
    }

    #[test]
    fn error_duplicate_field() {
        let input = GOOD.replace("{", r#"{"process":2,"#);
        assert_error(&input, 1, r#"field "process" appears twice"#);
    }

    #[test]
    fn error_invalid_json() {
        assert_error(&format!("{GOOD}\n{{\"process\":1,"), 2, "invalid JSON");
        assert_error(r#"{"process":1 "type":"ok"}"#, 1, "invalid JSON at column");
        assert_error(&format!("{GOOD} x"), 1, "invalid JSON at column");
        assert_error(&format!("{GOOD}{GOOD}"), 1, "invalid JSON at column");
        assert_error("[1,2]", 1, "each line must be one JSON object");
        assert_error("5", 1, "each line must be one JSON object");
    }

    #[test]
    fn error_invalid_utf8() {
        let mut input = format!("{GOOD}\n").into_bytes();
        input.extend_from_slice(b"{\"process\":\"\xff\"}");
        match parse(&input) {
            Err(HistoryError::Line { line, message }) => {
                assert_eq!(line, 2);
                assert!(message.contains("invalid UTF-8 at column 13"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_error(&GOOD.replace("null", &deep), 1, "recursion limit");
    }
}
