//! Loading PEM certificate chains and private keys, with errors that name the file.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a PEM file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The file could not be read or held malformed PEM.
    #[error("{}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: rustls_pki_types::pem::Error,
    },
    /// The file held no certificate.
    #[error("{}: no CERTIFICATE block found", path.display())]
    NoCertificates {
        /// The file.
        path: PathBuf,
    },
}

/// Reads every certificate in a PEM file, in order (a chain: leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| PemError::Read {
            path: path.to_owned(),
            error,
        })?;
    if certs.is_empty() {
        return Err(PemError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, SEC1 or PKCS#1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| PemError::Read {
        path: path.to_owned(),
        error,
    })
}
