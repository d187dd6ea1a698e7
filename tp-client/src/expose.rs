//! `tp expose LOCALPORT (--name NAME | --public PORT)`: makes a local TCP
//! service reachable through the server (reverse tunnels, `listen` and `accept`
//! in docs/protocol.md).
//!
//! A `listen` hello registers the name or public port; its tunnel stays open
//! as the control channel ([`control`]), with heartbeats both ways. Each
//! incoming connection ([`incoming`]) arrives as a stream the server opens on
//! the same QUIC connection, or, over TLS/TCP, as an `incoming` event that
//! `tp expose` answers with a new connection and an `accept` hello. It is
//! relayed to `LOCALHOST:LOCALPORT`: for a service after the end-to-end TLS
//! handshake ([`crate::e2e`], checked against `--allow`), for a public port
//! behind an optional PROXY protocol v2 header.
//!
//! When the control channel dies, `tp expose` registers again, backing off
//! like the QUIC dialer (250 ms doubling to 10 s). `conflict`, `denied` and
//! the other answers a retry cannot change end it; `busy`, `internal` and
//! network failures are retried. Connections already relayed are not
//! affected by a new registration.

mod control;
mod incoming;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep};
use tp_proto::{ErrorCode, Hello, Listen, ListenKind};
use tracing::{info, warn};

use crate::addr::ServiceName;
use crate::connect::{ConnectError, Connector, SetupError, backoff};
use crate::e2e::AllowList;
use crate::transport::Via;

pub use control::Heartbeat;

/// A registration that lasted less than this counts as a failed attempt for
/// the backoff: two `tp expose` of one name and identity, which replace each
/// other's registration, settle at one attempt every 10 s instead of spinning.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// How long stopping waits for the server to acknowledge the end of the
/// control channel.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// What is exposed, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// End-to-end mode: a service name; callers run TLS with us inside the
    /// tunnel, and only those `allow` permits get through.
    Service {
        /// The name to register.
        name: ServiceName,
        /// `--allow` patterns (empty: whoever the server lets through).
        allow: AllowList,
    },
    /// Public mode: the server listens on `port` and forwards plain TCP.
    Public {
        /// The public port.
        port: u16,
        /// Write a PROXY protocol v2 header to the local service first.
        proxy_protocol: bool,
    },
}

/// `tp expose`'s settings.
#[derive(Debug, Clone)]
pub struct ExposeOptions {
    /// The local service: host (name or address) and port.
    pub local_host: tp_proto::Host,
    /// The local port.
    pub local_port: u16,
    /// Service or public port.
    pub mode: Mode,
    /// Heartbeat timing of the control channel.
    pub heartbeat: Heartbeat,
}

/// Why `tp expose` ended with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExposeError {
    /// The server refused the registration in a way retrying cannot change
    /// (`conflict`, `denied`, ...), or the TLS handshake failed.
    #[error(transparent)]
    Refused(ConnectError),
}

impl ExposeError {
    /// The status `tp` exits with.
    pub fn exit_status(&self) -> u8 {
        match self {
            ExposeError::Refused(e) => e.exit_status(),
        }
    }
}

impl ExposeOptions {
    fn hello(&self) -> Hello {
        Hello::Listen(Listen {
            kind: match &self.mode {
                Mode::Service { name, .. } => ListenKind::Name(name.as_str().to_owned()),
                Mode::Public { port, .. } => ListenKind::Port(*port),
            },
        })
    }

    /// `127.0.0.1:22 as service alice-laptop`, for the status lines.
    fn describe(&self) -> String {
        let local = match &self.local_host {
            tp_proto::Host::Ip(ip) => SocketAddr::new(*ip, self.local_port).to_string(),
            host => format!("{host}:{}", self.local_port),
        };
        match &self.mode {
            Mode::Service { name, .. } => format!("{local} as service {name}"),
            Mode::Public { port, .. } => format!("{local} on public port {port}"),
        }
    }
}

/// Whether registering again could get another answer than `e`.
fn retryable(e: &ConnectError) -> bool {
    match e {
        ConnectError::Refused { code, .. } => {
            matches!(code, ErrorCode::Busy | ErrorCode::Internal)
        }
        ConnectError::Handshake { .. } | ConnectError::NoAlpn { .. } => false,
        _ => true,
    }
}

fn via_name(via: Via) -> &'static str {
    match via {
        Via::Quic => "QUIC",
        Via::Tcp => "TLS/TCP",
    }
}

/// Registers, serves incoming connections, registers again whenever the
/// control channel dies, until `shutdown` completes (then `Ok`) or the server
/// gives a final refusal. Prints a line on stderr at each registration.
///
/// Before registering again it calls `renew` for a fresh connector: a
/// long-running `tp expose` outlives its short-lived certificate, and the
/// server ends a registration whose certificate stops verifying, so the
/// certificate files are read again (a renewed certificate is used from then
/// on; if reading fails, the loaded one is kept). Connectors are made
/// [`Connector::for_expose`] here.
pub async fn run(
    connector: Connector,
    mut renew: impl FnMut() -> Result<Connector, SetupError>,
    options: ExposeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ExposeError> {
    let mut connector = Arc::new(connector.for_expose());
    tokio::pin!(shutdown);
    let hello = options.hello();
    let what = options.describe();
    let mut serve = Arc::new(incoming::Serve::new(connector.clone(), &options));
    let mut failures: u32 = 0;
    let mut registered_before = false;
    let result = loop {
        let attempt = tokio::select! {
            () = &mut shutdown => break Ok(()),
            attempt = connector.open(&hello) => attempt,
        };
        match attempt {
            Ok(tunnel) => {
                let via = tunnel.via();
                info!(transport = %via, "registered {what}");
                // Always shown, whatever the log level.
                if registered_before {
                    eprintln!("tp expose: registered again: {what} via {}", via_name(via));
                } else {
                    eprintln!("tp expose: exposing {what} via {}", via_name(via));
                }
                registered_before = true;
                let started = Instant::now();
                let ended =
                    control::serve(tunnel, serve.clone(), options.heartbeat, shutdown.as_mut())
                        .await;
                match ended {
                    control::Ended::Stopped(tunnel) => {
                        // In order, so the server frees the registration now.
                        control::close(tunnel, STOP_GRACE).await;
                        break Ok(());
                    }
                    control::Ended::Lost(why) => {
                        warn!("lost the registration of {what}: {why}; registering again");
                    }
                }
                if started.elapsed() >= STABLE_AFTER {
                    failures = 0;
                }
                failures = failures.saturating_add(1);
            }
            Err(e) if !retryable(&e) => break Err(ExposeError::Refused(e)),
            Err(e) => {
                failures = failures.saturating_add(1);
                warn!(
                    "cannot register {what}: {e}; trying again in {:?}",
                    backoff(failures)
                );
            }
        }
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            () = sleep(backoff(failures)) => {}
        }
        match renew() {
            Ok(renewed) => {
                // Tunnels still open keep the old connector alive until they end.
                connector = Arc::new(renewed.for_expose());
                serve = Arc::new(incoming::Serve::new(connector.clone(), &options));
            }
            Err(e) => {
                warn!("cannot read the certificate files again ({e}); keeping the loaded ones")
            }
        }
    };
    if result.is_ok() {
        info!("stopping");
    }
    connector.close().await;
    result
}

#[cfg(test)]
mod tests;
