//! A small HTTP/1.1 server for the metrics listener: `/metrics`, `/health` and `/readyz`.
//!
//! It runs on std threads: one accepts, and each connection gets a
//! short-lived thread of its own (at most [`MAX_CONNECTIONS`] at once; more
//! are closed at once). A request is its request line and headers, read
//! with a deadline and a size bound; the body, if any, is ignored. Every
//! answer closes the connection. Garbage gets a `400`, never a panic.
//!
//! What `/health` and `/readyz` say comes from a callback, so this crate
//! knows nothing of replicas: the `synod` binary wires it to the replica's
//! status.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;

/// The most connections served at once; more are closed unanswered.
pub const MAX_CONNECTIONS: usize = 16;
/// The largest request head (request line and headers) read, in bytes.
pub const MAX_HEAD: usize = 8 << 10;
/// How long a client may take to send its request head, and to take the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// One check's verdict: passing, or failing for a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The check passes.
    Pass,
    /// The check fails; the reason is one short line.
    Fail(String),
}

impl Check {
    /// A failing check.
    pub fn fail(reason: impl Into<String>) -> Check {
        Check::Fail(reason.into())
    }
}

/// What the health endpoints say right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `/health`: the process runs and can serve (for a replica: it knows a leader it can reach).
    pub healthy: Check,
    /// `/readyz`: it has caught up (for a replica: applied everything it knows committed).
    pub ready: Check,
}

impl Health {
    /// Both checks failing for `reason` (the process is starting, or stopping).
    pub fn down(reason: &str) -> Health {
        Health { healthy: Check::fail(reason), ready: Check::fail(reason) }
    }
}

/// The source of [`Health`], asked on every `/health` and `/readyz` request.
pub type HealthFn = Arc<dyn Fn() -> Health + Send + Sync>;

/// An HTTP answer: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into().into_bytes() }
    }

    fn check(name: &str, check: Check) -> Response {
        let (status, json) = match check {
            Check::Pass => (200, serde_json::json!({ name: true })),
            Check::Fail(reason) => (503, serde_json::json!({ name: false, "reason": reason })),
        };
        let mut body = serde_json::to_vec(&json).unwrap_or_default();
        body.push(b'\n');
        Response { status, content_type: "application/json", body }
    }

    /// The response as bytes on the wire; a `HEAD` request gets the head only.
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// What the server answers: the Prometheus handle and the health callback.
#[derive(Clone)]
pub struct Routes {
    metrics: Option<PrometheusHandle>,
    health: HealthFn,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").field("metrics", &self.metrics.is_some()).finish_non_exhaustive()
    }
}

impl Routes {
    /// Routes serving `metrics` (none: `/metrics` is empty) and `health`.
    pub fn new(
        metrics: Option<PrometheusHandle>,
        health: impl Fn() -> Health + Send + Sync + 'static,
    ) -> Routes {
        Routes { metrics, health: Arc::new(health) }
    }

    /// The answer to a request head (the bytes up to and including the blank line, or fewer).
    ///
    /// Returns the response and whether only its head is to be sent (`HEAD`).
    pub fn answer(&self, head: &[u8]) -> (Response, bool) {
        let Some((method, target)) = request_line(head) else {
            return (Response::text(400, "bad request\n"), false);
        };
        let head_only = method == "HEAD";
        if method != "GET" && !head_only {
            return (Response::text(405, "only GET and HEAD\n"), false);
        }
        let path = target.split(['?', '#']).next().unwrap_or("");
        let response = match path {
            "/metrics" => Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: self.metrics.as_ref().map(PrometheusHandle::render).unwrap_or_default().into_bytes(),
            },
            "/health" | "/healthz" => Response::check("healthy", (self.health)().healthy),
            "/readyz" | "/ready" => Response::check("ready", (self.health)().ready),
            _ => Response::text(404, "not found: try /metrics, /health or /readyz\n"),
        };
        (response, head_only)
    }
}

/// The method and target of a request head's first line, if it is `METHOD SP TARGET SP HTTP/1.x`.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..end]).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return None;
    }
    Some((method, target))
}

/// Why a request head could not be read.
#[derive(Debug)]
enum ReadHead {
    /// The client sent nothing usable in time, or went away.
    Gone,
    /// The head exceeds [`MAX_HEAD`].
    TooLarge,
    /// It took longer than [`IO_TIMEOUT`].
    Timeout,
}

/// Reads a request head: up to the blank line, at most [`MAX_HEAD`] bytes, within [`IO_TIMEOUT`].
fn read_head(conn: &mut TcpStream) -> Result<Vec<u8>, ReadHead> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadHead::Timeout);
        }
        conn.set_read_timeout(Some(left)).map_err(|_| ReadHead::Gone)?;
        let n = match conn.read(&mut buf) {
            Ok(0) => return if head.is_empty() { Err(ReadHead::Gone) } else { Ok(head) },
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(ReadHead::Timeout)
            }
            Err(_) => return Err(ReadHead::Gone),
        };
        let scan_from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if head[scan_from..].windows(4).any(|w| w == b"\r\n\r\n")
            || head[scan_from..].windows(2).any(|w| w == b"\n\n")
        {
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(ReadHead::TooLarge);
        }
    }
}

/// Serves one connection: reads its request head, answers, closes.
fn serve(mut conn: TcpStream, routes: &Routes) {
    let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
    let (response, head_only) = match read_head(&mut conn) {
        Ok(head) => routes.answer(&head),
        Err(ReadHead::Gone) => return,
        Err(ReadHead::TooLarge) => (Response::text(431, "request head too large\n"), false),
        Err(ReadHead::Timeout) => (Response::text(408, "request timeout\n"), false),
    };
    let _ = conn.write_all(&response.to_bytes(head_only));
    let _ = conn.flush();
    // Close our side, then drain briefly what the client still sends: closing
    // with unread input would reset the connection and could lose the answer.
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < 1 << 20 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// A running HTTP server; it serves until the process ends.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
}

impl Server {
    /// Binds `addr` and serves `routes` on threads of its own.
    pub fn start(addr: SocketAddr, routes: Routes) -> std::io::Result<Server> {
        Server::serve(TcpListener::bind(addr)?, routes)
    }

    /// Serves `routes` on `listener`, on threads of its own.
    pub fn serve(listener: TcpListener, routes: Routes) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let active = Arc::new(AtomicUsize::new(0));
        std::thread::Builder::new().name("synod-http".to_owned()).spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::AcqRel);
                    drop(conn);
                    continue;
                }
                let (routes, active) = (routes.clone(), active.clone());
                let spawned = std::thread::Builder::new().name("synod-http-conn".to_owned()).spawn({
                    let active = active.clone();
                    move || {
                        serve(conn, &routes);
                        active.fetch_sub(1, Ordering::AcqRel);
                    }
                });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
        Ok(Server { addr })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(health: Health) -> Routes {
        Routes::new(None, move || health.clone())
    }

    fn healthy() -> Health {
        Health { healthy: Check::Pass, ready: Check::Pass }
    }

    #[test]
    fn health_and_readiness_answer_200_or_503_with_a_json_reason() {
        let (r, _) = routes(healthy()).answer(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((r.status, r.content_type), (200, "application/json"));
        assert_eq!(r.body, b"{\"healthy\":true}\n");
        let sick = Health { healthy: Check::fail("no leader"), ready: Check::fail("applied 3 of 5") };
        let (r, _) = routes(sick.clone()).answer(b"GET /health HTTP/1.1\r\n\r\n");
        assert_eq!(r.status, 503);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v, serde_json::json!({"healthy": false, "reason": "no leader"}));
        let (r, _) = routes(sick).answer(b"GET /readyz?verbose=1 HTTP/1.0\n\n");
        assert_eq!(r.status, 503);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v, serde_json::json!({"ready": false, "reason": "applied 3 of 5"}));
        let (r, _) = routes(healthy()).answer(b"GET /readyz HTTP/1.1\r\n\r\n");
        assert_eq!(r.status, 200);
    }

    #[test]
    fn metrics_is_served_and_other_paths_are_404() {
        let (r, _) = routes(healthy()).answer(b"GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(r.status, 200);
        assert!(r.content_type.starts_with("text/plain"));
        for path in ["/", "/metricsx", "/health/", "/nope"] {
            let (r, _) = routes(healthy()).answer(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes());
            assert_eq!(r.status, 404, "{path}");
        }
        let (r, head_only) = routes(healthy()).answer(b"HEAD /health HTTP/1.1\r\n\r\n");
        assert_eq!(r.status, 200);
        assert!(head_only);
        let wire = String::from_utf8(r.to_bytes(true)).unwrap();
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert!(wire.contains("Connection: close\r\n") && wire.ends_with("\r\n\r\n"), "{wire}");
    }

    #[test]
    fn malformed_requests_are_400_or_405_never_a_panic() {
        let r = routes(healthy());
        for garbage in [
            &b""[..],
            b"\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /health\r\n\r\n",
            b"GET /health HTTP/2\r\n\r\n",
            b"GET health HTTP/1.1\r\n\r\n",
            b"GET  /health HTTP/1.1\r\n\r\n",
            b"get /health HTTP/1.1\r\n\r\n",
            b"GET /health HTTP/1.1 extra\r\n\r\n",
            b"\xff\xfe /health HTTP/1.1\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(r.answer(garbage).0.status, 400, "{:?}", String::from_utf8_lossy(garbage));
        }
        assert_eq!(r.answer(b"POST /health HTTP/1.1\r\n\r\n").0.status, 405);
        // Arbitrary bytes: an answer, whatever they are.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = r.answer(&bytes);
        }
    }

    #[test]
    fn the_server_answers_over_tcp_and_survives_bad_clients() {
        let server = Server::start("127.0.0.1:0".parse().unwrap(), routes(healthy())).unwrap();
        let addr = server.local_addr();
        let ask = |request: &[u8]| {
            let mut conn = TcpStream::connect(addr).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            conn.write_all(request).unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).unwrap();
            answer
        };
        assert!(ask(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n").starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(ask(b"GET /x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(ask(b"\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
        let huge = vec![b'a'; MAX_HEAD * 2];
        assert!(ask(&huge).starts_with("HTTP/1.1 431 "));
        // A client that connects and says nothing, or hangs up, does not stop the server.
        drop(TcpStream::connect(addr).unwrap());
        let _idle = TcpStream::connect(addr).unwrap();
        assert!(ask(b"GET /readyz HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200 OK\r\n"));
    }
}
