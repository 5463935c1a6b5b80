//! relay-ingest: the events API behind API Gateway. It touches only DynamoDB and SQS: no VPC,
//! no connection pool, a fast cold start (Redis, if configured, only counts rate limits and
//! connects on first use).

use aws_config::BehaviorVersion;
use lambda_http::{Error, run};
use relay::config::Need;
use relay::runtime::{Backends, Relay};

#[tokio::main]
async fn main() -> Result<(), Error> {
    relay::telemetry::init(std::io::stdout);
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let config = relay::runtime::production_config(&sdk).await?;
    config.require(&[Need::ServiceTokens, Need::EventsTable, Need::IdempotencyTable, Need::QueueUrl])?;
    let relay = Relay::new(&config, Backends::aws(&config, &sdk).with_redis(&config)?)?;
    run(relay::api::ingest_app(relay.events_state(), relay.common())).await
}
