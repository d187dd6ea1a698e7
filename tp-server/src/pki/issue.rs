//! Issuing leaf certificates: what goes into a client or server certificate, and the
//! files a leaf is saved as.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use super::files::{self, CERT_MODE, IssuedPaths, KEY_MODE};
use super::{Ca, PkiError, Validity, serial_hex};

/// What a leaf certificate may be used for: its extended key usage (EKU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeafUsage {
    /// EKU `clientAuth` only: a tp user or device. Refused as a server certificate.
    Client,
    /// EKU `serverAuth` only: the tp server. Refused as a client certificate (rustls
    /// checks the EKU), which tests rely on.
    Server,
}

/// Everything that varies between leaves. Build one with [`LeafSpec::client`] or
/// [`LeafSpec::server`] and adjust the public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    /// The identity the certificate names.
    ///
    /// For a client: `"alice@corp"` (contains `@`) becomes a SAN rfc822Name and the CN;
    /// a URI such as `"spiffe://corp/laptop/alice"` (contains `://`) becomes a SAN URI,
    /// with the last non-empty path segment (or the whole URI) as CN; anything else is
    /// the CN alone. For a server: the CN; empty means the first DNS name or IP.
    pub identity: String,
    /// DNS names for the SAN. An entry that parses as an IP address is put in the SAN
    /// as an IP, as if it were in `ips`.
    pub dns_names: Vec<String>,
    /// IP addresses for the SAN.
    pub ips: Vec<IpAddr>,
    /// Client or server EKU.
    pub usage: LeafUsage,
    /// The validity window; it must end no later than the CA's.
    pub validity: Validity,
    /// Big-endian serial number; `None` picks a random positive 16-byte serial.
    pub serial: Option<Vec<u8>>,
}

impl LeafSpec {
    /// A client certificate for `identity` (see [`LeafSpec::identity`]).
    pub fn client(identity: impl Into<String>, validity: Validity) -> LeafSpec {
        LeafSpec {
            identity: identity.into(),
            dns_names: Vec::new(),
            ips: Vec::new(),
            usage: LeafUsage::Client,
            validity,
            serial: None,
        }
    }

    /// A server certificate for `dns_names` and `ips`; its CN is the first DNS name (or,
    /// with none, the first IP).
    pub fn server(dns_names: Vec<String>, ips: Vec<IpAddr>, validity: Validity) -> LeafSpec {
        let identity = match (dns_names.first(), ips.first()) {
            (Some(dns), _) => dns.clone(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => String::new(),
        };
        LeafSpec {
            identity,
            dns_names,
            ips,
            usage: LeafUsage::Server,
            validity,
            serial: None,
        }
    }
}

/// A freshly issued leaf: certificate, chain and private key.
///
/// `Debug` leaves the key out.
pub struct Issued {
    /// The leaf certificate alone, PEM.
    pub cert_pem: String,
    /// The leaf followed by the intermediates up to, but excluding, the root: what a
    /// peer presents in its handshake, and what [`Issued::save`] writes to `STEM.pem`.
    pub chain_pem: String,
    /// The leaf's private key, PKCS#8 PEM (ECDSA P-256).
    pub key_pem: String,
    /// The serial in canonical form (see [`serial_hex`]), as revocation lists use it.
    pub serial_hex: String,
    /// The last instant the leaf is valid.
    pub not_after: OffsetDateTime,
    /// The leaf certificate alone, DER.
    pub cert_der: CertificateDer<'static>,
    chain_der: Vec<CertificateDer<'static>>,
    key_der: PrivatePkcs8KeyDer<'static>,
}

impl Clone for Issued {
    fn clone(&self) -> Issued {
        Issued {
            cert_pem: self.cert_pem.clone(),
            chain_pem: self.chain_pem.clone(),
            key_pem: self.key_pem.clone(),
            serial_hex: self.serial_hex.clone(),
            not_after: self.not_after,
            cert_der: self.cert_der.clone(),
            chain_der: self.chain_der.clone(),
            key_der: self.key_der.clone_key(),
        }
    }
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("serial_hex", &self.serial_hex)
            .field("not_after", &super::rfc3339(self.not_after))
            .field("chain_len", &self.chain_der.len())
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// The chain (leaf first, root excluded) as DER, ready for a rustls config.
    pub fn chain_der(&self) -> Vec<CertificateDer<'static>> {
        self.chain_der.clone()
    }

    /// The private key as DER, ready for a rustls config.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }

    /// Writes `DIR/STEM.pem` (the chain, mode 0644) and `DIR/STEM.key` (the key, mode
    /// 0600), creating `dir` with mode 0700 if it is missing.
    ///
    /// Existing files are replaced atomically (rename): short-lived leaves are
    /// re-issued routinely, and a watcher never sees a half-written key. `stem` must be a
    /// plain file name; [`file_stem`](super::file_stem) makes one from an identity.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<IssuedPaths, PkiError> {
        if stem.is_empty() || stem == "." || stem == ".." || stem.contains(['/', '\0']) {
            return Err(PkiError::InvalidIdentity {
                identity: stem.to_owned(),
                reason: "not usable as a file name",
            });
        }
        files::create_private_dir(dir)?;
        let paths = IssuedPaths {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        files::write_file(&paths.key, self.key_pem.as_bytes(), KEY_MODE, true)?;
        files::write_file(&paths.cert, self.chain_pem.as_bytes(), CERT_MODE, true)?;
        Ok(paths)
    }
}

impl Ca {
    /// Issues a leaf described by `spec`, with a fresh ECDSA P-256 key, signed by this CA.
    ///
    /// The leaf has `basicConstraints CA:false`, key usage `digitalSignature`, the EKU of
    /// `spec.usage`, an authority key identifier, and the names described at
    /// [`LeafSpec::identity`]. Fails if `spec.validity` ends after the CA, if a name
    /// cannot be encoded, or if a server leaf has no DNS name or IP.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, PkiError> {
        self.check_within(&spec.validity)?;
        let (common_name, mut sans) = match spec.usage {
            LeafUsage::Client => client_names(&spec.identity)?,
            LeafUsage::Server => (spec.identity.clone(), Vec::new()),
        };
        for name in &spec.dns_names {
            sans.push(match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(ia5(name, "DNS names must be ASCII")?),
            });
        }
        sans.extend(spec.ips.iter().copied().map(SanType::IpAddress));
        let common_name = match (spec.usage, common_name.is_empty(), sans.first()) {
            (LeafUsage::Server, _, None) => {
                return Err(PkiError::InvalidIdentity {
                    identity: spec.identity.clone(),
                    reason: "a server certificate needs at least one DNS name or IP address",
                });
            }
            (LeafUsage::Server, true, Some(SanType::DnsName(dns))) => dns.to_string(),
            (LeafUsage::Server, true, Some(SanType::IpAddress(ip))) => ip.to_string(),
            _ => common_name,
        };

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match spec.usage {
            LeafUsage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            LeafUsage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        params.not_before = spec.validity.not_before;
        params.not_after = spec.validity.not_after;
        params.serial_number = Some(match &spec.serial {
            Some(serial) => checked_serial(serial)?,
            None => random_serial()?,
        });

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_der = cert.der().clone();
        let cert_pem = files::pem_encode("CERTIFICATE", &cert_der);
        let chain_pem = format!("{cert_pem}{}", self.chain_pem);
        let chain_der = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PkiError::InvalidCertificate {
                origin: String::new(),
                reason: format!("issued chain does not re-read: {e}"),
            })?;
        Ok(Issued {
            serial_hex: serial_hex(&cert_der)?,
            not_after: spec.validity.not_after,
            key_pem: key.serialize_pem(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
            cert_pem,
            chain_pem,
            cert_der,
            chain_der,
        })
    }
}

/// The CN and SANs for a client identity (rules at [`LeafSpec::identity`]).
fn client_names(identity: &str) -> Result<(String, Vec<SanType>), PkiError> {
    let refuse = |reason| PkiError::InvalidIdentity {
        identity: identity.to_owned(),
        reason,
    };
    if identity.trim().is_empty() {
        return Err(refuse("a client identity must not be empty"));
    }
    if identity.len() > 255 {
        return Err(refuse("longer than 255 bytes"));
    }
    if identity
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(refuse("contains whitespace or control characters"));
    }
    if let Some((scheme, rest)) = identity.split_once("://") {
        if scheme.is_empty() || rest.is_empty() {
            return Err(refuse("a URI identity needs a scheme and a body"));
        }
        let uri = ia5(identity, "URI identities must be ASCII")?;
        let cn = rest
            .split_once('/')
            .and_then(|(_, path)| path.rsplit('/').find(|s| !s.is_empty()))
            .unwrap_or(identity);
        return Ok((cn.to_owned(), vec![SanType::URI(uri)]));
    }
    if let Some((local, domain)) = identity.split_once('@') {
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return Err(refuse("an email identity is local@domain"));
        }
        let email = ia5(identity, "email identities must be ASCII")?;
        return Ok((identity.to_owned(), vec![SanType::Rfc822Name(email)]));
    }
    Ok((identity.to_owned(), Vec::new()))
}

fn ia5(s: &str, reason: &'static str) -> Result<rcgen::string::Ia5String, PkiError> {
    rcgen::string::Ia5String::try_from(s).map_err(|_| PkiError::InvalidIdentity {
        identity: s.to_owned(),
        reason,
    })
}

/// A caller-chosen serial: a positive integer whose DER content fits RFC 5280's 20 bytes.
fn checked_serial(serial: &[u8]) -> Result<SerialNumber, PkiError> {
    let first = serial.iter().position(|&b| b != 0);
    let Some(first) = first else {
        return Err(PkiError::InvalidSerial {
            reason: "must be greater than zero",
        });
    };
    let digits = &serial[first..];
    // DER prepends 0x00 when the top bit is set, to keep the integer positive.
    if digits.len() + usize::from(digits[0] >= 0x80) > 20 {
        return Err(PkiError::InvalidSerial {
            reason: "longer than 20 bytes",
        });
    }
    Ok(SerialNumber::from_slice(digits))
}

/// A random serial of exactly 16 content bytes (126 random bits): the top bit is cleared
/// so it is positive and the next one set so it never shrinks.
pub(super) fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
#[path = "issue_tests.rs"]
mod tests;
