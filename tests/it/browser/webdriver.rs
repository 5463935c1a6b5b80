//! Just enough of the W3C WebDriver protocol, over the test suite's own HTTP client, to drive
//! Debian's headless Chromium through chromedriver: navigate, find, type, click, read, and
//! Chromium's DevTools commands (`goog/cdp/execute`) for colour scheme, screen size and
//! full-page screenshots. A crate for this (fantoccini, thirtyfour) would add a second HTTP
//! stack to the build for the same few calls.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process and one headless Chromium session; both end on drop.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
}

#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Whether Debian's `chromium` and `chromium-driver` are installed.
    pub fn available() -> bool {
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
    }

    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let ready = crate::helpers::eventually(Duration::from_secs(20), || async {
            let status = http.get(format!("{base}/status")).send().await.ok()?.json::<Value>().await.ok()?;
            status["value"]["ready"].as_bool().filter(|ready| *ready)
        })
        .await;
        assert!(ready.is_some(), "chromedriver did not become ready");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--window-size=1280,900", "--hide-scrollbars"],
            },
        }}});
        let created: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session =
            created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_owned();
        Self { driver, http, session: format!("{base}/session/{session}") }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if answer["value"]["error"].is_string() {
            panic!("WebDriver {method} {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the address's path ends with `wanted`, or, when `wanted` is a query
    /// (`?notice=created`), the address holds it: a key press or click that follows a link can
    /// return before the next page loads. Panics after 15 s.
    pub async fn wait_for_url(&self, wanted: &str) -> String {
        for _ in 0..150 {
            let url = self.url().await;
            let arrived = if wanted.starts_with('?') {
                url.contains(wanted)
            } else {
                url.split(['?', '#']).next().is_some_and(|path| path.ends_with(wanted))
            };
            if arrived {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never got to {wanted}: at {}", self.url().await)
    }

    pub async fn source(&self) -> String {
        self.get("/source").await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn find(&self, css: &str) -> Element {
        let found = self.post("/element", json!({ "using": "css selector", "value": css })).await;
        Element(found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_owned())
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self.post("/elements", json!({ "using": "css selector", "value": css })).await;
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str())
            .map(|id| Element(id.to_owned()))
            .collect()
    }

    pub async fn click(&self, element: &Element) {
        self.post(&format!("/element/{}/click", element.0), json!({})).await;
    }

    pub async fn type_into(&self, element: &Element, text: &str) {
        self.post(&format!("/element/{}/value", element.0), json!({ "text": text })).await;
    }

    pub async fn text(&self, element: &Element) -> String {
        self.get(&format!("/element/{}/text", element.0)).await.as_str().unwrap_or_default().to_owned()
    }

    /// Presses keys (WebDriver key codes, e.g. `\u{E004}` for Tab) on the focused element.
    pub async fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|k| [json!({"type": "keyDown", "value": k}), json!({"type": "keyUp", "value": k})])
            .collect();
        self.post("/actions", json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})).await;
    }

    /// The text of the element that has the keyboard focus.
    pub async fn focused_text(&self) -> String {
        let active = self.get("/element/active").await;
        let element = Element(active[ELEMENT].as_str().unwrap_or_default().to_owned());
        self.text(&element).await
    }

    /// Waits until the page source contains `needle`, reloading every 200 ms; panics after 15 s.
    pub async fn reload_until(&self, needle: &str) -> String {
        for _ in 0..75 {
            let source = self.source().await;
            if source.contains(needle) {
                return source;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.post("/refresh", json!({})).await;
        }
        panic!("{needle} never appeared on {}", self.url().await)
    }

    async fn devtools(&self, cmd: &str, params: Value) -> Value {
        self.post("/goog/cdp/execute", json!({ "cmd": cmd, "params": params })).await
    }

    /// Renders as on a screen `width` CSS pixels wide, in the light or dark colour scheme.
    pub async fn emulate(&self, width: u32, mobile: bool, dark: bool) {
        let scheme = if dark { "dark" } else { "light" };
        self.devtools(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
        let metrics =
            json!({"width": width, "height": if mobile { 844 } else { 900 }, "deviceScaleFactor": 1, "mobile": mobile});
        self.devtools("Emulation.setDeviceMetricsOverride", metrics).await;
    }

    /// A PNG of the whole page, not just the part in view.
    pub async fn screenshot(&self, path: &Path) {
        let layout = self.devtools("Page.getLayoutMetrics", json!({})).await;
        let size = &layout["cssContentSize"];
        let clip = json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1});
        let shot = self
            .devtools("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true, "clip": clip}))
            .await;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap_or_default()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Browser {
    /// Ends the session, which closes Chromium, then chromedriver.
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
