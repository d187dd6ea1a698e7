use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::*;
use crate::testutil::{Behaviour, Pki, ServerSetup, connector, start_server};

/// Starts `serve` on 127.0.0.1:0 against a test server; returns the local address,
/// the shutdown trigger and the serve task.
async fn start_up(
    pki: &Pki,
    behaviour: Behaviour,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let setup = ServerSetup {
        pki,
        client_ca: pki,
        alpn: true,
    };
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
