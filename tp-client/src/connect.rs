//! Opening one tunnel: reach the server over QUIC or TLS/TCP (or race them,
//! `auto`), authenticated by the client certificate with ALPN `tp/1`, send the
//! hello, read the answer.
//!
//! - [`tls`]: TLS over TCP, one connection per tunnel.
//! - [`quic`]: one kept QUIC connection, one stream per tunnel.
//! - [`auto`]: QUIC first, TLS/TCP after a head start; [`cache`] remembers a
//!   QUIC that did not answer.
//! - [`hello`]: the hello and answer, the same over both.
//! - [`first`]: what the local side has already sent, to go with the hello.
//! - [`link`]: a tunnel to a target as the caller uses it; to a service, with
//!   the end-to-end TLS ([`crate::e2e`]) inside.
//!
//! Callers get a [`Tunnel`] and do not care which transport carries it. The
//! hello is exchanged on the tunnel itself: a tunnel that does not open (an
//! error, the answer timeout, a caller that gives up) is dropped, which aborts
//! it ([`Tunnel::abort`]) rather than finishing its QUIC stream.

mod auto;
mod cache;
mod error;
mod first;
mod hello;
mod link;
mod quic;
mod resolve;
mod tls;
mod tunnel;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use quinn::Connection;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tp_net::message::ReadMessageError;
use tp_net::pem::{load_certs, load_key};
use tp_net::quic::QuicLimits;
use tp_net::read_ahead::ReadAhead;
use tp_net::tls::client_config;
use tp_proto::{ALPN_STEALTH, Hello};
use tracing::debug;

use crate::addr::ServerAddr;
use crate::config::Settings;
use crate::e2e::E2eConfig;
use crate::quic_error;
use crate::transport::{Transport, Via};

pub use auto::HEAD_START;
pub use cache::QUIC_RETRY_AFTER;
pub use error::{ConnectError, SetupError, one_line};
pub use first::{FIRST_BYTES_MAX, FirstBytes};
pub use link::Link;
pub use tunnel::{Aborted, STREAM_ABORTED, Tunnel};

pub(crate) use quic::backoff;

use cache::TransportMemory;
use hello::{Errors, exchange};
use quic::{Acquired, QuicDialer};
use resolve::Resolver;

/// How long a dial waits for one of the server's addresses before trying the
/// next one too, over either transport (RFC 8305's recommended Connection
/// Attempt Delay).
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Extra time the server gets to answer, beyond the connect timeout, so that a
/// server whose own dial to the target times out after a similar delay still gets
/// its `timeout` answer through.
pub const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// Opens tunnels to one server. Holds the TLS configuration, the kept QUIC
/// connection and what `auto` learned; share it (`Arc`) between tunnels.
pub struct Connector {
    server: ServerAddr,
    server_name: ServerName<'static>,
    connect_timeout: Duration,
    transport: Transport,
    head_start: Duration,
    /// How much longer than the connect timeout the answer may take.
    answer_grace: Duration,
    tls: TlsConnector,
    quic: QuicDialer,
    memory: TransportMemory,
    /// End-to-end TLS with services (both roles).
    e2e: Option<Arc<E2eConfig>>,
    /// Stealth mode: TLS/TCP offering a browser's ALPN ids.
    stealth: bool,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server", &self.server)
            .field("server_name", &self.server_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// What a tunnel's stream will run on.
#[derive(Debug)]
enum Carrier {
    Tls(Box<TlsStream<ReadAhead<TcpStream>>>),
    Quic(Acquired),
}

impl Connector {
    /// Loads the certificate chain, key, CA and peer CA named by `settings`.
    pub fn from_settings(settings: &Settings) -> Result<Self, SetupError> {
        let ca = load_certs(&settings.ca)?;
        let peer_ca = if settings.peer_ca == settings.ca {
            ca.clone()
        } else {
            load_certs(&settings.peer_ca)?
        };
        let chain = load_certs(&settings.cert)?;
        let key = load_key(&settings.key)?;
        let e2e = E2eConfig::new(peer_ca, chain.clone(), key.clone_key())?;
        let mut config = client_config(ca, chain, key)?;
        if settings.stealth {
            config.alpn_protocols = ALPN_STEALTH.iter().map(|id| id.to_vec()).collect();
        }
        let connector = Connector::new(
            Arc::new(config),
            settings.server.clone(),
            settings.server_name.clone(),
            settings.connect_timeout,
        )?
        .with_transport(settings.transport)
        .with_cache_file(settings.cache_file.clone())
        .with_e2e(e2e);
        Ok(if settings.stealth {
            connector.stealth()
        } else {
            connector
        })
    }

    /// A connector from a ready TLS configuration (which must offer ALPN
    /// `tp/1`), using `auto` and remembering only within the process.
    pub fn new(
        config: Arc<rustls::ClientConfig>,
        server: ServerAddr,
        server_name: ServerName<'static>,
        connect_timeout: Duration,
    ) -> Result<Self, SetupError> {
        let quic_config = tp_net::quic::client_config((*config).clone(), &QuicLimits::default())?;
        let quic = QuicDialer::new(
            quic_config,
            server.clone(),
            server_name.to_str().into_owned(),
            connect_timeout,
        );
        Ok(Connector {
            memory: TransportMemory::new(server.to_string(), None),
            tls: TlsConnector::from(config),
            quic,
            server,
            server_name,
            connect_timeout,
            transport: Transport::Auto,
            head_start: HEAD_START,
            answer_grace: ANSWER_GRACE,
            e2e: None,
            stealth: false,
        })
    }

    /// Stealth mode: TLS/TCP only, whose configuration offers a browser's
    /// ALPN ids ([`ALPN_STEALTH`]) instead of `tp/1`; the server's website
    /// may select one, and a website answering in the server's place is
    /// [`ConnectError::Website`].
    pub fn stealth(mut self) -> Self {
        self.stealth = true;
        self.transport = Transport::Tcp;
        self
    }

    /// Uses `e2e` for end-to-end TLS with services.
    pub fn with_e2e(mut self, e2e: E2eConfig) -> Self {
        self.e2e = Some(Arc::new(e2e));
        self
    }

    /// For `tp expose`: lets the server open streams on the QUIC connection
    /// (one per incoming connection, [`QuicLimits::expose_transport_config`]).
    /// An ordinary connector grants it none.
    pub fn for_expose(mut self) -> Self {
        self.quic
            .set_transport_config(QuicLimits::default().expose_transport_config());
        self
    }

    /// The end-to-end TLS settings, if any.
    pub(crate) fn e2e(&self) -> Option<&Arc<E2eConfig>> {
        self.e2e.as_ref()
    }

    /// Uses `transport`.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Shares what `auto` learns with other processes through `file`.
    pub fn with_cache_file(mut self, file: Option<PathBuf>) -> Self {
        self.memory = TransportMemory::new(self.server.to_string(), file);
        self
    }

    /// How long `auto` lets QUIC try alone ([`HEAD_START`] unless set).
    pub fn with_head_start(mut self, head_start: Duration) -> Self {
        self.head_start = head_start;
        self
    }

    /// The server this connector dials.
    pub fn server(&self) -> &ServerAddr {
        &self.server
    }

    /// The transport setting.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Opens one tunnel: reach the server, send the hello, read the answer.
    /// Reaching the server (resolving, connecting, handshakes) shares the
    /// connect timeout; the answer gets the connect timeout plus
    /// [`ANSWER_GRACE`]. Over QUIC, a kept connection is reused; if it turns
    /// out to be dead, the tunnel is tried once more on a new one.
    pub async fn open(&self, hello: &Hello) -> Result<Tunnel, ConnectError> {
        self.open_over(hello, self.transport, &mut FirstBytes::none())
            .await
    }

    /// [`Connector::open`] over `transport` rather than the configured one
    /// (the data connections of `tp expose` over TLS/TCP), with `first`
    /// behind the hello: what the local side has sent by the time the hello
    /// goes out (not in stealth mode, where the server may hand the hello to
    /// its website). A tunnel retried on a new QUIC connection sends the same
    /// first bytes again only when the kept connection failed in a way that
    /// shows it was already gone (a stateless reset from a restarted server,
    /// a close, the idle timeout); one that just went silent while the hello
    /// waited for its answer is not retried ([`ConnectError::Unanswered`]).
    pub async fn open_over(
        &self,
        hello: &Hello,
        transport: Transport,
        first: &mut FirstBytes<'_>,
    ) -> Result<Tunnel, ConnectError> {
        let deadline = Instant::now() + self.connect_timeout;
        let resolver = Resolver::new(&self.server);
        let mut retried = false;
        // In stealth mode, the hello goes alone.
        let mut no_first = FirstBytes::default();
        let first = if self.stealth { &mut no_first } else { first };
        loop {
            let carrier = match transport {
                Transport::Tcp => {
                    Carrier::Tls(Box::new(self.tls_connect(&resolver, deadline).await?))
                }
                Transport::Quic => Carrier::Quic(self.quic_connect(&resolver, deadline).await?),
                Transport::Auto => auto::connect(self, &resolver, deadline).await?,
            };
            // A broken local connection is not worth a tunnel: the carrier is
            // dropped unused (over TLS/TCP, without a hello); the server
            // dials nothing.
            first.take().map_err(ConnectError::Local)?;
            let (via, opened) = match carrier {
                Carrier::Tls(stream) => {
                    (Via::Tcp, self.tunnel_over_tls(stream, hello, first).await)
                }
                Carrier::Quic(Acquired { conn, reused }) => {
                    match self
                        .tunnel_over_quic(&conn, reused, hello, first, deadline)
                        .await
                    {
                        Err(e @ ConnectError::Quic { .. }) if reused && !retried => {
                            debug!("the kept QUIC connection is gone ({e}); connecting again");
                            retried = true;
                            continue;
                        }
                        opened => (Via::Quic, opened),
                    }
                }
            };
            if opened.is_ok() {
                let first = first.len();
                debug!(transport = %via, server = %self.server, first, "tunnel open");
            }
            return opened;
        }
    }

    /// Closes the kept QUIC connection (code 0) and waits, bounded (half a
    /// second), until the close has gone out to the server. Call it when done
    /// with the server, e.g. before the process exits.
    pub async fn close(&self) {
        self.quic.close().await;
    }

    fn timed_out(&self, during: &'static str) -> ConnectError {
        ConnectError::Timeout {
            server: self.server.clone(),
            during,
            after: self.connect_timeout,
        }
    }

    async fn tls_connect(
        &self,
        resolver: &Resolver<'_>,
        deadline: Instant,
    ) -> Result<TlsStream<ReadAhead<TcpStream>>, ConnectError> {
        let alpn = if self.stealth {
            tls::Alpn::Any
        } else {
            tls::Alpn::Tp
        };
        tls::connect(
            &self.tls,
            &self.server_name,
            resolver,
            deadline,
            alpn,
            |during| self.timed_out(during),
        )
        .await
    }

    async fn quic_connect(
        &self,
        resolver: &Resolver<'_>,
        deadline: Instant,
    ) -> Result<Acquired, ConnectError> {
        let mut slot = self.quic.lock(deadline).await?;
        if let Some(conn) = slot.live() {
            return Ok(Acquired { conn, reused: true });
        }
        let conn = slot.dial(resolver, deadline).await?;
        Ok(Acquired {
            conn,
            reused: false,
        })
    }

    async fn tunnel_over_tls(
        &self,
        stream: Box<TlsStream<ReadAhead<TcpStream>>>,
        hello: &Hello,
        first: &mut FirstBytes<'_>,
    ) -> Result<Tunnel, ConnectError> {
        let server = &self.server;
        let errors = Errors {
            server,
            send: tls::send_error,
            answer: tls::answer_error,
        };
        // A failed exchange drops the tunnel, which aborts it (no close_notify).
        let mut tunnel = Tunnel::tls(stream, BytesMut::new());
        let exchanged = exchange(&mut tunnel, hello, first, self.answer_timeout(), errors).await;
        let early = exchanged.map_err(|e| match e {
            // In stealth mode, a server that does not take us for a tp client
            // hands the hello to its website, which answers something that is
            // not an answer line (HTTP/1's 400, HTTP/2 frames) or hangs up. A
            // failed read or a timeout stays what it is.
            ConnectError::Closed { .. }
            | ConnectError::NoAnswer {
                source: ReadMessageError::Decode(_) | ReadMessageError::Eof(_),
                ..
            } if self.stealth => ConnectError::Website {
                server: server.clone(),
            },
            e => e,
        })?;
        tunnel.set_early(early);
        Ok(tunnel)
    }

    /// Opens a stream on `conn` for the tunnel. On a `reused` connection that
    /// turns out unresponsive, gives up early ([`quic::unresponsive`]) and
    /// stops reusing it.
    async fn tunnel_over_quic(
        &self,
        conn: &Connection,
        reused: bool,
        hello: &Hello,
        first: &mut FirstBytes<'_>,
        deadline: Instant,
    ) -> Result<Tunnel, ConnectError> {
        let server = &self.server;
        let (send, recv) = timeout_at(deadline, conn.open_bi())
            .await
            .map_err(|_| self.timed_out("opening a stream to"))?
            .map_err(|e| quic_error::connect_error(server, &e))?;
        // From here on, every way out but success (an error, the answer timeout,
        // the caller giving up and dropping this future) drops the tunnel, which
        // resets its stream: a dropped quinn stream would be finished, a clean
        // end for the server.
        let stream = tp_net::quic::stream(send, recv);
        let mut tunnel = Tunnel::quic(stream, conn.clone(), BytesMut::new());
        let errors = Errors {
            server,
            send: quic_send_error,
            answer: quic_answer_error,
        };
        let exchanged = exchange(&mut tunnel, hello, first, self.answer_timeout(), errors);
        let early = if reused {
            tokio::select! {
                early = exchanged => early?,
                () = quic::unresponsive(conn) => {
                    self.quic.forget(conn).await;
                    // Silence says nothing about what the server got: first
                    // bytes sent again on a new connection could reach the
                    // target twice. Only a tunnel without any is retried.
                    if !first.is_empty() {
                        return Err(ConnectError::Unanswered {
                            server: server.clone(),
                            sent: first.len(),
                        });
                    }
                    return Err(ConnectError::Quic {
                        server: server.clone(),
                        reason: "the kept connection no longer answers (did the server restart?)"
                            .into(),
                    });
                }
            }
        } else {
            exchanged.await?
        };
        tunnel.set_early(early);
        Ok(tunnel)
    }

    pub(crate) fn answer_timeout(&self) -> Duration {
        self.connect_timeout + self.answer_grace
    }

    /// Waits `grace` (instead of [`ANSWER_GRACE`]) beyond the connect timeout
    /// for the answer.
    #[cfg(test)]
    pub(crate) fn with_answer_grace(mut self, grace: Duration) -> Self {
        self.answer_grace = grace;
        self
    }

    /// Forgets the kept QUIC connection, as a failed [`quic::unresponsive`]
    /// probe does.
    #[cfg(test)]
    pub(crate) async fn forget_quic(&self) {
        let far = Instant::now() + Duration::from_secs(60);
        let Ok(slot) = self.quic.lock(far).await else {
            return;
        };
        let kept = slot.live();
        drop(slot);
        if let Some(conn) = kept {
            self.quic.forget(&conn).await;
        }
    }
}

/// Why the hello could not be sent on a QUIC stream.
fn quic_send_error(server: &ServerAddr, e: std::io::Error) -> ConnectError {
    if let Some(lost) = quic_error::connection_lost(&e) {
        return quic_error::connect_error(server, lost);
    }
    if quic_error::stream_refused(&e) {
        return ConnectError::Closed {
            server: server.clone(),
        };
    }
    ConnectError::Io {
        server: server.clone(),
        source: e,
    }
}

/// Why the answer could not be read from a QUIC stream. A server that refuses
/// our certificate closes the connection with a TLS alert after our side of the
/// handshake is done, so the refusal arrives here.
fn quic_answer_error(server: &ServerAddr, e: ReadMessageError) -> ConnectError {
    match e {
        ReadMessageError::Io(io) => match quic_error::connection_lost(&io) {
            Some(lost) => quic_error::connect_error(server, lost),
            None if quic_error::stream_refused(&io) => ConnectError::Closed {
                server: server.clone(),
            },
            None => ConnectError::NoAnswer {
                server: server.clone(),
                source: ReadMessageError::Io(io),
            },
        },
        ReadMessageError::Eof(0) => ConnectError::Closed {
            server: server.clone(),
        },
        source => ConnectError::NoAnswer {
            server: server.clone(),
            source,
        },
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod quic_tests;

#[cfg(test)]
mod auto_tests;

#[cfg(test)]
mod abort_tests;

#[cfg(test)]
mod first_tests;
