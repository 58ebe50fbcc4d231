//! A tiny std-only scraper: HTTP/1.0 `GET /metrics` and a parser of the Prometheus text format.
//!
//! The endpoint is another process and its answer is treated as hostile:
//! the response size is bounded, every read and write has a deadline, and
//! anything malformed is an error, never a panic.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The largest response accepted, in bytes.
const MAX_RESPONSE: usize = 16 << 20;

/// The timeout [`scrape`] uses.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// One sample: a name, its labels in the order given, and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name (with `_bucket`, `_sum`, `_count` suffixes as exported).
    pub name: String,
    /// The labels.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// The samples of one scrape, in the order the endpoint gave them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    samples: Vec<Sample>,
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// No connection could be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The endpoint.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Sending the request or reading the response failed or timed out.
    #[error("cannot read metrics from {addr}: {source}")]
    Io {
        /// The endpoint.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The response is not a well-formed HTTP response, or is too large.
    #[error("bad HTTP response from {addr}: {reason}")]
    Http {
        /// The endpoint.
        addr: SocketAddr,
        /// What is wrong.
        reason: String,
    },
    /// The endpoint answered with a status other than 200.
    #[error("{addr} answered {status}")]
    Status {
        /// The endpoint.
        addr: SocketAddr,
        /// The status line.
        status: String,
    },
    /// The body is not in the Prometheus text format.
    #[error("bad metrics from {addr}: {source}")]
    Parse {
        /// The endpoint.
        addr: SocketAddr,
        /// The parser's reason.
        #[source]
        source: ParseError,
    },
}

/// Why text is not in the Prometheus text format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// The line, counting from 1.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl Scrape {
    /// Every sample.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The value of the first sample called `name`, whatever its labels.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.samples.iter().find(|s| s.name == name).map(|s| s.value)
    }

    /// The value of the first sample called `name` whose label `label` is `value`.
    pub fn get_labeled(&self, name: &str, label: &str, value: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels.iter().any(|(k, v)| k == label && v == value))
            .map(|s| s.value)
    }

    /// Every sample called `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }
}

/// Scrapes `http://addr/metrics` with [`DEFAULT_TIMEOUT`].
pub fn scrape(addr: SocketAddr) -> Result<Scrape, ScrapeError> {
    scrape_with_timeout(addr, DEFAULT_TIMEOUT)
}

/// Scrapes `http://addr/metrics`, giving up after `timeout` in all.
pub fn scrape_with_timeout(addr: SocketAddr, timeout: Duration) -> Result<Scrape, ScrapeError> {
    let deadline = Instant::now() + timeout;
    let io = |source| ScrapeError::Io { addr, source };
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|source| ScrapeError::Connect { addr, source })?;
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
        } else {
            Ok(left)
        }
    };
    stream.set_write_timeout(Some(left().map_err(io)?)).map_err(io)?;
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        stream.set_read_timeout(Some(left().map_err(io)?)).map_err(io)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if response.len() + n > MAX_RESPONSE {
                    return Err(ScrapeError::Http {
                        addr,
                        reason: format!("response exceeds {MAX_RESPONSE} bytes"),
                    });
                }
                response.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    let body = http_body(&response).map_err(|reason| match reason {
        Body::Status(status) => ScrapeError::Status { addr, status },
        Body::Bad(reason) => ScrapeError::Http { addr, reason },
    })?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| ScrapeError::Http { addr, reason: format!("body is not UTF-8: {e}") })?;
    parse(text).map_err(|source| ScrapeError::Parse { addr, source })
}

enum Body {
    Status(String),
    Bad(String),
}

/// The body of a complete HTTP/1.x response with status 200.
fn http_body(response: &[u8]) -> Result<Vec<u8>, Body> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Body::Bad("no end of headers".to_owned()))?;
    let head =
        std::str::from_utf8(&response[..split]).map_err(|_| Body::Bad("headers are not UTF-8".into()))?;
    let body = &response[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if !version.starts_with("HTTP/1.") {
        return Err(Body::Bad(format!("not an HTTP/1 status line: {status:?}")));
    }
    if code != "200" {
        return Err(Body::Status(status.to_owned()));
    }
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length =
                Some(value.parse::<usize>().map_err(|_| Body::Bad(format!("bad content-length {value:?}")))?);
        }
    }
    if chunked {
        return dechunk(body).ok_or_else(|| Body::Bad("malformed chunked body".to_owned()));
    }
    match length {
        Some(n) if n > body.len() => Err(Body::Bad(format!("body of {} bytes, {n} announced", body.len()))),
        Some(n) => Ok(body[..n].to_vec()),
        None => Ok(body.to_vec()),
    }
}

/// Decodes a chunked transfer encoding; `None` if malformed or truncated.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_line = std::str::from_utf8(&body[..end]).ok()?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        body = &body[end + 2..];
        if size == 0 {
            return Some(out);
        }
        if body.len() < size.checked_add(2)? || &body[size..size + 2] != b"\r\n" {
            return None;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// Parses the Prometheus text exposition format (version 0.0.4).
///
/// Comments (`# HELP`, `# TYPE`) and blank lines are skipped; an optional
/// timestamp after the value is ignored.
pub fn parse(text: &str) -> Result<Scrape, ParseError> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_line(line).map_err(|reason| ParseError { line: i + 1, reason })?;
        samples.push(sample);
    }
    Ok(Scrape { samples })
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line.find(|c: char| c == '{' || c.is_ascii_whitespace()).unwrap_or(line.len());
    let name = &line[..name_end];
    let valid_name = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !valid_name {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = parse_value(value).ok_or_else(|| format!("bad value {value:?}"))?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing text after the timestamp".to_owned());
    }
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// Parses `k="v",...}` and returns what follows the closing brace.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        s = s[eq + 1..].trim_start().strip_prefix('"').ok_or("label value without quotes")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".to_owned()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("bad escape in label value".to_owned()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key.to_owned(), value));
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label".to_owned());
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_exposition_format() {
        let text = "# HELP a_total things\n# TYPE a_total counter\na_total 3\n\
                    g{peer=\"2\",x=\"q\\\"\\\\\\n\"} -1.5 1700000000\n\
                    h_bucket{le=\"+Inf\"} 4\nh_sum 0.25\n";
        let s = parse(text).unwrap();
        assert_eq!(s.get("a_total"), Some(3.0));
        assert_eq!(s.get_labeled("g", "peer", "2"), Some(-1.5));
        assert_eq!(s.get_labeled("g", "x", "q\"\\\n"), Some(-1.5));
        assert_eq!(s.get_labeled("g", "peer", "3"), None);
        assert_eq!(s.get_labeled("h_bucket", "le", "+Inf"), Some(4.0));
        assert_eq!(s.samples().len(), 4);
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for bad in [
            "x",
            "x{",
            "x{a} 1",
            "x{a=\"1} 1",
            "x{a=\"1\" b=\"2\"} 1",
            "1x 1",
            "x one",
            "x 1 2 3",
            "x{a=\"\\q\"} 1",
            "x{=\"1\"} 1",
            "é 1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn http_bodies_plain_sized_and_chunked() {
        let plain = b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nx 1\n";
        assert_eq!(http_body(plain).ok(), Some(b"x 1\n".to_vec()));
        let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nx 1\n";
        assert_eq!(http_body(sized).ok(), Some(b"x 1".to_vec()));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nx \r\n2\r\n1\n\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).ok(), Some(b"x 1\n".to_vec()));
        assert!(matches!(http_body(b"HTTP/1.1 404 Not Found\r\n\r\n"), Err(Body::Status(_))));
        for bad in [
            &b"garbage"[..],
            b"SSH-2.0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nx",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nx",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nx",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(matches!(http_body(bad), Err(Body::Bad(_))), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
