//! Hostile input on every route (issue 8): property-based suites over JSON bodies, raw bytes
//! sent as JSON, query strings and path ids, header values and webhook URLs, each over every
//! route of /openapi.json that takes the thing; and explicit cases beside them (nesting 200 and
//! 10,000 deep, duplicate keys, numbers beyond f64/i64/u64, NUL and lone surrogates, 10 MB
//! bodies, CR/LF in names and URLs followed to a real delivery).
//!
//! Every answer is checked the same way (`harness::check`): never a 5xx, one sane
//! `X-Request-Id`, and a body that is a valid envelope. A failing property prints its minimal
//! case; `PROPTEST_RNG_SEED` replays a run.
//!
//! Layout: `strategies` generates the input, `harness` drives the router in-process and
//! checks the answers; the properties are here, the explicit cases in `json` (nesting,
//! duplicate keys, numbers, NUL and surrogates), `wire` (10 MB bodies, malformed requests on
//! the socket) and `injection` (CR/LF in request ids, names and URLs, up to a real delivery).

mod harness;
mod injection;
mod json;
mod strategies;
mod wire;

use std::fmt::Debug;

use axum::http::{HeaderValue, Method, Request};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::helpers::{ACME_KEY, SERVICE_TOKEN};
use crate::pg;
use harness::{CORS_ORIGIN, Harness, Reply, Route, body_limit, build, check_stored_url};
use strategies::{HEADER_NAMES, HeaderBytes};

/// Cases per property: enough to reach every route with many shapes, within seconds.
const CASES: u32 = 256;

fn run<S>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    run_cases(CASES, strategy, test);
}

fn run_cases<S>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    if let Err(failure) = TestRunner::new(config).run(&strategy, test) {
        panic!("{failure}");
    }
}

/// What a route that reads its body must answer for `body` (with valid credentials): 413 past
/// the limit, 400 when it is not JSON, 422 when it is JSON but not an object (or holds a number
/// beyond a double's range); and an accepted event holds the payload as JavaScript writes it.
fn expect_for_body(route: &Route, body: &[u8], reply: &Reply) -> Result<(), TestCaseError> {
    if !route.reads_body {
        return Ok(());
    }
    let status = reply.status.as_u16();
    if body.len() > body_limit(route) {
        prop_assert_eq!(status, 413);
        return Ok(());
    }
    if route.template.ends_with("/secret/rotate") && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    // JSON as RFC 8259 has it, numbers of any size included (serde_json refuses those beyond a
    // double): `js_json` reads any JSON, and Node.js agrees with it (`js_fidelity.rs`).
    let is_json = std::str::from_utf8(body).is_ok_and(|text| {
        serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
            && relay_core::domain::nesting(body) <= 127
            && relay_core::domain::js_json::normalize(text, "body", relay_core::domain::js_json::Numbers::Lenient)
                .is_ok()
    });
    match serde_json::from_slice::<Value>(body) {
        // JSON all the same, with a number no double holds: a body that is not an object, or
        // an event whose payload JavaScript would change, is 422, as any other wrong shape.
        Err(_) if is_json => prop_assert_eq!(status, 422, "JSON with a huge number, yet {}", reply.summary()),
        Err(_) => prop_assert_eq!(status, 400, "not JSON, yet {}", reply.summary()),
        Ok(value) if !value.is_object() => {
            prop_assert_eq!(status, 422, "not an object, yet {}", reply.summary())
        }
        Ok(sent) => {
            prop_assert_ne!(status, 400, "JSON refused as not JSON");
            if route.template == "/api/events" && status == 202 {
                // Byte for byte as JavaScript writes the payload sent (`JSON.stringify(JSON.parse(..))`,
                // which `js_json` reproduces; `tests/it/js_fidelity.rs` holds it to Node.js).
                let _ = sent;
                let fields: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
                    serde_json::from_slice(body).unwrap_or_default();
                let raw = fields.get("payload").map_or("null", |p| p.get());
                let payload = relay_core::domain::js_json::normalize(
                    raw,
                    "payload",
                    relay_core::domain::js_json::Numbers::Lenient,
                )
                .unwrap_or_default();
                let answer = String::from_utf8_lossy(&reply.body);
                prop_assert!(
                    answer.contains(&format!(r#""payload":{payload}"#)),
                    "the payload changed: sent {}, answered {}",
                    payload,
                    reply.summary()
                );
            }
        }
    }
    Ok(())
}

/// (a) Any JSON (and almost-JSON) as the body, alone or in a field of a valid body.
#[test]
fn any_json_body_gets_an_envelope() {
    let harness = Harness::start();
    harness.reset_statuses();
    let routes = harness.body_routes();
    run((select(routes), strategies::body_shape()), |(route, shape)| {
        let body = shape.render(&harness.valid_body(&route));
        let reply = harness.exchange(&route, build(route.request(&route.path()), body.clone())?)?;
        expect_for_body(&route, body.as_bytes(), &reply)
    });
    harness.assert_statuses_seen(&[200, 400, 413, 422]);
}

/// (b) Any bytes as an `application/json` body: random, invalid UTF-8 spliced into a valid
/// body, byte order marks, UTF-16.
#[test]
fn any_bytes_as_json_get_an_envelope() {
    let harness = Harness::start();
    harness.reset_statuses();
    let routes = harness.body_routes();
    run((select(routes), strategies::raw_body()), |(route, raw)| {
        let body = raw.render(&harness.valid_body_text(&route));
        let reply = harness.exchange(&route, build(route.request(&route.path()), body.clone())?)?;
        expect_for_body(&route, &body, &reply)
    });
    harness.assert_statuses_seen(&[200, 400]);
}

/// (c) Any query string, and any path segment for the ids (invalid UTF-8 included).
#[test]
fn any_query_string_or_path_id_gets_an_envelope() {
    let harness = Harness::start();
    harness.reset_statuses();
    query_property(&harness, CASES);
    harness.assert_statuses_seen(&[200, 404, 422]);
}

/// (c) on PostgreSQL, where the deliveries, stats and dashboard routes read the delivery log:
/// hostile windows, statuses and cursors reach SQL.
#[test]
fn any_query_string_or_path_id_gets_an_envelope_on_postgres() {
    let setup = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(db) = setup.block_on(pg::database()) else {
        return;
    };
    let harness = Harness::start_with(&[("DATABASE_URL", db.url())]);
    harness.reset_statuses();
    query_property(&harness, CASES / 4);
    harness.assert_statuses_seen(&[200, 404]);
    drop(harness);
    setup.block_on(db.drop());
}

fn query_property(harness: &Harness, cases: u32) {
    let segment = || option::weighted(0.5, strategies::path_segment());
    let strategy = (select(harness.routes.clone()), segment(), segment(), strategies::query());
    run_cases(cases, strategy, |(route, id, event_id, query)| {
        let uri = format!("{}?{query}", route.path_with(id.as_deref(), event_id.as_deref()));
        let body = if route.takes_body() { harness.valid_body_text(&route) } else { String::new() };
        let reply = harness.exchange(&route, build(route.request(&uri), body)?)?;
        let replaced = (id.is_some() && route.template.contains("{id}"))
            || (event_id.is_some() && route.template.contains("{event_id}"));
        if replaced {
            prop_assert!(matches!(reply.status.as_u16(), 404 | 422), "a made-up id, yet {}", reply.summary());
        }
        Ok(())
    });
}

/// The valid value of a header, for hostile bytes to go around.
fn valid_header(name: &str, route: &Route) -> &'static str {
    match name {
        "x-api-key" => ACME_KEY,
        "x-service-token" => SERVICE_TOKEN,
        "idempotency-key" => "hostile-tests-key-1",
        "x-request-id" => "hostile-request-1",
        "origin" => CORS_ORIGIN,
        _ if route.takes_body() => "application/json",
        _ => "text/plain",
    }
}

/// (d) Any values (tab, visible ASCII, obs-text) for the headers the relay reads, repeated
/// or not, with or without the route's own credential first, sometimes with another method.
#[test]
fn any_header_values_get_an_envelope_and_a_sane_request_id() {
    let harness = Harness::start();
    harness.reset_statuses();
    let methods =
        vec![Method::OPTIONS, Method::HEAD, Method::PATCH, Method::TRACE, Method::from_bytes(b"FOO").unwrap()];
    let headers = vec((0..HEADER_NAMES.len(), strategies::header_bytes()), 0..6);
    let other_method = option::weighted(0.2, select(methods));
    run(
        (select(harness.routes.clone()), headers, any::<bool>(), other_method),
        |(route, headers, credential_first, method)| {
            let mut builder =
                Request::builder().method(method.clone().unwrap_or(route.method.clone())).uri(route.path());
            let mut sent: Vec<(&str, Vec<u8>)> = Vec::new();
            if credential_first && let Some((name, value)) = route.caller.credential() {
                sent.push((name, value.as_bytes().to_vec()));
            }
            for (i, bytes) in &headers {
                let name = HEADER_NAMES[*i];
                let value = match bytes {
                    HeaderBytes::Bytes(b) => b.clone(),
                    HeaderBytes::AroundValid { before, after } => {
                        [before, valid_header(name, &route).as_bytes(), after].concat()
                    }
                };
                sent.push((name, value));
            }
            for (name, value) in &sent {
                let value = HeaderValue::from_bytes(value).map_err(|e| TestCaseError::reject(e.to_string()))?;
                builder = builder.header(*name, value);
            }
            let body = if route.takes_body() { harness.valid_body_text(&route) } else { String::new() };
            let reply = harness.exchange(&route, build(builder, body)?)?;
            if method.is_none()
                && let Some((name, valid)) = route.caller.credential()
            {
                let first = sent.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_slice());
                let status = reply.status.as_u16();
                if first == Some(valid.as_bytes()) {
                    prop_assert!(!matches!(status, 401 | 403), "a valid credential, yet {}", reply.summary());
                } else {
                    prop_assert!(matches!(status, 401 | 403), "no valid credential, yet {}", reply.summary());
                }
            }
            Ok(())
        },
    );
    harness.assert_statuses_seen(&[200, 401, 403, 405]);
}

/// (e) Any webhook URL on POST /api/webhooks and PUT /api/webhooks/{id}: refused with a
/// `url` detail, or stored encoded.
#[test]
fn any_webhook_url_is_refused_or_stored_encoded() {
    let harness = Harness::start();
    harness.reset_statuses();
    let create = harness.route(Method::POST, "/api/webhooks").clone();
    let update = harness.route(Method::PUT, "/api/webhooks/{id}").clone();
    let target = harness.target.clone();
    run((strategies::webhook_url(harness.receiver_host()), any::<bool>()), |(url, put)| {
        let (route, path, body) = if put {
            (&update, format!("/api/webhooks/{target}"), json!({"url": url}))
        } else {
            (
                &create,
                "/api/webhooks".to_owned(),
                json!({"name": "url", "url": url, "eventTypes": ["assessment.graded"]}),
            )
        };
        let reply = harness.exchange(route, build(route.request(&path), body.to_string())?)?;
        let body = reply.json();
        match reply.status.as_u16() {
            200 | 201 => check_stored_url(body["data"]["url"].as_str().unwrap_or_default())?,
            422 => {
                let details = body["error"]["details"].as_array().cloned().unwrap_or_default();
                prop_assert!(details.iter().all(|d| d["field"] == "url"), "refused for more than its URL: {}", body);
            }
            _ => prop_assert!(false, "neither stored nor refused: {}", reply.summary()),
        }
        Ok(())
    });
    harness.assert_statuses_seen(&[200, 201, 422]);
}
