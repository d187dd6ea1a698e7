//! The accept loop and shutdown.
//!
//! The loop only accepts: a connection-limit permit is taken before `accept`, a
//! per-source handshake slot right after it (see [`crate::preauth`]), and the TLS
//! handshake, hello and tunnel run in a spawned task under their own deadlines.
//! On shutdown the listener closes, open tunnels get `drain_timeout` to finish, and
//! whatever is left is then closed.
//!
//! A reload (a new [`Config`] sent to [`run_with_reload`]) swaps the TLS configuration
//! (certificates, client CAs, revocation list), the policy and the timeouts for
//! connections accepted from then on; established tunnels keep running untouched.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::{Config, Limits};
use crate::conn;
use crate::preauth::HandshakeSlots;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsSetupError),
    /// The listener's address could not be read.
    #[error("listener: {0}")]
    Listener(std::io::Error),
}

/// State shared by every connection of one server.
pub(crate) struct Shared {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) policy: policy::Policy,
    pub(crate) limits: Limits,
    pub(crate) listen: SocketAddr,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// Pause after an accept error that means the process is out of resources
/// (EMFILE, ENFILE, ENOBUFS, ENOMEM), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

impl Shared {
    fn new(config: Config, listen: SocketAddr) -> Result<Shared, RunError> {
        let tls = crate::tls::server_config(&config.tls)?;
        Ok(Shared {
            acceptor: TlsAcceptor::from(tls),
            policy: config.policy,
            limits: config.limits,
            listen,
        })
    }
}

/// Serves tunnels on `listener` until `shutdown` is cancelled, then drains.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let (_no_reloads, reloads) = mpsc::channel(1);
    run_with_reload(config, listener, shutdown, reloads).await
}

/// Like [`run`], and applies every [`Config`] received on `reloads` to the connections
/// accepted after it (`listen` and `max_connections` cannot change without a restart).
pub async fn run_with_reload(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    mut reloads: mpsc::Receiver<Config>,
) -> Result<(), RunError> {
    let listen = listener.local_addr().map_err(RunError::Listener)?;
    let configured_listen = config.listen;
    let mut shared = Arc::new(Shared::new(config, listen)?);
    let mut reloads_open = true;
    let permits = Arc::new(Semaphore::new(shared.limits.max_connections.get()));
    let slots = HandshakeSlots::new(shared.limits.max_handshakes_per_source);
    let tracker = TaskTracker::new();
    let force = CancellationToken::new();
    info!(
        listen = %listen,
        rules = shared.policy.rule_count(),
        "tp-server listening (TLS 1.3, ALPN tp/1, client certificate required)"
    );

    loop {
        // Reloads are taken in the same select as accepts, so a connection accepted
        // after a reload arrived is always served with the reloaded configuration.
        let next = async {
            let permit = permits.clone().acquire_owned().await;
            (permit, listener.accept().await)
        };
        let (permit, accepted) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            reload = reloads.recv(), if reloads_open => {
                match reload {
                    Some(config) => shared = reload_into(&shared, configured_listen, config),
                    None => reloads_open = false,
                }
                continue;
            }
            // Both halves are cancel-safe: a reload or shutdown loses no connection.
            next = next => next,
        };
        let Ok(permit) = permit else {
            break; // the semaphore is never closed
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if is_resource_exhaustion(&e) {
                    warn!(error = %e, "accept failed: out of resources; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                } else {
                    debug!(error = %e, "accept failed");
                }
                continue;
            }
        };
        let Some(slot) = slots.try_take(peer.ip()) else {
            debug!(listen = %listen, peer = %peer, "connection closed: too many handshakes from this source");
            continue;
        };
        let span = info_span!(
            "conn",
            listen = %listen,
            peer = %peer,
            id = tracing::field::Empty,
        );
        let shared = shared.clone();
        let force = force.clone();
        let draining = shutdown.clone();
        tracker.spawn(
            async move {
                tokio::select! {
                    () = conn::serve(shared, tcp, slot, draining) => {}
                    () = force.cancelled() => debug!("closed by shutdown deadline"),
                }
                drop(permit);
            }
            .instrument(span),
        );
    }

    drop(listener);
    tracker.close();
    let open = tracker.len();
    let drain = shared.limits.drain_timeout;
    info!(listen = %listen, open, drain = ?drain, "shutting down: no new connections; draining");
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        warn!(
            listen = %listen,
            open = tracker.len(),
            "drain deadline passed; closing remaining connections"
        );
        force.cancel();
        tracker.wait().await;
    }
    info!(listen = %listen, "tp-server stopped");
    Ok(())
}

/// Builds the state for a reloaded config, or keeps the current one if it is unusable.
fn reload_into(
    current: &Arc<Shared>,
    configured_listen: SocketAddr,
    config: Config,
) -> Arc<Shared> {
    if config.limits.max_connections != current.limits.max_connections {
        warn!(
            "max_connections changes only on restart; keeping {}",
            current.limits.max_connections
        );
    }
    if config.limits.max_handshakes_per_source != current.limits.max_handshakes_per_source {
        warn!(
            "max_handshakes_per_source changes only on restart; keeping {}",
            current.limits.max_handshakes_per_source
        );
    }
    if config.listen != configured_listen {
        warn!(listen = %current.listen, "listen changes only on restart");
    }
    match Shared::new(config, current.listen) {
        Ok(next) => {
            info!(
                listen = %current.listen,
                rules = next.policy.rule_count(),
                "configuration reloaded: new connections use the new certificates, revocation list and policy"
            );
            Arc::new(next)
        }
        Err(e) => {
            warn!(error = %e, "reload refused; keeping the running configuration");
            current.clone()
        }
    }
}

fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}
