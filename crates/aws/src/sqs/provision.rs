//! Creating the relay's queues with the attributes `template.yaml` declares: the dispatch and
//! the delivery lane with their dead-letter queue, and the ordered lane (FIFO) with its own
//! (SQS requires a FIFO queue's dead-letter queue to be FIFO too). Used by the LocalStack
//! bootstrap and by tests (with random names).

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;

use super::unavailable;
use relay_core::{Error, Result};

/// The ordered lane's `maxReceiveCount`, whatever [`QueueSpec::max_receive_count`] says: a
/// retry or a deferral of an ordered delivery is a visibility change of the same message, which
/// is then received again, so its receive count measures how long its webhook has been held
/// back, not whether it is poison. (The relay gives up on a delivery by its own schedule.)
pub const ORDERED_MAX_RECEIVE_COUNT: u32 = 1000;

/// What distinguishes a deployment's queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
    /// How long a message is kept: longer than the whole retry schedule.
    pub retention: Duration,
}

impl QueueSpec {
    /// The queues `template.yaml` declares: a visibility timeout of 6x the delivery function's
    /// 30 s timeout, 10 receives before the DLQ (more than the default schedule's 4 attempts),
    /// and 14 days' retention, longer than any retry schedule.
    pub fn deployed(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            visibility_timeout: Duration::from_secs(180),
            max_receive_count: 10,
            retention: Duration::from_secs(14 * 86_400),
        }
    }
}

/// The URLs of the queues [`create_queues`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queues {
    /// `{name}`: the dispatch lane.
    pub queue: String,
    /// `{name}-delivery`: the delivery lane.
    pub delivery: String,
    /// `{name}-ordered.fifo`: the ordered lane.
    pub ordered: String,
    /// `{name}-dlq`: the two standard lanes' dead-letter queue.
    pub dead_letter: String,
    /// `{name}-ordered-dlq.fifo`: the ordered lane's.
    pub ordered_dead_letter: String,
}

/// Creates (or finds) the dead-letter queues `{name}-dlq` and `{name}-ordered-dlq.fifo`, then,
/// each with a redrive policy to its own, the lanes `{name}` (dispatch), `{name}-delivery` and
/// `{name}-ordered.fifo` (FIFO, [`ORDERED_MAX_RECEIVE_COUNT`] receives).
pub async fn create_queues(client: &Client, spec: &QueueSpec) -> Result<Queues> {
    let dead_letter = create_dead_letter(client, format!("{}-dlq", spec.name), false).await?;
    let ordered_dead_letter = create_dead_letter(client, format!("{}-ordered-dlq.fifo", spec.name), true).await?;
    let delivery = format!("{}-delivery", spec.name);
    let ordered = format!("{}-ordered.fifo", spec.name);
    Ok(Queues {
        queue: create_lane(client, spec, spec.name.clone(), &dead_letter, false).await?,
        delivery: create_lane(client, spec, delivery, &dead_letter, false).await?,
        ordered: create_lane(client, spec, ordered, &ordered_dead_letter, true).await?,
        dead_letter: dead_letter.url,
        ordered_dead_letter: ordered_dead_letter.url,
    })
}

/// A lane with the visibility timeout and retention `spec` says, redriven to `dead_letter`
/// after `spec.max_receive_count` receives (FIFO: [`ORDERED_MAX_RECEIVE_COUNT`]).
async fn create_lane(
    client: &Client,
    spec: &QueueSpec,
    name: String,
    dead_letter: &Created,
    fifo: bool,
) -> Result<String> {
    let max_receive_count = if fifo { ORDERED_MAX_RECEIVE_COUNT } else { spec.max_receive_count };
    let redrive = serde_json::json!({ "deadLetterTargetArn": dead_letter.arn, "maxReceiveCount": max_receive_count });
    let create = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, spec.visibility_timeout.as_secs().to_string())
        .attributes(QueueAttributeName::MessageRetentionPeriod, spec.retention.as_secs().to_string())
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string());
    let create = if fifo {
        // Each message's deduplication id is fresh: the relay deduplicates deliveries itself.
        create
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
    } else {
        create
    };
    Ok(create.send().await.map_err(unavailable)?.queue_url().unwrap_or_default().to_owned())
}

/// A queue's URL and ARN.
struct Created {
    url: String,
    arn: String,
}

/// A dead-letter queue, kept 14 days (the most SQS allows).
async fn create_dead_letter(client: &Client, name: String, fifo: bool) -> Result<Created> {
    let create =
        client.create_queue().queue_name(name).attributes(QueueAttributeName::MessageRetentionPeriod, "1209600");
    let create = if fifo { create.attributes(QueueAttributeName::FifoQueue, "true") } else { create };
    let url = create.send().await.map_err(unavailable)?.queue_url().unwrap_or_default().to_owned();
    let arn = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(unavailable)?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| Error::unavailable("queue", "the dead-letter queue has no ARN"))?;
    Ok(Created { url, arn })
}
