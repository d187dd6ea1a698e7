//! The Signal relay: a TLS-in-TLS client (outer SNI the site's name, inner SNI
//! a Signal host) reaches a local stand-in for that host through tp and echoes
//! data; an inner SNI off the allowlist is closed with nothing forwarded; a
//! reloaded allowlist applies without a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tp_server::pki::{LeafSpec, Validity};
use tp_tests::client::{ClientOptions, connect};
use tp_tests::process::{ServerProcess, free_port_both};
use tp_tests::{TestServer, pki, within};

/// A TLS echo server standing in for a Signal host, with a certificate for
/// `name` from the test root; counts the TCP connections it accepted.
struct StandIn {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl StandIn {
    async fn start(name: &str) -> StandIn {
        let validity = Validity::for_ttl(SystemTime::now(), Duration::from_secs(3_600));
        let leaf = pki()
            .root
            .issue(&LeafSpec::server(vec![name.to_owned()], vec![], validity))
            .expect("stand-in certificate");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(leaf.chain_der(), leaf.key_der())
        .expect("stand-in config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = tls.shutdown().await;
                });
            }
        });
        StandIn { port, accepted }
    }
}

/// Outer TLS to the tp server as a browser would (no tp/1), then an inner TLS
/// handshake to `inner` inside it; echoes `data` through.
async fn tls_in_tls(
    server: std::net::SocketAddr,
    inner: &str,
    data: &[u8],
) -> std::io::Result<Vec<u8>> {
    let outer = connect(
        server,
        &ClientOptions {
            cert: None,
            alpn: vec![b"http/1.1".to_vec()],
        },
    )
    .await?;
    let mut roots = RootCertStore::empty();
    roots.add(pki().root.cert_der().clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(inner.to_owned()).expect("name");
    let mut tls = within(
        "the inner handshake",
        Duration::from_secs(10),
        TlsConnector::from(Arc::new(config)).connect(name, outer),
    )
    .await?;
    tls.write_all(data).await?;
    let mut back = vec![0u8; data.len()];
    within(
        "the echo",
        Duration::from_secs(10),
        tls.read_exact(&mut back),
    )
    .await?;
    Ok(back)
}

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
    let mut tls = connect(
        server.addr(),
        &ClientOptions {
            cert: None,
            alpn: vec![b"http/1.1".to_vec()],
        },
    )
    .await
    .expect("outer handshake");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut page = Vec::new();
    let _ = tls.read_to_end(&mut page).await;
    let page = String::from_utf8_lossy(&page);
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert_eq!(stand_in.accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_reloaded_allowlist_applies_without_a_restart() {
    let stand_in = StandIn::start("chat.signal.org").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = dir.path().join("signal-hosts.txt");
    std::fs::write(&hosts, "chat.signal.org\n").expect("hosts");
    let config = TestServer::builder()
        .raw(&format!(
            "[signal]\nenabled = true\nhosts = \"signal-hosts.txt\"\nupstreams = {{ \"chat.signal.org\" = \"127.0.0.1:{}\" }}\n",
            stand_in.port
        ))
        .write_files(dir.path());
    let port = free_port_both();
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    )
    .expect("config");
    let server = ServerProcess::start(&config).await;

    let back = tls_in_tls(server.addr, "chat.signal.org", b"before").await;
    assert_eq!(back.expect("relayed"), b"before");

    std::fs::write(&hosts, "storage.signal.org\n").expect("hosts");
    server.reload("configuration reloaded").await;
    let refused = tls_in_tls(server.addr, "chat.signal.org", b"after").await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(stand_in.accepted.load(Ordering::SeqCst), 1);
}
