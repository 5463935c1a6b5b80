//! A TCP proxy in front of one dependency (PostgreSQL, Redis, LocalStack, moto), so a test can
//! take that dependency away from one relay without touching the shared server that other
//! tests use at the same time:
//!
//! - [`Proxy::cut`]: every open connection is dropped and new ones are closed at once, which
//!   is what a crash or a restart looks like to a client;
//! - [`Proxy::stall`]: connections are accepted (and open ones kept) but nothing is forwarded,
//!   as with a frozen server or a network that drops packets;
//! - [`Proxy::restore`]: connections go through again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    Cut,
    Stalled,
}

pub struct Proxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target` (`host:port`).
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, _) = watch::channel(Mode::Up);
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (modes, links2) = (mode.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watcher = modes.subscribe();
                let link = match *watcher.borrow() {
                    Mode::Cut => continue, // dropped: the connection closes at once
                    Mode::Up => tokio::spawn(forward(client, target.clone(), watcher.clone())),
                    Mode::Stalled => tokio::spawn(hold(client, watcher.clone())),
                };
                let mut links = links2.lock().unwrap();
                links.retain(|l| !l.is_finished());
                links.push(link);
            }
        });
        Self { port, mode, links, accept }
    }

    /// A proxy to the host and port of `url` (`scheme://host:port/...`).
    pub async fn to_url(url: &str) -> Self {
        let url = url::Url::parse(url).unwrap();
        let port = url.port_or_known_default().unwrap();
        Self::start(format!("{}:{port}", url.host_str().unwrap())).await
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.into()
    }

    /// Drops every connection and closes new ones at once.
    pub async fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Forwards nothing more: open connections and new ones stay open, unanswered.
    pub async fn stall(&self) {
        self.mode.send_replace(Mode::Stalled);
        // Let every open link see it before the caller goes on.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// Forwards again; connections held by a stall are closed.
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Up);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

async fn forward(mut client: TcpStream, target: String, mut mode: watch::Receiver<Mode>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        _ = mode.wait_for(|m| *m != Mode::Up) => {}
    }
    // Stalled: both ends stay open and silent until the proxy is restored or cut.
    let _ = mode.wait_for(|m| *m != Mode::Stalled).await;
}

async fn hold(client: TcpStream, mut mode: watch::Receiver<Mode>) {
    let _ = mode.wait_for(|m| *m != Mode::Stalled).await;
    drop(client);
}
