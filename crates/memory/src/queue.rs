//! A queue with SQS semantics, in memory: delay, visibility timeout, receive count, change of
//! visibility, and redrive to a dead-letter queue on the receive after `maxReceiveCount`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};
use uuid::Uuid;

use crate::lock;
use relay_core::ports::{Queue, QueueDepth, ReceivedMessage};
use relay_core::{Error, Result};

/// The most messages one receive returns, as on SQS.
pub const MAX_BATCH: usize = 10;

#[derive(Debug)]
pub struct MemoryQueue {
    state: Mutex<State>,
    changed: Notify,
    visibility_timeout: Duration,
    redrive: Option<Redrive>,
    backlog: Option<Arc<Backlog>>,
}

/// How many messages queues that share it hold (the two lanes of relay-local), and how many
/// they may hold before [`Queue::full`] says so: in memory, the backlog is RAM.
#[derive(Debug)]
pub struct Backlog {
    held: AtomicUsize,
    max: usize,
}

/// How long a caller refused by a full backlog is asked to wait.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Backlog {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { held: AtomicUsize::new(0), max })
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.held.fetch_add(n, Ordering::Relaxed);
    }

    fn remove(&self, n: usize) {
        // Never below zero, whatever the order of concurrent updates.
        let _ = self.held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| Some(held.saturating_sub(n)));
    }
}

#[derive(Debug)]
struct Redrive {
    dead_letter: Arc<MemoryQueue>,
    max_receive_count: u32,
}

/// Every operation is O(log n) in the messages held: a receive takes from the front of the
/// schedule, a delete or visibility change finds its message by the sequence number its
/// receipt handle starts with.
#[derive(Debug, Default)]
struct State {
    messages: HashMap<u64, Message>,
    /// Every message by when it is next visible, then by send order, so receives are FIFO
    /// among visible messages, like a standard queue at low volume.
    schedule: BTreeSet<(Instant, u64)>,
    next_seq: u64,
}

#[derive(Debug)]
struct Message {
    id: String,
    body: String,
    visible_at: Instant,
    receive_count: u32,
    receipt_handle: Option<String>,
}

impl State {
    fn reschedule(&mut self, seq: u64, visible_at: Instant) {
        if let Some(message) = self.messages.get_mut(&seq) {
            self.schedule.remove(&(message.visible_at, seq));
            message.visible_at = visible_at;
            self.schedule.insert((visible_at, seq));
        }
    }

    fn remove(&mut self, seq: u64) -> Option<Message> {
        let message = self.messages.remove(&seq)?;
        crate::shrink_if_sparse(&mut self.messages);
        self.schedule.remove(&(message.visible_at, seq));
        Some(message)
    }
}

impl MemoryQueue {
    pub fn new(visibility_timeout: Duration) -> Self {
        Self { state: Mutex::default(), changed: Notify::new(), visibility_timeout, redrive: None, backlog: None }
    }

    /// Counts this queue's messages in `backlog`, shared with other queues.
    pub fn with_backlog(mut self, backlog: Arc<Backlog>) -> Self {
        self.backlog = Some(backlog);
        self
    }

    /// Moves a message to `dead_letter` on the receive after its `max_receive_count`-th.
    pub fn with_dead_letter(mut self, dead_letter: Arc<MemoryQueue>, max_receive_count: u32) -> Self {
        self.redrive = Some(Redrive { dead_letter, max_receive_count });
        self
    }

    fn push_all(&self, bodies: impl IntoIterator<Item = String>, delay: Duration) {
        let visible_at = Instant::now() + delay;
        let mut state = lock(&self.state);
        let mut pushed: usize = 0;
        for body in bodies {
            let seq = state.next_seq;
            state.next_seq += 1;
            let message =
                Message { id: Uuid::new_v4().to_string(), body, visible_at, receive_count: 0, receipt_handle: None };
            state.messages.insert(seq, message);
            state.schedule.insert((visible_at, seq));
            pushed += 1;
        }
        drop(state);
        if let Some(backlog) = &self.backlog {
            backlog.add(pushed);
        }
        if delay.is_zero() {
            // One waiting receiver per batch's worth: waking every poller for each message
            // would have them all scan for the same few.
            for _ in 0..pushed.div_ceil(MAX_BATCH) {
                self.changed.notify_one();
            }
        } else {
            // Sleepers recompute when to wake.
            self.changed.notify_waiters();
        }
    }

    /// Takes what is visible now; otherwise says when something next becomes visible.
    fn take_visible(&self, max: usize) -> (Vec<ReceivedMessage>, Option<Instant>) {
        let now = Instant::now();
        let hidden_until = now + self.visibility_timeout;
        let mut state = lock(&self.state);
        let mut taken = Vec::new();
        let mut dead = Vec::new();
        while taken.len() < max {
            let Some(&(visible_at, seq)) = state.schedule.first() else { break };
            if visible_at > now {
                break;
            }
            let Some(receive_count) = state.messages.get(&seq).map(|m| m.receive_count) else {
                state.schedule.remove(&(visible_at, seq));
                continue;
            };
            if let Some(redrive) = &self.redrive
                && receive_count >= redrive.max_receive_count
            {
                dead.extend(state.remove(seq));
                continue;
            }
            state.reschedule(seq, hidden_until);
            let Some(message) = state.messages.get_mut(&seq) else { continue };
            message.receive_count += 1;
            let handle = format!("{seq}#{}", Uuid::new_v4().simple());
            message.receipt_handle = Some(handle.clone());
            taken.push(ReceivedMessage {
                message_id: message.id.clone(),
                receipt_handle: handle,
                body: message.body.clone(),
                receive_count: message.receive_count,
            });
        }
        let next_visible = state.schedule.first().map(|(at, _)| *at);
        drop(state);
        if let Some(backlog) = self.backlog.as_ref().filter(|_| !dead.is_empty()) {
            backlog.remove(dead.len());
        }
        if let Some(redrive) = &self.redrive {
            for message in dead {
                tracing::warn!(message_id = %message.id, receive_count = message.receive_count, "message moved to the dead-letter queue");
                redrive.dead_letter.push_all([message.body], Duration::ZERO);
            }
        }
        (taken, next_visible)
    }

    fn with_handle<T>(&self, receipt_handle: &str, f: impl FnOnce(&mut State, u64) -> T) -> Result<T> {
        let mut state = lock(&self.state);
        let seq = receipt_handle
            .split_once('#')
            .and_then(|(seq, _)| seq.parse::<u64>().ok())
            .filter(|seq| state.messages.get(seq).is_some_and(|m| m.receipt_handle.as_deref() == Some(receipt_handle)))
            .ok_or_else(|| Error::Conflict {
                code: "receipt_handle_invalid",
                message: "the receipt handle is not that of a message's latest receive".into(),
            })?;
        Ok(f(&mut state, seq))
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, body: &str, delay: Duration) -> Result<()> {
        self.push_all([body.to_owned()], delay);
        Ok(())
    }

    async fn send_batch(&self, bodies: &[String]) -> Result<()> {
        self.push_all(bodies.iter().cloned(), Duration::ZERO);
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>> {
        let max = max.clamp(1, MAX_BATCH);
        let deadline = Instant::now() + wait;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (taken, next_visible) = self.take_visible(max);
            if !taken.is_empty() || Instant::now() >= deadline {
                return Ok(taken);
            }
            let wake = next_visible.map_or(deadline, |n| n.min(deadline));
            tokio::select! {
                () = &mut changed => {}
                () = sleep_until(wake) => {}
            }
        }
    }

    async fn delete(&self, receipt_handle: &str) -> Result<()> {
        let removed = self.with_handle(receipt_handle, |state, seq| state.remove(seq).is_some())?;
        if let Some(backlog) = self.backlog.as_ref().filter(|_| removed) {
            backlog.remove(1);
        }
        Ok(())
    }

    fn full(&self) -> Option<Duration> {
        self.backlog.as_ref().filter(|b| b.held() >= b.max).map(|_| FULL_RETRY_AFTER)
    }

    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<()> {
        self.with_handle(receipt_handle, |state, seq| state.reschedule(seq, Instant::now() + timeout))?;
        self.changed.notify_waiters();
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let now = Instant::now();
        let state = lock(&self.state);
        let mut depth = QueueDepth::default();
        for message in state.messages.values() {
            match (message.visible_at <= now, message.receipt_handle.is_some()) {
                (true, _) => depth.visible += 1,
                (false, true) => depth.in_flight += 1,
                (false, false) => depth.delayed += 1,
            }
        }
        Ok(depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VISIBILITY: Duration = Duration::from_secs(30);

    fn queue() -> MemoryQueue {
        MemoryQueue::new(VISIBILITY)
    }

    async fn receive_now(q: &MemoryQueue) -> Vec<ReceivedMessage> {
        q.receive(10, Duration::ZERO).await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_received_message_is_invisible_until_its_timeout() {
        let q = queue();
        q.send("a", Duration::ZERO).await.unwrap();
        let first = receive_now(&q).await;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].receive_count, 1);
        assert!(receive_now(&q).await.is_empty());
        tokio::time::advance(VISIBILITY - Duration::from_millis(1)).await;
        assert!(receive_now(&q).await.is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        let again = receive_now(&q).await;
        assert_eq!(again[0].receive_count, 2);
        assert_ne!(again[0].receipt_handle, first[0].receipt_handle);
    }

    #[tokio::test(start_paused = true)]
    async fn delay_hides_a_new_message() {
        let q = queue();
        q.send("later", Duration::from_secs(5)).await.unwrap();
        assert!(receive_now(&q).await.is_empty());
        assert_eq!(q.depth().await.unwrap(), QueueDepth { delayed: 1, ..QueueDepth::default() });
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(receive_now(&q).await.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn receives_at_most_ten() {
        let q = queue();
        let bodies: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        q.send_batch(&bodies).await.unwrap();
        let batch = q.receive(50, Duration::ZERO).await.unwrap();
        assert_eq!(batch.len(), 10);
        assert_eq!(batch[0].body, "0");
        assert_eq!(q.depth().await.unwrap(), QueueDepth { visible: 15, in_flight: 10, delayed: 0 });
    }

    #[tokio::test(start_paused = true)]
    async fn change_visibility_reschedules_and_delete_removes() {
        let q = queue();
        q.send("m", Duration::ZERO).await.unwrap();
        let m = receive_now(&q).await.remove(0);
        q.change_visibility(&m.receipt_handle, Duration::from_secs(2)).await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        let m2 = receive_now(&q).await.remove(0);
        assert!(q.delete(&m.receipt_handle).await.is_err(), "a stale handle must not delete");
        q.delete(&m2.receipt_handle).await.unwrap();
        tokio::time::advance(VISIBILITY * 2).await;
        assert!(receive_now(&q).await.is_empty());
        assert_eq!(q.depth().await.unwrap(), QueueDepth::default());
    }

    #[tokio::test(start_paused = true)]
    async fn change_visibility_to_zero_makes_it_visible_at_once() {
        let q = queue();
        q.send("m", Duration::ZERO).await.unwrap();
        let m = receive_now(&q).await.remove(0);
        q.change_visibility(&m.receipt_handle, Duration::ZERO).await.unwrap();
        assert_eq!(receive_now(&q).await.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn redrives_to_the_dead_letter_queue_after_max_receive_count() {
        let dlq = Arc::new(queue());
        let q = queue().with_dead_letter(dlq.clone(), 3);
        q.send("poison", Duration::ZERO).await.unwrap();
        for expected in 1..=3 {
            let m = receive_now(&q).await;
            assert_eq!(m[0].receive_count, expected);
            tokio::time::advance(VISIBILITY).await;
        }
        assert!(receive_now(&q).await.is_empty(), "the fourth receive moves it instead");
        let dead = receive_now(&dlq).await;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].body, "poison");
        assert_eq!(dead[0].receive_count, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_wakes_on_send_and_on_visibility() {
        let q = Arc::new(queue());
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.receive(10, Duration::from_secs(20)).await.unwrap() })
        };
        tokio::time::advance(Duration::from_secs(1)).await;
        q.send("hello", Duration::ZERO).await.unwrap();
        let got = waiter.await.unwrap();
        assert_eq!(got[0].body, "hello");

        let started = Instant::now();
        let got = q.receive(10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(got[0].receive_count, 2);
        assert_eq!(Instant::now() - started, VISIBILITY, "woke when the message became visible again");

        let started = Instant::now();
        assert!(q.receive(10, Duration::from_secs(3)).await.unwrap().is_empty());
        assert_eq!(Instant::now() - started, Duration::from_secs(3));
    }
}
