//! TLS in front of any TCP service: DNS over TLS (`dig +tls`, verifying the
//! certificate) through a `[[terminate]]` route to a real local resolver
//! (dnsmasq) that speaks plain DNS over TCP; the same port still serves tp.

use tp_tests::TestServer;
use tp_tests::dns::{dig_tls, dnsmasq};

#[tokio::test]
async fn dns_over_tls_reaches_a_local_resolver_through_a_terminate_route() {
    let (_dnsmasq, dns_port) = dnsmasq().await;
    // dig sends no SNI: the route takes every ClientHello offering ALPN `dot`
    // (RFC 7858). The certificate is the server's (`localhost`), verified by dig.
    let server = TestServer::builder()
        .raw(&format!(
            "[[terminate]]\nalpn = [\"dot\"]\nbackend = \"127.0.0.1:{dns_port}\"\n"
        ))
        .start()
        .await;
    let out = dig_tls(server.addr().port()).await;
    assert_eq!(out.code(), 0, "dig: {} {}", out.stdout_text(), out.stderr);
    assert!(
        out.stdout_text().contains("192.0.2.53"),
        "{} {}",
        out.stdout_text(),
        out.stderr
    );
    server
        .expect_log(&[
            "terminated connection closed",
            &format!("backend=127.0.0.1:{dns_port}"),
        ])
        .await;

    // tp clients still get tunnels on the same port.
    let (out, _) = server.tp_echo().await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"ping");
}
