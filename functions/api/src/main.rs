//! relay-api: the management API behind API Gateway: webhooks, their delivery log and manual
//! retries, for external clients with an API key.

use aws_config::BehaviorVersion;
use lambda_http::{Error, run};
use relay::config::Need;
use relay::runtime::{Backends, Relay};

#[tokio::main]
async fn main() -> Result<(), Error> {
    relay::telemetry::init(std::io::stdout);
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let config = relay::runtime::production_config(&sdk).await?;
    config.require(&[
        Need::ApiKeys,
        Need::EventsTable,
        Need::WebhooksTable,
        Need::QueueUrl,
        Need::DatabaseUrl,
        Need::SecretKeys,
    ])?;
    let backends = Backends::aws(&config, &sdk).with_database(&config).await?.with_redis(&config)?;
    let relay = Relay::new(&config, backends)?;
    run(relay::api::management_app(relay.management_state(), relay.dashboard_routes(), relay.common())).await
}
