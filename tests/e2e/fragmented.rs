//! A ClientHello cut into small TLS records, each its own TCP segment (as a
//! large post-quantum ClientHello or a middlebox may deliver it), is still read
//! whole and routed: a tp client tunnels, curl gets the website, a stealth
//! client tunnels on its name, and (in passthrough.rs) a passthrough name
//! reaches its backend.

use tp_tests::bins::{Finished, config_via, run_tp};
use tp_tests::client::curl_localhost;
use tp_tests::fragment::Fragmenter;
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, Transport, pki};

/// Payload bytes per record: a rustls ClientHello (about 1.3 KB with its
/// X25519MLKEM768 key share) becomes some 40 records.
const RECORD: usize = 32;

/// `tp` with `config` to an echo target, through a relay cutting the ClientHello.
async fn echo_through(server: &TestServer, config: &std::path::Path, data: &[u8]) -> Finished {
    let target = EchoTarget::start().await;
    let split = Fragmenter::start(server.addr(), RECORD).await;
    let config = config_via(config, split.addr.port(), "split.toml");
    let port = target.port().to_string();
    let out = run_tp(&config, ["127.0.0.1", port.as_str()], data).await;
    assert_eq!(target.accepted(), usize::from(out.code() == 0));
    out
}

#[tokio::test]
async fn a_tp_client_and_curl_get_their_routes_through_a_fragmented_client_hello() {
    let server = TestServer::start().await;
    let config = server.client_config_over(&pki().alice, Transport::Tcp);
    let out = echo_through(&server, &config, b"in pieces").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"in pieces");

    // curl's (OpenSSL's) ClientHello, cut the same way: the website.
    let split = Fragmenter::start(server.addr(), RECORD).await;
    let out = curl_localhost(server.dir(), split.addr.port(), &["--http1.1"]).await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout_text().contains("<h1>Welcome</h1>"), "{out:?}");
}

#[tokio::test]
async fn a_stealth_client_is_routed_by_the_name_in_a_fragmented_client_hello() {
    let server = TestServer::builder()
        .section("stealth", "names", "[\"localhost\"]")
        .start()
        .await;
    let config = server.stealth_client_config(&pki().alice);
    let out = echo_through(&server, &config, b"hidden in pieces").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"hidden in pieces");
    server.expect_log(&["stealth: TLS established"]).await;
}
