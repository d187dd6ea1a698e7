//! End-to-end TLS inside a service tunnel: TLS 1.3 with ALPN `tp-e2e/1`
//! between the caller (`tp NAME PORT`, the TLS client) and the exposing client
//! (`tp expose --name`, the TLS server). The tp server relays only ciphertext.
//!
//! Both sides present their own tp certificate and verify the other's chain
//! with rustls's [`WebPkiClientVerifier`] against `peer_ca`: tp certificates
//! are client certificates (client-auth key usage), whichever side of the inner
//! handshake holds them. Service names are not DNS names, so the caller checks
//! no server name: it prints the identity it verified instead. The exposing
//! side may further refuse callers by identity (`--allow`, [`AllowList`]): the
//! handshake then fails with an `access_denied` alert.
//!
//! In TLS 1.3 the client's handshake is done before the server has checked
//! the client's certificate, so the exposing side acknowledges an accepted
//! caller with one session ticket (which cannot resume anything: it stores no
//! session), and the caller waits for it ([`E2eConfig::connect`]): a refusal
//! is then a clear error, not a broken first read.

mod allow;
mod verify;

use std::io;
use std::sync::Arc;

pub use allow::{AllowError, AllowList, AllowPattern, Caller};
use policy::{Identity, IdentityError};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{AlertDescription, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use crate::tls_error::{describe_tls, rustls_error};
use verify::{Gate, GateVerifier, PeerServerVerifier, TicketOnly};

pub use tp_proto::ALPN_E2E_V1;

/// The server name the caller puts in its inner handshake: never sent (no
/// SNI) and never checked.
const INNER_NAME: &str = "service.tp.invalid";

/// How many bytes the caller reads at a time while it waits for the exposing
/// side's acknowledgement (well under rustls's 16 KiB plaintext buffer).
const CONFIRM_CHUNK: usize = 4096;

/// Why the end-to-end TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum E2eSetupError {
    /// A `peer_ca` certificate was not usable as a trust anchor.
    #[error("peer CA certificate not usable as a trust anchor: {0}")]
    BadPeerCa(String),
    /// Our certificate and key are not usable.
    #[error("client certificate or key not usable for end-to-end TLS: {0}")]
    BadCert(rustls::Error),
}

/// Why a caller's end-to-end handshake with a service failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum E2eError {
    /// The exposing side refused our identity (`access_denied`: its `--allow`).
    #[error("the exposing side refused your certificate (--allow)")]
    Refused,
    /// The exposing side did not accept our certificate (another alert).
    #[error(
        "the exposing side did not accept your certificate (is it from the CA in its peer_ca?): {0}"
    )]
    NotTrusted(String),
    /// The exposing side's certificate did not verify against `peer_ca`.
    #[error("the exposing side's certificate is not trusted (see peer_ca): {0}")]
    PeerCertificate(String),
    /// The exposing side's certificate names no usable identity.
    #[error("the exposing side's certificate has no usable identity: {0}")]
    Identity(IdentityError),
    /// The tunnel ended before the handshake did.
    #[error("the tunnel closed during the end-to-end TLS handshake")]
    Closed,
    /// The handshake did not finish within the answer timeout.
    #[error("the end-to-end TLS handshake did not finish within {0:?}")]
    Timeout(std::time::Duration),
    /// Any other failure.
    #[error("the end-to-end TLS handshake failed: {0}")]
    Handshake(String),
}

/// Why the exposing side did not accept a caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The caller's verified identity matches no `--allow` pattern.
    #[error("{identity} is not allowed (--allow)")]
    NotAllowed {
        /// The caller's verified identity.
        identity: String,
    },
    /// The handshake failed: the caller's certificate, or the TLS itself.
    #[error("end-to-end TLS handshake failed: {0}")]
    Handshake(String),
}

/// One client's end-to-end TLS settings, for both roles: its own certificate
/// and key, and the CA(s) it trusts for peers.
#[derive(Clone)]
pub struct E2eConfig {
    provider: Arc<CryptoProvider>,
    /// The caller's TLS configuration.
    client: Arc<rustls::ClientConfig>,
    /// Our certificate and key as the exposing side.
    certified: Arc<CertifiedKey>,
    /// Verifies a peer's chain against `peer_ca`.
    chain: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for E2eConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2eConfig").finish_non_exhaustive()
    }
}

impl E2eConfig {
    /// Settings presenting `chain`/`key` and trusting `peer_ca` for peers.
    pub fn new(
        peer_ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, E2eSetupError> {
        let provider = tp_net::tls::provider();
        let mut roots = RootCertStore::empty();
        for cert in peer_ca {
            roots
                .add(cert)
                .map_err(|e| E2eSetupError::BadPeerCa(e.to_string()))?;
        }
        let chain_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| E2eSetupError::BadPeerCa(e.to_string()))?;
        let certified = Arc::new(
            CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider)
                .map_err(E2eSetupError::BadCert)?,
        );
        let verifier = Arc::new(PeerServerVerifier {
            chain: chain_verifier.clone(),
            provider: provider.clone(),
        });
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(E2eSetupError::BadCert)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, key)
            .map_err(E2eSetupError::BadCert)?;
        client.alpn_protocols = vec![ALPN_E2E_V1.to_vec()];
        client.resumption = rustls::client::Resumption::disabled();
        client.enable_early_data = false;
        client.enable_sni = false;
        let config = E2eConfig {
            provider,
            client: Arc::new(client),
            certified,
            chain: chain_verifier,
        };
        // Fail now, not on the first caller.
        config
            .server_config(Arc::new(Gate::new(AllowList::default(), None, Vec::new())))
            .map_err(E2eSetupError::BadCert)?;
        Ok(config)
    }

    /// The caller's side: runs the handshake over `stream` (a tunnel to a
    /// service), waits until the exposing side has accepted our certificate,
    /// and returns the TLS stream and the exposing side's verified identity.
    /// The caller bounds the time.
    pub async fn connect<S>(&self, stream: S) -> Result<(client::TlsStream<S>, Identity), E2eError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name =
            ServerName::try_from(INNER_NAME).map_err(|e| E2eError::Handshake(e.to_string()))?;
        let mut tls = TlsConnector::from(self.client.clone())
            .connect(name, stream)
            .await
            .map_err(|e| caller_error(&e))?;
        confirm(&mut tls).await.map_err(|e| caller_error(&e))?;
        let conn = tls.get_ref().1;
        if conn.alpn_protocol() != Some(ALPN_E2E_V1) {
            return Err(E2eError::Handshake(
                "the exposing side did not select ALPN tp-e2e/1".into(),
            ));
        }
        let identity = peer_identity(conn.peer_certificates()).map_err(E2eError::Identity)?;
        Ok((tls, identity))
    }

    /// The exposing side: runs the handshake over `stream` (an incoming
    /// connection) for a caller the server announced as `from` in `groups`,
    /// letting in only identities `allow` permits. On failure the stream comes
    /// back, with the alert written, for the caller to close in order (so the
    /// alert is delivered rather than reset away).
    pub async fn accept<S>(
        &self,
        stream: S,
        allow: AllowList,
        from: Option<String>,
        groups: Vec<String>,
    ) -> Result<(server::TlsStream<S>, Identity), (AcceptError, S)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let gate = Arc::new(Gate::new(allow, from, groups));
        let config = match self.server_config(gate.clone()) {
            Ok(config) => config,
            Err(e) => return Err((AcceptError::Handshake(e.to_string()), stream)),
        };
        let tls = match TlsAcceptor::from(Arc::new(config))
            .accept(stream)
            .into_fallible()
            .await
        {
            Ok(tls) => tls,
            Err((e, stream)) => {
                let refused = gate.refused.lock().ok().and_then(|mut r| r.take());
                let error = match refused {
                    Some(identity) => AcceptError::NotAllowed { identity },
                    None => AcceptError::Handshake(match rustls_error(&e) {
                        Some(tls) => tls.to_string(),
                        None => e.to_string(),
                    }),
                };
                return Err((error, stream));
            }
        };
        let conn = tls.get_ref().1;
        if conn.alpn_protocol() != Some(ALPN_E2E_V1) {
            let (stream, _) = tls.into_inner();
            let error = AcceptError::Handshake("the caller did not offer ALPN tp-e2e/1".into());
            return Err((error, stream));
        }
        match peer_identity(conn.peer_certificates()) {
            Ok(identity) => Ok((tls, identity)),
            // The verifier read it already; it cannot fail here.
            Err(e) => Err((AcceptError::Handshake(e.to_string()), tls.into_inner().0)),
        }
    }

    /// The exposing side's TLS configuration for one caller.
    fn server_config(&self, gate: Arc<Gate>) -> Result<rustls::ServerConfig, rustls::Error> {
        let verifier = Arc::new(GateVerifier {
            chain: self.chain.clone(),
            gate,
        });
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(self.certified.clone())));
        config.alpn_protocols = vec![ALPN_E2E_V1.to_vec()];
        // One ticket tells the caller it was accepted; it resumes nothing.
        config.session_storage = Arc::new(TicketOnly);
        config.send_tls13_tickets = 1;
        Ok(config)
    }
}

/// The identity in a verified leaf.
fn peer_identity(certs: Option<&[CertificateDer<'static>]>) -> Result<Identity, IdentityError> {
    let leaf = certs
        .and_then(<[_]>::first)
        .ok_or(IdentityError::NoIdentity)?;
    Identity::from_cert_der(leaf)
}

/// Reads (without consuming plaintext) until the exposing side has accepted
/// our certificate: its session ticket, or already its first bytes, or its
/// close. Its refusal arrives as an alert, an error here.
async fn confirm<S>(tls: &mut client::TlsStream<S>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut chunk = vec![0u8; CONFIRM_CHUNK];
    loop {
        let (io, conn) = tls.get_mut();
        let state = conn.process_new_packets().map_err(invalid_data)?;
        if conn.tls13_tickets_received() > 0
            || state.plaintext_bytes_to_read() > 0
            || state.peer_has_closed()
        {
            return Ok(());
        }
        if conn.wants_write() {
            let mut out = Vec::new();
            conn.write_tls(&mut out)?;
            io.write_all(&out).await?;
            io.flush().await?;
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut data = &chunk[..n];
        while !data.is_empty() {
            conn.read_tls(&mut data)?;
            conn.process_new_packets().map_err(invalid_data)?;
        }
    }
}

fn invalid_data(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// What a failed handshake means to the caller.
fn caller_error(e: &io::Error) -> E2eError {
    match rustls_error(e) {
        Some(rustls::Error::AlertReceived(AlertDescription::AccessDenied)) => E2eError::Refused,
        Some(tls @ rustls::Error::AlertReceived(_)) => E2eError::NotTrusted(tls.to_string()),
        Some(tls @ rustls::Error::InvalidCertificate(_)) => {
            E2eError::PeerCertificate(describe_tls(tls))
        }
        Some(tls) => E2eError::Handshake(tls.to_string()),
        None if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        ) =>
        {
            E2eError::Closed
        }
        None => E2eError::Handshake(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
