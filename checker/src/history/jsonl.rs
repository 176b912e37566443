//! The JSON Lines history format (`history.jsonl`, described in `docs/history-format.md`):
//! one event object per line.
//!
//! The one reader and the one writer of the format. Each line is deserialized by serde_json
//! straight into a [`LineFields`] (no `serde_json::Value` trees for the checker: borrowed
//! [`Json`] scalars, no per-field allocation unless a string has escapes), then checked field
//! by field so that every error names the line and the field at fault. [`parse`] keeps the
//! client events the checker understands (nemesis events are dropped here and never reach
//! pairing); [`read_records`] keeps every event as a [`Record`], for reports.
//! [`write_record`] prints a record the way both read it.
//!
//! For the checker, a line printed exactly as [`write_record`] prints a client event is read
//! by a small scanner instead ([`fast_event`]); anything else takes the general path above,
//! so the scanner changes no accepted input and no error. A large history is cut at line
//! ends into pieces parsed in parallel, whose events are paired while the next pieces are
//! parsed ([`Pipeline`]).

use super::{bytes, Event, EventType, Func, RawValue, Record, Value, Who};
use crate::error::HistoryError;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::marker::PhantomData;

/// Parses a JSON Lines history into its client events, in file (real-time) order.
///
/// Blank and whitespace-only lines are skipped; nemesis events are dropped without looking at
/// their other fields. Empty input is a valid, empty history.
pub fn parse(input: &[u8]) -> Result<Vec<Event>, HistoryError> {
    // ~90 bytes per event in practice: one allocation up front instead of ~20 regrowths.
    let mut events = Vec::with_capacity(input.len() / 80 + 1);
    parse_runs(input, &mut |event| events.push(event))?;
    Ok(events)
}

/// How input is cut up for parsing; tests use tiny sizes to reach every seam.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    /// About how much input is parsed at once (in pieces, in parallel) while the events of
    /// the block before are handed over.
    block: usize,
    /// About how much input one parallel task parses.
    piece: usize,
    /// Blocks shorter than this are parsed on the calling thread.
    parallel_min: usize,
}

/// Blocks of a few pieces per core, small next to a large history; pieces small enough to
/// keep every core busy to the end, large enough that the per-task overhead does not show;
/// and for a small history, starting the thread pool would cost more than it saves.
const SIZES: Sizes = Sizes {
    block: 8 << 20,
    piece: 1 << 20,
    parallel_min: 4 << 20,
};

/// What [`parse_runs`] and [`read_runs`] hand their events to, one at a time, in file order.
pub(crate) type Consume<'c> = dyn FnMut(Event) + Send + 'c;

/// Parses `input` like [`parse`], handing its events to `consume`.
///
/// The error is [`parse`]'s: the first bad line in the file; nothing after that line has
/// been handed over.
pub(crate) fn parse_runs(input: &[u8], consume: &mut Consume<'_>) -> Result<(), HistoryError> {
    parse_runs_sized(input, consume, SIZES)
}

fn parse_runs_sized(
    input: &[u8],
    consume: &mut Consume<'_>,
    sizes: Sizes,
) -> Result<(), HistoryError> {
    let mut pipeline = Pipeline::new(consume, sizes);
    let mut rest = strip_bom(input);
    while !rest.is_empty() {
        let (block, after) = rest.split_at(line_boundary(rest, sizes.block));
        pipeline.feed(block)?;
        rest = after;
    }
    pipeline.finish()
}

/// [`parse_runs`] on a history read from `reader` a block at a time, so that a large file
/// is never in memory whole; `bytes` is how long it is, if known. A read error is a
/// [`HistoryError::File`] with the I/O error's message.
pub(crate) fn read_runs(
    reader: impl std::io::Read + Send,
    bytes: Option<usize>,
    consume: &mut Consume<'_>,
) -> Result<(), HistoryError> {
    let sizes = match bytes {
        // One thread parses it anyway: small blocks keep the buffer small.
        Some(bytes) if bytes < SIZES.parallel_min => Sizes {
            block: bytes.saturating_add(1).min(64 << 10),
            ..SIZES
        },
        _ => SIZES,
    };
    read_runs_sized(reader, consume, sizes)
}

fn read_runs_sized(
    mut reader: impl std::io::Read + Send,
    consume: &mut Consume<'_>,
    sizes: Sizes,
) -> Result<(), HistoryError> {
    let mut pipeline = Pipeline::new(consume, sizes);
    // Blocks large enough to be parsed in parallel are read while the block before is
    // parsed: reading alone would leave every core idle.
    let overlap = sizes.block >= sizes.parallel_min;
    // `buffer` holds unparsed input, up to `size` bytes; `size` grows only for a line longer
    // than it.
    let mut size = sizes.block.max(1);
    let mut buffer = Vec::with_capacity(size);
    let mut at_end = read_into(&mut reader, &mut buffer, size)?;
    // The next block's buffer.
    let mut next = Vec::new();
    let mut first = true;
    loop {
        // Whole lines only, until the end of the input.
        let end = if at_end {
            buffer.len()
        } else {
            match bytes::rfind(b'\n', &buffer) {
                Some(newline) => newline + 1,
                None => {
                    size *= 2;
                    at_end = read_into(&mut reader, &mut buffer, size)?;
                    continue;
                }
            }
        };
        let start = if first && buffer.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        first = false;
        let block = buffer.get(start..end).unwrap_or_default();
        if at_end {
            pipeline.feed(block)?;
            return pipeline.finish();
        }
        if !overlap {
            // One buffer: the start of the last line, which the block leaves out, moves to
            // its front and the next block is read after it.
            pipeline.feed(block)?;
            buffer.drain(..end);
            at_end = read_into(&mut reader, &mut buffer, size)?;
            continue;
        }
        // The start of the last line, which the block leaves out, begins the next buffer.
        next.clear();
        next.extend_from_slice(buffer.get(end..).unwrap_or_default());
        let (fed, read) = rayon::join(
            || pipeline.feed(block),
            || read_into(&mut reader, &mut next, size),
        );
        // A bad line comes before a read error further on.
        fed?;
        at_end = read?;
        std::mem::swap(&mut buffer, &mut next);
    }
}

/// Reads onto the end of `buffer` until it holds `size` bytes or the input ends; returns
/// whether it ended. Bytes are read into the vector's spare room: nothing is zeroed first.
fn read_into(
    reader: &mut impl std::io::Read,
    buffer: &mut Vec<u8>,
    size: usize,
) -> Result<bool, HistoryError> {
    use std::io::Read as _;
    let wanted = size.saturating_sub(buffer.len());
    buffer.reserve_exact(wanted);
    // `read_to_end` retries interrupted reads and stops at the limit or the end of input.
    let read = reader
        .by_ref()
        .take(wanted as u64)
        .read_to_end(buffer)
        .map_err(|err| HistoryError::File(err.to_string()))?;
    Ok(read < wanted)
}

/// The length of `input`'s first `at_least` bytes extended to the end of their last line
/// (the whole input if that line does not end).
fn line_boundary(input: &[u8], at_least: usize) -> usize {
    match input
        .get(at_least..)
        .and_then(|after| bytes::find(b'\n', after))
    {
        Some(newline) => at_least + newline + 1,
        None => input.len(),
    }
}

/// Parses blocks of whole lines and hands their events over in file order.
///
/// A large block is parsed in pieces, in parallel, while the events of the previous block
/// are handed over: pairing overlaps parsing, and only two blocks' events ever exist at once
/// (their vectors are reused). Pieces count lines from their own start; the line numbers are
/// made absolute as the runs are handed over, in order.
struct Pipeline<'c, 'd> {
    consume: &'c mut Consume<'d>,
    sizes: Sizes,
    /// Lines in the runs handed over so far.
    lines_before: usize,
    /// The last block's runs: events and the newlines of their piece, or the piece's error.
    parsed: Vec<(Vec<Event>, Result<usize, HistoryError>)>,
    /// Emptied run vectors, for the next block.
    spare: Vec<Vec<Event>>,
}

impl<'c, 'd> Pipeline<'c, 'd> {
    fn new(consume: &'c mut Consume<'d>, sizes: Sizes) -> Self {
        Pipeline {
            consume,
            sizes,
            lines_before: 0,
            parsed: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Parses `block` (whole lines; only the last block of an input may end without a
    /// newline) and hands over the block before it. A small block is parsed on this thread
    /// and handed over at once, event by event.
    fn feed(&mut self, block: &[u8]) -> Result<(), HistoryError> {
        use rayon::prelude::*;
        let previous = std::mem::take(&mut self.parsed);
        if block.len() < self.sizes.parallel_min {
            self.spare = self.hand_over(previous)?;
            let Pipeline {
                consume,
                lines_before,
                ..
            } = self;
            let before = *lines_before;
            let newlines = parse_lines(block, |mut event| {
                event.line += before;
                consume(event);
            })
            .map_err(|err| shift(err, before))?;
            *lines_before += newlines;
            return Ok(());
        }
        let mut pieces = Vec::with_capacity(block.len() / self.sizes.piece.max(1) + 1);
        let mut rest = block;
        while !rest.is_empty() {
            let (piece, after) = rest.split_at(line_boundary(rest, self.sizes.piece));
            pieces.push((piece, self.spare.pop().unwrap_or_default()));
            rest = after;
        }
        let Pipeline {
            consume,
            lines_before,
            ..
        } = self;
        let (handed, parsed) = rayon::join(
            || hand_over(consume, lines_before, previous),
            || {
                pieces
                    .into_par_iter()
                    .map(|(piece, mut events): (&[u8], Vec<Event>)| {
                        let newlines = parse_lines(piece, |event| events.push(event));
                        (events, newlines)
                    })
                    .collect()
            },
        );
        self.spare = handed?;
        self.parsed = parsed;
        Ok(())
    }

    fn hand_over(
        &mut self,
        runs: Vec<(Vec<Event>, Result<usize, HistoryError>)>,
    ) -> Result<Vec<Vec<Event>>, HistoryError> {
        hand_over(self.consume, &mut self.lines_before, runs)
    }

    /// Hands over the last block.
    fn finish(mut self) -> Result<(), HistoryError> {
        let last = std::mem::take(&mut self.parsed);
        self.hand_over(last).map(drop)
    }
}

/// Hands `runs` to `consume` in order, their lines made absolute by `lines_before` (which
/// then counts them too); returns their emptied vectors, or the first run's error.
fn hand_over(
    consume: &mut Consume<'_>,
    lines_before: &mut usize,
    runs: Vec<(Vec<Event>, Result<usize, HistoryError>)>,
) -> Result<Vec<Vec<Event>>, HistoryError> {
    let mut emptied = Vec::with_capacity(runs.len());
    for (mut events, newlines) in runs {
        let newlines = newlines.map_err(|err| shift(err, *lines_before))?;
        for mut event in events.drain(..) {
            event.line += *lines_before;
            consume(event);
        }
        *lines_before += newlines;
        emptied.push(events);
    }
    Ok(emptied)
}

/// `err` of a piece, with its line counted from the start of the input.
fn shift(err: HistoryError, lines_before: usize) -> HistoryError {
    match err {
        HistoryError::Line { line, message } => HistoryError::Line {
            line: line + lines_before,
            message,
        },
        other => other,
    }
}

/// Hands the client events of `input` to `sink`, counting lines from 1 at the start of
/// `input`; returns how many newlines `input` holds (the lines a piece after it starts below).
fn parse_lines(input: &[u8], mut sink: impl FnMut(Event)) -> Result<usize, HistoryError> {
    let mut lines_seen = 0;
    // The unread input; `None` once its last line (which may be empty) has been read.
    let mut rest = Some(input);
    while let Some(unread) = rest {
        lines_seen += 1;
        let line = lines_seen;
        // The fast path finds where its line ends as it reads it.
        if let Some((event, after)) = fast_event(line, unread) {
            sink(event);
            rest = after;
            continue;
        }
        let (bytes, after) = match bytes::find(b'\n', unread) {
            Some(end) => (&unread[..end], Some(&unread[end + 1..])),
            None => (unread, None),
        };
        rest = after;
        if let Some(fields) = read_line::<Json<'_>>(line, bytes)? {
            if let Some(event) = fields.into_event(line)? {
                sink(event);
            }
        }
    }
    // One more line than there are newlines (possibly an empty last one).
    Ok(lines_seen - 1)
}

/// Editors on some platforms prepend a byte-order mark; it is not part of the first line.
fn strip_bom(input: &[u8]) -> &[u8] {
    input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input)
}

/// The client event on the line `input` starts with, when it is printed exactly as
/// [`write_record`] prints one (fields in name order, no spaces, integers, `null` and strings
/// without escapes), read without serde; with the input after that line's newline (`None`
/// when the input ends with the line).
///
/// `None` for any other line (another field order, spaces, escapes, floats, nemesis events,
/// anything invalid): the caller then reads it the general way. So this recognises only lines
/// whose general reading is certain and gives the same [`Event`]; it changes neither what is
/// accepted nor any error. (No field it reads can hold a newline, so it never reads past its
/// line.)
fn fast_event(line: usize, input: &[u8]) -> Option<(Event, Option<&[u8]>)> {
    let mut cursor = Cursor(input);
    cursor.tag(b"{\"f\":")?;
    let f = Func::from_name_bytes(cursor.plain_bytes()?)?;
    cursor.tag(b",\"index\":")?;
    let index = u64::try_from(cursor.int()?).ok()?;
    cursor.tag(b",\"key\":")?;
    let key = cursor.scalar()?;
    cursor.tag(b",\"process\":")?;
    let process = u64::try_from(cursor.int()?).ok()?;
    cursor.tag(b",\"time\":")?;
    let time = cursor.int()?;
    cursor.tag(b",\"type\":")?;
    let kind = EventType::from_name_bytes(cursor.plain_bytes()?)?;
    cursor.tag(b",\"value\":")?;
    let value = if cursor.tag(b"[").is_some() {
        let old = cursor.scalar()?;
        cursor.tag(b",")?;
        let new = cursor.scalar()?;
        cursor.tag(b"]")?;
        RawValue::Pair(old, new)
    } else {
        RawValue::Scalar(cursor.scalar()?)
    };
    cursor.tag(b"}")?;
    // What serde_json allows after the object, up to the end of the line.
    let trailing = cursor
        .0
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r'))
        .unwrap_or(cursor.0.len());
    let after = match cursor.0.get(trailing) {
        None => None,
        Some(b'\n') => cursor.0.get(trailing + 1..),
        Some(_) => return None,
    };
    let event = Event {
        line,
        index: Some(index),
        time: Some(time),
        process,
        kind,
        f,
        key,
        value,
    };
    Some((event, after))
}

/// The unread rest of a line, for [`fast_event`].
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    /// Consumes `tag` if the rest starts with it. The comparison is of a fixed size, which
    /// the compiler turns into a few word compares (a `memcmp` call per tag cost more).
    fn tag<const N: usize>(&mut self, tag: &[u8; N]) -> Option<()> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        (head == tag).then(|| self.0 = rest)
    }

    /// A string without escapes or control characters (which serde_json would borrow as is).
    fn plain_str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.plain_bytes()?).ok()
    }

    /// [`Cursor::plain_str`]'s bytes, not yet checked to be UTF-8: enough to compare with an
    /// ASCII name (any other bytes do not match it).
    fn plain_bytes(&mut self) -> Option<&'a [u8]> {
        let rest = self.0.strip_prefix(b"\"")?;
        let end = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        let (text, after) = rest.split_at(end);
        self.0 = after.strip_prefix(b"\"")?;
        Some(text)
    }

    /// An integer that serde_json reads as the same `i64`. At most 18 digits, so it cannot
    /// overflow; longer ones, `-0` (a float to serde_json) and leading zeros (an error) are
    /// left to the general path.
    fn int(&mut self) -> Option<i64> {
        let (negative, digits) = match self.0.strip_prefix(b"-") {
            Some(rest) => (true, rest),
            None => (false, self.0),
        };
        // One pass: digits are accumulated until the first non-digit.
        let (mut magnitude, mut len) = (0i64, 0);
        for &byte in digits {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            if len == 18 {
                return None;
            }
            magnitude = magnitude * 10 + i64::from(digit);
            len += 1;
        }
        let (number, after) = digits.split_at(len);
        match number {
            [] | [b'0', _, ..] => return None,
            [b'0'] if negative => return None,
            _ => {}
        }
        self.0 = after;
        Some(if negative { -magnitude } else { magnitude })
    }

    /// `null`, an integer or a plain string, as a [`Value`].
    fn scalar(&mut self) -> Option<Value> {
        match self.0.first()? {
            b'n' => self.tag(b"null").map(|()| Value::Null),
            b'"' => self.plain_str().map(|s| Value::Str(s.to_owned())),
            _ => self.int().map(Value::Int),
        }
    }
}

/// Reads every event of a JSON Lines history (nemesis events too) as [`Record`]s, in file
/// order: what [`write_record`] prints reads back equal.
///
/// Blank lines are skipped and fields beyond the format's are ignored; a missing `index` is
/// the event's position, a missing `key` or `value` is `null`. `time` must be a non-negative
/// integer: pictures of a history need its timestamps.
pub fn read_records<T: AsRef<[u8]> + ?Sized>(input: &T) -> Result<Vec<Record>, HistoryError> {
    let mut position = 0;
    read(
        input.as_ref(),
        |line, fields: LineFields<'_, serde_json::Value>| {
            let record = fields.into_record(line, position)?;
            position += 1;
            Ok(Some(record))
        },
    )
}

/// Appends `record` to `out` as one line: the fields in name order, as the lab has always
/// written them.
pub fn write_record(out: &mut String, record: &Record) {
    let process = match record.who {
        Who::Process(p) => serde_json::Value::from(p),
        Who::Nemesis => serde_json::Value::from("nemesis"),
    };
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{{\"f\":{},\"index\":{},\"key\":{},\"process\":{process},\"time\":{},\"type\":\"{}\",\"value\":{}}}",
        serde_json::Value::from(record.f.as_str()),
        record.index,
        record.key,
        record.time,
        record.kind.name(),
        record.value,
    );
}

/// `records` as JSON Lines text.
pub fn write_records(records: &[Record]) -> String {
    let mut out = String::with_capacity(records.len() * 96);
    for record in records {
        write_record(&mut out, record);
    }
    out
}

/// Reads every non-blank line into fields and hands them to `finish` with their line
/// number; `finish` returns `None` for a line to leave out.
fn read<'a, V: Deserialize<'a>, T>(
    input: &'a [u8],
    mut finish: impl FnMut(usize, LineFields<'a, V>) -> Result<Option<T>, HistoryError>,
) -> Result<Vec<T>, HistoryError> {
    let input = strip_bom(input);
    // ~90 bytes per event in practice: one allocation up front instead of ~20 regrowths.
    let mut out = Vec::with_capacity(input.len() / 80 + 1);
    for (line_index, bytes) in lines(input).enumerate() {
        let line = line_index + 1;
        if let Some(fields) = read_line(line, bytes)? {
            if let Some(item) = finish(line, fields)? {
                out.push(item);
            }
        }
    }
    Ok(out)
}

/// The lines of `input` (without their `\n`): the hot loop of a big file.
fn lines(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(input);
    std::iter::from_fn(move || {
        let current = rest?;
        match bytes::find(b'\n', current) {
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

/// One line's fields: `Ok(None)` for blank lines.
fn read_line<'a, V: Deserialize<'a>>(
    line: usize,
    bytes: &'a [u8],
) -> Result<Option<LineFields<'a, V>>, HistoryError> {
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
    deserializer
        .deserialize_map(LineVisitor(PhantomData))
        .and_then(|fields| deserializer.end().map(|()| Some(fields)))
        .map_err(|err| json_error(line, &err))
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

/// The fields of one event line that the readers look at; `None` = absent.
///
/// `V` holds `key` and `value`: borrowed [`Json`] scalars for the checker's events, whole
/// `serde_json::Value`s for [`Record`]s.
struct LineFields<'a, V> {
    index: Option<Json<'a>>,
    time: Option<Json<'a>>,
    process: Option<Json<'a>>,
    kind: Option<Json<'a>>,
    f: Option<Json<'a>>,
    key: Option<V>,
    value: Option<V>,
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

struct LineVisitor<V>(PhantomData<V>);

/// Stores a field's value in its slot, or notes the field's name if it was already there.
fn put<T>(slot: &mut Option<T>, value: T, label: &'static str, duplicate: &mut Option<&str>) {
    if slot.is_some() {
        duplicate.get_or_insert(label);
    } else {
        *slot = Some(value);
    }
}

impl<'de, V: Deserialize<'de>> Visitor<'de> for LineVisitor<V> {
    type Value = LineFields<'de, V>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = LineFields {
            index: None,
            time: None,
            process: None,
            kind: None,
            f: None,
            key: None,
            value: None,
            duplicate: None,
        };
        let duplicate = &mut fields.duplicate;
        while let Some(name) = map.next_key::<FieldName>()? {
            match name {
                FieldName::Index => put(&mut fields.index, map.next_value()?, "index", duplicate),
                FieldName::Time => put(&mut fields.time, map.next_value()?, "time", duplicate),
                FieldName::Process => {
                    put(&mut fields.process, map.next_value()?, "process", duplicate)
                }
                FieldName::Type => put(&mut fields.kind, map.next_value()?, "type", duplicate),
                FieldName::F => put(&mut fields.f, map.next_value()?, "f", duplicate),
                FieldName::Key => put(&mut fields.key, map.next_value()?, "key", duplicate),
                FieldName::Value => put(&mut fields.value, map.next_value()?, "value", duplicate),
                FieldName::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// The checks both readers make, in the order they make them (the first failure is the one
/// reported). Errors are messages; the caller adds the line.
impl<V> LineFields<'_, V> {
    fn check_duplicate(&self) -> Result<(), String> {
        match self.duplicate {
            Some(name) => Err(format!("field \"{name}\" appears twice")),
            None => Ok(()),
        }
    }

    fn who(&self) -> Result<Who, String> {
        match &self.process {
            None => Err("missing field \"process\"".into()),
            Some(Json::Str(s)) if s == "nemesis" => Ok(Who::Nemesis),
            Some(other) => other.as_non_negative().map(Who::Process).ok_or_else(|| {
                format!("\"process\" must be a non-negative integer or \"nemesis\", got {other}")
            }),
        }
    }

    fn kind(&self) -> Result<EventType, String> {
        let expected = "\"type\" must be \"invoke\", \"ok\", \"fail\" or \"info\", got";
        match &self.kind {
            None => Err("missing field \"type\"".into()),
            Some(Json::Str(s)) => EventType::ALL
                .into_iter()
                .find(|kind| kind.name() == s)
                .ok_or_else(|| format!("{expected} {:?}", &**s)),
            Some(other) => Err(format!("{expected} {other}")),
        }
    }

    fn f(&self) -> Result<&str, String> {
        match &self.f {
            None => Err("missing field \"f\"".into()),
            Some(Json::Str(s)) => Ok(s),
            Some(other) => Err(format!("\"f\" must be a string, got {other}")),
        }
    }

    fn index(&self) -> Result<Option<u64>, String> {
        match &self.index {
            None | Some(Json::Null) => Ok(None),
            Some(other) => other
                .as_non_negative()
                .map(Some)
                .ok_or_else(|| format!("\"index\" must be a non-negative integer, got {other}")),
        }
    }
}

impl LineFields<'_, Json<'_>> {
    /// Validates the fields; `Ok(None)` for a nemesis event.
    fn into_event(self, line: usize) -> Result<Option<Event>, HistoryError> {
        self.event(line)
            .map_err(|message| HistoryError::at(line, message))
    }

    fn event(self, line: usize) -> Result<Option<Event>, String> {
        self.check_duplicate()?;
        let Who::Process(process) = self.who()? else {
            return Ok(None);
        };
        let kind = self.kind()?;
        let f = self.f()?;
        let f = Func::from_name(f).ok_or_else(|| {
            format!("unknown \"f\" {f:?}: expected read, write, cas, append, acquire or release")
        })?;
        let key = match &self.key {
            None => Value::Null,
            Some(json) => json.to_scalar().ok_or_else(|| {
                format!("\"key\" must be a string, an integer or null, got {json}")
            })?,
        };
        let value = match &self.value {
            None => RawValue::Scalar(Value::Null),
            Some(json) => raw_value(json).ok_or_else(|| {
                format!(
                    "\"value\" must be null, an integer, a string or a 2-element array of \
                     those, got {json}"
                )
            })?,
        };
        let index = self.index()?;
        let time = match self.time {
            None | Some(Json::Null) => None,
            Some(Json::Int(t)) => Some(t),
            Some(other) => {
                return Err(format!(
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

impl LineFields<'_, serde_json::Value> {
    /// Validates the fields; `position` is the record's place among those read so far.
    fn into_record(self, line: usize, position: u64) -> Result<Record, HistoryError> {
        self.record(position)
            .map_err(|message| HistoryError::at(line, message))
    }

    fn record(self, position: u64) -> Result<Record, String> {
        self.check_duplicate()?;
        let who = self.who()?;
        let kind = self.kind()?;
        let f = self.f()?.to_owned();
        let index = self.index()?.unwrap_or(position);
        let time = match &self.time {
            None => return Err("missing field \"time\"".into()),
            Some(json) => json.as_non_negative().ok_or_else(|| {
                format!("\"time\" must be a non-negative integer (nanoseconds), got {json}")
            })?,
        };
        Ok(Record {
            index,
            time,
            who,
            kind,
            f,
            key: self.key.unwrap_or(serde_json::Value::Null),
            value: self.value.unwrap_or(serde_json::Value::Null),
        })
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
    use proptest::prelude::*;
    use serde_json::{json, Value as JsonValue};

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
    fn parses_the_documented_example() {
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

    /// JSON values without floats (whose text form need not read back bit-identical).
    fn json_value() -> impl Strategy<Value = JsonValue> {
        let leaf = prop_oneof![
            Just(JsonValue::Null),
            any::<bool>().prop_map(JsonValue::from),
            any::<i64>().prop_map(JsonValue::from),
            any::<u64>().prop_map(JsonValue::from),
            ".{0,12}".prop_map(JsonValue::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(JsonValue::from),
                prop::collection::btree_map("[a-z<\"]{0,4}", inner, 0..4)
                    .prop_map(|m| JsonValue::Object(m.into_iter().collect())),
            ]
        })
    }

    fn record() -> impl Strategy<Value = Record> {
        (
            any::<u64>(),
            any::<u64>(),
            prop_oneof![any::<u64>().prop_map(Who::Process), Just(Who::Nemesis)],
            prop::sample::select(EventType::ALL.to_vec()),
            ".{0,10}",
            json_value(),
            json_value(),
        )
            .prop_map(|(index, time, who, kind, f, key, value)| Record {
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
        fn records_read_back_as_written(records in prop::collection::vec(record(), 0..20)) {
            prop_assert_eq!(read_records(&write_records(&records)), Ok(records));
        }
    }

    // -----------------------------------------------------------------------------------
    // The fast path and the pieces against the general path

    /// The general path alone, line by line: how `parse` read every line before the fast
    /// path and the pieces.
    /// The fast path's event for a whole line, if it reads it.
    fn fast_line(line: &[u8]) -> Option<Event> {
        match fast_event(1, line)? {
            (event, None | Some([])) => Some(event),
            (_, Some(_)) => None,
        }
    }

    fn general(input: &[u8]) -> Result<Vec<Event>, HistoryError> {
        let mut events = Vec::new();
        for (index, bytes) in lines(strip_bom(input)).enumerate() {
            if let Some(fields) = read_line::<Json<'_>>(index + 1, bytes)? {
                events.extend(fields.into_event(index + 1)?);
            }
        }
        Ok(events)
    }

    fn collect_runs(
        run: impl FnOnce(&mut Consume<'_>) -> Result<(), HistoryError>,
    ) -> Result<Vec<Event>, HistoryError> {
        let mut events = Vec::new();
        run(&mut |event| events.push(event))?;
        Ok(events)
    }

    /// A reader that returns at most `step` bytes per read, so lines span reads.
    struct Trickle<'a> {
        rest: &'a [u8],
        step: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.rest.len());
            let (now, later) = self.rest.split_at(n);
            buf[..n].copy_from_slice(now);
            self.rest = later;
            Ok(n)
        }
    }

    /// Every way of reading `input` gives the general path's events or error.
    fn assert_all_paths_agree(
        input: &[u8],
        sizes: Sizes,
        step: usize,
    ) -> Result<(), TestCaseError> {
        let expected = general(input);
        prop_assert_eq!(&parse(input), &expected);
        prop_assert_eq!(
            &collect_runs(|consume| parse_runs_sized(input, consume, sizes)),
            &expected
        );
        let reader = Trickle { rest: input, step };
        prop_assert_eq!(
            &collect_runs(|consume| read_runs_sized(reader, consume, sizes)),
            &expected
        );
        Ok(())
    }

    /// A string as JSON: escaped by serde_json, or every character as `\uXXXX`.
    fn json_string() -> impl Strategy<Value = String> {
        let text = prop_oneof![
            "[a-z][a-z0-9-]{0,4}",
            "[ -~]{0,6}",
            "[\"\\\\\n\t\r\u{0}\u{7f}\u{e9}\u{1F600}a/]{0,5}",
            Just("nemesis".to_string()),
        ];
        (text, any::<bool>()).prop_map(|(text, escape_all)| {
            if escape_all {
                let units: String = text
                    .encode_utf16()
                    .map(|unit| format!("\\u{unit:04x}"))
                    .collect();
                format!("\"{units}\"")
            } else {
                JsonValue::from(text).to_string()
            }
        })
    }

    /// The text of a scalar as a field value: mostly valid, sometimes odd or invalid.
    fn scalar_text() -> BoxedStrategy<String> {
        prop_oneof![
            4 => Just("null".to_string()),
            4 => (-3i64..1000).prop_map(|i| i.to_string()),
            2 => any::<i64>().prop_map(|i| i.to_string()),
            1 => any::<u64>().prop_map(|u| u.to_string()),
            3 => json_string(),
            1 => prop::sample::select(vec![
                "-0", "00", "01", "-01", "1.0", "1e3", "-", "2E-2", "true", "nul", "\"\\x\"",
                "\"\u{1}\"", "99999999999999999999", "-9223372036854775808",
                "9223372036854775807", "9223372036854775808", "123456789012345678",
                "-123456789012345678", "1234567890123456789",
            ])
            .prop_map(str::to_string),
        ]
        .boxed()
    }

    fn value_text() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => scalar_text(),
            3 => (scalar_text(), scalar_text()).prop_map(|(a, b)| format!("[{a},{b}]")),
            1 => (scalar_text(), scalar_text()).prop_map(|(a, b)| format!("[ {a} , {b} ]")),
            1 => prop::sample::select(vec!["[]", "[1]", "[1,2,3]", "{\"a\":1}", "[[1,2],3]"])
                .prop_map(str::to_string),
        ]
    }

    fn name_text(names: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop_oneof![
            8 => prop::sample::select(names).prop_map(|n| format!("\"{n}\"")),
            1 => json_string(),
            1 => prop::sample::select(vec!["3", "null", "[1]", "\"re\\u0061d\""])
                .prop_map(str::to_string),
        ]
    }

    fn number_text() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => any::<u32>().prop_map(|u| u.to_string()),
            2 => any::<u64>().prop_map(|u| u.to_string()),
            1 => any::<i64>().prop_map(|i| i.to_string()),
            1 => scalar_text(),
        ]
    }

    /// One line: as the writer prints a client event, often with one byte changed; or built
    /// field by field.
    fn line() -> impl Strategy<Value = String> {
        prop_oneof![written_line(), built_line()]
    }

    /// A client event as [`write_record`] prints it, then usually one byte changed (cut,
    /// inserted, removed or replaced), so that lines nearly of the writer's shape abound.
    fn written_line() -> impl Strategy<Value = String> {
        (
            client_record(),
            any::<prop::sample::Index>(),
            0u8..8,
            prop::sample::select(b" \t\r,:{}[]\"\\-0159.eEnulx".to_vec()),
        )
            .prop_map(|(record, at, change, byte)| {
                let mut line = String::new();
                write_record(&mut line, &record);
                let mut line = line.trim_end_matches('\n').as_bytes().to_vec();
                let at = at.index(line.len() + 1);
                match change {
                    0 => line.truncate(at),
                    1 => line.insert(at, byte),
                    2 if at < line.len() => drop(line.remove(at)),
                    3 if at < line.len() => line[at] = byte,
                    _ => {}
                }
                // A change inside a multi-byte character makes invalid UTF-8: lossy keeps
                // the line a string, with a replacement character there.
                String::from_utf8_lossy(&line).into_owned()
            })
    }

    /// The seven fields (each sometimes missing), extra and duplicate fields, in the writer's
    /// order or shuffled, compact or with whitespace, sometimes cut short or with a byte
    /// inserted.
    fn built_line() -> impl Strategy<Value = String> {
        let fields = (
            name_text(&[
                "read", "write", "cas", "append", "acquire", "release", "incr",
            ]),
            number_text(),
            scalar_text(),
            prop_oneof![8 => number_text(), 1 => Just("\"nemesis\"".to_string())],
            number_text(),
            name_text(&["invoke", "ok", "fail", "info", "done"]),
            value_text(),
        );
        (
            fields,
            prop::collection::vec(0u8..20, 7),
            prop::collection::vec(value_text(), 0..2),
            any::<bool>(),
            any::<prop::sample::Index>(),
            prop::sample::select(vec!["", "", "", " ", "\t", "\r", " \r", " x", "}"]),
            prop::sample::select(vec!["", "", "", " ", " \t"]),
            (any::<prop::sample::Index>(), 0u8..8, any::<u8>()),
        )
            .prop_map(
                |(values, presence, extras, shuffle, order, trailer, space, mutation)| {
                    let (f, index, key, process, time, kind, value) = values;
                    let mut fields: Vec<(String, String)> = [
                        ("f", f),
                        ("index", index),
                        ("key", key),
                        ("process", process),
                        ("time", time),
                        ("type", kind),
                        ("value", value),
                    ]
                    .into_iter()
                    // 0: missing, 1: twice, else once.
                    .zip(&presence)
                    .flat_map(|((name, text), &p)| {
                        let copies = match p {
                            0 => 0,
                            1 => 2,
                            _ => 1,
                        };
                        std::iter::repeat_n((format!("\"{name}\""), text), copies)
                    })
                    .collect();
                    for (i, extra) in extras.into_iter().enumerate() {
                        fields.push((format!("\"extra{i}\""), extra));
                    }
                    if shuffle {
                        let n = fields.len();
                        if n > 0 {
                            fields.rotate_left(order.index(n));
                            fields.swap(0, n / 2);
                        }
                    }
                    let body: Vec<String> = fields
                        .into_iter()
                        .map(|(name, text)| format!("{name}:{space}{text}"))
                        .collect();
                    let mut line = format!("{{{}}}{trailer}", body.join(&format!(",{space}")));
                    let (at, kind, byte) = mutation;
                    let at = at.index(line.len() + 1);
                    if line.is_char_boundary(at) {
                        match kind {
                            0 => line.truncate(at),
                            1 => line.insert(at, char::from(byte % 128)),
                            _ => {}
                        }
                    }
                    line
                },
            )
    }

    /// Records of client events as the lab writes them, and some it never would.
    fn client_record() -> impl Strategy<Value = Record> {
        let scalar = || {
            prop_oneof![
                2 => Just(JsonValue::Null),
                3 => (-5i64..100).prop_map(JsonValue::from),
                1 => any::<i64>().prop_map(JsonValue::from),
                2 => "k[0-9]{1,3}".prop_map(JsonValue::from),
                1 => ".{0,6}".prop_map(JsonValue::from),
                1 => json_value(),
            ]
        };
        (
            prop_oneof![9 => 0u64..1000, 1 => any::<u64>()],
            prop_oneof![9 => 0u64..1 << 40, 1 => any::<u64>()],
            prop_oneof![
                9 => (0u64..100).prop_map(Who::Process),
                1 => any::<u64>().prop_map(Who::Process),
                1 => Just(Who::Nemesis)
            ],
            prop::sample::select(EventType::ALL.to_vec()),
            prop::sample::select(vec![
                "read", "write", "cas", "append", "acquire", "release", "kill",
            ]),
            scalar(),
            prop_oneof![
                scalar(),
                (scalar(), scalar()).prop_map(|(a, b)| JsonValue::Array(vec![a, b])),
            ],
        )
            .prop_map(|(index, time, who, kind, f, key, value)| Record {
                index,
                time,
                who,
                kind,
                f: f.to_string(),
                key,
                value,
            })
    }

    fn sizes() -> impl Strategy<Value = Sizes> {
        (1usize..400, 0usize..200, 0usize..600).prop_map(|(block, piece, parallel_min)| Sizes {
            block,
            piece,
            parallel_min,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn fast_path_reads_a_line_as_the_general_path_does(line in line()) {
            if let Some(event) = fast_line(line.as_bytes()) {
                prop_assert_eq!(general(line.as_bytes()), Ok(vec![event]));
            }
            prop_assert_eq!(parse(line.as_bytes()), general(line.as_bytes()));
        }
    }

    proptest! {
        #[test]
        fn every_way_of_reading_a_history_agrees(
            lines in prop::collection::vec(
                prop_oneof![8 => line(), 1 => Just(String::new()), 1 => Just("  \r".into())],
                0..40,
            ),
            good in prop::collection::vec(any::<bool>(), 40),
            bom in any::<bool>(),
            final_newline in any::<bool>(),
            sizes in sizes(),
            step in 1usize..300,
        ) {
            // Mostly valid histories (lines replaced by a valid one), so that errors come late.
            let lines: Vec<String> = lines
                .into_iter()
                .zip(good)
                .map(|(line, good)| if good { GOOD.to_string() } else { line })
                .collect();
            let mut text = lines.join("\n");
            if final_newline {
                text.push('\n');
            }
            if bom {
                text.insert(0, '\u{feff}');
            }
            assert_all_paths_agree(text.as_bytes(), sizes, step)?;
        }

        #[test]
        fn written_client_events_take_the_fast_path(
            records in prop::collection::vec(client_record(), 1..10),
        ) {
            for record in records {
                let mut line = String::new();
                write_record(&mut line, &record);
                let expected = general(line.as_bytes());
                let plain = |json: &JsonValue| match json {
                    JsonValue::String(s) => !s.chars().any(|c| c == '"' || c == '\\' || c < ' '),
                    JsonValue::Number(n) => n.as_i64().is_some_and(|i| i.unsigned_abs() < 10u64.pow(18)),
                    JsonValue::Null => true,
                    _ => false,
                };
                let value_plain = match &record.value {
                    JsonValue::Array(pair) => pair.len() == 2 && pair.iter().all(plain),
                    other => plain(other),
                };
                let fast = fast_line(line.trim_end().as_bytes());
                if let Some(event) = &fast {
                    prop_assert_eq!(&expected, &Ok(vec![event.clone()]));
                }
                let takes_fast_path = matches!(record.who, Who::Process(p) if p < 10u64.pow(18))
                    && Func::from_name(&record.f).is_some()
                    && record.index < 10u64.pow(18)
                    && record.time < 10u64.pow(18)
                    && plain(&record.key)
                    && value_plain;
                prop_assert_eq!(fast.is_some(), takes_fast_path, "{}", line);
            }
        }
    }

    #[test]
    fn synthetic_histories_read_alike_in_pieces() {
        let ops = crate::synth::generate(&crate::synth::SynthSpec {
            seed: 7,
            keys: 3,
            ops_per_key: 300,
            processes_per_key: 4,
            info_rate: 0.05,
            ..Default::default()
        });
        let text = crate::synth::to_jsonl(&ops);
        // Every line of our own writer takes the fast path.
        assert!(lines(text.as_bytes())
            .filter(|line| !line.is_empty())
            .all(|line| fast_line(line).is_some()));
        // A bad line deep inside: its line number survives the pieces.
        let bad_line = 1234;
        let mut all: Vec<&str> = text.lines().collect();
        all.insert(bad_line - 1, "{\"process\":1,\"type\":\"ok\"}");
        let with_error = all.join("\n");
        for sizes in [
            Sizes {
                block: 1,
                piece: 0,
                parallel_min: 0,
            },
            Sizes {
                block: 5000,
                piece: 700,
                parallel_min: 0,
            },
            Sizes {
                block: 20_000,
                piece: 3000,
                parallel_min: 10_000,
            },
            SIZES,
        ] {
            for step in [1, 977, 1 << 20] {
                assert_all_paths_agree(text.as_bytes(), sizes, step).unwrap();
                assert_all_paths_agree(with_error.as_bytes(), sizes, step).unwrap();
            }
        }
        assert_eq!(
            general(with_error.as_bytes()).unwrap_err(),
            HistoryError::at(bad_line, "missing field \"f\"")
        );
    }

    #[test]
    fn writes_the_fields_in_name_order() {
        let record = Record {
            index: 7,
            time: 1200,
            who: Who::Process(3),
            kind: EventType::Ok,
            f: "cas".into(),
            key: json!("k\"1"),
            value: json!([5, null]),
        };
        let nemesis = Record {
            who: Who::Nemesis,
            kind: EventType::Info,
            f: "start-partition".into(),
            key: JsonValue::Null,
            value: json!({"b": [1], "a": "x"}),
            ..record.clone()
        };
        assert_eq!(
            write_records(&[record, nemesis]),
            concat!(
                r#"{"f":"cas","index":7,"key":"k\"1","process":3,"time":1200,"type":"ok","value":[5,null]}"#,
                "\n",
                r#"{"f":"start-partition","index":7,"key":null,"process":"nemesis","time":1200,"type":"info","value":{"a":"x","b":[1]}}"#,
                "\n",
            )
        );
    }

    #[test]
    fn bad_records_name_the_line_and_the_problem() {
        let good = r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"read","key":1}"#;
        let cases = [
            ("{\"index\":", "invalid JSON"),
            ("[1,2]", "each line must be one JSON object"),
            (
                r#"{"time":1,"process":0,"type":"ok"}"#,
                "missing field \"f\"",
            ),
            (
                r#"{"process":0,"type":"ok","f":"read"}"#,
                "missing field \"time\"",
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
            match read_records(&text) {
                Err(error @ HistoryError::Line { line: 3, .. }) => {
                    assert!(error.to_string().contains(expected), "{bad}: {error}");
                }
                other => panic!("{bad}: expected an error at line 3, got {other:?}"),
            }
        }
        let records = read_records(&format!("\n{good}\n{good}")).unwrap();
        assert_eq!(records[0].value, JsonValue::Null);
        assert_eq!(records[1].index, 0, "an index read is kept");
        let records = read_records(r#"{"time":1,"process":0,"type":"ok","f":"read"}"#).unwrap();
        assert_eq!(records[0].index, 0, "a missing index is the position");
    }

    #[test]
    fn written_records_read_back_as_the_same_ops_in_both_formats() {
        let client = |index, who, kind, f: &str, value| Record {
            index,
            time: index * 10,
            who,
            kind,
            f: f.into(),
            key: json!("k1"),
            value,
        };
        let p = Who::Process;
        let records = [
            client(0, p(0), EventType::Invoke, "write", json!(5)),
            Record {
                key: JsonValue::Null,
                ..client(
                    1,
                    Who::Nemesis,
                    EventType::Info,
                    "start-partition",
                    json!("halves"),
                )
            },
            client(2, p(0), EventType::Ok, "write", json!(5)),
            client(3, p(1), EventType::Invoke, "cas", json!([5, 6])),
            client(4, p(1), EventType::Fail, "cas", json!([5, 6])),
            client(5, p(2), EventType::Invoke, "read", JsonValue::Null),
            client(6, p(2), EventType::Ok, "read", json!(5)),
        ];
        let jsonl = super::super::parse(
            write_records(&records).as_bytes(),
            super::super::Format::Jsonl,
        )
        .unwrap();
        let edn = super::super::parse(
            super::super::edn::write_records(&records).as_bytes(),
            super::super::Format::Edn,
        )
        .unwrap();
        assert_eq!(jsonl.len(), 3);
        let strip = |ops: Vec<super::super::Op>| {
            ops.into_iter()
                .map(|o| (o.process, o.key, o.action, o.status, o.invoke, o.complete))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(jsonl), strip(edn));
    }
}
