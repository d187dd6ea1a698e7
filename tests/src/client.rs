//! A raw client for protocol tests: any certificate (or none), any ALPN, and
//! hand-written hello lines, over TLS/TCP or (through [`crate::quic`]) QUIC.
//! Tests that must hold for both transports take a [`Transport`] and run under
//! [`crate::over_both_transports!`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tp_server::pki::Issued;

use crate::pki::pki;

/// The client side of a raw TLS connection to a test server.
pub type TlsClient = TlsStream<TcpStream>;

/// Which transport a tunnel runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TLS 1.3 over TCP: one connection per tunnel.
    Tcp,
    /// QUIC on the same port over UDP: here, one connection with one stream.
    Quic,
}

impl Transport {
    /// Its name in `tp`'s config and `--transport`: `tcp` or `quic`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        }
    }

    /// The field the server's log lines carry (in their `conn` span) for a
    /// connection over this transport: `transport="tcp"` or `transport="quic"`.
    pub fn log_field(self) -> &'static str {
        match self {
            Transport::Tcp => "transport=\"tcp\"",
            Transport::Quic => "transport=\"quic\"",
        }
    }
}

/// A duplex byte stream: a TLS connection or a QUIC stream.
pub trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Duplex for S {}

/// A raw tunnel stream over either transport.
pub type Tunnel = Box<dyn Duplex>;

/// Connects over `transport`; see [`connect`] for when a refusal shows.
pub async fn connect_over(
    transport: Transport,
    addr: SocketAddr,
    options: &ClientOptions<'_>,
) -> io::Result<Tunnel> {
    Ok(match transport {
        Transport::Tcp => Box::new(connect(addr, options).await?),
        Transport::Quic => Box::new(crate::quic::connect(addr, options).await?),
    })
}

/// Like [`connect_over`], and also returns the client's own address: the server's
/// log lines for this connection name it as `peer=` (for QUIC, the client's UDP
/// socket). For tests that expect a refusal and then look for why in the log.
/// Panics if the socket itself cannot be set up.
pub async fn connect_from(
    transport: Transport,
    addr: SocketAddr,
    options: &ClientOptions<'_>,
) -> (SocketAddr, io::Result<Tunnel>) {
    match transport {
        Transport::Tcp => {
            let tcp = TcpStream::connect(addr).await.expect("TCP connect");
            let local = tcp.local_addr().expect("local_addr");
            let tls = handshake(tcp, options).await;
            (local, tls.map(|tls| Box::new(tls) as Tunnel))
        }
        Transport::Quic => {
            let endpoint = crate::quic::endpoint(options);
            let local = endpoint.local_addr().expect("local_addr");
            let quic = crate::quic::connect_on(endpoint, addr).await;
            (local, quic.map(|quic| Box::new(quic) as Tunnel))
        }
    }
}

/// Connects over `transport` as `leaf` with ALPN `tp/1`; panics if that fails.
pub async fn connect_as_over(transport: Transport, addr: SocketAddr, leaf: &Issued) -> Tunnel {
    connect_over(transport, addr, &ClientOptions::with(leaf))
        .await
        .unwrap_or_else(|e| panic!("{transport:?} handshake with the test server: {e}"))
}

/// Connects over `transport` as `leaf`, asks for `host:port` and expects `ok`.
pub async fn open_tunnel_over(
    transport: Transport,
    server: SocketAddr,
    leaf: &Issued,
    host: &str,
    port: u16,
) -> Tunnel {
    let mut tunnel = connect_as_over(transport, server, leaf).await;
    let reply = send_hello(&mut tunnel, &connect_hello(host, port)).await;
    assert_eq!(
        reply.code(),
        "ok",
        "{transport:?} tunnel to {host}:{port}: {reply:?}"
    );
    tunnel
}

/// How the raw client presents itself.
#[derive(Debug, Clone)]
pub struct ClientOptions<'a> {
    /// The leaf (with its chain) to present, or none.
    pub cert: Option<&'a Issued>,
    /// ALPN protocols to offer.
    pub alpn: Vec<Vec<u8>>,
}

impl<'a> ClientOptions<'a> {
    /// Presents `leaf` and offers `tp/1`: an ordinary client.
    pub fn with(leaf: &'a Issued) -> Self {
        ClientOptions {
            cert: Some(leaf),
            alpn: vec![tp_proto::ALPN_TP_V1.to_vec()],
        }
    }

    /// Offers `tp/1` but presents no certificate.
    pub fn anonymous() -> Self {
        ClientOptions {
            cert: None,
            alpn: vec![tp_proto::ALPN_TP_V1.to_vec()],
        }
    }
}

/// The rustls client configuration for `options`: TLS 1.3 only, aws-lc-rs, the test
/// root as trust anchor, no resumption.
pub fn tls_config(options: &ClientOptions<'_>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(pki().root.cert_der().clone())
        .expect("the test root is a usable trust anchor");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .with_root_certificates(roots);
    let mut config = match options.cert {
        Some(leaf) => builder
            .with_client_auth_cert(leaf.chain_der(), leaf.key_der())
            .expect("the leaf and its key fit"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols.clone_from(&options.alpn);
    config.resumption = rustls::client::Resumption::disabled();
    config
}

/// Connects and completes the client side of the TLS handshake. With TLS 1.3 the
/// server checks the client certificate after that, so a refusal shows up on the
/// first read.
pub async fn connect(addr: SocketAddr, options: &ClientOptions<'_>) -> io::Result<TlsClient> {
    let tcp = TcpStream::connect(addr).await?;
    handshake(tcp, options).await
}

/// Runs the client side of the TLS handshake on a connected `tcp`.
pub async fn handshake(tcp: TcpStream, options: &ClientOptions<'_>) -> io::Result<TlsClient> {
    tcp.set_nodelay(true)?;
    let connector = TlsConnector::from(Arc::new(tls_config(options)));
    let name = ServerName::try_from("localhost").expect("valid name");
    crate::within(
        "TLS handshake",
        Duration::from_secs(10),
        connector.connect(name, tcp),
    )
    .await
}

/// Connects as `leaf` with ALPN `tp/1`; panics if the handshake fails.
pub async fn connect_as(addr: SocketAddr, leaf: &Issued) -> TlsClient {
    connect(addr, &ClientOptions::with(leaf))
        .await
        .expect("TLS handshake with the test server")
}

/// What came back for a hello.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// One answer line, parsed.
    Answer(Value),
    /// The stream ended (cleanly or not) before a full line.
    Closed {
        /// Bytes received before the end.
        partial: Vec<u8>,
        /// The read error, if it was not a clean EOF.
        error: Option<String>,
    },
}

impl Reply {
    /// The answer's `code`, or `"ok"` for `{"ok":true}`; panics if there is no answer.
    pub fn code(&self) -> String {
        let answer = self.answer();
        if answer["ok"] == Value::Bool(true) {
            return "ok".into();
        }
        answer["code"]
            .as_str()
            .unwrap_or_else(|| panic!("answer without a code: {answer}"))
            .to_owned()
    }

    /// The answer's `message` (empty if none).
    pub fn message(&self) -> String {
        self.answer()["message"].as_str().unwrap_or("").to_owned()
    }

    /// The answer; panics if the connection closed without one.
    pub fn answer(&self) -> &Value {
        match self {
            Reply::Answer(v) => v,
            Reply::Closed { partial, error } => panic!(
                "expected an answer, the connection closed (received {:?}, error {error:?})",
                String::from_utf8_lossy(partial)
            ),
        }
    }
}

/// Reads one answer line, a byte at a time so that nothing behind it is consumed.
pub async fn read_reply<S: AsyncRead + Unpin + ?Sized>(tls: &mut S) -> Reply {
    let read = async {
        let mut line = Vec::new();
        loop {
            let mut byte = [0u8; 1];
            match tls.read(&mut byte).await {
                Ok(0) => {
                    return Reply::Closed {
                        partial: line,
                        error: None,
                    };
                }
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => line.push(byte[0]),
                Err(e) => {
                    return Reply::Closed {
                        partial: line,
                        error: Some(e.to_string()),
                    };
                }
            }
        }
        let value: Value = serde_json::from_slice(&line).unwrap_or_else(|e| {
            panic!(
                "answer line is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&line)
            )
        });
        Reply::Answer(value)
    };
    crate::within("the server's answer", Duration::from_secs(15), read).await
}

/// Sends `bytes` (a hello line, maybe with payload behind it) and reads the reply.
pub async fn send_hello<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    tls: &mut S,
    bytes: &[u8],
) -> Reply {
    if let Err(e) = tls.write_all(bytes).await {
        return Reply::Closed {
            partial: Vec::new(),
            error: Some(format!("write: {e}")),
        };
    }
    if let Err(e) = tls.flush().await {
        return Reply::Closed {
            partial: Vec::new(),
            error: Some(format!("flush: {e}")),
        };
    }
    read_reply(tls).await
}

/// Writes `payload`, closes the write side (close_notify over TLS, FIN over QUIC)
/// and returns everything read until EOF; panics on an error or after 10 s. An
/// echo target sends the payload back.
pub async fn round_trip<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    tunnel: &mut S,
    payload: &[u8],
) -> Vec<u8> {
    tunnel.write_all(payload).await.expect("write");
    tunnel.shutdown().await.expect("close the write side");
    let mut back = Vec::new();
    crate::within("EOF", crate::EVENTUALLY, tunnel.read_to_end(&mut back))
        .await
        .expect("read to EOF");
    back
}

/// Writes `bytes` on an open tunnel to an echo target and reads them back, leaving
/// the tunnel open; panics on an error, a different answer or after 10 s.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(tunnel: &mut S, bytes: &[u8]) {
    tunnel.write_all(bytes).await.expect("write");
    tunnel.flush().await.expect("flush");
    let mut back = vec![0u8; bytes.len()];
    crate::within("the echo", crate::EVENTUALLY, tunnel.read_exact(&mut back))
        .await
        .expect("read the echo");
    assert_eq!(back, bytes);
}

/// A connect hello line for `host:port`.
pub fn connect_hello(host: &str, port: u16) -> Vec<u8> {
    let mut line = serde_json::json!({"v": 1, "op": "connect", "host": host, "port": port})
        .to_string()
        .into_bytes();
    line.push(b'\n');
    line
}

/// Connects as `leaf`, asks for `host:port` and expects `ok`; returns the tunnel.
pub async fn open_tunnel(server: SocketAddr, leaf: &Issued, host: &str, port: u16) -> TlsClient {
    let mut tls = connect_as(server, leaf).await;
    let reply = send_hello(&mut tls, &connect_hello(host, port)).await;
    assert_eq!(reply.code(), "ok", "tunnel to {host}:{port}: {reply:?}");
    tls
}

/// A browser's request over TLS without `tp/1` (ALPN http/1.1, no certificate)
/// to `addr`: the whole response, as text.
pub async fn browse(addr: SocketAddr) -> String {
    let options = ClientOptions {
        cert: None,
        alpn: vec![b"http/1.1".to_vec()],
    };
    let mut tls = connect(addr, &options)
        .await
        .expect("the website's handshake");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Runs `curl ARGS https://localhost:PORT/` with `localhost` resolved to
/// 127.0.0.1 and the test root (written into `dir`) as its only CA, bounded to
/// 10 s. What curl did.
pub async fn curl_localhost(
    dir: &std::path::Path,
    port: u16,
    args: &[&str],
) -> crate::bins::Finished {
    let ca = dir.join("curl-ca.pem");
    std::fs::write(&ca, pki().root.cert_pem()).expect("writing the CA file for curl");
    let mut cmd = tokio::process::Command::new(crate::bins::system_bin("curl"));
    cmd.args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .arg("--cacert")
        .arg(&ca)
        .arg("--resolve")
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg(format!("https://localhost:{port}/"));
    crate::bins::run(cmd, b"").await
}
