//! The layers of docs/architecture.md, checked on the real dependency graph (`cargo metadata`):
//! which workspace crate may depend on which, the crates the core must never link, and the
//! crates relay-ingest must never link. Cargo already refuses cycles; this refuses a new edge
//! that would let a layer reach past the one below it.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Each workspace crate and the workspace crates it may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("relay-core", &[]),
    ("relay-memory", &["relay-core"]),
    ("relay-aws", &["relay-core"]),
    ("relay-postgres", &["relay-core"]),
    ("relay-redis", &["relay-core"]),
    ("relay-sender", &["relay-core"]),
    ("relay-http-api", &["relay-core"]),
    ("relay-dashboard", &["relay-core", "relay-http-api"]),
    ("relay-lambda-http", &["relay-http-api"]),
    ("relay-backends", &["relay-core", "relay-memory", "relay-aws", "relay-postgres", "relay-redis"]),
    ("relay-ingest", &["relay-core", "relay-memory", "relay-aws", "relay-http-api", "relay-lambda-http"]),
    (
        "relay-api",
        &[
            "relay-core",
            "relay-aws",
            "relay-postgres",
            "relay-redis",
            "relay-sender",
            "relay-backends",
            "relay-http-api",
            "relay-dashboard",
            "relay-lambda-http",
        ],
    ),
    ("relay-delivery", &["relay-core", "relay-aws", "relay-postgres", "relay-redis", "relay-sender", "relay-backends"]),
    ("relay-maintenance", &["relay-core", "relay-aws", "relay-postgres", "relay-redis", "relay-backends"]),
    (
        "relay-local",
        &[
            "relay-core",
            "relay-aws",
            "relay-postgres",
            "relay-redis",
            "relay-sender",
            "relay-backends",
            "relay-http-api",
            "relay-dashboard",
        ],
    ),
    ("relay-tests", &[]),
    ("relay-bench", &[]),
];

/// What each crate must never link, directly or through another crate.
const NEVER: &[(&str, &[&str])] = &[
    // The core: no AWS SDK, database, cache, web framework, HTTP client, HTML templating or
    // Lambda runtime.
    (
        "relay-core",
        &[
            "aws-config",
            "aws-sdk-dynamodb",
            "aws-sdk-sqs",
            "aws-sdk-secretsmanager",
            "aws-smithy-runtime",
            "sqlx",
            "redis",
            "axum",
            "hyper",
            "reqwest",
            "maud",
            "lambda_http",
            "lambda_runtime",
            "aws_lambda_events",
        ],
    ),
    // The events API: DynamoDB and SQS only; no PostgreSQL, Redis, dashboard or HTTP client.
    ("relay-ingest", &["sqlx", "redis", "maud", "reqwest", "relay-postgres", "relay-redis", "relay-sender"]),
    // The queue's consumer serves no HTTP.
    ("relay-delivery", &["axum", "maud", "lambda_http", "relay-http-api", "relay-dashboard"]),
    // Maintenance serves no HTTP and makes no delivery.
    ("relay-maintenance", &["axum", "maud", "reqwest", "lambda_http", "relay-http-api", "relay-sender"]),
    // relay-local runs outside Lambda.
    ("relay-local", &["lambda_http", "lambda_runtime", "aws_lambda_events", "relay-lambda-http"]),
];

struct Graph {
    /// Package id → name.
    names: BTreeMap<String, String>,
    /// Package id → the ids of its normal (not dev, not build) dependencies.
    normal: BTreeMap<String, Vec<String>>,
    members: Vec<String>,
}

fn graph() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let names = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().unwrap_or_default().to_owned(), p["name"].as_str().unwrap_or_default().to_owned()))
        .collect();
    let normal = metadata["resolve"]["nodes"]
        .as_array()
        .expect("the resolved graph")
        .iter()
        .map(|node| {
            let deps = node["deps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|dep| dep["dep_kinds"].as_array().into_iter().flatten().any(|k| k["kind"].is_null()))
                .map(|dep| dep["pkg"].as_str().unwrap_or_default().to_owned())
                .collect();
            (node["id"].as_str().unwrap_or_default().to_owned(), deps)
        })
        .collect();
    let members = metadata["workspace_members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m.as_str())
        .map(str::to_owned)
        .collect();
    Graph { names, normal, members }
}

impl Graph {
    fn id(&self, name: &str) -> String {
        self.members.iter().find(|id| self.names[*id] == name).unwrap_or_else(|| panic!("no crate {name}")).clone()
    }

    /// The names of the crates `name` links, itself excluded.
    fn closure(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![self.id(name)];
        while let Some(id) = stack.pop() {
            for dep in self.normal.get(&id).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
        seen.iter().map(|id| self.names[id].clone()).collect()
    }
}

#[test]
fn each_crate_depends_only_on_the_layers_below_it() {
    let graph = graph();
    let members: BTreeSet<&str> = graph.members.iter().map(|id| graph.names[id].as_str()).collect();
    let listed: BTreeSet<&str> = ALLOWED.iter().map(|(name, _)| *name).collect();
    assert_eq!(members, listed, "every workspace crate has its row here and in docs/architecture.md");
    for (name, allowed) in ALLOWED {
        let id = graph.id(name);
        for dep in graph.normal.get(&id).into_iter().flatten() {
            let dep = &graph.names[dep];
            if members.contains(dep.as_str()) {
                assert!(allowed.contains(&dep.as_str()), "{name} must not depend on {dep}");
            }
        }
    }
}

#[test]
fn no_crate_links_what_its_layer_must_not() {
    let graph = graph();
    for (name, never) in NEVER {
        let linked = graph.closure(name);
        for crate_name in *never {
            assert!(!linked.contains(*crate_name), "{name} links {crate_name}");
        }
    }
}
