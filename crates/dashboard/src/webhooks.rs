//! The webhook pages: the list with each webhook's status and success rate, the create form
//! with an event-type picker, a webhook's page (statistics, signing secret, recovery, recent
//! deliveries with every attempt and a retry button each), and the forms behind them. Every
//! form posts back here with the session's CSRF token ([`Posted`]) and ends in a redirect to
//! a page that says what happened (`?notice=`), so reloading never repeats an action.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::layout::{Frame, Head, Section, attempts, notice, page, percent, stats_cards, status, when};
use super::{Operator, Posted, Query, WebPath, WebState, failure, html};
use relay_core::app::{DeliveryWithAttempts, WebhookState};
use relay_core::domain::{DeliveryStatus, Page, PageRequest, Webhook, WebhookInput};
use relay_core::ports::{Circuit, CircuitState, DeliveryStats};
use relay_core::{Error, Timestamp};

const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);
const LIST_LIMIT: usize = 50;
const DELIVERIES_LIMIT: usize = 25;

fn detail_url(id: &str, notice: &str) -> String {
    format!("/dashboard/webhooks/{id}?notice={notice}")
}

/// What a `?notice=` says; unknown values say nothing (the text is never taken from the URL).
fn notice_text(query: &Query) -> Option<String> {
    let text = match query.get("notice")? {
        "created" => "Webhook created. Reveal its signing secret below to set up your receiver.",
        "enabled" => "Webhook enabled: new events are delivered to it again.",
        "disabled" => "Webhook disabled: no events are delivered to it until it is enabled.",
        "deleted" => "Webhook deleted.",
        "retried" => "Retried: the delivery succeeded.",
        "retry-failed" => "Retried: the attempt failed. Its details are in the delivery's attempts.",
        "recovered" => {
            let n: u64 = query.get("n").and_then(|n| n.parse().ok()).unwrap_or(0);
            return Some(format!("{n} failed deliveries put back on the queue."));
        }
        _ => return None,
    };
    Some(text.to_owned())
}

/// The page request from `?cursor=`; a cursor that is not ours starts from the newest.
fn page_request(query: &Query, limit: usize) -> PageRequest {
    PageRequest::parse(Some(&limit.to_string()), None, query.get("cursor"), limit)
        .unwrap_or(PageRequest { limit, ..PageRequest::default() })
}

pub async fn list(State(state): State<WebState>, operator: Operator, query: Query) -> Response {
    let admin = &state.management.admin;
    let listed = match admin.list(&operator.session.tenant, &page_request(&query, LIST_LIMIT)).await {
        Ok(listed) => listed,
        Err(err) => return failure(err),
    };
    let since = Timestamp::now() - DAY;
    let mut rows = Vec::with_capacity(listed.items.len());
    for webhook in &listed.items {
        match state.management.dashboard.webhook_stats(webhook.id, since).await {
            Ok(stats) => rows.push((webhook, stats)),
            Err(err) => return failure(err),
        }
    }
    let frame = operator.frame();
    html(StatusCode::OK, render_list(&frame, &rows, listed.next_cursor.as_deref(), notice_text(&query).as_deref()))
}

fn active_badge(webhook: &Webhook) -> Markup {
    html! {
        @if webhook.is_active { span.status.ok { "active" } }
        @else {
            span.status.bad { "disabled" }
            @if let Some(reason) = &webhook.disabled_reason { br; span.muted { (reason) } }
        }
    }
}

fn event_types(webhook: &Webhook) -> String {
    webhook.event_types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
}

fn render_list(
    frame: &Frame<'_>,
    rows: &[(&Webhook, DeliveryStats)],
    next: Option<&str>,
    notice_text: Option<&str>,
) -> Markup {
    page(
        frame,
        Section::Webhooks,
        Head { title: "Webhooks", refresh: None },
        html! {
            (notice(notice_text))
            p { a.button href="/dashboard/webhooks/new" { "New webhook" } }
            @if rows.is_empty() {
                p.muted { "No webhooks yet." }
            } @else {
                div.table-wrap {
                    table.stack {
                        thead { tr { th { "Name" } th { "URL" } th { "Event types" } th { "Status" } th { "Success (24 h)" } th { "Deliveries (24 h)" } } }
                        tbody {
                            @for (webhook, stats) in rows {
                                tr {
                                    td data-label="Name" { a href=(format!("/dashboard/webhooks/{}", webhook.id)) { (webhook.name) } }
                                    td.break data-label="URL" { code { (webhook.url.as_str()) } }
                                    td data-label="Event types" { (event_types(webhook)) }
                                    td data-label="Status" { (active_badge(webhook)) }
                                    td data-label="Success (24 h)" { (percent(stats.success_rate)) }
                                    td data-label="Deliveries (24 h)" { (stats.deliveries) }
                                }
                            }
                        }
                    }
                }
                @if let Some(cursor) = next { p { a href=(format!("/dashboard/webhooks?cursor={cursor}")) { "Older webhooks" } } }
            }
        },
    )
}

/// What the create form holds: as typed, so a refused form comes back filled in.
#[derive(Debug, Default)]
struct Draft {
    name: String,
    url: String,
    event_types: Vec<String>,
    /// As typed: names separated by commas or spaces.
    channels: String,
    /// JSON, as typed.
    filter: String,
    /// `Name: value`, a header a line, as typed.
    headers: String,
    timeout_ms: String,
    max_retries: String,
    retry_delay_ms: String,
    max_in_flight: String,
    rate_limit: String,
    /// Checked: `"ordered"`.
    ordered: bool,
}

impl Draft {
    fn from_form(posted: &Posted) -> Self {
        Self {
            name: posted.field("name").unwrap_or_default().to_owned(),
            url: posted.field("url").unwrap_or_default().trim().to_owned(),
            event_types: posted.fields("eventTypes").map(str::to_owned).collect(),
            channels: posted.field("channels").unwrap_or_default().trim().to_owned(),
            filter: posted.field("filter").unwrap_or_default().trim().to_owned(),
            headers: posted.field("headers").unwrap_or_default().trim().to_owned(),
            timeout_ms: posted.field("timeoutMs").unwrap_or_default().trim().to_owned(),
            max_retries: posted.field("maxRetries").unwrap_or_default().trim().to_owned(),
            retry_delay_ms: posted.field("retryDelayMs").unwrap_or_default().trim().to_owned(),
            max_in_flight: posted.field("maxInFlight").unwrap_or_default().trim().to_owned(),
            rate_limit: posted.field("rateLimit").unwrap_or_default().trim().to_owned(),
            ordered: posted.field("ordering") == Some("ordered"),
        }
    }

    /// Whether anything under the form's disclosure was filled in (it then opens).
    fn has_advanced(&self) -> bool {
        let typed = [
            &self.filter,
            &self.headers,
            &self.timeout_ms,
            &self.max_retries,
            &self.retry_delay_ms,
            &self.max_in_flight,
            &self.rate_limit,
        ];
        self.ordered || typed.iter().any(|text| !text.is_empty())
    }

    /// The API's input, or what in the text fields cannot become one (the rest the API checks).
    fn input(&self) -> Result<WebhookInput, Vec<String>> {
        let mut problems = Vec::new();
        let filter = match self.filter.as_str() {
            "" => None,
            text => serde_json::from_str(text).map_err(|e| problems.push(format!("filter: is not JSON ({e})"))).ok(),
        };
        let mut headers = serde_json::Map::new();
        for (i, line) in self.headers.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
            match line.split_once(':') {
                Some((name, value)) => {
                    headers.insert(name.trim().to_owned(), serde_json::Value::String(value.trim().to_owned()));
                }
                None => problems.push(format!("headers: line {} is not Name: value", i + 1)),
            }
        }
        let mut number = |field: &str, text: &str| match text {
            "" => None,
            text => text.parse::<u64>().map_err(|_| problems.push(format!("{field}: must be a whole number"))).ok(),
        };
        let timeout_ms = number("timeoutMs", &self.timeout_ms);
        let max_retries = number("maxRetries", &self.max_retries).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let retry_delay_ms = number("retryDelayMs", &self.retry_delay_ms);
        let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let max_in_flight = number("maxInFlight", &self.max_in_flight).map(small);
        let rate_limit = number("rateLimit", &self.rate_limit).map(small);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(WebhookInput {
            name: Some(self.name.clone()),
            url: Some(self.url.clone()),
            event_types: Some(self.event_types.clone()),
            channels: Some(self.channels.split([',', ' ']).filter(|c| !c.is_empty()).map(str::to_owned).collect()),
            filter: filter.map(Some),
            headers: Some(headers),
            timeout_ms: timeout_ms.map(Some),
            max_retries: max_retries.map(Some),
            retry_delay_ms: retry_delay_ms.map(Some),
            max_in_flight: max_in_flight.map(Some),
            rate_limit: rate_limit.map(Some),
            ordering: Some(if self.ordered { "ordered" } else { "unordered" }.to_owned()),
            ..WebhookInput::default()
        })
    }
}

pub async fn new_form(State(state): State<WebState>, operator: Operator) -> Response {
    let frame = operator.frame();
    html(StatusCode::OK, render_form(&state, &frame, &Draft::default(), &[]))
}

pub async fn create(State(state): State<WebState>, posted: Posted) -> Response {
    let draft = Draft::from_form(&posted);
    let input = match draft.input() {
        Ok(input) => input,
        Err(problems) => {
            let frame = posted.operator.frame();
            return html(StatusCode::UNPROCESSABLE_ENTITY, render_form(&state, &frame, &draft, &problems));
        }
    };
    match state.management.admin.create(&posted.operator.session.tenant, input).await {
        Ok(webhook) => Redirect::to(&detail_url(&webhook.id.to_string(), "created")).into_response(),
        Err(Error::Validation { message, details }) => {
            let frame = posted.operator.frame();
            html(
                StatusCode::UNPROCESSABLE_ENTITY,
                render_form(&state, &frame, &draft, &super::problems(&message, &details)),
            )
        }
        Err(err) => failure(err),
    }
}

fn render_form(state: &WebState, frame: &Frame<'_>, draft: &Draft, problems: &[String]) -> Markup {
    page(
        frame,
        Section::Webhooks,
        Head { title: "New webhook", refresh: None },
        html! {
            form.panel method="post" action="/dashboard/webhooks" {
                input type="hidden" name="csrf" value=(frame.csrf);
                @if !problems.is_empty() {
                    div.error role="alert" { p { "The webhook was not created:" } ul { @for p in problems { li { (p) } } } }
                }
                label for="name" { "Name" }
                input #name type="text" name="name" value=(draft.name) required maxlength="255";
                label for="url" { "URL" }
                input #url type="url" name="url" value=(draft.url) required placeholder="https://example.com/webhooks";
                label for="channels" { "Channels (optional)" }
                input #channels type="text" name="channels" value=(draft.channels) placeholder="eu, orders:priority"
                    aria-describedby="channels-help";
                p.muted #channels-help { "Only events carrying one of these channels are delivered; leave empty for every event of the types below." }
                fieldset.types {
                    legend { "Event types" }
                    @for event_type in state.management.admin.event_types() {
                        @let id = format!("type-{}", event_type.as_str());
                        label.check for=(id) {
                            input #(id) type="checkbox" name="eventTypes" value=(event_type.as_str())
                                checked[draft.event_types.iter().any(|t| t == event_type.as_str())];
                            " " (event_type.as_str())
                        }
                    }
                }
                details.advanced open[draft.has_advanced()] {
                    summary { "Filter, headers, schedule and flow (optional)" }
                    label for="filter" { "Filter (JSON)" }
                    textarea #filter name="filter" rows="3" placeholder=r#"{"payload.status": "hired"}"# aria-describedby="filter-help" { (draft.filter) }
                    p.muted #filter-help { "Only events passing it are delivered: keys eventType, source, tenant or payload.<path>; operators $eq $ne $in $nin $exists $gt $gte $lt $lte, $and $or." }
                    label for="headers" { "Headers (one Name: value a line)" }
                    textarea #headers name="headers" rows="3" placeholder="Authorization: Bearer ..." { (draft.headers) }
                    label for="timeoutMs" { "Timeout (ms)" }
                    input #timeoutMs type="number" name="timeoutMs" min="1" value=(draft.timeout_ms) placeholder="the relay's";
                    label for="maxRetries" { "Retries" }
                    input #maxRetries type="number" name="maxRetries" min="0" value=(draft.max_retries) placeholder="the relay's";
                    label for="retryDelayMs" { "First retry after (ms)" }
                    input #retryDelayMs type="number" name="retryDelayMs" min="1" value=(draft.retry_delay_ms) placeholder="the relay's";
                    label for="maxInFlight" { "Deliveries in flight at most" }
                    input #maxInFlight type="number" name="maxInFlight" min="1" max="1000" value=(draft.max_in_flight) placeholder="the relay's";
                    label for="rateLimit" { "Rate limit (deliveries per second)" }
                    input #rateLimit type="number" name="rateLimit" min="1" max="10000" value=(draft.rate_limit) placeholder="none";
                    label.check for="ordering" {
                        input #ordering type="checkbox" name="ordering" value="ordered" checked[draft.ordered];
                        " Ordered: one at a time, in the order events were accepted; a failing delivery holds back the later ones"
                    }
                }
                p { button type="submit" { "Create webhook" } " " a href="/dashboard/webhooks" { "Cancel" } }
            }
        },
    )
}

pub async fn detail(
    State(state): State<WebState>,
    operator: Operator,
    WebPath(id): WebPath<String>,
    query: Query,
) -> Response {
    let admin = &state.management.admin;
    let webhook = match admin.get(&operator.session.tenant, &id).await {
        Ok(webhook) => webhook,
        Err(err) => return failure(err),
    };
    let filter = query.get("status").and_then(DeliveryStatus::parse);
    let dashboard = &state.management.dashboard;
    let page = page_request(&query, DELIVERIES_LIMIT);
    let loaded = tokio::try_join!(
        dashboard.webhook_stats(webhook.id, Timestamp::now() - DAY),
        dashboard.webhook_stats(webhook.id, Timestamp::from_millis(0)),
        admin.deliveries(&operator.session.tenant, &id, filter, &page),
    );
    let (day, all, deliveries) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => return failure(err),
    };
    let frame = operator.frame();
    let view = Detail {
        state: admin.state(&webhook).await,
        webhook: &webhook,
        day: &day,
        all: &all,
        deliveries: &deliveries,
        filter,
        notice: notice_text(&query),
    };
    html(StatusCode::OK, render_detail(&frame, &view))
}

struct Detail<'a> {
    webhook: &'a Webhook,
    state: WebhookState,
    day: &'a DeliveryStats,
    all: &'a DeliveryStats,
    deliveries: &'a Page<DeliveryWithAttempts>,
    filter: Option<DeliveryStatus>,
    notice: Option<String>,
}

/// A webhook's breaker: closed, or open until when, or half-open (probing), with its run of
/// failures.
fn circuit_badge(circuit: &Circuit) -> Markup {
    let class = match circuit.state {
        CircuitState::Closed => "status ok",
        CircuitState::Open => "status bad",
        CircuitState::HalfOpen => "status warn",
    };
    html! {
        span class=(class) { (circuit.state.as_str()) }
        @if let Some(until) = circuit.open_until { " until " (when(until)) }
        @if circuit.failures > 0 { " · " (circuit.failures) " failed in a row" }
    }
}

/// A form of one button that posts to `action` with the CSRF token.
fn button_form(frame: &Frame<'_>, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(frame.csrf);
            button class=(class) type="submit" { (label) }
        }
    }
}

/// The last block of a UUID: its random part, enough to tell rows apart on one page (the
/// first block of a UUIDv7 is its time, the same for everything in the same minute).
pub(super) fn short_id(id: &str) -> &str {
    id.rsplit('-').next().unwrap_or(id)
}

const STATUSES: [DeliveryStatus; 4] =
    [DeliveryStatus::Pending, DeliveryStatus::Retrying, DeliveryStatus::Succeeded, DeliveryStatus::Failed];

fn render_detail(frame: &Frame<'_>, view: &Detail<'_>) -> Markup {
    let webhook = view.webhook;
    let base = format!("/dashboard/webhooks/{}", webhook.id);
    let day_ago = (Timestamp::now() - DAY).to_datetime().format("%Y-%m-%dT%H:%M").to_string();
    page(
        frame,
        Section::Webhooks,
        Head { title: &webhook.name, refresh: None },
        html! {
            (notice(view.notice.as_deref()))
            dl.facts {
                dt { "URL" } dd.break { code { (webhook.url.as_str()) } }
                dt { "Event types" } dd { (event_types(webhook)) }
                dt { "Channels" } dd {
                    @if webhook.channels.is_empty() { span.muted { "any" } }
                    @else { (webhook.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")) }
                }
                @if let Some(filter) = &webhook.filter {
                    dt { "Filter" } dd.break { code { (filter.as_json().to_string()) } }
                }
                @let schedule = &webhook.schedule;
                @if schedule.timeout_ms.is_some() || schedule.max_retries.is_some() || schedule.retry_delay_ms.is_some() {
                    dt { "Schedule" } dd {
                        @if let Some(ms) = schedule.timeout_ms { "timeout " (ms) " ms" br; }
                        @if let Some(n) = schedule.max_retries { (n) " retries" br; }
                        @if let Some(ms) = schedule.retry_delay_ms { "first retry after " (ms) " ms, doubling" }
                    }
                }
                dt { "Flow" } dd {
                    (view.state.max_in_flight) " in flight at most"
                    @if let Some(rate) = schedule.rate_limit { br; (rate) " per second at most" }
                    br; (schedule.ordering.as_str())
                }
                dt { "Circuit" } dd { (circuit_badge(&view.state.circuit)) }
                @if !webhook.headers.is_empty() {
                    dt { "Headers" } dd.break {
                        @for (name, value) in webhook.headers.masked() {
                            code { (name) ": " (value.as_str().unwrap_or_default()) } br;
                        }
                    }
                }
                dt { "Status" } dd { (active_badge(webhook)) }
                dt { "Created" } dd { (when(webhook.created_at)) }
                dt { "Id" } dd { code { (webhook.id.to_string()) } }
            }
            div.actions {
                @if webhook.is_active {
                    (button_form(frame, &format!("{base}/disable"), "Disable", "secondary"))
                } @else {
                    (button_form(frame, &format!("{base}/enable"), "Enable", ""))
                }
                a.button.danger href=(format!("{base}/delete")) { "Delete…" }
            }
            h2 { "Last 24 hours" }
            div.cards { (stats_cards(view.day)) }
            h2 { "All time" }
            div.cards { (stats_cards(view.all)) }
            h2 { "Signing secret" }
            p.muted { "Receivers verify each delivery's signature with this secret. Rotating it keeps the old one signing for a grace period." }
            div.actions {
                (button_form(frame, &format!("{base}/secret"), "Reveal secret", "secondary"))
                (button_form(frame, &format!("{base}/secret/rotate"), "Rotate secret", "secondary"))
            }
            h2 { "Recover failed deliveries" }
            form.inline-fields method="post" action=(format!("{base}/recover")) {
                input type="hidden" name="csrf" value=(frame.csrf);
                label for="since" { "Failed since (UTC)" }
                input #since type="datetime-local" name="since" value=(day_ago) required;
                button type="submit" { "Recover" }
            }
            h2 #deliveries { "Recent deliveries" }
            form.inline-fields method="get" action=(base) {
                label for="status" { "Status" }
                select #status name="status" {
                    option value="" selected[view.filter.is_none()] { "any" }
                    @for s in STATUSES { option value=(s.as_str()) selected[view.filter == Some(s)] { (s.as_str()) } }
                }
                button.secondary type="submit" { "Filter" }
            }
            @if view.deliveries.items.is_empty() {
                p.muted { "No deliveries." }
            } @else {
                div.table-wrap {
                    table.deliveries.stack {
                        thead { tr { th { "Event" } th { "Type" } th { "Status" } th { "Last response" } th { "Created" } th { span.visually-hidden { "Retry" } } } }
                        // Each delivery is two rows: its state, then its attempts across the table.
                        @for d in &view.deliveries.items {
                            @let event = d.delivery.event_id.to_string();
                            tbody {
                                tr #(format!("delivery-{event}")) {
                                    td data-label="Event" { a href=(format!("/dashboard/events/{event}")) title=(event) { code { (short_id(&event)) } } }
                                    td data-label="Type" { (d.delivery.event_type.as_str()) }
                                    td data-label="Status" { (status(d.delivery.status)) }
                                    td.break data-label="Last response" {
                                        @if let Some(code) = d.delivery.last_status_code { (code) " " }
                                        span.muted { (d.delivery.last_error.as_deref().unwrap_or("")) }
                                    }
                                    td data-label="Created" { (when(d.delivery.created_at)) }
                                    td { (button_form(frame, &format!("{base}/retry/{event}"), "Retry", "secondary")) }
                                }
                                tr.attempts-row #(format!("attempts-{event}")) { td colspan="6" { (attempts(d)) } }
                            }
                        }
                    }
                }
                @if let Some(cursor) = &view.deliveries.next_cursor {
                    @let status = view.filter.map(|s| s.as_str()).unwrap_or("");
                    p { a href=(format!("{base}?status={status}&cursor={cursor}#deliveries")) { "Older deliveries" } }
                }
            }
        },
    )
}

pub async fn enable(State(state): State<WebState>, WebPath(id): WebPath<String>, posted: Posted) -> Response {
    set_active(&state, &posted, &id, true).await
}

pub async fn disable(State(state): State<WebState>, WebPath(id): WebPath<String>, posted: Posted) -> Response {
    set_active(&state, &posted, &id, false).await
}

async fn set_active(state: &WebState, posted: &Posted, id: &str, active: bool) -> Response {
    let input = WebhookInput { is_active: Some(active), ..WebhookInput::default() };
    match state.management.admin.update(&posted.operator.session.tenant, id, input).await {
        Ok(_) => Redirect::to(&detail_url(id, if active { "enabled" } else { "disabled" })).into_response(),
        Err(err) => failure(err),
    }
}

pub async fn delete_form(State(state): State<WebState>, operator: Operator, WebPath(id): WebPath<String>) -> Response {
    let webhook = match state.management.admin.get(&operator.session.tenant, &id).await {
        Ok(webhook) => webhook,
        Err(err) => return failure(err),
    };
    let frame = operator.frame();
    let content = html! {
        form.panel method="post" action=(format!("/dashboard/webhooks/{}/delete", webhook.id)) {
            input type="hidden" name="csrf" value=(frame.csrf);
            p { "Delete " strong { (webhook.name) } " (" code.break { (webhook.url.as_str()) } ")?" }
            p.muted { "No more events are delivered to it, and this cannot be undone." }
            p {
                button.danger type="submit" { "Delete webhook" }
                " " a href=(format!("/dashboard/webhooks/{}", webhook.id)) { "Cancel" }
            }
        }
    };
    html(StatusCode::OK, page(&frame, Section::Webhooks, Head { title: "Delete webhook", refresh: None }, content))
}

pub async fn delete(State(state): State<WebState>, WebPath(id): WebPath<String>, posted: Posted) -> Response {
    match state.management.admin.delete(&posted.operator.session.tenant, &id).await {
        Ok(()) => Redirect::to("/dashboard/webhooks?notice=deleted").into_response(),
        Err(err) => failure(err),
    }
}

pub async fn reveal_secret(State(state): State<WebState>, WebPath(id): WebPath<String>, posted: Posted) -> Response {
    match state.management.admin.get(&posted.operator.session.tenant, &id).await {
        Ok(webhook) => secret_page(&state, &posted, &webhook, "Signing secret"),
        Err(err) => failure(err),
    }
}

pub async fn rotate_secret(State(state): State<WebState>, WebPath(id): WebPath<String>, posted: Posted) -> Response {
    match state.management.admin.rotate_secret(&posted.operator.session.tenant, &id, None).await {
        Ok(webhook) => secret_page(&state, &posted, &webhook, "Secret rotated"),
        Err(err) => failure(err),
    }
}

/// The secret, on a page answered to a POST only and never stored by the browser.
fn secret_page(state: &WebState, posted: &Posted, webhook: &Webhook, title: &str) -> Response {
    let secret = match state.management.admin.secret(webhook) {
        Ok(secret) => secret,
        Err(err) => return failure(err),
    };
    let frame = posted.operator.frame();
    let grace = webhook.previous_secret.as_ref().and(webhook.previous_secret_expires_at);
    let content = html! {
        p { "The signing secret of " strong { (webhook.name) } ":" }
        p { code.secret #secret { (secret.expose()) } }
        @if let Some(until) = grace { p.muted { "The previous secret also signs until " (when(until)) "." } }
        p.muted { "Keep it out of logs and chat. This page is not cached." }
        p { a href=(format!("/dashboard/webhooks/{}", webhook.id)) { "Back to the webhook" } }
    };
    let mut response = html(StatusCode::OK, page(&frame, Section::Webhooks, Head { title, refresh: None }, content));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn retry(
    State(state): State<WebState>,
    WebPath((id, event_id)): WebPath<(String, String)>,
    posted: Posted,
) -> Response {
    match state.management.admin.retry(&posted.operator.session.tenant, &id, &event_id).await {
        Ok(retried) => {
            let notice = if retried.delivery.status == DeliveryStatus::Succeeded { "retried" } else { "retry-failed" };
            Redirect::to(&format!("{}#delivery-{event_id}", detail_url(&id, notice))).into_response()
        }
        Err(err) => failure(err),
    }
}

/// A `datetime-local` value (minutes or seconds, read as UTC) or an RFC 3339 timestamp.
fn parse_since(value: &str) -> Option<Timestamp> {
    let value = value.trim();
    if let Some(at) = Timestamp::parse_rfc3339(value) {
        return Some(at);
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(value, format).ok())
        .map(|at| Timestamp::from(at.and_utc()))
}

pub async fn recover(State(state): State<WebState>, WebPath(id): WebPath<String>, posted: Posted) -> Response {
    let now = Timestamp::now();
    let Some(since) = posted.field("since").and_then(parse_since).filter(|since| *since < now) else {
        return failure(Error::validation("since", "must be a date and time in the past, like 2026-11-28T10:00"));
    };
    match state.management.admin.recover(&posted.operator.session.tenant, &id, since, now).await {
        Ok(n) => Redirect::to(&format!("{}&n={n}", detail_url(&id, "recovered"))).into_response(),
        Err(err) => failure(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_datetime_local_as_utc_and_rfc3339() {
        let expected = Timestamp::from_millis(1_795_860_000_000); // 2026-11-28T10:00:00Z
        assert_eq!(parse_since("2026-11-28T10:00"), Some(expected));
        assert_eq!(parse_since("2026-11-28T10:00:00"), Some(expected));
        assert_eq!(parse_since("2026-11-28T11:00:00+01:00"), Some(expected));
        for bad in ["", "yesterday", "2026-13-01T00:00", "2026-11-28"] {
            assert_eq!(parse_since(bad), None, "{bad}");
        }
    }
}
