//! The delivery worker: one batch handler, `SqsEvent -> SqsBatchResponse`, that Lambda calls
//! through its SQS event source mapping and relay-local calls from its own poller.

mod batch;
mod poller;

pub use batch::BatchHandler;
pub use poller::{Poller, to_sqs_event};
