//! The test PKI: one root CA with a server certificate and a client leaf for every
//! case the certificate tests need, minted once per process with `tp_server::pki`
//! (rcgen), the library `tp-server ca` uses.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;
use std::time::Duration;

use time::OffsetDateTime;
use tp_server::pki::{Ca, Issued, LeafSpec, LeafUsage, Validity};

/// The identity of the ordinary, valid client.
pub const ALICE: &str = "alice@test";
/// A second valid client, for policies that name one identity and not the other.
pub const BOB: &str = "bob@test";

/// Certificates for every test case. See [`pki`].
#[derive(Debug)]
pub struct TestPki {
    /// The root CA: trusted by the server for clients, and by clients for the server.
    pub root: Ca,
    /// The server's certificate: `localhost` and `127.0.0.1`, issued by the root.
    pub server: Issued,
    /// `alice@test`, valid now.
    pub alice: Issued,
    /// `bob@test`, valid now.
    pub bob: Issued,
    /// `expired@test`: valid from 2 days ago until 1 day ago.
    pub expired: Issued,
    /// `future@test`: valid from tomorrow.
    pub not_yet_valid: Issued,
    /// `stranger@test`, from a CA the server does not trust.
    pub foreign: Issued,
    /// `server-eku.test`: a server certificate (EKU serverAuth only).
    pub server_eku: Issued,
    /// `revoked@test`: valid; tests put its serial on the server's revocation list.
    pub revoked: Issued,
    /// `carol@test`, issued by an intermediate CA under the root; its chain carries
    /// the intermediate.
    pub via_intermediate: Issued,
}

/// The process-wide test PKI.
pub fn pki() -> &'static TestPki {
    static PKI: LazyLock<TestPki> = LazyLock::new(TestPki::generate);
    &PKI
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

impl TestPki {
    fn generate() -> TestPki {
        let now = OffsetDateTime::now_utc();
        // Wide enough for the expired and the not-yet-valid leaves.
        let ca_validity = Validity {
            not_before: now - days(10),
            not_after: now + days(10),
        };
        let day = Validity::for_ttl(now, Duration::from_secs(86_400));
        let root = Ca::generate("tp e2e root CA", ca_validity).expect("root CA");
        let client = |ca: &Ca, id: &str, validity: Validity| {
            ca.issue(&LeafSpec::client(id, validity))
                .unwrap_or_else(|e| panic!("issuing {id}: {e}"))
        };
        let server = root
            .issue(&LeafSpec::server(
                vec!["localhost".into()],
                vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                day,
            ))
            .expect("server certificate");
        let foreign_ca = Ca::generate("some other CA", ca_validity).expect("foreign CA");
        let intermediate = root
            .generate_intermediate("tp e2e intermediate CA", day)
            .expect("intermediate CA");
        // A real server certificate (serverAuth only), presented as a client's.
        let server_eku = LeafSpec::server(vec!["server-eku.test".into()], Vec::new(), day);
        assert_eq!(server_eku.usage, LeafUsage::Server);
        TestPki {
            alice: client(&root, ALICE, day),
            bob: client(&root, BOB, day),
            expired: client(
                &root,
                "expired@test",
                Validity {
                    not_before: now - days(2),
                    not_after: now - days(1),
                },
            ),
            not_yet_valid: client(
                &root,
                "future@test",
                Validity {
                    not_before: now + days(1),
                    not_after: now + days(2),
                },
            ),
            foreign: client(&foreign_ca, "stranger@test", day),
            server_eku: root.issue(&server_eku).expect("serverAuth leaf"),
            revoked: client(&root, "revoked@test", day),
            via_intermediate: client(&intermediate, "carol@test", day),
            server,
            root,
        }
    }
}
