//! `auto` against real servers: QUIC when it answers, TLS/TCP quickly when UDP
//! is silent, and the memory of that in the process and in the cache file.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::*;
use crate::testutil::{
    Behaviour, Pki, QuicServer, ServerSetup, connector_via, start_dual, start_tcp_only,
};

use crate::testutil::db9;

fn auto(pki: &Pki, port: u16, cache: Option<PathBuf>) -> Connector {
    connector_via(pki, pki, port, Transport::Auto).with_cache_file(cache)
}

async fn echo_once(tunnel: &mut Tunnel) {
    tunnel.write_all(b"hi").await.unwrap();
    let mut got = [0u8; 7];
    tunnel.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"earlyhi");
}

#[tokio::test]
async fn auto_prefers_quic() {
    let pki = Pki::new("test CA");
    let server = start_dual(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("transport");
    let connector = auto(&pki, server.addr.port(), Some(cache.clone()));
    let mut tunnel = connector.open(&db9()).await.unwrap();
    assert_eq!(tunnel.via(), Via::Quic);
    echo_once(&mut tunnel).await;
    assert_eq!(server.quic.connections(), 1);
    assert!(!cache.exists(), "nothing to remember");
}

#[tokio::test]
async fn auto_falls_back_quickly_and_the_next_process_skips_quic() {
    let pki = Pki::new("test CA");
    // TLS/TCP only: nothing answers on the UDP port.
    let server = start_tcp_only(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let addr = server.addr;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tp").join("transport");

    let started = std::time::Instant::now();
    let mut tunnel = auto(&pki, addr.port(), Some(cache.clone()))
        .open(&db9())
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(tunnel.via(), Via::Tcp);
    assert!(took < Duration::from_secs(3), "fallback took {took:?}");
    echo_once(&mut tunnel).await;
    let text = std::fs::read_to_string(&cache).expect("the failure is remembered");
    assert!(text.contains("quic_failed "), "{text}");
    assert!(
        text.contains(&format!(" 127.0.0.1:{}\n", addr.port())),
        "{text}"
    );

    // QUIC now answers on that port, but a new process (a new connector with
    // the same cache file) goes straight to TLS/TCP.
    drop(server.silent_udp);
    let (tx, _quic_hellos) = mpsc::unbounded_channel();
    let quic = QuicServer::start(
        ServerSetup::trusting(&pki),
        Behaviour::Echo,
        addr.port(),
        tx,
    )
    .unwrap();
    let mut tunnel = auto(&pki, addr.port(), Some(cache.clone()))
        .open(&db9())
        .await
        .unwrap();
    assert_eq!(tunnel.via(), Via::Tcp);
    echo_once(&mut tunnel).await;
    assert_eq!(quic.connections(), 0, "QUIC was skipped");

    // Without the memory, QUIC is used.
    let tunnel = auto(&pki, addr.port(), None).open(&db9()).await.unwrap();
    assert_eq!(tunnel.via(), Via::Quic);
    assert_eq!(quic.connections(), 1);
}

#[tokio::test]
async fn the_process_remembers_without_a_cache_file() {
    let pki = Pki::new("test CA");
    let server = start_tcp_only(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let addr = server.addr;
    let connector = auto(&pki, addr.port(), None);
    let tunnel = connector.open(&db9()).await.unwrap();
    assert_eq!(tunnel.via(), Via::Tcp);

    drop(server.silent_udp);
    let (tx, _quic_hellos) = mpsc::unbounded_channel();
    let quic = QuicServer::start(
        ServerSetup::trusting(&pki),
        Behaviour::Echo,
        addr.port(),
        tx,
    )
    .unwrap();
    let tunnel = connector.open(&db9()).await.unwrap();
    assert_eq!(
        tunnel.via(),
        Via::Tcp,
        "`tp up` keeps to TLS/TCP for a while"
    );
    assert_eq!(quic.connections(), 0);
}

#[tokio::test]
async fn a_stale_cache_entry_is_ignored_and_cleared() {
    let pki = Pki::new("test CA");
    let server = start_dual(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("transport");
    let stale = SystemTime::now() - QUIC_RETRY_AFTER - Duration::from_secs(60);
    let secs = stale.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let key = format!("127.0.0.1:{}", server.addr.port());
    std::fs::write(&cache, format!("quic_failed {secs} {key}\n")).unwrap();

    let tunnel = auto(&pki, server.addr.port(), Some(cache.clone()))
        .open(&db9())
        .await
        .unwrap();
    assert_eq!(tunnel.via(), Via::Quic);
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(!text.contains(&key), "{text}");
}

#[tokio::test]
async fn an_unwritable_cache_never_fails_a_tunnel() {
    let pki = Pki::new("test CA");
    let server = start_tcp_only(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let addr = server.addr;
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let connector = auto(
        &pki,
        addr.port(),
        Some(blocker.join("tp").join("transport")),
    );
    let mut tunnel = connector.open(&db9()).await.unwrap();
    assert_eq!(tunnel.via(), Via::Tcp);
    echo_once(&mut tunnel).await;
}

#[tokio::test]
async fn a_refused_certificate_is_reported_not_hidden_by_the_fallback() {
    let pki = Pki::new("test CA");
    let other = Pki::new("other CA");
    let server_setup = ServerSetup {
        pki: &pki,
        client_ca: &other,
        alpn: true,
    };
    let server = start_dual(server_setup, Behaviour::Echo).await;
    let err = auto(&pki, server.addr.port(), None)
        .open(&db9())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Handshake { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("server refused our client certificate"),
        "{err}"
    );
    assert_eq!(err.exit_status(), crate::exit::LOCAL);
}

#[tokio::test]
async fn auto_maps_answer_codes_like_tcp() {
    let pki = Pki::new("test CA");
    let server = start_dual(ServerSetup::trusting(&pki), Behaviour::Deny).await;
    let err = auto(&pki, server.addr.port(), None)
        .open(&db9())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "denied: nope");
    assert_eq!(err.exit_status(), 10);
}
