//! `template.yaml` declares exactly the tables and queues the code creates (schema.rs,
//! `QueueSpec::deployed`) and queries.

use relay_aws::dynamodb::{TABLES, TTL_ATTRIBUTE, TableDef};
use relay_aws::sqs::{ORDERED_MAX_RECEIVE_COUNT, QueueSpec};
use serde_norway::Value;

fn template() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    serde_norway::from_str(&text).expect("template.yaml is YAML")
}

fn resource<'a>(template: &'a Value, logical_id: &str) -> &'a Value {
    let resource = &template["Resources"][logical_id];
    assert!(!resource.is_null(), "template.yaml has no {logical_id}");
    &resource["Properties"]
}

fn keys(schema: &Value) -> Vec<(String, String)> {
    schema
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| (k["AttributeName"].as_str().unwrap().to_owned(), k["KeyType"].as_str().unwrap().to_owned()))
        .collect()
}

fn expected_keys(hash: &str, range: Option<&str>) -> Vec<(String, String)> {
    let mut keys = vec![(hash.to_owned(), "HASH".to_owned())];
    keys.extend(range.map(|r| (r.to_owned(), "RANGE".to_owned())));
    keys
}

fn check_table(template: &Value, def: &TableDef) {
    let table = resource(template, def.logical_id);
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST", "{}", def.logical_id);
    assert_eq!(table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true, "{}", def.logical_id);
    assert_eq!(keys(&table["KeySchema"]), expected_keys(def.hash, def.range), "{} keys", def.logical_id);

    let mut attributes: Vec<(String, String)> = table["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| (a["AttributeName"].as_str().unwrap().to_owned(), a["AttributeType"].as_str().unwrap().to_owned()))
        .collect();
    attributes.sort();
    let mut expected: Vec<(String, String)> =
        def.key_attributes().iter().map(|a| ((*a).to_owned(), "S".to_owned())).collect();
    expected.sort();
    assert_eq!(attributes, expected, "{} attribute definitions", def.logical_id);

    let declared = table["GlobalSecondaryIndexes"].as_sequence().cloned().unwrap_or_default();
    assert_eq!(declared.len(), def.indexes.len(), "{} index count", def.logical_id);
    for index in def.indexes {
        let found = declared
            .iter()
            .find(|i| i["IndexName"] == index.name)
            .unwrap_or_else(|| panic!("{} lacks index {}", def.logical_id, index.name));
        assert_eq!(keys(&found["KeySchema"]), expected_keys(index.hash, Some(index.range)), "{}", index.name);
        assert_eq!(found["Projection"]["ProjectionType"], index.projection, "{}", index.name);
    }

    let ttl = &table["TimeToLiveSpecification"];
    if def.ttl {
        assert_eq!(ttl["AttributeName"], TTL_ATTRIBUTE, "{}", def.logical_id);
        assert_eq!(ttl["Enabled"], true, "{}", def.logical_id);
    } else {
        assert!(ttl.is_null(), "{} has an unexpected TTL", def.logical_id);
    }
}

#[test]
fn tables_match_the_code() {
    let template = template();
    for def in &TABLES {
        check_table(&template, def);
    }
}

#[test]
fn queues_match_the_bootstrap() {
    let template = template();
    let spec = QueueSpec::deployed("x");
    // Both lanes: the dispatch lane and the delivery lane, with the same settings and DLQ.
    for lane in ["RelayQueue", "DeliveryQueue"] {
        let queue = resource(&template, lane);
        assert_eq!(queue["VisibilityTimeout"].as_u64(), Some(spec.visibility_timeout.as_secs()), "{lane}");
        assert_eq!(queue["MessageRetentionPeriod"].as_u64(), Some(spec.retention.as_secs()), "{lane}");
        assert_eq!(
            queue["RedrivePolicy"]["maxReceiveCount"].as_u64(),
            Some(u64::from(spec.max_receive_count)),
            "{lane}"
        );
        let target = &queue["RedrivePolicy"]["deadLetterTargetArn"];
        let Value::Tagged(tagged) = target else { panic!("{lane}: deadLetterTargetArn is not !GetAtt: {target:?}") };
        assert_eq!(tagged.tag, "!GetAtt");
        assert_eq!(tagged.value, "RelayDeadLetterQueue.Arn");
    }
    let dlq = resource(&template, "RelayDeadLetterQueue");
    assert_eq!(
        dlq["RedriveAllowPolicy"]["redrivePermission"], "byQueue",
        "only the relay's queues may redrive into the DLQ"
    );
    let sources = dlq["RedriveAllowPolicy"]["sourceQueueArns"].as_sequence().expect("sourceQueueArns");
    assert_eq!(sources.len(), 2, "both lanes may redrive into the DLQ: {sources:?}");

    // The default schedule (WEBHOOK_MAX_RETRIES=3: 4 attempts) leaves room before the DLQ.
    assert!(spec.max_receive_count > relay_core::backoff::RetryPolicy::default().max_retries + 1);
}

fn function<'a>(template: &'a Value, logical_id: &str) -> &'a Value {
    let function = &template["Resources"][logical_id];
    assert_eq!(function["Type"], "AWS::Serverless::Function", "{logical_id}");
    function
}

fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("{value:?} is not a number"))
}

#[test]
fn the_queue_outlives_the_delivery_function() {
    let template = template();
    let delivery = function(&template, "DeliveryFunction");
    let timeout = number(&delivery["Properties"]["Timeout"]);
    let visibility = number(&resource(&template, "RelayQueue")["VisibilityTimeout"]);
    assert!(visibility >= 6 * timeout, "visibility {visibility} s < 6 x the delivery timeout {timeout} s");

    // relay-delivery consumes both lanes, one event source mapping each.
    for (event, lane) in [("Queue", "RelayQueue"), ("DeliveryQueue", "DeliveryQueue")] {
        let mapping = &delivery["Properties"]["Events"][event]["Properties"];
        let Value::Tagged(queue) = &mapping["Queue"] else { panic!("{event}: Queue is not !GetAtt") };
        assert_eq!(queue.value, format!("{lane}.Arn"));
        assert_eq!(number(&mapping["BatchSize"]), 10);
        assert_eq!(mapping["FunctionResponseTypes"][0], "ReportBatchItemFailures");
        assert!(!mapping["ScalingConfig"]["MaximumConcurrency"].is_null());
    }
    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert!(!globals["DELIVERY_QUEUE_URL"].is_null(), "every function knows the delivery lane");
}

/// `!Tag value`, as a string.
fn tagged<'a>(value: &'a Value, tag: &str) -> &'a str {
    match value {
        Value::Tagged(tagged) if tagged.tag == tag => tagged.value.as_str().unwrap_or_default(),
        _ => panic!("{value:?} is not {tag}"),
    }
}

/// The ordered lane: a FIFO queue with a FIFO dead-letter queue of its own (SQS requires it),
/// as `sqs::create_queues` makes them, consumed by relay-delivery, known to every function.
#[test]
fn the_ordered_lane_is_fifo_with_a_fifo_dead_letter_queue() {
    let template = template();
    let spec = QueueSpec::deployed("x");
    let queue = resource(&template, "OrderedQueue");
    assert_eq!(queue["FifoQueue"], true);
    assert_eq!(queue["ContentBasedDeduplication"], false, "the relay sends a deduplication id per message");
    assert_eq!(queue["VisibilityTimeout"].as_u64(), Some(spec.visibility_timeout.as_secs()));
    assert_eq!(queue["MessageRetentionPeriod"].as_u64(), Some(spec.retention.as_secs()));
    assert_eq!(queue["RedrivePolicy"]["maxReceiveCount"].as_u64(), Some(u64::from(ORDERED_MAX_RECEIVE_COUNT)));
    assert_eq!(tagged(&queue["RedrivePolicy"]["deadLetterTargetArn"], "!GetAtt"), "OrderedDeadLetterQueue.Arn");
    // Named as the bootstrap names them: the relay queue's name, then -ordered.fifo.
    let relay_queue = tagged(&resource(&template, "RelayQueue")["QueueName"], "!Sub");
    assert_eq!(tagged(&queue["QueueName"], "!Sub"), format!("{relay_queue}-ordered.fifo"));

    let dlq = resource(&template, "OrderedDeadLetterQueue");
    assert_eq!(dlq["FifoQueue"], true, "a FIFO queue's dead-letter queue is FIFO");
    assert_eq!(tagged(&dlq["QueueName"], "!Sub"), format!("{relay_queue}-ordered-dlq.fifo"));
    assert_eq!(dlq["RedriveAllowPolicy"]["redrivePermission"], "byQueue");
    let sources = dlq["RedriveAllowPolicy"]["sourceQueueArns"].as_sequence().expect("sourceQueueArns");
    assert_eq!(sources.len(), 1);
    assert!(tagged(&sources[0], "!Sub").ends_with(&format!(":{relay_queue}-ordered.fifo")), "{sources:?}");

    // relay-delivery consumes it; Lambda allows at most 10 a batch and no batching window on FIFO.
    let delivery = &function(&template, "DeliveryFunction")["Properties"];
    let mapping = &delivery["Events"]["OrderedQueue"]["Properties"];
    assert_eq!(delivery["Events"]["OrderedQueue"]["Type"], "SQS");
    assert_eq!(tagged(&mapping["Queue"], "!GetAtt"), "OrderedQueue.Arn");
    assert_eq!(number(&mapping["BatchSize"]), 10);
    assert!(mapping["MaximumBatchingWindowInSeconds"].is_null(), "no batching window on a FIFO source");
    assert_eq!(mapping["FunctionResponseTypes"][0], "ReportBatchItemFailures");
    assert!(!mapping["ScalingConfig"]["MaximumConcurrency"].is_null());

    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(tagged(&globals["ORDERED_QUEUE_URL"], "!Ref"), "OrderedQueue");
    assert_eq!(tagged(&globals["ORDERED_DLQ_URL"], "!Ref"), "OrderedDeadLetterQueue");

    // Who may do what: relay-api and relay-delivery send deliver messages to it, relay-delivery
    // polls it, relay-maintenance drains its dead-letter queue.
    let allowed = |function_id: &str, policy: &str, queue: &str| {
        function(&template, function_id)["Properties"]["Policies"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| matches!(&p[policy]["QueueName"], Value::Tagged(t) if t.value == format!("{queue}.QueueName")))
    };
    for (function_id, policy, queue) in [
        ("ApiFunction", "SQSSendMessagePolicy", "OrderedQueue"),
        ("DeliveryFunction", "SQSSendMessagePolicy", "OrderedQueue"),
        ("DeliveryFunction", "SQSPollerPolicy", "OrderedQueue"),
        ("MaintenanceFunction", "SQSPollerPolicy", "OrderedDeadLetterQueue"),
    ] {
        assert!(allowed(function_id, policy, queue), "{function_id} lacks {policy} on {queue}");
    }

    let alarm = resource(&template, "OrderedDeadLetterAlarm");
    assert_eq!(tagged(&alarm["Dimensions"][0]["Value"], "!GetAtt"), "OrderedDeadLetterQueue.QueueName");
    assert!(!template["Outputs"]["OrderedQueueUrl"].is_null());
}

#[test]
fn every_function_builds_a_workspace_binary_on_arm64() {
    let template = template();
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions");
    let binaries: Vec<String> = std::fs::read_dir(workspace)
        .unwrap()
        .filter_map(|dir| std::fs::read_to_string(dir.unwrap().path().join("Cargo.toml")).ok())
        .filter_map(|manifest| {
            manifest.lines().find_map(|l| l.strip_prefix("name = \"").map(|n| n.trim_end_matches('"').to_owned()))
        })
        .collect();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Architectures"][0], "arm64");
    let mut seen = Vec::new();
    for (id, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        assert_eq!(resource["Metadata"]["BuildMethod"], "rust-cargolambda", "{id:?}");
        let binary = resource["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap().to_owned();
        assert!(binaries.contains(&binary), "{id:?} builds {binary}, not a workspace binary ({binaries:?})");
        seen.push(binary);
    }
    seen.sort();
    assert_eq!(seen, ["relay-api", "relay-delivery", "relay-ingest", "relay-maintenance"]);
    // relay-ingest needs only DynamoDB and SQS: no VPC, no cold-start network setup.
    assert!(function(&template, "IngestFunction")["Properties"]["VpcConfig"].is_null());
}

#[test]
fn the_dashboard_is_routed_to_the_api_function_with_its_session_secret() {
    let template = template();
    let api = &function(&template, "ApiFunction")["Properties"];
    let paths: Vec<&str> =
        api["Events"].as_mapping().unwrap().values().filter_map(|e| e["Properties"]["Path"].as_str()).collect();
    for path in ["/dashboard", "/dashboard/{proxy+}"] {
        assert!(paths.contains(&path), "{path} is not routed to relay-api: {paths:?}");
    }
    let is_ref =
        |value: &Value| matches!(value, Value::Tagged(t) if t.tag == "!Ref" && t.value == "DashboardSessionSecret");
    assert!(
        is_ref(&api["Environment"]["Variables"]["DASHBOARD_SECRET"]),
        "DASHBOARD_SECRET is not the dashboard secret"
    );
    let secret = &resource(&template, "DashboardSessionSecret")["GenerateSecretString"];
    assert_eq!(secret["GenerateStringKey"], "DASHBOARD_SESSION_SECRET");
    assert!(number(&secret["PasswordLength"]) >= 32, "the relay refuses a session secret under 32 characters");
    let readable = api["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|p| is_ref(&p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]));
    assert!(readable, "relay-api cannot read the dashboard secret");
}

/// The functions that open webhook secrets get the generated encryption key, and may read it;
/// relay-ingest, which never reads webhooks, does not. `/api/metrics` and `/api/tenants` go to
/// relay-api.
#[test]
fn the_functions_that_open_webhook_secrets_get_the_encryption_key() {
    let template = template();
    let is_ref =
        |value: &Value| matches!(value, Value::Tagged(t) if t.tag == "!Ref" && t.value == "SecretsEncryptionKey");
    for (id, gets) in [("ApiFunction", true), ("DeliveryFunction", true), ("IngestFunction", false)] {
        let properties = &function(&template, id)["Properties"];
        assert_eq!(
            is_ref(&properties["Environment"]["Variables"]["ENCRYPTION_SECRET"]),
            gets,
            "{id}: ENCRYPTION_SECRET"
        );
        let readable = properties["Policies"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| is_ref(&p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]));
        assert_eq!(readable, gets, "{id}: may read the key");
    }
    let secret = &resource(&template, "SecretsEncryptionKey")["GenerateSecretString"];
    assert_eq!(secret["GenerateStringKey"], "SECRETS_ENCRYPTION_KEYS");
    assert_eq!(secret["ExcludePunctuation"], true, "bare material: no comma or colon to split on");
    assert!(number(&secret["PasswordLength"]) >= 32, "the relay refuses key material under 32 characters");
    let api = &function(&template, "ApiFunction")["Properties"];
    let paths: Vec<&str> =
        api["Events"].as_mapping().unwrap().values().filter_map(|e| e["Properties"]["Path"].as_str()).collect();
    assert!(paths.contains(&"/api/metrics"), "{paths:?}");
    // The tenants API (service tokens) is relay-api's too.
    assert!(paths.contains(&"/api/tenants") && paths.contains(&"/api/tenants/{proxy+}"), "{paths:?}");
}
