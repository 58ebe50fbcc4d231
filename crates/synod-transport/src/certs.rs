//! Certificates: the cluster CA, per-node and per-client key pairs, their files, and the identity bound into each.
//!
//! Identity is bound into a certificate's subject alternative names:
//! a replica's certificate carries the URI `synod://node/<id>` and the DNS
//! name `node-<id>.synod`, a client's `synod://client/<id>` and
//! `client-<id>.synod`. A replica's certificate is valid for TLS server and
//! client authentication; a client's for client authentication only, so a
//! client certificate can never serve as a replica.
//!
//! [`init`] is the logic behind `synod certs init --dir D --nodes N --clients M`:
//!
//! ```text
//! D/ca.pem                         the cluster CA certificate (trust anchor)
//! D/ca.key                         the CA's private key (keep it offline)
//! D/node-<i>.pem, D/node-<i>.key   replica i = 1..=N
//! D/client-<j>.pem, D/client-<j>.key client j = 1..=M
//! ```
//!
//! and [`add`] behind `synod certs add --dir D --node N` (or `--client N`),
//! which signs one more certificate with the CA kept in `D/ca.key`.
//!
//! Certificates expire: node and client certificates after
//! [`DEFAULT_DAYS`] days unless told otherwise, the CA after
//! [`DEFAULT_CA_DAYS`]. [`not_after`] reads a certificate's expiry, which a
//! replica watches and exports.
//!
//! Every file is written with mode 0600; existing files are never
//! overwritten unless `force` is set.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use synod_wire::NodeId;

/// Who a certificate says its holder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// A replica of the cluster.
    Node(NodeId),
    /// A client, numbered by the operator.
    Client(u32),
}

impl Identity {
    /// The URI bound into the certificate: `synod://node/<id>` or `synod://client/<id>`.
    pub fn uri(&self) -> String {
        match self {
            Identity::Node(id) => format!("synod://node/{}", id.0),
            Identity::Client(id) => format!("synod://client/{id}"),
        }
    }

    /// The DNS name bound into the certificate: `node-<id>.synod` or `client-<id>.synod`.
    ///
    /// Clients and replicas dial a replica under this name, so standard
    /// server-name verification checks the replica's id as well.
    pub fn dns_name(&self) -> String {
        match self {
            Identity::Node(id) => format!("node-{}.synod", id.0),
            Identity::Client(id) => format!("client-{id}.synod"),
        }
    }

    /// The file stem used by [`init`]: `node-<id>` or `client-<id>`.
    pub fn file_stem(&self) -> String {
        match self {
            Identity::Node(id) => format!("node-{}", id.0),
            Identity::Client(id) => format!("client-{id}"),
        }
    }

    fn parse_uri(uri: &str) -> Option<Identity> {
        let rest = uri.strip_prefix("synod://")?;
        let (role, id) = rest.split_once('/')?;
        // `u32::from_str` accepts a leading '+'; identities are plain digits.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let id: u32 = id.parse().ok()?;
        match role {
            "node" => Some(Identity::Node(NodeId(id))),
            "client" => Some(Identity::Client(id)),
            _ => None,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Node(id) => write!(f, "node {}", id.0),
            Identity::Client(id) => write!(f, "client {id}"),
        }
    }
}

/// Why a certificate does not name exactly one synod identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not a parsable X.509 certificate.
    #[error("not an X.509 certificate: {0}")]
    Parse(String),
    /// The certificate carries no `synod://` URI.
    #[error("certificate names no synod identity")]
    Missing,
    /// The certificate carries more than one `synod://` URI, or a malformed one.
    #[error("certificate names an ambiguous or malformed synod identity")]
    Ambiguous,
}

/// Reads the identity bound into a DER certificate.
///
/// Callers only trust the answer for a certificate whose chain to the
/// cluster CA has been verified (the TLS layer does that first).
pub fn identity_of(cert: &[u8]) -> Result<Identity, IdentityError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| IdentityError::Parse(e.to_string()))?;
    let san = cert.subject_alternative_name().map_err(|e| IdentityError::Parse(e.to_string()))?;
    let mut found = None;
    for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
        if let x509_parser::extensions::GeneralName::URI(uri) = name {
            if uri.starts_with("synod://") {
                let id = Identity::parse_uri(uri).ok_or(IdentityError::Ambiguous)?;
                if found.replace(id).is_some() {
                    return Err(IdentityError::Ambiguous);
                }
            }
        }
    }
    found.ok_or(IdentityError::Missing)
}

/// Days a node or client certificate is valid unless told otherwise.
pub const DEFAULT_DAYS: u32 = 365;

/// Days the cluster CA is valid unless told otherwise (ten years).
pub const DEFAULT_CA_DAYS: u32 = 3650;

/// When a certificate is valid: from `not_before` to `not_after`, at whole-second precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The first moment the certificate is valid.
    pub not_before: SystemTime,
    /// The last moment the certificate is valid.
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour ago (for clocks a little behind) until `days` days from now.
    pub fn days(days: u32) -> Validity {
        let now = SystemTime::now();
        Validity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(u64::from(days) * 86_400),
        }
    }

    fn apply(&self, params: &mut CertificateParams) {
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let since = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default();
        params.not_before = epoch + since(self.not_before);
        params.not_after = epoch + since(self.not_after);
    }
}

/// Reads when a DER certificate expires (its notAfter).
pub fn not_after(cert: &[u8]) -> Result<SystemTime, IdentityError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| IdentityError::Parse(e.to_string()))?;
    let secs = cert.validity().not_after.timestamp();
    Ok(if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    })
}

/// Why certificates could not be made, written or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused to generate a key or certificate.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// What was being generated.
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// The CA's key is readable by others than its owner; it is not used.
    #[error("{} is readable by others (mode {mode:o}); `chmod 600` it first", path.display())]
    KeyExposed {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file exists and `force` was not given; nothing was written.
    #[error("{} exists; pass --force to overwrite", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate names a different identity than expected.
    #[error("certificate {} is for {found}, expected {expected}", path.display())]
    WrongIdentity {
        /// The certificate file.
        path: PathBuf,
        /// The identity wanted.
        expected: Identity,
        /// What the certificate says (or why it says nothing usable).
        found: String,
    },
}

/// A cluster certificate authority, able to issue node and client certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// Generates a new CA (ECDSA P-256) whose subject common name is `name`, valid for [`DEFAULT_CA_DAYS`].
    pub fn generate(name: &str) -> Result<Ca, CertError> {
        Ca::generate_with(name, Validity::days(DEFAULT_CA_DAYS))
    }

    /// Generates a new CA valid for `validity`.
    pub fn generate_with(name: &str, validity: Validity) -> Result<Ca, CertError> {
        let gen = |source| CertError::Generate { what: "the CA".into(), source };
        let key = KeyPair::generate().map_err(gen)?;
        let mut params = CertificateParams::default();
        validity.apply(&mut params);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).map_err(gen)?;
        let key_pem = key.serialize_pem();
        Ok(Ca { cert: cert.der().clone(), cert_pem: cert.pem(), key_pem, issuer: Issuer::new(params, key) })
    }

    /// Loads the CA that [`init`] wrote to `dir` (`ca.pem` and `ca.key`), to issue more certificates.
    ///
    /// `ca.key` must be readable by its owner only ([`CertError::KeyExposed`] otherwise).
    pub fn load(dir: &Path) -> Result<Ca, CertError> {
        use std::os::unix::fs::PermissionsExt;
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CertError::Io { path, source }
        };
        let mode = fs::metadata(&key_path).map_err(io(&key_path))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CertError::KeyExposed { path: key_path, mode });
        }
        let cert_pem = fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key_pem = fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let pem = |path: &Path, reason: String| CertError::Pem { path: path.into(), reason };
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| pem(&cert_path, e.to_string()))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| pem(&key_path, e.to_string()))?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&cert).map_err(|e| pem(&cert_path, e.to_string()))?;
        if !parsed.is_ca() {
            return Err(pem(&cert_path, "not a CA certificate".into()));
        }
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(pem(&key_path, format!("is not the key of {}", cert_path.display())));
        }
        let issuer = Issuer::from_ca_cert_der(&cert, key).map_err(|e| pem(&cert_path, e.to_string()))?;
        Ok(Ca { issuer, cert, cert_pem, key_pem })
    }

    /// The CA certificate, the trust anchor every endpoint of the cluster is given.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a fresh key pair and certificate for `identity`, valid for [`DEFAULT_DAYS`].
    pub fn issue(&self, identity: Identity) -> Result<Credentials, CertError> {
        self.issue_with(identity, Validity::days(DEFAULT_DAYS))
    }

    /// Issues a fresh key pair and certificate for `identity`, valid for `validity`
    /// (tests give one in the past to make an expired certificate).
    pub fn issue_with(&self, identity: Identity, validity: Validity) -> Result<Credentials, CertError> {
        let gen = |source| CertError::Generate { what: identity.to_string(), source };
        let key = KeyPair::generate().map_err(gen)?;
        let mut params = CertificateParams::default();
        validity.apply(&mut params);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, format!("synod {identity}"));
        let uri = identity.uri().try_into().map_err(gen)?;
        let dns = identity.dns_name().try_into().map_err(gen)?;
        params.subject_alt_names = vec![SanType::URI(uri), SanType::DnsName(dns)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match identity {
            Identity::Node(_) => {
                vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
            }
            Identity::Client(_) => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen)?;
        Ok(Credentials {
            identity,
            ca: self.cert.clone(),
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key: key.serialize_der(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What an endpoint needs for mutual TLS: the cluster CA, its own certificate and private key.
#[derive(Clone)]
pub struct Credentials {
    identity: Identity,
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    cert_pem: String,
    key: Vec<u8>,
    key_pem: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("identity", &self.identity).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Loads `ca.pem`, `<stem>.pem` and `<stem>.key` from `dir` (the layout [`init`] writes)
    /// and checks that the certificate names `identity`.
    pub fn load(dir: &Path, identity: Identity) -> Result<Credentials, CertError> {
        let stem = identity.file_stem();
        Credentials::load_files(
            &dir.join("ca.pem"),
            &dir.join(format!("{stem}.pem")),
            &dir.join(format!("{stem}.key")),
            identity,
        )
    }

    /// Loads the CA certificate, this endpoint's certificate and its key from PEM files.
    pub fn load_files(
        ca: &Path,
        cert: &Path,
        key: &Path,
        identity: Identity,
    ) -> Result<Credentials, CertError> {
        let read = |path: &Path| fs::read(path).map_err(|source| CertError::Io { path: path.into(), source });
        let pem_err = |path: &Path, e: rustls::pki_types::pem::Error| CertError::Pem {
            path: path.into(),
            reason: e.to_string(),
        };
        let ca_der = CertificateDer::from_pem_slice(&read(ca)?).map_err(|e| pem_err(ca, e))?;
        let cert_bytes = read(cert)?;
        let cert_der = CertificateDer::from_pem_slice(&cert_bytes).map_err(|e| pem_err(cert, e))?;
        let key_bytes = read(key)?;
        let key_der = PrivatePkcs8KeyDer::from_pem_slice(&key_bytes).map_err(|e| pem_err(key, e))?;
        let found = identity_of(&cert_der);
        if found.as_ref() != Ok(&identity) {
            return Err(CertError::WrongIdentity {
                path: cert.into(),
                expected: identity,
                found: match found {
                    Ok(id) => id.to_string(),
                    Err(e) => e.to_string(),
                },
            });
        }
        Ok(Credentials {
            identity,
            ca: ca_der,
            cert: cert_der,
            cert_pem: String::from_utf8_lossy(&cert_bytes).into_owned(),
            key: key_der.secret_pkcs8_der().to_vec(),
            key_pem: String::from_utf8_lossy(&key_bytes).into_owned(),
        })
    }

    /// The identity the certificate names.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The cluster CA certificate these credentials trust.
    pub fn ca(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// This endpoint's certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// This endpoint's certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// This endpoint's private key in PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// This endpoint's private key.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }

    /// The same certificate and key, trusting another CA; tests use it to build impostors.
    pub fn with_ca(mut self, ca: CertificateDer<'static>) -> Credentials {
        self.ca = ca;
        self
    }
}

/// What [`init`] or [`add`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
    /// What each file of `files` is for, in the same order.
    pub uses: Vec<String>,
}

impl fmt::Display for InitReport {
    /// One line per file: its path, then its use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        let width = paths.iter().map(|p| p.chars().count()).max().unwrap_or(0);
        for (path, what) in paths.iter().zip(&self.uses) {
            writeln!(f, "{path:<width$}  {what}")?;
        }
        Ok(())
    }
}

/// Validity periods for [`init_with`] and [`add`], in days from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Node and client certificates ([`DEFAULT_DAYS`] by default).
    pub days: u32,
    /// The CA ([`DEFAULT_CA_DAYS`] by default).
    pub ca_days: u32,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes { days: DEFAULT_DAYS, ca_days: DEFAULT_CA_DAYS }
    }
}

/// A date as `YYYY-MM-DD` (UTC).
fn date(t: SystemTime) -> String {
    let days = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The files of `identity`, with their uses.
fn plan_for(dir: &Path, id: Identity, until: SystemTime) -> [(PathBuf, String); 2] {
    let until = date(until);
    let (cert, key) = match id {
        Identity::Node(n) => (
            format!("replica {} certificate, expires {until} (node {} only)", n.0, n.0),
            format!("replica {} private key (node {} only)", n.0, n.0),
        ),
        Identity::Client(n) => (
            format!("client {n} certificate, expires {until} (that client only)"),
            format!("client {n} private key (that client only)"),
        ),
    };
    [(dir.join(format!("{}.pem", id.file_stem())), cert), (dir.join(format!("{}.key", id.file_stem())), key)]
}

/// Creates a cluster CA and credentials for replicas `1..=nodes` and clients `1..=clients` in `dir`,
/// with the default [`Lifetimes`].
///
/// `dir` is created (mode 0700) if missing. Every file is written with mode
/// 0600. Unless `force` is set, nothing is written if any of the files
/// already exists ([`CertError::Exists`]); with `force` they are replaced.
pub fn init(dir: &Path, nodes: u32, clients: u32, force: bool) -> Result<InitReport, CertError> {
    init_with(dir, nodes, clients, force, Lifetimes::default())
}

/// [`init`] with the given certificate lifetimes.
pub fn init_with(
    dir: &Path,
    nodes: u32,
    clients: u32,
    force: bool,
    lifetimes: Lifetimes,
) -> Result<InitReport, CertError> {
    let identities: Vec<Identity> =
        (1..=nodes).map(|i| Identity::Node(NodeId(i))).chain((1..=clients).map(Identity::Client)).collect();
    let ca_validity = Validity::days(lifetimes.ca_days);
    let validity = Validity::days(lifetimes.days);
    let mut plan: Vec<(PathBuf, String)> = vec![
        (
            dir.join("ca.pem"),
            format!(
                "CA certificate, expires {} (copy to every node and client)",
                date(ca_validity.not_after)
            ),
        ),
        (dir.join("ca.key"), "CA private key (keep offline; `synod certs add` signs with it)".into()),
    ];
    for id in &identities {
        plan.extend(plan_for(dir, *id, validity.not_after));
    }
    if !force {
        if let Some((path, _)) = plan.iter().find(|(p, _)| p.symlink_metadata().is_ok()) {
            return Err(CertError::Exists { path: path.clone() });
        }
    }
    // Generate everything before writing anything, so a generation failure leaves no partial set.
    let ca = Ca::generate_with("synod cluster CA", ca_validity)?;
    let mut contents: Vec<String> = vec![ca.cert_pem.clone(), ca.key_pem.clone()];
    for id in &identities {
        let creds = ca.issue_with(*id, validity)?;
        contents.push(creds.cert_pem);
        contents.push(creds.key_pem);
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CertError::Io { path: dir.into(), source })?;
    for ((path, _), text) in plan.iter().zip(&contents) {
        write_private(path, text.as_bytes(), force)?;
    }
    let (files, uses) = plan.into_iter().unzip();
    Ok(InitReport { files, uses })
}

/// Signs a new key pair and certificate for `identity`, valid for `days`, with the CA in `dir`
/// (as [`init`] wrote it), and writes `<stem>.pem` and `<stem>.key` there (mode 0600).
///
/// Unless `force` is set, nothing is written if either file exists ([`CertError::Exists`]).
pub fn add(dir: &Path, identity: Identity, days: u32, force: bool) -> Result<InitReport, CertError> {
    let validity = Validity::days(days);
    let plan = plan_for(dir, identity, validity.not_after);
    if !force {
        if let Some((path, _)) = plan.iter().find(|(p, _)| p.symlink_metadata().is_ok()) {
            return Err(CertError::Exists { path: path.clone() });
        }
    }
    let ca = Ca::load(dir)?;
    let creds = ca.issue_with(identity, validity)?;
    write_private(&plan[0].0, creds.cert_pem.as_bytes(), force)?;
    write_private(&plan[1].0, creds.key_pem.as_bytes(), force)?;
    let (files, uses) = plan.into_iter().unzip();
    Ok(InitReport { files, uses })
}

/// Writes `bytes` to a new file of mode 0600; with `force`, an existing file is replaced first.
fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io { path: path.into(), source };
    if force {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    let mut file =
        fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CertError::Exists { path: path.into() }
            } else {
                io(e)
            }
        })?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_certificates() {
        let ca = Ca::generate("test").unwrap();
        for id in [Identity::Node(NodeId(7)), Identity::Client(3)] {
            let creds = ca.issue(id).unwrap();
            assert_eq!(identity_of(creds.cert()), Ok(id));
        }
        assert_eq!(identity_of(ca.cert()), Err(IdentityError::Missing));
        assert!(matches!(identity_of(b"garbage"), Err(IdentityError::Parse(_))));
    }

    #[test]
    fn validity_is_written_into_the_certificate() {
        let ca = Ca::generate("test").unwrap();
        let creds = ca.issue_with(Identity::Client(1), Validity::days(10)).unwrap();
        let until = not_after(creds.cert()).unwrap();
        let expected = SystemTime::now() + Duration::from_secs(10 * 86_400);
        let off = until.duration_since(expected).unwrap_or_else(|e| e.duration());
        assert!(off < Duration::from_secs(5), "{off:?}");
        let ca_until = not_after(ca.cert()).unwrap();
        assert!(ca_until > SystemTime::now() + Duration::from_secs(3649 * 86_400));
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(date(UNIX_EPOCH), "1970-01-01");
        assert_eq!(date(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29");
        assert_eq!(date(UNIX_EPOCH + Duration::from_secs(1_798_761_600)), "2027-01-01");
    }

    #[test]
    fn malformed_uris_are_not_identities() {
        for bad in ["synod://node/", "synod://node/+1", "synod://node/1x", "synod://admin/1", "synod://node"]
        {
            assert_eq!(Identity::parse_uri(bad), None, "{bad}");
        }
        assert_eq!(Identity::parse_uri("synod://node/12"), Some(Identity::Node(NodeId(12))));
    }
}
