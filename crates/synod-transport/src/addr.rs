//! Replica addresses as an operator writes them: a literal socket address
//! (`127.0.0.1:7001`, `[::1]:7001`) or a host name and port (`node-1.lan:7001`).
//!
//! A [`PeerAddr`] keeps the text it was given and is resolved when it is
//! used: a replica resolves its own entry once, to bind it, and a peer's or
//! (in a client) a replica's entry on every connection attempt, so a host
//! whose address changes is found again on the next reconnect.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// A replica's address: a literal socket address, or `host:port` resolved when connecting.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddr {
    text: String,
    literal: Option<SocketAddr>,
}

/// Why a text is not an address, or an address did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// The text is neither a socket address nor `host:port`.
    #[error("{text:?}: {reason}")]
    Syntax {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name did not resolve (or resolved to nothing).
    #[error("{text:?}: cannot resolve host {host:?}: {reason}")]
    Resolve {
        /// The address as written.
        text: String,
        /// The host part.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
}

impl PeerAddr {
    /// Parses `text`: a literal socket address, or `host:port` with a
    /// non-empty host and a port in `1..=65535` (port 0 is allowed only in a literal).
    pub fn parse(text: &str) -> Result<PeerAddr, AddrError> {
        let text = text.trim();
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(PeerAddr { text: text.to_owned(), literal: Some(addr) });
        }
        let syntax = |reason| AddrError::Syntax { text: text.to_owned(), reason };
        let (host, port) = text.rsplit_once(':').ok_or_else(|| syntax("expected host:port"))?;
        if host.is_empty() {
            return Err(syntax("the host is empty"));
        }
        if host.contains(':') || host.contains('[') || host.contains(']') {
            return Err(syntax("an IPv6 address must be written [addr]:port"));
        }
        if host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(syntax("the host is not a host name"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(syntax("the port must be a number from 1 to 65535")),
        }
        Ok(PeerAddr { text: text.to_owned(), literal: None })
    }

    /// The address as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The socket address, when the text is one (no resolution needed).
    pub fn literal(&self) -> Option<SocketAddr> {
        self.literal
    }

    /// The host part (`localhost` of `localhost:7001`, the IP of a literal address).
    pub fn host(&self) -> &str {
        match self.text.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => &self.text,
        }
    }

    /// Resolves the address with the system resolver (this blocks), preferring
    /// an address of the family of `like` if given, else IPv4.
    pub fn resolve(&self, like: Option<SocketAddr>) -> Result<SocketAddr, AddrError> {
        if let Some(addr) = self.literal {
            return Ok(addr);
        }
        let found = self.text.to_socket_addrs().map_err(|e| self.resolve_error(e.to_string()))?;
        self.pick(found, like)
    }

    /// Resolves the address without blocking the runtime (tokio's resolver),
    /// preferring an address of the family of `like` if given, else IPv4.
    pub async fn lookup(&self, like: Option<SocketAddr>) -> Result<SocketAddr, AddrError> {
        if let Some(addr) = self.literal {
            return Ok(addr);
        }
        let found = tokio::net::lookup_host(self.text.as_str())
            .await
            .map_err(|e| self.resolve_error(e.to_string()))?;
        self.pick(found, like)
    }

    fn pick(
        &self,
        found: impl Iterator<Item = SocketAddr>,
        like: Option<SocketAddr>,
    ) -> Result<SocketAddr, AddrError> {
        let found: Vec<SocketAddr> = found.collect();
        let v4 = like.is_none_or(|l| l.is_ipv4());
        found
            .iter()
            .find(|a| a.is_ipv4() == v4)
            .or_else(|| found.first())
            .copied()
            .ok_or_else(|| self.resolve_error("no addresses".into()))
    }

    fn resolve_error(&self, reason: String) -> AddrError {
        AddrError::Resolve { text: self.text.clone(), host: self.host().to_owned(), reason }
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> PeerAddr {
        PeerAddr { text: addr.to_string(), literal: Some(addr) }
    }
}

impl PartialEq<SocketAddr> for PeerAddr {
    /// Whether this is the literal address `other` (a host name never equals one).
    fn eq(&self, other: &SocketAddr) -> bool {
        self.literal == Some(*other)
    }
}

impl FromStr for PeerAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<PeerAddr, AddrError> {
        PeerAddr::parse(s)
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_host_names_parse() {
        let a = PeerAddr::parse("127.0.0.1:7001").unwrap();
        assert_eq!(a.literal(), Some("127.0.0.1:7001".parse().unwrap()));
        assert_eq!(a.host(), "127.0.0.1");
        let a = PeerAddr::parse("[::1]:7001").unwrap();
        assert_eq!(a.host(), "::1");
        let a = PeerAddr::parse("node-1.example:7001").unwrap();
        assert_eq!(a.literal(), None);
        assert_eq!(a.host(), "node-1.example");
        assert_eq!(a.to_string(), "node-1.example:7001");
        for bad in ["localhost", ":7001", "localhost:", "localhost:0", "localhost:70000", "::1:7001", "a b:1"]
        {
            assert!(PeerAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn localhost_resolves_and_an_invalid_host_does_not() {
        let addr = PeerAddr::parse("localhost:7001").unwrap().resolve(None).unwrap();
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), 7001);
        let e = PeerAddr::parse("nosuch.invalid:1").unwrap().resolve(None).unwrap_err();
        assert!(e.to_string().contains("cannot resolve host \"nosuch.invalid\""), "{e}");
    }
}
