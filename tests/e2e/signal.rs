//! The Signal relay: a TLS-in-TLS client (outer SNI the site's name, inner SNI
//! a Signal host) reaches a local stand-in for that host through tp and echoes
//! data; an inner SNI off the allowlist is closed with nothing forwarded; a
//! reloaded allowlist applies without a restart.

use std::sync::atomic::Ordering;

use tp_tests::TestServer;
use tp_tests::client::browse;
use tp_tests::process::ServerProcess;
use tp_tests::signal::{StandIn, tls_in_tls};

fn signal_section(
    builder: tp_tests::TestServerBuilder,
    stand_in: &StandIn,
) -> tp_tests::TestServerBuilder {
    builder.raw(&format!(
        "[signal]\nenabled = true\nupstreams = {{ \"chat.signal.org\" = \"127.0.0.1:{}\", \"example.com\" = \"127.0.0.1:{}\" }}\n",
        stand_in.port, stand_in.port
    ))
}

#[tokio::test]
async fn tls_in_tls_to_an_allowed_host_is_relayed_and_others_are_closed() {
    let stand_in = StandIn::start("chat.signal.org").await;
    let server = signal_section(TestServer::builder(), &stand_in)
        .start()
        .await;

    let back = tls_in_tls(server.addr(), "chat.signal.org", b"hello signal")
        .await
        .expect("relayed to the stand-in");
    assert_eq!(back, b"hello signal");
    assert_eq!(stand_in.accepted.load(Ordering::SeqCst), 1);
    server
        .expect_log(&["Signal relay closed", "host=chat.signal.org"])
        .await;

    // example.com has an upstream override, but is not on the allowlist.
    let refused = tls_in_tls(server.addr(), "example.com", b"x").await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        stand_in.accepted.load(Ordering::SeqCst),
        1,
        "nothing reached any upstream"
    );
    server
        .expect_log(&["Signal relay refused", "not on the allowlist"])
        .await;
}

#[tokio::test]
async fn a_browser_still_gets_the_website_with_the_relay_on() {
    let stand_in = StandIn::start("chat.signal.org").await;
    let server = signal_section(TestServer::builder(), &stand_in)
        .start()
        .await;
    let page = browse(server.addr()).await;
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert_eq!(stand_in.accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_reloaded_allowlist_applies_without_a_restart() {
    let stand_in = StandIn::start("chat.signal.org").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = dir.path().join("signal-hosts.txt");
    std::fs::write(&hosts, "chat.signal.org\n").expect("hosts");
    let (config, _) = TestServer::builder()
        .raw(&format!(
            "[signal]\nenabled = true\nhosts = \"signal-hosts.txt\"\nupstreams = {{ \"chat.signal.org\" = \"127.0.0.1:{}\" }}\n",
            stand_in.port
        ))
        .write_files_on_free_port(dir.path());

    let server = ServerProcess::start(&config).await;

    let back = tls_in_tls(server.addr, "chat.signal.org", b"before").await;
    assert_eq!(back.expect("relayed"), b"before");

    std::fs::write(&hosts, "storage.signal.org\n").expect("hosts");
    server.reload("configuration reloaded").await;
    let refused = tls_in_tls(server.addr, "chat.signal.org", b"after").await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(stand_in.accepted.load(Ordering::SeqCst), 1);
}
