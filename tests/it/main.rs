//! Integration tests: the relay started on port 0 with a real receiver, the SQS-shaped batch
//! handler with event fixtures, and the port contract suites.

// Test code, helpers included, may unwrap: a panic is how a test fails (`clippy.toml` allows it
// in `#[test]` functions; this covers the helpers they share).
#![allow(clippy::unwrap_used)]

mod api_events;
mod api_webhooks;
mod architecture;
mod auth;
mod aws;
mod aws_end_to_end;
mod bad_input;
mod batch;
mod browser;
mod cold_start;
mod contract;
mod dashboard;
mod degradation;
mod delivery;
mod dependency_faults;
mod flow_controls;
mod helpers;
mod hostile;
mod hygiene;
mod js_fidelity;
mod lambda_http;
mod openapi;
mod operations;
mod partition_spread;
mod pg;
mod proxy;
mod receiver_faults;
mod redis_server;
mod sealed_at_rest;
mod secrets;
mod server;
mod settings;
mod ssrf;
mod template;
mod tenants;
mod tools;
mod web;
mod webhook_controls;

/// The SQS event Lambda would hand the delivery function for these messages.
fn worker_event(messages: &[relay_core::ports::ReceivedMessage]) -> aws_lambda_events::event::sqs::SqsEvent {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = Some(m.message_id.clone());
            record.receipt_handle = Some(m.receipt_handle.clone());
            record.body = Some(m.body.clone());
            record.attributes.insert("ApproximateReceiveCount".into(), m.receive_count.to_string());
            record.event_source = Some("aws:sqs".into());
            record
        })
        .collect();
    event
}
