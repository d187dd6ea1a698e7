//! The client-certificate verifier of stealth names: it asks every client for
//! a certificate, optional, naming no CA, and lets the handshake finish
//! whatever chain arrives. The chain is verified after the handshake
//! ([`crate::server::Shared::reverify`]: CA, validity, EKU, revocation), before
//! it can select a tunnel; one that fails gets the website, like a client
//! without a certificate. Failing the handshake instead would send an alert
//! that tells a prober certificates matter on this site, and a list of CA
//! names would tell it whose.
//!
//! The client's signature over the handshake (CertificateVerify) is still
//! checked during the handshake, by the real verifier: whoever sent the
//! certificate holds its key.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

/// See the module docs. `inner` is the tunnels' verifier.
#[derive(Debug)]
pub(crate) struct DeferredVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl DeferredVerifier {
    pub(crate) fn new(inner: Arc<dyn ClientCertVerifier>) -> Self {
        DeferredVerifier { inner }
    }
}

impl ClientCertVerifier for DeferredVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    /// Accepts every chain here: it is verified once the handshake is done,
    /// and nothing trusts it before (see the module docs).
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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
