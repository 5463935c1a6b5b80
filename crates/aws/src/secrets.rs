//! Settings from Secrets Manager, at a Lambda function's cold start: `CREDENTIALS_SECRET` (a
//! JSON secret with `SERVICE_TOKENS` and `API_KEYS`), `DASHBOARD_SECRET` (with
//! `DASHBOARD_SESSION_SECRET`) and `ENCRYPTION_SECRET` (with `SECRETS_ENCRYPTION_KEYS`), where
//! a variable set in the environment wins; and `DATABASE_SECRET` (RDS's JSON secret with
//! `username` and `password`), which with `DATABASE_HOST` becomes `DATABASE_URL` (TLS required).

use std::collections::HashMap;

use aws_config::SdkConfig;

use relay_core::Error;
use relay_core::settings::{ConfigError, StartupError, Vars};

/// The process environment, completed from the secrets it names.
pub async fn vars_from_env(sdk: &SdkConfig) -> Result<Vars, StartupError> {
    complete(sdk, std::env::vars().collect()).await.map(Vars::from_map)
}

/// `vars`, completed from the secrets they name.
pub async fn complete(
    sdk: &SdkConfig,
    mut vars: HashMap<String, String>,
) -> Result<HashMap<String, String>, StartupError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let json_secrets = [
        ("CREDENTIALS_SECRET", &["SERVICE_TOKENS", "API_KEYS"][..]),
        ("DASHBOARD_SECRET", &["DASHBOARD_SESSION_SECRET"][..]),
        ("ENCRYPTION_SECRET", &["SECRETS_ENCRYPTION_KEYS"][..]),
    ];
    for (variable, names) in json_secrets {
        let Some(id) = vars.get(variable).filter(|v| !v.is_empty()).cloned() else { continue };
        let secret: HashMap<String, String> = secret_json(&client, &id, variable).await?;
        for name in names {
            if let Some(value) = secret.get(*name) {
                vars.entry((*name).to_owned()).or_insert_with(|| value.clone());
            }
        }
    }
    if let Some(id) = vars.get("DATABASE_SECRET").filter(|v| !v.is_empty()).cloned() {
        #[derive(serde::Deserialize)]
        struct DatabaseSecret {
            username: String,
            password: String,
            #[serde(default)]
            dbname: Option<String>,
        }
        let secret: DatabaseSecret = secret_json(&client, &id, "DATABASE_SECRET").await?;
        let host = vars
            .get("DATABASE_HOST")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| ConfigError::new("DATABASE_HOST", "is required with DATABASE_SECRET"))?;
        let database = secret.dbname.as_deref().unwrap_or("relay");
        let mut url = url::Url::parse(&format!("postgres://{host}:5432/{database}?sslmode=require"))
            .map_err(|e| ConfigError::new("DATABASE_HOST", format!("is not a host name: {e}")))?;
        // The setters percent-encode whatever the generated credentials contain.
        let bad = |_| ConfigError::new("DATABASE_SECRET", "holds credentials that do not fit a URL");
        url.set_username(&secret.username).map_err(bad)?;
        url.set_password(Some(&secret.password)).map_err(bad)?;
        vars.insert("DATABASE_URL".to_owned(), url.into());
    }
    Ok(vars)
}

async fn secret_json<T: serde::de::DeserializeOwned>(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
    var: &'static str,
) -> Result<T, StartupError> {
    let output = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| Error::unavailable("secrets", aws_sdk_secretsmanager::error::DisplayErrorContext(e)))?;
    let text = output.secret_string().ok_or_else(|| ConfigError::new(var, "names a secret without a string value"))?;
    Ok(serde_json::from_str(text)
        .map_err(|e| ConfigError::new(var, format!("names a secret that is not the expected JSON: {e}")))?)
}
