//! The SSRF guard with no allow-list: every spelling of a non-public address is refused,
//! at registration (a literal IP, a `422` envelope) or at delivery (a name, `blocked: ...`), and
//! real listeners on loopback prove nothing was connected to. Names are mapped to chosen
//! addresses through the sender's injectable [`Lookup`]; no DNS server is used.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use relay_core::ports::{OutboundRequest, SendResult, WebhookSender};
use relay_core::ssrf::SsrfGuard;
use relay_local::Backends;
use relay_sender::{HttpSender, Lookup};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use url::Url;

use crate::helpers::{ACME_KEY, TestApp, test_config};
use crate::receiver_faults::{Connection, RawServer, read_request};

/// The relay with `WEBHOOK_ALLOWED_CIDRS` empty, as in production. (An empty variable counts
/// as unset, which in relay-local means "loopback allowed", so the list is cleared here.)
async fn spawn_without_allow_list(backends: Option<Backends>) -> TestApp {
    let mut config = test_config(&[("WEBHOOK_MAX_RETRIES", "0"), ("WEBHOOK_TIMEOUT", "1000")]);
    config.webhooks.allowed_cidrs.clear();
    let backends = match backends {
        Some(backends) => backends,
        None => relay_local::backends(&config).await.unwrap(),
    };
    TestApp::start(&config, backends).await
}

/// Answers 200 to anything and closes: a tripwire where nothing may connect, or the allowed
/// server where something should.
fn answering_200(listener: TcpListener) -> RawServer {
    RawServer::serve(listener, |mut stream| async move {
        let head = read_request(&mut stream).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        Connection { head, ..Connection::default() }
    })
}

/// Tripwires on 127.0.0.1 and ::1 (where it can bind) on one port.
async fn loopback_tripwires() -> (u16, Vec<RawServer>) {
    for _ in 0..50 {
        let v4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = v4.local_addr().unwrap().port();
        let mut wires = vec![answering_200(v4)];
        match TcpListener::bind(("::1", port)).await {
            Ok(v6) => wires.push(answering_200(v6)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(_) => {} // no IPv6 loopback here
        }
        return (port, wires);
    }
    panic!("no port free on both 127.0.0.1 and ::1");
}

fn assert_untouched(wires: &[RawServer]) {
    for wire in wires {
        assert_eq!(wire.accepted(), 0, "something connected to {}", wire.addr);
    }
}

async fn register(app: &TestApp, url: &str) -> (StatusCode, Value) {
    app.api(
        Method::POST,
        "/api/webhooks",
        ACME_KEY,
        Some(json!({"name": "x", "url": url, "eventTypes": ["job.created"]})),
    )
    .await
}

#[tokio::test]
async fn every_spelling_of_a_non_public_literal_address_is_refused_at_registration() {
    let app = spawn_without_allow_list(None).await;
    let (port, wires) = loopback_tripwires().await;
    let urls = [
        // loopback and unspecified (0.0.0.0 reaches this host)
        "http://127.0.0.1:{P}/hook",
        "http://127.255.255.254:{P}/",
        "http://[::1]:{P}/",
        "http://0.0.0.0:{P}/",
        "http://0:{P}/",
        "http://[::]:{P}/",
        // private, link-local, metadata, CGNAT, unique-local
        "http://10.0.0.5/",
        "http://172.16.0.1/",
        "http://172.31.255.255/",
        "http://192.168.1.1/",
        "http://169.254.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.170.2/v2/credentials",
        "http://[fe80::1]/",
        "http://100.64.0.1/",
        "http://100.127.255.254/",
        "http://[fd00::1]/",
        "http://[fd00:ec2::254]/",
        "http://[fc00::1]/",
        // IPv4 inside IPv6: mapped, NAT64, IPv4-compatible, IPv4-translated, NAT64 local-use
        "http://[::ffff:127.0.0.1]:{P}/",
        "http://[::ffff:7f00:1]:{P}/",
        "http://[::ffff:10.0.0.5]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[64:ff9b::10.0.0.5]/",
        "http://[::127.0.0.1]:{P}/",
        "http://[::ffff:0:7f00:1]:{P}/",
        "http://[64:ff9b:1::a00:5]/",
        "http://[fec0::1]/",
        // tunnels: 6to4 judged by the IPv4 inside (127.0.0.1, 10.0.0.5, metadata), Teredo refused
        "http://[2002:7f00:1::]:{P}/",
        "http://[2002:a00:5::1]/",
        "http://[2002:a9fe:a9fe::]/",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
        // the EKS Pod Identity agent, IPv4 and IPv6
        "http://169.254.170.23/v1/credentials",
        "http://[fd00:ec2::23]/v1/credentials",
        // decimal, octal, hex, short and mixed IPv4 forms
        "http://2130706433:{P}/",
        "http://0177.0.0.1:{P}/",
        "http://0177.0000.0000.0001:{P}/",
        "http://0x7f.0.0.1:{P}/",
        "http://0x7f000001:{P}/",
        "http://0X7F.1:{P}/",
        "http://0x7f.0.0x0.01:{P}/",
        "http://127.1:{P}/",
        "http://127.0.1:{P}/",
        "http://10.1/",
        "http://167772165/",
        "http://0xa9fea9fe/",
        "http://0251.0376.0251.0376/",
        // spellings the URL standard folds into an address
        "http://127.0.0.1.:{P}/",
        "http://%31%32%37.0.0.1:{P}/",
        "http://１２７.０.０.１:{P}/",
        "http://127。0。0。1:{P}/",
        "HTTP://127.0.0.1:{P}/",
        "https://127.0.0.1:{P}/",
    ];
    for template in urls {
        let url = template.replace("{P}", &port.to_string());
        let (status, body) = register(&app, &url).await;
        assert_eq!(status, 422, "{url} was accepted: {body}");
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "validation_failed", "{url}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("url: blocked: ") && message.ends_with(" address"), "{url}: {message}");
    }

    // Zone ids are not valid in a URL at all.
    for url in ["http://[fe80::1%25eth0]/", "http://[fe80::1%eth0]/", "http://[::1%251]:{P}/", "http://[fe80::1%25lo]/"]
    {
        let url = url.replace("{P}", &port.to_string());
        let (status, body) = register(&app, &url).await;
        assert_eq!(status, 422, "{url} was accepted: {body}");
        assert_eq!(body["error"]["code"], "validation_failed", "{url}: {body}");
    }

    // Nor can an existing webhook be pointed at one.
    let (status, body) = register(&app, "http://hooks.example.com/in").await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().unwrap();
    let (status, body) =
        app.api(Method::PUT, &format!("/api/webhooks/{id}"), ACME_KEY, Some(json!({"url": "http://0x7f.1/"}))).await;
    assert_eq!(status, 422, "{body}");
    let (_, webhook) = app.api(Method::GET, &format!("/api/webhooks/{id}"), ACME_KEY, None).await;
    assert_eq!(webhook["data"]["url"], "http://hooks.example.com/in");

    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_untouched(&wires);
    app.stop().await;
}

/// Names are checked at delivery: every spelling of `localhost` and the names `/etc/hosts`
/// maps to loopback. Whatever the system resolver makes of them, nothing connects.
#[tokio::test]
async fn names_of_this_host_are_refused_at_delivery() {
    let app = spawn_without_allow_list(None).await;
    let (port, wires) = loopback_tripwires().await;
    // Only names the hosts file may answer: no DNS queries leave for made-up names.
    let mut names: Vec<String> = ["localhost", "LOCALHOST", "localhost."].map(str::to_owned).to_vec();
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    for line in hosts.lines().map(|l| l.split('#').next().unwrap_or_default()) {
        let mut fields = line.split_whitespace();
        if let Some(ip) = fields.next().and_then(|ip| ip.parse::<IpAddr>().ok())
            && SsrfGuard::default().check(ip).is_err()
        {
            names.extend(fields.filter(|n| !n.contains(':')).map(str::to_owned));
        }
    }
    names.sort();
    names.dedup();

    let mut webhooks = Vec::new();
    for name in &names {
        let url = format!("http://{name}:{port}/hook");
        let (status, body) = register(&app, &url).await;
        assert_eq!(status, 201, "{url}: {body}");
        webhooks.push((name, body["data"]["id"].as_str().unwrap().to_owned()));
    }
    let event_id = app.send_event("job.created").await;
    for (name, webhook_id) in &webhooks {
        let failed = app.wait_for_delivery(webhook_id, &event_id, "failed").await;
        let error = failed["attempts"][0]["error"].as_str().unwrap();
        assert_eq!(failed["attempts"][0]["statusCode"], Value::Null);
        // What the system resolver says decides between "blocked" and "not found"; both
        // must be an error that connected nowhere.
        let resolved: Vec<IpAddr> = match tokio::net::lookup_host((name.as_str(), 0)).await {
            Ok(addrs) => addrs.map(|a| a.ip()).collect(),
            Err(_) => Vec::new(),
        };
        if resolved.is_empty() {
            assert!(error.starts_with("connection failed: "), "{name}: {error}");
        } else {
            assert!(error.starts_with("blocked: ") && error.ends_with(" address"), "{name} ({resolved:?}): {error}");
        }
        println!("{name} -> {resolved:?}: {error}");
    }
    assert_untouched(&wires);
    app.stop().await;
}

/// A URL stored while its address was allowed is refused once it no longer is: the sender
/// checks literal addresses itself (the resolver never sees them).
#[tokio::test]
async fn stored_literal_addresses_are_refused_at_delivery_too() {
    let open = TestApp::spawn().await; // loopback allowed
    let (port, wires) = loopback_tripwires().await;
    let mut ids = Vec::new();
    for url in
        ["http://127.0.0.1:{P}/", "http://[::ffff:127.0.0.1]:{P}/", "http://2130706433:{P}/", "http://[::1]:{P}/"]
    {
        let (id, _) = open.create_webhook(&url.replace("{P}", &port.to_string()), &["job.created"]).await;
        ids.push(id);
    }
    let backends = open.backends.clone();
    open.stop().await;

    let app = spawn_without_allow_list(Some(backends)).await;
    let event_id = app.send_event("job.created").await;
    for id in &ids {
        let failed = app.wait_for_delivery(id, &event_id, "failed").await;
        let error = failed["attempts"][0]["error"].as_str().unwrap();
        assert!(
            error == "blocked: 127.0.0.1 is a loopback address" || error == "blocked: ::1 is a loopback address",
            "{error}"
        );
        assert_eq!(failed["attempts"][0]["statusCode"], Value::Null);
    }
    assert_untouched(&wires);
    app.stop().await;
}

/// A receiver on an allowed address redirecting toward non-public ones: redirects are never
/// followed, so the targets see nothing.
#[tokio::test]
async fn redirects_toward_private_addresses_go_nowhere() {
    let (port, wires) = loopback_tripwires().await;
    let targets = [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.5/".to_owned(),
    ];
    let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let locations = Arc::new(Mutex::new(VecDeque::from(targets.clone())));
    let redirector = RawServer::serve(listener, move |mut stream| {
        let location = locations.lock().unwrap().pop_front().unwrap_or_default();
        async move {
            let head = read_request(&mut stream).await;
            let response =
                format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n");
            let _ = stream.write_all(response.as_bytes()).await;
            Connection { head, ..Connection::default() }
        }
    });
    let mut config = test_config(&[("WEBHOOK_MAX_RETRIES", "4")]);
    config.webhooks.allowed_cidrs = vec!["127.0.0.2/32".parse().unwrap()];
    let app = TestApp::start(&config, relay_local::backends(&config).await.unwrap()).await;
    let (webhook_id, _) = app.create_webhook(&redirector.url("http"), &["job.created"]).await;
    let event_id = app.send_event("job.created").await;

    let failed = app.wait_for_delivery(&webhook_id, &event_id, "failed").await;
    assert_eq!(failed["attemptCount"], 5);
    for attempt in failed["attempts"].as_array().unwrap() {
        assert_eq!(attempt["statusCode"], 307);
        assert_eq!(attempt["error"], "HTTP 307");
    }
    assert_eq!(redirector.accepted(), 5);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_untouched(&wires);
    app.stop().await;
}

/// Answers for names, in order per name; the last answer repeats.
#[derive(Debug, Default)]
struct FakeDns(Mutex<HashMap<String, VecDeque<Vec<IpAddr>>>>);

impl FakeDns {
    fn with(self, name: &str, answers: &[&[&str]]) -> Self {
        let answers = answers.iter().map(|a| a.iter().map(|ip| ip.parse().unwrap()).collect()).collect();
        self.0.lock().unwrap().insert(name.to_owned(), answers);
        self
    }
}

#[async_trait]
impl Lookup for FakeDns {
    async fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        let mut names = self.0.lock().unwrap();
        let answers = names
            .get_mut(host)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host}: no such name")))?;
        Ok(if answers.len() > 1 { answers.pop_front().unwrap_or_default() } else { answers[0].clone() })
    }
}

fn sender(allowed: &[&str], dns: FakeDns) -> HttpSender {
    let guard = SsrfGuard::new(allowed.iter().map(|net| net.parse().unwrap()).collect());
    HttpSender::with_lookup(Duration::from_millis(1000), guard, Arc::new(dns)).unwrap()
}

async fn post(sender: &HttpSender, url: &str) -> SendResult {
    let url = Url::parse(url).unwrap();
    sender
        .send(OutboundRequest {
            url: &url,
            headers: &[("content-type", "application/json")],
            body: b"{}".to_vec(),
            timeout: None,
        })
        .await
}

#[tokio::test]
async fn names_resolving_to_non_public_addresses_are_refused_without_connecting() {
    let (port, wires) = loopback_tripwires().await;
    let dns = FakeDns::default()
        .with("internal.example", &[&["10.0.0.5"]])
        .with("loopback.example", &[&["127.0.0.1"]])
        .with("six.example", &[&["::1"]])
        .with("mapped.example", &[&["::ffff:127.0.0.1"]])
        .with("nat64.example", &[&["64:ff9b::7f00:1"]])
        .with("compat.example", &[&["::7f00:1"]])
        .with("cgnat.example", &[&["100.64.1.1"]])
        .with("ula.example", &[&["fd00::5", "fc00::5"]])
        .with("metadata.example", &[&["169.254.169.254"]])
        .with("sixtofour.example", &[&["2002:7f00:1::"]])
        .with("teredo.example", &[&["2001:0:4136:e378:8000:63bf:3fff:fdd2"]])
        .with("everything.example", &[&["10.0.0.5", "127.0.0.1", "::1", "169.254.169.254", "0.0.0.0"]]);
    let sender = sender(&[], dns);
    for (name, expected) in [
        ("internal.example", "blocked: 10.0.0.5 is a private address"),
        ("loopback.example", "blocked: 127.0.0.1 is a loopback address"),
        ("six.example", "blocked: ::1 is a loopback address"),
        ("mapped.example", "blocked: 127.0.0.1 is a loopback address"),
        ("nat64.example", "blocked: 127.0.0.1 is a loopback address"),
        ("compat.example", "blocked: ::7f00:1 is a reserved address"),
        ("cgnat.example", "blocked: 100.64.1.1 is a carrier-grade NAT address"),
        ("ula.example", "blocked: fd00::5 is a private address"),
        ("metadata.example", "blocked: 169.254.169.254 is a cloud metadata address"),
        ("sixtofour.example", "blocked: 127.0.0.1 is a loopback address"),
        ("teredo.example", "blocked: 2001:0:4136:e378:8000:63bf:3fff:fdd2 is a Teredo tunnel address"),
        ("everything.example", "blocked: 10.0.0.5 is a private address"),
    ] {
        let sent = post(&sender, &format!("http://{name}:{port}/hook")).await;
        assert_eq!(sent.status, None, "{name}");
        assert_eq!(sent.error.as_deref(), Some(expected), "{name}");
        assert!(sent.duration < Duration::from_millis(500), "{name}: {:?}", sent.duration);
    }
    // An unknown name and an empty answer are plain failures, not panics.
    let sent = post(&sender, &format!("http://nowhere.example:{port}/")).await;
    assert!(sent.error.as_deref().is_some_and(|e| e.starts_with("connection failed: ")), "{sent:?}");
    assert_untouched(&wires);
}

/// The metadata addresses stay refused under a name even when their range is allow-listed.
#[tokio::test]
async fn metadata_addresses_behind_a_name_are_refused_whatever_the_allow_list() {
    let dns = FakeDns::default()
        .with("meta.example", &[&["169.254.169.254"]])
        .with("ecs.example", &[&["169.254.170.2"]])
        .with("meta6.example", &[&["fd00:ec2::254"]])
        .with("mapped-meta.example", &[&["::ffff:169.254.169.254"]])
        .with("eks.example", &[&["169.254.170.23"]])
        .with("eks6.example", &[&["fd00:ec2::23"]])
        .with("sixtofour-meta.example", &[&["2002:a9fe:a9fe::"]]);
    let sender = sender(&["169.254.0.0/16", "fd00::/8", "::ffff:0:0/96", "2002::/16"], dns);
    let names = [
        "meta.example",
        "ecs.example",
        "meta6.example",
        "mapped-meta.example",
        "eks.example",
        "eks6.example",
        "sixtofour-meta.example",
    ];
    for name in names {
        let sent = post(&sender, &format!("http://{name}/latest/meta-data/")).await;
        let error = sent.error.unwrap_or_default();
        assert!(error.starts_with("blocked: ") && error.ends_with("is a cloud metadata address"), "{name}: {error}");
    }
}

/// An answer mixing allowed and refused addresses (127.0.0.2 stands in for a public one): only
/// the allowed one is ever connected to, whatever the order.
#[tokio::test]
async fn a_mixed_answer_only_ever_connects_to_the_allowed_address() {
    let (allowed, port, wires) = allowed_and_loopback().await;
    let dns = FakeDns::default()
        .with("first-bad.example", &[&["127.0.0.1", "10.0.0.5", "127.0.0.2", "::1", "169.254.169.254"]])
        .with("last-bad.example", &[&["127.0.0.2", "127.0.0.1", "::ffff:127.0.0.1"]]);
    let sender = sender(&["127.0.0.2/32"], dns);
    for round in 0..3 {
        for name in ["first-bad.example", "last-bad.example"] {
            let sent = post(&sender, &format!("http://{name}:{port}/hook")).await;
            assert_eq!(sent.status, Some(200), "{name} round {round}: {sent:?}");
        }
    }
    // Each request on its own connection (the server closes them): six lookups, six checks.
    assert_eq!(allowed.accepted(), 6);
    assert_untouched(&wires);
}

/// DNS rebinding: a name first answering an allowed address, then a loopback one. The next
/// connection resolves again and is refused.
#[tokio::test]
async fn a_name_rebinding_to_loopback_is_refused_on_the_next_connection() {
    let (allowed, port, wires) = allowed_and_loopback().await;
    let dns = FakeDns::default().with("rebind.example", &[&["127.0.0.2"], &["127.0.0.1"], &["127.0.0.2"]]);
    let sender = sender(&["127.0.0.2/32"], dns);
    let url = format!("http://rebind.example:{port}/hook");
    assert_eq!(post(&sender, &url).await.status, Some(200));
    let sent = post(&sender, &url).await;
    assert_eq!(sent.status, None);
    assert_eq!(sent.error.as_deref(), Some("blocked: 127.0.0.1 is a loopback address"));
    assert_eq!(post(&sender, &url).await.status, Some(200));
    assert_eq!(allowed.accepted(), 2);
    assert_untouched(&wires);
}

/// A 200 server on 127.0.0.2 (which closes each connection) and tripwires on 127.0.0.1 and
/// ::1, all on one port.
async fn allowed_and_loopback() -> (RawServer, u16, Vec<RawServer>) {
    for _ in 0..50 {
        let (port, wires) = loopback_tripwires().await;
        let Ok(listener) = TcpListener::bind(SocketAddr::from(([127, 0, 0, 2], port))).await else { continue };
        return (answering_200(listener), port, wires);
    }
    panic!("no port free on 127.0.0.1, ::1 and 127.0.0.2");
}
