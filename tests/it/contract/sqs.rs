//! The queue contract against SQS on LocalStack, fresh queues per test.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use relay_aws::sqs::{ORDERED_MAX_RECEIVE_COUNT, QueueSpec, Queues, SqsQueue, create_queues};
use relay_core::ports::Queue;

use crate::aws;

async fn create(client: &aws_sdk_sqs::Client, visibility: Duration, max_receive_count: u32) -> Queues {
    let spec = QueueSpec {
        name: aws::unique("it"),
        visibility_timeout: visibility,
        max_receive_count,
        retention: Duration::from_secs(86_400),
    };
    create_queues(client, &spec).await.expect("create queues")
}

async fn pair(
    client: aws_sdk_sqs::Client,
    visibility: Duration,
    max_receive_count: u32,
) -> (Arc<dyn Queue>, Arc<dyn Queue>) {
    let queues = create(&client, visibility, max_receive_count).await;
    (Arc::new(SqsQueue::new(client.clone(), queues.queue)), Arc::new(SqsQueue::new(client, queues.dead_letter)))
}

/// The ordered lane (FIFO).
async fn ordered(client: aws_sdk_sqs::Client, visibility: Duration) -> Arc<dyn Queue> {
    let queues = create(&client, visibility, 5).await;
    Arc::new(SqsQueue::new(client, queues.ordered))
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

macro_rules! sqs_fifo_suite {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(client) = aws::sqs().await else { return };
                super::queue::$case(|v| ordered(client, v)).await;
            }
        )*
    };
}

sqs_fifo_suite!(
    fifo_keeps_each_groups_order,
    fifo_holds_a_group_while_its_head_is_in_flight,
    fifo_holds_a_group_while_its_head_waits_out_a_visibility_change,
    fifo_takes_plain_sends_without_their_delay,
);

/// The ordered lane is FIFO (its URL says so, which is how the adapter knows), without
/// content-based deduplication (each message's id is fresh), and redriven to a FIFO
/// dead-letter queue of its own only after many receives: its retries are receives.
#[tokio::test]
async fn the_ordered_lane_is_fifo_with_its_own_fifo_dead_letter_queue() {
    let Some(client) = aws::sqs().await else { return };
    let queues = create(&client, Duration::from_secs(2), 5).await;
    assert!(queues.ordered.ends_with(".fifo") && queues.ordered_dead_letter.ends_with(".fifo"), "{queues:?}");
    assert!(SqsQueue::new(client.clone(), &queues.ordered).ordered());
    assert!(!SqsQueue::new(client.clone(), &queues.delivery).ordered());
    let attributes = |url: String| {
        let client = client.clone();
        async move {
            client
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .unwrap()
                .attributes()
                .cloned()
                .unwrap_or_default()
        }
    };
    let lane = attributes(queues.ordered.clone()).await;
    assert_eq!(lane[&QueueAttributeName::FifoQueue], "true");
    assert_eq!(lane[&QueueAttributeName::ContentBasedDeduplication], "false");
    assert_eq!(lane[&QueueAttributeName::VisibilityTimeout], "2");
    let redrive: serde_json::Value = serde_json::from_str(&lane[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), ORDERED_MAX_RECEIVE_COUNT.to_string());
    let dead_letter = attributes(queues.ordered_dead_letter.clone()).await;
    assert_eq!(dead_letter[&QueueAttributeName::FifoQueue], "true");
    assert_eq!(redrive["deadLetterTargetArn"], dead_letter[&QueueAttributeName::QueueArn].as_str());
    let standard = attributes(queues.delivery.clone()).await;
    let redrive: serde_json::Value = serde_json::from_str(&standard[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "5", "the other lanes keep the spec's count");

    // Messages sent twice with the same body are both kept: no content-based deduplication.
    let queue = SqsQueue::new(client, &queues.ordered);
    queue.send_grouped(&[("g".into(), "same".into()), ("g".into(), "same".into())]).await.unwrap();
    let depth = queue.depth().await.unwrap();
    assert_eq!(depth.visible + depth.in_flight, 2, "{depth:?}");
}
