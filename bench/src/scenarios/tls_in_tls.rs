//! The load of scenario (g): a client like Signal's apps behind a TLS proxy. Outer
//! TLS to the proxy as a browser would connect to the site (SNI the site's name,
//! ALPN http/1.1, verified against the bench CA), then, inside it, inner TLS to the
//! Signal host (SNI `chat.signal.org`, verified against the bench CA, which signed
//! the stand-in's certificate), then the target protocol inside that.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::conn::{PING_TIMEOUT, ping};
use crate::certs::{SERVER_NAME, SIGNAL_HOST};

/// The outer connection: TLS to the proxy.
pub(crate) type Outer = TlsStream<TcpStream>;
/// The inner connection: TLS to the Signal host, carried inside [`Outer`].
pub(crate) type Inner = TlsStream<Outer>;

impl super::idle::Held for Inner {
    fn tcp(&self) -> &tokio::net::TcpStream {
        self.get_ref().0.get_ref().0
    }
}

/// Makes TLS-in-TLS connections through a Signal proxy.
#[derive(Clone)]
pub(crate) struct SignalClient {
    outer: TlsConnector,
    inner: TlsConnector,
}

impl std::fmt::Debug for SignalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignalClient")
    }
}

fn connector(roots: &rustls::RootCertStore, alpn: &[&[u8]]) -> anyhow::Result<TlsConnector> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // No session resumption: every connection pays full handshakes, as in (c).
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

impl SignalClient {
    /// A client trusting the bench CA at `ca` for both layers.
    pub(crate) fn new(ca: &Path) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).context("reading the CA")? {
            roots.add(cert.context("parsing the CA")?)?;
        }
        Ok(Self {
            outer: connector(&roots, &[b"http/1.1"])?,
            // No ALPN inside: neither relay looks at anything but the inner SNI.
            inner: connector(&roots, &[])?,
        })
    }

    /// The outer TLS connection alone.
    pub(crate) async fn outer(&self, entry: SocketAddr) -> anyhow::Result<Outer> {
        let tcp = TcpStream::connect(entry)
            .await
            .with_context(|| format!("connecting to {entry}"))?;
        tcp.set_nodelay(true)?;
        let site = ServerName::try_from(SERVER_NAME)?;
        self.outer
            .connect(site, tcp)
            .await
            .context("the outer TLS handshake")
    }

    /// Outer and inner handshakes, the inner one to `host`.
    pub(crate) async fn connect_to(&self, entry: SocketAddr, host: &str) -> anyhow::Result<Inner> {
        let outer = self.outer(entry).await?;
        let name = ServerName::try_from(host.to_owned())?;
        self.inner
            .connect(name, outer)
            .await
            .context("the inner TLS handshake")
    }

    /// A connection to the Signal host, both handshakes done.
    pub(crate) async fn connect(&self, entry: SocketAddr) -> anyhow::Result<Inner> {
        self.connect_to(entry, SIGNAL_HOST).await
    }

    /// A connection to the Signal host proven by one echo (within 15 s).
    pub(crate) async fn open(&self, entry: SocketAddr) -> anyhow::Result<Inner> {
        let connect_and_ping = async {
            let mut inner = self.connect(entry).await?;
            ping(&mut inner).await?;
            anyhow::Ok(inner)
        };
        tokio::time::timeout(PING_TIMEOUT, connect_and_ping)
            .await
            .context("no echo within 15 s")?
    }
}

/// What the outer handshake negotiated, for the notes: version, suite, group.
pub(crate) fn negotiated(outer: &Outer) -> String {
    let (_, conn) = outer.get_ref();
    let version = conn
        .protocol_version()
        .map_or_else(|| "?".to_owned(), |v| format!("{v:?}"));
    let suite = conn
        .negotiated_cipher_suite()
        .map_or_else(|| "?".to_owned(), |s| format!("{:?}", s.suite()));
    let group = conn
        .negotiated_key_exchange_group()
        .map_or_else(|| "?".to_owned(), |g| format!("{:?}", g.name()));
    format!("{version}, {suite}, {group}")
}
