use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use sha2::{Digest, Sha256};

use super::*;
use crate::testutil::{
    Behaviour, Pki, ServerSetup, assert_aborted, connector, connector_via, start_dual, start_server,
};
use crate::transport::Transport;

/// Starts `serve` on 127.0.0.1:0 against a test server; returns the local address,
/// the shutdown trigger and the serve task.
async fn start_up(
    pki: &Pki,
    behaviour: Behaviour,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let setup = ServerSetup::trusting(pki);
    let (server, _hellos) = start_server(setup, behaviour).await;
    let connector = Arc::new(connector(pki, pki, server.port()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let target = Target::parse("db1.internal:5432").unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, connector, target, async move {
        let _ = stopped.await;
    }));
    (local, stop, task)
}

#[tokio::test]
async fn each_connection_gets_a_tunnel() {
    let pki = Pki::new("test CA");
    let (local, stop, task) = start_up(&pki, Behaviour::Echo).await;
    for round in 0..3u8 {
        let mut conn = TcpStream::connect(local).await.unwrap();
        conn.write_all(&[round; 10]).await.unwrap();
        conn.shutdown().await.unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        let mut want = b"early".to_vec();
        want.extend_from_slice(&[round; 10]);
        assert_eq!(got, want, "round {round}");
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve stops on shutdown")
        .unwrap();
    assert!(TcpStream::connect(local).await.is_err(), "listener closed");
}

#[tokio::test]
async fn a_refused_tunnel_closes_only_that_connection() {
    let pki = Pki::new("test CA");
    let (local, stop, task) = start_up(&pki, Behaviour::Deny).await;
    for _ in 0..2 {
        let mut conn = TcpStream::connect(local).await.unwrap();
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got))
            .await
            .expect("the local connection is closed");
        assert!(read.is_err() || got.is_empty(), "{got:?}");
    }
    assert!(!task.is_finished(), "the listener keeps running");
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn run_reports_a_port_in_use() {
    let pki = Pki::new("test CA");
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = run(
        Arc::new(connector(&pki, &pki, 1)),
        Target::parse("db1:22").unwrap(),
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        port,
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().starts_with("cannot listen on 127.0.0.1:"),
        "{err}"
    );
}

/// Starts `serve` over QUIC against a dual test server.
async fn start_up_quic(
    pki: &Pki,
) -> (
    SocketAddr,
    crate::testutil::Dual,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let setup = ServerSetup::trusting(pki);
    let server = start_dual(setup, Behaviour::Echo).await;
    let connector = Arc::new(connector_via(pki, pki, server.addr.port(), Transport::Quic));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let target = Target::parse("db1.internal:5432").unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, connector, target, async move {
        let _ = stopped.await;
    }));
    (local, server, stop, task)
}

/// Sends `payload` through one local connection, half-closes, and returns the
/// SHA-256 of what came back after the server's "early" bytes.
async fn echo_digest(local: SocketAddr, payload: Vec<u8>) -> [u8; 32] {
    let conn = TcpStream::connect(local).await.unwrap();
    let (mut read, mut write) = conn.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(&payload).await.unwrap();
        write.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    read.read_to_end(&mut got).await.unwrap();
    writer.await.unwrap();
    assert_eq!(&got[..5], b"early");
    Sha256::digest(&got[5..]).into()
}

#[tokio::test]
async fn twenty_tunnels_share_one_quic_connection() {
    let pki = Pki::new("test CA");
    let (local, server, stop, task) = start_up_quic(&pki).await;
    let mut transfers = Vec::new();
    for i in 0..20u32 {
        // Different sizes and contents per tunnel, so a mix-up cannot pass.
        let len = 64 * 1024 + 7919 * i as usize;
        let payload: Vec<u8> = (0..len)
            .map(|j| (j as u32).wrapping_mul(2_654_435_761).wrapping_add(i) as u8)
            .collect();
        let want: [u8; 32] = Sha256::digest(&payload).into();
        transfers.push((want, tokio::spawn(echo_digest(local, payload))));
    }
    for (i, (want, transfer)) in transfers.into_iter().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(30), transfer)
            .await
            .expect("transfer finishes")
            .unwrap();
        assert_eq!(got, want, "tunnel {i}");
    }
    assert_eq!(server.quic.connections(), 1, "one QUIC connection");
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn tp_up_reconnects_when_the_quic_connection_dies() {
    let pki = Pki::new("test CA");
    let (local, server, stop, task) = start_up_quic(&pki).await;
    let first = echo_digest(local, b"one".to_vec()).await;
    assert_eq!(first, <[u8; 32]>::from(Sha256::digest(b"one")));
    server.quic.close_all();
    // The next local connection dials again (the client may first learn of the
    // close from that attempt, and then retries once on a new connection).
    let second = tokio::time::timeout(Duration::from_secs(10), echo_digest(local, b"two".to_vec()))
        .await
        .expect("the second tunnel opens");
    assert_eq!(second, <[u8; 32]>::from(Sha256::digest(b"two")));
    assert_eq!(server.quic.connections(), 2);
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// `serve` in front of a `Watch` server over `transport`.
async fn start_up_watched(
    pki: &Pki,
    transport: Transport,
) -> (
    SocketAddr,
    crate::testutil::Dual,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let setup = ServerSetup::trusting(pki);
    let server = start_dual(setup, Behaviour::Watch).await;
    let connector = Arc::new(connector_via(pki, pki, server.addr.port(), transport));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let target = Target::parse("db1.internal:5432").unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, connector, target, async move {
        let _ = stopped.await;
    }));
    (local, server, stop, task)
}

#[tokio::test]
async fn a_failed_local_connection_aborts_its_tunnel() {
    use crate::testutil::ClientEnd;
    let pki = Pki::new("test CA");
    for transport in [Transport::Quic, Transport::Tcp] {
        let (local, mut server, stop, task) = start_up_watched(&pki, transport).await;

        // In order: the local client's EOF finishes the tunnel.
        let mut conn = TcpStream::connect(local).await.unwrap();
        conn.write_all(b"fine").await.unwrap();
        conn.shutdown().await.unwrap();
        let end = server.next_end().await;
        assert_eq!(end.how, ClientEnd::Finished, "{transport:?}");
        assert_eq!(end.bytes, 4);
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).await.unwrap();

        // The local connection is reset mid-tunnel: the server must not take
        // what it got for the whole of it.
        let mut conn = TcpStream::connect(local).await.unwrap();
        conn.write_all(b"partial").await.unwrap();
        server.hellos.recv().await.unwrap();
        server.hellos.recv().await.unwrap();
        // A zero linger makes the close a TCP reset; nothing is left unsent
        // for it to block on.
        #[allow(deprecated)]
        conn.set_linger(Some(Duration::ZERO)).unwrap();
        drop(conn);
        let end = server.next_end().await;
        assert_aborted(&end, transport);
        stop.send(()).unwrap();
        task.await.unwrap();
    }
}

/// A local connection reset before its tunnel was requested: reading its
/// first bytes finds the reset, and no hello goes out, so the server dials
/// nothing (a tunnel requested anyway would have its target see a connection
/// come and go). The next local connection is served as usual.
#[tokio::test]
async fn a_local_connection_reset_before_its_hello_requests_no_tunnel() {
    let pki = Pki::new("test CA");
    for transport in [Transport::Quic, Transport::Tcp] {
        let (local, mut server, stop, task) = start_up_watched(&pki, transport).await;
        let conn = TcpStream::connect(local).await.unwrap();
        // Reset at once: the handshake to the server takes far longer.
        #[allow(deprecated)]
        conn.set_linger(Some(Duration::ZERO)).unwrap();
        drop(conn);

        // The next one is served: its hello is the first the server reads.
        let mut conn = TcpStream::connect(local).await.unwrap();
        conn.write_all(b"fine").await.unwrap();
        conn.shutdown().await.unwrap();
        let end = server.next_end().await;
        assert_eq!(end.bytes, 4, "{transport:?}: {end:?}");
        tokio::time::timeout(Duration::from_secs(5), server.hellos.recv())
            .await
            .expect("a hello")
            .unwrap();
        assert!(
            server.hellos.try_recv().is_err(),
            "{transport:?}: the reset connection's tunnel was requested too"
        );
        stop.send(()).unwrap();
        task.await.unwrap();
    }
}
