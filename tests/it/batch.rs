//! The delivery batch handler driven with Lambda's SQS event shape, as the event source
//! mapping calls it: only the failed message ids are reported.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use relay_core::domain::EventInput;
use relay_core::ports::ReceivedMessage;
use relay_core::settings::Vars;
use relay_local::Config;
use relay_local::{Backends, Relay};
use serde_json::{Value, json};

use crate::helpers::{Receiver, Reply};

const FIXTURE: &str = include_str!("fixtures/sqs_event.json");

/// The fixture's record, with this message's id, receipt handle, body and receive count.
fn record(message: &ReceivedMessage) -> Value {
    let mut event: Value = serde_json::from_str(FIXTURE).unwrap();
    let mut record = event["Records"][0].take();
    record["messageId"] = json!(message.message_id);
    record["receiptHandle"] = json!(message.receipt_handle);
    record["body"] = json!(message.body);
    record["attributes"]["ApproximateReceiveCount"] = json!(message.receive_count.to_string());
    record
}

fn sqs_event(records: Vec<Value>) -> SqsEvent {
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn failed_ids(response: &SqsBatchResponse) -> Vec<String> {
    let mut ids: Vec<String> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    ids.sort();
    ids
}

fn relay(retry_delay_ms: &str) -> (Relay, Backends) {
    let config = Config::from_vars(&Vars::from_pairs(&[("WEBHOOK_RETRY_DELAY", retry_delay_ms)])).unwrap();
    let backends = Backends::in_memory(config.memory);
    (Relay::new(&config, backends.clone()).unwrap(), backends)
}

#[test]
fn the_fixture_is_a_lambda_sqs_event() {
    let event: SqsEvent = serde_json::from_str(FIXTURE).unwrap();
    assert_eq!(event.records[0].attributes["ApproximateReceiveCount"], "1");
    let mut response = SqsBatchResponse::default();
    response.add_failure("id-1");
    assert_eq!(serde_json::to_value(&response).unwrap(), json!({"batchItemFailures": [{"itemIdentifier": "id-1"}]}));
}

#[tokio::test]
async fn exactly_the_failed_messages_are_reported() {
    let (relay, backends) = relay("50");
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.always(Reply::status(500));
    let tenant = relay_core::domain::TenantId::parse("acme").unwrap();
    let mut hooks = Vec::new();
    for receiver in [&ok, &failing] {
        let input =
            serde_json::from_value(json!({"name": "h", "url": receiver.url(), "eventTypes": ["job.created"]})).unwrap();
        hooks.push(relay.admin.create(&tenant, input).await.unwrap());
    }
    let input: EventInput =
        serde_json::from_value(json!({"eventType": "job.created", "eventName": "Job", "payload": {"id": 1}})).unwrap();
    let event = relay.ingest.accept(input, None).await.unwrap().event;

    // Batch 1: the dispatch message and a poison message.
    let dispatch = backends.queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(dispatch.len(), 1);
    let mut poison = record(&dispatch[0]);
    poison["messageId"] = json!("poison-1");
    poison["body"] = json!("{\"type\":\"explode\"}");
    let response = relay_delivery::handle(&relay.handler, sqs_event(vec![record(&dispatch[0]), poison])).await;
    assert_eq!(failed_ids(&response), ["poison-1"]);
    backends.queue.delete(&dispatch[0].receipt_handle).await.unwrap();

    // Batch 2: one deliver message per webhook, on the delivery lane (the dispatch lane holds
    // dispatches only); only the failing one is reported.
    assert!(backends.queue.receive(10, Duration::ZERO).await.unwrap().is_empty(), "deliveries have their own lane");
    let delivers = backends.delivery_queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(delivers.len(), 2);
    let response = relay_delivery::handle(&relay.handler, sqs_event(delivers.iter().map(record).collect())).await;
    let failing_message = delivers.iter().find(|m| m.body.contains(&hooks[1].id.to_string())).unwrap();
    assert_eq!(failed_ids(&response), std::slice::from_ref(&failing_message.message_id));
    assert_eq!(ok.received().len(), 1);
    assert_eq!(failing.received().len(), 1);
    assert_eq!(ok.received()[0].header("webhook-id"), event.id.to_string());

    // The failed message's visibility was set to the backoff delay (50 ms +/-20%), far
    // shorter than the queue's 30 s timeout.
    let again = backends.delivery_queue.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, failing_message.message_id);
    assert_eq!(again[0].receive_count, 2);
}

#[tokio::test]
async fn a_delivery_not_yet_due_is_put_back_until_it_is() {
    let (relay, backends) = relay("5000");
    let failing = Receiver::start().await;
    failing.always(Reply::status(500));
    let tenant = relay_core::domain::TenantId::parse("acme").unwrap();
    let input =
        serde_json::from_value(json!({"name": "h", "url": failing.url(), "eventTypes": ["job.created"]})).unwrap();
    relay.admin.create(&tenant, input).await.unwrap();
    let input: EventInput =
        serde_json::from_value(json!({"eventType": "job.created", "eventName": "Job", "payload": {}})).unwrap();
    relay.ingest.accept(input, None).await.unwrap();
    let dispatch = backends.queue.receive(1, Duration::ZERO).await.unwrap();
    relay_delivery::handle(&relay.handler, sqs_event(vec![record(&dispatch[0])])).await;
    backends.queue.delete(&dispatch[0].receipt_handle).await.unwrap();
    let deliver = backends.delivery_queue.receive(1, Duration::ZERO).await.unwrap();
    relay_delivery::handle(&relay.handler, sqs_event(vec![record(&deliver[0])])).await;
    assert_eq!(failing.received().len(), 1);

    // A copy of the message arriving early (a duplicate send) makes no attempt.
    let copy = deliver[0].body.clone();
    backends.delivery_queue.send(&copy, Duration::ZERO).await.unwrap();
    let early = backends.delivery_queue.receive(1, Duration::ZERO).await.unwrap();
    let response = relay_delivery::handle(&relay.handler, sqs_event(vec![record(&early[0])])).await;
    assert_eq!(failed_ids(&response), [early[0].message_id.clone()]);
    assert_eq!(failing.received().len(), 1, "an early copy attempted the delivery");
}
