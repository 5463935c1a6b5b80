//! `/openapi.json` documents every route the code serves: each `.route(...)` in the API's
//! source, with each of its methods, must be in the document.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::TestApp;

const METHODS: [&str; 4] = ["get", "post", "put", "delete"];

/// (path, method) for every `.route("path", method(handler)...)` in crates/http-api/src.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/http-api/src");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for call in source.split(".route(\"").skip(1) {
            let (path, rest) = call.split_once('"').unwrap();
            // The method router runs to the end of this `.route(` call.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let methods = &rest[..end];
            for method in METHODS {
                if methods.contains(&format!(" {method}("))
                    || methods.contains(&format!(".{method}("))
                    || methods.contains(&format!("({method}("))
                {
                    routes.insert((path.to_owned(), method.to_owned()));
                }
            }
        }
    }
    routes
}

#[tokio::test]
async fn every_route_is_in_the_document() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();

    let routes = routes_in_source();
    assert!(routes.len() >= 20, "found only {routes:?}");
    let missing: Vec<_> =
        routes.iter().filter(|(path, method)| paths.get(path).and_then(|p| p.get(method)).is_none()).collect();
    assert!(missing.is_empty(), "routes missing from /openapi.json: {missing:?}");

    // And the document promises nothing the code does not serve.
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            assert!(routes.contains(&(path.clone(), method.clone())), "documented but not routed: {method} {path}");
        }
    }
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["serviceToken"]["name"], "X-Service-Token");
    assert_eq!(schemes["apiKey"]["name"], "X-Api-Key");
    assert!(document["components"]["schemas"]["WebhookInput"].is_object());
    app.stop().await;
}
