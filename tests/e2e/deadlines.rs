//! Total deadlines, not per-read timeouts: a client that sends one byte every
//! 300 ms (far more often than any timeout here) is still cut when
//! `handshake_timeout` (1 s) has passed since it connected, whether it trickles its
//! ClientHello or its second flight (TLS/TCP), and when `hello_timeout` (1 s) has
//! passed since its hello started (both transports). A per-read timeout would
//! keep each of them alive for as long as it kept trickling.

use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, split};
use tokio::net::TcpStream;
use tp_tests::client::{self, ClientOptions, connect_as_over, connect_hello, read_reply};
use tp_tests::target::EchoTarget;
use tp_tests::trickle::{Head, Trickle, Trickled};
use tp_tests::{TestServer, Transport, pki, within};

/// One byte every `GAP`: well under the 1 s deadlines.
const GAP: Duration = Duration::from_millis(300);

/// The deadlines under test.
const DEADLINE: &str = "1s";

/// What "cut at the 1 s deadline" allows: not before it, and not long after it
/// (scheduling on a loaded machine, never another 300 ms byte).
fn assert_cut_at_the_deadline(what: &str, held: Duration) {
    assert!(
        held >= Duration::from_millis(800) && held <= Duration::from_secs(3),
        "{what} was cut after {held:?}; the deadline is {DEADLINE}"
    );
}

/// Runs a client handshake through a [`Trickle`] relay passing `head` at once,
/// and returns how the server ended it.
async fn trickled_handshake(server: &TestServer, head: Head) -> Trickled {
    let mut relay = Trickle::start(server.addr(), GAP, head).await;
    let addr = relay.addr();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.expect("connect the relay");
        // With TLS 1.3 the client is done after its second flight, so this may
        // succeed; what counts is the server's side.
        if let Ok(mut tls) = client::handshake(tcp, &ClientOptions::with(&pki().alice)).await {
            let _ = read_reply(&mut tls).await;
        }
    });
    let trickled = relay.closed().await;
    client.abort();
    trickled
}

/// A server with both deadlines at 1 s.
async fn server() -> TestServer {
    TestServer::builder()
        .limit("handshake_timeout", DEADLINE)
        .limit("hello_timeout", DEADLINE)
        .start()
        .await
}

#[tokio::test]
async fn a_trickled_client_hello_is_cut_at_the_handshake_deadline() {
    let server = server().await;
    let trickled = trickled_handshake(&server, Head::Nothing).await;
    assert_cut_at_the_deadline("the trickled ClientHello", trickled.held);
    // Bytes kept arriving until the end: a per-read timeout would have waited on.
    assert!(trickled.passed >= 3, "{trickled:?}");
    server
        .expect_log(&[
            "TLS handshake refused: timed out",
            &format!("peer={}", trickled.peer),
        ])
        .await;
}

#[tokio::test]
async fn a_trickled_second_flight_is_cut_at_the_handshake_deadline() {
    let server = server().await;
    let trickled = trickled_handshake(&server, Head::FirstRecord).await;
    assert_cut_at_the_deadline("the trickled client certificate", trickled.held);
    assert!(trickled.head > 0, "{trickled:?}");
    assert!(trickled.passed >= trickled.head + 3, "{trickled:?}");
    server
        .expect_log(&[
            "TLS handshake refused: timed out",
            &format!("peer={}", trickled.peer),
        ])
        .await;
}

/// The hello arrives a byte every 300 ms: it would be complete after about 15 s,
/// and is answered `timeout` 1 s after its first byte.
async fn a_trickled_hello_is_cut_at_the_hello_deadline(transport: Transport) {
    let server = server().await;
    let target = EchoTarget::start().await;
    let tunnel = connect_as_over(transport, server.addr(), &pki().alice).await;
    let (mut r, mut w) = split(tunnel);
    let hello = connect_hello("127.0.0.1", target.port());
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for byte in hello {
            if w.write_all(&[byte]).await.is_err() || w.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(GAP).await;
        }
    });
    let reply = within("the answer", Duration::from_secs(20), read_reply(&mut r)).await;
    let held = started.elapsed();
    trickle.abort();
    assert_eq!(reply.code(), "timeout", "{transport:?}: {reply:?}");
    assert_cut_at_the_deadline("the trickled hello", held);
    server
        .expect_log(&["hello timed out", "id=alice@test", transport.log_field()])
        .await;
    assert_eq!(target.accepted(), 0);
}

tp_tests::over_both_transports!(a_trickled_hello_is_cut_at_the_hello_deadline);
