//! The store contracts against DynamoDB on moto, fresh tables per test.

use std::sync::Arc;
use std::time::Duration;

use relay_aws::dynamodb::{DynamoEventStore, DynamoTenantStore, DynamoWebhookStore, TableNames, create_tables};

use relay_core::ports::IndexedEvents;

use crate::{aws, pg};

async fn tables(client: &aws_sdk_dynamodb::Client) -> TableNames {
    let names = TableNames::with_prefix(&aws::unique("it"));
    create_tables(client, &names).await.expect("create tables");
    names
}

macro_rules! dynamo_suite {
    ($($suite:ident :: $case:ident => |$client:ident, $names:ident| $make:expr;)*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some($client) = aws::dynamodb().await else { return };
                let $names = tables(&$client).await;
                super::$suite::$case($make).await;
            }
        )*
    };
}

/// The events contract on DynamoDB as the relay runs it: events in DynamoDB, listed and
/// counted through the event index in PostgreSQL (a fresh database per test).
macro_rules! dynamo_events_suite {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(client) = aws::dynamodb().await else { return };
                let Some(db) = pg::database().await else { return };
                let names = tables(&client).await;
                let store = Arc::new(DynamoEventStore::new(client, &names, RETENTION));
                let index = Arc::new(db.log(2).await.event_index());
                super::events::$case(Arc::new(IndexedEvents::new(store, index, RETENTION))).await;
                db.drop().await;
            }
        )*
    };
}

const RETENTION: Duration = Duration::from_secs(30 * 86_400);

dynamo_events_suite!(
    stores_and_reads_back,
    lists_newest_first_with_filters_and_paging,
    idempotency_key_is_taken_once,
    concurrent_duplicates_create_one_event,
    an_expired_key_can_be_reused,
    counts_events_by_type_since,
    undispatched_lists_old_events_not_yet_enqueued,
    tenant_and_channels_round_trip,
    lists_by_tenant,
    knows_which_events_were_dispatched,
);

dynamo_suite! {
    webhooks::crud_by_tenant => |c, n| Arc::new(DynamoWebhookStore::new(c, &n));
    webhooks::subscribed_is_active_and_by_type_across_tenants => |c, n| Arc::new(DynamoWebhookStore::new(c, &n));
    webhooks::subscribed_is_scoped_by_tenant => |c, n| Arc::new(DynamoWebhookStore::new(c, &n));
    webhooks::count_is_per_tenant => |c, n| Arc::new(DynamoWebhookStore::new(c, &n));
    webhooks::channels_round_trip => |c, n| Arc::new(DynamoWebhookStore::new(c, &n));
    webhooks::filter_headers_and_schedule_round_trip => |c, n| Arc::new(DynamoWebhookStore::new(c, &n));
    webhooks::lists_page_through => |c, n| Arc::new(DynamoWebhookStore::new(c, &n));
    webhooks::stale_writes_are_refused_and_concurrent_changes_all_land => |c, n| Arc::new(DynamoWebhookStore::new(c, &n));
    tenants::insert_get_update_delete => |c, n| Arc::new(DynamoTenantStore::new(c, &n));
    tenants::lists_newest_first_with_cursor_paging => |c, n| Arc::new(DynamoTenantStore::new(c, &n));
    tenants::api_keys_by_tenant_and_digest => |c, n| Arc::new(DynamoTenantStore::new(c, &n));
    tenants::deleting_a_tenant_removes_its_keys => |c, n| Arc::new(DynamoTenantStore::new(c, &n));
    tenants::a_portal_link_is_taken_once => |c, n| Arc::new(DynamoTenantStore::new(c, &n));
    tenants::concurrent_takes_of_a_link_have_one_winner => |c, n| Arc::new(DynamoTenantStore::new(c, &n));
}
