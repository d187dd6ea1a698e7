//! TLS in front of any TCP service: DNS over TLS (`dig +tls`, verifying the
//! certificate) through a `[[terminate]]` route to a real local resolver
//! (dnsmasq) that speaks plain DNS over TCP; the same port still serves tp.

use tokio::process::Command;
use tp_tests::bins::{run, run_tp, system_bin};
use tp_tests::dns::dnsmasq;
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, Transport, pki};

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
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("root.pem");
    std::fs::write(&ca, pki().root.cert_pem()).expect("root");

    let mut dig = Command::new(system_bin("dig"));
    dig.arg("@127.0.0.1")
        .arg("-p")
        .arg(server.addr().port().to_string())
        .arg("+tls")
        .arg(format!("+tls-ca={}", ca.display()))
        .arg("+tls-hostname=localhost")
        .args(["+short", "+tries=1", "+time=5", "dot.test", "A"]);
    let out = run(dig, b"").await;
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
    let target = EchoTarget::start().await;
    let config = server.client_config_over(&pki().alice, Transport::Tcp);
    let port = target.port().to_string();
    let out = run_tp(&config, ["127.0.0.1", port.as_str()], b"ping").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"ping");
}
