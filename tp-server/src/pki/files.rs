//! File layout and careful writes: private keys are created 0600, directories 0700,
//! and an overwrite replaces a file by rename so a reader never sees half a key.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::PkiError;

/// Mode of certificate files: public, world-readable.
pub(crate) const CERT_MODE: u32 = 0o644;
/// Mode of private key files: owner only.
pub(crate) const KEY_MODE: u32 = 0o600;

/// Where [`Ca::save`](super::Ca::save) put the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPaths {
    /// `DIR/ca.pem`: the CA certificate, followed by its intermediates for a
    /// non-root CA (mode 0644).
    pub cert: PathBuf,
    /// `DIR/ca.key`: the CA private key, PKCS#8 PEM (mode 0600).
    pub key: PathBuf,
}

impl CaPaths {
    /// The standard file names inside a CA directory.
    pub fn in_dir(dir: &Path) -> CaPaths {
        CaPaths {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
        }
    }
}

/// Where [`Issued::save`](super::Issued::save) put a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedPaths {
    /// `DIR/STEM.pem`: the leaf followed by its intermediates (mode 0644).
    pub cert: PathBuf,
    /// `DIR/STEM.key`: the leaf private key, PKCS#8 PEM (mode 0600).
    pub key: PathBuf,
}

/// A file name stem for an identity: ASCII letters, digits and `.`, `-`, `_`, `@` are
/// kept, anything else (`/`, `:`, spaces, non-ASCII) becomes `_`, and leading dots are
/// replaced too so the result is never hidden, `.` or `..`.
/// `"spiffe://corp/laptop/alice"` gives `"spiffe___corp_laptop_alice"`.
pub fn file_stem(identity: &str) -> String {
    let mut stem: String = identity
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' | '@' => c,
            _ => '_',
        })
        .collect();
    let dots = stem.len() - stem.trim_start_matches('.').len();
    stem.replace_range(..dots, &"_".repeat(dots));
    if stem.is_empty() {
        stem.push('_');
    }
    stem
}

/// Creates `dir` and missing parents with mode 0700 (existing directories are left as
/// they are).
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| PkiError::io("creating directory", dir, e))
}

/// Refuses with [`PkiError::AlreadyExists`] if any of `paths` exists.
pub(crate) fn refuse_existing(paths: &[&Path]) -> Result<(), PkiError> {
    for path in paths {
        match fs::symlink_metadata(path) {
            Ok(_) => {
                return Err(PkiError::AlreadyExists {
                    path: path.to_path_buf(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PkiError::io("checking", *path, e)),
        }
    }
    Ok(())
}

/// Writes `contents` to `path` with `mode`.
///
/// Without `overwrite`, the file is created exclusively (`O_EXCL`), so an existing file
/// is never touched. With `overwrite`, the data goes to a temporary sibling created with
/// `mode` and is renamed over `path`: readers see the old file or the new one, and the
/// new one never exists with wider permissions than `mode`.
pub(crate) fn write_file(
    path: &Path,
    contents: &[u8],
    mode: u32,
    overwrite: bool,
) -> Result<(), PkiError> {
    if !overwrite {
        return write_new(path, contents, mode).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => PkiError::AlreadyExists {
                path: path.to_path_buf(),
            },
            _ => PkiError::io("writing", path, e),
        });
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    // A leftover from a crashed run of this same pid is stale: remove it first.
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, contents, mode).map_err(|e| PkiError::io("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        PkiError::io("replacing", path, e)
    })
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // The umask may have narrowed `mode` (fine for keys; for certificates make sure
    // 0644 is what lands on disk).
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Reads a whole file as UTF-8 text.
pub(crate) fn read_text(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| PkiError::io("reading", path, e))
}

/// Encodes `der` as one PEM block with `label` (RFC 7468: base64, 64-column lines,
/// `\n` line ends). rustls-pki-types only decodes PEM, and this is all the encoding the
/// CA needs when it re-emits certificates it loaded.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            b64.push(if i <= chunk.len() {
                B64[((n >> (18 - 6 * i)) & 0x3f) as usize]
            } else {
                b'='
            });
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.chunks(64) {
        // Every byte pushed above comes from the ASCII alphabet or is '='.
        out.extend(line.iter().map(|&b| char::from(b)));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn stems_are_safe_file_names() {
        assert_eq!(file_stem("alice@corp"), "alice@corp");
        assert_eq!(
            file_stem("spiffe://corp/laptop/alice"),
            "spiffe___corp_laptop_alice"
        );
        assert_eq!(file_stem("tp.example.org"), "tp.example.org");
        assert_eq!(file_stem(".."), "__");
        assert_eq!(file_stem("..x"), "__x");
        assert_eq!(file_stem(""), "_");
        assert_eq!(file_stem("é/b"), "__b");
    }

    #[test]
    fn pem_encode_round_trips() {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        for len in 1..200 {
            let der: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let pem = pem_encode("CERTIFICATE", &der);
            assert!(pem.lines().all(|l| l.len() <= 64), "{pem}");
            let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            assert_eq!(back.as_ref(), der.as_slice(), "len {len}");
        }
        assert_eq!(
            pem_encode("X", b"foobar"),
            "-----BEGIN X-----\nZm9vYmFy\n-----END X-----\n"
        );
    }

    #[test]
    fn write_file_modes_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_file(&p, b"one", KEY_MODE, false).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let e = write_file(&p, b"two", KEY_MODE, false).unwrap_err();
        assert!(matches!(e, PkiError::AlreadyExists { .. }), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"one");
        write_file(&p, b"three", CERT_MODE, true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"three");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
