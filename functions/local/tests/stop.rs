//! Stopping the relay-local binary. On SIGTERM (what `kill`, systemd and container runtimes
//! send) and on SIGINT (Ctrl-C) it stops taking connections at once, finishes the webhook
//! deliveries it has in progress, says so, and exits 0; and it exits within `SHUTDOWN_TIMEOUT`
//! even when a receiver never answers.
//!
//! Each run starts relay-local from an empty environment on port 0 with its dev credentials and
//! a receiver of the test's own, in a thread, that records when each delivery arrived and when
//! it was answered.

// Test code, helpers included, may unwrap: a panic is how a test fails.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const SERVICE_TOKEN: &str = "dev-service-token";
const API_KEY: &str = "dev-api-key";

// ---------------------------------------------------------------------------------------
// relay-local, run as a child process
// ---------------------------------------------------------------------------------------

struct Relay {
    child: Child,
    addr: SocketAddr,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Relay {
    /// Starts relay-local (`--no-demo`, port 0, JSON logs at `info`) with `vars`, and waits for
    /// the address it prints on stdout.
    fn start(vars: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_relay-local"))
            .arg("--no-demo")
            .env_clear()
            .env("PORT", "0")
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", "json")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("relay-local starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let pipe = child.stdout.take().unwrap();
        let out = stdout.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("serving on http://").nth(1) {
                    let addr: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != ',').collect();
                    let _ = port_tx.send(addr);
                }
                let mut out = out.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        let pipe = child.stderr.take().unwrap();
        let err = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut err = err.lock().unwrap();
                err.push_str(&line);
                err.push('\n');
            }
        });
        let mut relay = Self { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), stdout, stderr };
        match port_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => {
                relay.addr = addr.parse().unwrap_or_else(|_| panic!("bad address {addr:?}\n{}", relay.output()))
            }
            Err(_) => panic!("relay-local printed no address within 30 s\n{}", relay.output()),
        }
        relay
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process printed so far, for failure messages.
    fn output(&self) -> String {
        format!("--- stdout:\n{}--- stderr:\n{}", self.stdout.lock().unwrap(), self.stderr.lock().unwrap())
    }

    /// Sends `signal` (`TERM`, `INT`) with kill(1).
    fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status().expect("kill runs");
        assert!(status.success(), "kill -{signal} {} failed: {status}", self.pid());
    }

    /// Waits up to `limit` for the process to exit; its status and when it was seen to exit.
    fn wait_exit(&mut self, limit: Duration) -> Option<(ExitStatus, Instant)> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some((status, Instant::now()));
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The output once the pipes are drained (call after exit).
    fn final_output(&self) -> (String, String) {
        // The reader threads finish when the pipes close; give them a moment.
        thread::sleep(Duration::from_millis(100));
        (self.stdout.lock().unwrap().clone(), self.stderr.lock().unwrap().clone())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// A plain HTTP client and a receiver, on std sockets
// ---------------------------------------------------------------------------------------

/// One request on a new connection (`Connection: close`): the status and the body text.
fn request(addr: SocketAddr, method: &str, path: &str, header: (&str, &str), body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{method} {path}: connect: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{}: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        header.0,
        header.1,
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap_or_else(|e| panic!("{method} {path}: read: {e}"));
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: {response:?}"));
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// One delivery the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    arrived: Instant,
    /// When the 200 was written, and whether writing it worked.
    answered: Option<(Instant, bool)>,
}

/// A webhook receiver: answers each delivery `200` after `delay`, or never (`None`: it reads the
/// request and holds the connection open).
struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    fn start(delay: Option<Duration>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let shared = hits.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let hits = shared.clone();
                thread::spawn(move || serve_one(stream, delay, &hits));
            }
        });
        Self { addr, hits }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn wait_for(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.hits().len() < n {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

fn serve_one(mut stream: TcpStream, delay: Option<Duration>, hits: &Mutex<Vec<Hit>>) {
    // The request: head, then a Content-Length body.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse().ok())).unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let index = {
        let mut hits = hits.lock().unwrap();
        hits.push(Hit { arrived: Instant::now(), answered: None });
        hits.len() - 1
    };
    let Some(delay) = delay else {
        // Never answer: hold the connection until the relay goes away.
        let _ = stream.read(&mut chunk);
        return;
    };
    thread::sleep(delay);
    let written = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").is_ok();
    hits.lock().unwrap()[index].answered = Some((Instant::now(), written));
}

/// Registers a webhook for `job.created` at `url` with the dev API key.
fn register_webhook(relay: &Relay, url: &str) {
    let body = format!(r#"{{"name":"stop test","url":"{url}","eventTypes":["job.created"]}}"#);
    let (status, answer) = request(relay.addr, "POST", "/api/webhooks", ("X-Api-Key", API_KEY), &body);
    assert_eq!(status, 201, "registering the webhook: {answer}\n{}", relay.output());
}

fn post_event(relay: &Relay, n: usize) {
    let body = format!(
        r#"{{"eventType":"job.created","eventName":"job {n} created","payload":{{"n":{n}}},"source":"stop-test"}}"#
    );
    let (status, answer) = request(relay.addr, "POST", "/api/events", ("X-Service-Token", SERVICE_TOKEN), &body);
    assert_eq!(status, 202, "posting event {n}: {answer}\n{}", relay.output());
}

fn refused(addr: SocketAddr) -> bool {
    matches!(TcpStream::connect(addr), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// Five events to a receiver that takes a second per delivery; `signal` once the first
/// delivery has arrived.
fn finishes_deliveries_in_progress_on(signal: &str, announced: &str) {
    const SHUTDOWN_TIMEOUT: u64 = 10;
    let receiver = Receiver::start(Some(Duration::from_secs(1)));
    let mut relay = Relay::start(&[("SHUTDOWN_TIMEOUT", &SHUTDOWN_TIMEOUT.to_string())]);
    register_webhook(&relay, &receiver.url());
    for n in 0..5 {
        post_event(&relay, n);
    }
    assert!(receiver.wait_for(1, Duration::from_secs(10)), "no delivery arrived within 10 s\n{}", relay.output());

    let at_signal = receiver.hits();
    let in_flight = at_signal.iter().filter(|h| h.answered.is_none()).count();
    let signalled = Instant::now();
    relay.signal(signal);

    // The listener closes at once, while the deliveries are still finishing.
    let mut closed_after = None;
    while signalled.elapsed() < Duration::from_millis(500) {
        if refused(relay.addr) {
            closed_after = Some(signalled.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }

    let limit = Duration::from_secs(SHUTDOWN_TIMEOUT + 5);
    let Some((status, exited)) = relay.wait_exit(limit) else {
        panic!("SIG{signal}: relay-local still running {limit:?} later\n{}", relay.output());
    };
    let took = exited - signalled;
    let (stdout, stderr) = relay.final_output();
    let all = format!("--- stdout:\n{stdout}--- stderr:\n{stderr}");
    let hits = receiver.hits();
    let answered: Vec<_> = hits.iter().filter_map(|h| h.answered).collect();
    let succeeded = stderr
        .lines()
        .filter(|l| l.contains(r#""message":"delivery attempt""#) && l.contains(r#""outcome":"succeeded""#))
        .count();
    eprintln!(
        "SIG{signal}: {} deliveries arrived before the signal ({in_flight} in flight), {} in all, {} answered, {succeeded} logged succeeded; \
         new connections refused {closed_after:?} after the signal; exited {status} {took:?} after it",
        at_signal.len(),
        hits.len(),
        answered.len(),
    );

    assert_eq!(status.code(), Some(0), "SIG{signal}: exit status {status}\n{all}");
    assert!(
        took <= Duration::from_secs(SHUTDOWN_TIMEOUT + 2),
        "SIG{signal}: exited {took:?} after the signal, over SHUTDOWN_TIMEOUT ({SHUTDOWN_TIMEOUT} s)\n{all}"
    );
    assert!(stdout.contains(&format!("{announced}: shutting down")), "SIG{signal}: no shutdown message\n{all}");
    assert!(closed_after.is_some(), "SIG{signal}: new connections still accepted 500 ms after the signal\n{all}");
    // Every delivery that had reached the receiver was answered, and the relay was still there
    // to read the answer and log it.
    assert!(
        answered.len() >= in_flight,
        "SIG{signal}: {in_flight} in flight, {} answered: {hits:?}\n{all}",
        answered.len()
    );
    for (i, hit) in hits.iter().enumerate() {
        let Some((at, written)) = hit.answered else {
            panic!("SIG{signal}: delivery {i} arrived but was never answered before exit: {hits:?}\n{all}");
        };
        assert!(written, "SIG{signal}: the relay was gone when delivery {i} was answered: {hits:?}\n{all}");
        assert!(at - hit.arrived >= Duration::from_millis(900), "SIG{signal}: delivery {i} answered early: {hits:?}");
        assert!(at <= exited, "SIG{signal}: delivery {i} answered after relay-local exited: {hits:?}\n{all}");
    }
    assert!(succeeded >= in_flight, "SIG{signal}: {in_flight} in flight, {succeeded} logged as succeeded\n{all}");
    assert!(refused(relay.addr), "SIG{signal}: a connection to {} after exit was not refused", relay.addr);
}

#[test]
fn sigterm_finishes_deliveries_in_progress_and_exits_0() {
    finishes_deliveries_in_progress_on("TERM", "SIGTERM");
}

#[test]
fn ctrl_c_finishes_deliveries_in_progress_and_exits_0() {
    finishes_deliveries_in_progress_on("INT", "Ctrl-C");
}

#[test]
fn sigterm_exits_within_shutdown_timeout_when_a_receiver_never_answers() {
    let receiver = Receiver::start(None);
    let mut relay =
        Relay::start(&[("SHUTDOWN_TIMEOUT", "1"), ("WEBHOOK_TIMEOUT", "30000"), ("QUEUE_VISIBILITY_TIMEOUT", "60")]);
    register_webhook(&relay, &receiver.url());
    post_event(&relay, 0);
    assert!(receiver.wait_for(1, Duration::from_secs(10)), "no delivery arrived within 10 s\n{}", relay.output());

    let signalled = Instant::now();
    relay.signal("TERM");
    let Some((status, exited)) = relay.wait_exit(Duration::from_secs(10)) else {
        panic!("SHUTDOWN_TIMEOUT=1: relay-local still running 10 s after SIGTERM\n{}", relay.output());
    };
    let took = exited - signalled;
    let (stdout, stderr) = relay.final_output();
    let all = format!("--- stdout:\n{stdout}--- stderr:\n{stderr}");
    eprintln!("SHUTDOWN_TIMEOUT=1, receiver never answering: exited {status} {took:?} after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status}\n{all}");
    assert!(
        took <= Duration::from_secs(3),
        "SHUTDOWN_TIMEOUT=1: exited {took:?} after SIGTERM, expected about 1 s\n{all}"
    );
    assert!(
        took >= Duration::from_millis(800),
        "exited {took:?} after SIGTERM without waiting for the delivery in progress\n{all}"
    );
    assert!(stdout.contains("SIGTERM: shutting down"), "no shutdown message\n{all}");
    assert!(
        stderr.contains("work still in progress at the end of SHUTDOWN_TIMEOUT"),
        "no word of the work cut off\n{all}"
    );
    assert!(refused(relay.addr), "a connection to {} after exit was not refused", relay.addr);
}
