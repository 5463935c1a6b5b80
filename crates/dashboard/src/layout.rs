//! What every dashboard page shares: the document, the header with its navigation and the
//! sign-out form, notices, and how times, rates, statuses and attempt logs are shown. maud
//! escapes every value; nothing in the dashboard is marked pre-escaped.

use maud::{DOCTYPE, Markup, html};

use relay_core::Timestamp;
use relay_core::app::DeliveryWithAttempts;
use relay_core::domain::{DeliveryStatus, TenantId};
use relay_core::ports::DeliveryStats;

/// What every signed-in page needs for its header and forms.
#[derive(Debug)]
pub struct Frame<'a> {
    pub tenant: &'a TenantId,
    pub csrf: &'a str,
}

/// The navigation entries; `current` is marked for assistive technology and the stylesheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Webhooks,
    Events,
}

pub struct Head<'a> {
    pub title: &'a str,
    /// Reload the page every this many seconds (the overview).
    pub refresh: Option<u32>,
}

pub fn document(head: Head<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(seconds) = head.refresh { meta http-equiv="refresh" content=(seconds); }
                title { (head.title) " · webhook-relay" }
                link rel="stylesheet" href="/dashboard/assets/app.css";
            }
            body { (body) }
        }
    }
}

pub fn page(frame: &Frame<'_>, section: Section, head: Head<'_>, content: Markup) -> Markup {
    let link = |href: &str, label: &str, this: Section| {
        html! { a href=(href) aria-current=[(this == section).then_some("page")] { (label) } }
    };
    let title = head.title.to_owned();
    document(
        head,
        html! {
            a.skip href="#main" { "Skip to content" }
            header {
                span.brand { "webhook-relay" }
                nav aria-label="Dashboard" {
                    (link("/dashboard", "Overview", Section::Overview))
                    (link("/dashboard/webhooks", "Webhooks", Section::Webhooks))
                    (link("/dashboard/events", "Events", Section::Events))
                }
                span.muted { "tenant " (frame.tenant.as_str()) }
                form method="post" action="/dashboard/sign-out" {
                    input type="hidden" name="csrf" value=(frame.csrf);
                    button.link type="submit" { "Sign out" }
                }
            }
            main #main { h1 { (title) } (content) }
        },
    )
}

/// A page with one message (a refusal, a failure) and the way back.
pub fn message(title: &str, text: &str) -> Markup {
    let head = Head { title, refresh: None };
    document(
        head,
        html! { main #main { h1 { (title) } p { (text) } p { a href="/dashboard" { "Back to the dashboard" } } } },
    )
}

pub fn sign_in(error: Option<&str>) -> Markup {
    document(
        Head { title: "Sign in", refresh: None },
        html! {
            main #main {
                form.panel.sign-in method="post" action="/dashboard/sign-in" {
                    h1 { "Sign in" }
                    p.muted { "Use your tenant's API key. It is exchanged for a session cookie and not kept." }
                    @if let Some(error) = error { p.error role="alert" { (error) } }
                    label for="api_key" { "API key" }
                    input #api_key type="password" name="api_key" autocomplete="current-password" required autofocus;
                    p { button type="submit" { "Sign in" } }
                }
            }
        },
    )
}

/// A line saying what the last action did, or `None`.
pub fn notice(text: Option<&str>) -> Markup {
    html! { @if let Some(text) = text { p.notice role="status" { (text) } } }
}

pub fn when(at: Timestamp) -> String {
    at.to_datetime().format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

pub fn millis(ms: Option<f64>) -> String {
    ms.map_or_else(|| "—".to_owned(), |ms| format!("{ms:.0} ms"))
}

pub fn card(label: &str, value: impl std::fmt::Display, class: &str) -> Markup {
    // One `class` attribute: maud would write the shorthand and the attribute as two.
    html! { div.card { div.label { (label) } div class=(format!("value {class}")) { (value) } } }
}

pub fn stats_cards(stats: &DeliveryStats) -> Markup {
    html! {
        (card("Deliveries", stats.deliveries, ""))
        (card("Succeeded", stats.succeeded, if stats.succeeded > 0 { "ok" } else { "" }))
        (card("Retrying", stats.retrying + stats.pending, if stats.retrying + stats.pending > 0 { "warn" } else { "" }))
        (card("Failed", stats.failed, if stats.failed > 0 { "bad" } else { "" }))
        (card("Success rate", percent(stats.success_rate), ""))
        (card("p95 latency", millis(stats.p95_latency_ms), ""))
    }
}

pub fn status(status: DeliveryStatus) -> Markup {
    let class = match status {
        DeliveryStatus::Succeeded => "ok",
        DeliveryStatus::Failed => "bad",
        DeliveryStatus::Pending | DeliveryStatus::Retrying => "warn",
    };
    html! { span class=(format!("status {class}")) { (status.as_str()) } }
}

/// A delivery's attempts, oldest first, in a disclosure the keyboard can open.
pub fn attempts(delivery: &DeliveryWithAttempts) -> Markup {
    let count = delivery.attempts.len();
    html! {
        details.attempts {
            summary { (count) @if count == 1 { " attempt" } @else { " attempts" } }
            @if count > 0 {
                div.table-wrap {
                    table.stack {
                        thead { tr { th { "#" } th { "When" } th { "Trigger" } th { "Status" } th { "Duration" } th { "Error" } th { "Response" } } }
                        tbody {
                            @for attempt in &delivery.attempts {
                                tr {
                                    td data-label="#" { (attempt.number) }
                                    td data-label="When" { (when(attempt.created_at)) }
                                    td data-label="Trigger" { (attempt.trigger.as_str()) }
                                    td data-label="Status" {
                                        @match attempt.status_code {
                                            Some(code) if (200..300).contains(&code) => span.ok { (code) },
                                            Some(code) => span.bad { (code) },
                                            None => span.muted { "—" },
                                        }
                                    }
                                    td data-label="Duration" { (attempt.duration_ms) " ms" }
                                    td.break data-label="Error" { (attempt.error.as_deref().unwrap_or("")) }
                                    td data-label="Response" { @if let Some(body) = &attempt.response_body { pre.excerpt { (body) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
