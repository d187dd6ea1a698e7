//! `[[terminate]]` routes with `client_cert = "required"`: the certificate is
//! verified as a tunnel's is (client CA, revocation list), then the policy's
//! `routes` grant decides. Everyone else is closed before the backend is dialed:
//! the backend never sees them. Real peers: `dig +tls` with and without a client
//! certificate against dnsmasq; a raw rustls client against a counting backend.

use std::sync::Arc;

use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::{HandshakeKind, pki_types::ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tp_server::pki::Issued;
use tp_tests::client::{ClientOptions, TlsClient, connect, tls_config};
use tp_tests::dns::{dig_tls_as, dnsmasq};
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, pki, within};

/// alice may use both routes; `revoked@test` would be granted too, so only the
/// revocation list keeps it out. bob is granted nothing.
const POLICY: &str = r#"
[[rule]]
name = "route-users"
who = ["alice@test", "revoked@test"]
routes = ["dot", "echo"]
"#;

const ECHO: &[u8] = b"echo";

/// A server with the route `echo` (ALPN `echo` on the main port, client
/// certificate required) to `target`, revoking `revoked@test`.
async fn echo_server(target: &EchoTarget) -> TestServer {
    TestServer::builder()
        .policy(POLICY)
        .revoked(&pki().revoked)
        .raw(&format!(
            "[[terminate]]\nname = \"echo\"\nalpn = [\"echo\"]\nbackend = \"{}\"\nclient_cert = \"required\"\n",
            target.addr()
        ))
        .start()
        .await
}

fn echo_client(cert: Option<&Issued>) -> ClientOptions<'_> {
    ClientOptions {
        cert,
        alpn: vec![ECHO.to_vec()],
    }
}

/// Writes `ping` and reads to the end: what came back, or `None` if the
/// connection failed.
async fn ping(tls: &mut TlsClient) -> Option<Vec<u8>> {
    tls.write_all(b"ping").await.ok()?;
    tls.shutdown().await.ok()?;
    let mut back = Vec::new();
    within(
        "the route's answer",
        tp_tests::EVENTUALLY,
        tls.read_to_end(&mut back),
    )
    .await
    .ok()?;
    Some(back)
}

#[tokio::test]
async fn dig_gets_answers_with_a_granted_certificate_and_nothing_without() {
    let (_dnsmasq, dns_port) = dnsmasq().await;
    let server = TestServer::builder()
        .policy(POLICY)
        .raw(&format!(
            "[[terminate]]\nname = \"dot\"\nlisten = [\"127.0.0.1:0\"]\nbackend = \"127.0.0.1:{dns_port}\"\nclient_cert = \"required\"\n"
        ))
        .start()
        .await;
    let port = server.route_addrs()[0].port();

    let out = dig_tls_as(port, Some(&pki().alice)).await;
    assert_eq!(out.stdout_text().trim(), "192.0.2.53", "{}", out.stderr);
    server
        .expect_log(&["allow route dot", "identity=alice@test", "rule=route-users"])
        .await;

    let refused = [
        (None, "no certificate"),
        (Some(&pki().bob), "bob, not granted the route"),
        (
            Some(&pki().foreign),
            "a certificate from a CA the server does not trust",
        ),
    ];
    for (leaf, who) in refused {
        let out = dig_tls_as(port, leaf).await;
        assert!(
            !out.stdout_text().contains("192.0.2.53"),
            "{who} got an answer: {}",
            out.stdout_text()
        );
    }
    server
        .expect_log(&[
            "deny route dot: no rule allows bob@test to use route dot",
            "identity=bob@test",
        ])
        .await;
    // One relayed connection: alice's.
    assert_eq!(
        server
            .log_lines_with(&["terminated connection closed"])
            .len(),
        1,
        "{:#?}",
        server.logs()
    );
}

#[tokio::test]
async fn only_a_granted_identity_reaches_the_backend() {
    let target = EchoTarget::start().await;
    let server = echo_server(&target).await;
    let refused = [
        (None, "no certificate"),
        (Some(&pki().bob), "not granted the route"),
        (Some(&pki().revoked), "revoked"),
        (Some(&pki().expired), "expired"),
        (Some(&pki().foreign), "from a CA the server does not trust"),
    ];
    for (leaf, why) in refused {
        if let Ok(mut tls) = connect(server.addr(), &echo_client(leaf)).await {
            let back = ping(&mut tls).await;
            assert!(
                back.unwrap_or_default().is_empty(),
                "{why}: bytes came back"
            );
        }
        assert_eq!(target.accepted(), 0, "{why}: the backend was dialed");
    }
    server
        .expect_log(&["deny route echo", "identity=bob@test", "nothing forwarded"])
        .await;
    assert!(
        server
            .log_lines_with(&["route echo", "revoked@test"])
            .is_empty(),
        "a revoked certificate never reaches the policy"
    );

    let mut tls = connect(server.addr(), &echo_client(Some(&pki().alice)))
        .await
        .expect("alice's handshake");
    assert_eq!(ping(&mut tls).await.as_deref(), Some(&b"ping"[..]));
    assert_eq!(target.accepted(), 1);
    server
        .expect_log(&["allow route echo", "identity=alice@test"])
        .await;
}

#[tokio::test]
async fn no_session_is_resumed_so_every_connection_shows_its_certificate() {
    let target = EchoTarget::start().await;
    let server = echo_server(&target).await;
    // A client that keeps sessions: a resumed TLS 1.3 session carries the
    // identity of its first handshake, and no certificate is shown or checked
    // again (a revocation since would go unnoticed). The server issues no
    // ticket, so the second connection is a full handshake, verified again.
    let mut config = tls_config(&echo_client(Some(&pki().alice)));
    config.resumption = Resumption::store(Arc::new(ClientSessionMemoryCache::new(16)));
    let connector = TlsConnector::from(Arc::new(config));
    for round in 1..=2 {
        let tcp = TcpStream::connect(server.addr()).await.expect("tcp");
        let name = ServerName::try_from("localhost").expect("name");
        let mut tls = connector.connect(name, tcp).await.expect("alice");
        assert_eq!(ping(&mut tls).await.as_deref(), Some(&b"ping"[..]));
        let conn = tls.get_ref().1;
        assert_eq!(
            conn.handshake_kind(),
            Some(HandshakeKind::Full),
            "round {round}"
        );
        assert_eq!(conn.tls13_tickets_received(), 0, "round {round}: a ticket");
    }
    assert_eq!(target.accepted(), 2);
    assert_eq!(
        server
            .log_lines_with(&["allow route echo", "alice@test"])
            .len(),
        2,
        "each connection is decided on its own certificate"
    );
}
