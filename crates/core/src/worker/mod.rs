//! The delivery worker's core: a batch of received queue messages in, the ids of those to
//! retry out. Lambda's SQS event source mapping feeds it through relay-delivery (which turns
//! an `SqsEvent` into [`ReceivedMessage`]s and the ids into an `SqsBatchResponse`); relay-local
//! feeds it from its own [`Poller`].

mod batch;
mod poller;

pub use batch::{BatchHandler, BatchOutcome, Handled};
pub use poller::Poller;
