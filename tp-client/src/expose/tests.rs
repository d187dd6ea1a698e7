//! `tp expose` against the canned reverse-tunnel server, over QUIC and
//! TLS/TCP: relaying to a local echo, a service reached end to end, `--allow`,
//! the PROXY header, registering again, final and retried refusals.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proxy_header::{ParseConfig, ProxiedAddress, ProxyHeader};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tp_proto::{ConnectTarget, Host, ListenKind};

use super::*;
use crate::addr::Target;
use crate::e2e::{AllowPattern, E2eError};
use crate::stdio::{BridgeError, run_with};
use crate::testutil::{ClientEnd, Pki, Reverse, ServerSetup, Stream, connector_as, connector_via};
use crate::transport::Transport;

const BOTH: [Transport; 2] = [Transport::Quic, Transport::Tcp];

fn peer() -> SocketAddr {
    "198.51.100.7:50123".parse().unwrap()
}

fn public_to() -> SocketAddr {
    "192.0.2.1:2222".parse().unwrap()
}

/// A local TCP echo service; returns its port.
async fn local_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

fn service(name: &str, allow: &[&str]) -> Mode {
    Mode::Service {
        name: ServiceName::parse(name).unwrap(),
        allow: AllowList::new(
            allow
                .iter()
                .map(|p| AllowPattern::parse(p).unwrap())
                .collect(),
        ),
    }
}

fn public(proxy_protocol: bool) -> Mode {
    Mode::Public {
        port: 2222,
        proxy_protocol,
    }
}

/// A running `tp expose` (as alice) and what stops it.
struct Exposing {
    task: JoinHandle<Result<(), ExposeError>>,
    stop: oneshot::Sender<()>,
    /// How often `run` read the credentials again (once per re-registration).
    renewals: Arc<AtomicUsize>,
}

impl Exposing {
    async fn stop(self) -> Result<(), ExposeError> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("tp expose stops")
            .unwrap()
    }
}

fn expose(
    pki: &Pki,
    server: &Reverse,
    transport: Transport,
    mode: Mode,
    local_port: u16,
) -> Exposing {
    expose_with(
        pki,
        server,
        transport,
        mode,
        local_port,
        Heartbeat::default(),
    )
}

fn expose_with(
    pki: &Pki,
    server: &Reverse,
    transport: Transport,
    mode: Mode,
    local_port: u16,
    heartbeat: Heartbeat,
) -> Exposing {
    let port = server.addr.port();
    let connector = connector_via(pki, pki, port, transport);
    let pki = pki.clone();
    let renewals = Arc::new(AtomicUsize::new(0));
    let counted = renewals.clone();
    let renew = move || {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok(connector_via(&pki, &pki, port, transport))
    };
    let options = ExposeOptions {
        local_host: Host::Ip([127, 0, 0, 1].into()),
        local_port,
        mode,
        heartbeat,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(connector, renew, options, async move {
        let _ = stopped.await;
    }));
    Exposing {
        task,
        stop,
        renewals,
    }
}

/// Sends `size` bytes through `stream` (half-closing after them) and checks
/// that the same bytes come back (the local echo) before its EOF.
async fn echo_through(stream: Stream, size: usize, seed: u8) {
    let payload: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(seed)).collect();
    let (mut r, mut w) = tokio::io::split(stream);
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut back))
        .await
        .expect("the echo ends")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), payload.len());
    assert_eq!(Sha256::digest(&back), Sha256::digest(&payload));
}

#[tokio::test]
async fn incoming_connections_are_relayed_to_the_local_service_both_ways() {
    let pki = Pki::new("test CA");
    let echo = local_echo().await;
    for transport in BOTH {
        let mut server = Reverse::start(ServerSetup::trusting(&pki)).await;
        let exposing = expose(&pki, &server, transport, public(false), echo);
        server.ctl.registered(1).await;
        let Hello::Listen(listen) = server.next_hello().await else {
            panic!("not a listen");
        };
        assert_eq!(listen.kind, ListenKind::Port(2222));
        assert_eq!(server.ctl.over_quic(), transport == Transport::Quic);
        // Several at once, each checksummed both ways.
        let mut runs = Vec::new();
        for i in 0..6u8 {
            let ctl = server.ctl.clone();
            runs.push(tokio::spawn(async move {
                let stream = ctl.incoming(peer(), public_to()).await;
                echo_through(stream, 300_000 + usize::from(i) * 1000, i + 1).await;
            }));
        }
        for run in runs {
            run.await.unwrap();
        }
        exposing.stop().await.unwrap();
    }
}

/// Runs `tp alice-laptop 22` as bob through the stdio bridge, sending
/// `input`; returns what came back, or the error.
async fn call_service(
    pki: &Pki,
    server: &Reverse,
    transport: Transport,
    input: &[u8],
) -> Result<Vec<u8>, String> {
    let caller = connector_as(
        &pki.bob,
        pki,
        pki,
        server.addr.port(),
        transport,
        Duration::from_secs(5),
    );
    let (mut stdin_w, stdin) = duplex(64 * 1024);
    let (stdout, mut stdout_r) = duplex(1024 * 1024);
    stdin_w.write_all(input).await.unwrap();
    drop(stdin_w);
    let target = Target::parse("alice-laptop:22").unwrap();
    let no_signal = || Ok::<_, BridgeError>(std::future::pending::<&'static str>());
    let bridged = tokio::time::timeout(
        Duration::from_secs(20),
        run_with(&caller, &target, stdin, stdout, no_signal),
    )
    .await
    .expect("the bridge ends");
    bridged.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    stdout_r.read_to_end(&mut out).await.unwrap();
    Ok(out)
}

#[tokio::test]
async fn a_service_runs_tls_end_to_end_and_the_server_sees_no_plaintext() {
    let pki = Pki::new("test CA");
    let echo = local_echo().await;
    let marker = b"PLAINTEXT-MARKER-7f3a9c".repeat(100);
    for transport in BOTH {
        let mut server = Reverse::start(ServerSetup::trusting(&pki)).await;
        let exposing = expose(&pki, &server, transport, service("alice-laptop", &[]), echo);
        server.ctl.registered(1).await;
        let Hello::Listen(listen) = server.next_hello().await else {
            panic!("not a listen");
        };
        assert_eq!(listen.kind, ListenKind::Name("alice-laptop".into()));

        let out = call_service(&pki, &server, transport, &marker)
            .await
            .unwrap();
        assert_eq!(out, marker, "{transport:?}: the echo came back whole");
        let Hello::Connect(connect) = server.next_hello().await else {
            panic!("not a connect");
        };
        assert_eq!(
            connect.target,
            ConnectTarget::Service {
                name: "alice-laptop".into(),
                port: Some(22)
            }
        );
        let relayed = server.ctl.relayed();
        assert!(
            relayed.len() > marker.len(),
            "{transport:?}: the server relayed it"
        );
        assert!(
            !relayed.windows(16).any(|w| w == &marker[..16]),
            "{transport:?}: the server saw plaintext"
        );
        exposing.stop().await.unwrap();
    }
}

#[tokio::test]
async fn allow_refuses_other_identities_and_admits_by_group() {
    let pki = Pki::new("test CA");
    let echo = local_echo().await;
    for transport in BOTH {
        let server = Reverse::start(ServerSetup::trusting(&pki)).await;
        let allow = ["carol@corp", "group:ops"];
        let exposing = expose(
            &pki,
            &server,
            transport,
            service("alice-laptop", &allow),
            echo,
        );
        server.ctl.registered(1).await;

        let caller = connector_as(
            &pki.bob,
            &pki,
            &pki,
            server.addr.port(),
            transport,
            Duration::from_secs(5),
        );
        let target = Target::parse("alice-laptop:22").unwrap();
        let err = caller.open_link(&target).await.unwrap_err();
        assert!(
            matches!(
                &err,
                ConnectError::EndToEnd {
                    source: E2eError::Refused,
                    ..
                }
            ),
            "{transport:?}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            "service alice-laptop: the exposing side refused your certificate (--allow)"
        );
        assert_eq!(err.exit_status(), crate::exit::LOCAL);

        // The server puts bob in ops: now he is let in.
        server.ctl.set_groups(&["ops"]);
        let mut link = caller.open_link(&target).await.unwrap();
        link.write_all(b"hi").await.unwrap();
        link.shutdown().await.unwrap();
        let mut back = Vec::new();
        link.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"hi");
        exposing.stop().await.unwrap();
    }
}

#[tokio::test]
async fn public_mode_sends_a_proxy_v2_header_first() {
    let pki = Pki::new("test CA");
    let local = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local_port = local.local_addr().unwrap().port();
    for transport in BOTH {
        let server = Reverse::start(ServerSetup::trusting(&pki)).await;
        let exposing = expose(&pki, &server, transport, public(true), local_port);
        server.ctl.registered(1).await;
        let ctl = server.ctl.clone();
        let caller = tokio::spawn(async move {
            let mut stream = ctl.incoming(peer(), public_to()).await;
            stream.write_all(b"hello").await.unwrap();
            stream.shutdown().await.unwrap();
            let mut back = Vec::new();
            stream.read_to_end(&mut back).await.unwrap();
            back
        });
        let (mut conn, _) = local.accept().await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut got))
            .await
            .expect("the caller's EOF arrives")
            .unwrap();
        let (header, len) = ProxyHeader::parse(&got, ParseConfig::default()).unwrap();
        assert!(got.starts_with(b"\r\n\r\n\0\r\nQUIT\n"), "a v2 header");
        assert_eq!(
            header.proxied_address(),
            Some(&ProxiedAddress::stream(peer(), public_to()))
        );
        assert_eq!(&got[len..], b"hello");
        conn.write_all(b"world").await.unwrap();
        conn.shutdown().await.unwrap();
        assert_eq!(caller.await.unwrap(), b"world");
        exposing.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_cut_control_channel_registers_again() {
    let pki = Pki::new("test CA");
    let echo = local_echo().await;
    for transport in BOTH {
        let mut server = Reverse::start(ServerSetup::trusting(&pki)).await;
        let exposing = expose(&pki, &server, transport, public(false), echo);
        server.ctl.registered(1).await;
        assert_eq!(exposing.renewals.load(Ordering::SeqCst), 0);
        server.ctl.cut();
        server.ctl.registered(2).await;
        for _ in 0..2 {
            assert!(matches!(server.next_hello().await, Hello::Listen(_)));
        }
        // The second registration read the certificate files again.
        assert_eq!(exposing.renewals.load(Ordering::SeqCst), 1);
        // The new registration serves.
        let stream = server.ctl.incoming(peer(), public_to()).await;
        echo_through(stream, 10_000, 3).await;
        exposing.stop().await.unwrap();
    }
}

#[tokio::test]
async fn heartbeats_are_sent_and_a_silent_server_is_left_for_a_new_registration() {
    let pki = Pki::new("test CA");
    // The canned server never pings: after `dead_after` the client gives up
    // on the channel and registers again.
    let heartbeat = Heartbeat {
        ping_every: Duration::from_millis(100),
        dead_after: Duration::from_millis(700),
    };
    for transport in BOTH {
        let server = Reverse::start(ServerSetup::trusting(&pki)).await;
        let exposing = expose_with(&pki, &server, transport, public(false), 9, heartbeat);
        server.ctl.registered(1).await;
        server.ctl.registered(2).await;
        assert!(
            server.ctl.pings() >= 4,
            "{transport:?}: {} pings",
            server.ctl.pings()
        );
        exposing.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_local_service_that_is_down_aborts_only_that_connection() {
    let pki = Pki::new("test CA");
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    for transport in BOTH {
        let server = Reverse::start(ServerSetup::trusting(&pki)).await;
        let exposing = expose(&pki, &server, transport, public(false), dead_port);
        server.ctl.registered(1).await;
        for _ in 0..2 {
            let mut stream = server.ctl.incoming(peer(), public_to()).await;
            let mut rest = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
                .await
                .expect("the tunnel ends");
            let how = match read {
                Ok(_) => ClientEnd::Finished,
                Err(e) => ClientEnd::of(&e),
            };
            let want = match transport {
                Transport::Quic => ClientEnd::Reset(1),
                _ => ClientEnd::Dropped,
            };
            assert_eq!(how, want, "{transport:?}");
        }
        assert!(!exposing.task.is_finished(), "the registration goes on");
        exposing.stop().await.unwrap();
    }
}

#[tokio::test]
async fn conflict_is_final_and_busy_is_retried() {
    let pki = Pki::new("test CA");
    let server = Reverse::start(ServerSetup::trusting(&pki)).await;
    server.ctl.answer_listen(Some("conflict"));
    let exposing = expose(
        &pki,
        &server,
        Transport::Tcp,
        service("alice-laptop", &[]),
        9,
    );
    let err = tokio::time::timeout(Duration::from_secs(10), exposing.task)
        .await
        .expect("a conflict ends tp expose")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.exit_status(), 20);
    assert_eq!(err.to_string(), "conflict: nope");

    let mut server = Reverse::start(ServerSetup::trusting(&pki)).await;
    server.ctl.answer_listen(Some("busy"));
    let exposing = expose(
        &pki,
        &server,
        Transport::Tcp,
        service("alice-laptop", &[]),
        9,
    );
    for _ in 0..2 {
        assert!(matches!(server.next_hello().await, Hello::Listen(_)));
    }
    server.ctl.answer_listen(None);
    server.ctl.registered(1).await;
    exposing.stop().await.unwrap();
}

#[test]
fn which_refusals_are_retried() {
    assert_eq!(backoff(1), Duration::from_millis(250));
    assert_eq!(backoff(3), Duration::from_secs(1));
    assert!(retryable(&ConnectError::Refused {
        code: ErrorCode::Busy,
        message: String::new()
    }));
    for code in [
        ErrorCode::Conflict,
        ErrorCode::Denied,
        ErrorCode::Unsupported,
    ] {
        assert!(!retryable(&ConnectError::Refused {
            code,
            message: String::new()
        }));
    }
    assert_eq!(STABLE_AFTER, Duration::from_secs(10));
}

#[tokio::test]
async fn tp_up_reaches_a_service_end_to_end() {
    let pki = Pki::new("test CA");
    let echo = local_echo().await;
    let server = Reverse::start(ServerSetup::trusting(&pki)).await;
    let exposing = expose(
        &pki,
        &server,
        Transport::Quic,
        service("alice-laptop", &[]),
        echo,
    );
    server.ctl.registered(1).await;
    let caller = connector_as(
        &pki.bob,
        &pki,
        &pki,
        server.addr.port(),
        Transport::Quic,
        Duration::from_secs(5),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let target = Target::parse("alice-laptop:22").unwrap();
    let up = tokio::spawn(crate::up::serve(
        listener,
        Arc::new(caller),
        target,
        async move {
            let _ = stopped.await;
        },
    ));
    let mut conn = tokio::net::TcpStream::connect(local).await.unwrap();
    conn.write_all(b"through tp up").await.unwrap();
    conn.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut back))
        .await
        .expect("the echo ends")
        .unwrap();
    assert_eq!(back, b"through tp up");
    assert!(
        !server
            .ctl
            .relayed()
            .windows(13)
            .any(|w| w == b"through tp up")
    );
    stop.send(()).unwrap();
    up.await.unwrap();
    exposing.stop().await.unwrap();
}
