//! The certificate authority: generate a root or an intermediate, save it, load it back.
//! Issuing leaves lives in `issue.rs`.

use std::fmt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use super::files::{self, CERT_MODE, CaPaths, KEY_MODE};
use super::issue::random_serial;
use super::{PkiError, Validity, rfc3339};

/// A certificate authority that can sign leaves: its certificate, its private key and,
/// for an intermediate, the intermediates between it and the root.
///
/// `Debug` shows the subject and expiry, never the key.
pub struct Ca {
    /// Signs leaves; holds the CA's subject, key identifier and private key.
    pub(super) issuer: Issuer<'static, KeyPair>,
    pub(super) cert_der: CertificateDer<'static>,
    pub(super) cert_pem: String,
    /// PEM of the certificates a leaf must present after itself: this CA's certificate
    /// and the intermediates above it, excluding the root. Empty for a root.
    pub(super) chain_pem: String,
    pub(super) subject: String,
    pub(super) not_after: OffsetDateTime,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.subject)
            .field("not_after", &rfc3339(self.not_after))
            .field("root", &self.is_root())
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Generates a self-signed root CA: a fresh ECDSA P-256 key, `CN=common_name`,
    /// critical `basicConstraints CA:true` without a path length limit, key usages
    /// `keyCertSign` and `cRLSign`, and a random 16-byte serial.
    pub fn generate(common_name: &str, validity: Validity) -> Result<Ca, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(common_name, validity, BasicConstraints::Unconstrained)?;
        let cert = params.self_signed(&key)?;
        Ok(Ca::from_parts(
            Issuer::new(params, key),
            cert.der().clone(),
            String::new(),
            common_name,
            validity.not_after,
        ))
    }

    /// Generates an intermediate CA signed by `self`, limited to signing leaves
    /// (`pathLenConstraint = 0`). Its [`cert_chain_pem`](Ca::cert_chain_pem) is its own
    /// certificate followed by `self`'s chain, so leaves it issues carry everything up to,
    /// but excluding, the root.
    ///
    /// Fails with [`PkiError::OutlivesCa`] if `validity` ends after `self` does.
    pub fn generate_intermediate(
        &self,
        common_name: &str,
        validity: Validity,
    ) -> Result<Ca, PkiError> {
        self.check_within(&validity)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params(common_name, validity, BasicConstraints::Constrained(0))?;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        let chain = format!("{}{}", cert.pem(), self.chain_pem);
        Ok(Ca::from_parts(
            Issuer::new(params, key),
            cert.der().clone(),
            chain,
            common_name,
            validity.not_after,
        ))
    }

    /// Loads the CA that [`save`](Ca::save) wrote to `dir`: `ca.pem` (the CA certificate,
    /// then, for an intermediate, the intermediates above it) and `ca.key` (its private
    /// key, PKCS#8 PEM: ECDSA P-256/P-384/P-521, Ed25519 or RSA).
    ///
    /// Checks that the first certificate is a CA and that the key belongs to it. A
    /// self-signed (root) certificate must be alone in `ca.pem`.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let paths = CaPaths::in_dir(dir);
        let cert_text = files::read_text(&paths.cert)?;
        let key_text = files::read_text(&paths.key)?;
        let pem_err = |path: &Path, reason: String| PkiError::Pem {
            path: path.to_path_buf(),
            reason,
        };

        let certs = CertificateDer::pem_slice_iter(cert_text.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(&paths.cert, format!("bad PEM: {e}")))?;
        let Some(cert_der) = certs.first().cloned() else {
            return Err(pem_err(&paths.cert, "no CERTIFICATE block".into()));
        };
        let key_der = PrivateKeyDer::from_pem_slice(key_text.as_bytes())
            .map_err(|e| pem_err(&paths.key, format!("no usable private key: {e}")))?;
        // rcgen keeps the DER it was given and later labels it PKCS#8 when saving, so
        // accept PKCS#8 only rather than write a mislabelled key back.
        if !matches!(key_der, PrivateKeyDer::Pkcs8(_)) {
            return Err(pem_err(
                &paths.key,
                "not a PKCS#8 key (BEGIN PRIVATE KEY); convert it with \
                 `openssl pkcs8 -topk8 -nocrypt`"
                    .into(),
            ));
        }
        let key = KeyPair::try_from(&key_der)
            .map_err(|e| pem_err(&paths.key, format!("unsupported private key: {e}")))?;

        let invalid = |reason: String| PkiError::InvalidCertificate {
            origin: format!(" in {}", paths.cert.display()),
            reason,
        };
        let (_, x509) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| invalid(format!("not X.509: {e}")))?;
        if !x509.is_ca() {
            return Err(invalid(
                "not a CA certificate (basicConstraints CA flag missing)".into(),
            ));
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::KeyMismatch {
                cert: paths.cert,
                key: paths.key,
            });
        }
        let is_root = x509.subject().as_raw() == x509.issuer().as_raw();
        if is_root && certs.len() > 1 {
            return Err(invalid(
                "a self-signed CA certificate must be alone in the file".into(),
            ));
        }
        let chain_pem = match is_root {
            true => String::new(),
            false => certs
                .iter()
                .map(|c| files::pem_encode("CERTIFICATE", c))
                .collect(),
        };
        let subject = x509
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map_or_else(|| x509.subject().to_string(), str::to_owned);
        let not_after = x509.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        let cert_der = cert_der.into_owned();
        Ok(Ca::from_parts(
            issuer, cert_der, chain_pem, &subject, not_after,
        ))
    }

    /// Writes `DIR/ca.pem` (certificate and chain, mode 0644) and `DIR/ca.key` (PKCS#8
    /// private key, mode 0600), creating `dir` with mode 0700 if it is missing.
    ///
    /// Without `force`, refuses with [`PkiError::AlreadyExists`] if either file exists,
    /// before writing anything. With `force`, each file is replaced atomically (rename).
    pub fn save(&self, dir: &Path, force: bool) -> Result<CaPaths, PkiError> {
        let paths = CaPaths::in_dir(dir);
        if !force {
            files::refuse_existing(&[&paths.cert, &paths.key])?;
        }
        files::create_private_dir(dir)?;
        let key_pem = self.issuer.key().serialize_pem();
        // The key first: a CA certificate without its key is useless, the reverse is inert.
        files::write_file(&paths.key, key_pem.as_bytes(), KEY_MODE, force)?;
        let cert_pem = match self.is_root() {
            true => self.cert_pem.as_str(),
            false => self.chain_pem.as_str(),
        };
        files::write_file(&paths.cert, cert_pem.as_bytes(), CERT_MODE, force)?;
        Ok(paths)
    }

    /// This CA's own certificate, PEM. For a root, this is the trust anchor to give to
    /// the server's `client_ca` and to clients.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// This CA's own certificate, DER (e.g. for a `rustls::RootCertStore`).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The certificates a leaf issued by this CA presents after itself: this CA's
    /// certificate and the intermediates above it, excluding the root. Empty for a root.
    pub fn cert_chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// Whether this CA is a self-signed root.
    pub fn is_root(&self) -> bool {
        self.chain_pem.is_empty()
    }

    /// The CA's common name (or its whole subject, if it has no CN).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The last instant the CA certificate is valid. Leaves may not outlive it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Refuses a validity that ends after this CA does.
    pub(super) fn check_within(&self, validity: &Validity) -> Result<(), PkiError> {
        if validity.not_after > self.not_after {
            return Err(PkiError::OutlivesCa {
                leaf: rfc3339(validity.not_after),
                ca: rfc3339(self.not_after),
            });
        }
        Ok(())
    }

    fn from_parts(
        issuer: Issuer<'static, KeyPair>,
        cert_der: CertificateDer<'static>,
        chain_pem: String,
        subject: &str,
        not_after: OffsetDateTime,
    ) -> Ca {
        Ca {
            issuer,
            cert_pem: files::pem_encode("CERTIFICATE", &cert_der),
            cert_der,
            chain_pem,
            subject: subject.to_owned(),
            not_after,
        }
    }
}

fn ca_params(
    common_name: &str,
    validity: Validity,
    constraints: BasicConstraints,
) -> Result<CertificateParams, PkiError> {
    if common_name.trim().is_empty() {
        return Err(PkiError::InvalidIdentity {
            identity: common_name.to_owned(),
            reason: "a CA name must not be empty",
        });
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime};

    fn validity(days: u64) -> Validity {
        Validity::for_ttl(SystemTime::now(), Duration::from_secs(days * 86_400))
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn root_is_a_ca() {
        let ca = Ca::generate("tp test CA", validity(10)).unwrap();
        assert!(ca.is_root());
        assert_eq!(ca.cert_chain_pem(), "");
        let (_, x509) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        assert!(x509.is_ca());
        assert_eq!(x509.subject().to_string(), "CN=tp test CA");
        assert_eq!(x509.subject(), x509.issuer());
        let ku = x509.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert_eq!(x509.tbs_certificate.raw_serial().len(), 16);
        assert!(format!("{ca:?}").contains("tp test CA"));
    }

    #[test]
    fn save_load_round_trip_and_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let ca = Ca::generate("tp test CA", validity(10)).unwrap();
        let paths = ca.save(&dir, false).unwrap();
        assert_eq!(paths, CaPaths::in_dir(&dir));
        assert_eq!(mode(&paths.key), 0o600);
        assert_eq!(mode(&paths.cert), 0o644);
        assert_eq!(mode(&dir), 0o700);

        let loaded = Ca::load(&dir).unwrap();
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        assert_eq!(loaded.subject(), "tp test CA");
        assert_eq!(loaded.not_after(), ca.not_after());
        assert!(loaded.is_root());
        assert_eq!(
            loaded.issuer.key().serialize_der(),
            ca.issuer.key().serialize_der()
        );
    }

    #[test]
    fn save_refuses_overwrite_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let first = Ca::generate("first", validity(10)).unwrap();
        first.save(tmp.path(), false).unwrap();
        let second = Ca::generate("second", validity(10)).unwrap();
        let e = second.save(tmp.path(), false).unwrap_err();
        assert!(matches!(e, PkiError::AlreadyExists { .. }), "{e}");
        assert!(e.to_string().contains("ca.pem"), "{e}");
        assert_eq!(Ca::load(tmp.path()).unwrap().subject(), "first");

        second.save(tmp.path(), true).unwrap();
        assert_eq!(Ca::load(tmp.path()).unwrap().subject(), "second");
        assert_eq!(mode(&tmp.path().join("ca.key")), 0o600);
    }

    #[test]
    fn load_rejects_mismatched_key_and_missing_files() {
        let tmp = tempfile::tempdir().unwrap();
        let e = Ca::load(tmp.path()).unwrap_err();
        assert!(
            matches!(e, PkiError::Io { .. }) && e.to_string().contains("ca.pem"),
            "{e}"
        );

        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        Ca::generate("a", validity(10))
            .unwrap()
            .save(&a, false)
            .unwrap();
        Ca::generate("b", validity(10))
            .unwrap()
            .save(&b, false)
            .unwrap();
        std::fs::copy(b.join("ca.key"), a.join("ca.key")).unwrap();
        let e = Ca::load(&a).unwrap_err();
        assert!(matches!(e, PkiError::KeyMismatch { .. }), "{e}");
    }

    #[test]
    fn intermediate_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Ca::generate("root", validity(10)).unwrap();
        let int = root.generate_intermediate("int", validity(5)).unwrap();
        assert!(!int.is_root());
        assert!(int.cert_chain_pem().starts_with(int.cert_pem()));
        int.save(tmp.path(), false).unwrap();
        let loaded = Ca::load(tmp.path()).unwrap();
        assert!(!loaded.is_root());
        assert_eq!(loaded.cert_chain_pem(), int.cert_chain_pem());

        let e = root
            .generate_intermediate("long", validity(20))
            .unwrap_err();
        assert!(matches!(e, PkiError::OutlivesCa { .. }), "{e}");
    }
}
