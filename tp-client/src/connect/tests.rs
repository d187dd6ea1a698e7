use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
use tp_proto::{ErrorCode, Host};

use super::*;
use crate::config::Settings;
use crate::stdio::bridge;
use crate::testutil::{Behaviour, Pki, ServerSetup, connector, start_server};
use crate::transport::Transport;

use crate::testutil::db9;

#[tokio::test]
async fn a_denial_is_returned_with_code_message_and_status() {
    let pki = Pki::new("test CA");
    let (addr, mut hellos) = start_server(ServerSetup::trusting(&pki), Behaviour::Deny).await;
    let err = connector(&pki, &pki, addr.port())
        .open(&db9())
        .await
        .unwrap_err();
    match &err {
        ConnectError::Refused { code, message } => {
            assert_eq!(code, &ErrorCode::Denied);
            assert_eq!(message, "nope");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.to_string(), "denied: nope");
    assert_eq!(err.exit_status(), 10);
    assert_eq!(
        hellos.recv().await.unwrap(),
        db9(),
        "the server got our hello"
    );
}

#[tokio::test]
async fn bytes_behind_the_answer_come_first_then_the_echo() {
    let pki = Pki::new("test CA");
    let (addr, _hellos) = start_server(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let mut tunnel = connector(&pki, &pki, addr.port())
        .open(&db9())
        .await
        .unwrap();
    tunnel.write_all(b"ping").await.unwrap();
    tunnel.flush().await.unwrap();
    let mut got = [0u8; 9];
    tunnel.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"earlyping");
    tunnel.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tunnel.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn stdio_bridge_over_a_real_tunnel_half_closes() {
    let pki = Pki::new("test CA");
    let (addr, _hellos) = start_server(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let tunnel = connector(&pki, &pki, addr.port())
        .open(&db9())
        .await
        .unwrap();
    let stats = bridge_a_megabyte(tunnel).await;
    assert_eq!(stats.received, 1_000_000 + 5);
}

/// Bridges 1 MB of stdin through `tunnel` (to the canned echo server, which
/// answers `early` first), checks stdout got it all back behind `early`, and
/// returns the bridge's counts. Stdin EOF half-closes; the echo's EOF ends it.
pub(super) async fn bridge_a_megabyte(tunnel: Tunnel) -> crate::stdio::BridgeStats {
    let (mut stdin_w, stdin) = duplex(1024);
    let (stdout, mut stdout_r) = duplex(4 * 1024 * 1024);
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let payload = payload.clone();
        tokio::spawn(async move {
            stdin_w.write_all(&payload).await.unwrap();
            // Dropping stdin_w is stdin EOF.
        })
    };
    let stats = tokio::time::timeout(
        Duration::from_secs(20),
        bridge(tunnel, 0, stdin, stdout, std::future::pending()),
    )
    .await
    .expect("the bridge ends after stdin EOF and the echo's EOF")
    .unwrap();
    writer.await.unwrap();
    let mut out = Vec::new();
    stdout_r.read_to_end(&mut out).await.unwrap();
    assert_eq!(&out[..5], b"early");
    assert!(out[5..] == payload[..], "echo differs");
    assert_eq!(stats.sent, payload.len() as u64);
    stats
}

#[tokio::test]
async fn an_untrusted_server_certificate_is_named() {
    let pki = Pki::new("test CA");
    let other = Pki::new("other CA");
    let (addr, _hellos) = start_server(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    // Client trusts `other` for the server: the server's certificate is foreign.
    let err = connector(&pki, &other, addr.port())
        .open(&db9())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Handshake { .. }), "{err:?}");
    assert!(
        err.to_string().contains("server certificate not trusted"),
        "{err}"
    );
    assert_eq!(err.exit_status(), crate::exit::LOCAL);
}

#[tokio::test]
async fn a_refused_client_certificate_is_named() {
    let pki = Pki::new("test CA");
    let other = Pki::new("other CA");
    let server = ServerSetup {
        pki: &pki,
        client_ca: &other,
        alpn: true,
    };
    let (addr, _hellos) = start_server(server, Behaviour::Echo).await;
    let err = connector(&pki, &pki, addr.port())
        .open(&db9())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Handshake { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("server refused our client certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_without_alpn_is_not_a_tp_server() {
    let pki = Pki::new("test CA");
    let server = ServerSetup {
        alpn: false,
        ..ServerSetup::trusting(&pki)
    };
    let (addr, _hellos) = start_server(server, Behaviour::Echo).await;
    let err = connector(&pki, &pki, addr.port())
        .open(&db9())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::NoAlpn { .. }), "{err:?}");
}

#[tokio::test]
async fn a_server_closing_without_an_answer_is_named() {
    let pki = Pki::new("test CA");
    let (addr, _hellos) = start_server(ServerSetup::trusting(&pki), Behaviour::Close).await;
    let err = connector(&pki, &pki, addr.port())
        .open(&db9())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Closed { .. }), "{err:?}");
    assert_eq!(err.exit_status(), crate::exit::LOCAL);
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let pki = Pki::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_for(&pki, port, &dir);
    settings.connect_timeout = Duration::from_millis(300);
    let err = Connector::from_settings(&settings)
        .unwrap()
        .open(&db9())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Timeout { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("timed out after 300ms"),
        "{err}"
    );
}

#[tokio::test]
async fn a_closed_port_cannot_be_reached() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let pki = Pki::new("test CA");
    let err = connector(&pki, &pki, port).open(&db9()).await.unwrap_err();
    assert!(matches!(err, ConnectError::Connect { .. }), "{err:?}");
}

/// Writes the PKI's client files and CA into `dir` and points settings at them.
fn settings_for(pki: &Pki, port: u16, dir: &tempfile::TempDir) -> Settings {
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Settings {
        server: ServerAddr {
            host: Host::Ip([127, 0, 0, 1].into()),
            port,
        },
        server_name: ServerName::try_from("localhost").unwrap(),
        cert: write("alice.pem", &pki.client.cert_pem),
        key: write("alice.key", &pki.client.key_pem),
        ca: write("ca.pem", &pki.ca_pem),
        peer_ca: dir.path().join("ca.pem"),
        connect_timeout: Duration::from_secs(5),
        transport: Transport::Tcp,
        stealth: false,
        cache_file: None,
    }
}

#[tokio::test]
async fn settings_load_the_pem_files() {
    let pki = Pki::new("test CA");
    let (addr, _hellos) = start_server(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_for(&pki, addr.port(), &dir);
    let tunnel = Connector::from_settings(&settings)
        .unwrap()
        .open(&db9())
        .await
        .unwrap();
    assert_eq!(tunnel.early_len(), 5);

    let mut broken = settings.clone();
    broken.key = dir.path().join("missing.key");
    let err = Connector::from_settings(&broken).unwrap_err();
    assert!(err.to_string().contains("missing.key"), "{err}");
}

#[test]
fn server_messages_print_as_one_line() {
    let err = ConnectError::Refused {
        code: ErrorCode::Other("quota".into()),
        message: "line one\nline two\x1b[31m".into(),
    };
    assert_eq!(err.to_string(), "quota: line one\\nline two\\u{1b}[31m");
    assert_eq!(err.exit_status(), crate::exit::OTHER_CODE);
}

#[tokio::test]
async fn tls_dials_the_next_address_when_one_refuses_or_stays_silent() {
    let pki = Pki::new("test CA");
    let (addr, _hellos) = start_server(ServerSetup::trusting(&pki), Behaviour::Echo).await;
    let connector = connector(&pki, &pki, addr.port());
    // A closed port refuses at once: the next address need not wait.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let resolver = Resolver::fixed(connector.server(), vec![closed, addr]);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(5);
    let stream = connector.tls_connect(&resolver, deadline).await.unwrap();
    assert_eq!(stream.get_ref().0.get_ref().peer_addr().unwrap(), addr);
    assert!(started.elapsed() < ATTEMPT_DELAY, "{:?}", started.elapsed());

    // Only closed ports: the last refusal is the error.
    let resolver = Resolver::fixed(connector.server(), vec![closed, closed]);
    let err = connector
        .tls_connect(&resolver, deadline)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("refused"), "{err}");
}
