//! The server's addresses, looked up at most once per tunnel even when QUIC and
//! TLS/TCP race for it.

use std::io;
use std::net::SocketAddr;

use tokio::sync::OnceCell;
use tp_proto::Host;
use tracing::debug;

use super::ConnectError;
use crate::addr::ServerAddr;

/// A lazy, shared lookup of one server's addresses.
#[derive(Debug)]
pub(super) struct Resolver<'a> {
    server: &'a ServerAddr,
    /// The addresses, or the lookup error's kind and text (an `io::Error` is
    /// not `Clone`, and both racers may want it).
    addrs: OnceCell<Result<Vec<SocketAddr>, (io::ErrorKind, String)>>,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(server: &'a ServerAddr) -> Self {
        Resolver {
            server,
            addrs: OnceCell::new(),
        }
    }

    /// A resolver that answers `addrs` for `server`, without a lookup.
    #[cfg(test)]
    pub(super) fn fixed(server: &'a ServerAddr, addrs: Vec<SocketAddr>) -> Self {
        Resolver {
            server,
            addrs: OnceCell::new_with(Some(Ok(addrs))),
        }
    }

    /// The server being looked up.
    pub(super) fn server(&self) -> &ServerAddr {
        self.server
    }

    /// The server's addresses, in the resolver's order; never empty.
    pub(super) async fn addrs(&self) -> Result<&[SocketAddr], ConnectError> {
        let looked_up = self.addrs.get_or_init(|| lookup(self.server)).await;
        match looked_up {
            Ok(addrs) => Ok(addrs),
            Err((kind, text)) => Err(ConnectError::Resolve {
                server: self.server.clone(),
                source: io::Error::new(*kind, text.clone()),
            }),
        }
    }
}

async fn lookup(server: &ServerAddr) -> Result<Vec<SocketAddr>, (io::ErrorKind, String)> {
    let addrs: Vec<SocketAddr> = match &server.host {
        Host::Ip(ip) => vec![(*ip, server.port).into()],
        Host::Name(name) => tokio::net::lookup_host((name.as_str(), server.port))
            .await
            .map_err(|e| (e.kind(), e.to_string()))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err((
            io::ErrorKind::NotFound,
            "name resolved to no address".into(),
        ));
    }
    debug!(%server, ?addrs, "resolved");
    Ok(addrs)
}
