//! PostgreSQL restarted, and its sessions killed, under a stream of deliveries.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use sqlx::{Connection, PgConnection, PgPool};

use super::{CATCH_UP, accepted, api, assert_health, assert_unavailable, copies, post, stream, wait_for_all};
use crate::helpers::{Receiver, Reply, TestApp, eventually};
use crate::pg;
use crate::proxy::Proxy;

/// Per delivery in the log: its status, and how many of its attempts got a 2xx.
async fn delivery_log(pool: &PgPool) -> BTreeMap<String, (String, i64)> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT d.event_id::text, d.status, \
                (SELECT count(*) FROM delivery_attempts a \
                  WHERE a.event_id = d.event_id AND a.webhook_id = d.webhook_id \
                    AND a.status_code BETWEEN 200 AND 299) \
           FROM deliveries d",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().map(|(event, status, ok)| (event, (status, ok))).collect()
}

/// Every one of `ids` delivered and logged `succeeded`, nothing else in the log, and no 2xx
/// attempt logged that the receiver did not get.
async fn assert_all_delivered_and_logged(pool: &PgPool, receiver: &Receiver, ids: &[String]) {
    wait_for_all(receiver, ids).await;
    let settled = eventually(CATCH_UP, || async {
        let log = delivery_log(pool).await;
        (log.len() == ids.len() && log.values().all(|(status, _)| status == "succeeded")).then_some(log)
    })
    .await;
    let Some(log) = settled else {
        panic!("the log never showed all {} deliveries succeeded: {:?}", ids.len(), delivery_log(pool).await);
    };
    let got = copies(receiver);
    for id in ids {
        let (_, logged_ok) = &log[id];
        let received = got.get(id).copied().unwrap_or(0) as i64;
        assert_eq!(*logged_ok, 1, "{id}: {logged_ok} successful attempts logged");
        assert!(received >= *logged_ok, "{id}: logged sent {logged_ok} times, received {received}");
    }
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    eprintln!("{} events delivered, {duplicates} duplicate requests (at least once)", ids.len());
}

/// What a PostgreSQL restart looks like to the relay: every connection dropped and new ones
/// refused for 2 s, in the middle of a stream of deliveries; then its sessions killed on the
/// server itself. Deliveries wait and retry (README "Health"), nothing is reported sent
/// without its log row, and the pool recovers by itself.
#[tokio::test]
async fn restarting_mid_run_loses_nothing_and_the_pool_recovers() {
    let Some(db) = pg::database().await else {
        return;
    };
    let proxy = Proxy::to_url(db.url()).await;
    let app = TestApp::spawn_with(&[
        ("DATABASE_URL", &proxy.url_for(db.url())),
        ("QUEUE_VISIBILITY_TIMEOUT", "3"),
        ("WORKER_CONCURRENCY", "4"),
    ])
    .await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200).delay(Duration::from_millis(20)));
    let (webhook_id, _) = app.create_webhook(&receiver.url(), &["job.created"]).await;
    let pool = db.pool().await;

    let outage = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        proxy.cut().await;
        assert_health(&app, "degraded", &["postgres"], &[]).await;
        let deliveries = format!("/api/webhooks/{webhook_id}/deliveries");
        assert_unavailable(api(&app, Method::GET, &deliveries, None).await, "GET deliveries, PostgreSQL down").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.restore();
        Instant::now()
    };
    let (mut ids, restored_at) = tokio::join!(stream(&app, "restart", 50, Duration::from_millis(50)), outage);
    ids.push(accepted(post(&app, "after the restart", None).await).await);
    assert_all_delivered_and_logged(&pool, &receiver, &ids).await;
    let waited = receiver
        .received()
        .iter()
        .filter(|r| r.at > restored_at && ids[..50].iter().any(|id| id == r.header("webhook-id")))
        .count();
    assert!(waited > 0, "no delivery waited for PostgreSQL: the outage missed the stream");
    assert_health(&app, "healthy", &[], &[]).await;

    // The server ends the relay's sessions itself (pg_terminate_backend), twice, mid-stream.
    let mut killer = PgConnection::connect(db.url()).await.unwrap();
    let kill = async {
        let mut killed = Vec::new();
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let n: i64 = sqlx::query_scalar(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                  WHERE datname = current_database() AND application_name = 'webhook-relay' AND pid <> pg_backend_pid()",
            )
            .fetch_one(&mut killer)
            .await
            .unwrap();
            killed.push(n);
        }
        killed
    };
    let (more, killed) = tokio::join!(stream(&app, "terminated", 20, Duration::from_millis(40)), kill);
    assert!(killed[0] > 0, "no relay session to terminate: {killed:?}");
    ids.extend(more);
    ids.push(accepted(post(&app, "after the kill", None).await).await);
    assert_all_delivered_and_logged(&pool, &receiver, &ids).await;
    assert_health(&app, "healthy", &[], &[]).await;

    killer.close().await.unwrap();
    app.stop().await;
    pool.close().await;
    db.drop().await;
}
