//! The event, webhook and tenant stores on DynamoDB (aws-sdk-dynamodb), reached through the SDK's
//! standard endpoint settings only. Every read on a request path is a GetItem or a Query on
//! an index; nothing scans.
//!
//! - `events`: one item per event (`id`), with sparse and dense GSIs for listing by time, type
//!   and source, and a sparse `pending-dispatch` index of events not yet enqueued.
//! - `idempotency`: one item per ingest idempotency key, written in the same transaction as
//!   the event, expiring by TTL.
//! - `webhooks`: single-table: a webhook item per webhook (`WEBHOOK#id`), listed by tenant
//!   through a GSI, and a subscription item per (event type, active webhook), sorted by tenant,
//!   so dispatch finds one tenant's subscribers, or every tenant's, with one Query.
//! - `tenants`: single-table: a tenant item per tenant (listed newest first through a sparse
//!   GSI), its API key items beside it, a lookup item per key's SHA-256, and a portal link
//!   item per link's SHA-256, expiring by TTL.

mod events;
mod query;
mod schema;
mod tenants;
mod webhooks;

pub use events::{DynamoEventStore, PENDING_SHARDS};
pub use schema::{
    EVENTS, IDEMPOTENCY, IndexDef, TABLES, TENANTS, TTL_ATTRIBUTE, TableDef, TableNames, WEBHOOKS, create_tables, index,
};
pub use tenants::DynamoTenantStore;
pub use webhooks::DynamoWebhookStore;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

use relay_core::Error;

fn unavailable(err: impl std::error::Error) -> Error {
    Error::unavailable("database", DisplayErrorContext(err))
}

/// The outcome of a conditional write: true when it was made, false when its condition failed
/// (`ConditionalCheckFailedException`), 503 for anything else.
fn condition_held<T, E, R>(result: Result<T, SdkError<E, R>>) -> relay_core::Result<bool>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(err)
            if err.as_service_error().and_then(ProvideErrorMetadata::code)
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(err) => Err(unavailable(err)),
    }
}

/// One record as a DynamoDB item.
fn to_item<T: serde::Serialize>(value: &T) -> relay_core::Result<query::Item> {
    serde_dynamo::to_item(value).map_err(|e| Error::Internal(format!("cannot encode an item: {e}")))
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> Error {
    Error::Internal(format!("unreadable {what} item: {err}"))
}

/// The reasons a transaction was cancelled, one per item.
fn cancellation_codes(err: &SdkError<TransactWriteItemsError>) -> Vec<String> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
            e.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect()
        }
        _ => Vec::new(),
    }
}
