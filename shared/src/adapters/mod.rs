//! Implementations of the ports: `memory` (embedded, the default of relay-local and the
//! reference for every contract test), `sqs` and `dynamodb` (the AWS path), and `http`
//! (outbound webhook requests).

pub mod dynamodb;
pub mod http;
pub mod memory;
pub mod sqs;
