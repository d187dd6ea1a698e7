//! A tunnel that fails must never look like a clean close to the server: over
//! QUIC its stream is reset (quinn would finish a dropped one), over TLS/TCP the
//! connection ends without `close_notify`. Checked against the canned servers,
//! which report how the client's side of each tunnel ended.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::*;
use crate::testutil::{
    Behaviour, ClientEnd, Dual, Ended, Pki, ServerSetup, assert_aborted, connector_via,
    connector_with, start_dual,
};

use crate::testutil::db9;

const TRANSPORTS: [Transport; 2] = [Transport::Quic, Transport::Tcp];

async fn server(pki: &Pki, behaviour: Behaviour) -> Dual {
    start_dual(ServerSetup::trusting(pki), behaviour).await
}

#[tokio::test]
async fn an_aborted_tunnel_is_reset_and_a_shut_down_one_finished() {
    let pki = Pki::new("test CA");
    for transport in TRANSPORTS {
        let mut server = server(&pki, Behaviour::Watch).await;
        let connector = connector_via(&pki, &pki, server.addr.port(), transport);

        let mut tunnel = connector.open(&db9()).await.unwrap();
        tunnel.write_all(b"half").await.unwrap();
        tunnel.flush().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), tunnel.abort().acknowledged())
            .await
            .expect("the server acknowledges the reset");
        assert_aborted(&server.next_end().await, transport);

        // Dropped before its write side was shut down: aborted too.
        let mut tunnel = connector.open(&db9()).await.unwrap();
        tunnel.write_all(b"dropped").await.unwrap();
        tunnel.flush().await.unwrap();
        drop(tunnel);
        assert_aborted(&server.next_end().await, transport);

        // Shut down in order: the server reads a clean end and everything sent.
        let mut tunnel = connector.open(&db9()).await.unwrap();
        tunnel.write_all(b"complete").await.unwrap();
        tunnel.shutdown().await.unwrap();
        let delivered = tunnel.delivered();
        drop(tunnel);
        tokio::time::timeout(Duration::from_secs(5), delivered)
            .await
            .unwrap();
        assert_eq!(
            server.next_end().await,
            Ended {
                how: ClientEnd::Finished,
                bytes: 8
            },
            "{transport:?}"
        );
        connector.close().await;
    }
}

#[tokio::test]
async fn a_hello_whose_answer_never_comes_is_aborted() {
    let pki = Pki::new("test CA");
    for transport in TRANSPORTS {
        let mut server = server(&pki, Behaviour::Silent).await;
        let connector = connector_with(
            &pki,
            &pki,
            server.addr.port(),
            transport,
            Duration::from_millis(300),
        )
        .with_answer_grace(Duration::ZERO);
        let err = connector.open(&db9()).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("timed out after 300ms waiting for the answer of"),
            "{transport:?}: {err}"
        );
        assert_eq!(server.hellos.recv().await.unwrap(), db9());
        assert_aborted(&server.next_end().await, transport);
        connector.close().await;
    }
}

#[tokio::test]
async fn a_hello_its_caller_gave_up_on_is_aborted() {
    let pki = Pki::new("test CA");
    for transport in TRANSPORTS {
        let mut server = server(&pki, Behaviour::Silent).await;
        let connector = Arc::new(connector_via(&pki, &pki, server.addr.port(), transport));
        let opening = {
            let connector = connector.clone();
            tokio::spawn(async move { connector.open(&db9()).await.map(|_| ()) })
        };
        // The hello is out; then the local client goes away (`tp up` drops the
        // flows still opening when it stops).
        assert_eq!(server.hellos.recv().await.unwrap(), db9());
        opening.abort();
        assert!(opening.await.unwrap_err().is_cancelled());
        assert_aborted(&server.next_end().await, transport);
        connector.close().await;
    }
}

#[tokio::test]
async fn the_server_may_open_no_stream_to_the_client() {
    let pki = Pki::new("test CA");
    let server = server(&pki, Behaviour::Echo).await;
    let connector = connector_via(&pki, &pki, server.addr.port(), Transport::Quic);
    let _tunnel = connector.open(&db9()).await.unwrap();
    assert!(
        !server
            .quic
            .can_open_a_stream(Duration::from_millis(300))
            .await,
        "the client grants the server no stream"
    );
    connector.close().await;
}

#[tokio::test]
async fn a_forgotten_connection_closes_when_its_last_tunnel_ends() {
    let pki = Pki::new("test CA");
    let mut server = server(&pki, Behaviour::Watch).await;
    let connector = connector_via(&pki, &pki, server.addr.port(), Transport::Quic);
    let mut first = connector.open(&db9()).await.unwrap();
    let mut second = connector.open(&db9()).await.unwrap();
    assert_eq!(server.quic.connections(), 1);
    // As after a false alarm of the probe: the connection is left to its
    // tunnels, and the next tunnel dials a new one.
    connector.forget_quic().await;

    // Each tunnel ends as `tp up` ends one: shut down, delivered, dropped.
    first.shutdown().await.unwrap();
    first.delivered().await;
    drop(first);
    assert_eq!(server.next_end().await.how, ClientEnd::Finished);
    let still_open = tokio::time::timeout(Duration::from_millis(300), server.quic.closed(0)).await;
    assert!(still_open.is_err(), "closed under a running tunnel");

    second.shutdown().await.unwrap();
    second.delivered().await;
    drop(second);
    assert_eq!(server.next_end().await.how, ClientEnd::Finished);
    let closed = tokio::time::timeout(Duration::from_secs(5), server.quic.closed(0))
        .await
        .expect("the forgotten connection closes with its last tunnel");
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), 0);
        }
        other => panic!("{other:?}"),
    }
    connector.close().await;
}
