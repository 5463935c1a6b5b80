//! Explicit JSON cases: nesting 200 and 10,000 deep and the deepest payload accepted,
//! duplicate keys, numbers JavaScript cannot hold, NUL and lone surrogates.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::json;

use super::harness::{Harness, Reply, assert_error, build};
use super::strategies::Json;

fn event_body(payload: &str) -> String {
    format!(r#"{{"eventType":"job.created","eventName":"hostile","payload":{payload}}}"#)
}

fn post_event(harness: &Harness, body: impl Into<Body>) -> Reply {
    let route = harness.route(Method::POST, "/api/events");
    harness.exchange(route, build(route.request("/api/events"), body).unwrap()).unwrap_or_else(|e| panic!("{e}"))
}

/// serde_json reads 127 levels at most: deeper bodies are not JSON to the relay (400), in a
/// payload or anywhere else, and nothing recurses 10,000 deep.
#[test]
fn payloads_nested_200_and_10000_deep_are_invalid_json() {
    let harness = Harness::start();
    for levels in [200, 10_000] {
        for objects in [false, true] {
            let deep = Json::Deep { levels, objects, inner: Box::new(Json::Null) }.render();
            let reply = post_event(&harness, event_body(&format!(r#"{{"deep":{deep}}}"#)));
            assert_error(&reply, 400, "invalid_json");
            assert!(
                reply.json()["error"]["message"].as_str().unwrap().contains("recursion limit"),
                "{}",
                reply.summary()
            );
            let route = harness.route(Method::POST, "/api/webhooks");
            let body = format!(r#"{{"name":{deep},"url":"{}","eventTypes":["job.created"]}}"#, harness.receiver_url());
            let reply = harness.exchange(route, build(route.request("/api/webhooks"), body).unwrap()).unwrap();
            assert_error(&reply, 400, "invalid_json");
        }
    }
}

/// A payload nests at most 64 levels (the payload object being the first), so that every
/// answer holding it (the 202, the event, the list) parses with serde_json's default limit of
/// 127; deeper is 422.
#[test]
fn the_deepest_accepted_payload_comes_back_parseable() {
    let harness = Harness::start();
    let mut deepest = None;
    for levels in 0..130 {
        let deep = Json::Deep { levels, objects: true, inner: Box::new(Json::Null) }.render();
        let reply = post_event(&harness, event_body(&format!(r#"{{"deep":{deep}}}"#)));
        if reply.status != StatusCode::ACCEPTED {
            assert_error(&reply, 422, "validation_failed");
            assert_eq!(reply.json()["error"]["details"][0]["field"], "payload");
            break;
        }
        deepest = Some((levels, reply.json()["data"]["eventId"].as_str().unwrap().to_owned()));
    }
    let (levels, id) = deepest.expect("a shallow payload was refused");
    assert_eq!(levels + 1, 64, "the payload object and {levels} levels in it");
    let get = harness.route(Method::GET, "/api/events/{id}");
    harness.exchange(get, build(get.request(&format!("/api/events/{id}")), "").unwrap()).unwrap();
    let list = harness.route(Method::GET, "/api/events");
    harness.exchange(list, build(list.request("/api/events?limit=500"), "").unwrap()).unwrap();
}

/// Duplicate keys: the last one wins, as `JSON.parse` reads them, everywhere: at the top
/// level, inside the payload (where the key keeps its first place), in a webhook, and when
/// comparing bodies under an Idempotency-Key.
#[test]
fn duplicate_keys_keep_the_last_value() {
    let harness = Harness::start();
    let reply = post_event(
        &harness,
        r#"{"eventType":"nope.nope","eventType":"job.created","eventName":"dup","payload":{"k":1,"k":{"z":2}}}"#,
    );
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.summary());
    assert_eq!(reply.json()["data"]["eventType"], "job.created");
    assert_eq!(reply.json()["data"]["payload"], json!({"k": {"z": 2}}));

    let reply =
        post_event(&harness, r#"{"eventType":"job.created","eventType":"nope.nope","eventName":"dup","payload":{}}"#);
    assert_error(&reply, 422, "validation_failed");
    assert_eq!(reply.json()["error"]["details"][0]["field"], "eventType");

    let route = harness.route(Method::POST, "/api/events");
    let keyed = |body: &str| {
        let request = route.request("/api/events").header("idempotency-key", "hostile-dup-1");
        harness.exchange(route, build(request, body.to_owned()).unwrap()).unwrap()
    };
    let first = keyed(r#"{"eventType":"job.created","eventName":"a","eventName":"b","payload":{"k":1,"k":2}}"#);
    let again = keyed(r#"{"payload":{"k":2},"eventName":"b","eventType":"job.created"}"#);
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.summary());
    assert_eq!(again.headers["idempotent-replayed"], "true", "the same meaning is a replay");
    assert_eq!(again.json()["data"], first.json()["data"]);
    let other = keyed(r#"{"eventType":"job.created","eventName":"b","eventName":"a","payload":{"k":2}}"#);
    assert_error(&other, 409, "idempotency_key_reused");

    let create = harness.route(Method::POST, "/api/webhooks");
    let body = format!(
        r#"{{"name":"first","name":"last","url":"http://[::1]:1/","url":"{}","eventTypes":["job.created"],"eventTypes":["assessment.graded"]}}"#,
        harness.receiver_url()
    );
    let reply = harness.exchange(create, build(create.request("/api/webhooks"), body).unwrap()).unwrap();
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.summary());
    let data = &reply.json()["data"];
    assert_eq!(
        (&data["name"], &data["url"], &data["eventTypes"]),
        (&json!("last"), &json!(harness.receiver_url()), &json!(["assessment.graded"]))
    );
}

/// Numbers as JavaScript holds them (issue 15): a number is answered and delivered as
/// `Number#toString` writes it, and one JavaScript would change (an integer beyond ±2^53, more
/// digits than a double holds, out of range) is `422` naming it.
#[test]
fn numbers_are_written_as_javascript_writes_them_or_refused() {
    let harness = Harness::start();
    let cases: &[(&str, Option<&str>)] = &[
        ("1e400", None),
        ("-1e400", None),
        ("1.8e308", None),
        ("18446744073709551615", None),
        ("18446744073709551616", None),
        ("-9223372036854775808", None),
        ("-9223372036854775809", None),
        ("123456789012345678901234567890", None),
        ("9007199254740993", None),
        ("4.9e-324", None),
        ("1e-400", None),
        ("0.1000000000000000055511151231257827", None),
        ("9007199254740992", Some("9007199254740992")),
        ("-9007199254740992", Some("-9007199254740992")),
        ("1.7976931348623157e308", Some("1.7976931348623157e+308")),
        ("5e-324", Some("5e-324")),
        ("-0", Some("0")),
        ("-0.0", Some("0")),
        ("1.0", Some("1")),
        ("1E2", Some("100")),
        ("1e21", Some("1e+21")),
        ("1e20", Some("100000000000000000000")),
        ("0.000001", Some("0.000001")),
        ("1e-7", Some("1e-7")),
        ("0.30000000000000004", Some("0.30000000000000004")),
    ];
    for (literal, expected) in cases {
        let reply = post_event(&harness, event_body(&format!(r#"{{"n":{literal}}}"#)));
        match expected {
            None => {
                assert_error(&reply, 422, "validation_failed");
                assert_eq!(reply.json()["error"]["details"][0]["field"], "payload.n", "{literal}");
            }
            Some(written) => {
                assert_eq!(reply.status, StatusCode::ACCEPTED, "{literal}: {}", reply.summary());
                let answer = String::from_utf8_lossy(&reply.body).into_owned();
                assert!(answer.contains(&format!(r#""payload":{{"n":{written}}}"#)), "{literal}: {answer}");
            }
        }
    }
}

/// A number beyond a double's range where a field takes something else is a wrong value of
/// valid JSON, 422, as in a payload (serde_json reports it as a syntax error when the field's
/// type makes it read the number; a property test found the 400 it gave).
#[test]
fn a_huge_number_in_a_typed_field_is_a_wrong_value() {
    let harness = Harness::start();
    let route = harness.route(Method::POST, "/api/webhooks");
    for field in [r#""eventTypes":[1e400]"#, r#""isActive":-1e999"#, r#""name":1e400"#] {
        let body = format!(r#"{{"url":"{}",{field}}}"#, harness.receiver_url());
        let reply = harness.exchange(route, build(route.request("/api/webhooks"), body).unwrap()).unwrap();
        assert_error(&reply, 422, "validation_failed");
    }
    let reply = post_event(&harness, r#"{"eventType":"job.created","eventName":1e400,"payload":{}}"#);
    assert_error(&reply, 422, "validation_failed");
}

/// A finding of issue 8: serde_json's default float parsing is not correctly rounded, so a
/// float was stored and delivered a few ULP off what was sent (`1.1636155031338735e75`, the
/// shortest form of an f64, became `...737e75`). Floats now come back as JavaScript writes the
/// very double they name (`1.1636155031338735e+75`).
#[test]
fn floats_come_back_exactly_as_sent() {
    let harness = Harness::start();
    for (literal, written) in [
        ("1.1636155031338735e75", "1.1636155031338735e+75"),
        ("1.1636155031338733e75", "1.1636155031338733e+75"),
        ("1163615503133873300000000000000000000000000000000000000000000000000000000e3", "1.1636155031338733e+75"),
        ("0.30000000000000004", "0.30000000000000004"),
        ("2.2250738585072014e-308", "2.2250738585072014e-308"),
    ] {
        let reply = post_event(&harness, event_body(&format!(r#"{{"n":{literal}}}"#)));
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.summary());
        let answer = String::from_utf8_lossy(&reply.body).into_owned();
        assert!(answer.contains(&format!(r#""n":{written}"#)), "{literal} is {written}, answered {answer}");
    }
}

/// NUL is kept (escaped), lone surrogates and raw control characters are not JSON.
#[test]
fn nul_and_lone_surrogates_in_strings() {
    let harness = Harness::start();
    let body = r#"{"eventType":"job.created","eventName":"a\u0000b","source":"s\u0000","payload":{"k\u0000":"\u0000","pair":"\ud83d\ude00"}}"#;
    let reply = post_event(&harness, body);
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.summary());
    let data = reply.json()["data"].clone();
    assert_eq!((&data["eventName"], &data["source"]), (&json!("a\u{0}b"), &json!("s\u{0}")));
    assert_eq!(data["payload"], json!({"k\u{0}": "\u{0}", "pair": "😀"}));

    for bad in [r#""\ud800""#, r#""\udc00""#, r#""\ud800\u0041""#, "\"a\u{1}b\"", "\"a\nb\"", r#""\x""#] {
        let reply = post_event(&harness, event_body(&format!(r#"{{"s":{bad}}}"#)));
        assert_error(&reply, 400, "invalid_json");
        let reply = post_event(&harness, format!(r#"{{"eventType":"job.created","eventName":{bad},"payload":{{}}}}"#));
        assert_error(&reply, 400, "invalid_json");
    }
}
