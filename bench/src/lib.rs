//! relay-bench: a repeatable performance harness for webhook-relay.
//!
//! It starts relay-local (release build) as a child process with a fast receiver of its own,
//! drives load over 127.0.0.1, and measures what the relay does: requests/s, latency, deliveries
//! per second, losses and duplicates as the receiver sees them, the relay process's CPU time per
//! event, its memory, the Lambda binaries' start-up under a local Lambda Runtime API, and how
//! well healthy webhooks and tenants are kept from bad ones (`isolation`, `fairness`).
//! Every loop is bounded in count and time. See `docs/performance.md`.

pub mod clock;
pub mod http;
pub mod isolation;
pub mod lambda;
pub mod proc;
pub mod receiver;
pub mod relay;
pub mod report;
pub mod scenarios;
pub mod scratch;
pub mod stats;

pub use relay::{Backend, RelayOptions};
pub use report::Report;
pub use scenarios::{Plan, run_scenarios};
