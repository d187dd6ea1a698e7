//! Hostile hellos over a verified connection (TLS/TCP, or a QUIC stream): each gets
//! a clear error answer and the tunnel ends; a silent client is timed out; and the
//! server keeps serving. Payload sent right behind the hello arrives at the target.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tp_tests::client::{
    Reply, connect_as, connect_as_over, connect_hello, open_tunnel_over, read_reply, round_trip,
    send_hello,
};
use tp_tests::server::ONLY_BOB_POLICY;
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, Transport, pki, within};

/// Reads what is left on `tunnel` after an error answer: the server must end the
/// tunnel, and send nothing more.
async fn expect_end<S: AsyncRead + Unpin + ?Sized>(tunnel: &mut S) {
    let mut rest = Vec::new();
    // A clean close_notify (QUIC: FIN) is expected, but the point is that it ends,
    // with nothing.
    let _ = within(
        "the end of the tunnel",
        Duration::from_secs(5),
        tunnel.read_to_end(&mut rest),
    )
    .await;
    assert!(rest.is_empty(), "bytes after the error answer: {rest:?}");
}

/// Sends `bytes` on a fresh tunnel over `transport` as alice; expects `code` and a
/// message containing `needle`; expects the tunnel to end after it.
async fn expect_answer(
    server: &TestServer,
    transport: Transport,
    bytes: &[u8],
    code: &str,
    needle: &str,
) -> String {
    let mut tunnel = connect_as_over(transport, server.addr(), &pki().alice).await;
    let reply = send_hello(&mut tunnel, bytes).await;
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
    assert_eq!(
        reply.code(),
        code,
        "{transport:?} hello {shown:?}: {reply:?}"
    );
    let message = reply.message();
    assert!(
        message.contains(needle),
        "{transport:?} hello {shown:?}: message {message:?} does not contain {needle:?}"
    );
    assert_eq!(
        reply.answer()["v"],
        1,
        "answers carry the version: {reply:?}"
    );
    expect_end(&mut tunnel).await;
    message
}

async fn hostile_hellos_get_error_answers_and_the_server_keeps_serving(transport: Transport) {
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let port = target.port();

    // Over-long: 9000 bytes without a newline.
    let long = vec![b'x'; 9000];
    expect_answer(
        &server,
        transport,
        &long,
        "bad_request",
        "exceeds 8192 bytes",
    )
    .await;
    // One byte over the bound, with a newline after it: still too long.
    let mut over = connect_hello("127.0.0.1", port);
    over.pop();
    over.resize(8192, b' ');
    over.push(b'\n');
    expect_answer(
        &server,
        transport,
        &over,
        "bad_request",
        "exceeds 8192 bytes",
    )
    .await;

    expect_answer(
        &server,
        transport,
        b"{\"v\":1,\"op\":\"connect\",\"host\":\"\xff\xfe\",\"port\":22}\n",
        "bad_request",
        "UTF-8",
    )
    .await;
    expect_answer(
        &server,
        transport,
        b"\n",
        "bad_request",
        "not a JSON object",
    )
    .await;
    expect_answer(
        &server,
        transport,
        b"GET / HTTP/1.1\r\n",
        "bad_request",
        "not a JSON object",
    )
    .await;
    expect_answer(
        &server,
        transport,
        b"[1,2,3]\n",
        "bad_request",
        "not a JSON object",
    )
    .await;
    expect_answer(
        &server,
        transport,
        b"{\"op\":\"connect\"}\n",
        "bad_request",
        "\"v\"",
    )
    .await;
    expect_answer(&server, transport, b"{\"v\":1}\n", "bad_request", "\"op\"").await;
    expect_answer(
        &server,
        transport,
        b"{\"v\":1,\"op\":\"teleport\",\"host\":\"127.0.0.1\",\"port\":22}\n",
        "unsupported",
        "teleport",
    )
    .await;
    expect_answer(
        &server,
        transport,
        b"{\"v\":2,\"op\":\"connect\",\"host\":\"127.0.0.1\",\"port\":22}\n",
        "unsupported_version",
        "version 2",
    )
    .await;
    expect_answer(
        &server,
        transport,
        b"{\"v\":\"1\",\"op\":\"connect\",\"host\":\"127.0.0.1\",\"port\":22}\n",
        "bad_request",
        "\"v\"",
    )
    .await;
    let port_as_string =
        format!("{{\"v\":1,\"op\":\"connect\",\"host\":\"127.0.0.1\",\"port\":\"{port}\"}}\n");
    expect_answer(
        &server,
        transport,
        port_as_string.as_bytes(),
        "bad_request",
        "expected u16",
    )
    .await;
    expect_answer(
        &server,
        transport,
        b"{\"v\":1,\"op\":\"connect\",\"host\":22,\"port\":22}\n",
        "bad_request",
        "expected a string",
    )
    .await;
    expect_answer(
        &server,
        transport,
        b"{\"v\":1,\"op\":\"connect\",\"host\":\"127.0.0.1\",\"port\":0}\n",
        "bad_request",
        "between 1 and 65535",
    )
    .await;
    expect_answer(
        &server,
        transport,
        b"{\"v\":1,\"op\":\"connect\",\"host\":\"127.0.0.1\",\"port\":70000}\n",
        "bad_request",
        "70000",
    )
    .await;
    expect_answer(
        &server,
        transport,
        b"{\"v\":1,\"op\":\"connect\",\"host\":\"127.0.0.1\",\"port\":-1}\n",
        "bad_request",
        "-1",
    )
    .await;
    expect_answer(
        &server,
        transport,
        b"{\"v\":1,\"op\":\"connect\",\"host\":\"127.0.0.1\"}\n",
        "bad_request",
        "port",
    )
    .await;
    expect_answer(
        &server,
        transport,
        b"{\"v\":1,\"op\":\"connect\",\"host\":\"evil host\",\"port\":22}\n",
        "bad_request",
        "invalid character",
    )
    .await;
    expect_answer(
        &server,
        transport,
        b"{\"v\":1,\"op\":\"connect\",\"host\":\"127.0.0.1\",\"port\":22,\"x\":1}\n",
        "bad_request",
        "unknown field",
    )
    .await;
    // UDP is decided by policy like TCP: this one allows tcp only.
    expect_answer(
        &server,
        transport,
        format!("{{\"v\":1,\"op\":\"connect\",\"proto\":\"udp\",\"host\":\"127.0.0.1\",\"port\":{port}}}\n").as_bytes(),
        "denied",
        "udp",
    )
    .await;
    // Reverse tunnels are decided by policy too: this one grants no `listen`.
    expect_answer(
        &server,
        transport,
        b"{\"v\":1,\"op\":\"listen\",\"name\":\"laptop\"}\n",
        "denied",
        "listen on service laptop",
    )
    .await;
    assert_eq!(target.accepted(), 0, "no hostile hello reached the target");

    // Every bad hello was logged, none crashed anything: the same server still
    // tunnels, and a hello of exactly the bound (8192 bytes with its newline) is fine.
    let mut tunnel =
        open_tunnel_over(transport, server.addr(), &pki().alice, "127.0.0.1", port).await;
    assert_eq!(
        round_trip(&mut tunnel, b"still serving").await,
        b"still serving"
    );

    let mut exact = connect_hello("127.0.0.1", port);
    exact.pop();
    exact.resize(8191, b' ');
    exact.push(b'\n');
    assert_eq!(exact.len(), tp_proto::MAX_LINE_LEN);
    let mut tunnel = connect_as_over(transport, server.addr(), &pki().alice).await;
    let reply = send_hello(&mut tunnel, &exact).await;
    assert_eq!(reply.code(), "ok", "a hello of exactly 8 KiB: {reply:?}");
    target.expect_accepted(2).await;

    let bad = server.log_lines_with(&["bad hello", transport.log_field()]);
    assert!(bad.len() >= 15, "each bad hello is logged: {bad:#?}");
    assert!(
        server.log_lines_with(&["panic"]).is_empty(),
        "{:#?}",
        server.logs()
    );
}

/// A server whose `hello_timeout` is 1s.
async fn hello_timeout_server() -> TestServer {
    TestServer::builder()
        .limit("hello_timeout", "1s")
        .start()
        .await
}

async fn half_a_hello_then_silence_gets_a_timeout_answer(transport: Transport) {
    let server = hello_timeout_server().await;
    let target = EchoTarget::start().await;

    let mut tunnel = connect_as_over(transport, server.addr(), &pki().alice).await;
    let started = Instant::now();
    tunnel
        .write_all(b"{\"v\":1,\"op\":\"connect\"")
        .await
        .expect("write");
    let reply = within(
        "the timeout answer",
        Duration::from_secs(3),
        read_reply(&mut tunnel),
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(reply.code(), "timeout", "{reply:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2_500),
        "answered after {waited:?}, hello_timeout is 1s"
    );
    expect_end(&mut tunnel).await;
    server
        .expect_log(&["hello timed out", "id=alice@test", transport.log_field()])
        .await;
    assert_eq!(target.accepted(), 0);
}

/// TCP only: not a byte after the TLS handshake. Over QUIC the server cannot see
/// a stream the client opened but never wrote to; its `hello_timeout` runs from
/// the stream's first byte (docs/protocol.md), as in the test above.
#[tokio::test]
async fn nothing_after_the_tls_handshake_gets_a_timeout_answer() {
    let server = hello_timeout_server().await;
    let target = EchoTarget::start().await;
    let mut tls = connect_as(server.addr(), &pki().alice).await;
    let reply = within(
        "the timeout answer",
        Duration::from_secs(3),
        read_reply(&mut tls),
    )
    .await;
    assert_eq!(reply.code(), "timeout", "{reply:?}");
    expect_end(&mut tls).await;
    server
        .expect_log(&["hello timed out", "id=alice@test"])
        .await;
    assert_eq!(target.accepted(), 0);
}

/// TCP only: a client that connects and sends not a byte of TLS. Over UDP, silence
/// opens no QUIC connection at all, so there is nothing to time out.
#[tokio::test]
async fn silent_tcp_client_is_closed_at_the_handshake_deadline() {
    let server = TestServer::builder()
        .limit("handshake_timeout", "1s")
        .start()
        .await;
    let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
    let peer = tcp.local_addr().expect("local_addr");
    let started = Instant::now();
    let mut buf = Vec::new();
    // Not a byte of TLS from us: the server gives up and closes.
    let _ = within(
        "the server closing",
        Duration::from_secs(3),
        tcp.read_to_end(&mut buf),
    )
    .await;
    let waited = started.elapsed();
    assert!(buf.is_empty(), "{buf:?}");
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}, before the 1s deadline"
    );
    server
        .expect_log(&[&format!("peer={peer}"), "TLS handshake refused: timed out"])
        .await;
}

async fn early_payload_behind_the_hello_reaches_the_target(transport: Transport) {
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let mut tunnel = connect_as_over(transport, server.addr(), &pki().alice).await;
    let mut bytes = connect_hello("127.0.0.1", target.port());
    bytes.extend_from_slice(b"early payload, same write");
    // One write: the hello and the payload travel in the same TLS record (QUIC:
    // the same STREAM frame).
    let reply = send_hello(&mut tunnel, &bytes).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");
    let back = round_trip(&mut tunnel, b" + later bytes").await;
    assert_eq!(
        String::from_utf8_lossy(&back),
        "early payload, same write + later bytes"
    );
    let closed = server
        .expect_log(&["tunnel closed", "bytes.up=39", transport.log_field()])
        .await;
    assert!(closed.contains("bytes.down=39"), "{closed}");
}

async fn early_payload_of_a_denied_hello_goes_nowhere(transport: Transport) {
    let server = TestServer::builder().policy(ONLY_BOB_POLICY).start().await;
    let target = EchoTarget::start().await;
    let mut tunnel = connect_as_over(transport, server.addr(), &pki().alice).await;
    let mut bytes = connect_hello("127.0.0.1", target.port());
    bytes.extend_from_slice(b"must be discarded");
    let reply = send_hello(&mut tunnel, &bytes).await;
    assert_eq!(reply.code(), "denied", "{reply:?}");
    assert!(matches!(reply, Reply::Answer(_)));
    expect_end(&mut tunnel).await;
    assert_eq!(target.accepted(), 0);
}

tp_tests::over_both_transports!(
    hostile_hellos_get_error_answers_and_the_server_keeps_serving,
    half_a_hello_then_silence_gets_a_timeout_answer,
    early_payload_behind_the_hello_reaches_the_target,
    early_payload_of_a_denied_hello_goes_nowhere,
);
