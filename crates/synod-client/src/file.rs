//! The client configuration file, `client.toml`: the one loader of it
//! (`synod put --client`, the benchmarks and any other tool call [`ClientConfig::load`]).
//!
//! ```toml
//! client = 1                      # the client number its certificate names
//! request_timeout_ms = 1000       # optional: per attempt, before trying another replica
//!
//! [tls]                           # paths relative to this file
//! ca = "certs/ca.pem"
//! cert = "certs/client-1.pem"
//! key = "certs/client-1.key"
//!
//! [replicas]                      # id = "ip:port" or "host:port"
//! 1 = "127.0.0.1:7001"
//! 2 = "localhost:7002"
//! 3 = "node-3.example.net:7003"
//! ```
//!
//! Unknown fields are errors, so a misspelt field never silently falls back
//! to a default. Every host name must resolve when the file is loaded (an
//! error names the file, the entry and the host); it is resolved again on
//! every connection attempt, so a replica that moves is found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use synod_transport::{Credentials, Identity, PeerAddr};
use synod_wire::NodeId;

use crate::{ClientConfig, ConfigError};

/// A client's configuration file, as read; see the [module docs](self) for the format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// The client number its certificate names (`client-<n>.pem`).
    pub client: u32,
    /// Certificates (made absolute by [`ClientFile::load`]).
    pub tls: TlsFiles,
    /// Every replica's address, by id: `ip:port` or `host:port`.
    pub replicas: BTreeMap<String, String>,
    /// Milliseconds one attempt waits before trying another replica.
    pub request_timeout_ms: Option<u64>,
    /// Where the file was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

/// Certificate paths.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// This party's certificate.
    pub cert: PathBuf,
    /// This party's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Makes relative paths relative to `base` (a configuration file's directory).
    pub fn resolve(&mut self, base: &Path) {
        self.ca = base.join(&self.ca);
        self.cert = base.join(&self.cert);
        self.key = base.join(&self.key);
    }
}

/// Reads a TOML file into `T`; errors name the file.
pub fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    toml::from_str(&text)
        .map_err(|e| ConfigError::Invalid(format!("{}: {}", path.display(), e.to_string().trim_end())))
}

/// The directory relative paths in the file at `path` are relative to.
pub fn base_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Reads an address book (`[peers]` of node.toml, `[replicas]` of client.toml):
/// replica ids (positive numbers) to addresses, every one parsed and every
/// host name resolved now. Errors read `<file>: <field>.<id> = "<text>": <what is wrong>`.
pub fn address_book(
    path: &Path,
    field: &str,
    table: &BTreeMap<String, String>,
) -> Result<BTreeMap<NodeId, PeerAddr>, ConfigError> {
    let invalid = |what: String| ConfigError::Invalid(format!("{}: {field}{what}", path.display()));
    let mut out = BTreeMap::new();
    for (key, text) in table {
        let entry = format!(".{key} = {text:?}");
        let id: u32 = match key.parse() {
            Ok(id) if key.bytes().all(|b| b.is_ascii_digit()) => id,
            _ => return Err(invalid(format!("{entry}: {key:?} is not a replica id (a positive number)"))),
        };
        if id == 0 {
            return Err(invalid(format!("{entry}: replica id 0 is reserved")));
        }
        let addr = match PeerAddr::parse(text) {
            Ok(addr) => addr,
            Err(synod_transport::AddrError::Syntax { reason, .. }) => {
                return Err(invalid(format!("{entry}: {reason}")))
            }
            Err(e) => return Err(invalid(format!("{entry}: {e}"))),
        };
        if let Err(e) = addr.resolve(None) {
            let reason = match e {
                synod_transport::AddrError::Resolve { host, reason, .. } => {
                    format!("cannot resolve host {host:?} ({reason})")
                }
                other => other.to_string(),
            };
            return Err(invalid(format!("{entry}: {reason}")));
        }
        out.insert(NodeId(id), addr);
    }
    if out.is_empty() {
        return Err(invalid(": no replicas listed".into()));
    }
    Ok(out)
}

impl ClientFile {
    /// Reads and checks a client file: its fields, its address book (every
    /// host name must resolve now); relative paths become relative to the file.
    pub fn load(path: impl AsRef<Path>) -> Result<ClientFile, ConfigError> {
        let path = path.as_ref();
        let mut file: ClientFile = read_toml(path)?;
        file.tls.resolve(&base_dir(path));
        file.path = path.to_owned();
        file.address_book()?;
        Ok(file)
    }

    /// The address book, checked (and resolved once) as [`address_book`] does.
    pub fn address_book(&self) -> Result<BTreeMap<NodeId, PeerAddr>, ConfigError> {
        address_book(&self.path, "replicas", &self.replicas)
    }

    /// The client configuration this file describes (loads the certificates).
    pub fn client_config(&self) -> Result<ClientConfig, ConfigError> {
        let identity = Identity::Client(self.client);
        let credentials = Credentials::load_files(&self.tls.ca, &self.tls.cert, &self.tls.key, identity)
            .map_err(|source| ConfigError::Certs { dir: self.path.clone(), source })?;
        let mut config = ClientConfig::new(self.address_book()?, credentials)?;
        if let Some(ms) = self.request_timeout_ms {
            config = config.with_request_timeout(Duration::from_millis(ms));
        }
        Ok(config)
    }
}

impl ClientConfig {
    /// Reads a client file (`client.toml`, see [`ClientFile`]) and loads the certificates it names.
    pub fn load(path: impl AsRef<Path>) -> Result<ClientConfig, ConfigError> {
        ClientFile::load(path)?.client_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("client.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    const TLS: &str =
        "[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/client-1.pem\"\nkey = \"certs/client-1.key\"\n";

    #[test]
    fn host_names_resolve_and_paths_are_relative_to_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(
            tmp.path(),
            &format!("client = 1\nrequest_timeout_ms = 250\n{TLS}[replicas]\n1 = \"127.0.0.1:7001\"\n2 = \"localhost:7002\"\n"),
        );
        let file = ClientFile::load(&path).unwrap();
        assert_eq!(file.tls.ca, tmp.path().join("certs/ca.pem"));
        let book = file.address_book().unwrap();
        assert_eq!(book[&NodeId(1)], "127.0.0.1:7001".parse::<std::net::SocketAddr>().unwrap());
        assert_eq!(book[&NodeId(2)].as_str(), "localhost:7002");
        assert!(book[&NodeId(2)].resolve(None).unwrap().ip().is_loopback());
        // The certificates do not exist: loading the whole config says which file.
        let err = ClientConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("client.toml") && err.contains("ca.pem"), "{err}");
    }

    #[test]
    fn an_unresolvable_host_names_the_host_and_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(
            tmp.path(),
            &format!("client = 1\n{TLS}[replicas]\n1 = \"127.0.0.1:1\"\n2 = \"nosuch.invalid:1\"\n"),
        );
        let err = ClientFile::load(&path).unwrap_err().to_string();
        let want = format!(
            "{}: replicas.2 = \"nosuch.invalid:1\": cannot resolve host \"nosuch.invalid\"",
            path.display()
        );
        assert!(err.starts_with(&want), "{err}");
    }

    #[test]
    fn bad_files_are_refused_with_the_field_named() {
        let tmp = tempfile::tempdir().unwrap();
        let cases = [
            (format!("client = 1\n{TLS}[replicas]\n"), "replicas: no replicas listed"),
            (format!("client = 1\n{TLS}[replicas]\nx = \"127.0.0.1:1\"\n"), "is not a replica id"),
            (format!("client = 1\n{TLS}[replicas]\n0 = \"127.0.0.1:1\"\n"), "replica id 0 is reserved"),
            (
                format!("client = 1\n{TLS}[replicas]\n1 = \"localhost\"\n"),
                "replicas.1 = \"localhost\": expected host:port",
            ),
            (
                format!("client = 1\ncolour = 2\n{TLS}[replicas]\n1 = \"127.0.0.1:1\"\n"),
                "unknown field `colour`",
            ),
            (format!("{TLS}[replicas]\n1 = \"127.0.0.1:1\"\n"), "missing field `client`"),
        ];
        for (text, want) in cases {
            let path = write(tmp.path(), &text);
            let err = ClientFile::load(&path).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("client.toml"), "{want}: {err}");
        }
        let err = ClientFile::load(tmp.path().join("absent.toml")).unwrap_err().to_string();
        assert!(err.starts_with("cannot read") && err.contains("absent.toml"), "{err}");
    }
}
