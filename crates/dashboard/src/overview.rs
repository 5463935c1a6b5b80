//! `GET /dashboard`: the tenant's last 24 hours (counts, success rate, p95 latency and a chart
//! of deliveries by status per hour), webhooks, deliveries waiting and dependency health. The page
//! reloads itself every 30 seconds (a `<meta http-equiv="refresh">`: no script).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{Frame, Head, Section, card, page, stats_cards, when};
use super::{Operator, WebState, failure, html};
use relay_core::Timestamp;
use relay_core::app::Overview;
use relay_core::ports::TimelineBucket;
use relay_http_api::{DependencyStatus, HealthReport};

/// Hourly buckets over the last 24 hours.
const BUCKETS: u32 = 24;
const REFRESH_SECONDS: u32 = 30;

pub async fn overview(State(state): State<WebState>, operator: Operator) -> Response {
    let dashboard = &state.management.dashboard;
    let now = Timestamp::now();
    let tenant = &operator.session.tenant;
    let (overview, timeline) =
        match tokio::try_join!(dashboard.overview(tenant), dashboard.timeline(tenant, now, BUCKETS)) {
            Ok(both) => both,
            Err(err) => return failure(err),
        };
    let health = state.management.health.report().await;
    html(StatusCode::OK, render(&operator.frame(), &overview, &timeline, &health))
}

/// The dependency's status as the stylesheet colours it.
fn status_class(status: DependencyStatus) -> &'static str {
    match status {
        DependencyStatus::Up => "ok",
        DependencyStatus::Degraded => "warn",
        DependencyStatus::Down => "bad",
    }
}

fn render(frame: &Frame<'_>, overview: &Overview, timeline: &[TimelineBucket], health: &HealthReport) -> Markup {
    let waiting = overview.backlog.pending + overview.backlog.retrying;
    let retrying_class = if overview.backlog.retrying > 0 { "warn" } else { "" };
    let disabled_class = if overview.webhooks.disabled > 0 { "warn" } else { "" };
    page(
        frame,
        Section::Overview,
        Head { title: "Overview", refresh: Some(REFRESH_SECONDS) },
        html! {
            h2 { "Last 24 hours" }
            div.cards { (stats_cards(&overview.last_24h)) }
            (chart(timeline))
            h2 { "Webhooks and waiting deliveries" }
            div.cards {
                (card("Active webhooks", overview.webhooks.active, "ok"))
                (card("Disabled webhooks", overview.webhooks.disabled, disabled_class))
                (card("Waiting deliveries", waiting, ""))
                (card("Of them retrying", overview.backlog.retrying, retrying_class))
            }
            h2 { "Dependencies: " (health.status) }
            div.table-wrap {
                table {
                    thead { tr { th { "Dependency" } th { "Status" } th { "Latency" } } }
                    tbody {
                        @for dependency in &health.dependencies {
                            tr {
                                td data-label="Dependency" { (dependency.name) }
                                td data-label="Status" class=(status_class(dependency.status)) { (dependency.status.as_str()) }
                                td data-label="Latency" { (dependency.latency_ms) " ms" }
                            }
                        }
                    }
                }
            }
            p.muted { "As of " (when(overview.generated_at)) ". This page refreshes every " (REFRESH_SECONDS) " seconds." }
        },
    )
}

/// How many deliveries of one status a bucket holds.
type Count = fn(&TimelineBucket) -> u64;

/// The statuses in the order the bars stack them, bottom up, with their legend names.
const SERIES: [(&str, Count); 4] = [
    ("succeeded", |b| b.succeeded),
    ("retrying", |b| b.retrying),
    ("pending", |b| b.pending),
    ("failed", |b| b.failed),
];

/// Deliveries per hour as stacked bars, in inline SVG (drawn with presentation attributes and
/// classes, which the Content-Security-Policy allows, never inline styles). Each bar has a
/// `<title>` with its numbers, and the figure a text summary for screen readers.
fn chart(timeline: &[TimelineBucket]) -> Markup {
    const WIDTH: u64 = 720;
    const HEIGHT: u64 = 160;
    let peak = timeline.iter().map(TimelineBucket::total).max().unwrap_or(0).max(1);
    let slot = WIDTH / u64::try_from(timeline.len().max(1)).unwrap_or(1);
    let total: u64 = timeline.iter().map(TimelineBucket::total).sum();
    let summary = format!("{total} deliveries in the last 24 hours, at most {peak} in one hour");
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {WIDTH} {}", HEIGHT + 20)) role="img" aria-label=(summary) preserveAspectRatio="none" {
                line.axis x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
                @for (i, bucket) in timeline.iter().enumerate() {
                    @let x = slot * u64::try_from(i).unwrap_or(0);
                    g {
                        title { (bar_title(bucket)) }
                        @for (y, height, class) in stack(bucket, peak, HEIGHT) {
                            rect class=(class) x=(x + 2) y=(y) width=(slot.saturating_sub(4)) height=(height) {}
                        }
                        @if i % 6 == 0 {
                            text.tick x=(x + 2) y=(HEIGHT + 15) { (bucket.start.to_datetime().format("%H:%M")) }
                        }
                    }
                }
            }
            figcaption {
                "Deliveries per hour, by status now (UTC). "
                @for (name, _) in SERIES { span class=(format!("key s-{name}")) { (name) } " " }
            }
        }
    }
}

/// The rectangles of one bar: (top, height, class), bottom up.
fn stack(bucket: &TimelineBucket, peak: u64, height: u64) -> Vec<(u64, u64, String)> {
    let mut top = height;
    SERIES
        .iter()
        .filter_map(|(name, count)| {
            let n = count(bucket);
            (n > 0).then(|| {
                // At least one unit tall, so a single delivery is visible.
                let h = (n * height / peak).max(1).min(top);
                top -= h;
                (top, h, format!("s-{name}"))
            })
        })
        .collect()
}

fn bar_title(bucket: &TimelineBucket) -> String {
    format!(
        "{}: {} succeeded, {} retrying, {} pending, {} failed",
        bucket.start.to_datetime().format("%H:%M"),
        bucket.succeeded,
        bucket.retrying,
        bucket.pending,
        bucket.failed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(succeeded: u64, failed: u64) -> TimelineBucket {
        TimelineBucket { succeeded, failed, ..TimelineBucket::empty(Timestamp::from_millis(0)) }
    }

    #[test]
    fn bars_stack_to_scale_and_never_overflow() {
        assert_eq!(stack(&bucket(0, 0), 10, 160), vec![]);
        let full = stack(&bucket(6, 4), 10, 160);
        assert_eq!(full, vec![(64, 96, "s-succeeded".to_owned()), (0, 64, "s-failed".to_owned())]);
        // One delivery among thousands still shows.
        assert_eq!(stack(&bucket(0, 1), 5000, 160), vec![(159, 1, "s-failed".to_owned())]);
    }
}
