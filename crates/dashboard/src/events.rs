//! The events pages. An event becomes a tenant's when it is routed to one of the tenant's
//! webhooks, so these pages show the events the tenant's webhooks have deliveries of, never
//! the whole event store: the list (filters by event type and source, paged by cursor) and an
//! event's payload with its delivery to each of the tenant's webhooks.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{Frame, Head, Section, attempts, page, status, when};
use super::{Operator, Query, WebPath, WebState, failure, html};
use relay_core::app::TenantEvent;
use relay_core::domain::{Event, Page, PageRequest};

const LIMIT: usize = 25;

pub async fn list(State(state): State<WebState>, operator: Operator, query: Query) -> Response {
    let admin = &state.management.admin;
    let event_type = query.get("eventType").filter(|t| !t.is_empty());
    let source = query.get("source").map(str::trim).filter(|s| !s.is_empty());
    let page_request = match PageRequest::parse(Some(&LIMIT.to_string()), None, query.get("cursor"), LIMIT) {
        Ok(page) => page,
        Err(err) => return failure(err),
    };
    match admin.events(&operator.session.tenant, event_type, source, &page_request).await {
        Ok(events) => {
            let filters = Filters { event_type, source, types: admin.event_types().map(|t| t.as_str()).collect() };
            html(StatusCode::OK, render_list(&operator.frame(), &events, &filters))
        }
        Err(err) => failure(err),
    }
}

struct Filters<'a> {
    event_type: Option<&'a str>,
    source: Option<&'a str>,
    types: Vec<&'a str>,
}

impl Filters<'_> {
    /// The list's URL with these filters and `cursor`, encoded.
    fn url(&self, cursor: &str) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(t) = self.event_type {
            query.append_pair("eventType", t);
        }
        if let Some(s) = self.source {
            query.append_pair("source", s);
        }
        query.append_pair("cursor", cursor);
        format!("/dashboard/events?{}", query.finish())
    }
}

fn render_list(frame: &Frame<'_>, events: &Page<Event>, filters: &Filters<'_>) -> Markup {
    page(
        frame,
        Section::Events,
        Head { title: "Events", refresh: None },
        html! {
            p.muted { "Events delivered, or being delivered, to your webhooks; newest first." }
            form.inline-fields method="get" action="/dashboard/events" {
                label for="eventType" { "Event type" }
                select #eventType name="eventType" {
                    option value="" selected[filters.event_type.is_none()] { "any" }
                    @for t in &filters.types { option value=(t) selected[filters.event_type == Some(*t)] { (t) } }
                }
                label for="source" { "Source" }
                input #source type="text" name="source" value=(filters.source.unwrap_or("")) placeholder="any";
                button.secondary type="submit" { "Filter" }
            }
            @if events.items.is_empty() {
                p.muted { "No events." }
            } @else {
                div.table-wrap {
                    table.stack {
                        thead { tr { th { "Event" } th { "Type" } th { "Name" } th { "Source" } th { "Received" } } }
                        tbody {
                            @for event in &events.items {
                                tr {
                                    @let id = event.id.to_string();
                                    td data-label="Event" { a href=(format!("/dashboard/events/{id}")) title=(id) { code { (super::webhooks::short_id(&id)) } } }
                                    td data-label="Type" { (event.event_type.as_str()) }
                                    td.break data-label="Name" { (event.event_name) }
                                    td.break data-label="Source" { (event.source.as_deref().unwrap_or("—")) }
                                    td data-label="Received" { (when(event.created_at)) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(cursor) = &events.next_cursor { p { a href=(filters.url(cursor)) { "Older events" } } }
        },
    )
}

pub async fn detail(State(state): State<WebState>, operator: Operator, WebPath(id): WebPath<String>) -> Response {
    match state.management.admin.event(&operator.session.tenant, &id).await {
        Ok(event) => html(StatusCode::OK, render_detail(&operator.frame(), &event)),
        Err(err) => failure(err),
    }
}

fn render_detail(frame: &Frame<'_>, shown: &TenantEvent) -> Markup {
    let event = &shown.event;
    let payload = event.payload.pretty();
    page(
        frame,
        Section::Events,
        Head { title: &format!("Event {}", event.event_type.as_str()), refresh: None },
        html! {
            dl.facts {
                dt { "Id" } dd { code { (event.id.to_string()) } }
                dt { "Type" } dd { (event.event_type.as_str()) }
                dt { "Name" } dd.break { (event.event_name) }
                dt { "Source" } dd.break { (event.source.as_deref().unwrap_or("—")) }
                dt { "Received" } dd { (when(event.created_at)) }
            }
            h2 { "Payload" }
            pre.payload { (payload) }
            h2 { "Deliveries" }
            div.table-wrap {
                table.stack {
                    thead { tr { th { "Webhook" } th { "Status" } th { "Last response" } th { "Next attempt" } th { "Attempts" } } }
                    tbody {
                        @for (webhook, d) in &shown.deliveries {
                            tr {
                                td data-label="Webhook" {
                                    @match webhook {
                                        Some(w) => a href=(format!("/dashboard/webhooks/{}#delivery-{}", w.id, event.id)) { (w.name) },
                                        None => span.muted { "deleted webhook" },
                                    }
                                }
                                td data-label="Status" { (status(d.delivery.status)) }
                                td.break data-label="Last response" {
                                    @if let Some(code) = d.delivery.last_status_code { (code) " " }
                                    span.muted { (d.delivery.last_error.as_deref().unwrap_or("")) }
                                }
                                td data-label="Next attempt" { (d.delivery.next_attempt_at.map(when).unwrap_or_default()) }
                                td data-label="Attempts" { (attempts(d)) }
                            }
                        }
                    }
                }
            }
        },
    )
}
