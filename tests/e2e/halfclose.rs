//! Half-close through a tunnel: one side's shutdown of its write side reaches the
//! other end as EOF after exactly the bytes sent, and the other direction keeps
//! flowing until it is shut down too. Checked with the raw client over both
//! transports (TLS `close_notify`, QUIC FIN), the `tp` stdio bridge and `tp up`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tp_tests::bins::{TpUp, run_tp, tp};
use tp_tests::client::open_tunnel_over;
use tp_tests::data::{random_bytes, sha256_hex};
use tp_tests::{TestServer, Transport, pki, within};

const MIB: usize = 1024 * 1024;
const REQUEST: &[u8] = b"request bytes, then EOF";

/// A target for one connection that reads to EOF first (reporting what it read),
/// then answers `reply` and shuts its write side.
async fn read_then_answer(reply: Vec<u8>) -> (u16, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local_addr").port();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.expect("target read");
        // Only after EOF does the target answer: the other direction must still flow.
        let _ = tx.send(got);
        tcp.write_all(&reply).await.expect("target write");
        tcp.shutdown().await.expect("target shutdown");
    });
    (port, rx)
}

/// A target for one connection that sends `first` and shuts its write side at once,
/// then reads to EOF and reports what it read.
async fn answer_then_read(first: Vec<u8>) -> (u16, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local_addr").port();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        tcp.write_all(&first).await.expect("target write");
        tcp.shutdown().await.expect("target shutdown");
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.expect("target read");
        let _ = tx.send(got);
    });
    (port, rx)
}

async fn reported(rx: oneshot::Receiver<Vec<u8>>) -> Vec<u8> {
    within("the target's EOF", Duration::from_secs(20), rx)
        .await
        .expect("the target task reports")
}

fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(
        (got.len(), sha256_hex(got)),
        (want.len(), sha256_hex(want)),
        "{what}: length and checksum"
    );
}

async fn client_closes_first_raw(transport: Transport) {
    let server = TestServer::start().await;
    let reply = random_bytes(1, MIB);
    let (port, seen) = read_then_answer(reply.clone()).await;
    let mut tunnel =
        open_tunnel_over(transport, server.addr(), &pki().alice, "127.0.0.1", port).await;
    tunnel.write_all(REQUEST).await.expect("write");
    // Our write side only: close_notify then TCP FIN, or the QUIC stream's FIN.
    tunnel.shutdown().await.expect("shutdown");
    assert_eq!(
        reported(seen).await,
        REQUEST,
        "the target sees EOF right after the request"
    );
    let mut back = Vec::new();
    within(
        "the 1 MiB reply",
        Duration::from_secs(20),
        tunnel.read_to_end(&mut back),
    )
    .await
    .expect("reading the reply to EOF");
    assert_same("reply after the client's EOF", &back, &reply);
    let closed = server
        .expect_log(&["tunnel closed", "bytes.down=1048576", transport.log_field()])
        .await;
    assert!(
        closed.contains(&format!("bytes.up={}", REQUEST.len())),
        "{closed}"
    );
}

async fn target_closes_first_raw(transport: Transport) {
    let server = TestServer::start().await;
    let greeting = random_bytes(2, MIB);
    let (port, seen) = answer_then_read(greeting.clone()).await;
    let mut tunnel =
        open_tunnel_over(transport, server.addr(), &pki().alice, "127.0.0.1", port).await;
    let mut got = Vec::new();
    within(
        "the target's bytes and EOF",
        Duration::from_secs(20),
        tunnel.read_to_end(&mut got),
    )
    .await
    .expect("reading to EOF (close_notify or FIN)");
    assert_same("target's bytes before its EOF", &got, &greeting);
    // The target has shut its write side; ours still works, and everything arrives.
    let upload = random_bytes(3, MIB);
    tunnel
        .write_all(&upload)
        .await
        .expect("write after the server's EOF");
    tunnel.shutdown().await.expect("shutdown");
    assert_same(
        "client's bytes after the target's EOF",
        &reported(seen).await,
        &upload,
    );
}

tp_tests::over_both_transports!(
    client_closes_first_raw,
    target_closes_first_raw,
    a_failed_target_is_a_failure_for_the_client,
);

#[tokio::test]
async fn client_closes_first_tp_stdio() {
    let server = TestServer::start().await;
    let config = server.client_config_for(&pki().alice);
    let reply = random_bytes(4, MIB);
    let (port, seen) = read_then_answer(reply.clone()).await;
    let port = port.to_string();
    // run_tp writes REQUEST to tp's stdin and closes it.
    let out = run_tp(&config, ["127.0.0.1", port.as_str()], REQUEST).await;
    assert_eq!(out.code(), 0, "tp: {}", out.stderr);
    assert_eq!(
        reported(seen).await,
        REQUEST,
        "stdin EOF reaches the target as EOF"
    );
    assert_same("tp's stdout", &out.stdout, &reply);
    assert!(
        out.stderr.is_empty(),
        "tp is quiet by default: {}",
        out.stderr
    );
}

#[tokio::test]
async fn target_closes_first_tp_stdio_exits_without_waiting_for_stdin() {
    let server = TestServer::start().await;
    let config = server.client_config_for(&pki().alice);
    let greeting = random_bytes(5, MIB);
    let (port, seen) = answer_then_read(greeting.clone()).await;
    let mut cmd = tp(&config);
    cmd.arg("127.0.0.1")
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("starting tp");
    // Keep stdin open: tp must exit on the tunnel's EOF all the same (docs/client.md).
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"sent before the end")
        .await
        .expect("stdin");
    stdin.flush().await.expect("flush");
    let out = within(
        "tp exiting at the tunnel's EOF",
        Duration::from_secs(20),
        child.wait_with_output(),
    )
    .await
    .expect("tp output");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same("tp's stdout", &out.stdout, &greeting);
    drop(stdin);
    // What tp read before the end may or may not have been sent; it is a prefix.
    let got = reported(seen).await;
    assert!(b"sent before the end".starts_with(&got), "{got:?}");
}

/// When the target ends the tunnel and `tp` exits on that EOF, `tp` still closes its
/// side with close_notify: the server logs a clean close, not a client failure.
#[tokio::test]
async fn tp_stdio_closes_cleanly_when_the_target_closes_first() {
    let server = TestServer::start().await;
    let config = server.client_config_for(&pki().alice);
    let (port, seen) = answer_then_read(b"bye".to_vec()).await;
    let mut cmd = tp(&config);
    cmd.arg("127.0.0.1")
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("starting tp");
    // stdin stays open (as ssh keeps it) until tp has exited.
    let stdin = child.stdin.take().expect("stdin");
    let out = within(
        "tp exiting",
        Duration::from_secs(20),
        child.wait_with_output(),
    )
    .await
    .expect("tp output");
    drop(stdin);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"bye");
    assert_eq!(reported(seen).await, b"");
    let closed = server.expect_log(&["tunnel closed"]).await;
    assert!(
        !closed.contains("failed"),
        "tp left without close_notify; the server logs a failure:\n{closed}"
    );
}

#[tokio::test]
async fn half_close_both_ways_through_tp_up() {
    let server = TestServer::start().await;
    let config = server.client_config_for(&pki().alice);

    // The local client closes first.
    let reply = random_bytes(6, MIB);
    let (port, seen) = read_then_answer(reply.clone()).await;
    let up = TpUp::start(&config, &format!("127.0.0.1:{port}")).await;
    let mut local = TcpStream::connect(("127.0.0.1", up.port()))
        .await
        .expect("connect");
    local.write_all(REQUEST).await.expect("write");
    local.shutdown().await.expect("FIN");
    assert_eq!(reported(seen).await, REQUEST);
    let mut back = Vec::new();
    within(
        "the reply through tp up",
        Duration::from_secs(20),
        local.read_to_end(&mut back),
    )
    .await
    .expect("read");
    assert_same("reply through tp up", &back, &reply);
    drop(up);

    // The target closes first.
    let greeting = random_bytes(7, MIB);
    let (port, seen) = answer_then_read(greeting.clone()).await;
    let up = TpUp::start(&config, &format!("127.0.0.1:{port}")).await;
    let mut local = TcpStream::connect(("127.0.0.1", up.port()))
        .await
        .expect("connect");
    let mut got = Vec::new();
    within(
        "the target's bytes through tp up",
        Duration::from_secs(20),
        local.read_to_end(&mut got),
    )
    .await
    .expect("read");
    assert_same("target's bytes through tp up", &got, &greeting);
    let upload = random_bytes(8, MIB);
    local.write_all(&upload).await.expect("write after EOF");
    local.shutdown().await.expect("FIN");
    assert_same(
        "upload after the target's EOF",
        &reported(seen).await,
        &upload,
    );
    assert_eq!(
        up.terminate().await.code(),
        Some(0),
        "tp up exits 0 on SIGTERM"
    );
}

/// A target that fails (RST) after some bytes: the client must see a failure,
/// never a clean end that makes the truncated data look complete. Over QUIC the
/// server resets the stream; over TLS it closes without `close_notify`.
async fn a_failed_target_is_a_failure_for_the_client(transport: Transport) {
    let server = TestServer::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        tcp.write_all(&[7u8; 16]).await.expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .expect("linger 0");
        drop(tcp); // RST
    });
    let mut tunnel = tp_tests::client::open_tunnel_over(
        transport,
        server.addr(),
        &pki().alice,
        "127.0.0.1",
        port,
    )
    .await;
    let mut got = Vec::new();
    let end = within(
        "the tunnel's end",
        Duration::from_secs(10),
        tunnel.read_to_end(&mut got),
    )
    .await;
    assert!(
        end.is_err(),
        "the tunnel ended cleanly after {} bytes though the target failed",
        got.len()
    );
    assert!(got.len() <= 16);
    server
        .expect_log(&["tunnel closed: target failed", transport.log_field()])
        .await;
}
