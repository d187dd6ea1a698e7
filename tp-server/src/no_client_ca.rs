//! The client-certificate verifier of a server with no `[tls] client_ca` (a
//! Signal relay or a website only): it trusts no certificate, so no tunnel
//! opens, over TLS/TCP or QUIC, and a reload that removes the client CAs stops
//! the tunnels of open QUIC connections too. (Over TLS/TCP such a server does
//! not even start the tunnel handshake: a ClientHello offering `tp/1` gets the
//! website's.)

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

/// What a refused certificate is told.
const WHY: &str = "no [tls] client_ca is configured: no client certificate is trusted";

/// Refuses every client certificate.
#[derive(Debug, Default)]
pub(crate) struct NoClientCa;

impl ClientCertVerifier for NoClientCa {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Err(rustls::Error::General(WHY.into()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(WHY.into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(WHY.into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        tp_net::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_certificate_is_refused_with_the_reason() {
        let leaf = CertificateDer::from(vec![0x30, 0x00]);
        let err = NoClientCa
            .verify_client_cert(&leaf, &[], UnixTime::now())
            .unwrap_err();
        assert!(err.to_string().contains("no [tls] client_ca"), "{err}");
        assert!(NoClientCa.client_auth_mandatory());
        assert!(!NoClientCa.supported_verify_schemes().is_empty());
    }
}
