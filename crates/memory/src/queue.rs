//! A queue with SQS semantics, in memory: delay, visibility timeout, receive count, change of
//! visibility, and redrive to a dead-letter queue on the receive after `maxReceiveCount`. Made
//! [`MemoryQueue::ordered`], it is an SQS FIFO queue: message groups, each received one message
//! at a time in send order.

use std::collections::{BTreeSet, HashMap, VecDeque};
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

/// The receives after which an ordered queue moves a message to its dead-letter queue,
/// whatever [`MemoryQueue::with_dead_letter`] said: a retry or a deferral of an ordered delivery
/// is a visibility change of the same message, which is then received again, so its receive
/// count measures how long its webhook has been held back, not whether it is poison. The
/// deployed FIFO queue's redrive says the same.
pub const ORDERED_MAX_RECEIVE_COUNT: u32 = 1000;

#[derive(Debug)]
pub struct MemoryQueue {
    state: Mutex<State>,
    changed: Notify,
    visibility_timeout: Duration,
    redrive: Option<Redrive>,
    backlog: Option<Arc<Backlog>>,
    /// FIFO: see [`MemoryQueue::ordered`].
    ordered: bool,
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
/// receipt handle starts with, and a group's next message is at the front of its group.
#[derive(Debug, Default)]
struct State {
    messages: HashMap<u64, Message>,
    /// Every message that may be received, by when it is next visible, then by send order, so
    /// receives are FIFO among visible messages, like a standard queue at low volume. Of a
    /// group, only its head is here: the others wait in `groups` until it is gone.
    schedule: BTreeSet<(Instant, u64)>,
    /// Each group's messages in send order, its head first (only while it has messages).
    groups: HashMap<String, VecDeque<u64>>,
    next_seq: u64,
}

#[derive(Debug)]
struct Message {
    id: String,
    body: String,
    /// Its message group, on an ordered queue (none: a group of its own).
    group: Option<String>,
    visible_at: Instant,
    receive_count: u32,
    receipt_handle: Option<String>,
}

impl State {
    /// Adds a message, receivable at `visible_at` unless its group has an earlier one.
    fn insert(&mut self, group: Option<String>, body: String, visible_at: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let behind_head = group.as_ref().is_some_and(|group| {
            let members = self.groups.entry(group.clone()).or_default();
            members.push_back(seq);
            members.len() > 1
        });
        if !behind_head {
            self.schedule.insert((visible_at, seq));
        }
        let message =
            Message { id: Uuid::new_v4().to_string(), body, group, visible_at, receive_count: 0, receipt_handle: None };
        self.messages.insert(seq, message);
    }

    fn reschedule(&mut self, seq: u64, visible_at: Instant) {
        if let Some(message) = self.messages.get_mut(&seq) {
            self.schedule.remove(&(message.visible_at, seq));
            message.visible_at = visible_at;
            self.schedule.insert((visible_at, seq));
        }
    }

    /// Removes a message; the next of its group, if any, becomes receivable (from `now` at
    /// the earliest), which the result says.
    fn remove(&mut self, seq: u64, now: Instant) -> (Option<Message>, bool) {
        let Some(message) = self.messages.remove(&seq) else { return (None, false) };
        crate::shrink_if_sparse(&mut self.messages);
        self.schedule.remove(&(message.visible_at, seq));
        let promoted = message.group.as_deref().is_some_and(|group| self.advance(group, seq, now));
        (Some(message), promoted)
    }

    /// Takes `head` off the front of `group` and schedules the next message.
    fn advance(&mut self, group: &str, head: u64, now: Instant) -> bool {
        let Some(members) = self.groups.get_mut(group) else { return false };
        if members.front() != Some(&head) {
            // Only heads are received, so only heads are deleted or redriven; kept consistent
            // anyway.
            members.retain(|seq| *seq != head);
            return false;
        }
        members.pop_front();
        let Some(&next) = members.front() else {
            self.groups.remove(group);
            crate::shrink_if_sparse(&mut self.groups);
            return false;
        };
        let Some(message) = self.messages.get_mut(&next) else { return false };
        message.visible_at = message.visible_at.max(now);
        self.schedule.insert((message.visible_at, next));
        true
    }
}

impl MemoryQueue {
    pub fn new(visibility_timeout: Duration) -> Self {
        Self {
            state: Mutex::default(),
            changed: Notify::new(),
            visibility_timeout,
            redrive: None,
            backlog: None,
            ordered: false,
        }
    }

    /// Counts this queue's messages in `backlog`, shared with other queues.
    pub fn with_backlog(mut self, backlog: Arc<Backlog>) -> Self {
        self.backlog = Some(backlog);
        self
    }

    /// Makes it a FIFO queue, as SQS FIFO: a message sent with [`Queue::send_grouped`] belongs
    /// to its group, whose messages are received in send order, and none while an earlier one
    /// is in flight (received and not deleted, however long a visibility change hides it).
    /// Plain sends are each a group of their own, and their delay is not applied (SQS FIFO
    /// refuses a message's own delay). Its redrive allows [`ORDERED_MAX_RECEIVE_COUNT`]
    /// receives.
    pub fn ordered(mut self) -> Self {
        self.ordered = true;
        if let Some(redrive) = &mut self.redrive {
            redrive.max_receive_count = ORDERED_MAX_RECEIVE_COUNT;
        }
        self
    }

    /// Moves a message to `dead_letter` on the receive after its `max_receive_count`-th (on an
    /// ordered queue, [`ORDERED_MAX_RECEIVE_COUNT`]).
    pub fn with_dead_letter(mut self, dead_letter: Arc<MemoryQueue>, max_receive_count: u32) -> Self {
        let max_receive_count = if self.ordered { ORDERED_MAX_RECEIVE_COUNT } else { max_receive_count };
        self.redrive = Some(Redrive { dead_letter, max_receive_count });
        self
    }

    /// Adds `(group, body)` messages, in order.
    fn push_all(&self, messages: impl IntoIterator<Item = (Option<String>, String)>, delay: Duration) {
        let visible_at = Instant::now() + delay;
        let mut state = lock(&self.state);
        let mut pushed: usize = 0;
        for (group, body) in messages {
            state.insert(group, body, visible_at);
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
        let mut promoted = false;
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
                let (message, next) = state.remove(seq, now);
                dead.extend(message);
                promoted |= next;
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
        if promoted && taken.len() == max {
            // A dead head's successor is receivable now: by another receiver, this one is full.
            self.changed.notify_one();
        }
        if let Some(backlog) = self.backlog.as_ref().filter(|_| !dead.is_empty()) {
            backlog.remove(dead.len());
        }
        if let Some(redrive) = &self.redrive {
            for message in dead {
                tracing::warn!(message_id = %message.id, receive_count = message.receive_count, "message moved to the dead-letter queue");
                redrive.dead_letter.push_all([(None, message.body)], Duration::ZERO);
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
    /// On an ordered queue the delay is not applied, as on SQS FIFO.
    async fn send(&self, body: &str, delay: Duration) -> Result<()> {
        let delay = if self.ordered { Duration::ZERO } else { delay };
        self.push_all([(None, body.to_owned())], delay);
        Ok(())
    }

    async fn send_batch(&self, bodies: &[String]) -> Result<()> {
        self.push_all(bodies.iter().map(|body| (None, body.clone())), Duration::ZERO);
        Ok(())
    }

    fn ordered(&self) -> bool {
        self.ordered
    }

    async fn send_grouped(&self, messages: &[(String, String)]) -> Result<()> {
        if !self.ordered {
            return Err(Error::Internal("this queue keeps no order: send_grouped needs a FIFO queue".into()));
        }
        self.push_all(messages.iter().map(|(group, body)| (Some(group.clone()), body.clone())), Duration::ZERO);
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
        let now = Instant::now();
        let (removed, promoted) = self.with_handle(receipt_handle, |state, seq| {
            let (message, promoted) = state.remove(seq, now);
            (message.is_some(), promoted)
        })?;
        if let Some(backlog) = self.backlog.as_ref().filter(|_| removed) {
            backlog.remove(1);
        }
        if promoted {
            // Its group's next message is receivable now.
            self.changed.notify_one();
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

    fn grouped(messages: &[(&str, &str)]) -> Vec<(String, String)> {
        messages.iter().map(|(group, body)| ((*group).to_owned(), (*body).to_owned())).collect()
    }

    fn bodies(messages: &[ReceivedMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.body.as_str()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_ordered_queue_gives_each_group_one_message_at_a_time_in_order() {
        let q = queue().ordered();
        assert!(Queue::ordered(&q));
        q.send_grouped(&grouped(&[("a", "a1"), ("a", "a2"), ("b", "b1"), ("a", "a3")])).await.unwrap();
        let first = receive_now(&q).await;
        assert_eq!(bodies(&first), ["a1", "b1"], "each group's head, nothing behind it");
        assert!(receive_now(&q).await.is_empty(), "both groups are held by their head in flight");

        q.delete(&first[0].receipt_handle).await.unwrap();
        let a2 = receive_now(&q).await.remove(0);
        assert_eq!((a2.body.as_str(), a2.receive_count), ("a2", 1));

        // A retry: the head is hidden for a while, and its group waits for it.
        q.change_visibility(&a2.receipt_handle, Duration::from_secs(5)).await.unwrap();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(receive_now(&q).await.is_empty(), "a3 waits behind a2");
        tokio::time::advance(Duration::from_secs(1)).await;
        let again = receive_now(&q).await.remove(0);
        assert_eq!((again.body.as_str(), again.receive_count), ("a2", 2));
        q.delete(&again.receipt_handle).await.unwrap();
        assert_eq!(bodies(&receive_now(&q).await), ["a3"]);
        assert_eq!(q.depth().await.unwrap(), QueueDepth { in_flight: 2, ..QueueDepth::default() });
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_waits_while_its_head_is_invisible_after_a_timeout() {
        let q = queue().ordered();
        q.send_grouped(&grouped(&[("g", "1"), ("g", "2")])).await.unwrap();
        let head = receive_now(&q).await.remove(0);
        tokio::time::advance(VISIBILITY - Duration::from_millis(1)).await;
        assert!(receive_now(&q).await.is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        let again = receive_now(&q).await;
        assert_eq!(bodies(&again), ["1"], "the head comes back, not the next message");
        assert!(q.delete(&head.receipt_handle).await.is_err(), "the first receive's handle is stale");
    }

    #[tokio::test(start_paused = true)]
    async fn plain_sends_to_an_ordered_queue_are_groups_of_their_own_without_delay() {
        let q = queue().ordered();
        q.send("x", Duration::from_secs(60)).await.unwrap();
        q.send_batch(&["y".into(), "z".into()]).await.unwrap();
        q.send_grouped(&grouped(&[("g", "1")])).await.unwrap();
        assert_eq!(bodies(&receive_now(&q).await), ["x", "y", "z", "1"], "a delay is not applied on a FIFO queue");
        assert!(queue().send_grouped(&grouped(&[("g", "1")])).await.is_err(), "a standard queue keeps no order");
    }

    #[tokio::test(start_paused = true)]
    async fn deleting_a_head_wakes_a_long_poll_for_the_next() {
        let q = Arc::new(queue().ordered());
        q.send_grouped(&grouped(&[("g", "1"), ("g", "2")])).await.unwrap();
        let head = receive_now(&q).await.remove(0);
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.receive(10, Duration::from_secs(20)).await.unwrap() })
        };
        tokio::time::advance(Duration::from_secs(1)).await;
        q.delete(&head.receipt_handle).await.unwrap();
        let started = Instant::now();
        assert_eq!(bodies(&waiter.await.unwrap()), ["2"]);
        assert!(Instant::now() - started < Duration::from_secs(1), "woken by the delete");
    }

    #[tokio::test(start_paused = true)]
    async fn an_ordered_queue_redrives_after_a_thousand_receives_and_frees_the_group() {
        let dlq = Arc::new(queue());
        // Either order of the builders: the ordered redrive's count wins.
        let later = queue().ordered().with_dead_letter(dlq.clone(), 3);
        let q = queue().with_dead_letter(dlq.clone(), 3).ordered();
        for q in [&later, &q] {
            q.send_grouped(&grouped(&[("g", "stuck"), ("g", "next")])).await.unwrap();
            for expected in 1..=ORDERED_MAX_RECEIVE_COUNT {
                let m = receive_now(q).await;
                assert_eq!(bodies(&m), ["stuck"]);
                assert_eq!(m[0].receive_count, expected);
                q.change_visibility(&m[0].receipt_handle, Duration::ZERO).await.unwrap();
            }
            let next = receive_now(q).await;
            assert_eq!(bodies(&next), ["next"], "the head moved to the DLQ; its group goes on");
            let dead = receive_now(&dlq).await;
            assert_eq!(bodies(&dead), ["stuck"]);
            dlq.delete(&dead[0].receipt_handle).await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_ordered_queue_counts_in_the_shared_backlog() {
        let backlog = Backlog::new(3);
        let q = queue().ordered().with_backlog(backlog.clone());
        q.send_grouped(&grouped(&[("g", "1"), ("g", "2"), ("h", "1")])).await.unwrap();
        assert_eq!(backlog.held(), 3);
        assert!(q.full().is_some());
        for m in receive_now(&q).await {
            q.delete(&m.receipt_handle).await.unwrap();
        }
        assert_eq!(backlog.held(), 1);
        let last = receive_now(&q).await;
        assert_eq!(bodies(&last), ["2"]);
        q.delete(&last[0].receipt_handle).await.unwrap();
        assert_eq!(backlog.held(), 0);
        assert!(lock(&q.state).groups.is_empty(), "an empty group is forgotten");
    }
}
