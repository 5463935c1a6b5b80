//! The Lambda functions' configuration at cold start: credentials, the database login, the
//! dashboard's session key and the key webhook secrets are sealed with come from Secrets
//! Manager (moto here), never from plain environment variables.

use std::collections::HashMap;

use relay_aws::secrets::complete;
use relay_core::settings::{StartupError, Vars};

use crate::aws;

async fn create_secret(client: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    let output =
        client.create_secret().name(aws::unique("it")).secret_string(value).send().await.expect("create secret");
    output.arn().unwrap().to_owned()
}

#[tokio::test]
async fn credentials_and_database_url_come_from_secrets_manager() {
    let Some(sdk) = aws::secrets_manager().await else { return };
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let credentials = create_secret(
        &client,
        r#"{"SERVICE_TOKENS": "token-from-secrets-manager-01", "API_KEYS": "acme:key-from-secrets-manager-1"}"#,
    )
    .await;
    let database = create_secret(&client, r#"{"username": "relay", "password": "p@ss/word:with#odd chars"}"#).await;
    let dashboard =
        create_secret(&client, r#"{"DASHBOARD_SESSION_SECRET": "a-session-secret-from-secrets-manager-0000"}"#).await;
    // As template.yaml generates it: bare material (64 letters and digits), key id k0.
    let encryption = create_secret(
        &client,
        r#"{"SECRETS_ENCRYPTION_KEYS": "GeneratedByTheTemplate0123456789abcdefghijklmnopqrstuvwxyzABCDEF"}"#,
    )
    .await;
    let vars = HashMap::from([
        ("CREDENTIALS_SECRET".to_owned(), credentials.clone()),
        ("DASHBOARD_SECRET".to_owned(), dashboard),
        ("ENCRYPTION_SECRET".to_owned(), encryption),
        ("DATABASE_SECRET".to_owned(), database.clone()),
        ("DATABASE_HOST".to_owned(), "proxy.example.internal".to_owned()),
        // Not secrets: what relay-api needs besides.
        ("EVENTS_TABLE".to_owned(), "events".to_owned()),
        ("WEBHOOKS_TABLE".to_owned(), "webhooks".to_owned()),
        ("TENANTS_TABLE".to_owned(), "tenants".to_owned()),
        ("QUEUE_URL".to_owned(), "http://queue".to_owned()),
        ("ORDERED_QUEUE_URL".to_owned(), "http://queue-ordered.fifo".to_owned()),
    ]);
    // relay-api reads every kind: credentials, the database, the dashboard's and the sealing key.
    let config = relay_api::Settings::from_vars(&Vars::from_map(complete(&sdk, vars).await.expect("secrets")))
        .expect("relay-api's settings");
    let keys = config.secret_keys.clone();
    let owner = relay_core::domain::WebhookId::new();
    let secret = relay_core::domain::WebhookSecret::generate();
    let sealed = keys.seal(&secret, owner).unwrap();
    assert_eq!(sealed.key_id(), Some("k0"));
    assert_eq!(keys.open(&sealed, owner).unwrap(), secret);
    assert!(config.credentials.service("token-from-secrets-manager-01"));
    assert_eq!(config.credentials.tenant("key-from-secrets-manager-1").unwrap().as_str(), "acme");
    let url = url::Url::parse(&config.database.url.0).unwrap();
    assert_eq!(url.host_str(), Some("proxy.example.internal"));
    assert_eq!(url.username(), "relay");
    assert_eq!(percent_decode(url.password().unwrap()), "p@ss/word:with#odd chars");
    assert_eq!(url.query(), Some("sslmode=require"));
    assert_eq!(
        config.dashboard_session_secret.as_ref().map(|s| s.0.as_str()),
        Some("a-session-secret-from-secrets-manager-0000")
    );

    // A variable set in the environment wins; a database secret needs its host.
    let vars = HashMap::from([
        ("CREDENTIALS_SECRET".to_owned(), credentials),
        ("SERVICE_TOKENS".to_owned(), "token-from-the-environment-1".to_owned()),
        ("EVENTS_TABLE".to_owned(), "events".to_owned()),
        ("IDEMPOTENCY_TABLE".to_owned(), "idempotency".to_owned()),
        ("TENANTS_TABLE".to_owned(), "tenants".to_owned()),
        ("QUEUE_URL".to_owned(), "http://queue".to_owned()),
    ]);
    let config = relay_ingest::Settings::from_vars(&Vars::from_map(complete(&sdk, vars).await.unwrap())).unwrap();
    assert!(config.credentials.service("token-from-the-environment-1"));
    assert!(!config.credentials.service("token-from-secrets-manager-01"));
    let err = complete(&sdk, HashMap::from([("DATABASE_SECRET".to_owned(), database)])).await.unwrap_err();
    assert!(matches!(&err, StartupError::Config(e) if e.var == "DATABASE_HOST"), "{err}");
    let err = complete(&sdk, HashMap::from([("CREDENTIALS_SECRET".to_owned(), "no-such-secret".to_owned())]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("secrets"), "{err}");
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
