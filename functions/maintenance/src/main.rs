//! relay-maintenance's Lambda entry point; see the library for what it does.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use relay_maintenance::{Settings, maintenance};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    relay_core::telemetry::init(std::io::stdout);
    let sdk = relay_aws::sdk_config().await;
    let settings = Settings::from_vars(&relay_aws::secrets::vars_from_env(&sdk).await?)?;
    let maintenance = maintenance(settings, &relay_aws::AwsClients::new(&sdk)).await?;
    run(service_fn(|_: LambdaEvent<Value>| {
        let maintenance = maintenance.clone();
        async move { Ok::<Value, Error>(serde_json::to_value(maintenance.run().await?)?) }
    }))
    .await
}
