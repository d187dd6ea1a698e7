//! The server's rustls configuration: TLS 1.3 only, ALPN `tp/1`, client certificate
//! required and verified against the configured CAs, revoked certificates refused.
//!
//! Session resumption is off (no session cache, no tickets) and 0-RTT is off, so every
//! connection runs the client-certificate verification and the revocation check; a
//! resumed session could otherwise present a certificate revoked since.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::config::TlsMaterial;
use crate::pki::RevocationList;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A client CA certificate is not usable as a trust anchor.
    #[error("client CA not usable: {0}")]
    ClientCa(rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    /// The server certificate and key do not fit together.
    #[error("server certificate or key: {0}")]
    ServerCert(rustls::Error),
    /// The TLS configuration cannot carry QUIC.
    #[error("QUIC: {0}")]
    Quic(String),
    /// The server certificate cannot serve the website.
    #[error("website certificate: {0}")]
    Website(String),
}

/// Wraps rustls's WebPKI client verifier and refuses revoked certificates after the
/// chain verified.
#[derive(Debug)]
struct RevocationCheckingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: RevocationList,
}

impl ClientCertVerifier for RevocationCheckingVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let revoked = std::iter::once(end_entity)
            .chain(intermediates)
            .any(|cert| self.revoked.is_revoked(cert));
        if revoked {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
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

    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }
}

/// The client-certificate verifier for loaded material: the chain must lead to a
/// client CA, be valid now, allow client auth, and hold no revoked certificate.
/// The handshake uses it, and a long-lived QUIC connection runs it again for a
/// new tunnel after a reload or an expiry (`quic::verified`), so that an
/// expired, revoked or no longer trusted certificate stops opening tunnels. Without client CAs, it refuses every certificate.
pub fn client_verifier(tls: &TlsMaterial) -> Result<Arc<dyn ClientCertVerifier>, TlsSetupError> {
    if !tls.has_client_ca() {
        return Ok(Arc::new(crate::no_client_ca::NoClientCa));
    }
    let mut roots = RootCertStore::empty();
    for ca in &tls.client_ca {
        roots.add(ca.clone()).map_err(TlsSetupError::ClientCa)?;
    }
    let webpki =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tp_net::tls::provider())
            .build()
            .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
    Ok(Arc::new(RevocationCheckingVerifier {
        inner: webpki,
        revoked: tls.revoked.clone(),
    }))
}

/// Builds the tunnel listener's rustls configuration from loaded material.
pub fn server_config(tls: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    server_config_with(tls, client_verifier(tls)?)
}

/// Like [`server_config`], with a verifier already built by [`client_verifier`].
pub fn server_config_with(
    tls: &TlsMaterial,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let provider = tp_net::tls::provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsSetupError::ServerCert)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls.cert_chain.clone(), tls.key.clone_key())
        .map_err(TlsSetupError::ServerCert)?;
    config.alpn_protocols = vec![tp_proto::ALPN_TP_V1.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// The website's TLS configuration: certificates by SNI (`[website] certs`, else
/// the server certificate), TLS 1.2 and 1.3, no client certificate asked, ALPN as
/// [`crate::website::alpn`] says: the handshake any site gives.
pub fn website_config(
    tls: &TlsMaterial,
    website: &crate::config::WebsiteSettings,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    site_config(tls, website, crate::website::alpn(website))
}

/// The TLS configuration of stealth names ([`crate::stealth`]): the website's,
/// and every client is asked for an optional certificate, verified after the
/// handshake against `verifier` ([`crate::stealth::verifier`]).
pub(crate) fn stealth_config(
    tls: &TlsMaterial,
    website: &crate::config::WebsiteSettings,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let deferred = Arc::new(crate::stealth::verifier::DeferredVerifier::new(verifier));
    site_config_asking(tls, website, crate::website::alpn(website), Some(deferred))
}

/// A TLS configuration with the website's certificates and `alpn`.
pub(crate) fn site_config(
    tls: &TlsMaterial,
    website: &crate::config::WebsiteSettings,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    site_config_asking(tls, website, alpn, None)
}

/// [`site_config`], asking clients for a certificate when `client` is set.
fn site_config_asking(
    tls: &TlsMaterial,
    website: &crate::config::WebsiteSettings,
    alpn: Vec<Vec<u8>>,
    client: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let default = crate::website::certs::certified(tls.cert_chain.clone(), &tls.key)
        .map_err(|e| TlsSetupError::Website(e.to_string()))?;
    let sites = website
        .certs
        .iter()
        .map(|site| (site.names.clone(), site.key.clone()))
        .collect();
    let resolver = crate::website::certs::SiteCerts::new(default, sites);
    let provider = tp_net::tls::provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::ServerCert)?;
    let builder = match client {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// The QUIC listener's configuration: the same rustls configuration as TLS/TCP
/// (client certificate required, revocation checked, no resumption, no 0-RTT) and
/// the configured transport limits. Clients may migrate to a new address.
pub fn quic_server_config(
    tls: Arc<rustls::ServerConfig>,
    limits: &tp_net::quic::QuicLimits,
) -> Result<quinn::ServerConfig, TlsSetupError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsSetupError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(limits.transport_config()));
    config.migration(true);
    Ok(config)
}

/// The key QUIC stateless resets are signed with, derived from the server's
/// private key (HKDF-Extract with a fixed label): a restarted server with the same
/// key can tell clients of the previous process that their connection is gone,
/// and they reconnect at once instead of waiting for their idle timeout.
pub fn quic_reset_key(
    key: &rustls_pki_types::PrivateKeyDer<'_>,
) -> Arc<dyn quinn::crypto::HmacKey> {
    use aws_lc_rs::hmac;
    let extract = hmac::Key::new(hmac::HMAC_SHA256, b"tp/1 QUIC stateless reset key");
    let derived = hmac::sign(&extract, key.secret_der());
    Arc::new(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
}

/// Connection IDs any process of this server accepts as its own (random, 8 bytes),
/// so that after a restart a packet for an old connection is answered with a
/// stateless reset instead of being dropped as foreign. quinn's default generator
/// hashes its IDs with a per-process key, which a restarted server rejects.
#[derive(Debug, Default)]
pub struct RestartableCids;

impl quinn::ConnectionIdGenerator for RestartableCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut bytes = [0u8; 8];
        // The system RNG does not fail on Linux; an all-zero ID would still work.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        quinn::ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

/// The QUIC endpoint configuration: stateless resets signed with
/// [`quic_reset_key`] and [`RestartableCids`], so clients of a crashed server learn
/// at the first packet to the restarted one that their connection is gone.
pub fn quic_endpoint_config(key: &rustls_pki_types::PrivateKeyDer<'_>) -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::new(quic_reset_key(key));
    config.cid_generator(|| Box::new(RestartableCids));
    config
}
