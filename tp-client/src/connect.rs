//! Opening one tunnel: resolve and dial the server, TLS with the client
//! certificate, check ALPN `tp/1`, send the hello, read the answer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tp_net::message::{ReadMessageError, read_message};
use tp_net::pem::{PemError, load_certs, load_key};
use tp_net::tls::{TlsConfigError, client_config};
use tp_proto::{ALPN_TP_V1, Answer, ErrorCode, Hello, Host, decode_answer, encode_hello};
use tracing::debug;

use crate::addr::ServerAddr;
use crate::config::Settings;
use crate::exit;
use crate::tls_error::describe;

/// Extra time the server gets to answer, beyond the connect timeout, so that a
/// server whose own dial to the target times out after a similar delay still gets
/// its `timeout` answer through.
pub const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// Why the client's certificate, key or CA could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A PEM file could not be read or held nothing usable.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The certificates or key were read but rustls would not use them.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
}

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server's name did not resolve.
    #[error("cannot resolve server {server}: {source}")]
    Resolve {
        /// The server.
        server: ServerAddr,
        /// The resolver's error.
        source: io::Error,
    },
    /// No address of the server accepted a TCP connection.
    #[error("cannot connect to server {server}: {source}")]
    Connect {
        /// The server.
        server: ServerAddr,
        /// The error of the last address tried.
        source: io::Error,
    },
    /// A phase did not finish within its deadline.
    #[error("timed out after {after:?} {during} {server}")]
    Timeout {
        /// The server.
        server: ServerAddr,
        /// What was going on, e.g. `"connecting to"`.
        during: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The TLS handshake failed, or the server rejected our certificate.
    #[error("TLS handshake with {server} failed: {reason}")]
    Handshake {
        /// The server.
        server: ServerAddr,
        /// What went wrong, with a hint in front of the rustls error.
        reason: String,
    },
    /// The server completed TLS without selecting ALPN `tp/1`.
    #[error(
        "server {server} did not select ALPN tp/1: it is not a tp server (or --server points elsewhere)"
    )]
    NoAlpn {
        /// The server.
        server: ServerAddr,
    },
    /// Sending the hello failed.
    #[error("sending the hello to {server} failed: {source}")]
    Io {
        /// The server.
        server: ServerAddr,
        /// The error.
        source: io::Error,
    },
    /// The server closed the connection before answering. A tp server that
    /// refuses our certificate may do this instead of sending an alert.
    #[error(
        "server {server} closed the connection without answering \
         (did it refuse our client certificate? try -v, and see the server's log)"
    )]
    Closed {
        /// The server.
        server: ServerAddr,
    },
    /// The server sent something that is not an answer, or the read failed.
    #[error("no answer from {server}: {source}")]
    NoAnswer {
        /// The server.
        server: ServerAddr,
        /// What was read instead.
        source: ReadMessageError,
    },
    /// The server answered with an error: the tunnel was refused.
    #[error("{code}: {}", one_line(.message))]
    Refused {
        /// The server's code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
}

impl ConnectError {
    /// The status `tp` exits with for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            ConnectError::Refused { code, .. } => exit::for_answer(code),
            _ => exit::LOCAL,
        }
    }
}

/// `s` with control characters escaped, so a server's message prints as one line
/// and cannot drive the terminal.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Opens tunnels to one server with one client identity. Cheap to share: `tp up`
/// uses one for every accepted connection.
pub struct Connector {
    tls: TlsConnector,
    server: ServerAddr,
    server_name: ServerName<'static>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server", &self.server)
            .field("server_name", &self.server_name)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Loads the certificate chain, key and CA named by `settings`.
    pub fn from_settings(settings: &Settings) -> Result<Self, SetupError> {
        let ca = load_certs(&settings.ca)?;
        let chain = load_certs(&settings.cert)?;
        let key = load_key(&settings.key)?;
        let config = client_config(ca, chain, key)?;
        Ok(Connector::new(
            Arc::new(config),
            settings.server.clone(),
            settings.server_name.clone(),
            settings.connect_timeout,
        ))
    }

    /// A connector from a ready TLS configuration (which must offer ALPN `tp/1`).
    pub fn new(
        config: Arc<rustls::ClientConfig>,
        server: ServerAddr,
        server_name: ServerName<'static>,
        connect_timeout: Duration,
    ) -> Self {
        Connector {
            tls: TlsConnector::from(config),
            server,
            server_name,
            connect_timeout,
        }
    }

    /// The server this connector dials.
    pub fn server(&self) -> &ServerAddr {
        &self.server
    }

    /// Opens one tunnel: dial, TLS, hello, answer. Resolving, connecting and the
    /// handshake share the connect timeout; the answer gets the connect timeout
    /// plus [`ANSWER_GRACE`].
    pub async fn open(&self, hello: &Hello) -> Result<Tunnel, ConnectError> {
        let deadline = Instant::now() + self.connect_timeout;
        let timed_out = |during| ConnectError::Timeout {
            server: self.server.clone(),
            during,
            after: self.connect_timeout,
        };
        let tcp = timeout_at(deadline, self.dial())
            .await
            .map_err(|_| timed_out("connecting to"))??;
        let mut tls = timeout_at(deadline, self.tls.connect(self.server_name.clone(), tcp))
            .await
            .map_err(|_| timed_out("in the TLS handshake with"))?
            .map_err(|e| self.handshake_error(&e))?;
        if tls.get_ref().1.alpn_protocol() != Some(ALPN_TP_V1) {
            return Err(ConnectError::NoAlpn {
                server: self.server.clone(),
            });
        }
        debug!(server = %self.server, "TLS established");

        let mut line = Vec::with_capacity(128);
        encode_hello(hello, &mut line);
        let io_error = |source| ConnectError::Io {
            server: self.server.clone(),
            source,
        };
        tls.write_all(&line).await.map_err(io_error)?;
        tls.flush().await.map_err(io_error)?;

        let mut buf = BytesMut::with_capacity(4096);
        let answer = timeout(
            self.connect_timeout + ANSWER_GRACE,
            read_message(&mut tls, &mut buf, decode_answer),
        )
        .await
        .map_err(|_| ConnectError::Timeout {
            server: self.server.clone(),
            during: "waiting for the answer of",
            after: self.connect_timeout + ANSWER_GRACE,
        })?
        .map_err(|e| self.answer_error(e))?;
        match answer {
            Answer::Ok => {
                debug!(early = buf.len(), "tunnel open");
                Ok(Tunnel {
                    stream: tls,
                    early: buf,
                })
            }
            Answer::Err { code, message } => Err(ConnectError::Refused { code, message }),
        }
    }

    /// Resolves the server and connects to its addresses in turn.
    async fn dial(&self) -> Result<TcpStream, ConnectError> {
        let addrs: Vec<std::net::SocketAddr> = match &self.server.host {
            Host::Ip(ip) => vec![(*ip, self.server.port).into()],
            Host::Name(name) => tokio::net::lookup_host((name.as_str(), self.server.port))
                .await
                .map_err(|source| ConnectError::Resolve {
                    server: self.server.clone(),
                    source,
                })?
                .collect(),
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "name resolved to no address");
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    debug!(server = %self.server, %addr, "TCP connected");
                    // Hellos, answers and interactive keystrokes are small writes.
                    if let Err(e) = tcp.set_nodelay(true) {
                        debug!("set_nodelay failed: {e}");
                    }
                    return Ok(tcp);
                }
                Err(e) => {
                    debug!(%addr, "TCP connect failed: {e}");
                    last = e;
                }
            }
        }
        Err(ConnectError::Connect {
            server: self.server.clone(),
            source: last,
        })
    }

    fn handshake_error(&self, e: &io::Error) -> ConnectError {
        ConnectError::Handshake {
            server: self.server.clone(),
            reason: describe(e),
        }
    }

    /// In TLS 1.3 the server checks our certificate after our side of the
    /// handshake is done, so its refusal arrives as an alert on the first read.
    fn answer_error(&self, e: ReadMessageError) -> ConnectError {
        match e {
            ReadMessageError::Io(io) if crate::tls_error::is_tls_error(&io) => {
                self.handshake_error(&io)
            }
            // A TCP close without close_notify is what tokio-rustls reports as
            // UnexpectedEof.
            ReadMessageError::Eof(0) => ConnectError::Closed {
                server: self.server.clone(),
            },
            ReadMessageError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
                ConnectError::Closed {
                    server: self.server.clone(),
                }
            }
            source => ConnectError::NoAnswer {
                server: self.server.clone(),
                source,
            },
        }
    }
}

/// An open tunnel: raw bytes both ways. Bytes the server sent right behind its
/// answer come out of the first reads, before anything else.
#[derive(Debug)]
pub struct Tunnel {
    stream: TlsStream<TcpStream>,
    early: BytesMut,
}

impl Tunnel {
    /// Bytes received behind the answer and not yet read.
    pub fn early_len(&self) -> usize {
        self.early.len()
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.early.is_empty() {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early[..n]);
            this.early.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    /// Sends TLS `close_notify`, then shuts down the TCP write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;
