//! The tp client's TLS configuration.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a client TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A CA certificate was not usable as a trust anchor.
    #[error("CA certificate not usable as a trust anchor: {0}")]
    BadCa(rustls::Error),
    /// The client certificate and key do not fit together or are unsupported.
    #[error("client certificate or key not usable: {0}")]
    BadClientCert(rustls::Error),
}

/// The crypto provider tp uses everywhere: aws-lc-rs, post-quantum key exchange first.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS 1.3-only client configuration offering ALPN `tp/1`, trusting `ca` for the
/// server and presenting `cert_chain`/`key`. No session resumption and no 0-RTT:
/// every tunnel connection is a full handshake with the client certificate.
pub fn client_config(
    ca: Vec<CertificateDer<'static>>,
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ClientConfig, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert).map_err(TlsConfigError::BadCa)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsConfigError::BadClientCert)?
        .with_root_certificates(roots)
        .with_client_auth_cert(cert_chain, key)
        .map_err(TlsConfigError::BadClientCert)?;
    config.alpn_protocols = vec![tp_proto::ALPN_TP_V1.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    Ok(config)
}
