use super::*;
use crate::pki::file_stem;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{ServerName, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::X509Certificate;

fn hours(h: u64) -> Validity {
    Validity::for_ttl(SystemTime::now(), Duration::from_secs(h * 3_600))
}

fn test_ca() -> Ca {
    Ca::generate("tp test CA", hours(24 * 30)).unwrap()
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

fn sans<'a>(x509: &'a X509Certificate<'a>) -> Vec<GeneralName<'a>> {
    match x509.subject_alternative_name().unwrap() {
        Some(ext) => ext.value.general_names.clone(),
        None => Vec::new(),
    }
}

fn cn(x509: &X509Certificate<'_>) -> String {
    let cn = x509.subject().iter_common_name().next().unwrap();
    cn.as_str().unwrap().to_owned()
}

fn pem_count(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

#[test]
fn email_client_has_rfc822_san_and_client_eku() {
    let ca = test_ca();
    let issued = ca.issue(&LeafSpec::client("alice@corp", hours(4))).unwrap();
    let x509 = parse(&issued.cert_der);
    assert_eq!(cn(&x509), "alice@corp");
    assert_eq!(sans(&x509), vec![GeneralName::RFC822Name("alice@corp")]);
    let eku = x509.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && !eku.any);
    assert!(!x509.is_ca());
    assert!(x509.key_usage().unwrap().unwrap().value.digital_signature());
    assert_eq!(x509.issuer(), parse(ca.cert_der()).subject());
    assert_eq!(x509.validity().not_after.to_datetime(), issued.not_after);
    assert_eq!(issued.serial_hex.len(), 32);
    assert_eq!(
        issued.cert_pem, issued.chain_pem,
        "root-issued chain is the leaf alone"
    );
    assert!(issued.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(!format!("{issued:?}").contains("PRIVATE"));
}

#[test]
fn uri_and_plain_client_identities() {
    let ca = test_ca();
    let spiffe = ca
        .issue(&LeafSpec::client("spiffe://corp/laptop/alice", hours(1)))
        .unwrap();
    let x509 = parse(&spiffe.cert_der);
    assert_eq!(cn(&x509), "alice");
    assert_eq!(
        sans(&x509),
        vec![GeneralName::URI("spiffe://corp/laptop/alice")]
    );

    let bare = ca
        .issue(&LeafSpec::client("spiffe://corp", hours(1)))
        .unwrap();
    assert_eq!(cn(&parse(&bare.cert_der)), "spiffe://corp");

    let plain = ca.issue(&LeafSpec::client("build-bot", hours(1))).unwrap();
    let x509 = parse(&plain.cert_der);
    assert_eq!(cn(&x509), "build-bot");
    assert!(x509.subject_alternative_name().unwrap().is_none());

    for bad in [
        "",
        " ",
        "two words",
        "a@",
        "@corp",
        "a@b@c",
        "://x",
        "spiffe://",
        "é@corp",
    ] {
        let e = ca.issue(&LeafSpec::client(bad, hours(1))).unwrap_err();
        assert!(
            matches!(e, PkiError::InvalidIdentity { .. }),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn server_has_dns_and_ip_sans_and_server_eku() {
    let ca = test_ca();
    let spec = LeafSpec::server(
        vec!["tp.example.org".into(), "127.0.0.2".into()],
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        hours(24),
    );
    let issued = ca.issue(&spec).unwrap();
    let x509 = parse(&issued.cert_der);
    assert_eq!(cn(&x509), "tp.example.org");
    assert_eq!(
        sans(&x509),
        vec![
            GeneralName::DNSName("tp.example.org"),
            GeneralName::IPAddress(&[127, 0, 0, 2]),
            GeneralName::IPAddress(&[127, 0, 0, 1]),
        ]
    );
    let eku = x509.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);

    let ip_only = LeafSpec::server(vec![], vec![IpAddr::V4(Ipv4Addr::LOCALHOST)], hours(1));
    assert_eq!(
        cn(&parse(&ca.issue(&ip_only).unwrap().cert_der)),
        "127.0.0.1"
    );

    let e = ca
        .issue(&LeafSpec::server(vec![], vec![], hours(1)))
        .unwrap_err();
    assert!(matches!(e, PkiError::InvalidIdentity { .. }), "{e}");
}

#[test]
fn intermediate_chain_has_two_certs_and_verifies() {
    let root = test_ca();
    let int = root
        .generate_intermediate("tp test intermediate", hours(24 * 7))
        .unwrap();
    let issued = int.issue(&LeafSpec::client("bob@corp", hours(2))).unwrap();
    assert_eq!(pem_count(&issued.chain_pem), 2);
    assert_eq!(pem_count(&issued.cert_pem), 1);
    assert!(issued.chain_pem.starts_with(&issued.cert_pem));
    assert_eq!(issued.chain_der().len(), 2);
    assert_eq!(issued.chain_der()[1], *int.cert_der());
    assert_eq!(
        parse(&issued.cert_der).issuer(),
        parse(int.cert_der()).subject()
    );

    let chain = issued.chain_der();
    client_verifier(&root)
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .unwrap();
    // Without the intermediate, the leaf does not chain to the root.
    assert!(
        client_verifier(&root)
            .verify_client_cert(&chain[0], &[], UnixTime::now())
            .is_err()
    );
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca: &Ca) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    Arc::new(roots)
}

fn client_verifier(ca: &Ca) -> Arc<dyn rustls::server::danger::ClientCertVerifier> {
    WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap()
}

#[test]
fn rustls_accepts_client_and_refuses_wrong_usage_expired_and_foreign() {
    let ca = test_ca();
    let verifier = client_verifier(&ca);
    let now = UnixTime::now();

    let alice = ca.issue(&LeafSpec::client("alice@corp", hours(1))).unwrap();
    verifier
        .verify_client_cert(&alice.cert_der, &[], now)
        .unwrap();

    let server = ca
        .issue(&LeafSpec::server(
            vec!["tp.example.org".into()],
            vec![],
            hours(1),
        ))
        .unwrap();
    let e = verifier
        .verify_client_cert(&server.cert_der, &[], now)
        .unwrap_err();
    assert!(format!("{e:?}").contains("Purpose"), "{e:?}");

    let past = SystemTime::now() - Duration::from_secs(7_200);
    let expired = LeafSpec::client(
        "old@corp",
        Validity::for_ttl(past, Duration::from_secs(3_600)),
    );
    let expired = ca.issue(&expired).unwrap();
    let e = verifier
        .verify_client_cert(&expired.cert_der, &[], now)
        .unwrap_err();
    assert!(format!("{e:?}").contains("Expired"), "{e:?}");

    let foreign = test_ca()
        .issue(&LeafSpec::client("mallory@corp", hours(1)))
        .unwrap();
    assert!(
        verifier
            .verify_client_cert(&foreign.cert_der, &[], now)
            .is_err()
    );

    // And the server leaf works as a server certificate, the client leaf does not.
    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots(&ca), provider())
        .build()
        .unwrap();
    let name = ServerName::try_from("tp.example.org").unwrap();
    server_verifier
        .verify_server_cert(&server.cert_der, &[], &name, &[], now)
        .unwrap();
    let alice_name = ServerName::try_from("alice").unwrap();
    assert!(
        server_verifier
            .verify_server_cert(&alice.cert_der, &[], &alice_name, &[], now)
            .is_err()
    );
}

#[test]
fn explicit_serials_and_ca_lifetime() {
    let ca = test_ca();
    let mut spec = LeafSpec::client("alice@corp", hours(1));
    spec.serial = Some(vec![0, 0, 0x01, 0x02]);
    assert_eq!(ca.issue(&spec).unwrap().serial_hex, "0102");
    spec.serial = Some(vec![0x80; 19]);
    assert_eq!(ca.issue(&spec).unwrap().serial_hex, "80".repeat(19));
    for bad in [vec![], vec![0, 0], vec![0x80; 20], vec![1; 21]] {
        spec.serial = Some(bad.clone());
        let e = ca.issue(&spec).unwrap_err();
        assert!(matches!(e, PkiError::InvalidSerial { .. }), "{bad:?}: {e}");
    }

    let e = ca
        .issue(&LeafSpec::client("alice@corp", hours(24 * 31)))
        .unwrap_err();
    assert!(matches!(e, PkiError::OutlivesCa { .. }), "{e}");
}

#[test]
fn random_serials_differ() {
    let ca = test_ca();
    let a = ca.issue(&LeafSpec::client("a@corp", hours(1))).unwrap();
    let b = ca.issue(&LeafSpec::client("a@corp", hours(1))).unwrap();
    assert_ne!(a.serial_hex, b.serial_hex);
}

#[test]
fn save_writes_chain_and_private_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let root = test_ca();
    let int = root.generate_intermediate("int", hours(48)).unwrap();
    let issued = int
        .issue(&LeafSpec::client("spiffe://corp/x", hours(1)))
        .unwrap();
    let stem = file_stem("spiffe://corp/x");
    let paths = issued.save(&out, &stem).unwrap();
    assert_eq!(paths.cert, out.join("spiffe___corp_x.pem"));
    assert_eq!(
        std::fs::read_to_string(&paths.cert).unwrap(),
        issued.chain_pem
    );
    assert_eq!(std::fs::read_to_string(&paths.key).unwrap(), issued.key_pem);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&paths.key), 0o600);
    assert_eq!(mode(&paths.cert), 0o644);

    // Re-issuing replaces the files.
    let again = int
        .issue(&LeafSpec::client("spiffe://corp/x", hours(1)))
        .unwrap();
    again.save(&out, &stem).unwrap();
    assert_eq!(std::fs::read_to_string(&paths.key).unwrap(), again.key_pem);
    assert_eq!(mode(&paths.key), 0o600);

    for bad in ["", ".", "..", "a/b"] {
        assert!(issued.save(&out, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn loaded_cas_issue_leaves_rustls_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = test_ca();
    root.save(&tmp.path().join("root"), false).unwrap();
    let int = root.generate_intermediate("int", hours(48)).unwrap();
    int.save(&tmp.path().join("int"), false).unwrap();

    let loaded_root = Ca::load(&tmp.path().join("root")).unwrap();
    let loaded_int = Ca::load(&tmp.path().join("int")).unwrap();
    let verifier = client_verifier(&root);
    for ca in [&loaded_root, &loaded_int] {
        let issued = ca.issue(&LeafSpec::client("carol@corp", hours(1))).unwrap();
        let chain = issued.chain_der();
        verifier
            .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
            .unwrap();
    }
}

#[test]
fn policy_reads_back_the_identity_we_wrote() {
    use policy::{Identity, IdentityKind};
    let ca = test_ca();
    for (identity, kind) in [
        ("alice@corp", IdentityKind::Email),
        ("spiffe://corp/laptop/alice", IdentityKind::Uri),
        ("build-bot", IdentityKind::CommonName),
    ] {
        let issued = ca.issue(&LeafSpec::client(identity, hours(1))).unwrap();
        let id = Identity::from_cert_der(&issued.cert_der).unwrap();
        assert_eq!((id.as_str(), id.kind()), (identity, kind));
    }
}
