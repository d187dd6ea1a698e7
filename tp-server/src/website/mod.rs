//! Everyone on the TCP port who is not a tp client gets the website: a TLS
//! handshake like any site's (no client certificate asked), then the bytes go to
//! the configured backend (`[website]`), `h2` to its HTTP/2 backend, with a PROXY
//! protocol v2 header carrying the real client address. With no backend, a small
//! built-in page answers, so a prober sees an ordinary site, never an error that
//! gives tp away. With `[signal]` on, a client whose first bytes inside TLS are
//! another ClientHello is the Signal relay's ([`signal`]).

pub mod backend;
pub(crate) mod certs;
pub(crate) mod page;
pub mod signal;

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tp_net::relay::{RelayEnd, TLS_WRITE_OFFSET};
use tracing::debug;

pub use backend::Backend;

use crate::config::WebsiteSettings;
use crate::server::Shared;

/// The ALPN id of HTTP/2 over TLS.
pub(crate) const ALPN_H2: &[u8] = b"h2";
/// The ALPN id of HTTP/1.1.
pub(crate) const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The ALPN ids the website offers: `h2` only when it has an HTTP/2 backend.
pub(crate) fn alpn(settings: &WebsiteSettings) -> Vec<Vec<u8>> {
    let mut ids = Vec::with_capacity(2);
    if settings.h2_backend.is_some() {
        ids.push(ALPN_H2.to_vec());
    }
    ids.push(ALPN_HTTP1.to_vec());
    ids
}

/// Serves one website connection (TLS done; `alpn` is what was negotiated) to
/// its end. `peer` is the client, `local` the address it connected to.
pub(crate) async fn serve<S>(
    shared: &Shared,
    mut client: S,
    alpn: Option<&[u8]>,
    peer: SocketAddr,
    local: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let settings = &shared.website;
    // HTTP/2 is a website; otherwise, with the Signal relay on, the first bytes
    // tell a TLS-in-TLS client from a browser.
    let mut early = Vec::new();
    if alpn != Some(ALPN_H2) && shared.signal.enabled {
        match signal::first_bytes(&mut client, shared.limits.hello_timeout).await {
            signal::First::InnerTls { sni, bytes } => {
                let limits = &shared.limits;
                let (connect, idle) = (limits.connect_timeout, settings.idle_timeout);
                return signal::relay_inner(&shared.signal, client, sni, bytes, connect, idle)
                    .await;
            }
            signal::First::Other(bytes) => early = bytes,
            signal::First::Nothing => return,
        }
    }
    let backend = match (alpn, &settings.h2_backend, &settings.backend) {
        (Some(ALPN_H2), Some(h2), _) => h2,
        (_, _, Some(http1)) => http1,
        _ => {
            let limit = shared.limits.hello_timeout;
            return page::serve(&mut client, early, limit, &settings.page).await;
        }
    };
    let proxied = settings.proxy_protocol.then_some((peer, local));
    // `client` is the TLS tp-server terminated: bytes for it are placed for rustls.
    let offset = TLS_WRITE_OFFSET;
    let forwarded = backend::forward(
        shared,
        backend,
        "website",
        proxied,
        &early,
        &mut client,
        offset,
    );
    if let Some((stats, end, duration)) = forwarded.await {
        debug!(
            backend = %backend,
            bytes.up = stats.a_to_b,
            bytes.down = stats.b_to_a,
            duration = ?duration,
            failed = !matches!(end, RelayEnd::Closed),
            "website connection closed"
        );
    }
}
