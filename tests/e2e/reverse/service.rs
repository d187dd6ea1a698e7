//! A caller reaches an exposed service: bytes both ways, half-close, what the
//! exposer is told about the caller, and that the server relays TLS it cannot read.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tp_proto::Event;
use tp_tests::client::{ClientOptions, tls_config};
use tp_tests::data::{Summary, read_summary, write_stream};
use tp_tests::pki::BOB;
use tp_tests::reverse::{Exposer, Recorded, call, call_with};
use tp_tests::{Transport, pki, within};

use super::{LAPTOP, start};

const MIB: u64 = 1024 * 1024;
const UP: (u64, u64) = (11, 4 * MIB);
const DOWN: (u64, u64) = (12, 3 * MIB);

async fn a_caller_reaches_the_exposed_service_both_ways_with_half_close(transport: Transport) {
    let server = start().await;
    let mut alice = Exposer::expose(transport, server.addr(), &pki().alice, LAPTOP).await;
    let (bob, (incoming, mut exposed)) = tokio::join!(
        call(transport, server.addr(), &pki().bob, LAPTOP),
        alice.next_incoming(),
    );
    assert_eq!(bob.reply.code(), "ok", "{bob:?}");
    assert_eq!(incoming.from.as_deref(), Some(BOB), "{incoming:?}");
    assert_eq!(incoming.groups, ["ops"], "{incoming:?}");
    assert_eq!(
        incoming.peer, bob.peer,
        "the caller's address as the server saw it"
    );
    assert_eq!(incoming.to, None, "no public address in service mode");
    assert!(
        incoming.session.len() == 32 && incoming.session.bytes().all(|b| b.is_ascii_hexdigit()),
        "session id: {:?}",
        incoming.session
    );
    let mut caller = bob.tunnel;

    // Up, to EOF: the exposer sees exactly what the caller sent, then the end.
    let up = async {
        write_stream(&mut caller, UP.0, UP.1).await?;
        caller.shutdown().await
    };
    let (sent, got) = within("the upload", Duration::from_secs(60), async {
        tokio::join!(up, read_summary(&mut exposed))
    })
    .await;
    sent.expect("upload");
    assert_eq!(
        got.expect("the exposer reads"),
        Summary::of_stream(UP.0, UP.1)
    );

    // Down, after that EOF: the other direction still flows, to its own EOF.
    let down = async {
        write_stream(&mut exposed, DOWN.0, DOWN.1).await?;
        exposed.shutdown().await
    };
    let (sent, got) = within("the download", Duration::from_secs(60), async {
        tokio::join!(down, read_summary(&mut caller))
    })
    .await;
    sent.expect("download");
    assert_eq!(
        got.expect("the caller reads"),
        Summary::of_stream(DOWN.0, DOWN.1)
    );

    let line = server
        .expect_log(&["tunnel closed", &format!("bytes.up={}", UP.1)])
        .await;
    assert!(line.contains(&format!("bytes.down={}", DOWN.1)), "{line}");
    assert!(line.contains(&format!("service=\"{LAPTOP}\"")), "{line}");
    // The connection was announced once: over QUIC on its stream only, over
    // TLS/TCP on the control channel (consumed above).
    let (events, closed) = alice.events_for(Duration::from_millis(200)).await;
    assert!(!closed, "the control channel outlives its tunnels");
    assert!(
        events.iter().all(|e| *e == Event::Ping),
        "more on the control channel: {events:?}"
    );
}

async fn payload_behind_the_hello_reaches_the_exposer_first(transport: Transport) {
    let server = start().await;
    let mut alice = Exposer::expose(transport, server.addr(), &pki().alice, LAPTOP).await;
    let (bob, (_, mut exposed)) = tokio::join!(
        call_with(
            transport,
            server.addr(),
            &pki().bob,
            LAPTOP,
            b"behind the hello|"
        ),
        alice.next_incoming(),
    );
    assert_eq!(bob.reply.code(), "ok", "{bob:?}");
    let mut caller = bob.tunnel;
    caller.write_all(b"after the answer").await.expect("write");
    caller.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    within(
        "the caller's bytes",
        tp_tests::EVENTUALLY,
        exposed.read_to_end(&mut got),
    )
    .await
    .expect("read");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "behind the hello|after the answer"
    );
}

const MARKER: &[u8] = b"MARKER: the tp server must never see this plaintext";

/// A TLS server configuration for the exposer's end: the test server certificate.
fn inner_server_config() -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = &pki().server;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(server.chain_der(), server.key_der())
        .expect("the server leaf and its key fit")
}

async fn the_server_relays_inner_tls_without_reading_it(transport: Transport) {
    let server = start().await;
    let mut alice = Exposer::expose(transport, server.addr(), &pki().alice, LAPTOP).await;
    let (bob, (_, exposed)) = tokio::join!(
        call(transport, server.addr(), &pki().bob, LAPTOP),
        alice.next_incoming(),
    );
    assert_eq!(bob.reply.code(), "ok", "{bob:?}");
    // Everything the server hands the exposer, as it arrives.
    let (exposed, relayed) = Recorded::new(exposed);

    let acceptor = TlsAcceptor::from(Arc::new(inner_server_config()));
    let mut options = ClientOptions::with(&pki().bob);
    options.alpn = vec![b"tp-e2e/1".to_vec()];
    let connector = TlsConnector::from(Arc::new(tls_config(&options)));
    let exposer_side = async {
        let mut tls = acceptor
            .accept(exposed)
            .await
            .expect("inner TLS, exposer side");
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.expect("inner read");
        tls.write_all(b"ack").await.expect("inner write");
        tls.shutdown().await.expect("inner shutdown");
        got
    };
    let caller_side = async {
        let name = ServerName::try_from("localhost").expect("name");
        let mut tls = connector
            .connect(name, bob.tunnel)
            .await
            .expect("inner TLS, caller side");
        tls.write_all(MARKER).await.expect("inner write");
        tls.shutdown().await.expect("inner shutdown");
        let mut back = Vec::new();
        tls.read_to_end(&mut back).await.expect("inner read");
        back
    };
    let (got, back) = within("the inner TLS exchange", Duration::from_secs(20), async {
        tokio::join!(exposer_side, caller_side)
    })
    .await;
    assert_eq!(got, MARKER, "the exposer's TLS server decrypted the marker");
    assert_eq!(back, b"ack");

    let relayed = relayed.lock().expect("lock").clone();
    assert!(
        relayed.starts_with(&[0x16, 0x03]),
        "the relayed bytes do not start with a TLS handshake record: {:02x?}",
        &relayed[..relayed.len().min(16)]
    );
    assert!(
        !relayed.windows(MARKER.len()).any(|w| w == MARKER),
        "the marker crossed the server in plaintext"
    );
    assert!(
        relayed.len() > MARKER.len(),
        "{} bytes relayed",
        relayed.len()
    );
}

tp_tests::over_both_transports!(
    a_caller_reaches_the_exposed_service_both_ways_with_half_close,
    payload_behind_the_hello_reaches_the_exposer_first,
    the_server_relays_inner_tls_without_reading_it,
);
