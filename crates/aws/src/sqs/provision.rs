//! Creating the relay's two queues (the dispatch and the delivery lane) and their dead-letter
//! queue, with the attributes `template.yaml` declares. Used by the LocalStack bootstrap and by
//! tests (with random names).

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;

use super::unavailable;
use relay_core::{Error, Result};

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

/// Creates (or finds) `{name}-dlq` and, both with a redrive policy to it, `{name}` (the dispatch
/// lane) and `{name}-delivery` (the delivery lane); returns their URLs: queue, delivery queue,
/// dead-letter queue.
pub async fn create_queues(client: &Client, spec: &QueueSpec) -> Result<(String, String, String)> {
    let retention = spec.retention.as_secs().to_string();
    let dlq_url = client
        .create_queue()
        .queue_name(format!("{}-dlq", spec.name))
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(unavailable)?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(unavailable)?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| Error::unavailable("queue", "the dead-letter queue has no ARN"))?;
    let redrive =
        serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": spec.max_receive_count }).to_string();
    let create = |name: String| {
        client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::VisibilityTimeout, spec.visibility_timeout.as_secs().to_string())
            .attributes(QueueAttributeName::MessageRetentionPeriod, retention.clone())
            .attributes(QueueAttributeName::RedrivePolicy, redrive.clone())
            .send()
    };
    let url = create(spec.name.clone()).await.map_err(unavailable)?.queue_url().unwrap_or_default().to_owned();
    let delivery_url = create(format!("{}-delivery", spec.name))
        .await
        .map_err(unavailable)?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    Ok((url, delivery_url, dlq_url))
}
