//! Roaming: a QUIC client whose address changes (its UDP socket rebound, as when
//! wifi changes) keeps its open tunnels, between echo rounds and in the middle of
//! a transfer both ways. The server accepts the new path (QUIC connection
//! migration); nothing is reopened and no byte is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tp_server::pki::Issued;
use tp_tests::data::{Prng, Sha256, Summary, random_bytes};
use tp_tests::quic;
use tp_tests::target::{EchoTarget, ExchangeTarget, exchange_header};
use tp_tests::{TestServer, assert_eventually, pki, within};

async fn open_quic_tunnel(server: &TestServer, leaf: &Issued, port: u16) -> quic::QuicClient {
    quic::open_tunnel(server.addr(), leaf, port).await
}

/// Moves `endpoint` to a fresh UDP socket on 127.0.0.1: a new source port.
fn roam(endpoint: &quinn::Endpoint) {
    let before = endpoint.local_addr().expect("addr");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("new socket");
    endpoint.rebind(socket).expect("rebind");
    let after = endpoint.local_addr().expect("addr");
    assert_ne!(before, after);
}

#[tokio::test]
async fn a_tunnel_survives_the_client_changing_address() {
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let mut client = open_quic_tunnel(&server, &pki().alice, target.port()).await;

    let chunk = random_bytes(9, 256 * 1024);
    let mut sent = Vec::new();
    let mut back = Vec::new();
    for round in 0..6 {
        if round == 3 {
            roam(client.endpoint());
        }
        client.write_all(&chunk).await.expect("write");
        sent.extend_from_slice(&chunk);
        let mut buf = vec![0u8; chunk.len()];
        within(
            "the echo",
            Duration::from_secs(20),
            client.read_exact(&mut buf),
        )
        .await
        .expect("read");
        back.extend_from_slice(&buf);
    }
    assert_eq!(Summary::of(&back), Summary::of(&sent));
    client.shutdown().await.expect("finish");
    let mut rest = Vec::new();
    within(
        "EOF",
        Duration::from_secs(10),
        client.read_to_end(&mut rest),
    )
    .await
    .expect("read to EOF");
    assert!(rest.is_empty());
    assert_eq!(target.accepted(), 1, "one tunnel, never reopened");
}

const MIB: u64 = 1024 * 1024;

/// How much goes each way in the transfer that roams.
const LEN: u64 = 16 * MIB;

/// The client's socket changes while 16 MiB go up and 16 MiB come down on one
/// tunnel: both arrive intact. The rebind happens once at least 1 MiB has moved
/// each way, and before either direction is done.
#[tokio::test]
async fn a_transfer_in_flight_survives_the_client_changing_address() {
    let server = TestServer::start().await;
    let mut target = ExchangeTarget::start().await;
    let client = open_quic_tunnel(&server, &pki().alice, target.addr().port()).await;
    let endpoint = client.endpoint().clone();
    let (mut r, mut w) = tokio::io::split(client);
    let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));

    let sent = up.clone();
    let upload = tokio::spawn(async move {
        w.write_all(&exchange_header(2, LEN)).await.expect("header");
        let mut prng = Prng::new(1);
        let mut chunk = vec![0u8; 64 * 1024];
        while sent.load(Ordering::SeqCst) < LEN {
            prng.fill(&mut chunk);
            w.write_all(&chunk).await.expect("upload");
            sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        w.shutdown().await.expect("finish");
        w
    });
    let received = down.clone();
    let download = tokio::spawn(async move {
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf).await.expect("download");
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            received.fetch_add(n as u64, Ordering::SeqCst);
        }
        let len = received.load(Ordering::SeqCst);
        (
            Summary {
                len,
                sha256: hash.finish_hex(),
            },
            r,
        )
    });

    assert_eventually!(
        up.load(Ordering::SeqCst) >= MIB && down.load(Ordering::SeqCst) >= MIB,
        "the transfer does not move: {up:?} up, {down:?} down"
    );
    roam(&endpoint);
    let (at_up, at_down) = (up.load(Ordering::SeqCst), down.load(Ordering::SeqCst));
    assert!(
        at_up < LEN && at_down < LEN,
        "the rebind came too late: {at_up} bytes up, {at_down} down"
    );

    let w = within("the upload", Duration::from_secs(60), upload)
        .await
        .expect("upload task");
    let (summary, r) = within("the download", Duration::from_secs(60), download)
        .await
        .expect("download task");
    assert_eq!(summary, Summary::of_stream(2, LEN), "download");
    // The client stays up until the target has everything it sent.
    let report = target.next_report().await;
    assert_eq!(report.received, Summary::of_stream(1, LEN), "upload");
    eprintln!("rebound after {at_up} bytes up and {at_down} down, of {LEN} each way");
    drop(r.unsplit(w));
}
