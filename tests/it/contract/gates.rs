//! Contract of the admission gates: the breaker, the caps in flight per webhook and per tenant,
//! and the pace of a rate limit. Every case uses webhooks and a tenant of its own, so the cases
//! share a Redis without meeting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_core::Timestamp;
use relay_core::domain::{TenantId, WebhookId};
use relay_core::ports::{Admission, Ask, Circuit, CircuitState, Deferral, GatePolicy, Gates, Lease, PACE_HORIZON};

/// Room for the skew between Redis's clock, this process's and the calls in between.
const SKEW: Duration = Duration::from_millis(30);

fn policy() -> GatePolicy {
    GatePolicy {
        tenant_max_in_flight: 100,
        failure_threshold: 3,
        cooldown: Duration::from_millis(400),
        lease: Duration::from_secs(30),
    }
}

fn tenant() -> TenantId {
    TenantId::parse(&format!("t{}", uuid::Uuid::new_v4().simple())).unwrap()
}

fn ask(webhook: WebhookId, tenant: &TenantId, max_in_flight: u32, rate_limit: Option<u32>) -> Ask {
    Ask { webhook, tenant: tenant.clone(), max_in_flight, rate_limit }
}

fn lease(admission: &Admission) -> Lease {
    match admission {
        Admission::Go(lease) => lease.clone(),
        Admission::Defer { reason, .. } => panic!("deferred ({}), expected to go", reason.as_str()),
    }
}

fn deferral(admission: &Admission) -> (Duration, Deferral) {
    match admission {
        Admission::Defer { after, reason } => (*after, *reason),
        Admission::Go(lease) => panic!("went ({lease:?}), expected a deferral"),
    }
}

fn reason(admission: &Admission) -> Option<Deferral> {
    match admission {
        Admission::Go(_) => None,
        Admission::Defer { reason, .. } => Some(*reason),
    }
}

fn near(actual: Duration, expected: Duration) -> bool {
    actual.abs_diff(expected) <= SKEW
}

/// Whether `actual`, read some time after `since`, is `expected` less the time gone by since
/// then: a loaded machine may take a while between the calls.
fn counts_down(actual: Duration, expected: Duration, since: Instant) -> bool {
    actual <= expected + SKEW && actual + since.elapsed() + SKEW >= expected
}

async fn circuit(gates: &Arc<dyn Gates>, webhook: WebhookId) -> Circuit {
    gates.circuits(&[webhook]).await.unwrap()[0]
}

/// Releases each lease with the same outcome.
async fn release(gates: &Arc<dyn Gates>, leases: &[Lease], succeeded: Option<bool>, policy: &GatePolicy) {
    let done: Vec<_> = leases.iter().map(|lease| (lease.clone(), succeeded)).collect();
    gates.release(&done, policy).await.unwrap();
}

pub async fn the_in_flight_cap_holds_per_webhook(gates: Arc<dyn Gates>) {
    let (policy, tenant, webhook) = (policy(), tenant(), WebhookId::new());
    let answers = gates.admit(&vec![ask(webhook, &tenant, 2, None); 3], &policy).await.unwrap();
    assert_eq!(answers.len(), 3);
    let held = [lease(&answers[0]), lease(&answers[1])];
    assert_ne!(held[0].token, held[1].token);
    assert!(!held[0].probe && held[0].wait == Duration::ZERO);
    assert_eq!(reason(&answers[2]), Some(Deferral::WebhookBusy));
    let other = gates.admit(&[ask(WebhookId::new(), &tenant, 2, None)], &policy).await.unwrap();
    lease(&other[0]);

    release(&gates, &held[..1], None, &policy).await;
    let again = gates.admit(&vec![ask(webhook, &tenant, 2, None); 2], &policy).await.unwrap();
    lease(&again[0]);
    assert_eq!(reason(&again[1]), Some(Deferral::WebhookBusy), "the released slot is taken again");
    assert_eq!(gates.admit(&[], &policy).await.unwrap(), vec![]);
    gates.release(&[], &policy).await.unwrap();
}

pub async fn the_in_flight_cap_holds_per_tenant(gates: Arc<dyn Gates>) {
    let policy = GatePolicy { tenant_max_in_flight: 3, ..policy() };
    let (tenant, first, second) = (tenant(), WebhookId::new(), WebhookId::new());
    let asks = [
        ask(first, &tenant, 10, None),
        ask(second, &tenant, 10, None),
        ask(first, &tenant, 10, None),
        ask(second, &tenant, 10, None),
    ];
    let answers = gates.admit(&asks, &policy).await.unwrap();
    let held: Vec<_> = answers[..3].iter().map(lease).collect();
    assert_eq!(reason(&answers[3]), Some(Deferral::TenantBusy));
    let elsewhere = gates.admit(&[ask(WebhookId::new(), &self::tenant(), 10, None)], &policy).await.unwrap();
    lease(&elsewhere[0]);

    release(&gates, &held[1..2], Some(true), &policy).await;
    let again = gates.admit(&asks[2..], &policy).await.unwrap();
    lease(&again[0]);
    assert_eq!(reason(&again[1]), Some(Deferral::TenantBusy));
}

/// No lease, no turn, no probe for an ask refused at a later gate.
pub async fn a_refused_ask_takes_nothing(gates: Arc<dyn Gates>) {
    // The tenant's cap refuses after the webhook's let it through: the webhook's slot is free.
    let policy = GatePolicy { tenant_max_in_flight: 1, ..policy() };
    let (tenant, first, second) = (tenant(), WebhookId::new(), WebhookId::new());
    let answers = gates.admit(&[ask(first, &tenant, 1, None), ask(second, &tenant, 1, None)], &policy).await.unwrap();
    let held = lease(&answers[0]);
    assert_eq!(reason(&answers[1]), Some(Deferral::TenantBusy));
    release(&gates, &[held], None, &policy).await;
    let answers = gates.admit(&[ask(second, &tenant, 1, None)], &policy).await.unwrap();
    lease(&answers[0]);

    // The pace refuses after both caps let it through: no lease.
    let (policy, tenant, webhook) = (self::policy(), self::tenant(), WebhookId::new());
    let answers = gates.admit(&vec![ask(webhook, &tenant, 3, Some(1)); 3], &policy).await.unwrap();
    lease(&answers[0]);
    assert!(near(lease(&answers[1]).wait, Duration::from_secs(1)), "a turn one second out is within the horizon");
    assert_eq!(reason(&answers[2]), Some(Deferral::RateLimited));
    let answers = gates.admit(&vec![ask(webhook, &tenant, 3, None); 2], &policy).await.unwrap();
    lease(&answers[0]);
    assert_eq!(reason(&answers[1]), Some(Deferral::WebhookBusy));

    // The webhook's cap refuses before the pace: no turn.
    let webhook = WebhookId::new();
    let answers = gates.admit(&vec![ask(webhook, &tenant, 1, Some(10)); 2], &policy).await.unwrap();
    let held = lease(&answers[0]);
    assert_eq!(reason(&answers[1]), Some(Deferral::WebhookBusy));
    release(&gates, &[held], None, &policy).await;
    let answers = gates.admit(&[ask(webhook, &tenant, 1, Some(10))], &policy).await.unwrap();
    assert!(lease(&answers[0]).wait <= Duration::from_millis(100), "the second turn, not the third");

    // Half-open, the webhook's cap refuses the would-be probe: the next ask probes.
    let policy = GatePolicy { failure_threshold: 1, cooldown: Duration::from_millis(100), ..policy };
    let webhook = WebhookId::new();
    let answers = gates.admit(&vec![ask(webhook, &tenant, 2, None); 2], &policy).await.unwrap();
    release(&gates, &[lease(&answers[0])], Some(false), &policy).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let answers =
        gates.admit(&[ask(webhook, &tenant, 1, None), ask(webhook, &tenant, 2, None)], &policy).await.unwrap();
    assert_eq!(reason(&answers[0]), Some(Deferral::WebhookBusy), "the other lease is still out");
    assert!(lease(&answers[1]).probe);
}

/// A lease ends on its own; the others taken later hold on.
pub async fn leases_expire(gates: Arc<dyn Gates>) {
    let policy = GatePolicy { tenant_max_in_flight: 3, lease: Duration::from_millis(400), ..policy() };
    let (tenant, webhook) = (tenant(), WebhookId::new());
    let one = |webhook| ask(webhook, &tenant, 1, None);
    let answers = gates.admit(&[ask(webhook, &tenant, 2, None), one(WebhookId::new())], &policy).await.unwrap();
    lease(&answers[0]);
    lease(&answers[1]);

    tokio::time::sleep(Duration::from_millis(200)).await;
    let answers = gates.admit(&vec![ask(webhook, &tenant, 2, None); 2], &policy).await.unwrap();
    lease(&answers[0]);
    assert_eq!(reason(&answers[1]), Some(Deferral::WebhookBusy));
    assert_eq!(reason(&gates.admit(&[one(WebhookId::new())], &policy).await.unwrap()[0]), Some(Deferral::TenantBusy));

    // The first two leases ended; the third has 150 ms to go.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let answers = gates.admit(&vec![ask(webhook, &tenant, 2, None); 2], &policy).await.unwrap();
    lease(&answers[0]);
    assert_eq!(reason(&answers[1]), Some(Deferral::WebhookBusy), "the later lease still holds");
    let answers = gates.admit(&[one(WebhookId::new()), one(WebhookId::new())], &policy).await.unwrap();
    lease(&answers[0]);
    assert_eq!(reason(&answers[1]), Some(Deferral::TenantBusy), "the later leases still hold");
}

pub async fn the_breaker_opens_probes_and_closes(gates: Arc<dyn Gates>) {
    let (policy, tenant, webhook) = (policy(), tenant(), WebhookId::new());
    let take = |n: usize| {
        let gates = gates.clone();
        let tenant = tenant.clone();
        async move {
            let answers = gates.admit(&vec![ask(webhook, &tenant, 10, None); n], &policy).await.unwrap();
            answers.iter().map(lease).collect::<Vec<_>>()
        }
    };

    // A success resets the run.
    let held = take(3).await;
    release(&gates, &held[..2], Some(false), &policy).await;
    assert_eq!(circuit(&gates, webhook).await, Circuit { state: CircuitState::Closed, failures: 2, open_until: None });
    release(&gates, &held[2..], Some(true), &policy).await;
    assert_eq!(circuit(&gates, webhook).await, Circuit::CLOSED);

    // The threshold opens it for the cool-down.
    let held = take(4).await;
    let failed = Instant::now();
    release(&gates, &held[..3], Some(false), &policy).await;
    let opened = circuit(&gates, webhook).await;
    assert_eq!((opened.state, opened.failures), (CircuitState::Open, 3));
    let open_until = opened.open_until.expect("open until");
    assert!(counts_down(Timestamp::now().until(open_until), policy.cooldown, failed), "{open_until}");
    let (remaining, asked) = (Timestamp::now().until(open_until), Instant::now());
    let (after, why) = deferral(&gates.admit(&[ask(webhook, &tenant, 10, None)], &policy).await.unwrap()[0]);
    assert_eq!(why, Deferral::CircuitOpen);
    assert!(counts_down(after, remaining, asked), "deferred {after:?}, until {open_until}");

    // After it, one probe at a time.
    tokio::time::sleep(Timestamp::now().until(open_until) + SKEW).await;
    let half_open = circuit(&gates, webhook).await;
    assert_eq!(half_open, Circuit { state: CircuitState::HalfOpen, failures: 3, open_until: None });
    let answers = gates.admit(&vec![ask(webhook, &tenant, 10, None); 2], &policy).await.unwrap();
    let probe = lease(&answers[0]);
    assert!(probe.probe);
    assert_eq!(deferral(&answers[1]), (policy.cooldown, Deferral::CircuitOpen));
    let later = gates.admit(&[ask(webhook, &tenant, 10, None)], &policy).await.unwrap();
    assert_eq!(deferral(&later[0]), (policy.cooldown, Deferral::CircuitOpen), "the probe is out");

    // The probe's failure opens it again.
    let failed = Instant::now();
    release(&gates, &[probe], Some(false), &policy).await;
    let reopened = circuit(&gates, webhook).await;
    assert_eq!((reopened.state, reopened.failures), (CircuitState::Open, 4));
    let open_until = reopened.open_until.expect("open until");
    assert!(counts_down(Timestamp::now().until(open_until), policy.cooldown, failed), "{open_until}");

    // The probe's success closes it.
    tokio::time::sleep(Timestamp::now().until(open_until) + SKEW).await;
    let probe = lease(&gates.admit(&[ask(webhook, &tenant, 10, None)], &policy).await.unwrap()[0]);
    assert!(probe.probe);
    release(&gates, &[probe], Some(true), &policy).await;
    assert_eq!(circuit(&gates, webhook).await, Circuit::CLOSED);
    let answers = gates.admit(&vec![ask(webhook, &tenant, 10, None); 2], &policy).await.unwrap();
    assert!(answers.iter().all(|a| !lease(a).probe));

    // A success while open (an attempt admitted before it opened) closes it too.
    let more = take(3).await;
    release(&gates, &more, Some(false), &policy).await;
    assert_eq!(circuit(&gates, webhook).await.state, CircuitState::Open);
    release(&gates, &held[3..], Some(true), &policy).await;
    assert_eq!(circuit(&gates, webhook).await, Circuit::CLOSED);
}

pub async fn the_pace_spaces_turns(gates: Arc<dyn Gates>) {
    let (policy, tenant, webhook) = (policy(), tenant(), WebhookId::new());
    let paced = ask(webhook, &tenant, 100, Some(10));
    let step = Duration::from_millis(100);
    let first = Instant::now();
    let waits: Vec<_> =
        gates.admit(&vec![paced.clone(); 5], &policy).await.unwrap().iter().map(|a| lease(a).wait).collect();
    assert!(waits[0] <= SKEW, "{waits:?}");
    assert!(waits.windows(2).all(|w| near(w[1] - w[0], step)), "{waits:?}");

    // The next batch goes on from the turn at 500 ms up to the horizon; past it, deferred
    // until the next turn is half the horizon away.
    let answers = gates.admit(&vec![paced.clone(); 12], &policy).await.unwrap();
    let waits: Vec<_> =
        answers.iter().map_while(|a| if let Admission::Go(l) = a { Some(l.wait) } else { None }).collect();
    assert!(counts_down(waits[0], 5 * step, first), "{waits:?}");
    assert!(waits.windows(2).all(|w| near(w[1] - w[0], step)), "{waits:?}");
    let last = waits[waits.len() - 1];
    assert!(last <= PACE_HORIZON && last + step > PACE_HORIZON, "{waits:?}");
    let (after, why) = deferral(&answers[waits.len()]);
    assert_eq!(why, Deferral::RateLimited);
    assert!(near(after, last + step - PACE_HORIZON / 2), "deferred {after:?} after {waits:?}");
    for refused in &answers[waits.len()..] {
        assert_eq!(deferral(refused), (after, Deferral::RateLimited), "a refused ask takes no turn");
    }
    let asked = Instant::now();
    let again = gates.admit(&[paced], &policy).await.unwrap();
    let (later, _) = deferral(&again[0]);
    assert!(counts_down(later, after, asked), "{later:?} after {after:?}: the refused asks took no turn");

    let unpaced = gates.admit(&[ask(webhook, &tenant, 100, None)], &policy).await.unwrap();
    assert_eq!(lease(&unpaced[0]).wait, Duration::ZERO, "no rate limit, no wait");
}

pub async fn an_unknown_webhook_is_closed(gates: Arc<dyn Gates>) {
    let circuits = gates.circuits(&[WebhookId::new(), WebhookId::new()]).await.unwrap();
    assert_eq!(circuits, vec![Circuit::CLOSED; 2]);
    assert!(gates.circuits(&[]).await.unwrap().is_empty());
}
