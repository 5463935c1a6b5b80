//! relay-api's Lambda entry point; see the library for what it serves.

use relay_api::{Settings, app};

#[tokio::main]
async fn main() -> Result<(), relay_lambda_http::Error> {
    relay_core::telemetry::init(std::io::stdout);
    let sdk = relay_aws::sdk_config().await;
    let settings = Settings::from_vars(&relay_aws::secrets::vars_from_env(&sdk).await?)?;
    relay_lambda_http::serve(app(settings, &relay_aws::AwsClients::new(&sdk)).await?).await
}
