//! Who a peer is: one name read from its verified leaf certificate.
//!
//! The identity is the certificate's URI subject alternative name (a SPIFFE id such as
//! `spiffe://corp/laptop/alice`), else its email (rfc822Name) subject alternative name,
//! else its subject common name. The first kind present decides; a certificate with two
//! names of that kind is refused as ambiguous rather than guessed at.

use std::fmt;

use x509_parser::asn1_rs::FromDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// ASN.1 context tag of an rfc822Name in a GeneralName.
const TAG_RFC822_NAME: u32 = 1;
/// ASN.1 context tag of a uniformResourceIdentifier in a GeneralName.
const TAG_URI: u32 = 6;

/// Where an identity came from in the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    /// A URI subject alternative name, e.g. `spiffe://corp/ops/alice`.
    Uri,
    /// An email (rfc822Name) subject alternative name.
    Email,
    /// The subject common name (CN).
    CommonName,
}

impl fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdentityKind::Uri => "URI",
            IdentityKind::Email => "email",
            IdentityKind::CommonName => "common name",
        })
    }
}

/// A peer's identity: its kind and its value, compared as exact strings by the policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    kind: IdentityKind,
    value: String,
}

/// Why no identity could be read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The bytes are not one DER-encoded X.509 certificate.
    #[error("certificate cannot be parsed: {0}")]
    Unparsable(String),
    /// The subject alternative name extension is malformed or present more than once.
    #[error("certificate has an invalid subject alternative name extension: {0}")]
    BadSubjectAltName(String),
    /// The deciding kind of name appears more than once, so the identity is ambiguous.
    #[error("certificate has {count} {kind} names; exactly one is required")]
    Ambiguous {
        /// The kind that appeared more than once.
        kind: IdentityKind,
        /// How many times it appeared.
        count: usize,
    },
    /// The deciding name is empty, not text, or contains control characters.
    #[error("certificate's {kind} name is not usable: {reason}")]
    InvalidValue {
        /// The kind of the refused name.
        kind: IdentityKind,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The certificate has no URI or email subject alternative name and no common name.
    #[error("certificate has no URI or email subject alternative name and no common name")]
    NoIdentity,
}

impl Identity {
    /// Builds an identity from its parts (for tests, tools and configuration).
    pub fn new(kind: IdentityKind, value: impl Into<String>) -> Identity {
        Identity {
            kind,
            value: value.into(),
        }
    }

    /// Reads the identity of a *verified* leaf certificate (DER): its URI subject
    /// alternative name, else its email subject alternative name, else its subject CN.
    ///
    /// This does not verify anything: the caller's TLS stack has already checked the
    /// chain, validity period and key usage.
    pub fn from_cert_der(der: &[u8]) -> Result<Identity, IdentityError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| IdentityError::Unparsable(e.to_string()))?;
        if !rest.is_empty() {
            return Err(IdentityError::Unparsable(format!(
                "{} bytes of trailing data after the certificate",
                rest.len()
            )));
        }
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::BadSubjectAltName(e.to_string()))?;
        let names: &[GeneralName<'_>] = san.as_ref().map_or(&[], |s| &s.value.general_names);

        let mut uris = Vec::new();
        let mut emails = Vec::new();
        for name in names {
            match name {
                GeneralName::URI(u) => uris.push(Some(*u)),
                GeneralName::RFC822Name(e) => emails.push(Some(*e)),
                // A URI or email that failed to parse must not let a lower-priority
                // name decide instead: count it, and refuse it below.
                GeneralName::Invalid(tag, _) if tag.0 == TAG_URI => uris.push(None),
                GeneralName::Invalid(tag, _) if tag.0 == TAG_RFC822_NAME => emails.push(None),
                _ => {}
            }
        }
        if !uris.is_empty() {
            return pick(IdentityKind::Uri, &uris);
        }
        if !emails.is_empty() {
            return pick(IdentityKind::Email, &emails);
        }
        let cns: Vec<Option<&str>> = cert
            .subject()
            .iter_common_name()
            .map(|attr| attr.as_str().ok())
            .collect();
        if !cns.is_empty() {
            return pick(IdentityKind::CommonName, &cns);
        }
        Err(IdentityError::NoIdentity)
    }

    /// The identity's value, e.g. `spiffe://corp/ops/alice` or `bob@corp.example`.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Where in the certificate the identity came from.
    pub fn kind(&self) -> IdentityKind {
        self.kind
    }
}

/// The single usable name of one kind; `None` entries are names that are not text.
fn pick(kind: IdentityKind, names: &[Option<&str>]) -> Result<Identity, IdentityError> {
    let [name] = names else {
        return Err(IdentityError::Ambiguous {
            kind,
            count: names.len(),
        });
    };
    let invalid = |reason| IdentityError::InvalidValue { kind, reason };
    let value = name.ok_or(invalid("it is not valid text"))?;
    if value.is_empty() {
        return Err(invalid("it is empty"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid("it contains control characters"));
    }
    Ok(Identity::new(kind, value))
}

impl fmt::Display for Identity {
    /// The value alone, as written in policy files and audit logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn cert(sans: Vec<SanType>, cns: &[&str]) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        let mut dn = DistinguishedName::new();
        for cn in cns {
            dn.push(DnType::CommonName, *cn);
        }
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    fn email(s: &str) -> SanType {
        SanType::Rfc822Name(s.try_into().unwrap())
    }

    fn dns(s: &str) -> SanType {
        SanType::DnsName(s.try_into().unwrap())
    }

    #[test]
    fn uri_wins_over_email_and_cn() {
        let der = cert(
            vec![email("alice@corp.example"), uri("spiffe://corp/ops/alice")],
            &["Alice"],
        );
        let id = Identity::from_cert_der(&der).unwrap();
        assert_eq!(id.kind(), IdentityKind::Uri);
        assert_eq!(id.as_str(), "spiffe://corp/ops/alice");
        assert_eq!(id.to_string(), "spiffe://corp/ops/alice");
    }

    #[test]
    fn email_wins_over_cn() {
        let der = cert(
            vec![dns("a.example"), email("alice@corp.example")],
            &["Alice"],
        );
        let id = Identity::from_cert_der(&der).unwrap();
        assert_eq!(id, Identity::new(IdentityKind::Email, "alice@corp.example"));
    }

    #[test]
    fn cn_is_the_last_resort_and_dns_names_do_not_count() {
        let der = cert(vec![dns("laptop.corp.example")], &["alice-laptop"]);
        let id = Identity::from_cert_der(&der).unwrap();
        assert_eq!(id, Identity::new(IdentityKind::CommonName, "alice-laptop"));
    }

    #[test]
    fn no_name_at_all_is_an_error() {
        let der = cert(vec![dns("a.example")], &[]);
        assert_eq!(
            Identity::from_cert_der(&der),
            Err(IdentityError::NoIdentity)
        );
    }

    #[test]
    fn two_names_of_the_deciding_kind_are_ambiguous() {
        let der = cert(vec![uri("spiffe://a/x"), uri("spiffe://a/y")], &["x"]);
        assert_eq!(
            Identity::from_cert_der(&der),
            Err(IdentityError::Ambiguous {
                kind: IdentityKind::Uri,
                count: 2
            })
        );
        // Two emails are ambiguous even beside a single CN.
        let der = cert(vec![email("a@x.example"), email("b@x.example")], &["a"]);
        assert!(matches!(
            Identity::from_cert_der(&der),
            Err(IdentityError::Ambiguous {
                kind: IdentityKind::Email,
                ..
            })
        ));
    }

    #[test]
    fn control_characters_and_empty_names_are_refused() {
        let der = cert(vec![], &["alice\nallow bob"]);
        assert!(matches!(
            Identity::from_cert_der(&der),
            Err(IdentityError::InvalidValue { .. })
        ));
        let der = cert(vec![], &[""]);
        assert!(matches!(
            Identity::from_cert_der(&der),
            Err(IdentityError::InvalidValue { .. })
        ));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_refused() {
        assert!(matches!(
            Identity::from_cert_der(b"not a certificate"),
            Err(IdentityError::Unparsable(_))
        ));
        assert!(matches!(
            Identity::from_cert_der(&[]),
            Err(IdentityError::Unparsable(_))
        ));
        let mut der = cert(vec![], &["alice"]);
        der.push(0);
        assert!(matches!(
            Identity::from_cert_der(&der),
            Err(IdentityError::Unparsable(_))
        ));
        // Truncations of a valid certificate never panic.
        let der = cert(vec![uri("spiffe://a/b")], &["a"]);
        for n in 0..der.len() {
            assert!(Identity::from_cert_der(&der[..n]).is_err());
        }
    }
}
