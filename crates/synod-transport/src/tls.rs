//! rustls configurations for mutual TLS against the cluster CA (ring provider, TLS 1.3, ALPN `synod/1`).
//!
//! Both directions verify the chain to the cluster CA. On top of that, the
//! dialing side checks that the replica it reached is the one it meant
//! ([`NodeVerifier`]); the accepting side reads the identity from the
//! dialer's certificate and checks it against the dialer's claim and the
//! address book (see [`crate::Node`]).
//!
//! This module deliberately hands out `rustls` and `quinn` types: it is for
//! users who build their own quinn endpoints with synod's certificates and
//! identity checks. [`crate::Node`] and [`crate::ClientEndpoint`] never show them.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use synod_wire::NodeId;

use crate::certs::{identity_of, Credentials, Identity};

/// The ALPN protocol every synod endpoint speaks.
pub const ALPN: &[u8] = b"synod/1";

/// Why a TLS or QUIC configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the CA, certificate or key.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("tls: client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// quinn refused the rustls configuration.
    #[error("quic: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// The only crypto provider synod uses: ring.
///
/// Building configs with an explicit provider keeps a second provider
/// (aws-lc-rs) out of the build and avoids rustls's process-default lookup.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(creds: &Credentials) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(creds.ca().clone())?;
    Ok(Arc::new(roots))
}

/// QUIC transport parameters shared by replicas and clients (the benchmark's bare stream uses them too).
pub fn transport_config(idle_timeout: Duration, keep_alive: Duration) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(quinn::IdleTimeout::try_from(idle_timeout).ok());
    t.keep_alive_interval(Some(keep_alive));
    // Generous windows: a peer link carries bulk catch-up data next to
    // consensus traffic, and a pipelining client keeps many requests in flight.
    t.stream_receive_window(quinn::VarInt::from_u32(16 << 20));
    t.receive_window(quinn::VarInt::from_u32(32 << 20));
    t.send_window(32 << 20);
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(16));
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(64));
    Arc::new(t)
}

/// The server side of a replica: requires a client certificate signed by the cluster CA.
pub fn server_config(creds: &Credentials) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = tcp_server_config(creds)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// A TLS server over TCP beside a replica (the RESP listener, for `redis-cli
/// --tls`): presents `creds`, requires a client certificate signed by the
/// cluster CA, TLS 1.3, and no ALPN.
pub fn tcp_server_config(creds: &Credentials) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(creds)?, provider.clone()).build()?;
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![creds.cert().clone()], creds.key())?)
}

/// The dialing side: presents `creds` and accepts only a replica certificate
/// from the cluster CA, for replica `expect` if given.
pub fn client_config(creds: &Credentials, expect: Option<NodeId>) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = NodeVerifier::new(creds, expect, provider.clone())?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(vec![creds.cert().clone()], creds.key())?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

pub(crate) fn quinn_server(
    creds: &Credentials,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, TlsError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_config(creds)?)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport);
    Ok(cfg)
}

pub(crate) fn quinn_client(
    creds: &Credentials,
    expect: Option<NodeId>,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, TlsError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_config(creds, expect)?)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport);
    Ok(cfg)
}

/// The server name to dial replica `id` (or any replica) under.
pub(crate) fn server_name(expect: Option<NodeId>) -> String {
    match expect {
        Some(id) => Identity::Node(id).dns_name(),
        None => "synod".to_owned(),
    }
}

/// Verifies a replica's certificate: chain to the cluster CA, TLS server
/// usage, and the replica id bound into it.
///
/// The id is read from the certificate's `synod://node/<id>` URI; the chain
/// and the matching DNS name `node-<id>.synod` are then checked by webpki, so
/// a certificate whose URI and DNS name disagree is refused too.
#[derive(Debug)]
pub struct NodeVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expect: Option<NodeId>,
}

impl NodeVerifier {
    /// A verifier trusting `creds`'s CA that accepts replica `expect` (any replica if `None`).
    pub fn new(
        creds: &Credentials,
        expect: Option<NodeId>,
        provider: Arc<CryptoProvider>,
    ) -> Result<NodeVerifier, TlsError> {
        let inner = WebPkiServerVerifier::builder_with_provider(roots(creds)?, provider)
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(NodeVerifier { inner, expect })
    }
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = match identity_of(end_entity) {
            Ok(Identity::Node(id)) if self.expect.is_none_or(|want| want == id) => id,
            Ok(other) => {
                tracing::warn!(found = %other, expected = ?self.expect, "replica certificate names the wrong identity");
                return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName));
            }
            Err(e) => {
                tracing::warn!(error = %e, "replica certificate names no identity");
                return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding));
            }
        };
        let name = ServerName::try_from(Identity::Node(id).dns_name())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))?;
        self.inner.verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
