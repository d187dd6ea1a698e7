//! A website backend: a TCP address or a unix socket, as written in the config
//! (`"127.0.0.1:8080"`, `"[::1]:8080"`, `"unix:/run/nginx/site.sock"`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tp_net::relay::{RelayEnd, RelayOptions, RelayStats, relay};
use tracing::{debug, warn};

use crate::server::Shared;

/// Where a website connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix stream socket.
    Unix(PathBuf),
}

/// A connected backend stream.
pub(crate) trait BackendIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> BackendIo for T {}

impl Backend {
    /// Reads `unix:/absolute/path` or `HOST:PORT` with an IP address.
    pub fn parse(s: &str) -> Result<Backend, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(format!("{s:?}: a unix socket path must be absolute"));
            }
            return Ok(Backend::Unix(path));
        }
        s.parse().map(Backend::Tcp).map_err(|_| {
            format!("{s:?}: expected IP:PORT (e.g. 127.0.0.1:8080) or unix:/path/to/socket")
        })
    }

    /// Connects.
    pub(crate) async fn connect(&self) -> std::io::Result<Box<dyn BackendIo>> {
        Ok(match self {
            Backend::Tcp(addr) => {
                let tcp = TcpStream::connect(addr).await?;
                let _ = tcp.set_nodelay(true);
                Box::new(tcp)
            }
            Backend::Unix(path) => Box::new(UnixStream::connect(path).await?),
        })
    }
}

/// Connects to `backend` (under `connect_timeout`), writes a PROXY v2 header for
/// `proxied` (client, server address) if given, then `early`, then relays
/// `client` until both sides are done (or `[website] idle_timeout`). `None`: the backend
/// could not be reached or failed at once (logged, `what` naming the route).
/// `client_write_offset` places the bytes for the client
/// ([`tp_net::relay::RelayOptions::write_offset_a`]).
pub(crate) async fn forward<S>(
    shared: &Shared,
    backend: &Backend,
    what: &'static str,
    proxied: Option<(SocketAddr, SocketAddr)>,
    early: &[u8],
    client: &mut S,
    client_write_offset: usize,
) -> Option<(RelayStats, RelayEnd, std::time::Duration)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connect = tokio::time::timeout(shared.limits.connect_timeout, backend.connect());
    let mut upstream = match connect.await {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(e)) => {
            warn!(backend = %backend, error = %e, "{what} backend unreachable");
            return None;
        }
        Err(_) => {
            warn!(backend = %backend, "{what} backend did not answer in time");
            return None;
        }
    };
    let mut head = Vec::with_capacity(64 + early.len());
    if let Some((peer, local)) = proxied {
        head.extend(tp_net::proxy::v2_header(peer, Some(local)));
    }
    head.extend_from_slice(early);
    if !head.is_empty()
        && let Err(e) = upstream.write_all(&head).await
    {
        debug!(backend = %backend, error = %e, "{what} backend failed");
        return None;
    }
    let started = Instant::now();
    let options = RelayOptions {
        idle_timeout: Some(shared.website.idle_timeout),
        write_offset_a: client_write_offset,
        write_offset_b: 0,
    };
    let (stats, end) = relay(&mut *client, &mut upstream, options).await;
    Some((stats, end, started.elapsed()))
}

/// [`forward`] with no early bytes for a route (passthrough or terminate),
/// ending with one `info` line `{closed}` with the counts.
pub(crate) async fn forward_route<S>(
    shared: &Shared,
    backend: &Backend,
    what: &'static str,
    closed: &'static str,
    proxied: Option<(SocketAddr, SocketAddr)>,
    client: &mut S,
    client_write_offset: usize,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let forwarded = forward(
        shared,
        backend,
        what,
        proxied,
        &[],
        client,
        client_write_offset,
    );
    if let Some((stats, end, duration)) = forwarded.await {
        tracing::info!(
            backend = %backend,
            bytes.up = stats.a_to_b,
            bytes.down = stats.b_to_a,
            duration = ?duration,
            failed = !matches!(end, RelayEnd::Closed),
            "{closed}"
        );
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Tcp(addr) => write!(f, "{addr}"),
            Backend::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(
            Backend::parse("127.0.0.1:8080"),
            Ok(Backend::Tcp("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(
            Backend::parse("[::1]:8080"),
            Ok(Backend::Tcp("[::1]:8080".parse().unwrap()))
        );
        assert_eq!(
            Backend::parse("unix:/run/nginx/site.sock"),
            Ok(Backend::Unix("/run/nginx/site.sock".into()))
        );
        assert!(Backend::parse("unix:run/site.sock").is_err());
        assert!(Backend::parse("localhost:8080").is_err());
        assert_eq!(
            Backend::parse("unix:/a").unwrap().to_string(),
            "unix:/a".to_owned()
        );
    }
}
