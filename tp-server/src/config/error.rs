//! Why a server config could not be loaded, with the file and line that said so.

use std::fmt;
use std::path::PathBuf;

/// A place in a config file: `path:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Location {
    /// The location of byte offset `at` in `text`.
    pub(crate) fn at(path: PathBuf, text: &str, at: usize) -> Location {
        let before = &text[..at.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Location { path, line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// Why the server config (or a file it names) could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("{}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema (unknown key, wrong type).
    #[error("{at}: {message}")]
    Syntax {
        /// Where.
        at: Location,
        /// What the parser said.
        message: String,
    },
    /// A value is well-formed TOML but not acceptable.
    #[error("{at}: {field}: {message}")]
    Invalid {
        /// Where the value is.
        at: Location,
        /// The key.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A certificate or key file named by the config is unusable.
    #[error("{at}: {error}")]
    Pem {
        /// Where the file is named.
        at: Location,
        /// What failed.
        error: tp_net::pem::PemError,
    },
    /// The policy file is invalid (its own error carries its file and line).
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// The policy file could not be read.
    #[error("{at}: cannot read policy {}: {error}", path.display())]
    PolicyRead {
        /// Where the file is named.
        at: Location,
        /// The policy file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// The revocation list is unreadable or has a bad line.
    #[error("{at}: {error}")]
    Revocation {
        /// Where the file is named.
        at: Location,
        /// What failed.
        error: crate::pki::PkiError,
    },
    /// The certificates and key do not make a working TLS configuration.
    #[error("TLS setup: {0}")]
    Tls(String),
}
