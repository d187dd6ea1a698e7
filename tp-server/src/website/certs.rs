//! The website's certificates, chosen per ClientHello: by SNI among the
//! configured `[website] certs` (names from each certificate's DNS SANs, `*.`
//! wildcards for one label), then by what the client can verify, so an RSA and
//! an ECDSA certificate for the same names serve old and new clients alike. A
//! ClientHello without SNI, or with a name no certificate has, gets the first
//! website certificate that fits, and `[tls] cert` only when none does: a
//! scanner connecting by address sees the site, not the tunnel's name.

use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// One certificate with the DNS names it serves (lowercase).
#[derive(Debug)]
struct Site {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

/// Resolves the website's certificate for each ClientHello.
#[derive(Debug)]
pub(crate) struct SiteCerts {
    sites: Vec<Site>,
    /// `[tls] cert`, tried first when no site name matches.
    default: Arc<CertifiedKey>,
}

/// Why a website certificate is not usable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertError {
    /// The key cannot be used (unsupported kind, or not a key).
    #[error("the key is not usable: {0}")]
    Key(rustls::Error),
    /// The key does not belong to the certificate.
    #[error("the key does not belong to the certificate: {0}")]
    Mismatch(rustls::Error),
    /// The certificate cannot be read, or names no DNS name.
    #[error("{0}")]
    Names(String),
}

/// A certificate chain and its key, checked to belong together.
pub(crate) fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, CertError> {
    let provider = tp_net::tls::provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(CertError::Key)?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(CertError::Mismatch)?;
    Ok(Arc::new(certified))
}

/// The DNS names of a leaf's subject alternative names, lowercase.
pub(crate) fn dns_names(leaf: &CertificateDer<'_>) -> Result<Vec<String>, CertError> {
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|e| CertError::Names(format!("not an X.509 certificate: {e}")))?;
    let names: Vec<String> = cert
        .subject_alternative_name()
        .map_err(|e| CertError::Names(format!("unreadable subject alternative names: {e}")))?
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(CertError::Names(
            "the certificate names no DNS name (subject alternative name)".into(),
        ));
    }
    Ok(names)
}

/// Whether `pattern` (a name, or `*.` and a name, lowercase) covers `name`:
/// a wildcard covers exactly one more label.
pub(crate) fn covers(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == name,
    }
}

impl SiteCerts {
    /// `sites`: each certificate with its names (see [`dns_names`]).
    pub(crate) fn new(
        default: Arc<CertifiedKey>,
        sites: Vec<(Vec<String>, Arc<CertifiedKey>)>,
    ) -> Self {
        SiteCerts {
            sites: sites
                .into_iter()
                .map(|(names, key)| Site { names, key })
                .collect(),
            default,
        }
    }

    fn pick(&self, name: Option<&str>, schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        let fits = |key: &Arc<CertifiedKey>| key.key.choose_scheme(schemes).is_some();
        let name = name.map(str::to_ascii_lowercase);
        if let Some(name) = &name {
            let named = self
                .sites
                .iter()
                .filter(|s| s.names.iter().any(|p| covers(p, name)))
                .map(|s| &s.key);
            if let Some(key) = named.clone().find(|k| fits(k)) {
                return Some(key.clone());
            }
        }
        // No SNI or an unknown name (scanners connect by address): a website
        // certificate if there is one, so the tunnel's own name is shown last.
        self.sites
            .iter()
            .map(|s| &s.key)
            .chain(std::iter::once(&self.default))
            .find(|k| fits(k))
            .cloned()
    }
}

impl ResolvesServerCert for SiteCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name(), hello.signature_schemes())
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};

    use super::*;

    fn issue(names: &[&str], rsa: bool) -> Arc<CertifiedKey> {
        let alg = if rsa {
            &PKCS_RSA_SHA256
        } else {
            &PKCS_ECDSA_P256_SHA256
        };
        let key = KeyPair::generate_for(alg).unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        certified(vec![cert.der().clone()], &der).unwrap()
    }

    const ECDSA: &[SignatureScheme] = &[SignatureScheme::ECDSA_NISTP256_SHA256];
    const RSA: &[SignatureScheme] = &[SignatureScheme::RSA_PSS_SHA256];
    const BOTH: &[SignatureScheme] = &[
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::RSA_PSS_SHA256,
    ];

    #[test]
    fn names_then_key_kind_then_the_default() {
        let default = issue(&["tp.example.org"], false);
        let site_ec = issue(&["example.org", "www.example.org"], false);
        let site_rsa = issue(&["example.org", "www.example.org"], true);
        let other = issue(&["*.other.example"], false);
        let certs = SiteCerts::new(
            default.clone(),
            vec![
                (dns_names(&site_ec.cert[0]).unwrap(), site_ec.clone()),
                (dns_names(&site_rsa.cert[0]).unwrap(), site_rsa.clone()),
                (dns_names(&other.cert[0]).unwrap(), other.clone()),
            ],
        );
        let picked = |name, schemes| certs.pick(name, schemes).unwrap();
        assert!(Arc::ptr_eq(&picked(Some("example.org"), BOTH), &site_ec));
        assert!(Arc::ptr_eq(
            &picked(Some("WWW.Example.org"), ECDSA),
            &site_ec
        ));
        // A client that verifies only RSA gets the RSA certificate.
        assert!(Arc::ptr_eq(&picked(Some("example.org"), RSA), &site_rsa));
        assert!(Arc::ptr_eq(&picked(Some("a.other.example"), BOTH), &other));
        // A wildcard covers one label only: an unknown name gets the first site.
        assert!(Arc::ptr_eq(
            &picked(Some("a.b.other.example"), BOTH),
            &site_ec
        ));
        assert!(Arc::ptr_eq(&picked(Some("other.example"), BOTH), &site_ec));
        // No SNI: the first website certificate that fits, never the tunnel's
        // while one does.
        assert!(Arc::ptr_eq(&picked(None, BOTH), &site_ec));
        assert!(Arc::ptr_eq(&picked(None, RSA), &site_rsa));
        // Without website certificates, the tunnel's is the site's.
        let alone = SiteCerts::new(default.clone(), vec![]);
        assert!(Arc::ptr_eq(&alone.pick(None, BOTH).unwrap(), &default));
        assert!(certs.pick(None, &[SignatureScheme::ED25519]).is_none());
    }

    #[test]
    fn names_come_from_dns_sans_and_a_cert_without_one_is_refused() {
        let site = issue(&["Example.ORG", "*.example.org"], false);
        assert_eq!(
            dns_names(&site.cert[0]).unwrap(),
            vec!["example.org".to_owned(), "*.example.org".to_owned()]
        );
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let bare = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(dns_names(bare.der()).is_err());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let a = issue(&["a.example"], false);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let other = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        assert!(matches!(
            certified(a.cert.to_vec(), &other),
            Err(CertError::Mismatch(_))
        ));
    }
}
