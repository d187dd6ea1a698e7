//! `tp up --udp` against the canned servers (TLS/TCP and QUIC on one port),
//! with local applications as UDP sockets.

use std::io::Write;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tp_proto::{Connect, Hello, Proto};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::MakeWriter;

use super::*;
use crate::testutil::{Behaviour, Dual, Pki, ServerSetup, connector_via, start_dual};
use crate::transport::Transport;

const LONG: Duration = Duration::from_secs(10);

/// Log lines written while the guard lives (the tests' runtime runs every
/// task on the test's thread).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> (Logs, DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }

    /// Waits (bounded) until `needle` was logged.
    async fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + LONG;
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "never logged {needle:?}:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The sum of `field=N` over the lines that contain `line`.
    fn sum(&self, line: &str, field: &str) -> u64 {
        let key = format!("{field}=");
        self.text()
            .lines()
            .filter(|l| l.contains(line))
            .filter_map(|l| {
                let at = l.find(&key)? + key.len();
                let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
                digits.parse::<u64>().ok()
            })
            .sum()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// `serve` on 127.0.0.1:0 in front of a canned server on both transports.
struct Up {
    local: SocketAddr,
    server: Dual,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn start(pki: &Pki, behaviour: Behaviour, transport: Transport, options: UdpOptions) -> Up {
    let setup = ServerSetup::trusting(pki);
    let server = start_dual(setup, behaviour).await;
    let connector = Arc::new(connector_via(pki, pki, server.addr.port(), transport));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(socket, connector, target(), options, async move {
        let _ = stopped.await;
    }));
    Up {
        local,
        server,
        stop,
        task,
    }
}

impl Up {
    async fn stop(self) -> Dual {
        self.stop.send(()).unwrap();
        tokio::time::timeout(LONG, self.task)
            .await
            .expect("serve stops on shutdown")
            .unwrap();
        self.server
    }
}

fn target() -> Target {
    Target::parse("dns1.internal:53").unwrap()
}

fn udp_hello() -> Hello {
    Hello::Connect(Connect {
        proto: Proto::Udp,
        target: tp_proto::ConnectTarget::Addr {
            host: tp_proto::Host::parse("dns1.internal").unwrap(),
            port: 53,
        },
    })
}

/// An application: a UDP socket on 127.0.0.1.
async fn app() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Sends `payload` from `app` to `local` and returns what came back.
async fn round_trip(app: &UdpSocket, local: SocketAddr, payload: &[u8]) -> Vec<u8> {
    app.send_to(payload, local).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, from) = tokio::time::timeout(LONG, app.recv_from(&mut buf))
        .await
        .expect("the echo comes back")
        .unwrap();
    assert_eq!(from, local, "replies come from the local socket");
    buf.truncate(n);
    buf
}

/// A datagram of `len` bytes whose content depends on `seed`.
fn datagram(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (j as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) as u8)
        .collect()
}

/// Small and large datagrams (over QUIC the small ones fit a QUIC datagram,
/// the large ones go as frames).
const SIZES: [usize; 9] = [0, 1, 100, 1000, 1100, 1300, 4000, 20_000, 65_000];

async fn checksummed_echo(up: &Up, app: &UdpSocket) {
    for (i, len) in SIZES.into_iter().enumerate() {
        let sent = datagram(i as u32, len);
        let got = round_trip(app, up.local, &sent).await;
        assert_eq!(got.len(), len, "datagram {i}: boundaries kept");
        assert_eq!(Sha256::digest(&got), Sha256::digest(&sent), "datagram {i}");
    }
}

#[tokio::test]
async fn udp_echo_over_tls_tcp() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new("test CA");
    let mut up = start(
        &pki,
        Behaviour::UdpEcho,
        Transport::Tcp,
        UdpOptions::default(),
    )
    .await;
    let app = app().await;
    checksummed_echo(&up, &app).await;
    assert_eq!(up.server.hellos.recv().await.unwrap(), udp_hello());
    let server = up.stop().await;
    assert_eq!(server.quic.connections(), 0, "TLS/TCP only");
    logs.wait_for("UDP flow closed: stopping").await;
    let closed = "UDP flow closed";
    assert_eq!(logs.sum(closed, "datagrams.up"), SIZES.len() as u64);
    assert_eq!(logs.sum(closed, "datagrams.down"), SIZES.len() as u64);
    assert_eq!(
        logs.sum(closed, "bytes.up"),
        SIZES.iter().sum::<usize>() as u64
    );
    assert_eq!(logs.sum(closed, "datagrams.up_quic"), 0);
    assert!(
        logs.text().contains("UDP flow open transport=tcp"),
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn udp_echo_over_quic_uses_datagrams_and_frames() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new("test CA");
    let mut up = start(
        &pki,
        Behaviour::UdpEcho,
        Transport::Quic,
        UdpOptions::default(),
    )
    .await;
    let app = app().await;
    checksummed_echo(&up, &app).await;
    assert_eq!(up.server.hellos.recv().await.unwrap(), udp_hello());
    let server = up.stop().await;
    assert_eq!(server.quic.connections(), 1);
    logs.wait_for("UDP flow closed: stopping").await;
    let closed = "UDP flow closed";
    assert_eq!(logs.sum(closed, "datagrams.up"), SIZES.len() as u64);
    assert_eq!(logs.sum(closed, "datagrams.down"), SIZES.len() as u64);
    // 0 to 1100 bytes fit a QUIC datagram; 4000 and more never do.
    let up_quic = logs.sum(closed, "datagrams.up_quic");
    let down_quic = logs.sum(closed, "datagrams.down_quic");
    assert!((4..=6).contains(&up_quic), "{up_quic}: {}", logs.text());
    assert!((4..=6).contains(&down_quic), "{down_quic}: {}", logs.text());
}

#[tokio::test]
async fn two_sources_get_separate_flows_on_one_quic_connection() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new("test CA");
    let mut up = start(
        &pki,
        Behaviour::UdpEcho,
        Transport::Quic,
        UdpOptions::default(),
    )
    .await;
    let (a, b) = (app().await, app().await);
    for round in 0..10u32 {
        // Small (QUIC datagrams) and large (frames), so both paths are routed.
        let len = if round % 2 == 0 { 200 } else { 3000 };
        let (to_a, to_b) = (datagram(round, len), datagram(round + 1000, len));
        a.send_to(&to_a, up.local).await.unwrap();
        b.send_to(&to_b, up.local).await.unwrap();
        let mut buf = vec![0u8; 65_536];
        for (app, want) in [(&a, &to_a), (&b, &to_b)] {
            let (n, _) = tokio::time::timeout(LONG, app.recv_from(&mut buf))
                .await
                .expect("each source gets its own echo")
                .unwrap();
            assert_eq!(&buf[..n], &want[..], "round {round}");
        }
    }
    for _ in 0..2 {
        assert_eq!(up.server.hellos.recv().await.unwrap(), udp_hello());
    }
    assert!(
        up.server.hellos.try_recv().is_err(),
        "two flows, two hellos"
    );
    let server = up.stop().await;
    assert_eq!(server.quic.connections(), 1, "one QUIC connection");
    logs.wait_for("UDP flow closed: stopping").await;
    assert_eq!(logs.count("UDP flow open"), 2);
}

#[tokio::test]
async fn an_idle_flow_closes_and_the_next_datagram_opens_another() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new("test CA");
    let options = UdpOptions {
        idle: Duration::from_millis(300),
        ..UdpOptions::default()
    };
    let mut up = start(&pki, Behaviour::UdpEcho, Transport::Quic, options).await;
    let app = app().await;
    assert_eq!(round_trip(&app, up.local, b"first").await, b"first");
    logs.wait_for("UDP flow closed: idle for 300ms").await;
    assert_eq!(round_trip(&app, up.local, b"second").await, b"second");
    for _ in 0..2 {
        assert_eq!(up.server.hellos.recv().await.unwrap(), udp_hello());
    }
    let server = up.stop().await;
    assert_eq!(
        server.quic.connections(),
        1,
        "the flows shared the connection"
    );
}

#[tokio::test]
async fn a_refused_udp_tunnel_is_reported_once_per_source() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new("test CA");
    let mut up = start(&pki, Behaviour::Deny, Transport::Tcp, UdpOptions::default()).await;
    let (a, b) = (app().await, app().await);
    a.send_to(b"x", up.local).await.unwrap();
    let refused = "UDP tunnel to dns1.internal:53 refused: denied: nope";
    logs.wait_for(refused).await;
    assert_eq!(up.server.hellos.recv().await.unwrap(), udp_hello());
    for _ in 0..3 {
        a.send_to(b"again", up.local).await.unwrap();
    }
    b.send_to(b"y", up.local).await.unwrap();
    let deadline = Instant::now() + LONG;
    while logs.count(refused) < 2 {
        assert!(Instant::now() < deadline, "b's refusal: {}", logs.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give a's repeats time to be (wrongly) tried; they are dropped instead.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(logs.count(refused), 2, "{}", logs.text());
    assert_eq!(up.server.hellos.recv().await.unwrap(), udp_hello());
    assert!(
        up.server.hellos.try_recv().is_err(),
        "a is not retried at once"
    );
    let mut buf = [0u8; 64];
    let nothing = tokio::time::timeout(Duration::from_millis(100), a.recv_from(&mut buf)).await;
    assert!(nothing.is_err(), "no reply to a refused source");
    up.stop().await;
}

#[tokio::test]
async fn sources_beyond_the_flow_limit_are_dropped_with_a_warning() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new("test CA");
    let options = UdpOptions {
        max_flows: 1,
        ..UdpOptions::default()
    };
    let up = start(&pki, Behaviour::UdpEcho, Transport::Tcp, options).await;
    let (a, b) = (app().await, app().await);
    assert_eq!(round_trip(&a, up.local, b"a").await, b"a");
    b.send_to(b"b", up.local).await.unwrap();
    logs.wait_for("UDP flow limit reached (1 open)").await;
    assert!(logs.text().contains(&b.local_addr().unwrap().to_string()));
    let mut buf = [0u8; 64];
    let nothing = tokio::time::timeout(Duration::from_millis(100), b.recv_from(&mut buf)).await;
    assert!(nothing.is_err(), "no flow for b");
    assert_eq!(
        round_trip(&a, up.local, b"a2").await,
        b"a2",
        "a keeps its flow"
    );
    up.stop().await;
}

#[tokio::test]
async fn run_reports_a_udp_port_in_use() {
    let pki = Pki::new("test CA");
    let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = run(
        Arc::new(connector_via(&pki, &pki, 1, Transport::Tcp)),
        target(),
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        port,
        UdpOptions::default(),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().starts_with("cannot listen on 127.0.0.1:"),
        "{err}"
    );
}

#[tokio::test]
async fn stopping_delivers_every_queued_frame_and_the_end() {
    use crate::testutil::{ClientEnd, Ended, QuicServer, Reports, UdpRelay};
    let pki = Pki::new("test CA");
    let setup = ServerSetup::trusting(&pki);
    let (hellos, _) = tokio::sync::mpsc::unbounded_channel();
    let (ends, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let reports = Reports { hellos, ends };
    let server = QuicServer::start(setup, Behaviour::UdpEcho, 0, reports).unwrap();
    // A path with a round trip of 100 ms: at stop time most of the frames are
    // still to be sent (the congestion window grows with acknowledgements).
    let path = UdpRelay::start_delayed(server.local_addr(), Duration::from_millis(100)).await;
    let connector = Arc::new(connector_via(&pki, &pki, path.addr.port(), Transport::Quic));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    // As `run` does: serve, then close the QUIC connection at once.
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        serve(
            socket,
            connector.clone(),
            target(),
            UdpOptions::default(),
            shutdown,
        )
        .await;
        connector.close().await;
    });
    let app = app().await;
    // Open the flow (a small datagram: a QUIC datagram, not on the stream).
    assert_eq!(round_trip(&app, local, b"open").await, b"open");
    // Too large for QUIC datagrams: frames on the stream.
    const FRAMES: u64 = 20;
    const LEN: usize = 3000;
    for i in 0..FRAMES {
        app.send_to(&datagram(i as u32, LEN), local).await.unwrap();
    }
    // Let the dispatcher queue them before it is told to stop.
    tokio::time::sleep(Duration::from_millis(20)).await;
    stop.send(()).unwrap();
    tokio::time::timeout(LONG, task)
        .await
        .expect("stops")
        .unwrap();
    let end = tokio::time::timeout(LONG, ended.recv())
        .await
        .expect("the server sees the flow end")
        .unwrap();
    assert_eq!(
        end,
        Ended {
            how: ClientEnd::Finished,
            bytes: FRAMES * (2 + LEN as u64),
        },
        "every frame and the FIN reach the server before the connection closes"
    );
}

#[tokio::test]
async fn a_forgotten_connection_closes_when_its_last_flow_ends() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new("test CA");
    let setup = ServerSetup::trusting(&pki);
    let server = start_dual(setup, Behaviour::UdpEcho).await;
    let connector = Arc::new(connector_via(
        &pki,
        &pki,
        server.addr.port(),
        Transport::Quic,
    ));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let options = UdpOptions {
        idle: Duration::from_millis(300),
        ..UdpOptions::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        socket,
        connector.clone(),
        target(),
        options,
        async move {
            let _ = stopped.await;
        },
    ));
    let app = app().await;
    assert_eq!(round_trip(&app, local, b"one").await, b"one");
    // As after a false alarm of the probe: the flow keeps the connection,
    // nothing else does.
    connector.forget_quic().await;
    logs.wait_for("UDP flow closed: idle for 300ms").await;
    let closed = tokio::time::timeout(LONG, server.quic.closed(0))
        .await
        .expect("the forgotten connection closes with its last flow");
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), 0);
        }
        other => panic!("{other:?}"),
    }
    // The next flow dials a new connection.
    assert_eq!(round_trip(&app, local, b"two").await, b"two");
    assert_eq!(server.quic.connections(), 2);
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[test]
fn the_flow_limit_is_below_the_servers_tunnel_limit_and_documented() {
    // The server's default max_tunnels_per_identity is 1000.
    const { assert!(MAX_FLOWS < 1000) };
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/client.md");
    let docs = std::fs::read_to_string(path).expect("docs/client.md exists");
    assert!(
        docs.contains(&format!("At most {MAX_FLOWS} flows at once")),
        "docs/client.md gives another flow limit"
    );
}
