//! The dashboard end to end in headless Chromium (Debian's `chromium` and `chromium-driver`,
//! which `.ci/run` installs): an operator signs in, creates a webhook pointing at a test
//! receiver, sees an event posted through the API delivered on the webhook's page, sees the
//! next one fail, retries it from the page and sees it succeed. The keyboard reaches the
//! navigation. Then every page is saved as a screenshot, light and dark, laptop and phone
//! width, into `docs/screenshots/` (the README shows them).
//!
//! Without Chromium the test says SKIPPED, except under `CI=true`, where it fails.

mod webdriver;

use std::path::PathBuf;

use serde_json::json;

use crate::helpers::{ACME_KEY, Receiver, Reply, TestApp};
use webdriver::Browser;

fn screenshots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
}

#[tokio::test]
async fn an_operator_signs_in_creates_a_webhook_and_retries_a_failed_delivery() {
    if !Browser::available() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but chromium or chromedriver is missing");
        eprintln!("SKIPPED: install Debian's chromium and chromium-driver to run the browser test");
        return;
    }
    let app = TestApp::spawn_with(&[("WEBHOOK_MAX_RETRIES", "0")]).await;
    let receiver = Receiver::start().await;
    let browser = Browser::start().await;

    // Signed out, the dashboard sends the browser to the sign-in form.
    browser.goto(&app.url("/dashboard")).await;
    browser.wait_for_url("/dashboard/sign-in").await;
    let key = browser.find("#api_key").await;
    browser.type_into(&key, ACME_KEY).await;
    browser.click(&browser.find("form.sign-in button[type=submit]").await).await;
    browser.wait_for_url("/dashboard").await;
    assert!(!browser.source().await.contains(ACME_KEY));

    // The keyboard reaches the skip link, then the navigation.
    browser.press("\u{E004}").await;
    assert_eq!(browser.focused_text().await, "Skip to content");
    browser.press("\u{E004}\u{E004}").await;
    assert_eq!(browser.focused_text().await, "Webhooks");

    // Create a webhook through the form.
    browser.press("\u{E007}").await;
    browser.wait_for_url("/dashboard/webhooks").await;
    browser.click(&browser.find("a.button[href='/dashboard/webhooks/new']").await).await;
    browser.wait_for_url("/dashboard/webhooks/new").await;
    browser.type_into(&browser.find("#name").await, "Receiver in the test").await;
    browser.type_into(&browser.find("#url").await, &receiver.url()).await;
    browser.click(&browser.find("#type-job\\.created").await).await;
    browser.click(&browser.find("#type-job\\.updated").await).await;
    browser.click(&browser.find("form.panel button[type=submit]").await).await;
    let page = browser.wait_for_url("?notice=created").await;
    assert!(browser.source().await.contains("Webhook created."));

    // An event posted through the API shows up delivered.
    let delivered = app.send_event("job.created").await;
    let source = browser.reload_until(&format!("id=\"delivery-{delivered}\"")).await;
    assert!(source.contains("succeeded"));

    // The next one fails (no retries in this relay) and is retried from the page.
    receiver.always(Reply::status(500).body("{\"error\":\"maintenance\"}"));
    let failing = app.send_event("job.updated").await;
    let row = format!("#delivery-{failing}");
    browser.reload_until(&format!("id=\"delivery-{failing}\"")).await;
    for _ in 0..50 {
        if browser.text(&browser.find(&format!("{row} .status")).await).await == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        browser.goto(&page).await;
    }
    assert_eq!(browser.text(&browser.find(&format!("{row} .status")).await).await, "failed");
    receiver.always(Reply::status(200));
    browser.click(&browser.find(&format!("{row} button")).await).await;
    browser.wait_for_url("?notice=retried").await;
    assert!(browser.source().await.contains("Retried: the delivery succeeded."));
    assert_eq!(browser.text(&browser.find(&format!("{row} .status")).await).await, "succeeded");
    // Its attempts open from the keyboard-reachable disclosure.
    let attempts_row = format!("#attempts-{failing}");
    browser.click(&browser.find(&format!("{attempts_row} details summary")).await).await;
    let attempts = browser.text(&browser.find(&format!("{attempts_row} details")).await).await;
    assert!(attempts.contains("maintenance") && attempts.contains("manual"), "{attempts}");
    assert_eq!(receiver.received().len(), 3);

    save_screenshots(&app, &browser, &delivered).await;
    browser.quit().await;
    app.stop().await;
}

/// Every page in four renderings: `docs/screenshots/{page}-{light,dark}-{desktop,phone}.png`.
async fn save_screenshots(app: &TestApp, browser: &Browser, event: &str) {
    // A little more history so the pages have something to show.
    for (event_type, source) in [("job.updated", "ats"), ("candidate.created", "crm"), ("job.created", "ats")] {
        let body = json!({"eventType": event_type, "eventName": format!("{event_type} in the demo"), "payload": {"id": 42}, "source": source});
        assert_eq!(app.post_event(body).await.status(), 202);
    }
    let webhook = browser.url().await.split('?').next().unwrap_or_default().to_owned();
    let pages = [
        ("overview", app.url("/dashboard")),
        ("webhooks", app.url("/dashboard/webhooks")),
        ("webhook-new", app.url("/dashboard/webhooks/new")),
        ("webhook", format!("{webhook}?status=")),
        ("events", app.url("/dashboard/events")),
        ("event", app.url(&format!("/dashboard/events/{event}"))),
    ];
    let dir = screenshots_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (dark, scheme) in [(false, "light"), (true, "dark")] {
        for (width, mobile, device) in [(1280, false, "desktop"), (390, true, "phone")] {
            browser.emulate(width, mobile, dark).await;
            for (name, url) in &pages {
                browser.goto(url).await;
                if *name == "webhook" {
                    for summary in browser.find_all("details summary").await.into_iter().take(1) {
                        browser.click(&summary).await;
                    }
                }
                browser.screenshot(&dir.join(format!("{name}-{scheme}-{device}.png"))).await;
            }
        }
    }
    // The sign-in form renders the same signed in or out.
    for (dark, scheme) in [(false, "light"), (true, "dark")] {
        for (width, mobile, device) in [(1280, false, "desktop"), (390, true, "phone")] {
            browser.emulate(width, mobile, dark).await;
            browser.goto(&app.url("/dashboard/sign-in")).await;
            browser.screenshot(&dir.join(format!("sign-in-{scheme}-{device}.png"))).await;
        }
    }
}
