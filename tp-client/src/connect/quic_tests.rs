//! Tunnels over QUIC against the canned quinn server.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tp_proto::ErrorCode;

use super::*;
use crate::exit;
use crate::testutil::{
    Behaviour, Pki, QuicServer, ServerSetup, UdpRelay, connector_via, connector_with, start_dual,
    start_tcp_only,
};

use crate::testutil::db9;

#[tokio::test]
async fn a_quic_tunnel_echoes_and_half_closes() {
    let pki = Pki::new("test CA");
    let mut server = start_dual(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let connector = connector_via(&pki, &pki, server.addr.port(), Transport::Quic);
    let mut tunnel = connector.open(&db9()).await.unwrap();
    assert_eq!(tunnel.via(), Via::Quic);
    assert_eq!(server.hellos.recv().await.unwrap(), db9());
    tunnel.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 9];
    tunnel.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"earlyping");
    tunnel.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tunnel.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    // Shutting down twice is harmless, as over TLS.
    tunnel.shutdown().await.unwrap();
    connector.close().await;
}

#[tokio::test]
async fn stdio_bridge_over_quic_delivers_everything() {
    let pki = Pki::new("test CA");
    let server = start_dual(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let connector = connector_via(&pki, &pki, server.addr.port(), Transport::Quic);
    let tunnel = connector.open(&db9()).await.unwrap();
    let delivered = tunnel.delivered();
    super::tests::bridge_a_megabyte(tunnel).await;
    tokio::time::timeout(Duration::from_secs(5), delivered)
        .await
        .expect("the server acknowledges the end of our stream");
    tokio::time::timeout(Duration::from_secs(3), connector.close())
        .await
        .expect("closing is bounded");
}

#[tokio::test]
async fn tunnels_share_one_connection_and_a_dead_one_is_replaced() {
    let pki = Pki::new("test CA");
    let server = start_dual(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let connector = connector_via(&pki, &pki, server.addr.port(), Transport::Quic);
    let mut tunnels = Vec::new();
    for _ in 0..3 {
        tunnels.push(connector.open(&db9()).await.unwrap());
    }
    assert_eq!(server.quic.connections(), 1);

    server.quic.close_all();
    for mut tunnel in tunnels {
        let mut rest = Vec::new();
        // The server's close ends the streams; "early" may or may not arrive.
        let _ = tunnel.read_to_end(&mut rest).await;
    }
    let mut tunnel = connector.open(&db9()).await.unwrap();
    tunnel.write_all(b"again").await.unwrap();
    let mut got = [0u8; 10];
    tunnel.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"earlyagain");
    assert_eq!(server.quic.connections(), 2);
}

#[tokio::test]
async fn answer_codes_map_to_the_same_exit_statuses_over_quic() {
    let pki = Pki::new("test CA");
    let mut cases: Vec<(&str, u8)> = exit::ANSWER_STATUSES.to_vec();
    cases.push(("quota", exit::OTHER_CODE));
    for (code, status) in cases {
        let server = start_dual(ServerSetup::trusting(&pki), Behaviour::Refuse(code)).await;
        let connector = connector_via(&pki, &pki, server.addr.port(), Transport::Quic);
        let err = connector.open(&db9()).await.unwrap_err();
        match &err {
            ConnectError::Refused { code: got, message } => {
                assert_eq!(got, &ErrorCode::from_wire(code));
                assert_eq!(message, "nope");
            }
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(err.to_string(), format!("{code}: nope"));
        assert_eq!(err.exit_status(), status, "{code}");
    }
}

#[tokio::test]
async fn a_refused_client_certificate_over_quic_is_named() {
    let pki = Pki::new("test CA");
    let other = Pki::new("other CA");
    let server_setup = ServerSetup {
        pki: &pki,
        client_ca: &other,
        alpn: true,
    };
    let server = start_dual(server_setup, Behaviour::Echo).await;
    let connector = connector_via(&pki, &pki, server.addr.port(), Transport::Quic);
    let err = connector.open(&db9()).await.unwrap_err();
    assert!(matches!(err, ConnectError::Handshake { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("server refused our client certificate"),
        "{err}"
    );
    assert_eq!(err.exit_status(), exit::LOCAL);
}

#[tokio::test]
async fn an_untrusted_server_certificate_over_quic_is_named() {
    let pki = Pki::new("test CA");
    let other = Pki::new("other CA");
    let server = start_dual(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let connector = connector_via(&pki, &other, server.addr.port(), Transport::Quic);
    let err = connector.open(&db9()).await.unwrap_err();
    assert!(matches!(err, ConnectError::Handshake { .. }), "{err:?}");
    assert!(
        err.to_string().contains("server certificate not trusted"),
        "{err}"
    );
}

#[tokio::test]
async fn a_quic_server_without_alpn_is_not_a_tp_server() {
    let pki = Pki::new("test CA");
    let server_setup = ServerSetup {
        alpn: false,
        ..ServerSetup::trusting(&pki)
    };
    let server = start_dual(server_setup, Behaviour::Echo).await;
    let connector = connector_via(&pki, &pki, server.addr.port(), Transport::Quic);
    let err = connector.open(&db9()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::NoAlpn { .. } | ConnectError::Handshake { .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("ALPN tp/1"), "{err}");
}

#[tokio::test]
async fn a_stream_closed_without_an_answer_is_named() {
    let pki = Pki::new("test CA");
    let server = start_dual(ServerSetup::trusting(&pki), Behaviour::Close).await;
    let connector = connector_via(&pki, &pki, server.addr.port(), Transport::Quic);
    let err = connector.open(&db9()).await.unwrap_err();
    assert!(matches!(err, ConnectError::Closed { .. }), "{err:?}");
}

#[tokio::test]
async fn quic_alone_times_out_when_nothing_answers_on_udp() {
    let pki = Pki::new("test CA");
    // TLS/TCP only: nothing answers on the UDP port.
    let server = start_tcp_only(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let connector = connector_with(
        &pki,
        &pki,
        server.addr.port(),
        Transport::Quic,
        Duration::from_millis(300),
    );
    let err = connector.open(&db9()).await.unwrap_err();
    assert!(matches!(err, ConnectError::Timeout { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("timed out after 300ms in the QUIC handshake with 127.0.0.1:"),
        "{err}"
    );
}

#[tokio::test]
async fn a_kept_connection_to_a_restarted_server_is_replaced_quickly() {
    let pki = Pki::new("test CA");
    let (tx, _hellos) = tokio::sync::mpsc::unbounded_channel();
    let first =
        QuicServer::start(ServerSetup::trusting(&pki), Behaviour::Echo, 0, tx.clone()).unwrap();
    let relay = UdpRelay::start(first.local_addr()).await;
    let connector = connector_via(&pki, &pki, relay.addr.port(), Transport::Quic);
    let mut tunnel = connector.open(&db9()).await.unwrap();
    tunnel.write_all(b"one").await.unwrap();
    let mut got = [0u8; 8];
    tunnel.read_exact(&mut got).await.unwrap();

    // The server restarts without a word: the kept connection looks alive to
    // QUIC until its idle timeout, but nothing on the other side knows it.
    let second = QuicServer::start(ServerSetup::trusting(&pki), Behaviour::Echo, 0, tx).unwrap();
    relay.point_at(second.local_addr());
    let started = std::time::Instant::now();
    let mut tunnel = tokio::time::timeout(Duration::from_secs(10), connector.open(&db9()))
        .await
        .expect("the dead connection is given up well before the answer timeout")
        .unwrap();
    let took = started.elapsed();
    tunnel.write_all(b"two").await.unwrap();
    tunnel.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"earlytwo");
    assert_eq!(second.connections(), 1);
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

#[tokio::test]
async fn a_silent_first_address_hands_over_to_the_next_after_the_attempt_delay() {
    let pki = Pki::new("test CA");
    let server = start_dual(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let connector = connector_via(&pki, &pki, server.addr.port(), Transport::Quic);
    // Bound, so nothing else takes the port, and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addrs = vec![silent.local_addr().unwrap(), server.addr];
    let resolver = Resolver::fixed(connector.server(), addrs);
    let deadline = Instant::now() + Duration::from_secs(5);
    let started = Instant::now();
    let mut slot = connector.quic.lock(deadline).await.unwrap();
    let conn = slot.dial(&resolver, deadline).await.unwrap();
    assert_eq!(conn.remote_address(), server.addr);
    let took = started.elapsed();
    assert!(
        took >= ATTEMPT_DELAY && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn silence_at_every_address_is_the_handshake_timeout() {
    let pki = Pki::new("test CA");
    let silent: Vec<_> = (0..2)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let connector = connector_via(&pki, &pki, 9, Transport::Quic);
    let addrs = silent.iter().map(|s| s.local_addr().unwrap()).collect();
    let resolver = Resolver::fixed(connector.server(), addrs);
    let deadline = Instant::now() + Duration::from_millis(600);
    let mut slot = connector.quic.lock(deadline).await.unwrap();
    let err = slot.dial(&resolver, deadline).await.unwrap_err();
    assert!(err.to_string().starts_with("timed out after"), "{err}");
    assert!(
        err.to_string().contains("in the QUIC handshake with"),
        "{err}"
    );
}
