//! The revocation list: a text file of certificate serials and SHA-256 fingerprints the
//! server refuses even though they chain to a trusted CA.
//!
//! ```text
//! # revoked 2026-05-01T08:00:00Z: alice@corp (laptop stolen)
//! 4f3a9c0e5b7d21e8a6c4b2f01d3e5a79
//! 4F:3A:9C:0E:5B:7D:21:E8:A6:C4:B2:F0:1D:3E:5A:7A   # colons and upper case are fine
//! sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ```

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::PkiError;
use super::files::{self, CERT_MODE};

/// The serial number of a DER certificate in canonical form: lowercase hex, two digits
/// per byte, no colons, leading zero bytes removed (`"00"` for a zero serial). This is
/// the form [`Issued::serial_hex`](super::Issued::serial_hex) and the CLI print and
/// the form `tp-server ca revoke` writes.
pub fn serial_hex(cert_der: &[u8]) -> Result<String, PkiError> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| {
        PkiError::InvalidCertificate {
            origin: String::new(),
            reason: e.to_string(),
        }
    })?;
    Ok(canonical_hex(strip_zeros(
        x509.tbs_certificate.raw_serial(),
    )))
}

/// The SHA-256 fingerprint of a DER certificate: 64 lowercase hex digits. A revocation
/// list names it as `sha256:<fingerprint>`.
pub fn sha256_fingerprint(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

/// A parsed revocation list: which serials and fingerprints are revoked.
///
/// Serial entries are not tied to an issuer: a listed serial is refused from any CA the
/// server trusts. With the random 126-bit serials `Ca::issue` picks, two CAs never share
/// one by accident; use a fingerprint to revoke one certificate of a foreign CA exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    /// Serials with leading zero bytes removed.
    serials: HashSet<Vec<u8>>,
    fingerprints: HashSet<[u8; 32]>,
}

impl RevocationList {
    /// Parses the revocation list format, one entry per line:
    ///
    /// - a serial in hex: colons allowed anywhere, any case, leading zeros ignored, an
    ///   optional `serial=` prefix (as `openssl x509 -noout -serial` prints it);
    /// - `sha256:` and 64 hex digits (colons allowed): the fingerprint of the DER
    ///   certificate; `sha256 Fingerprint=` (openssl's `-fingerprint -sha256` output) is
    ///   accepted too;
    /// - `#` starts a comment, to the end of the line; blank lines are skipped.
    ///
    /// An error names the 1-based line.
    pub fn parse(text: &str) -> Result<RevocationList, PkiError> {
        parse_with_origin(text, "revocation list")
    }

    /// Reads and parses the file at `path`; errors name it and the line.
    pub fn load(path: &Path) -> Result<RevocationList, PkiError> {
        let text = files::read_text(path)?;
        parse_with_origin(&text, &path.display().to_string())
    }

    /// Whether `cert_der` is revoked, by fingerprint or by serial. A certificate that
    /// does not parse can only match by fingerprint.
    pub fn is_revoked(&self, cert_der: &[u8]) -> bool {
        let fingerprint: [u8; 32] = Sha256::digest(cert_der).into();
        if self.fingerprints.contains(&fingerprint) {
            return true;
        }
        match x509_parser::parse_x509_certificate(cert_der) {
            Ok((_, x509)) => self
                .serials
                .contains(strip_zeros(x509.tbs_certificate.raw_serial())),
            Err(_) => false,
        }
    }

    /// Whether the list names `serial` (any form a list line accepts). An unparsable
    /// `serial` is never listed.
    pub fn contains_serial(&self, serial: &str) -> bool {
        parse_serial(serial).is_ok_and(|s| self.serials.contains(&s))
    }

    /// Number of distinct entries (serials plus fingerprints).
    pub fn len(&self) -> usize {
        self.serials.len() + self.fingerprints.len()
    }

    /// Whether the list revokes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The canonical form (see [`serial_hex`]) of a serial written in any form a revocation
/// list line accepts, e.g. `"00:AB:cd"` gives `"abcd"`.
pub fn canonical_serial(serial: &str) -> Result<String, PkiError> {
    parse_serial(serial)
        .map(|s| canonical_hex(&s))
        .map_err(|reason| PkiError::InvalidSerial { reason })
}

/// Appends `entry` (a serial or `sha256:` fingerprint, checked first) to the list at
/// `path`, preceded by `# comment` when given. Creates the file with mode 0644 if it is
/// missing; adds a newline first if the file does not end with one.
pub fn append_revocation(path: &Path, entry: &str, comment: Option<&str>) -> Result<(), PkiError> {
    parse_with_origin(entry, "entry")?;
    let mut text = String::new();
    if let Some(comment) = comment {
        for line in comment.lines() {
            text.push_str(&format!("# {line}\n"));
        }
    }
    text.push_str(entry.trim());
    text.push('\n');

    let io = |action| move |e| PkiError::io(action, path, e);
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(CERT_MODE)
        .open(path)
        .map_err(io("opening"))?;
    let len = f.seek(SeekFrom::End(0)).map_err(io("reading"))?;
    if len > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::End(-1)).map_err(io("reading"))?;
        f.read_exact(&mut last).map_err(io("reading"))?;
        if last[0] != b'\n' {
            text.insert(0, '\n');
        }
    }
    f.write_all(text.as_bytes()).map_err(io("writing"))?;
    f.sync_all().map_err(io("writing"))
}

fn parse_with_origin(text: &str, origin: &str) -> Result<RevocationList, PkiError> {
    let mut list = RevocationList::default();
    for (i, raw) in text.lines().enumerate() {
        let entry = raw.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        let err = |reason| PkiError::RevocationEntry {
            origin: origin.to_owned(),
            line: i + 1,
            entry: entry.to_owned(),
            reason,
        };
        let lower = entry.to_ascii_lowercase();
        let fingerprint = ["sha256:", "sha256 fingerprint="]
            .iter()
            .find_map(|prefix| lower.strip_prefix(prefix));
        match fingerprint {
            Some(fp) => {
                let bytes = decode_hex(fp.trim()).map_err(err)?;
                let fp: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| err("a sha256 fingerprint has 64 hex digits"))?;
                list.fingerprints.insert(fp);
            }
            None => {
                list.serials.insert(parse_serial(entry).map_err(err)?);
            }
        }
    }
    Ok(list)
}

/// A serial in list syntax to its bytes without leading zeros.
fn parse_serial(s: &str) -> Result<Vec<u8>, &'static str> {
    let s = s.trim();
    let s = match s.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("serial=") => &s[7..],
        _ => s,
    };
    let bytes = decode_hex(s)?;
    let bytes = strip_zeros(&bytes);
    if bytes.len() > 20 {
        return Err("a serial has at most 20 bytes");
    }
    Ok(bytes.to_vec())
}

/// Hex digits with optional colons; an odd count is read as if a `0` led.
fn decode_hex(s: &str) -> Result<Vec<u8>, &'static str> {
    let mut digits: String = s.chars().filter(|&c| c != ':').collect();
    if digits.is_empty() {
        return Err("expected hex digits");
    }
    if !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("not a hex serial or sha256:<fingerprint>");
    }
    if digits.len() % 2 == 1 {
        digits.insert(0, '0');
    }
    hex::decode(digits).map_err(|_| "not a hex serial or sha256:<fingerprint>")
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

fn canonical_hex(bytes: &[u8]) -> String {
    match bytes.is_empty() {
        true => "00".to_owned(),
        false => hex::encode(bytes),
    }
}

#[cfg(test)]
#[path = "revocation_tests.rs"]
mod tests;
