//! The one error type of the PKI tooling.

use std::path::PathBuf;

/// Why a PKI operation (generate, issue, load, save, parse) failed.
///
/// Messages name the file (and line, for revocation lists) they are about, so the
/// CLI can print them as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// Reading, writing or creating a file or directory failed.
    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        /// What was being done ("reading", "writing", "creating directory", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },

    /// A file exists and the caller did not ask to overwrite it.
    #[error("{path} already exists (use --force to overwrite it)", path = path.display())]
    AlreadyExists {
        /// The file that would have been overwritten.
        path: PathBuf,
    },

    /// A PEM file holds no usable item of the expected kind, or is malformed.
    #[error("{path}: {reason}", path = path.display())]
    Pem {
        /// The file that was read.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A certificate could not be parsed as X.509, or lacks something required
    /// (for a CA: the `basicConstraints` CA flag).
    #[error("invalid certificate{origin}: {reason}")]
    InvalidCertificate {
        /// `" in PATH"` when the certificate came from a file, else empty.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The CA private key does not belong to the CA certificate.
    #[error("{key} does not match the certificate in {cert}", key = key.display(), cert = cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
    },

    /// A leaf identity or name cannot be put in a certificate.
    #[error("invalid identity {identity:?}: {reason}")]
    InvalidIdentity {
        /// The identity as given.
        identity: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A requested serial number is not a positive integer of at most 20 bytes.
    #[error("invalid serial number: {reason}")]
    InvalidSerial {
        /// Why it was refused.
        reason: &'static str,
    },

    /// The leaf would stay valid after the CA certificate that signs it expires.
    #[error(
        "leaf not_after {leaf} is after the CA's not_after {ca}; shorten the TTL or rotate the CA"
    )]
    OutlivesCa {
        /// The requested leaf expiry (RFC 3339).
        leaf: String,
        /// The CA's expiry (RFC 3339).
        ca: String,
    },

    /// A duration string such as `"8h"` could not be parsed.
    #[error(
        "invalid duration {input:?}: {reason} (expected a number and a unit s, m, h or d, like \"8h\" or \"90d\")"
    )]
    InvalidTtl {
        /// The string as given.
        input: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A revocation list line is neither a serial, a `sha256:` fingerprint, a comment
    /// nor blank.
    #[error("{origin}:{line}: {reason}: {entry:?}")]
    RevocationEntry {
        /// The file path, or `"revocation list"` for text parsed from memory.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// The offending entry, comments stripped.
        entry: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The system random generator failed.
    #[error("random number generator failed")]
    Random,

    /// rcgen refused to build or sign a certificate or key.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

impl PkiError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        PkiError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
