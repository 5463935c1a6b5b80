//! Reaching the local AWS emulators (LocalStack for SQS, moto for DynamoDB) through the SDK's
//! standard endpoint variables. Under CI a missing emulator fails the test; elsewhere the test
//! says why it did nothing. `localstack/start-local-aws.sh` starts both.

use aws_config::{BehaviorVersion, SdkConfig};

fn configured(service_var: &str) -> bool {
    std::env::var_os(service_var).is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some()
}

async fn sdk_config(service_var: &str, emulator: &str) -> Option<SdkConfig> {
    if !configured(service_var) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{service_var} is not set: CI must run the {emulator} tests (.ci/run starts it)"
        );
        eprintln!("SKIPPED: {service_var} is not set; run localstack/start-local-aws.sh and export it");
        return None;
    }
    Some(aws_config::defaults(BehaviorVersion::latest()).load().await)
}

pub async fn sqs() -> Option<aws_sdk_sqs::Client> {
    sdk_config("AWS_ENDPOINT_URL_SQS", "LocalStack").await.map(|c| aws_sdk_sqs::Client::new(&c))
}

pub async fn dynamodb() -> Option<aws_sdk_dynamodb::Client> {
    sdk_config("AWS_ENDPOINT_URL_DYNAMODB", "moto").await.map(|c| aws_sdk_dynamodb::Client::new(&c))
}

/// The SDK configuration for Secrets Manager on moto.
pub async fn secrets_manager() -> Option<SdkConfig> {
    sdk_config("AWS_ENDPOINT_URL_SECRETS_MANAGER", "moto").await
}

/// Quick failure handling for the tests on local AWS: 1 s backoff, 1 retry, a 1 s webhook
/// timeout and a 2 s visibility timeout.
pub const QUICK_RETRIES: [(&str, &str); 4] = [
    ("WEBHOOK_RETRY_DELAY", "1000"),
    ("WEBHOOK_MAX_RETRIES", "1"),
    ("WEBHOOK_TIMEOUT", "1000"),
    ("QUEUE_VISIBILITY_TIMEOUT", "2"),
];

/// Fresh tables and queues (named `{prefix}-<uuid>`, queues as `base` configures the embedded
/// one, a day's retention), and the test configuration `base` on them.
pub async fn fresh_resources(prefix: &str, base: &[(&str, &str)]) -> (SdkConfig, relay_local::Config) {
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let short = crate::helpers::test_config(base);
    let queues = relay_aws::sqs::QueueSpec {
        name: String::new(),
        visibility_timeout: short.memory.visibility_timeout,
        max_receive_count: short.memory.max_receive_count,
        retention: std::time::Duration::from_secs(86_400),
    };
    let created = relay_aws::bootstrap(&sdk, &unique(prefix), &queues).await.expect("bootstrap");
    let names = [
        ("EVENTS_TABLE", created.events_table.unwrap()),
        ("IDEMPOTENCY_TABLE", created.idempotency_table.unwrap()),
        ("WEBHOOKS_TABLE", created.webhooks_table.unwrap()),
        ("TENANTS_TABLE", created.tenants_table.unwrap()),
        ("QUEUE_URL", created.queue_url.unwrap()),
        ("DELIVERY_QUEUE_URL", created.delivery_queue_url.unwrap()),
        ("ORDERED_QUEUE_URL", created.ordered_queue_url.unwrap()),
        ("DLQ_URL", created.dead_letter_queue_url.unwrap()),
        ("ORDERED_DLQ_URL", created.ordered_dead_letter_queue_url.unwrap()),
    ];
    let mut vars: Vec<(&str, &str)> = base.to_vec();
    vars.extend(names.iter().map(|(k, v)| (*k, v.as_str())));
    (sdk, crate::helpers::test_config(&vars))
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The ordered lane's dead-letter queue (FIFO, apart from the others' on SQS) is drained by
/// maintenance like the other: what lands there is recorded and removed.
#[tokio::test]
async fn maintenance_drains_the_ordered_lanes_dead_letter_queue() {
    if sqs().await.is_none() || dynamodb().await.is_none() {
        return;
    }
    let (sdk, config) = fresh_resources("odlq", &[]).await;
    let backends = relay_local::aws_backends(&config, &sdk).unwrap();
    assert!(backends.ordered_queue.ordered(), "the ordered lane is the FIFO queue");
    let ordered_dead_letter = backends.ordered_dead_letter.clone().expect("the ordered lane's DLQ");
    assert!(ordered_dead_letter.ordered());
    ordered_dead_letter.send_grouped(&[("a-webhook".into(), "not a relay message".into())]).await.unwrap();
    let report = backends.maintenance().drain_dead_letters(10).await.unwrap();
    assert_eq!((report.dead_letters, report.unreadable), (1, 1), "{report:?}");
    let depth = ordered_dead_letter.depth().await.unwrap();
    assert_eq!(depth.visible + depth.in_flight, 0, "drained: {depth:?}");
}
