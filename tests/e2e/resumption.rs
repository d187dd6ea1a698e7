//! No session resumption and no 0-RTT, over both transports: a client that would
//! resume (a session store, early data enabled) is never given a ticket, so every
//! connection is a full handshake whose client certificate is verified and checked
//! against the revocation list of the moment, and nothing is accepted before
//! that. A resumed TLS 1.3 session would carry the certificate of its first
//! handshake past a revocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue,
};
use rustls::{HandshakeKind, NamedGroup};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tp_server::pki::Issued;
use tp_tests::client::{ClientOptions, Reply, connect_hello, round_trip, send_hello, tls_config};
use tp_tests::process::ServerProcess;
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, pki, quic, within};

/// How long a handshake on loopback may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// rustls's in-memory session store, counting the TLS 1.3 tickets the server
/// gives (the only way a TLS 1.3 client can resume, and carry early data).
#[derive(Debug)]
struct CountingStore {
    inner: ClientSessionMemoryCache,
    tickets: AtomicUsize,
}

impl CountingStore {
    fn new() -> Arc<CountingStore> {
        Arc::new(CountingStore {
            inner: ClientSessionMemoryCache::new(32),
            tickets: AtomicUsize::new(0),
        })
    }

    fn tickets(&self) -> usize {
        self.tickets.load(Ordering::SeqCst)
    }
}

impl ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.inner.set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.inner.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.tickets.fetch_add(1, Ordering::SeqCst);
        self.inner.insert_tls13_ticket(server_name, value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(server_name)
    }
}

/// The raw client's configuration for `leaf`, but willing to resume from `store`
/// and to send early data: what a client that wants 0-RTT sets.
fn resuming_config(leaf: &Issued, store: Arc<CountingStore>) -> rustls::ClientConfig {
    let mut config = tls_config(&ClientOptions::with(leaf));
    config.resumption = Resumption::store(store);
    config.enable_early_data = true;
    config
}

/// Revokes `leaf` in the server's revocation list (`dir/revoked.txt`) and reloads.
async fn revoke_and_reload(server: &ServerProcess, dir: &std::path::Path, leaf: &Issued) {
    let path = dir.join("revoked.txt");
    let mut list = std::fs::read_to_string(&path).expect("the revocation list");
    list.push_str(&format!("{}\n", leaf.serial_hex));
    std::fs::write(&path, list).expect("writing the revocation list");
    server.reload("configuration reloaded").await;
}

/// A server process whose revocation list exists (with bob on it), so a reload
/// can add to it.
async fn server_with_a_revocation_list() -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TestServer::builder()
        .revoked(&pki().bob)
        .write_files(dir.path());
    let server = ServerProcess::start(&config).await;
    (dir, server)
}

/// The refusal of a revoked client: no answer, the tunnel ends before a byte.
fn assert_refused(reply: &Reply) {
    assert!(
        matches!(reply, Reply::Closed { partial, .. } if partial.is_empty()),
        "a revoked client got an answer: {reply:?}"
    );
}

/// The server process logged that it refused a revoked certificate.
async fn expect_revocation_refusal(server: &ServerProcess) {
    server
        .stderr
        .wait_for("a revocation refusal", |l| {
            l.contains("TLS handshake refused") && l.to_lowercase().contains("revoked")
        })
        .await;
}

#[tokio::test]
async fn tls_every_connection_is_a_full_handshake_and_a_revocation_applies_to_the_next() {
    let alice = &pki().alice;
    let (dir, server) = server_with_a_revocation_list().await;
    let target = EchoTarget::start().await;
    let store = CountingStore::new();
    let connector = TlsConnector::from(Arc::new(resuming_config(alice, store.clone())));
    let connect = || async {
        let tcp = TcpStream::connect(server.addr).await.expect("TCP connect");
        let name = ServerName::try_from("localhost").expect("name");
        within("the TLS handshake", HANDSHAKE, connector.connect(name, tcp))
            .await
            .expect("the TLS handshake")
    };

    for n in 0..2 {
        let mut tls = connect().await;
        let (_, conn) = tls.get_ref();
        assert!(
            matches!(
                conn.handshake_kind(),
                Some(HandshakeKind::Full | HandshakeKind::FullWithHelloRetryRequest)
            ),
            "connection {n}: {:?}",
            conn.handshake_kind()
        );
        assert!(!conn.is_early_data_accepted(), "connection {n}: 0-RTT");
        let reply = send_hello(&mut tls, &connect_hello("127.0.0.1", target.port())).await;
        assert_eq!(reply.code(), "ok", "connection {n}: {reply:?}");
        // To EOF: a NewSessionTicket the server sent has been read by then.
        assert_eq!(round_trip(&mut tls, b"ping").await, b"ping");
    }
    assert_eq!(store.tickets(), 0, "the server gave a session ticket");

    // Revoked and reloaded: the same client, with the same store, is refused.
    revoke_and_reload(&server, dir.path(), alice).await;
    let mut tls = connect().await;
    assert_eq!(
        tls.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Full),
        "the revoked client resumed"
    );
    assert_refused(&send_hello(&mut tls, &connect_hello("127.0.0.1", target.port())).await);
    expect_revocation_refusal(&server).await;
    assert_eq!(target.accepted(), 2);
}

#[tokio::test]
async fn quic_offers_no_0rtt_and_a_revocation_applies_to_the_next_connection() {
    let alice = &pki().alice;
    let (dir, server) = server_with_a_revocation_list().await;
    let target = EchoTarget::start().await;
    let store = CountingStore::new();
    let endpoint = quic::endpoint_with_tls(
        resuming_config(alice, store.clone()),
        quinn::TransportConfig::default(),
    );
    let connect = || async {
        let connecting = endpoint.connect(server.addr, "localhost").expect("connect");
        // 0-RTT needs a ticket from an earlier connection that allows early data.
        let connecting = match connecting.into_0rtt() {
            Ok(_) => panic!("the client could send 0-RTT data"),
            Err(connecting) => connecting,
        };
        within("the QUIC handshake", HANDSHAKE, connecting)
            .await
            .expect("the QUIC handshake")
    };

    for n in 0..2 {
        let conn = connect().await;
        let (send, recv) = conn.open_bi().await.expect("a stream");
        let mut stream = tp_net::quic::stream(send, recv);
        let reply = send_hello(&mut stream, &connect_hello("127.0.0.1", target.port())).await;
        assert_eq!(reply.code(), "ok", "connection {n}: {reply:?}");
        assert_eq!(round_trip(&mut stream, b"ping").await, b"ping");
        conn.close(0u32.into(), b"done");
    }
    assert_eq!(store.tickets(), 0, "the server gave a session ticket");

    revoke_and_reload(&server, dir.path(), alice).await;
    // The client's side of the handshake completes; the server's verdict ends the
    // connection before a stream opens, or the stream before an answer.
    let conn = connect().await;
    if let Ok((send, recv)) = conn.open_bi().await {
        let mut stream = tp_net::quic::stream(send, recv);
        assert_refused(&send_hello(&mut stream, &connect_hello("127.0.0.1", target.port())).await);
    }
    let closed = within("the refusal", HANDSHAKE, conn.closed()).await;
    assert!(
        closed.to_string().contains("Revoked"),
        "the connection ended otherwise: {closed}"
    );
    expect_revocation_refusal(&server).await;
    assert_eq!(target.accepted(), 2);
}
