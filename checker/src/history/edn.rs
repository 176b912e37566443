//! Jepsen/Knossos EDN histories (`history.edn`).
//!
//! A small, strict EDN reader of our own, because the checker needs the line where every op
//! map starts (for errors and reports) and must read a million ops in about a second.
//! Accepted: one top-level vector or list of op maps, or a sequence of top-level op maps.
//! Commas are whitespace, `;` starts a comment, `#_` discards the next form, and a tagged
//! literal (`#jepsen.history.Op{...}`) is read as the form it tags. Nesting is limited to
//! [`MAX_DEPTH`] so that hostile input cannot overflow the stack.
//!
//! Jepsen's `independent` checker wraps every value in a `[key value]` tuple. Whether a file
//! does that is decided once for the whole file (see [`is_independent`]), since a single op
//! cannot tell: a cas `[old new]` looks exactly like a tuple. An op map may instead name its
//! key in a `:key` field, as Porcupine's key-value histories do; there `:get` is a read and
//! `:put` a write.
//!
//! [`write_records`] prints [`Record`]s this way, client values as `[key value]` tuples, for
//! tools that read Jepsen's histories.

use super::{bytes, Event, EventType, Func, RawValue, Record, Value, Who};
use crate::error::HistoryError;
use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Forms nested deeper than this (collections, tags, `#_` discards) are rejected.
pub const MAX_DEPTH: usize = 64;

/// Parses an EDN history into its client events, in file (real-time) order.
///
/// Nemesis ops (`:process :nemesis`) are dropped. Keys come from `:key` fields, from
/// `[key value]` tuples when the whole file uses them (see [`is_independent`]), else every
/// key is `Value::Null`.
/// Empty input (or only whitespace and comments) is a valid, empty history.
pub fn parse(input: &[u8]) -> Result<Vec<Event>, HistoryError> {
    let text = std::str::from_utf8(input).map_err(|err| {
        let prefix = input.get(..err.valid_up_to()).unwrap_or_default();
        let line = 1 + bytes::count(b'\n', prefix);
        HistoryError::at(line, "invalid UTF-8")
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let ops = Reader::new(text).read_history()?;
    resolve_keys(ops)
}

/// One EDN form, borrowing from the input where it can.
#[derive(Debug, PartialEq)]
enum Edn<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    /// An integer outside `i64` (the token as written).
    BigInt(&'a str),
    /// Any other number: floats, `M` decimals, ratios, `##Inf`. Never a register value.
    Float(&'a str),
    Str(Cow<'a, str>),
    Char(char),
    /// Without the leading colon.
    Keyword(&'a str),
    Symbol(&'a str),
    Vector(Vec<Edn<'a>>),
    List(Vec<Edn<'a>>),
    Set(Vec<Edn<'a>>),
    /// Key and value forms alternate.
    Map(Vec<Edn<'a>>),
    Tagged(&'a str, Box<Edn<'a>>),
}

/// Renders a form as EDN, abbreviated, for "got ..." in error messages.
impl fmt::Display for Edn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn seq(f: &mut fmt::Formatter<'_>, open: &str, items: &[Edn], close: &str) -> fmt::Result {
            const SHOWN: usize = 4;
            f.write_str(open)?;
            for (i, item) in items.iter().take(SHOWN).enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{item}")?;
            }
            if items.len() > SHOWN {
                f.write_str(" ...")?;
            }
            f.write_str(close)
        }
        match self {
            Edn::Nil => f.write_str("nil"),
            Edn::Bool(b) => write!(f, "{b}"),
            Edn::Int(i) => write!(f, "{i}"),
            Edn::BigInt(token) | Edn::Float(token) | Edn::Symbol(token) => f.write_str(token),
            Edn::Str(s) => {
                const SHOWN: usize = 40;
                if s.chars().count() > SHOWN {
                    let head: String = s.chars().take(SHOWN).collect();
                    write!(f, "{head:?}...")
                } else {
                    write!(f, "{s:?}")
                }
            }
            Edn::Char(c) => write!(f, "\\{c}"),
            Edn::Keyword(name) => write!(f, ":{name}"),
            Edn::Vector(items) => seq(f, "[", items, "]"),
            Edn::List(items) => seq(f, "(", items, ")"),
            Edn::Set(items) => seq(f, "#{", items, "}"),
            Edn::Map(items) => seq(f, "{", items, "}"),
            Edn::Tagged(tag, form) => write!(f, "#{tag} {form}"),
        }
    }
}

impl Edn<'_> {
    /// A register value or key: nil, an integer, a string, a keyword or a symbol.
    fn to_scalar(&self) -> Option<Value> {
        match self {
            Edn::Nil => Some(Value::Null),
            Edn::Int(i) => Some(Value::Int(*i)),
            Edn::Str(s) => Some(Value::Str(s.as_ref().to_owned())),
            Edn::Keyword(name) | Edn::Symbol(name) => Some(Value::Str((*name).to_owned())),
            _ => None,
        }
    }

    /// The name of a keyword, symbol or string: how `:type` and `:f` may be written.
    fn as_name(&self) -> Option<&str> {
        match self {
            Edn::Keyword(name) | Edn::Symbol(name) => Some(name),
            Edn::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Elements of a vector or list (Clojure prints some seqs as lists).
    fn as_sequence(&self) -> Option<&[Edn<'_>]> {
        match self {
            Edn::Vector(items) | Edn::List(items) => Some(items),
            _ => None,
        }
    }
}

/// An op's `:value` before the file-wide independence decision gives it a meaning.
#[derive(Debug, Clone, PartialEq)]
enum ValueShape {
    Scalar(Value),
    /// `[a b]`: a cas `[old new]`, or an independent tuple `[key value]`.
    Pair(Value, Value),
    /// `[key [old new]]`: only meaningful in an independent history.
    KeyedPair(Value, Value, Value),
}

fn value_shape(form: &Edn) -> Option<ValueShape> {
    if let Some(items) = form.as_sequence() {
        let [first, second] = items else {
            return None;
        };
        let first = first.to_scalar()?;
        if let Some(inner) = second.as_sequence() {
            let [old, new] = inner else {
                return None;
            };
            return Some(ValueShape::KeyedPair(
                first,
                old.to_scalar()?,
                new.to_scalar()?,
            ));
        }
        return Some(ValueShape::Pair(first, second.to_scalar()?));
    }
    form.to_scalar().map(ValueShape::Scalar)
}

/// A client op as read, before keys are resolved.
#[derive(Debug)]
struct EdnOp {
    line: usize,
    index: Option<u64>,
    time: Option<i64>,
    process: u64,
    kind: EventType,
    f: Func,
    /// The op map's `:key`, if it has one.
    key: Option<Value>,
    value: ValueShape,
}

/// Whether the history uses Jepsen's independent `[key value]` tuples: iff it has at least
/// one client op, every op's value is a 2-element vector, and every cas value is
/// `[key [old new]]`. A single-register history always has a scalar value somewhere (a read
/// invoke's `nil`, a write's value) or a cas whose second element is a scalar, so the two
/// cannot be confused except in degenerate histories of only `[a b]`-valued non-cas ops,
/// which are invalid as single-register histories anyway.
fn is_independent(ops: &[EdnOp]) -> bool {
    !ops.is_empty()
        && ops.iter().all(|op| match (&op.value, op.f) {
            _ if op.key.is_some() => false,
            (ValueShape::KeyedPair(..), _) => true,
            (ValueShape::Pair(..), f) => f != Func::Cas,
            (ValueShape::Scalar(_), _) => false,
        })
}

fn resolve_keys(ops: Vec<EdnOp>) -> Result<Vec<Event>, HistoryError> {
    let independent = is_independent(&ops);
    ops.into_iter()
        .map(|op| {
            let (key, value) =
                match (op.key, independent, op.value) {
                    (Some(key), _, ValueShape::Scalar(value)) => (key, RawValue::Scalar(value)),
                    (Some(key), _, ValueShape::Pair(old, new)) => (key, RawValue::Pair(old, new)),
                    (None, true, ValueShape::Pair(key, value)) => (key, RawValue::Scalar(value)),
                    (None, true, ValueShape::KeyedPair(key, old, new)) => {
                        (key, RawValue::Pair(old, new))
                    }
                    (None, _, ValueShape::Scalar(value)) => (Value::Null, RawValue::Scalar(value)),
                    (None, false, ValueShape::Pair(old, new)) => {
                        (Value::Null, RawValue::Pair(old, new))
                    }
                    (_, _, ValueShape::KeyedPair(..)) => return Err(HistoryError::at(
                        op.line,
                        "a nested :value such as [k [old new]] is only allowed when every op's \
                         :value is a [key value] tuple and every cas's is [key [old new]] \
                         (Jepsen independent history), and no op has a :key; this history is not",
                    )),
                };
            Ok(Event {
                line: op.line,
                index: op.index,
                time: op.time,
                process: op.process,
                kind: op.kind,
                f: op.f,
                key,
                value,
            })
        })
        .collect()
}

/// Bytes that end a token (symbol, keyword, number, character literal).
fn is_delimiter(byte: u8) -> bool {
    matches!(
        byte,
        b' ' | b'\t'
            | b'\n'
            | b'\r'
            | b'\x0c'
            | b','
            | b'('
            | b')'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'"'
            | b';'
    )
}

/// A cursor over the input that knows its line.
struct Reader<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

type ReadResult<T> = Result<T, HistoryError>;

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Self {
        Reader {
            text,
            pos: 0,
            line: 1,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.text.as_bytes().get(self.pos + offset).copied()
    }

    fn error<T>(&self, message: impl Into<String>) -> ReadResult<T> {
        Err(HistoryError::at(self.line, message))
    }

    /// `text[start..end]`; both ends sit on ASCII bytes, so this never fails in practice.
    fn slice(&self, start: usize, end: usize) -> ReadResult<&'a str> {
        match self.text.get(start..end) {
            Some(s) => Ok(s),
            None => self.error("internal error: token boundary inside a character"),
        }
    }

    /// Skips whitespace (commas included), `;` comments and `#_`-discarded forms.
    fn skip_ignorable(&mut self, depth: usize) -> ReadResult<()> {
        loop {
            match self.peek() {
                Some(b'\n') => {
                    self.line += 1;
                    self.pos += 1;
                }
                Some(b' ' | b'\t' | b'\r' | b'\x0c' | b',') => self.pos += 1,
                Some(b';') => {
                    let rest = self.text.as_bytes().get(self.pos..).unwrap_or_default();
                    // Leave the newline itself for the arm above, which counts it.
                    self.pos += bytes::find(b'\n', rest).unwrap_or(rest.len());
                }
                Some(b'#') if self.peek_at(1) == Some(b'_') => {
                    self.pos += 2;
                    self.read_form(depth + 1)?;
                }
                _ => return Ok(()),
            }
        }
    }

    /// Reads the next form, after any ignorable input.
    fn read_form(&mut self, depth: usize) -> ReadResult<Edn<'a>> {
        if depth > MAX_DEPTH {
            return self.error(format!("forms nested more than {MAX_DEPTH} deep"));
        }
        self.skip_ignorable(depth)?;
        let Some(byte) = self.peek() else {
            return self.error("unexpected end of input: a form is missing");
        };
        match byte {
            b'[' => Ok(Edn::Vector(self.read_sequence(b']', depth)?)),
            b'(' => Ok(Edn::List(self.read_sequence(b')', depth)?)),
            b'{' => {
                let line = self.line;
                let items = self.read_sequence(b'}', depth)?;
                if items.len() % 2 != 0 {
                    return Err(HistoryError::at(
                        line,
                        "a map has a key without a value (odd number of forms)",
                    ));
                }
                Ok(Edn::Map(items))
            }
            b')' | b']' | b'}' => self.error(format!("unexpected `{}`", byte as char)),
            b'"' => Ok(Edn::Str(self.read_string()?)),
            b'\\' => self.read_char(),
            b'#' => self.read_dispatch(depth),
            b':' => {
                self.pos += 1;
                let name = self.read_token()?;
                if name.is_empty() {
                    return self.error("a keyword has no name (lone `:`)");
                }
                Ok(Edn::Keyword(name))
            }
            _ => {
                let token = self.read_token()?;
                self.classify_token(token)
            }
        }
    }

    /// After the opening bracket: the forms up to `close`.
    fn read_sequence(&mut self, close: u8, depth: usize) -> ReadResult<Vec<Edn<'a>>> {
        let open_line = self.line;
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ignorable(depth + 1)?;
            match self.peek() {
                Some(b) if b == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                None => {
                    return self.error(format!(
                        "unexpected end of input: `{}` opened at line {open_line} is not closed",
                        opening(close)
                    ))
                }
                Some(_) => items.push(self.read_form(depth + 1)?),
            }
        }
    }

    /// A maximal run of non-delimiter bytes (possibly empty).
    fn read_token(&mut self) -> ReadResult<&'a str> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        while bytes.get(self.pos).is_some_and(|b| !is_delimiter(*b)) {
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }

    fn classify_token(&self, token: &'a str) -> ReadResult<Edn<'a>> {
        match token {
            "nil" => return Ok(Edn::Nil),
            "true" => return Ok(Edn::Bool(true)),
            "false" => return Ok(Edn::Bool(false)),
            _ => {}
        }
        let bytes = token.as_bytes();
        let digit_at = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
        let is_number = digit_at(0) || (matches!(bytes.first(), Some(b'+' | b'-')) && digit_at(1));
        if !is_number {
            return Ok(Edn::Symbol(token));
        }
        let integer = token.strip_suffix('N').unwrap_or(token);
        let unsigned = integer.strip_prefix(['+', '-']).unwrap_or(integer);
        if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
            // Rust's parser accepts a leading `+` as EDN does.
            return Ok(match integer.parse::<i64>() {
                Ok(i) => Edn::Int(i),
                Err(_) => Edn::BigInt(token),
            });
        }
        let decimal = token.strip_suffix('M').unwrap_or(token);
        let is_float = decimal.parse::<f64>().is_ok()
            && decimal
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
        let is_ratio = token.split_once('/').is_some_and(|(num, den)| {
            num.parse::<i64>().is_ok() && !den.is_empty() && den.bytes().all(|b| b.is_ascii_digit())
        });
        if is_float || is_ratio {
            Ok(Edn::Float(token))
        } else {
            self.error(format!("invalid number `{token}`"))
        }
    }

    /// After `"`: the string's content, borrowed unless it has escapes.
    fn read_string(&mut self) -> ReadResult<Cow<'a, str>> {
        let start_line = self.line;
        self.pos += 1;
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let unterminated = |line| {
            Err(HistoryError::at(
                line,
                format!("unexpected end of input: the string starting at line {start_line} is not closed"),
            ))
        };
        // Fast path: no escapes, so the content is a slice of the input.
        loop {
            match bytes.get(self.pos) {
                None => return unterminated(self.line),
                Some(b'"') => {
                    let content = self.slice(start, self.pos)?;
                    self.pos += 1;
                    return Ok(Cow::Borrowed(content));
                }
                Some(b'\\') => break,
                Some(b'\n') => {
                    self.line += 1;
                    self.pos += 1;
                }
                Some(_) => self.pos += 1,
            }
        }
        let mut owned = String::from(self.slice(start, self.pos)?);
        loop {
            let Some(byte) = bytes.get(self.pos).copied() else {
                return unterminated(self.line);
            };
            match byte {
                b'"' => {
                    self.pos += 1;
                    return Ok(Cow::Owned(owned));
                }
                b'\\' => {
                    let escaped = match bytes.get(self.pos + 1) {
                        None => return unterminated(self.line),
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'n') => '\n',
                        Some(b't') => '\t',
                        Some(b'r') => '\r',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'u') => {
                            let hex = self.text.get(self.pos + 2..self.pos + 6).unwrap_or("");
                            match u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
                                Some(c) if hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                                    self.pos += 4;
                                    c
                                }
                                _ => {
                                    return self.error(format!("invalid string escape `\\u{hex}`"))
                                }
                            }
                        }
                        Some(_) => {
                            let shown = self.text.get(self.pos..).and_then(|s| s.chars().nth(1));
                            return self.error(format!(
                                "invalid string escape `\\{}`",
                                shown.unwrap_or('?')
                            ));
                        }
                    };
                    owned.push(escaped);
                    self.pos += 2;
                }
                _ => {
                    // Copy the run up to the next quote or backslash in one go.
                    let rest = bytes.get(self.pos..).unwrap_or_default();
                    let run = bytes::find_either(b'"', b'\\', rest).unwrap_or(rest.len());
                    let chunk = self.slice(self.pos, self.pos + run)?;
                    self.line += bytes::count(b'\n', chunk.as_bytes());
                    owned.push_str(chunk);
                    self.pos += run;
                }
            }
        }
    }

    /// After `\`: a character literal such as `\a`, `\newline` or `\u00e9`.
    fn read_char(&mut self) -> ReadResult<Edn<'a>> {
        self.pos += 1;
        let Some(first) = self.text.get(self.pos..).and_then(|s| s.chars().next()) else {
            return self.error("unexpected end of input after `\\`");
        };
        // The first character is taken whatever it is (`\(` is the character `(`).
        let start = self.pos;
        self.pos += first.len_utf8();
        if first == '\n' {
            self.line += 1;
        }
        let rest = self.read_token()?;
        let name = self.slice(start, self.pos)?;
        if rest.is_empty() {
            return Ok(Edn::Char(first));
        }
        let named = match name {
            "newline" => Some('\n'),
            "space" => Some(' '),
            "tab" => Some('\t'),
            "return" => Some('\r'),
            "formfeed" => Some('\u{c}'),
            "backspace" => Some('\u{8}'),
            _ => name
                .strip_prefix('u')
                .filter(|hex| hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .and_then(char::from_u32),
        };
        match named {
            Some(c) => Ok(Edn::Char(c)),
            None => self.error(format!("invalid character literal `\\{name}`")),
        }
    }

    /// After `#`: a set, `##Inf`-style value or a tagged literal. (`#_` never gets here.)
    fn read_dispatch(&mut self, depth: usize) -> ReadResult<Edn<'a>> {
        match self.peek_at(1) {
            Some(b'{') => {
                self.pos += 1;
                Ok(Edn::Set(self.read_sequence(b'}', depth)?))
            }
            Some(b'#') => {
                self.pos += 2;
                let token = self.read_token()?;
                match token {
                    "Inf" | "-Inf" | "NaN" => Ok(Edn::Float(token)),
                    _ => self.error(format!("unknown symbolic value `##{token}`")),
                }
            }
            Some(b) if b.is_ascii_alphabetic() => {
                self.pos += 1;
                let tag = self.read_token()?;
                let form = self.read_form(depth + 1)?;
                Ok(Edn::Tagged(tag, Box::new(form)))
            }
            _ => {
                let shown = self.text.get(self.pos..).and_then(|s| s.chars().nth(1));
                self.error(format!(
                    "unsupported dispatch `#{}` (expected #{{ }}, #_ or a #tag)",
                    shown.map(String::from).unwrap_or_default()
                ))
            }
        }
    }

    /// The whole history: a vector or list of op maps, or a sequence of op maps.
    fn read_history(mut self) -> ReadResult<Vec<EdnOp>> {
        let mut ops = Vec::new();
        self.skip_ignorable(0)?;
        match self.peek() {
            Some(open @ (b'[' | b'(')) => {
                let close = if open == b'[' { b']' } else { b')' };
                let open_line = self.line;
                self.pos += 1;
                loop {
                    self.skip_ignorable(1)?;
                    match self.peek() {
                        Some(b) if b == close => {
                            self.pos += 1;
                            break;
                        }
                        None => {
                            return self.error(format!(
                                "unexpected end of input: the history's `{}` opened at line \
                                 {open_line} is not closed",
                                open as char
                            ))
                        }
                        Some(_) => ops.extend(self.read_op(1)?),
                    }
                }
                self.skip_ignorable(0)?;
                if self.peek().is_some() {
                    return self.error(
                        "unexpected form after the history's top-level vector (a history is \
                         one vector of op maps, or a sequence of op maps)",
                    );
                }
            }
            _ => loop {
                self.skip_ignorable(0)?;
                if self.peek().is_none() {
                    break;
                }
                ops.extend(self.read_op(0)?);
            },
        }
        Ok(ops)
    }

    /// One op map (possibly tagged); `None` for a nemesis op.
    fn read_op(&mut self, depth: usize) -> ReadResult<Option<EdnOp>> {
        let line = self.line;
        // A record literal `#jepsen.history.Op{...}`: the tag is irrelevant.
        if self.peek() == Some(b'#') && self.peek_at(1).is_some_and(|b| b.is_ascii_alphabetic()) {
            self.pos += 1;
            self.read_token()?;
            self.skip_ignorable(depth + 1)?;
        }
        if self.peek() != Some(b'{') {
            let form = self.read_form(depth + 1)?;
            return Err(HistoryError::at(
                line,
                format!("expected an op map {{:process .. :type .. :f .. :value ..}}, got {form}"),
            ));
        }
        let open_line = self.line;
        self.pos += 1;
        let mut fields = OpFields::default();
        loop {
            self.skip_ignorable(depth + 1)?;
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                None => {
                    return self.error(format!(
                        "unexpected end of input: the op map opened at line {open_line} is not \
                         closed"
                    ))
                }
                Some(_) => {}
            }
            let key = self.read_form(depth + 1)?;
            self.skip_ignorable(depth + 1)?;
            if matches!(self.peek(), Some(b'}') | None) {
                return self.error(format!("op map key {key} has no value"));
            }
            let value = self.read_form(depth + 1)?;
            let slot = match key {
                Edn::Keyword("process") => &mut fields.process,
                Edn::Keyword("type") => &mut fields.kind,
                Edn::Keyword("f") => &mut fields.f,
                Edn::Keyword("value") => &mut fields.value,
                Edn::Keyword("time") => &mut fields.time,
                Edn::Keyword("index") => &mut fields.index,
                Edn::Keyword("key") => &mut fields.key,
                _ => continue,
            };
            if slot.is_some() {
                return self.error(format!("op map has {key} twice"));
            }
            *slot = Some(value);
        }
        fields.into_op(line)
    }
}

/// The closing bracket's partner, for messages.
fn opening(close: u8) -> char {
    match close {
        b']' => '[',
        b')' => '(',
        _ => '{',
    }
}

/// The fields of one op map that the checker reads; `None` = absent.
#[derive(Default)]
struct OpFields<'a> {
    process: Option<Edn<'a>>,
    kind: Option<Edn<'a>>,
    f: Option<Edn<'a>>,
    value: Option<Edn<'a>>,
    time: Option<Edn<'a>>,
    index: Option<Edn<'a>>,
    key: Option<Edn<'a>>,
}

impl OpFields<'_> {
    /// Validates the fields; `Ok(None)` for a nemesis op.
    fn into_op(self, line: usize) -> ReadResult<Option<EdnOp>> {
        let fail = |message: String| Err(HistoryError::at(line, message));
        let process = match &self.process {
            None => return fail("op map has no :process".into()),
            Some(Edn::Int(p)) if *p >= 0 => p.unsigned_abs(),
            Some(form) if form.as_name() == Some("nemesis") => return Ok(None),
            Some(form) => {
                return fail(format!(
                    ":process must be a non-negative integer or :nemesis, got {form}"
                ))
            }
        };
        let kind = match &self.kind {
            None => return fail("op map has no :type".into()),
            Some(form) => match form.as_name() {
                Some("invoke") => EventType::Invoke,
                Some("ok") => EventType::Ok,
                Some("fail") => EventType::Fail,
                Some("info") => EventType::Info,
                _ => {
                    return fail(format!(
                        ":type must be :invoke, :ok, :fail or :info, got {form}"
                    ))
                }
            },
        };
        let f = match &self.f {
            None => return fail("op map has no :f".into()),
            Some(form) => match form.as_name().and_then(func_of) {
                Some(f) => f,
                None => {
                    return fail(format!(
                        "unknown :f {form}: expected :read (:get), :write (:put), :cas, :append, \
                         :acquire or :release"
                    ))
                }
            },
        };
        let value = match &self.value {
            None => ValueShape::Scalar(Value::Null),
            Some(form) => match value_shape(form) {
                Some(shape) => shape,
                None => {
                    return fail(format!(
                        ":value must be nil, an integer, a string, a keyword or a 2-element \
                         vector of those, got {form}"
                    ))
                }
            },
        };
        let key = match &self.key {
            None => None,
            Some(form) => match form.to_scalar() {
                Some(key) => Some(key),
                None => {
                    return fail(format!(
                        ":key must be nil, an integer, a string or a keyword, got {form}"
                    ))
                }
            },
        };
        let index = match &self.index {
            None | Some(Edn::Nil) => None,
            Some(Edn::Int(i)) if *i >= 0 => Some(i.unsigned_abs()),
            Some(form) => {
                return fail(format!(":index must be a non-negative integer, got {form}"))
            }
        };
        let time = match &self.time {
            // A float time is unusual but harmless: time is informative only.
            None | Some(Edn::Nil | Edn::Float(_)) => None,
            Some(Edn::Int(t)) => Some(*t),
            Some(form) => {
                return fail(format!(
                    ":time must be an integer (nanoseconds), got {form}"
                ))
            }
        };
        Ok(Some(EdnOp {
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

/// An op's `:f`: our names, and Porcupine's key-value `:get` and `:put`.
fn func_of(name: &str) -> Option<Func> {
    match name {
        "get" => Some(Func::Read),
        "put" => Some(Func::Write),
        name => Func::from_name(name),
    }
}

/// `records` as Jepsen/Knossos EDN: one vector of op maps, client values as `[key value]`
/// tuples (Jepsen's independent keys), nemesis values as they are.
pub fn write_records(records: &[Record]) -> String {
    let mut out = String::with_capacity(records.len() * 96);
    out.push_str("[\n");
    for record in records {
        let (process, value) = match record.who {
            Who::Process(p) => (
                p.to_string(),
                format!("[{} {}]", edn(&record.key), edn(&record.value)),
            ),
            Who::Nemesis => (":nemesis".to_string(), edn(&record.value)),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{{:index {}, :time {}, :type :{}, :process {}, :f :{}, :value {}}}",
            record.index,
            record.time,
            record.kind.name(),
            process,
            record.f,
            value
        );
    }
    out.push_str("]\n");
    out
}

/// A JSON value as EDN.
fn edn(value: &serde_json::Value) -> String {
    use serde_json::Value as Json;
    match value {
        Json::Null => "nil".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        // EDN strings escape like JSON's.
        Json::String(_) => value.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn read_one(text: &str) -> Edn<'_> {
        match Reader::new(text).read_form(0) {
            Ok(form) => form,
            Err(err) => panic!("{text:?}: {err}"),
        }
    }

    fn str_value(s: &str) -> Value {
        Value::Str(s.into())
    }

    #[test]
    fn reads_scalar_forms() {
        assert_eq!(read_one("nil"), Edn::Nil);
        assert_eq!(read_one(" ,true"), Edn::Bool(true));
        assert_eq!(read_one("-12"), Edn::Int(-12));
        assert_eq!(read_one("+7"), Edn::Int(7));
        assert_eq!(read_one("42N"), Edn::Int(42));
        assert_eq!(
            read_one("99999999999999999999N"),
            Edn::BigInt("99999999999999999999N")
        );
        assert_eq!(read_one("1.5e3"), Edn::Float("1.5e3"));
        assert_eq!(read_one("1.5M"), Edn::Float("1.5M"));
        assert_eq!(read_one("-1/2"), Edn::Float("-1/2"));
        assert_eq!(read_one("##Inf"), Edn::Float("Inf"));
        assert_eq!(
            read_one(":jepsen.history/op"),
            Edn::Keyword("jepsen.history/op")
        );
        assert_eq!(read_one("foo.bar/baz"), Edn::Symbol("foo.bar/baz"));
        assert_eq!(read_one("-"), Edn::Symbol("-"));
        assert_eq!(
            read_one(r#""a\"b\\c\n\u00e9""#),
            Edn::Str("a\"b\\c\n\u{e9}".into())
        );
        assert_eq!(read_one(r#""plain""#), Edn::Str(Cow::Borrowed("plain")));
        assert_eq!(read_one(r"\a"), Edn::Char('a'));
        assert_eq!(read_one(r"\newline"), Edn::Char('\n'));
        assert_eq!(read_one(r"\u0041"), Edn::Char('A'));
        assert_eq!(read_one(r"\("), Edn::Char('('));
    }

    #[test]
    fn reads_collections_comments_discards_and_tags() {
        let form = read_one("; comment\n[1 #_ 2 #_ #_ 3 4 (5) #{6} {:a 7} #inst \"2020\"]");
        assert_eq!(
            form,
            Edn::Vector(vec![
                Edn::Int(1),
                Edn::List(vec![Edn::Int(5)]),
                Edn::Set(vec![Edn::Int(6)]),
                Edn::Map(vec![Edn::Keyword("a"), Edn::Int(7)]),
                Edn::Tagged("inst", Box::new(Edn::Str("2020".into()))),
            ])
        );
    }

    #[test]
    fn reads_knossos_vector() {
        let input = "[{:process 0, :type :invoke, :f :write, :value 3}\n \
                     {:process 0, :type :ok, :f :write, :value 3}\n \
                     {:process :nemesis, :type :info, :f :start, :value nil}\n \
                     {:process 1, :type :invoke, :f :cas, :value [3 4] :time 1.5}\n \
                     {:process 1, :type :fail, :f :cas, :value [3 4], :time 17, :index 9, :error :nope}]";
        let events = parse(input.as_bytes()).unwrap();
        assert_eq!(events.len(), 4);
        assert_eq!(
            events.iter().map(|e| e.line).collect::<Vec<_>>(),
            [1, 2, 4, 5]
        );
        assert_eq!(events[0].key, Value::Null);
        assert_eq!(events[0].value, RawValue::Scalar(Value::Int(3)));
        assert_eq!(
            events[2].value,
            RawValue::Pair(Value::Int(3), Value::Int(4))
        );
        assert_eq!(events[2].time, None);
        assert_eq!(
            events[3],
            Event {
                line: 5,
                index: Some(9),
                time: Some(17),
                process: 1,
                kind: EventType::Fail,
                f: Func::Cas,
                key: Value::Null,
                value: RawValue::Pair(Value::Int(3), Value::Int(4)),
            }
        );
    }

    #[test]
    fn reads_sequence_of_tagged_maps_with_multiline_maps() {
        let input = "#jepsen.history.Op{:index 0, :time 5, :type :invoke, :process 0, :f :read, :value nil}\n\
                     \n\
                     {:index 1\n :type :ok\n :process 0\n :f :read\n :value \"x\"}\n\
                     ;; trailing comment";
        let events = parse(input.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].line, events[0].time, events[0].index),
            (1, Some(5), Some(0))
        );
        assert_eq!(events[1].line, 3);
        assert_eq!(events[1].value, RawValue::Scalar(str_value("x")));
    }

    #[test]
    fn keywords_become_strings() {
        let input = "({:process 2 :type :invoke :f :append :value :abc})";
        let events = parse(input.as_bytes()).unwrap();
        assert_eq!(events[0].value, RawValue::Scalar(str_value("abc")));
    }

    #[test]
    fn independent_history_splits_tuples() {
        let input = "[{:process 0 :type :invoke :f :read :value [:k1 nil]}\n\
                     {:process 0 :type :ok :f :read :value [:k1 5]}\n\
                     {:process 1 :type :invoke :f :cas :value [7 [1 2]]}\n\
                     {:process 1 :type :info :f :cas :value [7 [1 2]]}]";
        let events = parse(input.as_bytes()).unwrap();
        assert_eq!(events[0].key, str_value("k1"));
        assert_eq!(events[0].value, RawValue::Scalar(Value::Null));
        assert_eq!(events[1].value, RawValue::Scalar(Value::Int(5)));
        assert_eq!(events[2].key, Value::Int(7));
        assert_eq!(
            events[2].value,
            RawValue::Pair(Value::Int(1), Value::Int(2))
        );
    }

    #[test]
    fn key_fields_and_key_value_store_names() {
        // Porcupine's key-value histories: `:key`, `:get` and `:put`, maps one per line.
        let input = "{:process 0, :type :invoke, :f :put, :key \"1\", :value \"x 0 2 y\"}\n\
                     {:process 0, :type :ok, :f :put, :key \"1\", :value \"x 0 2 y\"}\n\
                     {:process 1, :type :invoke, :f :get, :key 7, :value nil}\n\
                     {:process 1, :type :ok, :f :get, :key 7, :value \"\"}\n\
                     {:process 2, :type :invoke, :f :cas, :key :k, :value [1 2]}";
        let events = parse(input.as_bytes()).unwrap();
        assert_eq!(events[0].key, str_value("1"));
        assert_eq!(events[0].f, Func::Write);
        assert_eq!(events[0].value, RawValue::Scalar(str_value("x 0 2 y")));
        assert_eq!(events[2].key, Value::Int(7));
        assert_eq!(events[3].f, Func::Read);
        assert_eq!(events[3].value, RawValue::Scalar(str_value("")));
        assert_eq!(events[4].key, str_value("k"));
        assert_eq!(
            events[4].value,
            RawValue::Pair(Value::Int(1), Value::Int(2))
        );
        // With a :key, a pair is a cas's, never an independent tuple.
        let input = "{:process 0 :type :invoke :f :write :key 1 :value [2 3]}";
        assert_eq!(
            parse(input.as_bytes()).unwrap()[0].value,
            RawValue::Pair(Value::Int(2), Value::Int(3))
        );
        assert_error(
            "{:process 0 :type :invoke :f :get :key [1 2]}",
            1,
            ":key must be nil, an integer, a string or a keyword, got [1 2]",
        );
        assert_error(
            "{:process 0 :type :invoke :f :cas :key 1 :value [1 [2 3]]}",
            1,
            "and no op has a :key",
        );
        assert_error(
            "{:process 0 :type :invoke :f :delete :key 1}",
            1,
            "expected :read (:get), :write (:put)",
        );
    }

    #[test]
    fn cas_only_history_is_not_independent() {
        let input = "{:process 0 :type :invoke :f :cas :value [1 2]}\n\
                     {:process 0 :type :ok :f :cas :value [1 2]}";
        let events = parse(input.as_bytes()).unwrap();
        assert_eq!(events[0].key, Value::Null);
        assert_eq!(
            events[0].value,
            RawValue::Pair(Value::Int(1), Value::Int(2))
        );
    }

    #[test]
    fn empty_inputs_are_empty_histories() {
        for input in [
            "",
            "  ; nothing\n",
            "[]",
            "( )",
            "[{:process :nemesis :type :info}]",
        ] {
            assert_eq!(parse(input.as_bytes()).unwrap(), vec![], "{input:?}");
        }
    }

    #[test]
    fn error_nested_value_in_non_independent_history() {
        let input = "[{:process 0 :type :invoke :f :read :value nil}\n\
                     {:process 1 :type :invoke :f :cas :value [7 [1 2]]}]";
        assert_error(
            input,
            2,
            "only allowed when every op's :value is a [key value] tuple",
        );
    }

    #[test]
    fn error_bad_fields() {
        let op = |fields: &str| format!("\n\n{{{fields}}}");
        assert_error(&op(":type :ok :f :read"), 3, "op map has no :process");
        assert_error(&op(":process 0 :f :read"), 3, "op map has no :type");
        assert_error(&op(":process 0 :type :ok"), 3, "op map has no :f");
        assert_error(
            &op(":process -1 :type :ok :f :read"),
            3,
            ":process must be a non-negative integer or :nemesis, got -1",
        );
        assert_error(&op(":process :n1 :type :ok :f :read"), 3, "got :n1");
        assert_error(
            &op(":process 0 :type :done :f :read"),
            3,
            ":type must be :invoke, :ok, :fail or :info, got :done",
        );
        assert_error(&op(":process 0 :type :ok :f :incr"), 3, "unknown :f :incr");
        assert_error(
            &op(":process 0 :type :ok :f :read :value 1.5"),
            3,
            ":value must be nil, an integer",
        );
        assert_error(
            &op(":process 0 :type :ok :f :read :value true"),
            3,
            "got true",
        );
        assert_error(
            &op(":process 0 :type :ok :f :read :value [1 2 3]"),
            3,
            "got [1 2 3]",
        );
        assert_error(
            &op(":process 0 :type :ok :f :read :value {:a 1}"),
            3,
            "got {:a 1}",
        );
        assert_error(
            &op(":process 0 :type :ok :f :read :value [[1 2] 3]"),
            3,
            "got [[1 2] 3]",
        );
        assert_error(
            &op(":process 0 :type :ok :f :read :value 99999999999999999999"),
            3,
            "got 99999999999999999999",
        );
        assert_error(
            &op(":process 0 :type :ok :f :read :index -3"),
            3,
            ":index must be a non-negative integer, got -3",
        );
        assert_error(
            &op(":process 0 :type :ok :f :read :time \"x\""),
            3,
            ":time must be an integer",
        );
        assert_error(
            &op(":process 0 :process 1 :type :ok :f :read"),
            3,
            "op map has :process twice",
        );
    }

    #[test]
    fn error_syntax() {
        assert_error(
            "[{:process 0 :type :ok :f :read}\n",
            2,
            "the history's `[` opened at line 1 is not closed",
        );
        assert_error(
            "{:process 0\n :type :ok :f :read",
            2,
            "the op map opened at line 1 is not closed",
        );
        assert_error(
            "{:process 0 :type :ok :f :read :value [1\n 2}",
            2,
            "unexpected `}`",
        );
        assert_error(
            "{:process 0 :type :ok :f :read :value}",
            1,
            "op map key :value has no value",
        );
        assert_error(
            "{:process 0 :type :ok :f :read :value \"ab\ncd",
            2,
            "the string starting at line 1 is not closed",
        );
        assert_error(
            "{:process 0 :type :ok :f :read :value \"a\\qb\"}",
            1,
            "invalid string escape `\\q`",
        );
        assert_error(
            "{:process 0 :type :ok :f :read :value \"\\u12\"}",
            1,
            "invalid string escape",
        );
        assert_error(
            "{:process 0 :type :ok :f :read :value 12abc}",
            1,
            "invalid number `12abc`",
        );
        assert_error(
            "{:process 0 :type :ok :f :read :value #\"re\"}",
            1,
            "unsupported dispatch `#\"`",
        );
        assert_error(
            "{:process 0 :type :ok :f :read :value \\bogus}",
            1,
            "invalid character literal `\\bogus`",
        );
        assert_error(
            "{:process 0 :type :ok :f :read :value :}",
            1,
            "a keyword has no name",
        );
        assert_error(
            "{:process 0 :type :ok :f :read :value {:a}}",
            1,
            "a map has a key without a value",
        );
        assert_error(
            "[{:process 0 :type :ok :f :read}] [ ]",
            1,
            "unexpected form after the history's top-level vector",
        );
        assert_error("\n[1]", 2, "expected an op map");
        assert_error("\n:foo", 2, "expected an op map");
        assert_error("\n{:process 0 :type :ok :f :read}\n)", 3, "unexpected `)`");
    }

    #[test]
    fn error_invalid_utf8_names_line() {
        let mut input = b"[\n\n{:process 0 :type :ok :f :read :value \"".to_vec();
        input.extend_from_slice(b"\xc3\x28\"}]");
        match parse(&input) {
            Err(HistoryError::Line { line, message }) => {
                assert_eq!(line, 3);
                assert!(message.contains("invalid UTF-8"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let value = |open: &str, close: &str| {
            format!(
                "{{:process 0 :type :ok :f :read :value {}{}}}",
                open.repeat(100_000),
                close.repeat(100_000)
            )
        };
        assert_error(&value("[", "]"), 1, "nested more than 64 deep");
        assert_error(&value("#_", "1"), 1, "nested more than 64 deep");
        assert_error(&value("#t ", "1"), 1, "nested more than 64 deep");
        assert_error(&value("{:a ", "}"), 1, "nested more than 64 deep");
        // Nesting within the limit reads fine (and is then rejected as a value shape).
        let shallow = format!(
            "{{:process 0 :type :ok :f :read :value {}{}}}",
            "[".repeat(40),
            "]".repeat(40)
        );
        assert_error(&shallow, 1, ":value must be nil");
    }
}
