//! No hot partition (issue 20): every item and index entry the relay writes per event goes to
//! a partition key that spreads. Events are written through the DynamoDB store as ingest
//! writes them (half with an Idempotency-Key), all marked undispatched as in a queue outage
//! (the one index the events table has), and then every table and index they touched is read
//! back and its items counted per partition key: none holds more than its share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use relay_aws::dynamodb::{DynamoEventStore, EVENTS, IDEMPOTENCY, TableNames, create_tables};
use relay_core::Timestamp;
use relay_core::ports::{EventStore, IdempotencyRecord, Insert};

use crate::aws;
use crate::contract::event;

const EVENTS_WRITTEN: usize = 1_600;

/// The shards of the `pending-dispatch` index.
const SHARDS: usize = relay_aws::dynamodb::PENDING_SHARDS as usize;

/// Items per partition key value of `table` (or of its index), read with Scan.
async fn per_partition(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    index: Option<&str>,
    key: &str,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut start = None;
    loop {
        let output = client
            .scan()
            .table_name(table)
            .set_index_name(index.map(str::to_owned))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scan");
        for item in output.items() {
            let value = item.get(key).and_then(|v| v.as_s().ok()).expect("a string partition key");
            *counts.entry(value.clone()).or_default() += 1;
        }
        start = output.last_evaluated_key().cloned();
        if start.is_none() {
            return counts;
        }
    }
}

/// The most items of one partition key, and how many keys there are.
fn spread(counts: &HashMap<String, usize>) -> (usize, usize) {
    (counts.values().copied().max().unwrap_or(0), counts.len())
}

#[tokio::test]
async fn no_partition_key_of_any_table_or_index_takes_more_than_its_share() {
    let Some(client) = aws::dynamodb().await else { return };
    let names = TableNames::with_prefix(&aws::unique("spread"));
    create_tables(&client, &names).await.expect("create tables");
    let store = Arc::new(DynamoEventStore::new(client.clone(), &names, Duration::from_secs(86_400)));

    let written = futures_util::stream::iter(0..EVENTS_WRITTEN)
        .map(|i| {
            let store = store.clone();
            async move {
                let e = event(if i % 3 == 0 { "job.created" } else { "job.updated" }, Some("jobs"));
                let key = (i % 2 == 0).then(|| IdempotencyRecord {
                    key: format!("spread-{i}"),
                    fingerprint: "fp".into(),
                    event_id: e.id,
                    expires_at: Timestamp::now() + Duration::from_secs(86_400),
                });
                assert_eq!(store.insert(&e, key.as_ref()).await.unwrap(), Insert::Created);
                store.mark_undispatched(e.id).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .count()
        .await;
    assert_eq!(written, EVENTS_WRITTEN);

    // The tables: one item per event (or key) under its own partition key.
    let events = per_partition(&client, &names.events, None, EVENTS.hash).await;
    let keys = per_partition(&client, &names.idempotency, None, IDEMPOTENCY.hash).await;
    assert_eq!((events.values().sum::<usize>(), spread(&events)), (EVENTS_WRITTEN, (1, EVENTS_WRITTEN)));
    assert_eq!((keys.values().sum::<usize>(), spread(&keys)), (EVENTS_WRITTEN / 2, (1, EVENTS_WRITTEN / 2)));

    // Every index of the events table (there is one: events whose dispatch the queue refused).
    assert_eq!(EVENTS.indexes.len(), 1, "a new index of the events table must be added to this test");
    for index in EVENTS.indexes {
        let entries = per_partition(&client, &names.events, Some(index.name), index.hash).await;
        let (most, partitions) = spread(&entries);
        let share = EVENTS_WRITTEN / SHARDS;
        eprintln!(
            "{}: {} entries over {partitions} partition keys, the fullest {most} (a fair share {share})",
            index.name,
            entries.values().sum::<usize>()
        );
        assert_eq!(entries.values().sum::<usize>(), EVENTS_WRITTEN);
        assert_eq!(partitions, SHARDS);
        // A fair share plus 40% slack (binomial spread of 1,600 over 16: sd ~10 around 100).
        assert!(most <= share * 14 / 10, "{}: a partition key took {most} of {EVENTS_WRITTEN}", index.name);
    }
    // The idempotency table has no index; the webhooks and tenants tables are written per
    // webhook and per tenant, never per event.
    assert!(IDEMPOTENCY.indexes.is_empty());
}
