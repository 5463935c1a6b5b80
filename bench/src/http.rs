//! A lean HTTP/1.1 client over one kept-alive connection, and the few relay API calls the
//! scenarios make. Load generators own one connection each, so the harness spends as little CPU
//! as it can: on a 2-core machine it shares the cores with the relay it measures.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// One HTTP/1.1 connection, reopened when the server closes it.
#[derive(Debug)]
pub struct Conn {
    addr: SocketAddr,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// A response with its body read.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("{} response is not JSON", self.status))
    }

    /// The envelope's `data`, or an error naming the status and body.
    pub fn data(&self, expected: StatusCode) -> Result<Value> {
        if self.status != expected {
            bail!("expected {expected}, got {}: {}", self.status, String::from_utf8_lossy(&self.body));
        }
        Ok(self.json()?["data"].take())
    }
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, host: addr.to_string(), sender: None }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends one request; a JSON content type goes with a non-empty body.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        sender.ready().await?;
        let mut request = Request::builder().method(method).uri(path).header("host", &self.host);
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender.send_request(request.body(Full::new(body))?).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        self.sender = Some(sender);
        Ok(Response { status, headers, body })
    }
}

/// The credentials the harness gives relay-local.
pub const SERVICE_TOKEN: &str = "bench-service-token-0001";
pub const API_KEY: &str = "bench-api-key-0000001";
pub const TENANT: &str = "bench";

/// The relay API calls the scenarios make (set-up and checks, not load).
#[derive(Debug)]
pub struct Api {
    conn: Conn,
    /// The tenant API key the webhook calls go with.
    api_key: String,
}

impl Api {
    /// The API as the bench tenant ([`API_KEY`]).
    pub fn new(addr: SocketAddr) -> Self {
        Self::with_key(addr, API_KEY)
    }

    /// The API as the tenant `api_key` belongs to.
    pub fn with_key(addr: SocketAddr, api_key: &str) -> Self {
        Self { conn: Conn::new(addr), api_key: api_key.to_owned() }
    }

    /// Registers a webhook; returns its id.
    pub async fn create_webhook(&mut self, name: &str, url: &str, event_types: &[&str]) -> Result<String> {
        let body = json!({"name": name, "url": url, "eventTypes": event_types}).to_string();
        let headers = [("x-api-key", self.api_key.as_str())];
        let response = self.conn.send(Method::POST, "/api/webhooks", &headers, Bytes::from(body)).await?;
        let data = response.data(StatusCode::CREATED).context("creating a webhook")?;
        data["id"].as_str().map(str::to_owned).context("webhook without id")
    }

    /// Creates a tenant (`POST /api/tenants`, service token) that may hold up to `max_webhooks`
    /// webhooks.
    pub async fn create_tenant(&mut self, id: &str, max_webhooks: u32) -> Result<()> {
        let body = json!({"id": id, "name": format!("bench {id}"), "maxWebhooks": max_webhooks}).to_string();
        let headers = [("x-service-token", SERVICE_TOKEN)];
        let response = self.conn.send(Method::POST, "/api/tenants", &headers, Bytes::from(body)).await?;
        response.data(StatusCode::CREATED).with_context(|| format!("creating tenant {id}"))?;
        Ok(())
    }

    /// Issues an API key to a tenant (service token); returns the key.
    pub async fn issue_key(&mut self, tenant: &str) -> Result<String> {
        let body = json!({"name": "relay-bench"}).to_string();
        let headers = [("x-service-token", SERVICE_TOKEN)];
        let path = format!("/api/tenants/{tenant}/api-keys");
        let response = self.conn.send(Method::POST, &path, &headers, Bytes::from(body)).await?;
        let data = response.data(StatusCode::CREATED).with_context(|| format!("issuing a key to {tenant}"))?;
        data["key"].as_str().map(str::to_owned).context("issued key missing from the answer")
    }

    /// Every delivery of a webhook, with its attempts, following the cursor.
    pub async fn deliveries(&mut self, webhook_id: &str) -> Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/webhooks/{webhook_id}/deliveries?limit=500");
            if let Some(cursor) = &cursor {
                path.push_str("&cursor=");
                path.push_str(cursor);
            }
            let headers = [("x-api-key", self.api_key.as_str())];
            let response = self.conn.send(Method::GET, &path, &headers, Bytes::new()).await?;
            let page = response.json()?;
            if response.status != StatusCode::OK {
                bail!("listing deliveries: {}: {page}", response.status);
            }
            all.extend(page["data"].as_array().cloned().unwrap_or_default());
            match page["pagination"]["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(all),
            }
        }
    }

    /// The tenant's dashboard overview: delivery statistics, webhooks, deliveries waiting.
    pub async fn overview(&mut self) -> Result<Value> {
        let headers = [("x-api-key", self.api_key.as_str())];
        let response = self.conn.send(Method::GET, "/api/dashboard/overview", &headers, Bytes::new()).await?;
        response.data(StatusCode::OK)
    }

    /// The shared queues' depth (`queue`, `deadLetterQueue`), from the operators' metrics.
    pub async fn queues(&mut self) -> Result<Value> {
        Ok(self.metrics().await?["queues"].clone())
    }

    /// Accepts an event (`202`); returns its id.
    pub async fn post_event(&mut self, body: Bytes) -> Result<String> {
        let response = self.conn.send(Method::POST, "/api/events", &[("x-service-token", SERVICE_TOKEN)], body).await?;
        let data = response.data(StatusCode::ACCEPTED).context("posting an event")?;
        data["eventId"].as_str().map(str::to_owned).context("event without id")
    }

    /// The relay process's own metrics and the shared queues' depth (JSON, operators'
    /// `GET /api/metrics`).
    pub async fn metrics(&mut self) -> Result<Value> {
        let response =
            self.conn.send(Method::GET, "/api/metrics", &[("x-service-token", SERVICE_TOKEN)], Bytes::new()).await?;
        response.data(StatusCode::OK)
    }
}

/// A `POST /api/events` body of about `size` bytes whose payload carries `seq` and the time it
/// was sent, so the receiver can tell the event and its latency. It names no tenant: a
/// broadcast, which relay-local delivers to every tenant's subscribers.
pub fn event_body(event_type: &str, seq: u64, sent_ns: u64, size: usize) -> Bytes {
    scoped_event_body(None, event_type, seq, sent_ns, size)
}

/// [`event_body`] scoped to `tenant` when given: only that tenant's webhooks receive it.
pub fn scoped_event_body(tenant: Option<&str>, event_type: &str, seq: u64, sent_ns: u64, size: usize) -> Bytes {
    let scope = tenant.map(|tenant| format!(r#""tenant":"{tenant}","#)).unwrap_or_default();
    let head = format!(
        r#"{{{scope}"eventType":"{event_type}","eventName":"bench event {seq}","source":"relay-bench","payload":{{"seq":{seq},"sentNs":{sent_ns},"pad":""#
    );
    let tail = r#""}}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut body = String::with_capacity(head.len() + pad + tail.len());
    body.push_str(&head);
    body.extend(std::iter::repeat_n('x', pad));
    body.push_str(tail);
    Bytes::from(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_body_is_json_of_the_size_asked() {
        let body = event_body("job.created", 42, 123_456, 1024);
        assert_eq!(body.len(), 1024);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["payload"]["seq"], 42);
        assert_eq!(value["payload"]["sentNs"], 123_456);
        assert_eq!(value["eventType"], "job.created");
        assert!(value.get("tenant").is_none());
        let scoped = scoped_event_body(Some("tenant-b"), "job.created", 7, 1, 512);
        assert_eq!(scoped.len(), 512);
        let value: Value = serde_json::from_slice(&scoped).unwrap();
        assert_eq!(value["tenant"], "tenant-b");
        assert_eq!(value["payload"]["seq"], 7);
    }
}
