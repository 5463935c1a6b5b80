//! Integration tests: the relay started on port 0 with a real receiver, the SQS-shaped batch
//! handler with event fixtures, and the port contract suites.

mod api_events;
mod api_webhooks;
mod aws;
mod aws_end_to_end;
mod batch;
mod contract;
mod delivery;
mod helpers;
mod lambda_http;
mod template;
mod pg;
mod tools;
