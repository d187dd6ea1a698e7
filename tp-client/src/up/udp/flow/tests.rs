//! The flow relay against an in-memory stream standing in for the tunnel.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::net::UdpSocket;
use tp_proto::udp::{decode_frame, encode_frame};

use super::*;
use crate::up::udp::queue::{FlowSender, Offer, queue};

const LONG: Duration = Duration::from_secs(10);

/// The local socket, the application's socket (the flow's source), a queue and
/// both ends of the stream.
struct Fixture {
    local: UdpSocket,
    app: UdpSocket,
    tx: FlowSender,
    rx: FlowReceiver,
    tunnel: DuplexStream,
    server: DuplexStream,
}

async fn fixture() -> Fixture {
    let local = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let app = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (tx, rx) = queue(8, 1 << 20);
    let (tunnel, server) = duplex(256 * 1024);
    Fixture {
        local,
        app,
        tx,
        rx,
        tunnel,
        server,
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(payload, &mut out).unwrap();
    out.to_vec()
}

/// Reads one frame the relay wrote to the stream.
async fn read_frame(server: &mut DuplexStream, buf: &mut BytesMut) -> Bytes {
    loop {
        if let Some(frame) = decode_frame(buf).unwrap() {
            return frame;
        }
        let n = tokio::time::timeout(LONG, server.read_buf(buf))
            .await
            .expect("a frame arrives")
            .unwrap();
        assert!(n > 0, "the stream ended before a frame");
    }
}

#[tokio::test]
async fn frames_flow_both_ways_until_idle_then_the_stream_is_finished() {
    let Fixture {
        local,
        app,
        tx,
        mut rx,
        mut tunnel,
        mut server,
    } = fixture().await;
    let reply = Reply {
        socket: &local,
        to: app.local_addr().unwrap(),
    };
    let idle = Duration::from_millis(300);
    let mut stats = Stats::default();
    let relay = relay(&mut tunnel, None, &mut rx, reply, idle, &mut stats);
    let peer = async {
        let mut buf = BytesMut::new();
        for payload in [&b"ping"[..], b"", &[7u8; 3000]] {
            assert_eq!(tx.offer(Bytes::copy_from_slice(payload)), Offer::Queued);
            assert_eq!(&read_frame(&mut server, &mut buf).await[..], payload);
        }
        // Two replies in one write, the second split across writes.
        let mut replies = frame(b"pong");
        replies.extend(frame(&[9u8; 2000]));
        let (first, second) = replies.split_at(100);
        server.write_all(first).await.unwrap();
        server.write_all(second).await.unwrap();
        let mut got = vec![0u8; 4096];
        for want in [&b"pong"[..], &[9u8; 2000]] {
            let (n, from) = tokio::time::timeout(LONG, app.recv_from(&mut got))
                .await
                .expect("the reply reaches the source")
                .unwrap();
            assert_eq!(
                from,
                local.local_addr().unwrap(),
                "replies come from the local socket"
            );
            assert_eq!(&got[..n], want);
        }
        // Nothing more: the flow goes idle and finishes the stream.
        let mut rest = Vec::new();
        tokio::time::timeout(LONG, server.read_to_end(&mut rest))
            .await
            .expect("the stream is finished")
            .unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    };
    let (end, ()) = tokio::time::timeout(LONG * 2, async { tokio::join!(relay, peer) })
        .await
        .expect("the flow ends");
    assert!(matches!(end, End::Idle(_)), "{end}");
    assert_eq!(end.to_string(), "idle for 300ms");
    assert_eq!(
        stats,
        Stats {
            up_datagrams: 3,
            up_bytes: 3004,
            up_quic: 0,
            down_datagrams: 2,
            down_bytes: 2004,
            down_quic: 0,
        }
    );
}

#[tokio::test]
async fn a_closed_queue_sends_what_is_queued_then_stops() {
    let Fixture {
        local,
        app,
        tx,
        mut rx,
        mut tunnel,
        mut server,
    } = fixture().await;
    for payload in [&b"one"[..], b"two"] {
        assert_eq!(tx.offer(Bytes::copy_from_slice(payload)), Offer::Queued);
    }
    drop(tx);
    let reply = Reply {
        socket: &local,
        to: app.local_addr().unwrap(),
    };
    let mut stats = Stats::default();
    let end = tokio::time::timeout(
        LONG,
        relay(&mut tunnel, None, &mut rx, reply, LONG, &mut stats),
    )
    .await
    .expect("the flow stops");
    assert!(matches!(end, End::Stopped), "{end}");
    let mut wire = Vec::new();
    server.read_to_end(&mut wire).await.unwrap();
    assert_eq!(wire, [frame(b"one"), frame(b"two")].concat());
}

#[tokio::test]
async fn the_server_closing_or_breaking_the_framing_ends_the_flow() {
    for (bytes, want) in [
        (&[][..], "the server closed the tunnel"),
        (&[0xff, 0xff][..], "the server sent a bad frame"),
    ] {
        let Fixture {
            local,
            app,
            tx: _tx,
            mut rx,
            mut tunnel,
            mut server,
        } = fixture().await;
        server.write_all(bytes).await.unwrap();
        server.shutdown().await.unwrap();
        let reply = Reply {
            socket: &local,
            to: app.local_addr().unwrap(),
        };
        let mut stats = Stats::default();
        let end = tokio::time::timeout(
            LONG,
            relay(&mut tunnel, None, &mut rx, reply, LONG, &mut stats),
        )
        .await
        .expect("the flow ends");
        assert!(end.to_string().starts_with(want), "{end}");
    }
}

#[test]
fn the_hello_asks_for_udp() {
    let target = Target::parse("dns1.internal:53").unwrap();
    let mut line = Vec::new();
    tp_proto::encode_hello(&hello(&target), &mut line);
    assert_eq!(
        String::from_utf8(line).unwrap(),
        "{\"v\":1,\"op\":\"connect\",\"proto\":\"udp\",\"host\":\"dns1.internal\",\"port\":53}\n"
    );
}
