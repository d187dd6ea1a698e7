//! Stealth mode, seen from outside: on a stealth name, `tp --stealth` tunnels
//! (ssh, an echo target, beside curl reaching a real nginx over HTTP/1.1 and
//! HTTP/2) while nothing it sends in the clear says tp: no ALPN `tp/1`, a
//! browser's ALPN list. An active prober gets the website whatever it tries: no
//! certificate, a certificate and HTTP, a tp hello without a certificate, a
//! refused certificate; ALPN `tp/1` is refused as any unknown ALPN id is.
//! A tp client that is not in stealth mode, or a stealth client against a name
//! that is not, fails with a message saying so.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tp_tests::bins::{Finished, run_tp};
use tp_tests::client::{self, ClientOptions, connect_hello};
use tp_tests::nginx::{self, Nginx};
use tp_tests::signal::{StandIn, tls_in_tls};
use tp_tests::target::EchoTarget;
use tp_tests::{Sshd, TestServer, TestServerBuilder, Transport, pki};

/// ALPN as a browser offers it, on the wire: `h2`, then `http/1.1`.
const BROWSER_ALPN_WIRE: &[u8] = b"\x02h2\x08http/1.1";

/// ALPN `tp/1` on the wire (length-prefixed: `http/1.1` holds the bare text).
const TP_ALPN_WIRE: &[u8] = b"\x04tp/1";

/// A server with stealth mode on for `localhost`, the name of its certificate.
fn stealth() -> TestServerBuilder {
    TestServer::builder().section("stealth", "names", "[\"localhost\"]")
}

/// `tp --config CONFIG 127.0.0.1 PORT` with `data` on stdin.
async fn tp_echo(config: &Path, target: &EchoTarget, data: &[u8]) -> Finished {
    let port = target.port().to_string();
    run_tp(config, ["127.0.0.1", port.as_str()], data).await
}

#[tokio::test]
async fn ssh_runs_through_a_stealth_tunnel() {
    let sshd = Sshd::start().await;
    let server = stealth().start().await;
    let config = server.stealth_client_config(&pki().alice);
    let out = sshd
        .ssh_through_tp(&config, "127.0.0.1", "echo hello-in-stealth")
        .await;
    assert_eq!(out.code(), 0, "ssh failed: {}", out.stderr);
    assert_eq!(out.stdout_text(), "hello-in-stealth\n");
    server
        .expect_log(&["tp::audit", "decision=\"allow\"", "id=alice@test"])
        .await;
}

/// A TCP relay in front of `server` that records what the client sends.
struct Observer {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Observer {
    async fn start(server: std::net::SocketAddr) -> Observer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let Ok(upstream) = TcpStream::connect(server).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut up_read, mut up_write) = upstream.into_split();
                    let up = async {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = client_read.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            record.lock().expect("lock").extend_from_slice(&buf[..n]);
                            if up_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = up_write.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut up_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Observer { port, seen }
    }

    fn seen(&self) -> Vec<u8> {
        self.seen.lock().expect("lock").clone()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_passive_observer_sees_a_browsers_alpn_and_no_tp() {
    let server = stealth().start().await;
    let target = EchoTarget::start().await;

    let observer = Observer::start(server.addr()).await;
    let config = tp_tests::bins::config_via(
        &server.stealth_client_config(&pki().alice),
        observer.port,
        "observed.toml",
    );
    let out = tp_echo(&config, &target, b"unseen").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"unseen");
    let seen = observer.seen();
    assert!(contains(&seen, BROWSER_ALPN_WIRE), "no browser ALPN list");
    assert!(!contains(&seen, TP_ALPN_WIRE), "ALPN tp/1 in the clear");
    assert!(!contains(&seen, b"alice"), "the identity in the clear");

    // The same observer catches an ordinary tp client: the check can fail.
    let plain_server = TestServer::start().await;
    let observer = Observer::start(plain_server.addr()).await;
    let config = tp_tests::bins::config_via(
        &plain_server.client_config_over(&pki().alice, Transport::Tcp),
        observer.port,
        "plain.toml",
    );
    let out = tp_echo(&config, &target, b"seen").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(contains(&observer.seen(), TP_ALPN_WIRE));
}

/// `curl HTTP_FLAG https://localhost:PORT/` (the test root as CA); its body.
async fn curl(server: &TestServer, http_flag: &str) -> String {
    let out = client::curl_localhost(server.dir(), server.addr().port(), &[http_flag]).await;
    assert_eq!(out.code(), 0, "curl {http_flag}: {out:?}");
    out.stdout_text()
}

#[tokio::test]
async fn browsers_get_nginx_over_http1_and_h2_while_a_stealth_tunnel_runs_beside() {
    let nginx = Nginx::start_website().await;
    let server = stealth().in_front_of(&nginx).start().await;
    let target = EchoTarget::start().await;
    let config = server.stealth_client_config(&pki().alice);

    let (http1, h2, tunnel) = tokio::join!(
        curl(&server, "--http1.1"),
        curl(&server, "--http2"),
        tp_echo(&config, &target, b"behind an h2 website"),
    );
    assert_eq!(http1, nginx::BODY);
    assert_eq!(h2, nginx::BODY);
    assert_eq!(tunnel.code(), 0, "{tunnel:?}");
    assert_eq!(tunnel.stdout, b"behind an h2 website");
    assert_eq!(target.accepted(), 1);
    // The website offers h2, so the stealth client got h2 like curl did.
    server
        .expect_log(&[
            "stealth: TLS established",
            "alpn=Some(\"h2\")",
            "id=alice@test",
        ])
        .await;
}

/// `openssl s_client` to the server with ALPN `alpn`, `-msg`, no certificate.
async fn s_client(server: &TestServer, alpn: &str) -> String {
    server
        .s_client(&["-servername", "localhost", "-alpn", alpn])
        .await
}

#[tokio::test]
async fn alpn_tp_is_refused_on_a_stealth_name_as_any_unknown_alpn_is() {
    let server = stealth().start().await;
    let unknown = s_client(&server, "spdy/1").await;
    let tp = s_client(&server, "tp/1").await;
    for (what, out) in [("spdy/1", &unknown), ("tp/1", &tp)] {
        assert!(
            out.contains("no application protocol"),
            "{what}: not refused with no_application_protocol: {out}"
        );
    }
    // A browser's ALPN completes, asked for an optional certificate that
    // names no CA.
    let browser = s_client(&server, "h2,http/1.1").await;
    assert!(browser.contains("Finished"), "{browser}");
    assert!(browser.contains("CertificateRequest"), "{browser}");
    assert!(
        browser.contains("No client certificate CA names sent"),
        "{browser}"
    );
    // An ordinary tp client cannot use the stealth name.
    let target = EchoTarget::start().await;
    let config = server.client_config_over(&pki().alice, Transport::Tcp);
    let out = tp_echo(&config, &target, b"x").await;
    assert_ne!(out.code(), 0, "{out:?}");
    assert!(out.stderr.contains("try --stealth"), "{out:?}");
    assert_eq!(target.accepted(), 0);
}

/// Sends `request` over TLS with `options`, returns what came back to EOF.
async fn exchange(server: &TestServer, options: &ClientOptions<'_>, request: &[u8]) -> String {
    let mut tls = client::connect(server.addr(), options)
        .await
        .expect("the stealth name's handshake");
    tls.write_all(request).await.expect("write");
    let mut back = Vec::new();
    let _ = tp_tests::within(
        "the answer",
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut back),
    )
    .await;
    String::from_utf8_lossy(&back).into_owned()
}

#[tokio::test]
async fn probers_get_the_website_whatever_they_send() {
    let server = stealth().start().await;
    let target = EchoTarget::start().await;
    let hello = connect_hello("127.0.0.1", target.port());
    let browser_alpn = vec![b"http/1.1".to_vec()];
    let get = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

    // A tp hello without a certificate: the web server's 400.
    let anonymous = ClientOptions {
        cert: None,
        alpn: browser_alpn.clone(),
    };
    let answer = exchange(&server, &anonymous, &hello).await;
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request"), "{answer:?}");

    // A valid certificate and a web request: the page.
    let with_cert = ClientOptions {
        cert: Some(&pki().alice),
        alpn: browser_alpn.clone(),
    };
    let answer = exchange(&server, &with_cert, get).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:?}");

    // Certificates the server refuses, then a tp hello: the 400 as well.
    for leaf in [&pki().expired, &pki().foreign, &pki().server_eku] {
        let refused = ClientOptions {
            cert: Some(leaf),
            alpn: browser_alpn.clone(),
        };
        let answer = exchange(&server, &refused, &hello).await;
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request"), "{answer:?}");
    }
    // A certificate from the server's CA that no longer passes is news; one
    // anybody can make (another CA) is not, so strangers cannot flood the log.
    let expired = server
        .expect_log(&["stealth: client certificate refused", "xpired"])
        .await;
    assert!(expired.contains(" INFO "), "{expired}");
    let stranger = server
        .expect_log(&["stealth: client certificate refused", "UnknownIssuer"])
        .await;
    assert!(stranger.contains(" DEBUG "), "{stranger}");
    assert_eq!(target.accepted(), 0, "nothing reached the target");

    // The same hello with a valid certificate is a tunnel: the checks above
    // can tell.
    let mut tls = client::connect(server.addr(), &with_cert)
        .await
        .expect("the stealth name's handshake");
    assert_eq!(client::send_hello(&mut tls, &hello).await.code(), "ok");
    let back = client::round_trip(&mut tls, b"tunnelled").await;
    assert_eq!(back, b"tunnelled");
    assert_eq!(target.accepted(), 1);
}

#[tokio::test]
async fn refused_stealth_clients_are_told_the_website_answered() {
    let server = stealth().revoked(&pki().revoked).start().await;
    let target = EchoTarget::start().await;
    for leaf in [&pki().expired, &pki().revoked] {
        let config = server.stealth_client_config(leaf);
        let out = tp_echo(&config, &target, b"x").await;
        assert_ne!(out.code(), 0, "{out:?}");
        assert!(out.stderr.contains("answered as a website"), "{out:?}");
    }
    assert_eq!(target.accepted(), 0);

    // A stealth client against a server without stealth mode for the name.
    let plain = TestServer::start().await;
    let out = tp_echo(&plain.stealth_client_config(&pki().alice), &target, b"x").await;
    assert_ne!(out.code(), 0, "{out:?}");
    assert!(out.stderr.contains("stealth mode is not on"), "{out:?}");
    assert_eq!(target.accepted(), 0);
}

#[tokio::test]
async fn the_signal_relay_still_works_on_a_stealth_name() {
    let stand_in = StandIn::start("chat.signal.org").await;
    let server = stealth()
        .raw(&format!(
            "[signal]\nenabled = true\nupstreams = {{ \"chat.signal.org\" = \"127.0.0.1:{}\" }}\n",
            stand_in.port
        ))
        .start()
        .await;
    let back = tls_in_tls(server.addr(), "chat.signal.org", b"through stealth")
        .await
        .expect("relayed");
    assert_eq!(back, b"through stealth");
}

#[tokio::test]
async fn a_lone_star_covers_connections_without_a_server_name() {
    let server = TestServer::builder()
        .section("stealth", "names", "[\"*\"]")
        .start()
        .await;
    let target = EchoTarget::start().await;
    // By address: rustls sends no SNI for an IP, and the server certificate
    // holds 127.0.0.1.
    let config = server.stealth_client_config(&pki().alice);
    let text = std::fs::read_to_string(&config).expect("config");
    let by_ip = config.with_file_name("by-ip.toml");
    std::fs::write(
        &by_ip,
        text.replace("server_name = \"localhost\"", "server_name = \"127.0.0.1\""),
    )
    .expect("config");
    let out = tp_echo(&by_ip, &target, b"no sni").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"no sni");

    // Without SNI, tp/1 is refused as on any stealth name.
    let all = server.s_client(&["-noservername", "-alpn", "tp/1"]).await;
    assert!(all.contains("no application protocol"), "{all}");
}

#[tokio::test]
async fn tls_1_2_visitors_get_the_plain_website_and_no_certificate_request() {
    let server = stealth().start().await;
    let args = |version| ["-servername", "localhost", "-alpn", "http/1.1", version];
    let tls12 = server.s_client(&args("-tls1_2")).await;
    assert!(tls12.contains("ServerHelloDone"), "{tls12}");
    assert!(
        !tls12.contains("CertificateRequest"),
        "in the clear: {tls12}"
    );
    // Over TLS 1.3 the request is there (encrypted): the check can tell.
    let tls13 = server.s_client(&args("-tls1_3")).await;
    assert!(tls13.contains("CertificateRequest"), "{tls13}");
}

#[tokio::test]
async fn a_stealth_tunnel_gives_back_its_place_among_website_connections() {
    let server = stealth()
        .section("website", "max_connections_per_source", "1")
        .start()
        .await;
    let target = EchoTarget::start().await;
    let with_cert = ClientOptions {
        cert: Some(&pki().alice),
        alpn: vec![b"http/1.1".to_vec()],
    };
    let mut tunnel = client::connect(server.addr(), &with_cert)
        .await
        .expect("the stealth name's handshake");
    let hello = connect_hello("127.0.0.1", target.port());
    assert_eq!(client::send_hello(&mut tunnel, &hello).await.code(), "ok");
    // The one website place is free again for a visitor.
    let page = client::browse(server.addr()).await;
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert_eq!(
        client::round_trip(&mut tunnel, b"still open").await,
        b"still open"
    );
}

#[tokio::test]
async fn a_resumed_session_is_verified_again_and_keeps_its_identity() {
    let server = stealth().start().await;
    let target = EchoTarget::start().await;
    let options = ClientOptions {
        cert: Some(&pki().alice),
        alpn: vec![b"http/1.1".to_vec()],
    };
    let mut config = client::tls_config(&options);
    config.resumption = rustls::client::Resumption::in_memory_sessions(8);
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    for round in 0..2 {
        let tcp = TcpStream::connect(server.addr()).await.expect("connect");
        let mut tls = connector
            .connect(name.clone(), tcp)
            .await
            .expect("handshake");
        let kind = tls.get_ref().1.handshake_kind();
        let expected = if round == 0 {
            rustls::HandshakeKind::Full
        } else {
            rustls::HandshakeKind::Resumed
        };
        assert_eq!(kind, Some(expected), "round {round}");
        let hello = connect_hello("127.0.0.1", target.port());
        assert_eq!(client::send_hello(&mut tls, &hello).await.code(), "ok");
        assert_eq!(client::round_trip(&mut tls, b"again").await, b"again");
    }
    let allowed = server.log_lines_with(&["tp::audit", "decision=\"allow\"", "id=alice@test"]);
    assert_eq!(allowed.len(), 2, "{allowed:#?}");
}
