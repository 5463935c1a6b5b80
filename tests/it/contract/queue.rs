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

// FIFO (the ordered lane). Each case gets a factory: `visibility timeout -> a FIFO queue`. SQS
// may return several messages of one group in one receive (in order), so the cases that watch
// a group being held receive one message at a time.

/// Receives one message, waiting up to `wait`.
async fn receive_one(queue: &dyn Queue, wait: Duration) -> Option<ReceivedMessage> {
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if let Some(message) = queue.receive(1, Duration::from_millis(500)).await.unwrap().pop() {
            return Some(message);
        }
    }
    None
}

fn grouped(messages: &[(&str, &str)]) -> Vec<(String, String)> {
    messages.iter().map(|(group, body)| ((*group).to_owned(), (*body).to_owned())).collect()
}

pub async fn fifo_keeps_each_groups_order<F, Fut>(make: F)
where
    F: FnOnce(Duration) -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    let queue = make(VISIBILITY).await;
    assert!(queue.ordered());
    // 23 messages (three batches of sends), two groups interleaved.
    let sent: Vec<(String, String)> = (0..23)
        .map(|i| if i % 3 == 2 { ("b".into(), format!("b{i}")) } else { ("a".into(), format!("a{i}")) })
        .collect();
    queue.send_grouped(&sent).await.unwrap();
    queue.send_grouped(&[]).await.unwrap();
    let mut received: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while received.len() < sent.len() && tokio::time::Instant::now() < deadline {
        for message in queue.receive(10, Duration::from_millis(500)).await.unwrap() {
            assert_eq!(message.receive_count, 1, "{} came back: a group was not held", message.body);
            queue.delete(&message.receipt_handle).await.unwrap();
            received.push(message.body);
        }
    }
    for group in ["a", "b"] {
        let expected: Vec<&str> = sent.iter().filter(|(g, _)| g == group).map(|(_, b)| b.as_str()).collect();
        let got: Vec<&str> = received.iter().map(String::as_str).filter(|b| b.starts_with(group)).collect();
        assert_eq!(got, expected, "group {group} in send order");
    }
}

pub async fn fifo_holds_a_group_while_its_head_is_in_flight<F, Fut>(make: F)
where
    F: FnOnce(Duration) -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    let queue = make(VISIBILITY).await;
    queue.send_grouped(&grouped(&[("g", "g1"), ("g", "g2")])).await.unwrap();
    let head = receive_one(&*queue, Duration::from_secs(5)).await.expect("the head");
    assert_eq!(head.body, "g1");
    assert!(queue.receive(10, Duration::from_secs(1)).await.unwrap().is_empty(), "g2 waits while g1 is in flight");

    // Other groups flow meanwhile.
    queue.send_grouped(&grouped(&[("h", "h1")])).await.unwrap();
    let other = receive_all(&*queue, 1, Duration::from_secs(5)).await;
    assert_eq!(other.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["h1"]);
    queue.delete(&other[0].receipt_handle).await.unwrap();

    queue.delete(&head.receipt_handle).await.unwrap();
    let next = receive_one(&*queue, Duration::from_secs(5)).await.expect("the next once the head is deleted");
    assert_eq!((next.body.as_str(), next.receive_count), ("g2", 1));
    queue.delete(&next.receipt_handle).await.unwrap();
}

pub async fn fifo_holds_a_group_while_its_head_waits_out_a_visibility_change<F, Fut>(make: F)
where
    F: FnOnce(Duration) -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    let queue = make(Duration::from_secs(30)).await;
    queue.send_grouped(&grouped(&[("g", "g1"), ("g", "g2")])).await.unwrap();
    let head = receive_one(&*queue, Duration::from_secs(5)).await.expect("the head");
    // A retry of the head: hidden for 2 s, its group held back meanwhile.
    queue.change_visibility(&head.receipt_handle, Duration::from_secs(2)).await.unwrap();
    let started = tokio::time::Instant::now();
    queue.send_grouped(&grouped(&[("h", "h1")])).await.unwrap();
    let other = receive_one(&*queue, Duration::from_secs(5)).await.expect("another group's message");
    assert_eq!(other.body, "h1", "only the other group flows");
    queue.delete(&other.receipt_handle).await.unwrap();
    while started.elapsed() < Duration::from_millis(1500) {
        assert!(queue.receive(1, Duration::from_millis(300)).await.unwrap().is_empty(), "g2 waits behind g1");
    }

    let again = receive_one(&*queue, Duration::from_secs(5)).await.expect("the head, once visible again");
    assert_eq!((again.body.as_str(), again.receive_count), ("g1", 2), "the head comes back first");
    assert!(started.elapsed() >= Duration::from_millis(1500), "back after {:?}", started.elapsed());
    assert!(queue.receive(1, Duration::from_millis(500)).await.unwrap().is_empty(), "still held by the head");
    queue.delete(&again.receipt_handle).await.unwrap();
    let next = receive_one(&*queue, Duration::from_secs(5)).await.expect("the next once the head is deleted");
    assert_eq!(next.body, "g2");
    queue.delete(&next.receipt_handle).await.unwrap();
}

/// Plain sends to a FIFO queue work, each message a group of its own, and a delay is not
/// applied (SQS FIFO refuses a message's own delay).
pub async fn fifo_takes_plain_sends_without_their_delay<F, Fut>(make: F)
where
    F: FnOnce(Duration) -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    let queue = make(VISIBILITY).await;
    queue.send("later", Duration::from_secs(60)).await.unwrap();
    queue.send_batch(&["x".into(), "y".into()]).await.unwrap();
    let got = receive_all(&*queue, 3, Duration::from_secs(5)).await;
    let bodies: HashSet<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, HashSet::from(["later", "x", "y"]));
}
