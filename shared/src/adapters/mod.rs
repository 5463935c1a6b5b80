//! Implementations of the ports: `memory` (embedded, the default of relay-local and the
//! reference for every contract test), `sqs` and `dynamodb` (the AWS path), `postgres` (the
//! delivery log), and `http` (outbound webhook requests).

pub mod cached;
pub mod dynamodb;
pub mod http;
pub mod memory;
pub mod postgres;
pub mod redis;
pub mod sqs;
