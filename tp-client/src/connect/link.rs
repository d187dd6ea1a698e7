//! A tunnel to a [`Target`] as the caller uses it: raw bytes to a host, or,
//! to a service, the end-to-end TLS with the exposing client inside
//! ([`crate::e2e`]). Either way one byte stream; shutting it down ends the
//! inner TLS (`close_notify`) and then the tunnel's write side.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tp_net::relay::TLS_WRITE_OFFSET;
use tp_proto::Proto;
use tracing::info;

use super::{ConnectError, Connector, FirstBytes, Tunnel};
use crate::addr::{Dest, Target};
use crate::e2e::E2eError;
use crate::transport::Via;

/// An open tunnel to a target, with end-to-end TLS to a service.
#[derive(Debug)]
pub enum Link {
    /// To a host: the tunnel's bytes are the target's.
    Plain(Tunnel),
    /// To a service: TLS 1.3 with the exposing client runs inside the tunnel.
    E2e(Box<TlsStream<Tunnel>>),
}

impl Connector {
    /// Opens a TCP tunnel to `target`; to a service, also runs the end-to-end
    /// TLS handshake (within the answer timeout) and logs, at info, the
    /// identity the exposing side's certificate names.
    pub async fn open_link(&self, target: &Target) -> Result<Link, ConnectError> {
        self.open_link_with(target, &mut FirstBytes::none()).await
    }

    /// [`Connector::open_link`] with `first` behind the hello (see
    /// [`FirstBytes`]): to a host only, as bytes to a service belong inside
    /// the end-to-end TLS, which starts once the tunnel is open.
    pub async fn open_link_with(
        &self,
        target: &Target,
        first: &mut FirstBytes<'_>,
    ) -> Result<Link, ConnectError> {
        let hello = target.hello(Proto::Tcp);
        let Dest::Service(service) = &target.dest else {
            let tunnel = self.open_over(&hello, self.transport, first).await?;
            return Ok(Link::Plain(tunnel));
        };
        let tunnel = self.open(&hello).await?;
        let failed = |source| ConnectError::EndToEnd {
            service: service.to_string(),
            source,
        };
        let Some(e2e) = self.e2e() else {
            return Err(failed(E2eError::Handshake(
                "no end-to-end TLS settings".into(),
            )));
        };
        let limit = self.answer_timeout();
        let (tls, identity) = timeout(limit, e2e.connect(tunnel))
            .await
            .map_err(|_| failed(E2eError::Timeout(limit)))?
            .map_err(failed)?;
        info!(
            service = %service,
            exposed_by = identity.as_str(),
            "reached service {service} exposed by {}",
            identity.as_str()
        );
        Ok(Link::E2e(Box::new(tls)))
    }
}

impl Link {
    /// The tunnel underneath.
    pub fn tunnel(&self) -> &Tunnel {
        match self {
            Link::Plain(tunnel) => tunnel,
            Link::E2e(tls) => tls.get_ref().0,
        }
    }

    /// The tunnel underneath, e.g. to [`Tunnel::abort`] it.
    pub fn into_tunnel(self) -> Tunnel {
        match self {
            Link::Plain(tunnel) => tunnel,
            Link::E2e(tls) => tls.into_inner().0,
        }
    }

    /// The transport the tunnel runs over.
    pub fn via(&self) -> Via {
        self.tunnel().via()
    }

    /// Where a relay places the bytes it writes to this link
    /// ([`tp_net::relay::RelayOptions::write_offset_a`]): to a service, the
    /// end-to-end TLS is rustls whatever the tunnel runs over.
    pub fn write_offset(&self) -> usize {
        match self {
            Link::Plain(tunnel) => tunnel.write_offset(),
            Link::E2e(_) => TLS_WRITE_OFFSET,
        }
    }
}

impl AsyncRead for Link {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Plain(t) => Pin::new(t).poll_read(cx, buf),
            Link::E2e(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Link::Plain(t) => Pin::new(t).poll_write(cx, buf),
            Link::E2e(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Plain(t) => Pin::new(t).poll_flush(cx),
            Link::E2e(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Plain(t) => Pin::new(t).poll_shutdown(cx),
            Link::E2e(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }
}
