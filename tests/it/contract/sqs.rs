//! The queue contract against SQS on LocalStack, a fresh queue pair per test.

use std::sync::Arc;
use std::time::Duration;

use relay_aws::sqs::{QueueSpec, SqsQueue, create_queues};
use relay_core::ports::Queue;

use crate::aws;

async fn pair(
    client: aws_sdk_sqs::Client,
    visibility: Duration,
    max_receive_count: u32,
) -> (Arc<dyn Queue>, Arc<dyn Queue>) {
    let spec = QueueSpec {
        name: aws::unique("it"),
        visibility_timeout: visibility,
        max_receive_count,
        retention: Duration::from_secs(86_400),
    };
    let (url, _, dlq_url) = create_queues(&client, &spec).await.expect("create queues");
    (Arc::new(SqsQueue::new(client.clone(), url)), Arc::new(SqsQueue::new(client, dlq_url)))
}

macro_rules! sqs_suite {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(client) = aws::sqs().await else { return };
                super::queue::$case(|v, m| pair(client, v, m)).await;
            }
        )*
    };
}

sqs_suite!(
    send_receive_delete,
    visibility_timeout_and_change,
    batches_of_ten,
    delay_hides_a_message,
    redrive_after_max_receive_count,
    stale_receipt_handles_are_refused,
);
