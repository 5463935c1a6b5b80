//! relay-delivery: the relay queue's consumer. Lambda's event source mapping hands it batches
//! (`SqsEvent`); it returns the ids of the messages to retry (`SqsBatchResponse`,
//! `ReportBatchItemFailures`), having set each one's visibility to its backoff delay.

use aws_config::BehaviorVersion;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay::config::Need;
use relay::runtime::{Backends, Relay};

#[tokio::main]
async fn main() -> Result<(), Error> {
    relay::telemetry::init(std::io::stdout);
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let config = relay::runtime::production_config(&sdk).await?;
    config.require(&[Need::EventsTable, Need::WebhooksTable, Need::QueueUrl, Need::DatabaseUrl, Need::SecretKeys])?;
    let backends = Backends::aws(&config, &sdk).with_database(&config).await?.with_redis(&config)?;
    let handler = Relay::new(&config, backends)?.handler;
    run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move { Ok::<SqsBatchResponse, Error>(handler.handle(event.payload).await) }
    }))
    .await
}
