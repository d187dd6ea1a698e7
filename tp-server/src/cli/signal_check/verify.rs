//! The inner certificate check of `signal-check`. Signal's hosts present
//! certificates from Signal's own CA, which tp does not ship, so by default a
//! certificate from a CA this machine does not know passes when its name, dates
//! and key usage are right (rustls still checks that its key signed the
//! handshake); the report says its chain was not verified. With `--inner-ca` the
//! chain must lead to that CA. Either way the verifier remembers who answered,
//! so a failure can say it too.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use x509_parser::x509::X509Name;

/// How far an inner certificate was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chain {
    /// Its chain leads to a trusted CA (the system's, or `--inner-ca`).
    Verified,
    /// Its issuer is unknown here: only its name, dates and key usage were checked.
    NotVerified,
}

/// Who presented a certificate: its subject and issuer, short and printable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Presented {
    /// `CN=..., O=...` of the subject.
    pub subject: String,
    /// `CN=..., O=...` of the issuer.
    pub issuer: String,
}

impl Presented {
    /// Reads the subject and issuer of `der` (which rustls has not verified yet).
    pub(super) fn of(der: &[u8]) -> Presented {
        match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => Presented {
                subject: short_name(cert.subject()),
                issuer: short_name(cert.issuer()),
            },
            Err(_) => Presented {
                subject: "(unreadable certificate)".into(),
                issuer: "(unknown)".into(),
            },
        }
    }
}

/// `CN=a, O=b` from a distinguished name (the whole name when it has neither),
/// with control characters escaped: the peer wrote it.
fn short_name(name: &X509Name<'_>) -> String {
    let common = name.iter_common_name().map(|cn| ("CN", cn));
    let orgs = name.iter_organization().map(|o| ("O", o));
    let parts: Vec<String> = common
        .chain(orgs)
        .filter_map(|(key, value)| value.as_str().ok().map(|v| format!("{key}={v}")))
        .collect();
    let text = if parts.is_empty() {
        name.to_string()
    } else {
        parts.join(", ")
    };
    tp_net::text::one_line(&text)
}

/// What the verifier saw of the certificate it was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Seen {
    /// Who presented it.
    pub presented: Presented,
    /// How far it was verified; `None` when it was refused.
    pub chain: Option<Chain>,
}

/// The inner connection's certificate verifier. One per connection: it keeps
/// what it saw.
#[derive(Debug)]
pub(super) struct InnerVerifier {
    roots: Arc<RootCertStore>,
    /// Accept an unknown issuer (no `--inner-ca`).
    name_only: bool,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Mutex<Option<Seen>>,
}

impl InnerVerifier {
    /// Verifies against `roots`; with `name_only`, an unknown issuer passes when
    /// the rest holds.
    pub(super) fn new(roots: Arc<RootCertStore>, name_only: bool) -> InnerVerifier {
        InnerVerifier {
            roots,
            name_only,
            algorithms: tp_net::tls::provider().signature_verification_algorithms,
            seen: Mutex::new(None),
        }
    }

    /// What it saw, if a certificate came.
    pub(super) fn seen(&self) -> Option<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<Chain, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        let chain = match verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        ) {
            Ok(()) => Chain::Verified,
            // Dates and key usage are checked before the issuer is looked for.
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)) if self.name_only => {
                Chain::NotVerified
            }
            Err(e) => return Err(e),
        };
        verify_server_name(&cert, server_name)?;
        Ok(chain)
    }
}

impl ServerCertVerifier for InnerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let result = self.check(end_entity, intermediates, server_name, now);
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(Seen {
            presented: Presented::of(end_entity),
            chain: result.as_ref().ok().copied(),
        });
        result.map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::pki::{Ca, LeafSpec, Validity};

    fn now() -> UnixTime {
        UnixTime::now()
    }

    fn setup() -> (Ca, CertificateDer<'static>, RootCertStore) {
        let validity = Validity::for_ttl(SystemTime::now(), Duration::from_secs(3_600));
        let ca = Ca::generate("Signal stand-in CA", validity).unwrap();
        let leaf = ca
            .issue(&LeafSpec::server(
                vec!["chat.signal.org".into()],
                vec![],
                validity,
            ))
            .unwrap();
        let der = leaf.chain_der()[0].clone();
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        (ca, der, roots)
    }

    fn name(s: &str) -> ServerName<'static> {
        ServerName::try_from(s.to_owned()).unwrap()
    }

    #[test]
    fn an_unknown_issuer_passes_on_its_name_only_without_inner_ca() {
        let (_ca, der, _) = setup();
        let verifier = InnerVerifier::new(Arc::new(RootCertStore::empty()), true);
        verifier
            .verify_server_cert(&der, &[], &name("chat.signal.org"), &[], now())
            .unwrap();
        let seen = verifier.seen().unwrap();
        assert_eq!(seen.chain, Some(Chain::NotVerified));
        assert_eq!(seen.presented.subject, "CN=chat.signal.org");
        assert_eq!(seen.presented.issuer, "CN=Signal stand-in CA");

        // The name is still checked.
        let wrong = verifier.verify_server_cert(&der, &[], &name("cdn.signal.org"), &[], now());
        assert!(
            matches!(
                wrong,
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{wrong:?}"
        );
        assert_eq!(verifier.seen().unwrap().chain, None);
    }

    #[test]
    fn with_inner_ca_the_chain_must_verify() {
        let (_ca, der, roots) = setup();
        let verifier = InnerVerifier::new(Arc::new(roots), false);
        verifier
            .verify_server_cert(&der, &[], &name("chat.signal.org"), &[], now())
            .unwrap();
        assert_eq!(verifier.seen().unwrap().chain, Some(Chain::Verified));

        let strict = InnerVerifier::new(Arc::new(RootCertStore::empty()), false);
        let refused = strict.verify_server_cert(&der, &[], &name("chat.signal.org"), &[], now());
        assert!(
            matches!(
                refused,
                Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn an_expired_certificate_fails_even_on_its_name_only() {
        let (_ca, der, _) = setup();
        let verifier = InnerVerifier::new(Arc::new(RootCertStore::empty()), true);
        let later = UnixTime::since_unix_epoch(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                + Duration::from_secs(86_400),
        );
        let refused = verifier.verify_server_cert(&der, &[], &name("chat.signal.org"), &[], later);
        assert!(refused.is_err(), "{refused:?}");
    }

    #[test]
    fn presented_names_are_escaped() {
        assert_eq!(Presented::of(b"junk").subject, "(unreadable certificate)");
    }
}
