//! The certificate checks of the end-to-end TLS: the caller's of the exposing
//! side ([`PeerServerVerifier`]), the exposing side's of a caller
//! ([`GateVerifier`], with `--allow`), and the session storage that lets the
//! exposing side acknowledge a caller with a ticket that resumes nothing.

use std::sync::{Arc, Mutex};

use policy::Identity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::StoresServerSessions;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tracing::info;

use super::{AllowList, Caller};

/// The caller's check of the exposing side's certificate: its chain, as a
/// client certificate, against `peer_ca`; no name. Signatures: TLS 1.3 with
/// the crypto provider's algorithms.
#[derive(Debug)]
pub(super) struct PeerServerVerifier {
    pub(super) chain: Arc<dyn ClientCertVerifier>,
    pub(super) provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.chain
            .verify_client_cert(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    /// Never called: the configuration offers TLS 1.3 only.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What the exposing side knows about one caller before its handshake.
#[derive(Debug)]
pub(super) struct Gate {
    allow: AllowList,
    from: Option<String>,
    groups: Vec<String>,
    /// The identity refused by `allow`, for the log.
    pub(super) refused: Mutex<Option<String>>,
}

impl Gate {
    pub(super) fn new(allow: AllowList, from: Option<String>, groups: Vec<String>) -> Self {
        Gate {
            allow,
            from,
            groups,
            refused: Mutex::new(None),
        }
    }
}

/// The exposing side's check of a caller: the chain against `peer_ca`, then
/// the identity against `--allow`.
#[derive(Debug)]
pub(super) struct GateVerifier {
    pub(super) chain: Arc<dyn ClientCertVerifier>,
    pub(super) gate: Arc<Gate>,
}

impl ClientCertVerifier for GateVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.chain
            .verify_client_cert(end_entity, intermediates, now)?;
        let identity = Identity::from_cert_der(end_entity).map_err(|e| {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(e),
            )))
        })?;
        let gate = &self.gate;
        let caller = Caller {
            identity: identity.as_str(),
            from: gate.from.as_deref(),
            groups: &gate.groups,
        };
        // The server checked its policy (and its revocation list) for `from`:
        // a caller presenting another certificate inside the tunnel, a stolen
        // or revoked one, is not the identity the server let through.
        let mismatch = gate
            .from
            .as_deref()
            .is_some_and(|from| from != identity.as_str());
        if mismatch {
            info!(
                from = gate.from.as_deref(),
                verified = identity.as_str(),
                "caller refused: its certificate names another identity than the server checked"
            );
        }
        if mismatch || !gate.allow.permits(&caller) {
            if let Ok(mut refused) = gate.refused.lock() {
                *refused = Some(identity.as_str().to_owned());
            }
            // rustls answers this with an access_denied alert.
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// Session storage that lets rustls issue a ticket but keeps nothing, so no
/// ticket ever resumes a session (which would skip the caller's certificate).
#[derive(Debug)]
pub(super) struct TicketOnly;

impl StoresServerSessions for TicketOnly {
    fn put(&self, _key: Vec<u8>, _value: Vec<u8>) -> bool {
        true
    }

    fn get(&self, _key: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn take(&self, _key: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn can_cache(&self) -> bool {
        false
    }
}
