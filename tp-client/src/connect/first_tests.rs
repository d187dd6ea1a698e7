//! The first bytes of a local connection travel with the hello, before the
//! answer (checked against a canned server that never answers and reports
//! what it read behind the hello), as do those written while the hello waits
//! for its answer; they are not sent again after the kept QUIC
//! connection just went silent, and stay home in stealth mode. That they are
//! sent again after a restarted server's stateless reset is checked against
//! the real server (tests/e2e/first_bytes.rs).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::addr::{Dest, Target};
use crate::testutil::{
    Behaviour, ClientEnd, Dual, Ended, Pki, QuicServer, ServerSetup, UdpRelay, connector_via, db9,
    start_dual,
};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: db9.internal\r\n\r\n";

/// A local connection as `tp up` accepts it, whose client has written `sent`.
async fn local_with(sent: &[u8]) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut app = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (ours, _) = listener.accept().await.unwrap();
    app.write_all(sent).await.unwrap();
    (app, ours)
}

fn db9_target() -> Target {
    let tp_proto::Hello::Connect(c) = db9() else {
        unreachable!()
    };
    let tp_proto::ConnectTarget::Addr { host, port } = c.target else {
        unreachable!()
    };
    Target {
        dest: Dest::Host(host),
        port,
    }
}

/// Runs `opening` until the canned server has read its hello (which it never
/// answers), then gives it up, which aborts the tunnel.
async fn until_the_hello_is_read<F: std::future::Future>(
    opening: F,
    hellos: &mut tokio::sync::mpsc::UnboundedReceiver<tp_proto::Hello>,
) -> tp_proto::Hello {
    let raced = async {
        tokio::select! {
            _ = opening => panic!("the tunnel opened without an answer"),
            hello = hellos.recv() => hello.expect("the server runs"),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), raced)
        .await
        .expect("the server reads the hello")
}

/// A local client writes [`REQUEST`]; its tunnel is opened through
/// `connector` to the canned `server`, which never answers, and given up once
/// the server has read the hello. Returns both ends of the local connection,
/// how many bytes went with the hello, and what the server read behind it.
async fn before_any_answer(
    connector: &Connector,
    server: &mut Dual,
) -> (TcpStream, TcpStream, usize, Ended) {
    let (app, local) = local_with(REQUEST).await;
    let mut first = FirstBytes::from(&local);
    let target = db9_target();
    let opening = connector.open_link_with(&target, &mut first);
    let hello = until_the_hello_is_read(opening, &mut server.hellos).await;
    assert_eq!(hello, db9());
    let sent = first.len();
    drop(first);
    (app, local, sent, server.next_end().await)
}

#[tokio::test]
async fn what_the_local_client_sent_goes_out_with_the_hello_before_any_answer() {
    let pki = Pki::new("test CA");
    for transport in [Transport::Quic, Transport::Tcp] {
        // Never answers: whatever it reads came before the answer.
        let mut server = start_dual(ServerSetup::trusting(&pki), Behaviour::Silent).await;
        let connector = connector_via(&pki, &pki, server.addr.port(), transport);
        let (_app, _local, first, end) = before_any_answer(&connector, &mut server).await;
        assert_eq!(end.bytes, REQUEST.len() as u64, "{transport:?}: {end:?}");
        assert_ne!(end.how, ClientEnd::Finished, "given up: aborted");
        assert_eq!(first, REQUEST.len());
        connector.close().await;
    }
}

#[tokio::test]
async fn what_the_local_client_writes_while_the_hello_waits_follows_it_before_any_answer() {
    let pki = Pki::new("test CA");
    for transport in [Transport::Quic, Transport::Tcp] {
        // Never answers: whatever it reads came before the answer.
        let mut server = start_dual(ServerSetup::trusting(&pki), Behaviour::Silent).await;
        let connector = connector_via(&pki, &pki, server.addr.port(), transport);
        let (mut app, local) = local_with(b"").await;
        let mut first = FirstBytes::from(&local);
        let target = db9_target();
        let opening = connector.open_link_with(&target, &mut first);
        // The local client writes only once the hello has gone out alone, as
        // one that connects and then prepares its request does.
        let late = async {
            let hello = server.hellos.recv().await.expect("the server runs");
            assert_eq!(hello, db9());
            app.write_all(REQUEST).await.unwrap();
            // Loopback: read by the server well within this.
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        tokio::select! {
            _ = opening => panic!("{transport:?}: the tunnel opened without an answer"),
            () = late => {}
        }
        assert_eq!(first.len(), REQUEST.len(), "{transport:?}");
        drop(first);
        let end = server.next_end().await;
        assert_eq!(end.bytes, REQUEST.len() as u64, "{transport:?}: {end:?}");
        connector.close().await;
    }
}

#[tokio::test]
async fn the_first_bytes_come_back_once_from_an_echo_and_the_rest_follows() {
    let pki = Pki::new("test CA");
    for transport in [Transport::Quic, Transport::Tcp] {
        let server = start_dual(ServerSetup::trusting(&pki), Behaviour::Echo).await;
        let connector = connector_via(&pki, &pki, server.addr.port(), transport);
        let (mut app, local) = local_with(b"one").await;
        let mut first = FirstBytes::from(&local);
        let mut link = connector
            .open_link_with(&db9_target(), &mut first)
            .await
            .unwrap();
        assert_eq!(first.len(), 3);
        app.write_all(b"two").await.unwrap();
        // What `tp up` relays from here on: the local side's next bytes.
        let mut buf = [0u8; 3];
        local.peek(&mut buf).await.unwrap();
        assert_eq!(&buf, b"two", "the relay reads on behind the first bytes");
        link.write_all(&buf).await.unwrap();
        let mut got = [0u8; 11];
        tokio::time::timeout(Duration::from_secs(5), link.read_exact(&mut got))
            .await
            .expect("the echo")
            .unwrap();
        assert_eq!(&got, b"earlyonetwo", "{transport:?}");
        connector.close().await;
    }
}

#[tokio::test]
async fn in_stealth_mode_the_hello_goes_alone() {
    let pki = Pki::new("test CA");
    let setup = ServerSetup {
        alpn: false,
        ..ServerSetup::trusting(&pki)
    };
    let mut server = start_dual(setup, Behaviour::Silent).await;
    let connector = connector_via(&pki, &pki, server.addr.port(), Transport::Tcp).stealth();
    let (_app, local, first, end) = before_any_answer(&connector, &mut server).await;
    assert_eq!(end.bytes, 0);
    assert_eq!(first, 0);
    let mut buf = [0u8; 3];
    local.peek(&mut buf).await.unwrap();
    assert_eq!(&buf, b"GET", "left for the relay");
}

#[tokio::test]
async fn first_bytes_are_not_sent_again_when_the_kept_connection_just_went_silent() {
    not_sent_again_after_silence(false).await;
}

#[tokio::test]
async fn bytes_written_while_the_hello_waits_are_not_sent_again_after_silence_either() {
    not_sent_again_after_silence(true).await;
}

/// A tunnel on a kept QUIC connection whose path has just gone silent, its
/// local client having written "POST /once" before the hello went out (or,
/// `late`, while it waits for the answer): the tunnel fails rather than
/// sending those bytes again on a new connection, which the next tunnel dials.
async fn not_sent_again_after_silence(late: bool) {
    let pki = Pki::new("test CA");
    let (tx, _hellos) = tokio::sync::mpsc::unbounded_channel();
    let first_server =
        QuicServer::start(ServerSetup::trusting(&pki), Behaviour::Echo, 0, tx.clone()).unwrap();
    let relay = UdpRelay::start(first_server.local_addr()).await;
    let connector = connector_via(&pki, &pki, relay.addr.port(), Transport::Quic);
    drop(connector.open(&db9()).await.unwrap());

    // The path goes silent: what the client sends may or may not arrive, and
    // nothing comes back. Sent again elsewhere, "POST /once" could run twice.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    relay.point_at(silent.local_addr().unwrap());
    let (mut app, local) = local_with(if late { b"" } else { b"POST /once" }).await;
    let mut first = FirstBytes::from(&local);
    let target = db9_target();
    let writing_late = async {
        if late {
            tokio::time::sleep(Duration::from_millis(100)).await;
            app.write_all(b"POST /once").await.unwrap();
        }
    };
    let (opened, ()) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(connector.open_link_with(&target, &mut first), writing_late)
    })
    .await
    .expect("the silence is noticed well before the answer timeout");
    let err = opened.unwrap_err();
    assert!(
        matches!(err, ConnectError::Unanswered { sent: 10, .. }),
        "late {late}: {err}"
    );
    assert!(err.to_string().contains("not sending them again"), "{err}");

    // The silent connection is not used again: the next tunnel dials anew.
    let second = QuicServer::start(ServerSetup::trusting(&pki), Behaviour::Echo, 0, tx).unwrap();
    relay.point_at(second.local_addr());
    let mut tunnel = connector.open(&db9()).await.unwrap();
    let mut got = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), tunnel.read_exact(&mut got))
        .await
        .expect("the answer's early bytes")
        .unwrap();
    assert_eq!(&got, b"early");
    assert_eq!(second.connections(), 1);
}
