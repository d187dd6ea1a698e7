//! The development PKI behind `tp-server ca`: a small certificate authority that mints
//! short-lived client certificates and server certificates, and the revocation list the
//! server honours.
//!
//! Everything is generated with rcgen (ECDSA P-256, SHA-256) and read back with
//! rustls-pki-types and x509-parser; nothing shells out to openssl. This module writes
//! files only when asked ([`Ca::save`], [`Issued::save`], [`append_revocation`]) and
//! reads the clock only through the `now` its callers pass to [`Validity::for_ttl`].
//! It does not verify chains: that is rustls's job at handshake time.
//!
//! `docs/pki.md` describes the file layout, identities, TTLs and the revocation list
//! format.

mod ca;
mod error;
mod files;
mod issue;
mod revocation;
mod ttl;

use std::time::Duration;

use time::{OffsetDateTime, UtcOffset};

pub use ca::Ca;
pub use error::PkiError;
pub use files::{CaPaths, IssuedPaths, file_stem};
pub use issue::{Issued, LeafSpec, LeafUsage};
pub use revocation::{
    RevocationList, append_revocation, canonical_serial, serial_hex, sha256_fingerprint,
};
pub use ttl::{MAX_TTL, format_ttl, parse_ttl};

/// Default lifetime of a client certificate: one working day. Short-lived is the point.
pub const DEFAULT_CLIENT_TTL: Duration = Duration::from_secs(8 * 3_600);
/// Longest client TTL `tp-server ca issue client` accepts without `--allow-long-ttl`.
pub const MAX_CLIENT_TTL: Duration = Duration::from_secs(30 * 86_400);
/// Default lifetime of a server certificate.
pub const DEFAULT_SERVER_TTL: Duration = Duration::from_secs(90 * 86_400);
/// Default lifetime of a CA certificate: ten years of 365 days.
pub const DEFAULT_CA_TTL: Duration = Duration::from_secs(3_650 * 86_400);
/// How far [`Validity::for_ttl`] backdates `not_before`, so that a peer whose clock is a
/// little behind ours accepts a certificate minted a moment ago.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(5 * 60);

/// The validity window written into a certificate (`notBefore`..=`notAfter`, UTC,
/// whole seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First instant the certificate is valid.
    pub not_before: OffsetDateTime,
    /// Last instant the certificate is valid.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// The window for a certificate minted at `now` that lives for `ttl`:
    /// `not_before = now - 5 min` ([`CLOCK_SKEW_ALLOWANCE`], for peers with slow clocks)
    /// and `not_after = now + ttl`, both truncated to whole seconds (X.509 stores
    /// seconds). A `not_after` beyond year 9999 is clamped to 9999-12-31T23:59:59Z, the
    /// last instant X.509 can express.
    ///
    /// `now` is passed in (a `SystemTime` or an `OffsetDateTime`) so tests can mint
    /// expired or not-yet-valid certificates deterministically.
    pub fn for_ttl(now: impl Into<OffsetDateTime>, ttl: Duration) -> Validity {
        let now = now.into().to_offset(UtcOffset::UTC);
        let now = now - time::Duration::nanoseconds(i64::from(now.nanosecond()));
        let last = last_x509_instant();
        let not_after = time::Duration::try_from(ttl)
            .ok()
            .and_then(|ttl| now.checked_add(ttl))
            .map_or(last, |t| t.min(last));
        Validity {
            not_before: now.saturating_sub(time::Duration::seconds(
                CLOCK_SKEW_ALLOWANCE.as_secs() as i64
            )),
            not_after,
        }
    }
}

/// 9999-12-31T23:59:59Z, the last instant an X.509 GeneralizedTime can hold.
fn last_x509_instant() -> OffsetDateTime {
    // 253_402_300_799 is 9999-12-31T23:59:59Z, well inside `time`'s supported range.
    OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Formats `t` as RFC 3339 in UTC with whole seconds, e.g. `2026-05-01T08:00:00Z`.
/// Used in CLI output and error messages.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_backdates_and_truncates() {
        let now = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        let v = Validity::for_ttl(now, Duration::from_secs(3_600));
        assert_eq!(v.not_before.unix_timestamp(), 1_700_000_000 - 300);
        assert_eq!(v.not_after.unix_timestamp(), 1_700_003_600);
        assert_eq!(v.not_after.nanosecond(), 0);
        assert_eq!(rfc3339(v.not_after), "2023-11-14T23:13:20Z");
    }

    #[test]
    fn validity_clamps_to_x509_max() {
        let now = OffsetDateTime::from_unix_timestamp(253_000_000_000).unwrap();
        let v = Validity::for_ttl(now, MAX_TTL);
        assert_eq!(rfc3339(v.not_after), "9999-12-31T23:59:59Z");
    }
}
