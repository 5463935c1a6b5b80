//! JavaScript fidelity of delivered payloads, checked against real Node.js.
//!
//! Receivers written for the system this relay replaces check `X-Relay-Signature` over
//! `JSON.stringify(JSON.parse(body))`: they re-serialize what they parsed. That only works if
//! the relay signs and delivers exactly the text JavaScript writes, so the relay stores each
//! payload in that form (`relay_core::domain::js_json`) and refuses, at ingest, the numbers
//! JavaScript would change. Our own idea of what JavaScript does is not good enough to test
//! this with, so these tests ask Node itself:
//!
//! * `normalize` is compared byte for byte with Node on thousands of random documents (nested
//!   objects and arrays, integer-like and duplicate keys, every kind of escape, numbers of
//!   every shape), plus broken variants of some of them;
//! * thousands of random payloads go through the running relay to a real receiver; every
//!   delivery must pass the seed's JavaScript verification snippet and the Standard Webhooks
//!   library, its `data` must be Node's re-serialization of what was posted, and a payload the
//!   relay refused must really hold a number JavaScript would change (decided from Node's
//!   reading of each number, not from `js_json`);
//! * a table of hand-picked cases shows the rules in readable form.
//!
//! The documents come from a small seeded generator, so a failure can be replayed: every
//! failure message names the seed, and `JS_FIDELITY_SEED=<seed>` reruns with it. One Node
//! process serves each test (JSON lines in, JSON lines out), which keeps the file fast.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use relay_core::domain::js_json::{Numbers, Problem, ProblemKind, normalize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::helpers::{Received, Receiver, SERVICE_TOKEN, TestApp};

/// Random documents compared with Node directly.
const DIFFERENTIAL_DOCUMENTS: usize = 4_000;
/// Every how many documents one is also broken (truncated, a character dropped or added).
const BREAK_EVERY: usize = 8;
/// Random payloads posted to the relay.
const RELAY_PAYLOADS: usize = 2_000;
/// Posts in flight at once.
const IN_FLIGHT: usize = 32;
/// How long every expected delivery may take to arrive.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(120);
/// The one event type the test webhook subscribes to.
const EVENT_TYPE: &str = "job.created";
/// `normalize` reports at most this many problems.
const MAX_PROBLEMS: usize = 20;

// ----- the tests -------------------------------------------------------------------------------

/// `normalize` writes what `JSON.stringify(JSON.parse(text))` writes under Node, in both modes,
/// and `Numbers::Strict` refuses exactly the numbers Node would change, naming each.
#[test]
fn js_json_matches_node_on_thousands_of_documents() {
    let Some(node) = crate::tools::required_tool("node") else { return };
    let seed = seed(0x6a73_6f6e_0001);
    let mut rng = Rng::new(seed);
    let documents: Vec<Doc> = (0..DIFFERENTIAL_DOCUMENTS)
        .map(|i| {
            let mix = Mix { risky_numbers: rng.percent(60), lone_surrogates: rng.percent(5) };
            Doc::generate(&mut rng, mix, if i % 5 == 0 { Top::Any } else { Top::Object })
        })
        .collect();
    let broken: Vec<String> =
        documents.iter().step_by(BREAK_EVERY).map(|doc| break_text(&mut rng, &doc.text)).collect();

    let mut batch = NodeBatch::default();
    let generated: Vec<usize> = documents.iter().map(|doc| batch.stringify(&doc.text)).collect();
    let mutated: Vec<usize> = broken.iter().map(|text| batch.stringify(text)).collect();
    for doc in &documents {
        batch.numbers(doc);
    }
    let node = batch.run(&node);

    let mut failures = Vec::new();
    for (doc, &answer) in documents.iter().zip(&generated) {
        failures.extend(check_generated(doc, node.answer(answer), &node));
    }
    for (text, &answer) in broken.iter().zip(&mutated) {
        failures.extend(check_broken(text, node.answer(answer)));
    }
    let coverage = Coverage::of(&documents, &node);
    eprintln!(
        "js_fidelity: {} generated + {} broken documents against Node (seed {seed}); {coverage:?}",
        documents.len(),
        broken.len()
    );
    assert_no_failures("documents compared with Node", &failures, Some(seed));
    coverage.assert_broad();
}

/// Random payloads posted to the running relay: whatever it accepts is delivered as Node writes
/// it and verifies with the seed's snippet and Standard Webhooks; whatever it refuses deserved
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_payloads_delivered_through_the_relay_verify_with_the_seeds_snippet_and_standard_webhooks() {
    let Some(node) = crate::tools::required_tool("node") else { return };
    let started = Instant::now();
    let seed = seed(0x6a73_6f6e_0002);
    let mut rng = Rng::new(seed);
    let payloads: Vec<Doc> = (0..RELAY_PAYLOADS)
        .map(|_| {
            let mix = Mix { risky_numbers: rng.percent(15), lone_surrogates: rng.percent(3) };
            Doc::generate(&mut rng, mix, Top::Object)
        })
        .collect();

    let relay = RelayUnderTest::start().await;
    let texts: Vec<String> = payloads.iter().map(|doc| doc.text.clone()).collect();
    let answers = relay.post_all(texts).await;
    let accepted = answers.iter().filter(|answer| answer.status == 202).count();
    assert!(
        accepted * 10 >= payloads.len() * 7,
        "only {accepted} of {} payloads were accepted (seed {seed}); the generator should make most valid",
        payloads.len()
    );
    let deliveries = relay.deliveries(accepted).await;

    let mut batch = NodeBatch::default();
    let js_forms: Vec<usize> = payloads.iter().map(|doc| batch.stringify(&doc.text)).collect();
    for doc in &payloads {
        batch.numbers(doc);
    }
    let verifications = batch.verify_all(&deliveries, &relay.secret);
    let node = batch.run(&node);

    let mut failures = Vec::new();
    for ((doc, answer), &js) in payloads.iter().zip(&answers).zip(&js_forms) {
        failures.extend(check_answer(doc, answer, node.answer(js), &node, &deliveries));
    }
    failures.extend(check_verifications(&verifications, &node, &deliveries));
    failures.extend(check_standard_webhooks(&deliveries, &relay.secret));
    let delivered_ids: Vec<&String> = deliveries.keys().collect();
    failures.extend(check_only_accepted_delivered(&delivered_ids, &answers));
    let refused = |status| answers.iter().filter(|a| a.status == status).count();
    eprintln!(
        "js_fidelity: {} payloads posted (seed {seed}): {accepted} accepted and delivered, \
         {} refused with 422, {} with 400; {:?}",
        payloads.len(),
        refused(422),
        refused(400),
        started.elapsed()
    );
    assert_no_failures("payloads relayed", &failures, Some(seed));
    relay.stop().await;
}

/// Hand-picked payloads and what receivers get for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chosen_payloads_are_delivered_as_javascript_writes_them() {
    let Some(node) = crate::tools::required_tool("node") else { return };
    let relay = RelayUnderTest::start().await;
    let mut failures = Vec::new();
    let mut expected_data = HashMap::new();
    for case in CASES {
        let answer = relay.post(0, case.posted).await;
        match (case.expect, answer.outcome()) {
            (Expect::Delivered(data), Outcome::Accepted { event_id, payload }) => {
                if payload != data {
                    failures.push(format!("{}: the 202 answer holds {payload}, expected {data}", case.posted));
                }
                expected_data.insert(event_id, (case.posted, data));
            }
            (Expect::Refused(field), Outcome::Refused { fields }) if fields == [field] => {}
            (Expect::BadJson, Outcome::BadJson) => {}
            (expect, _) => {
                failures.push(format!("{}: expected {expect:?}, got {} {}", case.posted, answer.status, answer.body));
            }
        }
    }
    let deliveries = relay.deliveries(expected_data.len()).await;
    for (event_id, (posted, data)) in &expected_data {
        match deliveries.get(event_id).map(delivered_data) {
            Some(delivered) if delivered == *data => {}
            other => failures.push(format!("{posted}: delivered data {other:?}, expected {data}")),
        }
    }
    let mut batch = NodeBatch::default();
    let verifications = batch.verify_all(&deliveries, &relay.secret);
    let node = batch.run(&node);
    failures.extend(check_verifications(&verifications, &node, &deliveries));
    failures.extend(check_standard_webhooks(&deliveries, &relay.secret));
    assert_no_failures("chosen payloads", &failures, None);
    relay.stop().await;
}

/// One hand-picked payload and what should become of it.
struct Case {
    posted: &'static str,
    expect: Expect,
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Accepted and delivered with exactly this `data`.
    Delivered(&'static str),
    /// 422 naming exactly this field.
    Refused(&'static str),
    /// 400 invalid_json.
    BadJson,
}

const CASES: &[Case] = &[
    Case { posted: r#"{"amount": 1.0}"#, expect: Expect::Delivered(r#"{"amount":1}"#) },
    Case { posted: r#"{"2":1,"10":2,"b":3,"a":4}"#, expect: Expect::Delivered(r#"{"2":1,"10":2,"b":3,"a":4}"#) },
    Case { posted: r#"{"b":3,"10":2,"a":4,"2":1}"#, expect: Expect::Delivered(r#"{"2":1,"10":2,"b":3,"a":4}"#) },
    Case { posted: r#"{"z":-0.0}"#, expect: Expect::Delivered(r#"{"z":0}"#) },
    Case { posted: r#"{"big":18446744073709551616}"#, expect: Expect::Refused("payload.big") },
    Case { posted: r#"{"n":9007199254740993}"#, expect: Expect::Refused("payload.n") },
    Case { posted: r#"{"n":9007199254740992}"#, expect: Expect::Delivered(r#"{"n":9007199254740992}"#) },
    Case { posted: r#"{"x":1e21}"#, expect: Expect::Delivered(r#"{"x":1e+21}"#) },
    Case { posted: r#"{"b":1,"a":2}"#, expect: Expect::Delivered(r#"{"b":1,"a":2}"#) },
    Case { posted: r#"{"a":1,"b":2,"a":3}"#, expect: Expect::Delivered(r#"{"a":3,"b":2}"#) },
    Case {
        posted: r#"{"small":0.000001,"smaller":1e-7,"trailing":123.450,"upper":1E+2,"min":5e-324}"#,
        expect: Expect::Delivered(r#"{"small":0.000001,"smaller":1e-7,"trailing":123.45,"upper":100,"min":5e-324}"#),
    },
    Case {
        posted: r#"{"s":"\u00e9\/\u2028\ud83d\ude00\u001F\t"}"#,
        expect: Expect::Delivered("{\"s\":\"é/\u{2028}😀\\u001f\\t\"}"),
    },
    Case {
        posted: r#"{"items":[0,1,2,{"price":0.1000000000000000055511151231257827}]}"#,
        expect: Expect::Refused("payload.items[3].price"),
    },
    Case { posted: r#"{"a b":1e400}"#, expect: Expect::Refused(r#"payload["a b"]"#) },
    Case { posted: r#"{"huge":1e99999999999999999999999}"#, expect: Expect::Refused("payload.huge") },
    Case { posted: r#"{"zero":-0e99999999999999999999999}"#, expect: Expect::Delivered(r#"{"zero":0}"#) },
    // A value a later duplicate key replaces is checked too (js_json's documented rule), though
    // JavaScript drops it.
    Case { posted: r#"{"a":1e400,"a":1}"#, expect: Expect::Refused("payload.a") },
    Case { posted: r#"{"k":"\ud800"}"#, expect: Expect::BadJson },
    Case { posted: r#"{"k":"\ud83d\ude00","\udc00":1}"#, expect: Expect::BadJson },
];

// ----- checks ----------------------------------------------------------------------------------

/// A generated (valid) document: `normalize` agrees with Node in both modes, and strict mode
/// refuses exactly the numbers Node changes.
fn check_generated(doc: &Doc, node: &NodeAnswer, numbers: &NodeAnswers) -> Vec<String> {
    let Ok(Value::String(js)) = node else {
        return vec![format!("Node refused a generated document: {node:?}\n  document: {:?}", doc.text)];
    };
    let lenient = normalize(&doc.text, "payload", Numbers::Lenient);
    let strict = normalize(&doc.text, "payload", Numbers::Strict);
    let mut failures = Vec::new();
    let mut fail = |what: String| failures.push(format!("{what}\n  document: {:?}\n  Node:     {js:?}", doc.text));
    if doc.lone_surrogate {
        // JSON.parse keeps a lone surrogate, but UTF-8 cannot carry it: refused in both modes.
        for (mode, result) in [("lenient", &lenient), ("strict", &strict)] {
            if !has_problem(result, ProblemKind::Surrogate) {
                fail(format!("{mode} did not refuse a lone surrogate: {result:?}"));
            }
        }
        return failures;
    }
    match &lenient {
        Ok(ours) if ours == js => {}
        other => fail(format!("lenient differs from Node: {other:?}")),
    }
    let expected: Vec<&str> = numbers.changed(doc).into_iter().map(|l| l.path.as_str()).take(MAX_PROBLEMS).collect();
    match &strict {
        Ok(ours) if ours != js => fail(format!("strict differs from Node: {ours:?}")),
        Ok(_) if !expected.is_empty() => fail(format!("strict accepted numbers Node changes, at {expected:?}")),
        Ok(_) => {}
        Err(problems) => {
            let got: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
            if problems.iter().any(|p| p.kind != ProblemKind::Number) || got != expected {
                fail(format!("strict refused {problems:?}; expected number problems at {expected:?}"));
            }
        }
    }
    failures
}

/// A broken document: refused when Node refuses it, and written as Node writes it otherwise.
fn check_broken(text: &str, node: &NodeAnswer) -> Vec<String> {
    let lenient = normalize(text, "payload", Numbers::Lenient);
    let strict = normalize(text, "payload", Numbers::Strict);
    let failure = match (node, &lenient, &strict) {
        (Err(_), Err(problems), Err(_)) if problems.iter().any(|p| p.kind == ProblemKind::Syntax) => return Vec::new(),
        (Err(error), _, _) => format!("Node refused it ({error}) but lenient gave {lenient:?}, strict {strict:?}"),
        (Ok(Value::String(js)), Ok(ours), _) if ours != js => format!("lenient differs from Node: {ours:?} vs {js:?}"),
        (Ok(Value::String(js)), _, Ok(ours)) if ours != js => format!("strict differs from Node: {ours:?} vs {js:?}"),
        // Refused only for lone surrogates: Node keeps them (and writes them as escapes), unless
        // they are in a value a later duplicate key replaces, which js_json refuses too.
        (Ok(Value::String(js)), Err(problems), _)
            if !(problems.iter().all(|p| p.kind == ProblemKind::Surrogate)
                && (has_surrogate_escape(js) || has_surrogate_escape(text))) =>
        {
            format!("Node accepted it as {js:?}, lenient refused: {problems:?}")
        }
        _ => return Vec::new(),
    };
    vec![format!("{failure}\n  broken document: {text:?}")]
}

/// The relay's answer to one random payload is what the payload deserves, and an accepted one
/// was delivered (and answered) as Node writes it.
fn check_answer(
    doc: &Doc,
    answer: &Answer,
    js: &NodeAnswer,
    numbers: &NodeAnswers,
    deliveries: &HashMap<String, Received>,
) -> Vec<String> {
    let changed = numbers.changed(doc);
    let expected_fields: Vec<&str> = changed.iter().map(|l| l.path.as_str()).take(MAX_PROBLEMS).collect();
    let failure = match answer.outcome() {
        Outcome::BadJson if doc.lone_surrogate => return Vec::new(),
        Outcome::Refused { fields } if !doc.lone_surrogate && !changed.is_empty() => {
            if fields == expected_fields && fields.iter().all(|f| f.starts_with("payload")) {
                return Vec::new();
            }
            format!("422 named {fields:?}; the numbers Node changes are at {expected_fields:?}")
        }
        Outcome::Accepted { event_id, payload } if !doc.lone_surrogate && changed.is_empty() => {
            match check_delivered(&event_id, &payload, js, deliveries) {
                None => return Vec::new(),
                Some(failure) => failure,
            }
        }
        _ => {
            let literals: Vec<String> = changed.iter().map(|l| format!("{} at {}", l.text, l.path)).collect();
            format!(
                "unexpected answer {}; lone surrogate: {}, numbers Node changes: {literals:?}\n  answer: {}",
                answer.status, doc.lone_surrogate, answer.body
            )
        }
    };
    vec![format!("{failure}\n  posted payload: {:?}", doc.text)]
}

/// The 202 answer's payload, the delivered `data` and Node's form of the posted text agree.
fn check_delivered(
    event_id: &str,
    answered: &str,
    js: &NodeAnswer,
    deliveries: &HashMap<String, Received>,
) -> Option<String> {
    let Ok(Value::String(js)) = js else { return Some(format!("Node refused the payload: {js:?}")) };
    let Some(delivery) = deliveries.get(event_id) else { return Some(format!("event {event_id} was never delivered")) };
    let delivered = delivered_data(delivery);
    if delivered != *js || answered != js {
        return Some(format!(
            "Node writes {js:?}\n  the relay answered {answered:?}\n  and delivered     {delivered:?}"
        ));
    }
    None
}

/// Node ran the seed's snippet on every delivery: each verified, and each body is what
/// `JSON.stringify(JSON.parse(body))` gives back.
fn check_verifications(
    verifications: &[(String, usize)],
    node: &NodeAnswers,
    deliveries: &HashMap<String, Received>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (event_id, index) in verifications {
        let answer = node.answer(*index);
        if answer.as_ref().ok() != Some(&json!({"verified": true, "roundTrip": true})) {
            let body = deliveries.get(event_id).map(|r| String::from_utf8_lossy(&r.body).into_owned());
            failures.push(format!("the seed's snippet under Node said {answer:?} for {event_id}\n  body: {body:?}"));
        }
    }
    failures
}

/// Every delivery verifies with the Standard Webhooks reference library.
fn check_standard_webhooks(deliveries: &HashMap<String, Received>, secret: &str) -> Vec<String> {
    let webhook = standardwebhooks::Webhook::new(secret).expect("the webhook secret is a Standard Webhooks secret");
    deliveries
        .iter()
        .filter_map(|(event_id, delivery)| {
            let body = String::from_utf8_lossy(&delivery.body);
            let rejected = webhook.verify(&delivery.body, &delivery.headers).err();
            rejected.map(|e| format!("Standard Webhooks rejected event {event_id}: {e:?}\n  body: {body:?}"))
        })
        .collect()
}

/// Nothing was delivered for an event the relay did not accept.
fn check_only_accepted_delivered(delivered: &[&String], answers: &[Answer]) -> Vec<String> {
    let accepted: HashSet<String> = answers
        .iter()
        .filter_map(|answer| match answer.outcome() {
            Outcome::Accepted { event_id, .. } => Some(event_id),
            _ => None,
        })
        .collect();
    delivered
        .iter()
        .filter(|id| !accepted.contains(id.as_str()))
        .map(|id| format!("event {id} was delivered but never accepted"))
        .collect()
}

fn has_problem(result: &Result<String, Vec<Problem>>, kind: ProblemKind) -> bool {
    result.as_ref().err().is_some_and(|problems| problems.iter().any(|p| p.kind == kind))
}

/// Whether JSON text holds a `\uDxxx` escape of a surrogate (JSON.stringify writes one only for a
/// lone surrogate).
fn has_surrogate_escape(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.match_indices("\\ud").any(|(at, _)| lower[at + 3..].starts_with(['8', '9', 'a', 'b', 'c', 'd', 'e', 'f']))
}

/// Fails with the first few failures; `seed` (of random cases) says how to replay them.
fn assert_no_failures(what: &str, failures: &[String], seed: Option<u64>) {
    let replay = seed.map(|seed| format!(" (seed {seed}; rerun with JS_FIDELITY_SEED={seed})")).unwrap_or_default();
    assert!(
        failures.is_empty(),
        "{} of the {what} failed{replay}. The first ones:\n\n{}",
        failures.len(),
        failures.iter().take(8).cloned().collect::<Vec<_>>().join("\n\n")
    );
}

/// How much of what the generator can make the documents actually hold.
#[derive(Debug, Default)]
struct Coverage {
    documents_at_depth_6: usize,
    with_duplicate_keys: usize,
    with_wide_objects: usize,
    with_index_keys: usize,
    with_escapes: usize,
    with_lone_surrogates: usize,
    with_numbers_javascript_changes: usize,
    number_literals: usize,
}

impl Coverage {
    fn of(documents: &[Doc], node: &NodeAnswers) -> Self {
        let count = |f: &dyn Fn(&Doc) -> bool| documents.iter().filter(|doc| f(doc)).count();
        Self {
            documents_at_depth_6: count(&|doc| doc.features.deepest >= 6),
            with_duplicate_keys: count(&|doc| doc.features.duplicate_keys),
            with_wide_objects: count(&|doc| doc.features.widest > 16),
            with_index_keys: count(&|doc| doc.features.index_keys),
            with_escapes: count(&|doc| doc.text.contains("\\u")),
            with_lone_surrogates: count(&|doc| doc.lone_surrogate),
            with_numbers_javascript_changes: count(&|doc| !node.changed(doc).is_empty()),
            number_literals: documents.iter().map(|doc| doc.literals.len()).sum(),
        }
    }

    fn assert_broad(&self) {
        let least = [
            self.documents_at_depth_6,
            self.with_duplicate_keys,
            self.with_wide_objects,
            self.with_index_keys,
            self.with_escapes,
            self.with_lone_surrogates,
            self.with_numbers_javascript_changes,
        ];
        assert!(least.iter().all(|&n| n >= 20), "the generator made too few documents of some kind: {self:?}");
        assert!(self.number_literals >= 10_000, "the generator wrote too few numbers: {self:?}");
    }
}

// ----- what JavaScript does to a number --------------------------------------------------------

/// Whether JavaScript changes a number literal, so that the relay must refuse it at ingest: an
/// integer literal beyond ±2^53, or a value that `js` (Node's `String(JSON.parse(literal))`)
/// does not denote exactly (rounded, out of range, too small).
fn javascript_changes(literal: &str, js: &str) -> bool {
    if js.ends_with("Infinity") || js == "NaN" {
        return true;
    }
    integer_beyond_2_53(literal) || exact_value(literal) != exact_value(js)
}

fn integer_beyond_2_53(literal: &str) -> bool {
    let digits = literal.trim_start_matches('-');
    digits.bytes().all(|b| b.is_ascii_digit()) && (digits.len(), digits) > (16, "9007199254740992")
}

/// The exact value of a decimal numeral as (negative, significant digits, n) meaning
/// `±0.d1d2…dk × 10^n`; `None` for zero (of either sign: JavaScript writes both as `0`).
fn exact_value(numeral: &str) -> Option<(bool, String, i64)> {
    let (negative, unsigned) = numeral.strip_prefix('-').map_or((false, numeral), |rest| (true, rest));
    let (mantissa, exponent) = unsigned.split_once(['e', 'E']).unwrap_or((unsigned, "0"));
    let exponent: i64 = exponent.parse().expect("a generated exponent fits an i64");
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    let leading = all.len() - all.trim_start_matches('0').len();
    let significant = all.trim_matches('0');
    if significant.is_empty() {
        return None;
    }
    let n = i64::try_from(int.len()).expect("short") - i64::try_from(leading).expect("short") + exponent;
    Some((negative, significant.to_owned(), n))
}

// ----- Node ------------------------------------------------------------------------------------

/// Run by one Node process per test: a JSON request a line in, `{"ok": answer}` or
/// `{"error": message}` a line out. The seed's snippet is copied verbatim.
const NODE_SCRIPT: &str = r#"
const crypto = require('crypto');

function verifyWebhook(payload, signature, secret) {
  const hmac = crypto.createHmac('sha256', secret);
  hmac.update(JSON.stringify(payload));
  const expected = hmac.digest('hex');
  return crypto.timingSafeEqual(Buffer.from(signature), Buffer.from(expected));
}

function handle(request) {
  if ('stringify' in request) return JSON.stringify(JSON.parse(request.stringify));
  if ('number' in request) return String(JSON.parse(request.number));
  if ('verify' in request) {
    const { body, signature, secret } = request.verify;
    return {
      verified: verifyWebhook(JSON.parse(body), signature, secret),
      roundTrip: JSON.stringify(JSON.parse(body)) === body,
    };
  }
  throw new Error('unknown request');
}

const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter((line) => line !== '');
const answers = lines.map((line) => {
  try {
    return JSON.stringify({ ok: handle(JSON.parse(line)) });
  } catch (e) {
    // The message may quote a lone surrogate, which the Rust side cannot read back.
    return JSON.stringify({ error: String(e).replace(/[\ud800-\udfff]/g, '?') });
  }
});
process.stdout.write(answers.join('\n') + '\n');
"#;

/// Node's answer to one request: its result, or the exception it threw.
type NodeAnswer = Result<Value, String>;

/// Requests for one Node run. Each method returns the index of its answer.
#[derive(Default)]
struct NodeBatch {
    requests: Vec<Value>,
    numbers: HashMap<String, usize>,
}

impl NodeBatch {
    fn push(&mut self, request: Value) -> usize {
        self.requests.push(request);
        self.requests.len() - 1
    }

    /// `JSON.stringify(JSON.parse(text))`.
    fn stringify(&mut self, text: &str) -> usize {
        self.push(json!({ "stringify": text }))
    }

    /// `String(JSON.parse(literal))` for every number literal in `doc`.
    fn numbers(&mut self, doc: &Doc) {
        for literal in &doc.literals {
            if !self.numbers.contains_key(&literal.text) {
                let index = self.push(json!({ "number": literal.text }));
                self.numbers.insert(literal.text.clone(), index);
            }
        }
    }

    /// The seed's snippet on each delivery; returns (event id, answer index) pairs.
    fn verify_all(&mut self, deliveries: &HashMap<String, Received>, secret: &str) -> Vec<(String, usize)> {
        deliveries
            .iter()
            .map(|(event_id, delivery)| {
                let body = String::from_utf8(delivery.body.to_vec()).expect("a delivery body is UTF-8");
                let signature = delivery.header("x-relay-signature");
                let index = self.push(json!({ "verify": { "body": body, "signature": signature, "secret": secret } }));
                (event_id.clone(), index)
            })
            .collect()
    }

    fn run(self, node: &Path) -> NodeAnswers {
        let mut input = String::new();
        for request in &self.requests {
            input.push_str(&request.to_string());
            input.push('\n');
        }
        let mut child = Command::new(node)
            .arg("-e")
            .arg(NODE_SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node");
        let mut stdin = child.stdin.take().expect("node's stdin");
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let output = child.wait_with_output().expect("node ran");
        writer.join().expect("the writer thread finished").expect("wrote the requests to node");
        assert!(output.status.success(), "node failed: {}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8(output.stdout).expect("node writes UTF-8");
        let answers: Vec<NodeAnswer> = stdout.lines().map(parse_node_line).collect();
        assert_eq!(answers.len(), self.requests.len(), "node did not answer every request");
        NodeAnswers { answers, numbers: self.numbers }
    }
}

fn parse_node_line(line: &str) -> NodeAnswer {
    let mut answer: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("node wrote {line:?}: {e}"));
    match answer.get_mut("ok") {
        Some(ok) => Ok(ok.take()),
        None => Err(answer["error"].as_str().unwrap_or("no answer").to_owned()),
    }
}

/// What Node answered.
struct NodeAnswers {
    answers: Vec<NodeAnswer>,
    numbers: HashMap<String, usize>,
}

impl NodeAnswers {
    fn answer(&self, index: usize) -> &NodeAnswer {
        &self.answers[index]
    }

    /// The literals of `doc` that JavaScript changes, in document order.
    fn changed<'d>(&self, doc: &'d Doc) -> Vec<&'d Literal> {
        doc.literals
            .iter()
            .filter(|literal| {
                let index = self.numbers[&literal.text];
                match self.answer(index) {
                    Ok(Value::String(js)) => javascript_changes(&literal.text, js),
                    other => panic!("node could not read the number {}: {other:?}", literal.text),
                }
            })
            .collect()
    }
}

// ----- the relay -------------------------------------------------------------------------------

/// The relay with one webhook, subscribed to `EVENT_TYPE`, pointing at a recording receiver.
struct RelayUnderTest {
    app: TestApp,
    receiver: Receiver,
    secret: String,
}

/// The relay's answer to one `POST /api/events`.
struct Answer {
    status: u16,
    body: String,
}

enum Outcome {
    Accepted { event_id: String, payload: String },
    Refused { fields: Vec<String> },
    BadJson,
    Other,
}

impl Answer {
    fn outcome(&self) -> Outcome {
        match self.status {
            202 => {
                let data = raw_member(&self.body, "data").expect("a 202 answer has data");
                let event_id = raw_member(&data, "eventId").expect("an event id");
                let event_id: String = serde_json::from_str(&event_id).expect("the event id is a string");
                Outcome::Accepted { event_id, payload: raw_member(&data, "payload").expect("a payload") }
            }
            422 => {
                let body: Value = serde_json::from_str(&self.body).expect("a JSON error");
                let details = body["error"]["details"].as_array().cloned().unwrap_or_default();
                let fields = details.iter().map(|d| d["field"].as_str().unwrap_or("?").to_owned()).collect();
                Outcome::Refused { fields }
            }
            400 if self.body.contains(r#""code":"invalid_json""#) => Outcome::BadJson,
            _ => Outcome::Other,
        }
    }
}

impl RelayUnderTest {
    async fn start() -> Self {
        let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "0"), ("WORKER_CONCURRENCY", "8")]).await;
        let receiver = Receiver::start().await;
        let (_, secret) = app.create_webhook(&receiver.url(), &[EVENT_TYPE]).await;
        Self { app, receiver, secret }
    }

    async fn post(&self, n: usize, payload: &str) -> Answer {
        post_event(&self.app.http, &self.app.url("/api/events"), n, payload).await
    }

    /// Posts every payload, `IN_FLIGHT` at a time; the answers in the payloads' order.
    async fn post_all(&self, payloads: Vec<String>) -> Vec<Answer> {
        let payloads = Arc::new(payloads);
        let next = Arc::new(AtomicUsize::new(0));
        let mut posters = tokio::task::JoinSet::new();
        for _ in 0..IN_FLIGHT {
            let (http, url) = (self.app.http.clone(), self.app.url("/api/events"));
            let (payloads, next) = (payloads.clone(), next.clone());
            posters.spawn(async move {
                let mut answers = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(payload) = payloads.get(n) else { return answers };
                    answers.push((n, post_event(&http, &url, n, payload).await));
                }
            });
        }
        let mut answers: Vec<(usize, Answer)> = posters.join_all().await.into_iter().flatten().collect();
        answers.sort_by_key(|(n, _)| *n);
        answers.into_iter().map(|(_, answer)| answer).collect()
    }

    /// Waits for deliveries of `count` distinct events; returns them by event id.
    async fn deliveries(&self, count: usize) -> HashMap<String, Received> {
        let deadline = Instant::now() + DELIVERY_DEADLINE;
        let mut requests = count;
        loop {
            let received = self.receiver.wait_for(requests, deadline.saturating_duration_since(Instant::now())).await;
            requests = received.len() + 1;
            let by_event = by_event_id(received);
            if by_event.len() >= count {
                return by_event;
            }
        }
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

/// Event names, delivered next to the payload: characters JSON writers might escape differently.
const EVENT_NAMES: &[&str] = &[
    "payload",
    "payload – Zoë 😀",
    "quote \" backslash \\ slash / tab \t nul \u{0} del \u{7f} separators \u{2028}\u{2029} bom \u{feff}",
];

/// Posts event number `n` with `payload` (raw JSON text, spliced in as is).
async fn post_event(http: &reqwest::Client, url: &str, n: usize, payload: &str) -> Answer {
    let name = format!("{} {n}", EVENT_NAMES[n % EVENT_NAMES.len()]);
    let name = serde_json::to_string(&name).expect("a string");
    let body =
        format!(r#"{{"eventType":"{EVENT_TYPE}","eventName":{name},"payload":{payload},"source":"js-fidelity"}}"#);
    let response = http
        .post(url)
        .header("x-service-token", SERVICE_TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the relay answers");
    let status = response.status().as_u16();
    Answer { status, body: response.text().await.expect("an answer body") }
}

/// Deliveries by event id (`webhook-id`); a repeated delivery must carry the same body.
fn by_event_id(received: Vec<Received>) -> HashMap<String, Received> {
    let mut by_event: HashMap<String, Received> = HashMap::new();
    for delivery in received {
        let event_id = delivery.header("webhook-id").to_owned();
        if let Some(earlier) = by_event.get(&event_id) {
            assert_eq!(earlier.body, delivery.body, "event {event_id} was delivered twice with different bodies");
        }
        by_event.insert(event_id, delivery);
    }
    by_event
}

/// The text of member `name` of the JSON object `json`, exactly as written.
fn raw_member(json: &str, name: &str) -> Option<String> {
    let members: HashMap<String, Box<RawValue>> = serde_json::from_str(json).ok()?;
    members.get(name).map(|raw| raw.get().to_owned())
}

/// The `data` of a delivered body, exactly as delivered.
fn delivered_data(delivery: &Received) -> String {
    let body = std::str::from_utf8(&delivery.body).expect("a delivery body is UTF-8");
    raw_member(body, "data").unwrap_or_else(|| panic!("the delivered body has no data: {body}"))
}

// ----- the document generator ------------------------------------------------------------------

/// The seed: `JS_FIDELITY_SEED` when set (to replay a failure), else the test's own.
fn seed(default: u64) -> u64 {
    std::env::var("JS_FIDELITY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// A small deterministic random number generator (xorshift64*): the same seed, the same documents.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self((seed ^ 0x9E37_79B9_7F4A_7C15).max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("below n")
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        low + i64::try_from(self.next() % (high - low + 1).unsigned_abs()).expect("small")
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// `n` random digits, the first not zero.
    fn digits(&mut self, n: usize) -> String {
        let mut digits = String::with_capacity(n);
        for i in 0..n {
            let digit = if i == 0 { 1 + self.below(9) } else { self.below(10) };
            digits.push(char::from(b"0123456789"[digit]));
        }
        digits
    }
}

/// What a generated document may hold.
#[derive(Debug, Clone, Copy)]
struct Mix {
    /// Numbers JavaScript would change: too many digits, integers beyond 2^53, out of range.
    risky_numbers: bool,
    /// Lone UTF-16 surrogate escapes in strings and keys.
    lone_surrogates: bool,
}

/// What the document is at its top.
#[derive(Debug, Clone, Copy)]
enum Top {
    Object,
    Any,
}

/// A generated JSON text and what the generator knows about it.
struct Doc {
    text: String,
    /// Every number literal, in document order.
    literals: Vec<Literal>,
    lone_surrogate: bool,
    features: Features,
}

/// A number as written, and where: `payload.items[3].price`, as the relay names it.
struct Literal {
    text: String,
    path: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct Features {
    /// Levels of arrays and objects.
    deepest: usize,
    /// Most members in one object.
    widest: usize,
    duplicate_keys: bool,
    index_keys: bool,
}

/// The deepest nesting generated.
const MAX_NESTING: usize = 6;

/// Object keys, before escaping: identifiers, unicode, integer-like keys that are and are not
/// array indices, and names JavaScript treats specially elsewhere.
const KEYS: &[&str] = &[
    "a",
    "b",
    "id",
    "name",
    "amount",
    "$ref",
    "_x",
    "camelCase",
    "a b",
    "",
    "é",
    "日本",
    "😀",
    "\u{2028}",
    "__proto__",
    "constructor",
    "toString",
    "0",
    "1",
    "2",
    "10",
    "01",
    "-1",
    "1.5",
    "4294967294",
    "4294967295",
    "4294967296",
    " 1",
    "1e2",
    "007",
    "9007199254740993",
    "-0",
];

/// Plain pieces of strings.
const WORDS: &[&str] = &["hello", "a", "Zoë", " ", "x y", "1", "$", "日本語", "naïve café", "{\"json\":[1]}"];

/// Characters with something to get wrong.
const AWKWARD: &[char] = &[
    '"', '\\', '/', '\u{7f}', '\u{80}', '\u{a0}', '\u{ff}', '\u{2028}', '\u{2029}', '\u{feff}', '\u{fffd}', '\u{ffff}',
    'é',
];

const ASTRAL: &[char] = &['😀', '𝄞', '\u{10000}', '\u{10ffff}', '🇫', '👍'];

/// Numbers JavaScript keeps, near the edges.
const SAFE_SPECIALS: &[&str] = &[
    "5e-324",
    "2.2250738585072014e-308",
    "2.225073858507201e-308",
    "1.7976931348623157e308",
    "1e21",
    "1e20",
    "1e-7",
    "0.000001",
    "123e-20",
    "0.30000000000000004",
    "9007199254740992",
    "-9007199254740992",
    "4294967295",
    "1E+2",
    "100e-2",
    "12345678901234567e-16",
    "0.1",
    "1e308",
    "-1.5e-10",
    "18014398509481984.0",
    "1e0",
    "1E-0",
];

/// Numbers JavaScript changes (and a few that only look as if it would).
const RISKY_SPECIALS: &[&str] = &[
    "1e400",
    "-1e309",
    "1e-400",
    "-1e-400",
    "2.4703282292062327e-324",
    "2.4703282292062328e-324",
    "1.7976931348623158e308",
    "1.7976931348623159e308",
    "0.1000000000000000055511151231257827",
    "18446744073709551616",
    "9007199254740993",
    "-9007199254740993",
    "123456789012345678.5",
    "18014398509481984",
    "100000000000000000000",
    "9007199254740993.0",
    "0.12500000000000000000000000000",
    "4.9406564584124654e-324",
    "9.007199254740993e15",
];

/// Whitespace between tokens.
const SPACES: &[&str] = &[" ", "\n", "\t", "\r\n  ", "  "];

/// Characters inserted to break a document.
const BREAKERS: &[char] =
    &[',', ':', '{', '}', '[', ']', '"', '\\', '0', '-', '.', 'e', '+', 'x', '\u{0}', '\u{feff}', '\u{a0}', '\n'];

/// One UTF-16-level piece of a string: a character, or a lone surrogate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Char(char),
    Lone(u16),
}

/// Writes one random document.
struct Gen<'r> {
    rng: &'r mut Rng,
    mix: Mix,
    text: String,
    /// Accessors from the root to the value being written (`.a`, `[3]`, `["a b"]`).
    path: Vec<String>,
    literals: Vec<Literal>,
    /// Values left before only scalars are written.
    budget: usize,
    lone_surrogate: bool,
    features: Features,
}

impl Doc {
    fn generate(rng: &mut Rng, mix: Mix, top: Top) -> Doc {
        let budget = 4 + rng.below(45);
        let mut g = Gen {
            rng,
            mix,
            text: String::new(),
            path: Vec::new(),
            literals: Vec::new(),
            budget,
            lone_surrogate: false,
            features: Features::default(),
        };
        g.space();
        match top {
            Top::Object => g.object(0),
            Top::Any => g.value(0),
        }
        g.space();
        Doc { text: g.text, literals: g.literals, lone_surrogate: g.lone_surrogate, features: g.features }
    }
}

/// `text` truncated, or with one character dropped or inserted.
fn break_text(rng: &mut Rng, text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = rng.below(chars.len() + 1);
    let (head, tail) = chars.split_at(at);
    match rng.below(3) {
        0 => head.iter().collect(),
        1 => head.iter().chain(tail.iter().skip(1)).collect(),
        _ => head.iter().chain(&[rng.pick(BREAKERS)]).chain(tail).collect(),
    }
}

impl Gen<'_> {
    // ----- structure -------------------------------------------------------------------------

    /// A value inside `depth` levels of arrays and objects.
    fn value(&mut self, depth: usize) {
        self.budget = self.budget.saturating_sub(1);
        let room = depth < MAX_NESTING && self.budget > 0;
        let roll = self.rng.below(100);
        if room && roll < 30 {
            self.object(depth);
        } else if room && roll < 45 {
            self.array(depth);
        } else {
            match self.rng.below(10) {
                0..=4 => self.number(),
                5..=7 => self.string(),
                _ => self.text.push_str(self.rng.pick(&["true", "false", "null"])),
            }
        }
    }

    fn object(&mut self, depth: usize) {
        self.features.deepest = self.features.deepest.max(depth + 1);
        self.text.push('{');
        let mut keys: Vec<Vec<Unit>> = Vec::new();
        // Now and then a wide object: js_json finds repeated keys differently past 16 members.
        let members = if self.rng.percent(4) { 17 + self.rng.below(24) } else { self.rng.below(6) };
        self.features.widest = self.features.widest.max(members);
        for i in 0..members {
            if i > 0 {
                self.text.push(',');
            }
            self.space();
            let key = if !keys.is_empty() && self.rng.percent(12) {
                self.features.duplicate_keys = true;
                keys[self.rng.below(keys.len())].clone()
            } else {
                self.key()
            };
            self.spell(&key);
            self.space();
            self.text.push(':');
            self.space();
            self.path.push(accessor(&key));
            self.value(depth + 1);
            self.path.pop();
            self.space();
            keys.push(key);
        }
        self.space();
        self.text.push('}');
    }

    fn array(&mut self, depth: usize) {
        self.features.deepest = self.features.deepest.max(depth + 1);
        self.text.push('[');
        for i in 0..self.rng.below(6) {
            if i > 0 {
                self.text.push(',');
            }
            self.space();
            self.path.push(format!("[{i}]"));
            self.value(depth + 1);
            self.path.pop();
            self.space();
        }
        self.text.push(']');
    }

    fn space(&mut self) {
        if self.rng.percent(15) {
            self.text.push_str(self.rng.pick(SPACES));
        }
    }

    // ----- strings -----------------------------------------------------------------------------

    fn key(&mut self) -> Vec<Unit> {
        let key = match self.rng.below(10) {
            0..=5 => self.rng.pick(KEYS).chars().map(Unit::Char).collect(),
            6 => self.rng.below(1000).to_string().chars().map(Unit::Char).collect(),
            7 => (self.rng.next() >> 32).to_string().chars().map(Unit::Char).collect(),
            _ => self.units(),
        };
        if is_array_index(&key) {
            self.features.index_keys = true;
        }
        key
    }

    fn string(&mut self) {
        let units = self.units();
        self.spell(&units);
    }

    /// A string's content: a few pieces of words, control characters, awkward characters,
    /// astral characters, random characters and (if allowed) lone surrogates.
    fn units(&mut self) -> Vec<Unit> {
        let mut units = Vec::new();
        for _ in 0..self.rng.below(7) {
            match self.rng.below(10) {
                0..=3 => units.extend(self.rng.pick(WORDS).chars().map(Unit::Char)),
                4 => units.push(Unit::Char(char::from(u8::try_from(self.rng.below(0x20)).expect("control")))),
                5 => units.push(Unit::Char(self.rng.pick(AWKWARD))),
                6 => units.push(Unit::Char(self.rng.pick(ASTRAL))),
                7 | 8 => units.push(Unit::Char(self.random_char())),
                _ if self.mix.lone_surrogates => {
                    // A high surrogate is always followed by a character, so that no two lone
                    // ones can pair up.
                    self.lone_surrogate = true;
                    let unit = u16::try_from(0xD800 + self.rng.below(0x800)).expect("surrogate");
                    if unit < 0xDC00 {
                        units.extend([Unit::Lone(unit), Unit::Char('x')]);
                    } else {
                        units.extend([Unit::Char('x'), Unit::Lone(unit)]);
                    }
                }
                _ => units.push(Unit::Char('\u{e9}')),
            }
        }
        units
    }

    fn random_char(&mut self) -> char {
        let limit = if self.rng.percent(70) { 0x1_0000 } else { 0x11_0000 };
        loop {
            if let Some(c) = char::from_u32(u32::try_from(self.rng.below(limit)).expect("code point")) {
                return c;
            }
        }
    }

    /// Writes a string literal, each character written plainly or escaped at random.
    fn spell(&mut self, units: &[Unit]) {
        self.text.push('"');
        for unit in units {
            match *unit {
                Unit::Char(c) => self.spell_char(c),
                Unit::Lone(u) => self.u_escape(u),
            }
        }
        self.text.push('"');
    }

    fn spell_char(&mut self, c: char) {
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        let must_escape = c < ' ' || c == '"' || c == '\\';
        match short {
            Some(short) if self.rng.percent(60) => self.text.push_str(short),
            _ if must_escape || self.rng.percent(20) => {
                let mut pair = [0u16; 2];
                for &unit in c.encode_utf16(&mut pair).iter() {
                    self.u_escape(unit);
                }
            }
            _ => self.text.push(c),
        }
    }

    fn u_escape(&mut self, unit: u16) {
        let hex = format!("{unit:04x}");
        self.text.push_str("\\u");
        self.text.push_str(&if self.rng.percent(30) { hex.to_uppercase() } else { hex });
    }

    // ----- numbers -----------------------------------------------------------------------------

    fn number(&mut self) {
        let literal = self.number_literal();
        let path = format!("payload{}", self.path.concat());
        self.text.push_str(&literal);
        self.literals.push(Literal { text: literal, path });
    }

    /// A number of some shape. Unless the mix allows risky numbers, only shapes JavaScript
    /// keeps (almost always: the relay's answer is checked against Node either way).
    fn number_literal(&mut self) -> String {
        let risky = self.mix.risky_numbers;
        let sign = if self.rng.percent(30) { "-" } else { "" };
        match self.rng.below(13) {
            0 => self.rng.between(-1000, 1000).to_string(),
            1 => {
                let n = 1 + self.rng.below(if risky { 25 } else { 15 });
                format!("{sign}{}", self.rng.digits(n))
            }
            2 => {
                let near = (1_i64 << 53) + self.rng.between(-3, if risky { 3 } else { 0 });
                format!("{sign}{near}{}", self.rng.pick(&["", "", ".0", "e0", ".000"]))
            }
            3 => self.rng.pick(&["0", "-0", "0.0", "-0.0", "0e0", "0E+0", "-0e-5", "0.000e10", "0.0e-400"]).to_owned(),
            4 => {
                let int = self.rng.between(0, 999);
                let fraction_digits = self.rng.below(4);
                let frac = self.rng.digits(fraction_digits);
                format!("{sign}{int}.{frac}{}", "0".repeat(1 + self.rng.below(5)))
            }
            5 => {
                let n = 1 + self.rng.below(if risky { 20 } else { 6 });
                let digits = self.rng.digits(n);
                let pow = self.rng.between(-30, 30);
                self.notate(sign, &digits, pow)
            }
            6 => {
                let subnormal = f64::from_bits(1 + self.rng.next() % ((1 << 52) - 1));
                self.print_double(sign, subnormal, risky)
            }
            7..=9 => {
                let x = self.random_double();
                self.print_double(sign, x, risky)
            }
            10 => {
                let specials = if risky && self.rng.percent(60) { RISKY_SPECIALS } else { SAFE_SPECIALS };
                self.rng.pick(specials).to_owned()
            }
            11 => {
                let n = if risky { 18 + self.rng.below(23) } else { 1 + self.rng.below(15) };
                let digits = self.rng.digits(n);
                let pow = -self.rng.between(0, i64::try_from(n).expect("short"));
                self.notate(sign, &digits, pow)
            }
            _ => format!("{}", self.rng.between(i64::from(i32::MIN), i64::from(i32::MAX))),
        }
    }

    /// A finite double: from random bits (any magnitude) or of a moderate size.
    fn random_double(&mut self) -> f64 {
        if self.rng.percent(50) {
            loop {
                let x = f64::from_bits(self.rng.next()).abs();
                if x.is_finite() && x > 0.0 {
                    return x;
                }
            }
        }
        let fraction = ((self.rng.next() >> 11) | 1) as f64 / (1_u64 << 53) as f64;
        fraction * 10_f64.powi(i32::try_from(self.rng.between(-8, 22)).expect("small"))
    }

    /// `x` (positive) written with 1 to 17 significant digits (15 unless risky), or its
    /// shortest round-trip digits, in a random notation.
    fn print_double(&mut self, sign: &str, x: f64, risky: bool) -> String {
        let printed = if self.rng.percent(25) {
            format!("{x:e}")
        } else {
            let precision = self.rng.below(if risky { 17 } else { 15 });
            format!("{x:.precision$e}")
        };
        let (mantissa, exponent) = printed.split_once('e').expect("exponent notation");
        let digits = mantissa.replace('.', "");
        let exponent: i64 = exponent.parse().expect("an exponent");
        let pow = exponent - i64::try_from(digits.len()).expect("short") + 1;
        self.notate(sign, &digits, pow)
    }

    /// `sign digits × 10^pow` written plainly, in exponent notation with the point anywhere
    /// (`e`/`E`, with or without `+`, zero-padded or not), or with trailing zeros.
    fn notate(&mut self, sign: &str, digits: &str, pow: i64) -> String {
        let len = i64::try_from(digits.len()).expect("short");
        let plain_fits = pow > -25 && pow + len < 25;
        let exponent = match self.rng.below(4) {
            0 if plain_fits => 0,
            0 | 1 => pow + len - 1,
            2 => pow + len - 1 + self.rng.between(-3, 3),
            _ => pow,
        };
        let mut mantissa = plain_decimal(digits, pow - exponent);
        if self.rng.percent(20) {
            if !mantissa.contains('.') {
                mantissa.push('.');
            }
            mantissa.push_str(&"0".repeat(1 + self.rng.below(3)));
        }
        if exponent == 0 && self.rng.percent(70) {
            return format!("{sign}{mantissa}");
        }
        let letter = self.rng.pick(&["e", "E"]);
        let exponent_sign = if exponent < 0 { "-" } else { self.rng.pick(&["", "+"]) };
        let width = if self.rng.percent(15) { 3 } else { 1 };
        format!("{sign}{mantissa}{letter}{exponent_sign}{:0width$}", exponent.unsigned_abs())
    }
}

/// `digits × 10^shift` as a plain decimal numeral (`digits` has no leading zero).
fn plain_decimal(digits: &str, shift: i64) -> String {
    if shift >= 0 {
        return format!("{digits}{}", "0".repeat(usize::try_from(shift).expect("small")));
    }
    let point = i64::try_from(digits.len()).expect("short") + shift;
    match usize::try_from(point) {
        Ok(point) if point > 0 => format!("{}.{}", &digits[..point], &digits[point..]),
        _ => format!("0.{}{digits}", "0".repeat(usize::try_from(-point).expect("small"))),
    }
}

/// How the relay names a member with this key: `.key` for an identifier, `["key"]` otherwise
/// (the key written as JSON.stringify writes a string, which serde_json matches).
fn accessor(key: &[Unit]) -> String {
    let chars = key.iter().map(|unit| if let Unit::Char(c) = unit { Some(*c) } else { None });
    let Some(key) = chars.collect::<Option<String>>() else {
        return "[?]".to_owned(); // A lone surrogate: the payload is refused as invalid JSON anyway.
    };
    let identifier = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if identifier { format!(".{key}") } else { format!("[{}]", serde_json::to_string(&key).expect("a string")) }
}

/// Whether JavaScript orders this key as an array index (`0` to `4294967294`, canonical).
fn is_array_index(key: &[Unit]) -> bool {
    let text: String = key.iter().map(|u| if let Unit::Char(c) = u { *c } else { '?' }).collect();
    text.parse::<u64>().is_ok_and(|n| n <= 4_294_967_294 && n.to_string() == text)
}
