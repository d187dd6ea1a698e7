//! A canned server for reverse tunnels, speaking docs/protocol.md's `listen`,
//! `accept` and `connect` to a service, over TLS/TCP and QUIC at one port
//! number. It holds one registration at a time (a new one replaces the old,
//! whose control channel it then closes), and a test drives it through
//! [`Control`]: make incoming connections, cut the control channel, refuse
//! the next `listen`. A `connect` to a service is spliced to a new incoming
//! connection of the registration, and every byte spliced is kept, so a test
//! can check the server saw only ciphertext.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Endpoint};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tp_net::message::{ReadMessageError, read_message};
use tp_proto::{
    Accept, Connect, ConnectTarget, Event, Hello, Incoming, decode_event, decode_hello,
    encode_event,
};

use super::{CannedStream, ServerSetup, server_config};

/// A stream of the canned server: a caller's tunnel or an incoming
/// connection's, over either transport.
pub(crate) type Stream = Box<dyn CannedStream + Send>;

impl CannedStream for Stream {
    fn abort(&mut self) {
        self.as_mut().abort();
    }
}

/// The reverse-tunnel server; it runs until the test's runtime ends.
pub(crate) struct Reverse {
    /// TCP and UDP port (same number).
    pub(crate) addr: SocketAddr,
    /// Every hello read, in order.
    pub(crate) hellos: mpsc::UnboundedReceiver<Hello>,
    /// Drives the server.
    pub(crate) ctl: Control,
    _endpoint: Endpoint,
}

/// A handle on the server's state, for tests (cheap to clone).
#[derive(Clone)]
pub(crate) struct Control(Arc<Shared>);

struct Shared {
    /// The answer to the next `listen`s: `None` is ok, else this error code.
    listen_answer: Mutex<Option<&'static str>>,
    registration: Mutex<Option<Registration>>,
    /// How many registrations were answered ok so far.
    registered: watch::Sender<usize>,
    /// `accept` sessions the server announced and waits for.
    pending: Mutex<HashMap<String, oneshot::Sender<Stream>>>,
    /// Every byte spliced between a caller and the exposing side.
    relayed: Mutex<Vec<u8>>,
    /// The groups announced for callers.
    groups: Mutex<Vec<String>>,
    sessions: AtomicU64,
    pings: AtomicUsize,
}

#[derive(Clone)]
struct Registration {
    /// The QUIC connection that carries the control stream, over QUIC.
    quic: Option<Connection>,
    /// Lines to send on the control channel.
    events: mpsc::UnboundedSender<Event>,
    /// Cuts the control channel abruptly.
    cut: Arc<Notify>,
}

/// Who is on the other end of a connection.
struct Peer {
    identity: String,
    addr: SocketAddr,
    quic: Option<Connection>,
}

impl Reverse {
    /// Starts the server on 127.0.0.1, TCP and UDP at one port number.
    pub(crate) async fn start(setup: ServerSetup<'_>) -> Reverse {
        let (registered, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            listen_answer: Mutex::new(None),
            registration: Mutex::new(None),
            registered,
            pending: Mutex::new(HashMap::new()),
            relayed: Mutex::new(Vec::new()),
            groups: Mutex::new(Vec::new()),
            sessions: AtomicU64::new(1),
            pings: AtomicUsize::new(0),
        });
        let (hello_tx, hellos) = mpsc::unbounded_channel();
        let config = Arc::new(server_config(setup));
        for _ in 0..20 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let crypto = QuicServerConfig::try_from(config.clone()).unwrap();
            let quic = quinn::ServerConfig::with_crypto(Arc::new(crypto));
            let Ok(endpoint) = Endpoint::server(quic, addr) else {
                continue;
            };
            serve_quic(endpoint.clone(), shared.clone(), hello_tx.clone());
            serve_tcp(listener, config.clone(), shared.clone(), hello_tx);
            return Reverse {
                addr,
                hellos,
                ctl: Control(shared),
                _endpoint: endpoint,
            };
        }
        panic!("no port number free on both TCP and UDP");
    }

    /// The next hello, waiting at most 10 seconds.
    pub(crate) async fn next_hello(&mut self) -> Hello {
        tokio::time::timeout(Duration::from_secs(10), self.hellos.recv())
            .await
            .expect("a hello arrives")
            .expect("the server runs")
    }
}

impl Control {
    /// Answers the next `listen`s with this error code (`None`: ok).
    pub(crate) fn answer_listen(&self, code: Option<&'static str>) {
        *self.0.listen_answer.lock().unwrap() = code;
    }

    /// The groups announced for callers from now on.
    pub(crate) fn set_groups(&self, groups: &[&str]) {
        *self.0.groups.lock().unwrap() = groups.iter().map(|g| g.to_string()).collect();
    }

    /// Waits (at most 10 seconds) until `n` registrations were answered ok.
    pub(crate) async fn registered(&self, n: usize) {
        let mut rx = self.0.registered.subscribe();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|&count| count >= n))
            .await
            .unwrap_or_else(|_| panic!("registration {n} did not happen"))
            .unwrap();
    }

    /// Whether the current registration came over QUIC.
    pub(crate) fn over_quic(&self) -> bool {
        let registration = self.0.registration.lock().unwrap();
        registration.as_ref().expect("registered").quic.is_some()
    }

    /// Cuts the current registration's control channel abruptly (a QUIC
    /// reset, or a TLS connection dropped), as a network failure would.
    pub(crate) fn cut(&self) {
        let registration = self.0.registration.lock().unwrap().take();
        registration.expect("registered").cut.notify_one();
    }

    /// How many pings arrived on control channels.
    pub(crate) fn pings(&self) -> usize {
        self.0.pings.load(Ordering::SeqCst)
    }

    /// Everything spliced between callers and the exposing side so far.
    pub(crate) fn relayed(&self) -> Vec<u8> {
        self.0.relayed.lock().unwrap().clone()
    }

    /// A public-mode connection from `peer` to `to`: the server's end of it.
    pub(crate) async fn incoming(&self, peer: SocketAddr, to: SocketAddr) -> Stream {
        self.0
            .incoming(None, peer, Some(to))
            .await
            .expect("the exposing client takes the connection")
    }
}

impl Shared {
    /// Announces a connection to the registration and returns the server's
    /// end of its stream, or `None` if there is no registration or the
    /// exposing client did not take it.
    async fn incoming(
        &self,
        from: Option<String>,
        peer: SocketAddr,
        to: Option<SocketAddr>,
    ) -> Option<Stream> {
        let registration = self.registration.lock().unwrap().clone()?;
        let session = format!("{:032x}", self.sessions.fetch_add(1, Ordering::SeqCst));
        let groups = self.groups.lock().unwrap().clone();
        let event = Event::Incoming(Incoming {
            session: session.clone(),
            from,
            groups,
            peer,
            to,
        });
        match registration.quic {
            Some(conn) => {
                // Without the client's stream credit this would wait forever.
                let opening = tokio::time::timeout(Duration::from_secs(10), conn.open_bi());
                let (mut send, recv) = opening.await.ok()?.ok()?;
                let mut line = Vec::new();
                encode_event(&event, &mut line);
                send.write_all(&line).await.ok()?;
                Some(Box::new(tp_net::quic::stream(send, recv)))
            }
            None => {
                let (tx, rx) = oneshot::channel();
                self.pending.lock().unwrap().insert(session, tx);
                registration.events.send(event).ok()?;
                tokio::time::timeout(Duration::from_secs(10), rx)
                    .await
                    .ok()?
                    .ok()
            }
        }
    }
}

fn serve_quic(endpoint: Endpoint, shared: Arc<Shared>, hellos: mpsc::UnboundedSender<Hello>) {
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let (shared, hellos) = (shared.clone(), hellos.clone());
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else {
                    return;
                };
                let identity = conn
                    .peer_identity()
                    .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
                    .and_then(|certs| certs.first().map(identity_of))
                    .unwrap_or_default();
                while let Ok((send, recv)) = conn.accept_bi().await {
                    let peer = Peer {
                        identity: identity.clone(),
                        addr: conn.remote_address(),
                        quic: Some(conn.clone()),
                    };
                    let stream = tp_net::quic::stream(send, recv);
                    tokio::spawn(tunnel(stream, peer, shared.clone(), hellos.clone()));
                }
            });
        }
    });
}

fn serve_tcp(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    hellos: mpsc::UnboundedSender<Hello>,
) {
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, addr)) = listener.accept().await {
            let (acceptor, shared, hellos) = (acceptor.clone(), shared.clone(), hellos.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let identity = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first().map(identity_of))
                    .unwrap_or_default();
                let peer = Peer {
                    identity,
                    addr,
                    quic: None,
                };
                tunnel(tls, peer, shared, hellos).await;
            });
        }
    });
}

fn identity_of(cert: &CertificateDer<'_>) -> String {
    policy::Identity::from_cert_der(cert)
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default()
}

const OK: &[u8] = b"{\"v\":1,\"ok\":true}\n";

fn refusal(code: &str) -> Vec<u8> {
    format!("{{\"v\":1,\"ok\":false,\"code\":\"{code}\",\"message\":\"nope\"}}\n").into_bytes()
}

/// One tunnel: read the hello, then act on it.
async fn tunnel<S>(
    mut stream: S,
    peer: Peer,
    shared: Arc<Shared>,
    hellos: mpsc::UnboundedSender<Hello>,
) where
    S: CannedStream + Send + 'static,
{
    let mut buf = BytesMut::new();
    let Ok(hello) = read_message(&mut stream, &mut buf, decode_hello).await else {
        return;
    };
    let _ = hellos.send(hello.clone());
    match hello {
        Hello::Listen(_) => {
            let answer = *shared.listen_answer.lock().unwrap();
            if let Some(code) = answer {
                let _ = stream.write_all(&refusal(code)).await;
                let _ = stream.shutdown().await;
                return;
            }
            if stream.write_all(OK).await.is_err() {
                return;
            }
            let (events, rx) = mpsc::unbounded_channel();
            let cut = Arc::new(Notify::new());
            let registration = Registration {
                quic: peer.quic,
                events,
                cut: cut.clone(),
            };
            // The old registration's events sender goes: its channel closes.
            *shared.registration.lock().unwrap() = Some(registration);
            shared.registered.send_modify(|n| *n += 1);
            control(stream, buf, rx, cut, &shared).await;
        }
        Hello::Accept(Accept { session }) => {
            let waiting = shared.pending.lock().unwrap().remove(&session);
            match waiting {
                Some(tx) if stream.write_all(OK).await.is_ok() => {
                    let _ = tx.send(Box::new(stream));
                }
                _ => {
                    let _ = stream.write_all(&refusal("denied")).await;
                    let _ = stream.shutdown().await;
                }
            }
        }
        Hello::Connect(Connect {
            target: ConnectTarget::Service { .. },
            ..
        }) => {
            let Some(exposer) = shared.incoming(Some(peer.identity), peer.addr, None).await else {
                let _ = stream.write_all(&refusal("unreachable")).await;
                let _ = stream.shutdown().await;
                return;
            };
            if stream.write_all(OK).await.is_err() {
                return;
            }
            let caller: Stream = Box::new(stream);
            splice(caller, buf, exposer, &shared).await;
        }
        _ => {
            let _ = stream.write_all(&refusal("unsupported")).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// What the control channel does next.
enum Step {
    Cut,
    Send(Option<Event>),
    Line(Result<Event, ReadMessageError>),
}

/// The server's side of a control channel: counts pings, sends events,
/// until the client closes it, the registration is replaced, or it is cut.
async fn control<S: CannedStream>(
    mut stream: S,
    mut buf: BytesMut,
    mut events: mpsc::UnboundedReceiver<Event>,
    cut: Arc<Notify>,
    shared: &Shared,
) {
    loop {
        let step = tokio::select! {
            biased;
            () = cut.notified() => Step::Cut,
            event = events.recv() => Step::Send(event),
            line = read_message(&mut stream, &mut buf, decode_event) => Step::Line(line),
        };
        match step {
            Step::Cut => {
                // QUIC: reset; TLS: dropped without close_notify.
                stream.abort();
                return;
            }
            Step::Send(Some(event)) => {
                let mut line = Vec::new();
                encode_event(&event, &mut line);
                if stream.write_all(&line).await.is_err() {
                    return;
                }
            }
            Step::Send(None) => {
                // Replaced by a newer registration: closed in order.
                let _ = stream.shutdown().await;
                return;
            }
            Step::Line(Ok(Event::Ping)) => {
                shared.pings.fetch_add(1, Ordering::SeqCst);
            }
            Step::Line(Ok(_)) => {}
            Step::Line(Err(_)) => return,
        }
    }
}

/// Relays between a caller and the exposing side, keeping every byte.
async fn splice(caller: Stream, early: BytesMut, exposer: Stream, shared: &Shared) {
    let (caller_r, caller_w) = tokio::io::split(caller);
    let (exposer_r, mut exposer_w) = tokio::io::split(exposer);
    if !early.is_empty() {
        shared.relayed.lock().unwrap().extend_from_slice(&early);
        if exposer_w.write_all(&early).await.is_err() {
            return;
        }
    }
    tokio::join!(
        pump(caller_r, exposer_w, shared),
        pump(exposer_r, caller_w, shared)
    );
}

async fn pump<R, W>(mut from: R, mut to: W, shared: &Shared)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        shared
            .relayed
            .lock()
            .unwrap()
            .extend_from_slice(&chunk[..n]);
        if to.write_all(&chunk[..n]).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}
