//! The website on the tunnel's TCP port, seen from outside: `curl` over HTTP/1.1
//! and HTTP/2 reaches a real nginx behind unix sockets, which logs curl's own
//! address from the PROXY v2 header, while a `tp` client tunnels through the same
//! port; nobody without ALPN `tp/1` is asked for a certificate, and a `tp/1`
//! client without one gets no website; with no backend a built-in page answers;
//! `proxy_protocol = false` sends the raw request; garbage, a truncated
//! ClientHello and a silent client end within `handshake_timeout`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tp_tests::bins::run_tp;
use tp_tests::client::{self, ClientOptions};
use tp_tests::nginx::{self, Nginx};
use tp_tests::reverse::free_port;
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, TestServerBuilder, Transport, assert_eventually, pki};

/// What the built-in page's body always contains.
const WELCOME: &str = "<h1>Welcome</h1>";

/// The PROXY protocol v2 signature, the first 12 bytes of every v2 header.
const PROXY_V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The body [`RecordingBackend`] answers with.
const BACKEND_BODY: &str = "hello from the test backend\n";

/// The `handshake_timeout` of the hostile-input tests.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// What `curl` got.
#[derive(Debug)]
struct CurlOut {
    /// The port curl connected from (`--local-port`).
    port: u16,
    /// The response body.
    body: String,
    /// curl's `%{http_version}`: `1.1` or `2`.
    http_version: String,
    /// curl's `%{content_type}`.
    content_type: String,
}

/// Runs `curl HTTP_FLAG https://localhost:PORT/` against `server` (the test root
/// as CA, `localhost` resolved to 127.0.0.1) from a free local port; panics if
/// curl fails.
async fn curl(server: &TestServer, http_flag: &str) -> CurlOut {
    let port = free_port();
    let local_port = port.to_string();
    let args = [
        http_flag,
        "--local-port",
        &local_port,
        // After the body, on stderr: what was negotiated.
        "--write-out",
        "%{stderr}http_version=%{http_version}\ncontent_type=%{content_type}\n",
    ];
    let finished = client::curl_localhost(server.dir(), server.addr().port(), &args).await;
    assert_eq!(finished.code(), 0, "curl {http_flag} failed: {finished:?}");
    let field = |name: &str| {
        finished
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("curl wrote no {name}: {finished:?}"))
            .to_owned()
    };
    CurlOut {
        port,
        body: finished.stdout_text(),
        http_version: field("http_version"),
        content_type: field("content_type"),
    }
}

/// Waits for nginx to log a request from `127.0.0.1:port` over `protocol`.
async fn expect_nginx_logged(nginx: &Nginx, port: u16, protocol: &str) {
    let line = format!("127.0.0.1:{port} {protocol}");
    assert_eventually!(
        nginx.access_log().contains(&line),
        "nginx did not log {line:?}: {:?}",
        nginx.access_log()
    );
}

/// Runs a `tp` client through `server` over TLS/TCP to an echo target and
/// checks that the bytes come back.
async fn tp_round_trip(server: &TestServer, target: &EchoTarget) {
    let config = server.client_config_over(&pki().alice, Transport::Tcp);
    let port = target.port().to_string();
    let out = run_tp(
        &config,
        ["127.0.0.1", port.as_str()],
        b"tp beside the website",
    )
    .await;
    assert_eq!(out.code(), 0, "tp beside the website: {out:?}");
    assert_eq!(out.stdout, b"tp beside the website");
}

#[tokio::test]
async fn curl_reaches_nginx_over_http1_and_h2_with_its_own_address_beside_a_tp_client() {
    let nginx = Nginx::start_website().await;
    let server = TestServer::builder().in_front_of(&nginx).start().await;
    let target = EchoTarget::start().await;

    let (http1, h2, ()) = tokio::join!(
        curl(&server, "--http1.1"),
        curl(&server, "--http2"),
        tp_round_trip(&server, &target),
    );

    assert_eq!(http1.body, nginx::BODY, "{http1:?}");
    assert_eq!(http1.http_version, "1.1", "{http1:?}");
    assert_eq!(h2.body, nginx::BODY, "{h2:?}");
    assert_eq!(h2.http_version, "2", "{h2:?}");
    expect_nginx_logged(&nginx, http1.port, "HTTP/1.1").await;
    expect_nginx_logged(&nginx, h2.port, "HTTP/2.0").await;
    assert_eq!(
        target.accepted(),
        1,
        "the tp client's tunnel reached the target"
    );
    server
        .expect_log(&["tunnel closed", Transport::Tcp.log_field()])
        .await;
}

/// The handshake messages `openssl s_client -msg` saw, connecting to `server`
/// with ALPN `alpn` and no client certificate (stdin closed at once).
async fn s_client_messages(server: &TestServer, alpn: &str) -> String {
    server
        .s_client(&["-servername", "localhost", "-alpn", alpn])
        .await
}

#[tokio::test]
async fn a_client_not_offering_tp_is_never_asked_for_a_certificate() {
    let server = TestServer::start().await;

    let website = s_client_messages(&server, "http/1.1").await;
    assert!(
        website.contains("ServerHello") && website.contains("Finished"),
        "openssl s_client did not complete a handshake: {website}"
    );
    assert!(
        !website.contains("CertificateRequest"),
        "the website asked for a client certificate: {website}"
    );

    // The same probe sees the request when the client offers tp/1: the check
    // above can tell.
    let tunnel = s_client_messages(&server, "tp/1").await;
    assert!(
        tunnel.contains("CertificateRequest"),
        "a tp/1 ClientHello was not asked for a certificate: {tunnel}"
    );
}

/// `GET /` over `stream`, then everything up to EOF (or the error that ended it).
async fn get<S>(stream: &mut S) -> (Vec<u8>, Option<std::io::Error>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + ?Sized,
{
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if let Err(e) = stream.write_all(request).await {
        return (Vec::new(), Some(e));
    }
    if let Err(e) = stream.flush().await {
        return (Vec::new(), Some(e));
    }
    let mut back = Vec::new();
    let read = tp_tests::within("the answer to GET /", Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => return None,
                Ok(n) => back.extend_from_slice(&chunk[..n]),
                Err(e) => return Some(e),
            }
        }
    })
    .await;
    (back, read)
}

#[tokio::test]
async fn a_rustls_client_without_a_certificate_gets_the_built_in_page_over_http1() {
    let server = TestServer::start().await;
    let options = ClientOptions {
        cert: None,
        alpn: vec![b"http/1.1".to_vec()],
    };
    let mut tls = client::connect(server.addr(), &options)
        .await
        .expect("the website's handshake without a certificate");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (answer, error) = get(&mut tls).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200 OK\r\n"),
        "{answer:?} ({error:?})"
    );
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{answer:?}"
    );
    assert!(answer.contains(WELCOME), "{answer:?}");
}

/// A plain TCP website backend on `127.0.0.1:0`: records what each connection
/// sends up to the end of its request head, answers [`BACKEND_BODY`], closes.
struct RecordingBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl RecordingBackend {
    async fn start() -> RecordingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (count, record) = (accepted.clone(), received.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer(tcp, record.clone()));
            }
        });
        RecordingBackend {
            addr,
            accepted,
            received,
            task,
        }
    }

    /// `"127.0.0.1:PORT"`, as a TOML string.
    fn toml_addr(&self) -> String {
        format!("\"{}\"", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// What each answered connection sent, in order.
    fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().expect("not poisoned").clone()
    }
}

impl Drop for RecordingBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads up to the end of the HTTP/1.1 request head (behind a PROXY header, if
/// any: its signature starts with a blank line too), records it, answers.
async fn answer(mut tcp: TcpStream, record: Arc<Mutex<Vec<Vec<u8>>>>) {
    let mut head = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        while !request_head_complete(&head) && head.len() < 64 * 1024 {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        true
    };
    let complete = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or(false);
    record.lock().expect("not poisoned").push(head);
    if complete {
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BACKEND_BODY}",
            BACKEND_BODY.len()
        );
        let _ = tcp.write_all(response.as_bytes()).await;
        let _ = tcp.shutdown().await;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn request_head_complete(bytes: &[u8]) -> bool {
    find(bytes, b" HTTP/1.1\r\n").is_some_and(|at| find(&bytes[at..], b"\r\n\r\n").is_some())
}

#[tokio::test]
async fn a_tp_client_without_a_certificate_is_refused_and_reaches_no_backend() {
    let backend = RecordingBackend::start().await;
    let server = TestServer::builder()
        .section("website", "backend", &backend.toml_addr())
        .start()
        .await;

    // Offering tp/1 (and http/1.1 beside it) without a certificate.
    let options = ClientOptions {
        cert: None,
        alpn: vec![tp_proto::ALPN_TP_V1.to_vec(), b"http/1.1".to_vec()],
    };
    let (refused, error) = match client::connect(server.addr(), &options).await {
        // TLS 1.3: the client's side ends before the server checks its
        // certificate, so the refusal shows on the first read.
        Ok(mut tls) => get(&mut tls).await,
        Err(e) => (Vec::new(), Some(e)),
    };
    assert!(
        refused.is_empty(),
        "a tp/1 client without a certificate got an answer: {:?}",
        String::from_utf8_lossy(&refused)
    );
    let error = error.expect("the refusal is a TLS alert, not a clean end");
    assert!(
        error
            .to_string()
            .to_ascii_lowercase()
            .contains("certificate"),
        "the refusal is about the missing certificate: {error}"
    );

    // The backend works: a website client gets there, and is the only one.
    let mut website = client::connect(
        server.addr(),
        &ClientOptions {
            cert: None,
            alpn: vec![b"http/1.1".to_vec()],
        },
    )
    .await
    .expect("the website's handshake");
    let (answer, _) = get(&mut website).await;
    assert!(
        String::from_utf8_lossy(&answer).ends_with(BACKEND_BODY),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(
        backend.accepted(),
        1,
        "only the website client reached the backend: {:?}",
        backend.received()
    );
}

#[tokio::test]
async fn without_a_website_section_curl_gets_the_built_in_page_and_h2_is_not_offered() {
    let server = TestServer::start().await;

    let http1 = curl(&server, "--http1.1").await;
    assert_eq!(http1.http_version, "1.1", "{http1:?}");
    assert!(http1.content_type.starts_with("text/html"), "{http1:?}");
    assert!(http1.body.contains(WELCOME), "{http1:?}");

    let h2 = curl(&server, "--http2").await;
    assert_eq!(
        h2.http_version, "1.1",
        "h2 was negotiated without an h2_backend: {h2:?}"
    );
    assert!(h2.content_type.starts_with("text/html"), "{h2:?}");
    assert!(h2.body.contains(WELCOME), "{h2:?}");
}

#[tokio::test]
async fn a_tcp_backend_gets_a_proxy_v2_header_with_curls_address_first() {
    let backend = RecordingBackend::start().await;
    let server = TestServer::builder()
        .section("website", "backend", &backend.toml_addr())
        .start()
        .await;

    let out = curl(&server, "--http1.1").await;
    assert_eq!(out.body, BACKEND_BODY, "{out:?}");
    let received = backend.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let bytes = &received[0];
    assert!(
        bytes.starts_with(PROXY_V2_SIGNATURE),
        "no PROXY v2 header first: {:?}",
        String::from_utf8_lossy(bytes)
    );
    // Version 2, PROXY command; TCP over IPv4; 12 address bytes.
    assert_eq!(bytes[12..16], [0x21, 0x11, 0, 12], "{bytes:?}");
    let (src_ip, dst_ip) = (&bytes[16..20], &bytes[20..24]);
    let src_port = u16::from_be_bytes([bytes[24], bytes[25]]);
    let dst_port = u16::from_be_bytes([bytes[26], bytes[27]]);
    assert_eq!(src_ip, [127, 0, 0, 1]);
    assert_eq!(src_port, out.port, "the source is curl's address");
    assert_eq!(dst_ip, [127, 0, 0, 1]);
    assert_eq!(
        dst_port,
        server.addr().port(),
        "the destination is the server's"
    );
    assert!(
        bytes[28..].starts_with(b"GET / HTTP/1.1\r\n"),
        "the request follows the header: {:?}",
        String::from_utf8_lossy(&bytes[28..])
    );
}

#[tokio::test]
async fn proxy_protocol_false_sends_the_raw_request_first() {
    let backend = RecordingBackend::start().await;
    let server = TestServer::builder()
        .section("website", "backend", &backend.toml_addr())
        .section("website", "proxy_protocol", "false")
        .start()
        .await;

    let out = curl(&server, "--http1.1").await;
    assert_eq!(out.body, BACKEND_BODY, "{out:?}");
    let received = backend.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let bytes = &received[0];
    assert!(
        bytes.starts_with(b"GET / HTTP/1.1\r\n"),
        "not the raw request first: {:?}",
        String::from_utf8_lossy(bytes)
    );
    assert_eq!(find(bytes, b"QUIT\n"), None, "a PROXY header: {bytes:?}");
}

/// A server with the built-in page and a 1 s `handshake_timeout`.
fn impatient_server() -> TestServerBuilder {
    TestServer::builder().limit("handshake_timeout", "1s")
}

/// Sends `bytes` (maybe none) on a fresh connection to `server`, then waits for
/// the server to end it: within the handshake timeout and some slack.
async fn assert_ended_in_time(server: &TestServer, bytes: &[u8]) {
    let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
    tcp.write_all(bytes).await.expect("write");
    let started = Instant::now();
    let limit = HANDSHAKE_TIMEOUT + Duration::from_secs(2);
    let ended = tokio::time::timeout(limit, async {
        let mut sink = [0u8; 1024];
        // An alert may come first; then EOF or a reset.
        while let Ok(n) = tcp.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the connection was still open after {:?}",
        started.elapsed()
    );
}

/// After hostile input, the site still answers.
async fn assert_still_serving(server: &TestServer) {
    let out = curl(server, "--http1.1").await;
    assert!(out.body.contains(WELCOME), "{out:?}");
}

#[tokio::test]
async fn garbage_on_the_port_ends_in_time_and_the_site_still_answers() {
    let server = impatient_server().start().await;
    let garbage = tp_tests::data::random_bytes(7, 2048);
    assert_ended_in_time(&server, &garbage).await;
    assert_ended_in_time(&server, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_still_serving(&server).await;
}

/// The first half of a real ClientHello (rustls's, offering http/1.1).
fn truncated_client_hello() -> Vec<u8> {
    let config = client::tls_config(&ClientOptions {
        cert: None,
        alpn: vec![b"http/1.1".to_vec()],
    });
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("valid name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("the ClientHello");
    assert_eq!(hello[0], 0x16, "a handshake record");
    hello.truncate(hello.len() / 2);
    hello
}

/// A client that sends `bytes` and then waits is closed by the handshake
/// timeout (not sooner, not later), and the site still answers others.
async fn assert_cut_by_the_handshake_timeout(bytes: &[u8]) {
    let server = impatient_server().start().await;
    let started = Instant::now();
    assert_ended_in_time(&server, bytes).await;
    assert!(
        started.elapsed() >= HANDSHAKE_TIMEOUT - Duration::from_millis(100),
        "ended by the handshake timeout, not sooner: {:?}",
        started.elapsed()
    );
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn a_truncated_client_hello_ends_in_time_and_the_site_still_answers() {
    assert_cut_by_the_handshake_timeout(&truncated_client_hello()).await;
}

#[tokio::test]
async fn a_silent_client_ends_in_time_and_the_site_still_answers() {
    assert_cut_by_the_handshake_timeout(b"").await;
}

/// Strangers cannot hold the connection slots tp clients need: one source may
/// keep at most `max_connections_per_source` website connections open; the
/// next is closed right after its handshake, while a tp client still gets in.
#[tokio::test]
async fn website_connections_are_bounded_per_source() {
    let server = TestServer::builder()
        .section("website", "max_connections_per_source", "2")
        .start()
        .await;
    let options = ClientOptions {
        cert: None,
        alpn: vec![b"http/1.1".to_vec()],
    };
    // Two idle website connections (handshake done, no request yet), counted
    // by the server (it counts a connection once it has the client's
    // Finished, which may be after the client is done).
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            client::connect(server.addr(), &options)
                .await
                .expect("handshake"),
        );
    }
    assert_eventually!(
        server.log_lines_with(&["website connection"]).len() == 2,
        "the server never counted the two website connections"
    );
    let mut third = client::connect(server.addr(), &options)
        .await
        .expect("handshake");
    let _ = third
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the third connection was not closed");
    assert!(got.is_empty(), "the third got an answer: {got:?}");

    // A tp client is not a website connection.
    let target = EchoTarget::start().await;
    tp_round_trip(&server, &target).await;

    // Once one closes, a new one is served.
    drop(held.pop());
    let mut fourth = assert_eventually_served(&server, &options).await;
    let _ = fourth.shutdown().await;
}

/// A website connection that gets the built-in page, retried briefly while the
/// server notices a closed one.
async fn assert_eventually_served(
    server: &TestServer,
    options: &ClientOptions<'_>,
) -> tp_tests::client::TlsClient {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut tls = client::connect(server.addr(), options)
            .await
            .expect("handshake");
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), tls.read_to_end(&mut got)).await;
        if got.starts_with(b"HTTP/1.1 200 OK") {
            return tls;
        }
        assert!(
            Instant::now() < deadline,
            "no website connection served again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
