//! relay-delivery's Lambda entry point; see the library for what it does.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_delivery::{Settings, handle, handler};

#[tokio::main]
async fn main() -> Result<(), Error> {
    relay_core::telemetry::init(std::io::stdout);
    let sdk = relay_aws::sdk_config().await;
    let settings = Settings::from_vars(&relay_aws::secrets::vars_from_env(&sdk).await?)?;
    let handler = handler(settings, &relay_aws::AwsClients::new(&sdk)).await?;
    run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handle(&handler, event.payload).await) }
    }))
    .await
}
