//! Queue contract. Real SQS counts visibility in whole seconds, so the timings here are too.
//! Each case gets a factory: `(visibility timeout, maxReceiveCount) -> (queue, its DLQ)`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use relay_core::ports::{Queue, ReceivedMessage};

const VISIBILITY: Duration = Duration::from_secs(2);

async fn receive_all(queue: &dyn Queue, n: usize, wait: Duration) -> Vec<ReceivedMessage> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut got = Vec::new();
    while got.len() < n && tokio::time::Instant::now() < deadline {
        let batch = queue.receive(10, Duration::from_millis(500)).await.unwrap();
        assert!(batch.len() <= 10);
        got.extend(batch);
    }
    got
}

pub async fn send_receive_delete<F, Fut>(make: F)
where
    F: FnOnce(Duration, u32) -> Fut,
    Fut: Future<Output = (Arc<dyn Queue>, Arc<dyn Queue>)>,
{
    let (queue, _) = make(VISIBILITY, 5).await;
    for body in ["a", "b", "c"] {
        queue.send(body, Duration::ZERO).await.unwrap();
    }
    let got = receive_all(&*queue, 3, Duration::from_secs(5)).await;
    let bodies: HashSet<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, HashSet::from(["a", "b", "c"]));
    assert!(got.iter().all(|m| m.receive_count == 1));
    for m in &got {
        queue.delete(&m.receipt_handle).await.unwrap();
    }
    tokio::time::sleep(VISIBILITY + Duration::from_millis(200)).await;
    assert!(queue.receive(10, Duration::from_millis(200)).await.unwrap().is_empty());
}

pub async fn visibility_timeout_and_change<F, Fut>(make: F)
where
    F: FnOnce(Duration, u32) -> Fut,
    Fut: Future<Output = (Arc<dyn Queue>, Arc<dyn Queue>)>,
{
    let (queue, _) = make(VISIBILITY, 5).await;
    queue.send("m", Duration::ZERO).await.unwrap();
    let first = receive_all(&*queue, 1, Duration::from_secs(5)).await.remove(0);
    assert!(queue.receive(10, Duration::from_millis(300)).await.unwrap().is_empty(), "invisible while received");

    let second = receive_all(&*queue, 1, VISIBILITY * 3).await.remove(0);
    assert_eq!(second.receive_count, 2, "visible again after the timeout");
    assert_ne!(second.receipt_handle, first.receipt_handle);

    queue.change_visibility(&second.receipt_handle, Duration::ZERO).await.unwrap();
    let third = receive_all(&*queue, 1, Duration::from_secs(2)).await.remove(0);
    assert_eq!(third.receive_count, 3);

    queue.change_visibility(&third.receipt_handle, Duration::from_secs(1)).await.unwrap();
    assert!(queue.receive(10, Duration::from_millis(200)).await.unwrap().is_empty());
    let fourth = receive_all(&*queue, 1, Duration::from_secs(3)).await.remove(0);
    assert_eq!(fourth.receive_count, 4);
    queue.delete(&fourth.receipt_handle).await.unwrap();
}

pub async fn batches_of_ten<F, Fut>(make: F)
where
    F: FnOnce(Duration, u32) -> Fut,
    Fut: Future<Output = (Arc<dyn Queue>, Arc<dyn Queue>)>,
{
    let (queue, _) = make(Duration::from_secs(30), 5).await;
    let bodies: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
    queue.send_batch(&bodies).await.unwrap();
    queue.send_batch(&[]).await.unwrap();
    let got = receive_all(&*queue, 25, Duration::from_secs(10)).await;
    let received: HashSet<String> = got.iter().map(|m| m.body.clone()).collect();
    assert_eq!(received, bodies.into_iter().collect::<HashSet<_>>());
}

pub async fn delay_hides_a_message<F, Fut>(make: F)
where
    F: FnOnce(Duration, u32) -> Fut,
    Fut: Future<Output = (Arc<dyn Queue>, Arc<dyn Queue>)>,
{
    let (queue, _) = make(VISIBILITY, 5).await;
    queue.send("later", Duration::from_secs(1)).await.unwrap();
    assert!(queue.receive(10, Duration::from_millis(300)).await.unwrap().is_empty());
    let got = receive_all(&*queue, 1, Duration::from_secs(3)).await;
    assert_eq!(got[0].body, "later");
}

pub async fn redrive_after_max_receive_count<F, Fut>(make: F)
where
    F: FnOnce(Duration, u32) -> Fut,
    Fut: Future<Output = (Arc<dyn Queue>, Arc<dyn Queue>)>,
{
    let (queue, dlq) = make(VISIBILITY, 2).await;
    queue.send("poison", Duration::ZERO).await.unwrap();
    for expected in 1..=2 {
        let m = receive_all(&*queue, 1, Duration::from_secs(5)).await.remove(0);
        assert_eq!(m.receive_count, expected);
        queue.change_visibility(&m.receipt_handle, Duration::ZERO).await.unwrap();
    }
    assert!(
        queue.receive(10, Duration::from_millis(500)).await.unwrap().is_empty(),
        "moved, not received a third time"
    );
    let dead = receive_all(&*dlq, 1, Duration::from_secs(5)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
}

pub async fn stale_receipt_handles_are_refused<F, Fut>(make: F)
where
    F: FnOnce(Duration, u32) -> Fut,
    Fut: Future<Output = (Arc<dyn Queue>, Arc<dyn Queue>)>,
{
    let (queue, _) = make(VISIBILITY, 5).await;
    queue.send("m", Duration::ZERO).await.unwrap();
    let m = receive_all(&*queue, 1, Duration::from_secs(5)).await.remove(0);
    queue.delete(&m.receipt_handle).await.unwrap();
    assert!(queue.change_visibility(&m.receipt_handle, Duration::ZERO).await.is_err());
}
