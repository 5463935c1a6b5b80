//! Integration tests: the relay started on port 0 with a real receiver, the SQS-shaped batch
//! handler with event fixtures, and the port contract suites.

mod api_events;
mod api_webhooks;
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
mod helpers;
mod hostile;
mod hygiene;
mod js_fidelity;
mod lambda_http;
mod openapi;
mod operations;
mod pg;
mod proxy;
mod receiver_faults;
mod redis_server;
mod sealed_at_rest;
mod secrets;
mod server;
mod ssrf;
mod template;
mod tools;
mod web;

/// The SQS event Lambda would hand the delivery function for these messages.
fn worker_event(messages: &[relay::ports::ReceivedMessage]) -> aws_lambda_events::event::sqs::SqsEvent {
    relay::worker::to_sqs_event(messages)
}
