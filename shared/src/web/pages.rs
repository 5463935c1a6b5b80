//! The dashboard's pages, as maud templates: every value is HTML-escaped unless marked
//! otherwise, and nothing here is.

use maud::{DOCTYPE, Markup, html};

use crate::api::HealthReport;
use crate::app::Overview;
use crate::domain::{TenantId, Webhook};
use crate::ports::DeliveryStats;

/// What every signed-in page needs for its header.
#[derive(Debug)]
pub struct Frame<'a> {
    pub tenant: &'a TenantId,
    pub csrf: &'a str,
}

fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · webhook-relay" }
                link rel="stylesheet" href="/dashboard/assets/app.css";
            }
            body { (body) }
        }
    }
}

fn page(frame: &Frame<'_>, title: &str, content: Markup) -> Markup {
    document(
        title,
        html! {
            header {
                span.brand { "webhook-relay" }
                nav aria-label="Dashboard" {
                    a href="/dashboard" { "Overview" }
                    a href="/dashboard/webhooks" { "Webhooks" }
                }
                span.muted { "tenant " (frame.tenant.as_str()) }
                form method="post" action="/dashboard/sign-out" {
                    input type="hidden" name="csrf" value=(frame.csrf);
                    button.link type="submit" { "Sign out" }
                }
            }
            main { h1 { (title) } (content) }
        },
    )
}

/// A page with one message (a refusal, a failure) and the way back.
pub fn message(title: &str, text: &str) -> Markup {
    document(title, html! { main { h1 { (title) } p { (text) } p { a href="/dashboard" { "Back to the dashboard" } } } })
}

pub fn sign_in(error: Option<&str>) -> Markup {
    document(
        "Sign in",
        html! {
            main {
                form.sign-in method="post" action="/dashboard/sign-in" {
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

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn millis(ms: Option<f64>) -> String {
    ms.map_or_else(|| "—".to_owned(), |ms| format!("{ms:.0} ms"))
}

fn card(label: &str, value: impl std::fmt::Display, class: &str) -> Markup {
    html! { div.card { div.label { (label) } div.value class=(class) { (value) } } }
}

fn stats_cards(stats: &DeliveryStats) -> Markup {
    html! {
        (card("Deliveries", stats.deliveries, ""))
        (card("Succeeded", stats.succeeded, "ok"))
        (card("Retrying", stats.retrying + stats.pending, "warn"))
        (card("Failed", stats.failed, "bad"))
        (card("Success rate", percent(stats.success_rate), ""))
        (card("p95 latency", millis(stats.p95_latency_ms), ""))
    }
}

pub fn overview(frame: &Frame<'_>, overview: &Overview, health: &HealthReport) -> Markup {
    let depth = |depth: Option<crate::app::Depth>| {
        depth.map_or_else(|| "unavailable".to_owned(), |d| format!("{} waiting, {} in flight", d.visible + d.delayed, d.in_flight))
    };
    page(
        frame,
        "Overview",
        html! {
            h2 { "Last 24 hours" }
            div.cards { (stats_cards(&overview.last_24h)) }
            h2 { "Webhooks and queues" }
            div.cards {
                (card("Active webhooks", overview.webhooks.active, "ok"))
                (card("Disabled webhooks", overview.webhooks.disabled, if overview.webhooks.disabled > 0 { "warn" } else { "" }))
                (card("Queue", depth(overview.queue), ""))
                (card("Dead-letter queue", depth(overview.dead_letter_queue), if overview.dead_letter_queue.is_some_and(|d| d.visible > 0) { "bad" } else { "" }))
            }
            h2 { "Dependencies: " (health.status) }
            div.table-wrap {
                table {
                    thead { tr { th { "Dependency" } th { "Status" } th { "Latency" } th { "Error" } } }
                    tbody {
                        @for dependency in &health.dependencies {
                            tr {
                                td { (dependency.name) }
                                @if dependency.up { td.ok { "up" } } @else { td.bad { "down" } }
                                td { (dependency.latency_ms) " ms" }
                                td.muted { (dependency.error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            p.muted { "As of " (overview.generated_at.to_string()) }
        },
    )
}

pub fn webhooks(frame: &Frame<'_>, webhooks: &[Webhook]) -> Markup {
    page(
        frame,
        "Webhooks",
        html! {
            @if webhooks.is_empty() {
                p.muted { "No webhooks yet." }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr { th { "Name" } th { "URL" } th { "Event types" } th { "Status" } } }
                        tbody {
                            @for webhook in webhooks {
                                tr {
                                    td { (webhook.name) }
                                    td { code { (webhook.url.as_str()) } }
                                    td { @for (i, t) in webhook.event_types.iter().enumerate() { @if i > 0 { ", " } (t.as_str()) } }
                                    td {
                                        @if webhook.is_active { span.ok { "active" } }
                                        @else { span.bad { "disabled" } @if let Some(reason) = &webhook.disabled_reason { br; span.muted { (reason) } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
