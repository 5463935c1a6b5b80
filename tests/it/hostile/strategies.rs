//! Generators of hostile input: JSON text (deep nesting, numbers no Rust type holds, unicode,
//! NUL, lone surrogates, duplicate keys), raw bytes, query strings, path segments, header
//! values and webhook URLs. JSON is generated as a tree of text, not as `serde_json::Value`,
//! so what serde_json cannot hold can still be sent, and shrunk.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// JSON text as a tree. Keys may repeat; numbers and escapes are written as given.
#[derive(Debug, Clone)]
pub enum Json {
    Null,
    Bool(bool),
    /// A number as written: perhaps beyond every Rust type, perhaps not JSON at all (`01`).
    Number(String),
    Text(Vec<Piece>),
    Array(Vec<Json>),
    Object(Vec<(Vec<Piece>, Json)>),
    /// `levels` arrays (or single-key objects) around `inner`, written without recursion.
    Deep {
        levels: usize,
        objects: bool,
        inner: Box<Json>,
    },
}

/// Part of a JSON string.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Characters, escaped as JSON requires (NUL and CR/LF become `\u0000`, `\r`, `\n`).
    Chars(String),
    /// Written as is: `\ud800`, `\u0000`, or a broken escape like `\x`.
    Raw(&'static str),
}

impl Json {
    pub fn text(value: &str) -> Self {
        Self::Text(vec![Piece::Chars(value.to_owned())])
    }

    /// The tree of a `serde_json::Value`, to mutate a valid body.
    pub fn from_value(value: &serde_json::Value) -> Self {
        use serde_json::Value;
        match value {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => Self::Number(n.to_string()),
            Value::String(s) => Self::text(s),
            Value::Array(items) => Self::Array(items.iter().map(Self::from_value).collect()),
            Value::Object(map) => {
                Self::Object(map.iter().map(|(k, v)| (vec![Piece::Chars(k.clone())], Self::from_value(v))).collect())
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Self::Null => out.push_str("null"),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Number(n) => out.push_str(n),
            Self::Text(pieces) => write_string(pieces, out),
            Self::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Self::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(key, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
            Self::Deep { levels, objects, inner } => {
                out.push_str(&(if *objects { "{\"a\":" } else { "[" }).repeat(*levels));
                inner.write(out);
                out.push_str(&(if *objects { "}" } else { "]" }).repeat(*levels));
            }
        }
    }
}

fn write_string(pieces: &[Piece], out: &mut String) {
    out.push('"');
    for piece in pieces {
        match piece {
            Piece::Chars(chars) => {
                let quoted = serde_json::to_string(chars).unwrap_or_default();
                out.push_str(quoted.trim_start_matches('"').trim_end_matches('"'));
            }
            Piece::Raw(raw) => out.push_str(raw),
        }
    }
    out.push('"');
}

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-0.0",
    "1e400",
    "-1e400",
    "1e-400",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "1.7976931348623157e308",
    "1.8e308",
    "4.9e-324",
    "123456789012345678901234567890",
    "0.30000000000000004",
    "1E+2",
    "1e-0",
    "01",
    "1.",
    ".5",
    "+1",
    "NaN",
    "Infinity",
    "-",
    "1e",
    "0x10",
];

const SPECIAL_CHARS: &[char] = &[
    '\0',
    '\r',
    '\n',
    '\t',
    '"',
    '\\',
    '/',
    '\u{7f}',
    '\u{80}',
    '\u{85}',
    '\u{2028}',
    '\u{feff}',
    '\u{fffd}',
    '\u{10ffff}',
    '\u{202e}',
    'é',
    '𝄞',
    '例',
];

const ESCAPES: &[&str] = &[
    "\\u0000",
    "\\ud800",
    "\\udc00",
    "\\udbff\\udfff",
    "\\ud83d\\ude00",
    "\\ud800\\u0041",
    "\\x",
    "\\u12",
    "\\U0041",
    "\\/",
    "\\b\\f",
    "\r\n",
    "\u{1}",
];

/// Keys the relay knows, and a few that mean something elsewhere.
const KEYS: &[&str] = &[
    "eventType",
    "eventName",
    "payload",
    "source",
    "name",
    "url",
    "eventTypes",
    "isActive",
    "secret",
    "since",
    "until",
    "__proto__",
    "constructor",
    "",
];

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
        "-?[1-9][0-9]{19,400}(\\.[0-9]{1,40})?([eE][+-]?[0-9]{1,5})?",
        select(NUMBERS).prop_map(str::to_owned),
    ]
}

fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![3 => any::<char>(), 1 => select(SPECIAL_CHARS)]
}

fn pieces() -> impl Strategy<Value = Vec<Piece>> {
    let piece = prop_oneof![
        8 => vec(hostile_char(), 0..16).prop_map(|c| Piece::Chars(c.into_iter().collect())),
        2 => select(ESCAPES).prop_map(Piece::Raw),
        1 => (hostile_char(), 1_000..70_000usize).prop_map(|(c, n)| Piece::Chars(c.to_string().repeat(n))),
    ];
    vec(piece, 0..4)
}

fn key() -> impl Strategy<Value = Vec<Piece>> {
    prop_oneof![select(KEYS).prop_map(|k| vec![Piece::Chars(k.to_owned())]), pieces()]
}

/// Any JSON value, and a fair share of text that is almost JSON.
pub fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Number),
        pieces().prop_map(Json::Text),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Json::Array),
            vec((key(), inner.clone()), 0..6).prop_map(Json::Object),
            (0..400usize, any::<bool>(), inner).prop_map(|(levels, objects, inner)| Json::Deep {
                levels,
                objects,
                inner: Box::new(inner)
            }),
        ]
    })
}

/// How a body is made from the route's valid body (field indexes are taken modulo the number
/// of fields).
#[derive(Debug, Clone)]
pub enum BodyShape {
    /// The value alone is the body.
    Whole(Json),
    /// One field of the valid body replaced.
    Replace(usize, Json),
    /// One field written a second time, after the valid body's fields.
    Duplicate(usize, Json),
    /// One more field.
    Extra(Vec<Piece>, Json),
}

pub fn body_shape() -> impl Strategy<Value = BodyShape> {
    prop_oneof![
        json().prop_map(BodyShape::Whole),
        (any::<usize>(), json()).prop_map(|(i, v)| BodyShape::Replace(i, v)),
        (any::<usize>(), json()).prop_map(|(i, v)| BodyShape::Duplicate(i, v)),
        (key(), json()).prop_map(|(k, v)| BodyShape::Extra(k, v)),
    ]
}

impl BodyShape {
    /// The body text, from the route's valid body's fields.
    pub fn render(&self, valid: &[(Vec<Piece>, Json)]) -> String {
        let mut fields = valid.to_vec();
        match self {
            Self::Whole(value) => return value.render(),
            Self::Replace(i, value) if !fields.is_empty() => {
                let n = fields.len();
                fields[i % n].1 = value.clone();
            }
            Self::Duplicate(i, value) if !fields.is_empty() => {
                let n = fields.len();
                fields.push((fields[i % n].0.clone(), value.clone()));
            }
            Self::Replace(_, value) | Self::Duplicate(_, value) => {
                fields.push((vec![Piece::Chars("x".into())], value.clone()))
            }
            Self::Extra(key, value) => fields.push((key.clone(), value.clone())),
        }
        Json::Object(fields).render()
    }
}

/// Bytes sent as `application/json`: random, or the route's valid body with bytes that are
/// not UTF-8 spliced in, or in another encoding.
#[derive(Debug, Clone)]
pub enum RawBody {
    Random(Vec<u8>),
    Spliced { at: usize, bytes: Vec<u8> },
    Prefixed(Vec<u8>),
    Utf16 { big_endian: bool },
}

const BAD_UTF8: &[&[u8]] = &[
    b"\x80",
    b"\xc0\x80",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xff",
    b"\xfe\xff",
    b"\xe2\x82",
    b"\x00",
    b"\r\n",
];

pub fn raw_body() -> impl Strategy<Value = RawBody> {
    let splice = prop_oneof![select(BAD_UTF8).prop_map(<[u8]>::to_vec), vec(any::<u8>(), 1..8)];
    prop_oneof![
        vec(any::<u8>(), 0..2048).prop_map(RawBody::Random),
        (any::<usize>(), splice).prop_map(|(at, bytes)| RawBody::Spliced { at, bytes }),
        select(vec![&b"\xef\xbb\xbf"[..], &b"\xff\xfe"[..], &b"\xfe\xff"[..], &b"\x00"[..], &b"\xc0\x80"[..]])
            .prop_map(|p: &[u8]| RawBody::Prefixed(p.to_vec())),
        any::<bool>().prop_map(|big_endian| RawBody::Utf16 { big_endian }),
    ]
}

impl RawBody {
    pub fn render(&self, valid: &str) -> Vec<u8> {
        match self {
            Self::Random(bytes) => bytes.clone(),
            Self::Spliced { at, bytes } => {
                let mut body = valid.as_bytes().to_vec();
                let at = at % (body.len() + 1);
                body.splice(at..at, bytes.iter().copied());
                body
            }
            Self::Prefixed(prefix) => [prefix.as_slice(), valid.as_bytes()].concat(),
            Self::Utf16 { big_endian } => {
                valid.encode_utf16().flat_map(|u| if *big_endian { u.to_be_bytes() } else { u.to_le_bytes() }).collect()
            }
        }
    }
}

/// `bytes` percent-encoded, all but the unreserved characters.
pub fn percent(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const QUERY_KEYS: &[&str] = &["limit", "offset", "cursor", "since", "until", "status", "eventType", "source", "format"];

/// Values as they go in the query string: all are URI characters, not all are valid escapes.
const QUERY_VALUES: &[&str] = &[
    "",
    "-1",
    "0",
    "1",
    "500",
    "501",
    "100000",
    "100001",
    "18446744073709551616",
    "1e3",
    "+1",
    "%201",
    "0x10",
    "%",
    "%%",
    "%zz",
    "%E2%82",
    "%FF%FE",
    "%00",
    "%0d%0a",
    "%23",
    "2026-11-28T10:00:00Z",
    "0000-01-01T00:00:00%2B23:59",
    "9999-12-31T23:59:59-23:59",
    "2026-13-45T99:99:99Z",
    "AAAAAAAAAAAAAAAAAAAAAA",
    "AZjS4h8tdz2IY1kAHRK_Ew",
    "pending",
    "failed",
    "job.created",
    "prometheus",
    "json",
    "a=b",
    "?",
    "/",
];

fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(QUERY_VALUES).prop_map(str::to_owned),
        2 => vec(any::<u8>(), 0..64).prop_map(|b| percent(&b)),
        1 => vec(any::<char>(), 0..16).prop_map(|c| percent(c.into_iter().collect::<String>().as_bytes())),
        1 => "-?[0-9]{1,40}",
        1 => (select(vec!["9", "a", "%FF"]), 1_000..8_000usize).prop_map(|(s, n)| s.repeat(n)),
    ]
}

fn query_key() -> impl Strategy<Value = String> {
    prop_oneof![3 => select(QUERY_KEYS).prop_map(str::to_owned), 1 => query_value()]
}

/// A query string (without the `?`): repeated keys, keys without `=`, odd separators.
pub fn query() -> impl Strategy<Value = String> {
    let equals = prop_oneof![6 => Just("="), 1 => select(vec!["", "==", "=&"])];
    let separator = prop_oneof![6 => Just("&"), 1 => select(vec!["&&", ";", "&amp;"])];
    let pair = (query_key(), equals, query_value());
    (vec(pair, 0..6), separator).prop_map(|(pairs, separator)| {
        pairs.iter().map(|(k, eq, v)| format!("{k}{eq}{v}")).collect::<Vec<_>>().join(separator)
    })
}

/// A path segment as it goes in the URI: percent-escapes of anything, invalid UTF-8 included.
pub fn path_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "not-a-uuid",
            "%FF",
            "%C0%80",
            "%ED%A0%80",
            "%00",
            "%0d%0a",
            "%2F",
            "..",
            "%2e%2e",
            "%",
            "%zz",
            "00000000-0000-0000-0000-000000000000",
            "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
            "%7B0198f3c2-7a1b-7000-8000-000000000000%7D",
            "urn:uuid:0198f3c2-7a1b-7000-8000-000000000000",
            "0198f3c27a1b70008000000000000000",
        ])
        .prop_map(str::to_owned),
        vec(any::<u8>(), 0..64).prop_map(|b| percent(&b)),
        (1_000..5_000usize).prop_map(|n| "x".repeat(n)),
    ]
}

/// Header names the relay reads.
pub const HEADER_NAMES: [&str; 6] =
    ["x-api-key", "x-service-token", "idempotency-key", "x-request-id", "content-type", "origin"];

/// A header value: anything `HeaderValue` takes (tab, visible ASCII, and obs-text 0x80-0xFF),
/// or a valid value with hostile bytes around it.
#[derive(Debug, Clone)]
pub enum HeaderBytes {
    Bytes(Vec<u8>),
    /// The valid value for the header (the route's credential, an idempotency key, ...).
    AroundValid {
        before: Vec<u8>,
        after: Vec<u8>,
    },
}

const COMMON_HEADER_VALUES: &[&[u8]] = &[
    b"",
    b" ",
    b"application/json; charset=utf-16",
    b"text/plain",
    b"multipart/form-data; boundary=\xff",
    b"null",
    b"*",
    b"https://app.example.com",
    b"https://app.example.com.evil.example",
    b"HTTPS://APP.EXAMPLE.COM",
    b"https://app.example.com\xff",
    b"../../etc/passwd",
    b"%0d%0aX-Injected: yes",
    b"\xc3\xa9",
];

fn header_byte() -> impl Strategy<Value = u8> {
    prop_oneof![6 => 0x20u8..0x7f, 3 => 0x80u8..=0xff, 1 => Just(b'\t')]
}

pub fn header_bytes() -> impl Strategy<Value = HeaderBytes> {
    prop_oneof![
        3 => vec(header_byte(), 0..200).prop_map(HeaderBytes::Bytes),
        2 => select(COMMON_HEADER_VALUES).prop_map(|b| HeaderBytes::Bytes(b.to_vec())),
        2 => (vec(header_byte(), 0..3), vec(header_byte(), 0..3)).prop_map(|(before, after)| HeaderBytes::AroundValid { before, after }),
        1 => (header_byte(), 4_000..16_000usize).prop_map(|(b, n)| HeaderBytes::Bytes(vec![b; n])),
    ]
}

/// One piece of a webhook URL, each list mixing the valid with the hostile.
const SCHEMES: &[&str] =
    &["http", "https", "HTTP", "hTTps", "javascript", "file", "data", "ftp", "ws", "gopher", "", "h\tttp", "http\r\n"];
const SEPARATORS: &[&str] = &["://", ":", ":/", ":///", "//", "://\r\n", ":\\\\", "://\t"];
const USERINFO: &[&str] = &["user:pass@", "user@", ":@", "%0d%0a@", "a@b@", "@"];
const HOSTS: &[&str] = &[
    "127.0.0.1",
    "example.com",
    "[::1]",
    "例え.テスト",
    "xn--",
    "xn--zz",
    "EXAMPLE.COM.",
    "exa mple.com",
    "0x7f.1",
    "2130706433",
    "localhost",
    "%00",
    "[fe80::1%25eth0]",
    "",
    "169.254.169.254",
    "10.0.0.1",
    "[::ffff:127.0.0.1]",
    "ex%0d%0aample.com",
    "example.com%0d%0aX-Injected:%20yes",
    "\u{ff0e}",
    "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p",
];
const PORTS: &[&str] = &[":0", ":1", ":65535", ":65536", ":99999999999", ":-1", ":abc", ":", ":80\r\n"];
const PATHS: &[&str] = &[
    "",
    "/",
    "/hook",
    "/%0d%0aX-Injected:%20yes",
    "/\r\nX-Injected: yes",
    "/%0aSet-Cookie:%20x=1",
    "/ space",
    "/\u{0}",
    "/é",
    "/../..",
    "/%2e%2e/",
    "?",
    "?a=b&a=c",
    "?x=\r\ny",
    "#fragment",
    "/\\evil",
];

/// A webhook URL: mostly assembled from valid and hostile parts (the valid ones more often,
/// so that many are stored), sometimes anything at all. `local` is a `host:port` where a
/// receiver listens.
pub fn webhook_url(local: String) -> impl Strategy<Value = String> {
    let scheme = prop_oneof![2 => select(&SCHEMES[..4]), 1 => select(SCHEMES)];
    let separator = prop_oneof![2 => Just("://"), 1 => select(SEPARATORS)];
    let host = prop_oneof![
        2 => Just(local),
        2 => select(HOSTS).prop_map(str::to_owned),
        1 => vec(hostile_char(), 0..12).prop_map(|c| c.into_iter().collect()),
    ];
    let segment = prop_oneof![
        3 => select(PATHS).prop_map(str::to_owned),
        1 => vec(hostile_char(), 0..12).prop_map(|c| format!("/{}", c.into_iter().collect::<String>())),
    ];
    let path = vec(segment, 0..4).prop_map(|parts| parts.concat());
    let port = prop_oneof![3 => Just(""), 1 => select(PORTS)];
    let userinfo = prop_oneof![3 => Just(""), 1 => select(USERINFO)];
    let assembled = (scheme, separator, userinfo, host, port, path)
        .prop_map(|(scheme, sep, user, host, port, path)| format!("{scheme}{sep}{user}{host}{port}{path}"));
    let pad = select(vec!["a", "%41", "é", "\u{1F600}", "/"]);
    prop_oneof![
        6 => assembled.clone(),
        1 => (assembled, pad, 300..3_000usize).prop_map(|(url, pad, n)| format!("{url}/{}", pad.repeat(n))),
        1 => vec(hostile_char(), 0..80).prop_map(|c| c.into_iter().collect()),
    ]
}
