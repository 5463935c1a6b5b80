//! relay-maintenance: run by an EventBridge schedule. Re-dispatches events stored but never
//! enqueued and turns dead-lettered messages into failed deliveries; answers with its report.

use aws_config::BehaviorVersion;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay::config::Need;
use relay::runtime::{Backends, Relay};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    relay::telemetry::init(std::io::stdout);
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let config = relay::runtime::production_config(&sdk).await?;
    config.require(&[
        Need::EventsTable,
        Need::WebhooksTable,
        Need::QueueUrl,
        Need::DeadLetterQueueUrl,
        Need::DatabaseUrl,
    ])?;
    let backends = Backends::aws(&config, &sdk).with_database(&config).await?.with_redis(&config)?;
    let maintenance = Relay::new(&config, backends)?.maintenance;
    run(service_fn(|_: LambdaEvent<Value>| {
        let maintenance = maintenance.clone();
        async move { Ok::<Value, Error>(serde_json::to_value(maintenance.run().await?)?) }
    }))
    .await
}
