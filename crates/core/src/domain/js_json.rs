//! Re-serialize JSON exactly as JavaScript does.
//!
//! Receivers of relayed webhooks check a signature over the bytes that Node.js
//! produces with `JSON.stringify(JSON.parse(text))`. So the relay must deliver
//! the event data in exactly that form. [`normalize`] parses one JSON value and
//! writes it back the way V8 (Node.js 20) would:
//!
//! * whitespace outside strings is dropped;
//! * object keys follow JavaScript property order: keys that are array indices
//!   (`"0"` to `"4294967294"`, written canonically) come first in ascending
//!   numeric order, then the other keys in the order they first appeared; a
//!   repeated key keeps its first position and takes its last value;
//! * strings are unescaped, then escaped again with only the escapes
//!   `JSON.stringify` uses (everything else is written as literal UTF-8);
//! * numbers are turned into the nearest IEEE-754 double and written with
//!   JavaScript's `Number.prototype.toString` (`1.0` → `1`, `-0` → `0`,
//!   `1e21` → `1e+21`, `0.000001` → `0.000001`, `1e-7` → `1e-7`).
//!
//! Some inputs cannot be delivered faithfully. A string holding a lone UTF-16
//! surrogate escape (such as `"\ud800"`) cannot be written as UTF-8, so it is
//! always refused. A number that JavaScript would change (too many digits, too
//! small, too large, or an integer literal beyond ±2^53) is refused in
//! [`Numbers::Strict`] mode, meant for ingest, and converted as JavaScript would
//! in [`Numbers::Lenient`] mode, meant for data that was already accepted.
//!
//! The parser is a single pass over the bytes. It writes the output as it goes
//! and only rewrites an object when its keys must be reordered or de-duplicated.
//! Nesting deeper than 128 arrays and objects is refused.

use std::collections::HashMap;

/// How numbers that JavaScript would change are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbers {
    /// Ingest: refuse them (an integer literal beyond ±2^53, or any number whose
    /// JavaScript text would not denote exactly the value written).
    Strict,
    /// Data already stored: convert them as JavaScript would (never refuse a number).
    Lenient,
}

/// One problem, naming where it is. `path` starts with the `root` name given to `normalize`
/// and uses JS-like accessors: `payload.amount`, `payload.items[3].price`, `payload["a b"]`,
/// `payload["2"]` (a key that is not a plain identifier `[A-Za-z_$][A-Za-z0-9_$]*` is written
/// in brackets as a JSON string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
    pub kind: ProblemKind,
}

/// What sort of problem it is: the caller answers a number JavaScript would change
/// differently from text that is not JSON at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not JSON (or a fault of this parser).
    Syntax,
    /// Nested deeper than the parser goes.
    Depth,
    /// A string or key holding a lone UTF-16 surrogate escape.
    Surrogate,
    /// A number JavaScript would change (strict mode only).
    Number,
}

/// `JSON.stringify(JSON.parse(text))`, or every problem found (at most 20, in document order).
/// `text` is one JSON value (usually an object); surrounding whitespace is allowed.
///
/// Invalid JSON gives one problem where parsing stopped (after any problems
/// found before it). Lone surrogate escapes are always refused; numbers that
/// JavaScript would change are refused only with [`Numbers::Strict`]. Values
/// that a later duplicate key replaces are checked too, although JavaScript
/// drops them.
pub fn normalize(text: &str, root: &str, numbers: Numbers) -> Result<String, Vec<Problem>> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        root,
        strict: numbers == Numbers::Strict,
        out: String::with_capacity(text.len() + text.len() / 16 + 16),
        problems: Vec::new(),
        path: Vec::with_capacity(16),
        members: Vec::with_capacity(32),
        slots: Vec::new(),
        scratch: String::new(),
        depth: 0,
    };
    // `Err(Stop)` only means "stop parsing"; the reason is already in `problems`.
    let _ = parser.document();
    if parser.problems.is_empty() { Ok(parser.out) } else { Err(parser.problems) }
}

/// Deepest nesting of arrays and objects accepted.
const MAX_DEPTH: usize = 128;
/// Most problems reported; parsing stops at this many.
const MAX_PROBLEMS: usize = 20;
/// 2^53: the largest integer magnitude below which every integer is a double.
const MAX_SAFE: u64 = 9_007_199_254_740_992;
/// Largest array index (2^32 − 2).
const MAX_INDEX: u64 = 4_294_967_294;
/// Marks a key that is not an array index.
const NOT_INDEX: u64 = u64::MAX;
/// Objects with more members than this find duplicate keys with a hash map.
const LINEAR_DUP_SCAN: usize = 16;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Parsing stopped; the reason is already recorded as a problem.
struct Stop;

/// One step of the path to the value being parsed.
#[derive(Clone, Copy)]
enum Seg {
    /// Array element.
    Index(usize),
    /// Object member; the span of its quoted key in the output.
    Key(usize, usize),
}

/// One object member as written to the output: `"key":value`.
#[derive(Clone, Copy)]
struct Member {
    /// Quoted key is `out[ks..ke]`; the value is `out[ke + 1..ve]`.
    ks: usize,
    ke: usize,
    ve: usize,
    /// Array index value of the key, or `NOT_INDEX`.
    index: u64,
}

/// One distinct key of an object being reordered.
#[derive(Clone, Copy)]
struct Slot {
    /// Member (relative to the object's first) where the key first appeared.
    first: usize,
    /// Member whose value is kept (the last occurrence).
    last: usize,
    /// Sort key: array indices first, by value, then by first appearance.
    order: u64,
}

/// Exact decimal value `0.d1d2…dk × 10^n` with `d1 ≠ 0` and `dk ≠ 0`.
struct Decimal {
    /// Number of significant digits (may exceed 17 for a literal).
    k: usize,
    /// Decimal exponent as above.
    n: i64,
    /// The first `min(k, 17)` digits, as ASCII.
    digits: [u8; 17],
}

impl Decimal {
    fn shown(&self) -> &[u8] {
        &self.digits[..self.k.min(17)]
    }

    fn same_value(&self, other: &Decimal) -> bool {
        self.k == other.k && self.n == other.n && self.k <= 17 && self.shown() == other.shown()
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    root: &'a str,
    strict: bool,
    out: String,
    problems: Vec<Problem>,
    /// Where the value being parsed is.
    path: Vec<Seg>,
    /// Members of all objects being parsed, innermost last.
    members: Vec<Member>,
    /// Reused when an object is reordered.
    slots: Vec<Slot>,
    /// Reused when an object is reordered.
    scratch: String,
    depth: usize,
}

impl Parser<'_> {
    // ----- problems -------------------------------------------------------

    fn path_string(&self) -> String {
        let mut p = String::with_capacity(self.root.len() + 8 * self.path.len());
        p.push_str(self.root);
        for seg in &self.path {
            match *seg {
                Seg::Index(i) => {
                    p.push('[');
                    push_u64(&mut p, i as u64);
                    p.push(']');
                }
                Seg::Key(ks, ke) => {
                    let quoted = self.out.get(ks..ke).unwrap_or("\"?\"");
                    let inner = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or("");
                    if is_identifier(inner.as_bytes()) {
                        p.push('.');
                        p.push_str(inner);
                    } else {
                        p.push('[');
                        p.push_str(quoted);
                        p.push(']');
                    }
                }
            }
        }
        p
    }

    /// Records a problem at the current path; stops once there are `MAX_PROBLEMS`.
    fn problem(&mut self, kind: ProblemKind, message: String) -> Result<(), Stop> {
        let path = self.path_string();
        self.problems.push(Problem { path, message, kind });
        if self.problems.len() >= MAX_PROBLEMS { Err(Stop) } else { Ok(()) }
    }

    /// Records invalid JSON at `self.pos` and stops.
    fn syntax<T>(&mut self, expected: &str) -> Result<T, Stop> {
        let found = match self.text.get(self.pos..).and_then(|rest| rest.chars().next()) {
            None => "the end of the text".to_string(),
            Some(c) if (c as u32) < 0x20 || c == '\u{7f}' => format!("U+{:04X}", c as u32),
            Some(c) => format!("'{c}'"),
        };
        let message = format!("is not valid JSON: expected {expected} at byte {}, found {found}", self.pos);
        let _ = self.problem(ProblemKind::Syntax, message);
        Err(Stop)
    }

    /// Should never happen; reported instead of panicking.
    fn internal<T>(&mut self) -> Result<T, Stop> {
        let _ =
            self.problem(ProblemKind::Syntax, format!("could not be processed (internal error at byte {})", self.pos));
        Err(Stop)
    }

    /// Copies `text[a..b]` to the output (`a` and `b` are at ASCII bytes).
    fn copy(&mut self, a: usize, b: usize) -> Result<(), Stop> {
        match self.text.get(a..b) {
            Some(s) => {
                self.out.push_str(s);
                Ok(())
            }
            None => self.internal(),
        }
    }

    // ----- structure ------------------------------------------------------

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn document(&mut self) -> Result<(), Stop> {
        self.skip_ws();
        if self.pos >= self.bytes.len() {
            return self.syntax("a JSON value (the text is empty)");
        }
        self.value()?;
        self.skip_ws();
        if self.pos < self.bytes.len() {
            self.path.clear();
            return self.syntax("nothing after the JSON value");
        }
        Ok(())
    }

    fn value(&mut self) -> Result<(), Stop> {
        self.skip_ws();
        match self.bytes.get(self.pos) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => match self.string()? {
                Some(unit) => self.problem(ProblemKind::Surrogate, lone_surrogate("holds", unit)),
                None => Ok(()),
            },
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.word("true"),
            Some(b'f') => self.word("false"),
            Some(b'n') => self.word("null"),
            _ => self.syntax("a JSON value"),
        }
    }

    fn word(&mut self, word: &'static str) -> Result<(), Stop> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word.as_bytes()) {
            self.pos = end;
            self.out.push_str(word);
            Ok(())
        } else {
            self.syntax("a JSON value")
        }
    }

    fn enter(&mut self) -> Result<(), Stop> {
        if self.depth >= MAX_DEPTH {
            let _ = self.problem(
                ProblemKind::Depth,
                format!("nests too deeply (more than {MAX_DEPTH} levels of arrays and objects)"),
            );
            return Err(Stop);
        }
        self.depth += 1;
        Ok(())
    }

    fn array(&mut self) -> Result<(), Stop> {
        self.enter()?;
        self.pos += 1; // '['
        self.out.push('[');
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
        } else {
            let mut index = 0;
            self.path.push(Seg::Index(0));
            loop {
                self.value()?;
                self.skip_ws();
                match self.bytes.get(self.pos) {
                    Some(b',') => {
                        self.pos += 1;
                        self.out.push(',');
                        index += 1;
                        if let Some(last) = self.path.last_mut() {
                            *last = Seg::Index(index);
                        }
                    }
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return self.syntax("',' or ']' after an array element"),
                }
            }
            self.path.pop();
        }
        self.out.push(']');
        self.depth -= 1;
        Ok(())
    }

    fn object(&mut self) -> Result<(), Stop> {
        self.enter()?;
        let start = self.out.len();
        let base = self.members.len();
        self.pos += 1; // '{'
        self.out.push('{');
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                if self.bytes.get(self.pos) != Some(&b'"') {
                    return self.syntax("a string key");
                }
                if self.members.len() > base {
                    self.out.push(',');
                }
                let ks = self.out.len();
                let lone = self.string()?;
                let ke = self.out.len();
                let index = array_index(self.out.as_bytes().get(ks + 1..ke.saturating_sub(1)));
                self.path.push(Seg::Key(ks, ke));
                if let Some(unit) = lone {
                    self.problem(ProblemKind::Surrogate, lone_surrogate("key holds", unit))?;
                }
                self.skip_ws();
                if self.bytes.get(self.pos) != Some(&b':') {
                    return self.syntax("':' after an object key");
                }
                self.pos += 1;
                self.out.push(':');
                self.value()?;
                self.members.push(Member { ks, ke, ve: self.out.len(), index });
                self.path.pop();
                self.skip_ws();
                match self.bytes.get(self.pos) {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return self.syntax("',' or '}' after an object member"),
                }
            }
        }
        self.out.push('}');
        let done = self.reorder(start, base);
        self.members.truncate(base);
        self.depth -= 1;
        if done { Ok(()) } else { self.internal() }
    }

    /// Puts the members of the object written at `out[start..]` (members
    /// `members[base..]`) in JavaScript order, dropping repeated keys.
    /// Returns false only on an internal inconsistency.
    fn reorder(&mut self, start: usize, base: usize) -> bool {
        let Parser { out, members, slots, scratch, .. } = self;
        let Some(ms) = members.get(base..) else {
            return false;
        };
        if ms.len() < 2 {
            return true;
        }
        let bytes = out.as_bytes();
        let key = |m: &Member| bytes.get(m.ks..m.ke).unwrap_or(&[]);

        // Distinct keys, each with its first position and last value.
        slots.clear();
        let mut repeated = false;
        if ms.len() <= LINEAR_DUP_SCAN {
            for (j, m) in ms.iter().enumerate() {
                let k = key(m);
                let seen = slots.iter_mut().find(|s| ms.get(s.first).map(key) == Some(k));
                match seen {
                    Some(s) => {
                        s.last = j;
                        repeated = true;
                    }
                    None => slots.push(Slot { first: j, last: j, order: 0 }),
                }
            }
        } else {
            let mut seen: HashMap<&[u8], usize> = HashMap::with_capacity(ms.len());
            for (j, m) in ms.iter().enumerate() {
                match seen.get(key(m)) {
                    Some(&s) => {
                        if let Some(slot) = slots.get_mut(s) {
                            slot.last = j;
                        }
                        repeated = true;
                    }
                    None => {
                        seen.insert(key(m), slots.len());
                        slots.push(Slot { first: j, last: j, order: 0 });
                    }
                }
            }
        }

        // Already in order? (No repeats, and array indices form an ascending prefix.)
        if !repeated {
            let mut previous: Option<u64> = None;
            let mut in_prefix = true;
            let mut sorted = true;
            for m in ms {
                if m.index == NOT_INDEX {
                    in_prefix = false;
                } else if !in_prefix || previous.is_some_and(|p| p >= m.index) {
                    sorted = false;
                    break;
                } else {
                    previous = Some(m.index);
                }
            }
            if sorted {
                return true;
            }
        }

        for (i, slot) in slots.iter_mut().enumerate() {
            let index = ms.get(slot.first).map_or(NOT_INDEX, |m| m.index);
            slot.order = if index == NOT_INDEX { (1 << 40) + i as u64 } else { index };
        }
        slots.sort_unstable_by_key(|s| s.order);

        // Rewrite the object from a copy of its current text.
        let Some(object) = out.get(start..) else {
            return false;
        };
        scratch.clear();
        scratch.push_str(object);
        out.truncate(start);
        out.push('{');
        for (i, slot) in slots.iter().enumerate() {
            let (Some(first), Some(last)) = (ms.get(slot.first), ms.get(slot.last)) else {
                return false;
            };
            let k = scratch.get(first.ks - start..first.ke - start);
            let v = scratch.get(last.ke + 1 - start..last.ve - start);
            let (Some(k), Some(v)) = (k, v) else {
                return false;
            };
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push(':');
            out.push_str(v);
        }
        out.push('}');
        true
    }

    // ----- strings --------------------------------------------------------

    /// Parses the string at `self.pos` (a `"`) and writes it as JSON.stringify
    /// would. Returns the first lone surrogate found, if any (it is written as
    /// a `\udxxx` escape, as JSON.stringify would).
    fn string(&mut self) -> Result<Option<u16>, Stop> {
        self.pos += 1;
        self.out.push('"');
        let mut lone = None;
        loop {
            let start = self.pos;
            let stop = scan_string(self.bytes, start);
            if stop > start {
                self.copy(start, stop)?;
            }
            self.pos = stop;
            match self.bytes.get(stop) {
                Some(b'"') => {
                    self.pos += 1;
                    self.out.push('"');
                    return Ok(lone);
                }
                Some(b'\\') => {
                    if let Some(unit) = self.escape()? {
                        lone.get_or_insert(unit);
                    }
                }
                Some(_) => return self.syntax("a control character in a string to be escaped"),
                None => return self.syntax("'\"' to end the string"),
            }
        }
    }

    /// Parses the escape at `self.pos` (a `\`) and writes its character.
    fn escape(&mut self) -> Result<Option<u16>, Stop> {
        let short = match self.bytes.get(self.pos + 1) {
            Some(b'"') => "\\\"",
            Some(b'\\') => "\\\\",
            Some(b'/') => "/",
            Some(b'b') => "\\b",
            Some(b'f') => "\\f",
            Some(b'n') => "\\n",
            Some(b'r') => "\\r",
            Some(b't') => "\\t",
            Some(b'u') => "",
            _ => {
                self.pos += 1;
                return self.syntax("an escape (one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)");
            }
        };
        if !short.is_empty() {
            self.pos += 2;
            self.out.push_str(short);
            return Ok(None);
        }
        let Some(unit) = hex4(self.bytes, self.pos + 2) else {
            self.pos += 2;
            return self.syntax("four hex digits after \\u");
        };
        self.pos += 6;
        let code = match unit {
            0xD800..=0xDBFF => {
                let low = match self.bytes.get(self.pos..self.pos + 2) {
                    Some(b"\\u") => hex4(self.bytes, self.pos + 2),
                    _ => None,
                };
                match low {
                    Some(low @ 0xDC00..=0xDFFF) => {
                        self.pos += 6;
                        0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
                    }
                    _ => return self.write_lone(unit),
                }
            }
            0xDC00..=0xDFFF => return self.write_lone(unit),
            _ => u32::from(unit),
        };
        match code {
            0x22 => self.out.push_str("\\\""),
            0x5C => self.out.push_str("\\\\"),
            0x08 => self.out.push_str("\\b"),
            0x0C => self.out.push_str("\\f"),
            0x0A => self.out.push_str("\\n"),
            0x0D => self.out.push_str("\\r"),
            0x09 => self.out.push_str("\\t"),
            0x00..=0x1F => push_u_escape(&mut self.out, code as u16),
            _ => match char::from_u32(code) {
                Some(c) => self.out.push(c),
                None => return self.internal(),
            },
        }
        Ok(None)
    }

    fn write_lone(&mut self, unit: u16) -> Result<Option<u16>, Stop> {
        push_u_escape(&mut self.out, unit);
        Ok(Some(unit))
    }

    // ----- numbers --------------------------------------------------------

    fn number(&mut self) -> Result<(), Stop> {
        let b = self.bytes;
        let start = self.pos;
        let negative = b.get(start) == Some(&b'-');
        let int_start = start + usize::from(negative);
        let mut i = int_start;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = skip_digits(b, i + 1),
            _ => {
                self.pos = i;
                return self.syntax("a digit");
            }
        }
        let int_end = i;
        let mut frac = (i, i);
        if b.get(i) == Some(&b'.') {
            let fs = i + 1;
            i = skip_digits(b, fs);
            if i == fs {
                self.pos = i;
                return self.syntax("a digit after the decimal point");
            }
            frac = (fs, i);
        }
        let mut exp: i64 = 0;
        let mut has_exp = false;
        if let Some(b'e' | b'E') = b.get(i) {
            has_exp = true;
            i += 1;
            let exp_negative = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let es = i;
            i = skip_digits(b, es);
            if i == es {
                self.pos = i;
                return self.syntax("a digit in the exponent");
            }
            for &d in b.get(es..i).unwrap_or(&[]) {
                // Saturate far beyond any double's range; keeps the arithmetic exact below.
                exp = (exp * 10 + i64::from(d - b'0')).min(1 << 40);
            }
            if exp_negative {
                exp = -exp;
            }
        }
        self.pos = i;
        let end = i;
        let int_digits = b.get(int_start..int_end).unwrap_or(&[]);
        let frac_digits = b.get(frac.0..frac.1).unwrap_or(&[]);

        // Fast path: plain integers of up to 15 digits (16 if at most 2^53) are kept as is.
        if frac.0 == frac.1 && !has_exp {
            let nd = int_digits.len();
            if nd <= 16 && (nd <= 15 || parse_u64(int_digits) <= MAX_SAFE) {
                if int_digits == b"0" {
                    self.out.push('0');
                    return Ok(());
                }
                return self.copy(start, end);
            }
            if self.strict {
                let message = format!(
                    "is {}, an integer beyond ±2^53 that JavaScript cannot hold exactly; \
                     send it as a string",
                    shorten(self.text.get(start..end).unwrap_or("?"))
                );
                self.problem(ProblemKind::Number, message)?;
                return self.copy(start, end);
            }
        }

        let Some(literal) = decimal(int_digits, frac_digits, exp) else {
            // Every digit is zero: the value is ±0, which JavaScript writes as 0.
            self.out.push('0');
            return Ok(());
        };

        // At most 15 significant digits in the normal range: the nearest double
        // reads back as these digits, and none shorter, so JavaScript writes them.
        if literal.k <= 15 && literal.n > -300 && literal.n < 300 {
            write_js_number(&mut self.out, negative, literal.shown(), literal.n);
            return Ok(());
        }

        let Some(value) = self.text.get(start..end).and_then(|s| s.parse::<f64>().ok()) else {
            return self.internal();
        };
        let literal_text = shorten(self.text.get(start..end).unwrap_or("?"));
        if value.is_infinite() {
            if self.strict {
                self.problem(
                    ProblemKind::Number,
                    format!(
                        "is {literal_text}, which is out of the range JavaScript numbers hold; \
                     send it as a string"
                    ),
                )?;
            }
            self.out.push_str("null");
            return Ok(());
        }
        if value == 0.0 {
            if self.strict {
                self.problem(
                    ProblemKind::Number,
                    format!(
                        "is {literal_text}, which JavaScript would change to 0 (too small for a \
                     JavaScript number); send it as a string"
                    ),
                )?;
            }
            self.out.push('0');
            return Ok(());
        }
        let mut buffer = ryu::Buffer::new();
        let shortest = buffer.format_finite(value.abs()).as_bytes();
        let Some(js) = decimal_of_ryu(shortest) else {
            return self.internal();
        };
        let js_start = self.out.len();
        write_js_number(&mut self.out, negative, js.shown(), js.n);
        if self.strict && !literal.same_value(&js) {
            let advice =
                if literal.k > 17 { "send at most 17 significant digits or a string" } else { "send it as a string" };
            let js_text = self.out.get(js_start..).unwrap_or("?").to_string();
            self.problem(
                ProblemKind::Number,
                format!("is {literal_text}, which JavaScript would change to {js_text}; {advice}"),
            )?;
        }
        Ok(())
    }
}

// ----- helpers --------------------------------------------------------------

/// Index of the first `"`, `\` or control character at or after `i` (or the end).
#[inline]
fn scan_string(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_le_bytes(word);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let special = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        if special & HIGHS != 0 {
            break;
        }
        i += 8;
    }
    while let Some(&c) = bytes.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let mut unit: u16 = 0;
    for &c in bytes.get(at..at + 4)? {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        unit = (unit << 4) | u16::from(d);
    }
    Some(unit)
}

fn push_u_escape(out: &mut String, unit: u16) {
    out.push_str("\\u");
    for shift in [12, 8, 4, 0] {
        out.push(char::from(HEX[usize::from((unit >> shift) & 0xF)]));
    }
}

fn lone_surrogate(what: &str, unit: u16) -> String {
    format!("{what} a lone UTF-16 surrogate (\\u{unit:04x}), which cannot be delivered as UTF-8")
}

fn skip_digits(bytes: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = bytes.get(i) {
        i += 1;
    }
    i
}

/// Value of at most 19 ASCII digits.
fn parse_u64(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |v, &d| v.wrapping_mul(10).wrapping_add(u64::from(d.wrapping_sub(b'0'))))
}

fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &c in &buf[i..] {
        out.push(char::from(c));
    }
}

/// The array index a key denotes (canonical decimal 0..=2^32−2), or `NOT_INDEX`.
fn array_index(key: Option<&[u8]>) -> u64 {
    match key {
        Some(b"0") => 0,
        Some(k @ [b'1'..=b'9', ..]) if k.len() <= 10 && k.iter().all(u8::is_ascii_digit) => {
            let v = parse_u64(k);
            if v <= MAX_INDEX { v } else { NOT_INDEX }
        }
        _ => NOT_INDEX,
    }
}

fn is_identifier(key: &[u8]) -> bool {
    match key.split_first() {
        Some((&first, rest)) => {
            (first.is_ascii_alphabetic() || first == b'_' || first == b'$')
                && rest.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
        }
        None => false,
    }
}

/// A long literal cut down for a message.
fn shorten(literal: &str) -> String {
    const LIMIT: usize = 48;
    if literal.len() <= LIMIT {
        literal.to_string()
    } else {
        let head = literal.get(..LIMIT - 8).unwrap_or("");
        format!("{head}… ({} characters)", literal.len())
    }
}

/// Exact decimal value of `int.frac × 10^exp` (digit strings), or None if it is zero.
fn decimal(int: &[u8], frac: &[u8], exp: i64) -> Option<Decimal> {
    let all = || int.iter().chain(frac.iter());
    let leading = all().position(|&d| d != b'0')?;
    let trailing = all().rev().position(|&d| d != b'0').unwrap_or(0);
    let k = int.len() + frac.len() - leading - trailing;
    let mut digits = [b'0'; 17];
    for (slot, &d) in digits.iter_mut().zip(all().skip(leading).take(k.min(17))) {
        *slot = d;
    }
    let n = int.len() as i64 - leading as i64 + exp;
    Some(Decimal { k, n, digits })
}

/// Exact decimal value of ryu's output for a positive finite double.
fn decimal_of_ryu(text: &[u8]) -> Option<Decimal> {
    let (mantissa, exp) = match text.iter().position(|&c| c == b'e' || c == b'E') {
        Some(e) => {
            let (m, rest) = text.split_at(e);
            let digits = rest.get(1..)?;
            let (negative, digits) = match digits.split_first() {
                Some((b'-', d)) => (true, d),
                _ => (false, digits),
            };
            let v = parse_u64(digits) as i64;
            (m, if negative { -v } else { v })
        }
        None => (text, 0),
    };
    let (int, frac) = match mantissa.iter().position(|&c| c == b'.') {
        Some(dot) => (mantissa.get(..dot)?, mantissa.get(dot + 1..)?),
        None => (mantissa, &[][..]),
    };
    decimal(int, frac, exp)
}

/// Writes `±0.digits × 10^n` as ECMAScript Number::toString (radix 10) does.
fn write_js_number(out: &mut String, negative: bool, digits: &[u8], n: i64) {
    let k = digits.len() as i64;
    if negative {
        out.push('-');
    }
    let push_digits = |out: &mut String, ds: &[u8]| {
        for &d in ds {
            out.push(char::from(d));
        }
    };
    let push_zeros = |out: &mut String, count: i64| {
        for _ in 0..count {
            out.push('0');
        }
    };
    if k <= n && n <= 21 {
        push_digits(out, digits);
        push_zeros(out, n - k);
    } else if 0 < n && n <= 21 {
        let (head, tail) = digits.split_at_checked(n as usize).unwrap_or((digits, &[]));
        push_digits(out, head);
        out.push('.');
        push_digits(out, tail);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        push_zeros(out, -n);
        push_digits(out, digits);
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        push_digits(out, first);
        if !rest.is_empty() {
            out.push('.');
            push_digits(out, rest);
        }
        out.push('e');
        out.push(if n > 0 { '+' } else { '-' });
        push_u64(out, (n - 1).unsigned_abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lenient(text: &str) -> String {
        match normalize(text, "payload", Numbers::Lenient) {
            Ok(s) => s,
            Err(p) => panic!("lenient refused {text:?}: {p:?}"),
        }
    }

    fn strict(text: &str) -> String {
        match normalize(text, "payload", Numbers::Strict) {
            Ok(s) => s,
            Err(p) => panic!("strict refused {text:?}: {p:?}"),
        }
    }

    fn problems(text: &str, numbers: Numbers) -> Vec<Problem> {
        match normalize(text, "payload", numbers) {
            Ok(s) => panic!("accepted {text:?} as {s:?}"),
            Err(p) => p,
        }
    }

    fn one_problem(text: &str, numbers: Numbers) -> Problem {
        let p = problems(text, numbers);
        assert_eq!(p.len(), 1, "{p:?}");
        p.into_iter().next().unwrap()
    }

    fn both(text: &str, expected: &str) {
        assert_eq!(lenient(text), expected, "lenient {text:?}");
        assert_eq!(strict(text), expected, "strict {text:?}");
    }

    // ----- rule 2: whitespace; literals --------------------------------

    #[test]
    fn whitespace_is_dropped() {
        both(" \t\r\n{ \"a\" : [ 1 , 2 , { } , [ ] ] ,\n\"b\" :\tnull } \n", r#"{"a":[1,2,{},[]],"b":null}"#);
        both("true", "true");
        both(" false ", "false");
        both("null", "null");
        both("[]", "[]");
        both("{}", "{}");
        both("[ ]", "[]");
        both("{ }", "{}");
        both("\"x\"", "\"x\"");
        both("[true,false,null]", "[true,false,null]");
    }

    // ----- rule 3: objects ----------------------------------------------

    #[test]
    fn index_keys_come_first_in_numeric_order() {
        both(r#"{"b":1,"2":2,"a":3,"10":4,"1":5}"#, r#"{"1":5,"2":2,"10":4,"b":1,"a":3}"#);
        both(r#"{"0":0,"1":1}"#, r#"{"0":0,"1":1}"#);
        both(r#"{"x":1,"0":0}"#, r#"{"0":0,"x":1}"#);
    }

    #[test]
    fn non_index_keys_keep_their_place() {
        both(
            r#"{"z":1,"01":2,"-1":3,"1.5":4,"4294967295":5,"4294967294":6," 1":7,"+1":8,"1e2":9}"#,
            r#"{"4294967294":6,"z":1,"01":2,"-1":3,"1.5":4,"4294967295":5," 1":7,"+1":8,"1e2":9}"#,
        );
        both(r#"{"99999999999":1,"5":2}"#, r#"{"5":2,"99999999999":1}"#);
    }

    #[test]
    fn duplicate_keys_keep_first_place_and_last_value() {
        both(r#"{"a":1,"b":2,"a":3}"#, r#"{"a":3,"b":2}"#);
        both(r#"{"a":1,"a":{"x":1},"a":[3]}"#, r#"{"a":[3]}"#);
        both(r#"{"a":1,"\u0061":2}"#, r#"{"a":2}"#);
        both(r#"{"b":0,"1":1,"a":2,"1":3,"b":4}"#, r#"{"1":3,"b":4,"a":2}"#);
        both(r#"{"\u0031":1,"0":0}"#, r#"{"0":0,"1":1}"#);
    }

    #[test]
    fn many_keys_use_the_hash_map_path() {
        let mut text = String::from("{");
        let mut expected_idx = Vec::new();
        let mut expected_rest = Vec::new();
        for i in 0..40 {
            if i > 0 {
                text.push(',');
            }
            if i % 3 == 0 {
                let k = 100 - i;
                text.push_str(&format!("\"{k}\":{i}"));
                expected_idx.push((k, i));
            } else {
                text.push_str(&format!("\"k{}\":{i}", i % 7));
                if let Some(e) = expected_rest.iter_mut().find(|(k, _)| *k == i % 7) {
                    e.1 = i;
                } else {
                    expected_rest.push((i % 7, i));
                }
            }
        }
        text.push('}');
        expected_idx.sort();
        let mut expected = String::from("{");
        for (k, v) in &expected_idx {
            expected.push_str(&format!("\"{k}\":{v},"));
        }
        for (k, v) in &expected_rest {
            expected.push_str(&format!("\"k{k}\":{v},"));
        }
        expected.pop();
        expected.push('}');
        both(&text, &expected);
    }

    #[test]
    fn nested_objects_are_reordered_independently() {
        both(
            r#"{"b":{"y":1,"1":2,"y":3},"a":[{"2":0,"1":1}],"0":{"k":{"1":1,"0":0}}}"#,
            r#"{"0":{"k":{"0":0,"1":1}},"b":{"1":2,"y":3},"a":[{"1":1,"2":0}]}"#,
        );
    }

    // ----- rule 4: arrays -----------------------------------------------

    #[test]
    fn arrays_keep_order() {
        both(r#"[3,1,2,"b","a",[2,1]]"#, r#"[3,1,2,"b","a",[2,1]]"#);
    }

    // ----- rule 5: strings ----------------------------------------------

    #[test]
    fn strings_are_escaped_like_json_stringify() {
        both(r#""\"\\\/\b\f\n\r\t""#, r#""\"\\/\b\f\n\r\t""#);
        both(r#""\u0000\u0001\u001f\u001F\u0008\u000c""#, r#""\u0000\u0001\u001f\u001f\b\f""#);
        both(r#""\u0022\u005c\u005C\u002f""#, r#""\"\\\\/""#);
        both(r#""\u007f\u0080\u00e9\u00E9\u2028\u2029""#, "\"\u{7f}\u{80}éé\u{2028}\u{2029}\"");
        both("\"\u{7f}\u{2028}é😀/\"", "\"\u{7f}\u{2028}é😀/\"");
        both(r#""\ud83d\ude00 \uD83D\uDE00""#, "\"😀 😀\"");
        both(r#"{"\u00e9\n":"\u0041"}"#, "{\"é\\n\":\"A\"}");
        both(
            r#""a long string without escapes, longer than eight bytes""#,
            r#""a long string without escapes, longer than eight bytes""#,
        );
    }

    #[test]
    fn lone_surrogates_are_refused_in_both_modes() {
        for numbers in [Numbers::Strict, Numbers::Lenient] {
            let p = one_problem(r#"{"a":["x","\ud800"]}"#, numbers);
            assert_eq!(p.path, "payload.a[1]");
            assert_eq!(p.message, "holds a lone UTF-16 surrogate (\\ud800), which cannot be delivered as UTF-8");
            let p = one_problem(r#"{"a":"\uDC00\ud83d\ude00"}"#, numbers);
            assert_eq!(p.path, "payload.a");
            assert!(p.message.contains("(\\udc00)"), "{p:?}");
            let p = one_problem(r#"{"a":"\ud83d\u0041"}"#, numbers);
            assert!(p.message.contains("(\\ud83d)"), "{p:?}");
            let p = one_problem(r#"{"a":"\ud83d\ud83d\ude00"}"#, numbers);
            assert!(p.message.contains("(\\ud83d)"), "{p:?}");
            let p = one_problem(r#"{"a":"\udbff"}"#, numbers);
            assert!(p.message.contains("(\\udbff)"), "{p:?}");
            let p = one_problem(r#"{"k\udfff":1}"#, numbers);
            assert_eq!(p.path, r#"payload["k\udfff"]"#);
            assert!(p.message.starts_with("key holds a lone UTF-16 surrogate (\\udfff)"), "{p:?}");
        }
    }

    // ----- rule 6: numbers ----------------------------------------------

    #[test]
    fn numbers_are_written_like_javascript() {
        for (input, expected) in [
            ("1.0", "1"),
            ("-0.0", "0"),
            ("-0", "0"),
            ("0", "0"),
            ("-0e5", "0"),
            ("0.000e-10", "0"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("0.000001", "0.000001"),
            ("1e-6", "0.000001"),
            ("1e-7", "1e-7"),
            ("1.5E+300", "1.5e+300"),
            ("123.450", "123.45"),
            ("5e-324", "5e-324"),
            ("1e2", "100"),
            ("1E+2", "100"),
            ("100.000", "100"),
            ("-1.5", "-1.5"),
            ("12.5e-1", "1.25"),
            ("0.1", "0.1"),
            ("-123456789012345", "-123456789012345"),
            ("9007199254740992", "9007199254740992"),
            ("-9007199254740992", "-9007199254740992"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("2.2250738585072014e-308", "2.2250738585072014e-308"),
            ("123e-20", "1.23e-18"),
            ("0.0000012345", "0.0000012345"),
            ("1234567.891e3", "1234567891"),
            ("0.30000000000000004", "0.30000000000000004"),
            ("100e-2", "1"),
            ("1e0", "1"),
            ("12345678901234567e-16", "1.2345678901234567"),
        ] {
            both(input, expected);
        }
    }

    #[test]
    fn lenient_converts_numbers_as_javascript_does() {
        for (input, expected) in [
            ("18446744073709551616", "18446744073709552000"),
            ("9007199254740993", "9007199254740992"),
            ("0.1000000000000000055511151231257827", "0.1"),
            ("1e-400", "0"),
            ("-1e-400", "0"),
            ("1e400", "null"),
            ("-1e400", "null"),
            ("123456789012345678.5", "123456789012345680"),
            ("1e1000000000000000000000", "null"),
            ("1e-1000000000000000000000", "0"),
            ("2.4703282292062328e-324", "5e-324"),
            ("2.4703282292062327e-324", "0"),
            ("1000000000000000000000000", "1e+24"),
        ] {
            assert_eq!(lenient(input), expected, "{input}");
        }
    }

    #[test]
    fn strict_refuses_big_integer_literals() {
        let p = one_problem(r#"{"id":18446744073709551616}"#, Numbers::Strict);
        assert_eq!(p.path, "payload.id");
        assert_eq!(
            p.message,
            "is 18446744073709551616, an integer beyond ±2^53 that JavaScript cannot hold \
             exactly; send it as a string"
        );
        one_problem("9007199254740993", Numbers::Strict);
        one_problem("-9007199254740993", Numbers::Strict);
        // Exactly representable, still refused: it is an integer literal beyond 2^53.
        one_problem("18014398509481984", Numbers::Strict);
        one_problem("100000000000000000000", Numbers::Strict);
        // Not integer literals, and the value survives: accepted.
        assert_eq!(strict("18014398509481984.0"), "18014398509481984");
        assert_eq!(strict("1e20"), "100000000000000000000");
    }

    #[test]
    fn strict_refuses_changed_numbers() {
        let p = one_problem(r#"{"x":0.1000000000000000055511151231257827}"#, Numbers::Strict);
        assert_eq!(p.path, "payload.x");
        assert_eq!(
            p.message,
            "is 0.1000000000000000055511151231257827, which JavaScript would change to 0.1; \
             send at most 17 significant digits or a string"
        );
        let p = one_problem("[1e-400]", Numbers::Strict);
        assert_eq!(p.path, "payload[0]");
        assert!(p.message.contains("would change to 0"), "{p:?}");
        let p = one_problem("123456789012345678.5", Numbers::Strict);
        assert_eq!(p.path, "payload");
        assert!(p.message.contains("would change to 123456789012345680"), "{p:?}");
        let p = one_problem("9007199254740993.0", Numbers::Strict);
        assert!(p.message.contains("would change to 9007199254740992; send it as a string"));
        let p = one_problem(r#"{"a":{"b":1e400}}"#, Numbers::Strict);
        assert_eq!(p.path, "payload.a.b");
        assert_eq!(p.message, "is 1e400, which is out of the range JavaScript numbers hold; send it as a string");
        one_problem("2.4703282292062328e-324", Numbers::Strict);
        // Many digits but the same value: accepted.
        assert_eq!(strict("0.12500000000000000000000000000"), "0.125");
        assert_eq!(strict("1.7976931348623157e308"), "1.7976931348623157e+308");
    }

    #[test]
    fn long_literals_are_shortened_in_messages() {
        let literal = format!("1{}", "0".repeat(300));
        let p = one_problem(&literal, Numbers::Strict);
        assert!(p.message.starts_with("is 1000000000"), "{p:?}");
        assert!(p.message.contains("(301 characters)"), "{p:?}");
        assert_eq!(lenient(&literal), "1e+300");
    }

    // ----- problems and paths -------------------------------------------

    #[test]
    fn paths_use_javascript_accessors() {
        let text = r#"{"amount":1e400,"items":[0,1,2,{"price":1e400}],"a b":1e400,"2":1e400,
            "$x_1":1e400,"é":1e400,"":1e400,"q\"":[1e400]}"#;
        let paths: Vec<String> = problems(text, Numbers::Strict).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "payload.amount",
                "payload.items[3].price",
                r#"payload["a b"]"#,
                r#"payload["2"]"#,
                "payload.$x_1",
                r#"payload["é"]"#,
                r#"payload[""]"#,
                r#"payload["q\""][0]"#,
            ]
        );
        assert!(normalize(text, "payload", Numbers::Lenient).is_ok());
        let p = one_problem("[1e400]", Numbers::Strict);
        assert_eq!(p.path, "payload[0]");
        let p = normalize("1e400", "data", Numbers::Strict).unwrap_err();
        assert_eq!(p[0].path, "data");
    }

    #[test]
    fn at_most_twenty_problems() {
        let text = format!("[{}]", vec!["1e400"; 30].join(","));
        let p = problems(&text, Numbers::Strict);
        assert_eq!(p.len(), 20);
        assert_eq!(p[19].path, "payload[19]");
    }

    #[test]
    fn problems_before_a_syntax_error_are_kept() {
        let p = problems(r#"[1e400, "\udc00", 1 2]"#, Numbers::Strict);
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0].path, "payload[0]");
        assert_eq!(p[1].path, "payload[1]");
        assert_eq!(p[2].path, "payload[2]");
        assert!(p[2].message.starts_with("is not valid JSON"), "{p:?}");
    }

    // ----- rule 1: syntax -----------------------------------------------

    #[test]
    fn invalid_json_is_refused_with_a_path() {
        for (text, path) in [
            ("", "payload"),
            ("   ", "payload"),
            ("{", "payload"),
            ("[", "payload[0]"),
            ("[1,]", "payload[1]"),
            ("[1 2]", "payload[0]"),
            (r#"{"a":1,}"#, "payload"),
            (r#"{"a" 1}"#, "payload.a"),
            (r#"{"a":}"#, "payload.a"),
            (r#"{"a":[1,{"b":tru}]}"#, "payload.a[1].b"),
            (r#"{a:1}"#, "payload"),
            ("{'a':1}", "payload"),
            ("01", "payload"),
            ("-", "payload"),
            ("1.", "payload"),
            (".5", "payload"),
            ("1e", "payload"),
            ("1e+", "payload"),
            ("+1", "payload"),
            ("-01", "payload"),
            ("0x10", "payload"),
            ("NaN", "payload"),
            ("Infinity", "payload"),
            ("-Infinity", "payload"),
            ("1 2", "payload"),
            ("{} x", "payload"),
            ("\"abc", "payload"),
            ("\"a\nb\"", "payload"),
            ("\"a\tb\"", "payload"),
            (r#""\x""#, "payload"),
            (r#""\u12""#, "payload"),
            (r#""\u12g4""#, "payload"),
            (r#""\U0041""#, "payload"),
            ("\u{feff}{}", "payload"),
            ("nul", "payload"),
            ("truex", "payload"),
            ("[1]]", "payload"),
            ("\u{a0}1", "payload"),
        ] {
            for numbers in [Numbers::Strict, Numbers::Lenient] {
                let p = one_problem(text, numbers);
                assert_eq!(p.path, path, "{text:?}: {p:?}");
                assert!(p.message.starts_with("is not valid JSON: expected "), "{text:?}: {p:?}");
            }
        }
        let p = one_problem("[1 2]", Numbers::Lenient);
        assert_eq!(p.message, "is not valid JSON: expected ',' or ']' after an array element at byte 3, found '2'");
        let p = one_problem("\"a\u{1}", Numbers::Lenient);
        assert!(p.message.ends_with("found U+0001"), "{p:?}");
    }

    #[test]
    fn depth_limit() {
        let ok = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert_eq!(lenient(&ok), ok);
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        let p = one_problem(&deep, Numbers::Lenient);
        assert_eq!(p.message, "nests too deeply (more than 128 levels of arrays and objects)");
        assert_eq!(p.path, format!("payload{}", "[0]".repeat(128)));
        let deep = "{\"a\":".repeat(200);
        let p = one_problem(&deep, Numbers::Strict);
        assert!(p.message.starts_with("nests too deeply"));
        // Huge nesting must not overflow the stack.
        let huge = "[".repeat(1_000_000);
        one_problem(&huge, Numbers::Lenient);
    }

    #[test]
    fn idempotent_on_examples() {
        for text in [
            r#"{"b":1,"2":2,"a":{"1":[1.0,-0,1e21,0.000001,1e-7,"\u00e9\ud83d\ude00\u0001"]},"b":3}"#,
            r#"[1e20, 5e-324, 1.7976931348623157e308, "\u2028", {"":0}]"#,
        ] {
            let once = lenient(text);
            assert_eq!(lenient(&once), once);
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in [
            "\"\\",
            "\"\\u",
            "\"\\ud800\\",
            "\"\\ud800\\u",
            "\"\\ud800\\udc",
            "[-",
            "[1e",
            "{\"",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1",
            "[1,",
            "\u{0}",
            "é",
            "\"é",
            "[\"\u{10ffff}\"]",
            "tru",
            "fals",
            "{\"a\":1,\"a\"",
            "-0.",
            "1E-",
            "\"\\ud800\\ud800\"",
        ] {
            let _ = normalize(text, "p", Numbers::Strict);
            let _ = normalize(text, "p", Numbers::Lenient);
        }
    }
}
