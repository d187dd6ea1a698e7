//! Test fixtures: a CA made with rcgen, and a tp-speaking server on 127.0.0.1:0
//! with canned behaviour, over TLS/TCP and (in [`quic`]) over QUIC on the same
//! port number; [`reverse`] is one for reverse tunnels (`tp expose`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tp_net::message::read_message;
use tp_proto::{ALPN_TP_V1, Hello, Host, decode_hello};

use crate::addr::ServerAddr;
use crate::connect::Connector;
use crate::e2e::E2eConfig;
use crate::transport::Transport;

mod quic;
mod reverse;
mod udp;

pub(crate) use quic::{Dual, QuicServer, UdpRelay, start_dual, start_tcp_only};
pub(crate) use reverse::{Reverse, Stream};

/// A certificate, its key, and both as PEM.
#[derive(Debug)]
pub(crate) struct Leaf {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) key: PrivateKeyDer<'static>,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl Clone for Leaf {
    fn clone(&self) -> Self {
        Leaf {
            der: self.der.clone(),
            key: self.key.clone_key(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }
}

/// A CA with a server leaf (localhost, 127.0.0.1) and two client leaves:
/// `client` (alice@corp) and `bob` (bob@corp).
#[derive(Clone)]
pub(crate) struct Pki {
    pub(crate) ca: CertificateDer<'static>,
    pub(crate) ca_pem: String,
    pub(crate) server: Leaf,
    pub(crate) client: Leaf,
    pub(crate) bob: Leaf,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();

        let leaf = |sans: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![eku];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            Leaf {
                der: cert.der().clone(),
                key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            }
        };
        let server = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = leaf(vec![], "alice@corp", ExtendedKeyUsagePurpose::ClientAuth);
        let bob = leaf(vec![], "bob@corp", ExtendedKeyUsagePurpose::ClientAuth);
        Pki {
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
            server,
            client,
            bob,
        }
    }
}

/// A TLS/TCP connector presenting `client`'s leaf and trusting `server_ca`.
pub(crate) fn connector(client: &Pki, server_ca: &Pki, port: u16) -> Connector {
    connector_via(client, server_ca, port, Transport::Tcp)
}

/// A connector over `transport`, presenting `client`'s leaf and trusting
/// `server_ca`, remembering transports within the process only.
pub(crate) fn connector_via(
    client: &Pki,
    server_ca: &Pki,
    port: u16,
    transport: Transport,
) -> Connector {
    connector_with(client, server_ca, port, transport, Duration::from_secs(5))
}

/// [`connector_via`] with a connect timeout.
pub(crate) fn connector_with(
    client: &Pki,
    server_ca: &Pki,
    port: u16,
    transport: Transport,
    connect_timeout: Duration,
) -> Connector {
    connector_as(
        &client.client,
        client,
        server_ca,
        port,
        transport,
        connect_timeout,
    )
}

/// The end-to-end TLS settings of `leaf`, trusting `peer_ca` for peers.
pub(crate) fn e2e_config(leaf: &Leaf, peer_ca: &Pki) -> E2eConfig {
    E2eConfig::new(
        vec![peer_ca.ca.clone()],
        vec![leaf.der.clone()],
        leaf.key.clone_key(),
    )
    .unwrap()
}

/// A connector presenting `leaf` (end to end too, trusting `peer_ca`'s CA
/// for peers) and trusting `server_ca`.
pub(crate) fn connector_as(
    leaf: &Leaf,
    peer_ca: &Pki,
    server_ca: &Pki,
    port: u16,
    transport: Transport,
    connect_timeout: Duration,
) -> Connector {
    let config = tp_net::tls::client_config(
        vec![server_ca.ca.clone()],
        vec![leaf.der.clone()],
        leaf.key.clone_key(),
    )
    .unwrap();
    Connector::new(
        Arc::new(config),
        ServerAddr {
            host: Host::Ip([127, 0, 0, 1].into()),
            port,
        },
        ServerName::try_from("localhost").unwrap(),
        connect_timeout,
    )
    .unwrap()
    .with_transport(transport)
    .with_e2e(e2e_config(leaf, peer_ca))
}

/// What the test server does once it has read a hello.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Behaviour {
    /// Answers `denied` with the message `nope` and closes.
    Deny,
    /// Answers this error code with the message `nope` and closes.
    Refuse(&'static str),
    /// Answers ok with `early` right behind the answer line, then echoes until
    /// the client's side ends (reported), then closes its side.
    Echo,
    /// Closes (with `close_notify`) without answering.
    Close,
    /// A UDP tunnel: answers ok, then echoes every datagram (see [`udp`])
    /// until the client's side ends (reported).
    UdpEcho,
    /// Answers ok, reads until the client's side ends (reported), then closes
    /// its side.
    Watch,
    /// Never answers; reads until the client's side ends (reported).
    Silent,
    /// Answers ok with `early`, waits for a byte from the client, then aborts
    /// the tunnel: a QUIC stream is reset (and stopped) with code 1, a TLS
    /// connection dropped without `close_notify`.
    Abort,
}

/// How the client's side of a tunnel ended, as the canned server read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientEnd {
    /// In order: the QUIC stream's FIN, or TLS `close_notify`.
    Finished,
    /// QUIC: the client reset the stream with this code.
    Reset(u64),
    /// TLS/TCP: the connection ended without `close_notify`.
    Dropped,
    /// Anything else, e.g. the QUIC connection was lost.
    Failed(String),
}

impl ClientEnd {
    /// How a read error ended the client's side.
    pub(crate) fn of(e: &std::io::Error) -> ClientEnd {
        if let Some(quinn::ReadError::Reset(code)) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<quinn::ReadError>())
        {
            return ClientEnd::Reset(code.into_inner());
        }
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return ClientEnd::Dropped;
        }
        ClientEnd::Failed(e.to_string())
    }
}

/// Asserts that the server saw an aborted tunnel over `transport`: a reset
/// stream, or a TLS connection that ended without `close_notify` (a TCP FIN, or
/// a TCP reset when the client left data unread).
#[track_caller]
pub(crate) fn assert_aborted(end: &Ended, transport: crate::transport::Transport) {
    use crate::transport::Transport;
    match (transport, &end.how) {
        (Transport::Quic, ClientEnd::Reset(code)) => {
            assert_eq!(*code, crate::connect::STREAM_ABORTED.into_inner());
        }
        (Transport::Tcp, ClientEnd::Dropped) => {}
        (Transport::Tcp, ClientEnd::Failed(e)) if e.contains("reset") => {}
        _ => panic!("{transport:?}: not aborted: {end:?}"),
    }
}

/// A tunnel's end as the canned server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    /// How the client's side ended.
    pub(crate) how: ClientEnd,
    /// Bytes read from the client after the hello line.
    pub(crate) bytes: u64,
}

/// Where the canned servers report what they saw.
#[derive(Debug, Clone)]
pub(crate) struct Reports {
    /// Every hello read.
    pub(crate) hellos: mpsc::UnboundedSender<Hello>,
    /// How each tunnel of the behaviours that read to the end ended.
    pub(crate) ends: mpsc::UnboundedSender<Ended>,
}

impl From<mpsc::UnboundedSender<Hello>> for Reports {
    /// Hellos only: ends are not reported.
    fn from(hellos: mpsc::UnboundedSender<Hello>) -> Self {
        Reports {
            hellos,
            ends: mpsc::unbounded_channel().0,
        }
    }
}

/// A server-side tunnel stream the canned server can abort.
pub(crate) trait CannedStream: AsyncRead + AsyncWrite + Unpin {
    /// Ends the tunnel as failed (see [`Behaviour::Abort`]).
    fn abort(&mut self);
}

impl CannedStream for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    /// Dropped without `close_notify` by the caller.
    fn abort(&mut self) {}
}

impl CannedStream for tp_net::quic::QuicStream {
    fn abort(&mut self) {
        let _ = self.writer_mut().reset(quinn::VarInt::from_u32(1));
        let _ = self.reader_mut().stop(quinn::VarInt::from_u32(1));
    }
}

/// Reads from the client until its side ends; returns how, and the bytes read.
async fn read_to_end_of<S: AsyncRead + Unpin>(stream: &mut S) -> Ended {
    let mut chunk = vec![0u8; 16 * 1024];
    let mut bytes = 0;
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break ended(ClientEnd::Finished, bytes),
            Ok(n) => bytes += n as u64,
            Err(e) => break ended(ClientEnd::of(&e), bytes),
        }
    }
}

fn ended(how: ClientEnd, bytes: u64) -> Ended {
    Ended { how, bytes }
}

/// The test server's TLS setup.
#[derive(Clone, Copy)]
pub(crate) struct ServerSetup<'a> {
    pub(crate) pki: &'a Pki,
    /// The CA client certificates must chain to.
    pub(crate) client_ca: &'a Pki,
    /// Whether to select ALPN `tp/1`.
    pub(crate) alpn: bool,
}

impl<'a> ServerSetup<'a> {
    /// A server certified by `pki` that trusts client certificates from `pki` and
    /// selects ALPN `tp/1`: the ordinary case.
    pub(crate) fn trusting(pki: &'a Pki) -> ServerSetup<'a> {
        ServerSetup {
            pki,
            client_ca: pki,
            alpn: true,
        }
    }
}

/// The hello most tests send: TCP to `db9.internal:22`.
pub(crate) fn db9() -> tp_proto::Hello {
    tp_proto::Hello::connect_tcp(
        tp_proto::Host::parse("db9.internal").expect("a valid host"),
        22,
    )
}

/// The canned denial, spelled as the brief gives it.
pub(crate) const DENIED: &[u8] =
    b"{\"v\":1,\"ok\":false,\"code\":\"denied\",\"message\":\"nope\"}\n";

/// The server's rustls configuration: TLS 1.3, client certificates from
/// `client_ca` required, ALPN `tp/1` if `alpn`.
pub(crate) fn server_config(setup: ServerSetup<'_>) -> rustls::ServerConfig {
    let mut roots = RootCertStore::empty();
    roots.add(setup.client_ca.ca.clone()).unwrap();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), tp_net::tls::provider())
            .build()
            .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(tp_net::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![setup.pki.server.der.clone()],
            setup.pki.server.key.clone_key(),
        )
        .unwrap();
    if setup.alpn {
        config.alpn_protocols = vec![ALPN_TP_V1.to_vec()];
    }
    config
}

/// Starts a TLS/TCP server on 127.0.0.1:0; every hello it reads is sent on the
/// channel.
pub(crate) async fn start_server(
    setup: ServerSetup<'_>,
    behaviour: Behaviour,
) -> (SocketAddr, mpsc::UnboundedReceiver<Hello>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (hellos, rx) = mpsc::unbounded_channel();
    let addr = serve_tls(listener, setup, behaviour, hellos);
    (addr, rx)
}

/// Serves tunnels over TLS/TCP on `listener`; returns its address.
pub(crate) fn serve_tls(
    listener: TcpListener,
    setup: ServerSetup<'_>,
    behaviour: Behaviour,
    reports: impl Into<Reports>,
) -> SocketAddr {
    let reports = reports.into();
    let acceptor = TlsAcceptor::from(Arc::new(server_config(setup)));
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let reports = reports.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                serve_tunnel(tls, behaviour, &reports, None).await;
            });
        }
    });
    addr
}

/// One tunnel on any transport: read the hello, report it, then `behaviour`.
/// `datagrams` is the tunnel's QUIC datagram path, over QUIC.
pub(crate) async fn serve_tunnel<S>(
    mut stream: S,
    behaviour: Behaviour,
    reports: &Reports,
    datagrams: Option<udp::DatagramPath>,
) where
    S: CannedStream,
{
    let mut buf = BytesMut::new();
    let Ok(hello) = read_message(&mut stream, &mut buf, decode_hello).await else {
        return;
    };
    let _ = reports.hellos.send(hello);
    let early = buf.len() as u64;
    let report = |mut end: Ended| {
        end.bytes += early;
        let _ = reports.ends.send(end);
    };
    match behaviour {
        Behaviour::UdpEcho => report(udp::echo(&mut stream, buf, datagrams).await),
        Behaviour::Watch => {
            if stream.write_all(b"{\"v\":1,\"ok\":true}\n").await.is_err() {
                return;
            }
            report(read_to_end_of(&mut stream).await);
            let _ = stream.shutdown().await;
        }
        Behaviour::Silent => report(read_to_end_of(&mut stream).await),
        Behaviour::Abort => {
            if stream
                .write_all(b"{\"v\":1,\"ok\":true}\nearly")
                .await
                .is_err()
            {
                return;
            }
            if buf.is_empty() {
                let _ = stream.read(&mut [0u8; 64]).await;
            }
            stream.abort();
        }
        Behaviour::Close => {
            let _ = stream.shutdown().await;
        }
        Behaviour::Deny => {
            let _ = stream.write_all(DENIED).await;
            let _ = stream.shutdown().await;
        }
        Behaviour::Refuse(code) => {
            let answer =
                format!("{{\"v\":1,\"ok\":false,\"code\":\"{code}\",\"message\":\"nope\"}}\n");
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Behaviour::Echo => {
            // The answer and the first payload bytes in one write.
            if stream
                .write_all(b"{\"v\":1,\"ok\":true}\nearly")
                .await
                .is_err()
                || stream.write_all(&buf).await.is_err()
            {
                return;
            }
            let mut chunk = vec![0u8; 16 * 1024];
            let mut bytes = 0;
            let end = loop {
                match stream.read(&mut chunk).await {
                    Ok(0) => break ClientEnd::Finished,
                    Err(e) => break ClientEnd::of(&e),
                    Ok(n) => {
                        bytes += n as u64;
                        if stream.write_all(&chunk[..n]).await.is_err() {
                            // The client stopped reading: its side tells how.
                            let mut rest = read_to_end_of(&mut stream).await;
                            rest.bytes += bytes;
                            report(rest);
                            return;
                        }
                    }
                }
            };
            report(ended(end, bytes));
            let _ = stream.shutdown().await;
        }
    }
}
