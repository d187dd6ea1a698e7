//! Each new QUIC stream is a tunnel opened with the configuration current at
//! that moment, and the client's chain must still pass it. Verifying the chain
//! costs signature checks (about 80 µs here) on every stream, yet the outcome
//! can only change when the configuration does (a reload brings new client CAs
//! or a new revocation list: a new [`Shared`]) or when a certificate in the
//! chain expires. [`Verified`] remembers the configuration the chain last
//! passed and the earliest expiry in it, and verifies again only when either
//! moved.

use std::sync::{Arc, Weak};

use rustls_pki_types::{CertificateDer, UnixTime};

use crate::server::Shared;

/// What a connection's chain last passed.
#[derive(Debug)]
pub(super) struct Verified {
    /// The configuration it passed: held weakly, so an old configuration is not
    /// kept alive, and its address cannot be reused by a newer one meanwhile.
    config: Weak<Shared>,
    /// The earliest `notAfter` in the chain (UNIX seconds); 0 when it could not
    /// be read, which verifies every time.
    until: u64,
}

impl Verified {
    /// Nothing passed yet: the first check verifies.
    pub(super) fn new(chain: &[CertificateDer<'_>]) -> Self {
        Verified {
            config: Weak::new(),
            until: earliest_not_after(chain).unwrap_or(0),
        }
    }

    /// Verifies `chain` against `shared` at `now`, unless it already passed
    /// this very configuration and nothing in it has expired since.
    pub(super) fn check(
        &mut self,
        shared: &Arc<Shared>,
        chain: &[CertificateDer<'static>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let same = Weak::ptr_eq(&self.config, &Arc::downgrade(shared));
        if same && now.as_secs() < self.until {
            return Ok(());
        }
        shared.reverify(chain)?;
        self.config = Arc::downgrade(shared);
        Ok(())
    }
}

/// The earliest `notAfter` of the certificates in `chain`, in UNIX seconds.
fn earliest_not_after(chain: &[CertificateDer<'_>]) -> Option<u64> {
    chain
        .iter()
        .map(|cert| {
            let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
            u64::try_from(cert.validity().not_after.timestamp()).ok()
        })
        .try_fold(u64::MAX, |earliest, not_after| {
            Some(earliest.min(not_after?))
        })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::pki::{Ca, LeafSpec, Validity};

    #[test]
    fn the_earliest_expiry_of_the_chain_counts() {
        let now = SystemTime::now();
        let ca = Ca::generate(
            "test CA",
            Validity::for_ttl(now, Duration::from_secs(86_400)),
        )
        .unwrap();
        let leaf = ca
            .issue(&LeafSpec::client(
                "alice@test",
                Validity::for_ttl(now, Duration::from_secs(3_600)),
            ))
            .unwrap();
        let chain = [leaf.cert_der.clone(), ca.cert_der().clone()];
        let until = earliest_not_after(&chain).unwrap();
        let now_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // The leaf's hour, not the CA's day (Validity may round to the second).
        assert!(
            until > now_secs + 3_500 && until <= now_secs + 3_700,
            "{until}"
        );
        assert_eq!(
            earliest_not_after(&[CertificateDer::from(vec![1, 2, 3])]),
            None
        );
        assert_eq!(Verified::new(&[CertificateDer::from(vec![1])]).until, 0);
    }
}
