//! One host's check: TCP to the proxy, the outer TLS handshake as Signal's apps
//! make it (SNI the proxy's name, ALPN http/1.1), then the inner handshake with
//! the Signal host's name, through the relay; every step under one deadline.
//! The first bytes that came back inside the outer TLS are kept, so a failure
//! can tell a relay that closed from a website that answered.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ProtocolVersion, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

use super::verify::{InnerVerifier, Seen};

/// What every host's check shares.
#[derive(Debug)]
pub(super) struct Setup {
    /// The proxy's name: outer SNI, and the name its certificate must have.
    pub domain: ServerName<'static>,
    /// Where the proxy listens (DOMAIN:443 or `--connect`), resolved.
    pub addrs: Vec<SocketAddr>,
    /// The outer TLS client configuration.
    pub outer: Arc<ClientConfig>,
    /// The CAs inner certificates are checked against.
    pub inner_roots: Arc<RootCertStore>,
    /// Accept inner certificates from an unknown CA on their name (no `--inner-ca`).
    pub inner_name_only: bool,
    /// For each host, the whole check.
    pub timeout: Duration,
}

/// The step a check was at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Connecting over TCP.
    Tcp,
    /// The outer TLS handshake with the proxy.
    OuterTls,
    /// The inner TLS handshake with the Signal host, through the relay.
    InnerTls,
}

/// A host that answered through the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    /// From the first TCP packet to the end of the inner handshake.
    pub total: Duration,
    /// The inner handshake alone (relay, its dial and the Signal host).
    pub inner: Duration,
    /// The inner TLS version.
    pub version: Option<ProtocolVersion>,
    /// Its certificate.
    pub seen: Option<Seen>,
}

/// Why a host did not answer through the relay.
#[derive(Debug)]
pub(super) enum Failure {
    /// TCP to the proxy failed.
    Tcp(io::Error),
    /// The outer handshake failed.
    OuterTls(io::Error),
    /// The proxy closed the connection without a byte of answer to the inner hello.
    RelayClosed {
        /// How long after the inner hello.
        after: Duration,
    },
    /// An HTTP answer came instead of TLS: the website got the inner hello.
    Website {
        /// Its first line.
        status_line: String,
    },
    /// The inner handshake failed otherwise.
    InnerTls {
        /// What failed.
        error: io::Error,
        /// The certificate presented, if one came.
        seen: Option<Seen>,
    },
    /// The deadline passed during this step.
    Timeout(Step),
}

impl Failure {
    /// True when the proxy itself was not reached (TCP or outer TLS), as
    /// opposed to a relay that did not work.
    pub(super) fn proxy_unreachable(&self) -> bool {
        matches!(
            self,
            Failure::Tcp(_) | Failure::OuterTls(_) | Failure::Timeout(Step::Tcp | Step::OuterTls)
        )
    }
}

/// Checks `host` through the proxy.
pub(super) async fn probe(setup: Arc<Setup>, host: ServerName<'static>) -> Result<Answer, Failure> {
    let started = Instant::now();
    let deadline = started + setup.timeout;

    let tcp = timeout_at(deadline, TcpStream::connect(&setup.addrs[..]))
        .await
        .map_err(|_| Failure::Timeout(Step::Tcp))?
        .map_err(Failure::Tcp)?;
    let _ = tcp.set_nodelay(true);

    let outer = TlsConnector::from(setup.outer.clone()).connect(setup.domain.clone(), tcp);
    let outer = timeout_at(deadline, outer)
        .await
        .map_err(|_| Failure::Timeout(Step::OuterTls))?
        .map_err(Failure::OuterTls)?;

    let verifier = Arc::new(InnerVerifier::new(
        setup.inner_roots.clone(),
        setup.inner_name_only,
    ));
    let inner_started = Instant::now();
    let inner = TlsConnector::from(Arc::new(inner_config(verifier.clone())))
        .connect(host, Recorded::new(outer))
        .into_fallible();
    let mut tls = match timeout_at(deadline, inner).await {
        Err(_) => return Err(Failure::Timeout(Step::InnerTls)),
        Ok(Err((error, outer))) => {
            return Err(classify(
                error,
                &outer,
                verifier.seen(),
                inner_started.elapsed(),
            ));
        }
        Ok(Ok(tls)) => tls,
    };
    let answer = Answer {
        total: started.elapsed(),
        inner: inner_started.elapsed(),
        version: tls.get_ref().1.protocol_version(),
        seen: verifier.seen(),
    };
    // close_notify inside and out, then the server's end read to its close, so
    // neither the relay nor the Signal host logs a broken connection.
    let _ = timeout_at(deadline, tls.shutdown()).await;
    let (mut outer, _) = tls.into_inner();
    let drain = async {
        let mut buf = [0u8; 4096];
        while let Ok(1..) = outer.read(&mut buf).await {}
    };
    let _ = timeout_at(deadline.min(Instant::now() + CLOSE_WAIT), drain).await;
    Ok(answer)
}

/// The longest a check waits for the server to close after a working handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The inner client configuration: TLS 1.2 and 1.3 as Signal's apps, both
/// ALPNs its hosts speak, no resumption.
fn inner_config(verifier: Arc<InnerVerifier>) -> ClientConfig {
    let provider = tp_net::tls::provider();
    // Invariant: the provider supports the default versions (aws-lc-rs does).
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports TLS 1.2 and 1.3");
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config
}

/// Names a failed inner handshake from what came back inside the outer TLS.
fn classify<S>(
    error: io::Error,
    outer: &Recorded<S>,
    seen: Option<Seen>,
    after: Duration,
) -> Failure {
    if outer.first.starts_with(b"HTTP/") {
        let line = outer.first.split(|&b| b == b'\r' || b == b'\n').next();
        return Failure::Website {
            status_line: String::from_utf8_lossy(line.unwrap_or_default()).into_owned(),
        };
    }
    let closed = outer.ended
        || matches!(
            error.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
        );
    if outer.first.is_empty() && closed {
        return Failure::RelayClosed { after };
    }
    Failure::InnerTls { error, seen }
}

/// How many of the first bytes read are kept.
const KEEP: usize = 64;

/// A stream that keeps the first [`KEEP`] bytes read from it and whether it ended.
#[derive(Debug)]
struct Recorded<S> {
    inner: S,
    first: Vec<u8>,
    ended: bool,
}

impl<S> Recorded<S> {
    fn new(inner: S) -> Recorded<S> {
        Recorded {
            inner,
            first: Vec::new(),
            ended: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    this.ended = true;
                }
                let room = KEEP.saturating_sub(this.first.len());
                this.first.extend_from_slice(&new[..new.len().min(room)]);
            }
            Poll::Ready(Err(_)) => this.ended = true,
            Poll::Pending => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    fn recorded(first: &[u8], ended: bool) -> Recorded<()> {
        Recorded {
            inner: (),
            first: first.to_vec(),
            ended,
        }
    }

    #[test]
    fn what_came_back_names_the_failure() {
        let eof = || io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        let after = Duration::from_millis(3);
        assert!(matches!(
            classify(eof(), &recorded(b"", true), None, after),
            Failure::RelayClosed { after: a } if a == after
        ));
        assert!(matches!(
            classify(eof(), &recorded(b"", false), None, after),
            Failure::RelayClosed { .. }
        ));
        let website = classify(
            io::Error::new(io::ErrorKind::InvalidData, "corrupt message"),
            &recorded(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain",
                true,
            ),
            None,
            after,
        );
        assert!(
            matches!(&website, Failure::Website { status_line } if status_line == "HTTP/1.1 400 Bad Request"),
            "{website:?}"
        );
        // Some TLS came back, then it broke: the inner handshake's own failure.
        assert!(matches!(
            classify(eof(), &recorded(&[0x16, 0x03, 0x03], true), None, after),
            Failure::InnerTls { .. }
        ));
        assert!(matches!(
            classify(
                io::Error::new(io::ErrorKind::InvalidData, "bad certificate"),
                &recorded(b"", false),
                None,
                after
            ),
            Failure::InnerTls { .. }
        ));
    }

    #[test]
    fn only_tcp_and_the_outer_handshake_mean_the_proxy_was_not_reached() {
        let e = || io::Error::other("x");
        assert!(Failure::Tcp(e()).proxy_unreachable());
        assert!(Failure::OuterTls(e()).proxy_unreachable());
        assert!(Failure::Timeout(Step::OuterTls).proxy_unreachable());
        assert!(!Failure::Timeout(Step::InnerTls).proxy_unreachable());
        assert!(
            !Failure::RelayClosed {
                after: Duration::ZERO
            }
            .proxy_unreachable()
        );
    }

    #[tokio::test]
    async fn the_first_bytes_and_the_end_are_recorded() {
        let (mut a, b) = duplex(1024);
        let mut stream = Recorded::new(b);
        a.write_all(&[7u8; 100]).await.unwrap();
        drop(a);
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), 100);
        assert_eq!(stream.first, vec![7u8; KEEP]);
        assert!(stream.ended);
    }
}
