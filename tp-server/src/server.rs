//! The accept loops and shutdown.
//!
//! The TLS/TCP loop only accepts: a connection-limit permit is taken before
//! `accept`, a per-source handshake slot right after it (see [`crate::slots`]), and
//! the TLS handshake, hello and tunnel run in a task on one of the connection
//! workers ([`crate::workers`], one thread per core) under their own deadlines.
//! QUIC connections ([`crate::quic`]) take the same permits and slots.
//! On shutdown the listeners close, open tunnels get `drain_timeout` to finish, and
//! whatever is left is then closed.
//!
//! A reload (a new [`Config`] sent to [`run_with_reload`]) swaps the TLS configuration
//! (certificates, client CAs, revocation list), the policy and the timeouts for
//! connections and QUIC streams opened from then on; established tunnels keep
//! running untouched.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn};

use crate::config::{Config, Limits, QuicSettings, ReverseSettings, WebsiteSettings};
use crate::listeners::{Listeners, TcpListeners};
use crate::reverse::registry::Registry;
use crate::slots::{HandshakeSlots, KeyedSlots, Source, TunnelSlots};
use crate::workers::Workers;
use crate::{conn, quic};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsSetupError),
    /// A listener could not be used.
    #[error("listener: {0}")]
    Listener(std::io::Error),
    /// The threads that serve TCP connections could not start.
    #[error("starting the connection worker threads: {0}")]
    Workers(std::io::Error),
}

/// State shared by every connection of one server; replaced whole on reload.
pub(crate) struct Shared {
    pub(crate) tls: Arc<rustls::ServerConfig>,
    pub(crate) quic: QuicSettings,
    /// Re-verifies a client chain (expiry, CA, revocation) for each QUIC stream.
    pub(crate) verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    pub(crate) policy: policy::Policy,
    pub(crate) limits: Limits,
    pub(crate) listen: SocketAddr,
    /// Open tunnels per identity; the same counter across reloads.
    pub(crate) tunnels: Arc<TunnelSlots>,
    pub(crate) reverse: ReverseSettings,
    pub(crate) website: WebsiteSettings,
    /// The TLS configuration for everyone who does not offer ALPN `tp/1`.
    pub(crate) website_tls: Arc<rustls::ServerConfig>,
    pub(crate) passthrough: Vec<crate::passthrough::Route>,
    pub(crate) signal: crate::website::signal::SignalSettings,
    pub(crate) terminate: Vec<crate::terminate::Route>,
    /// The TLS configuration of each `terminate` route, in order.
    pub(crate) terminate_tls: Vec<Arc<rustls::ServerConfig>>,
    /// Exposed services and public ports; the same registry across reloads.
    pub(crate) registry: Arc<Registry>,
    /// The names in stealth mode.
    pub(crate) stealth: crate::stealth::StealthSettings,
    /// Their TLS configuration (`None` without stealth names).
    pub(crate) stealth_tls: Option<Arc<rustls::ServerConfig>>,
    /// `[tls] client_ca` is set: tunnels can open. Without it a ClientHello
    /// offering `tp/1` gets the website's handshake.
    pub(crate) opens_tunnels: bool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// What the accept loops and their connections share for one run of the server.
#[derive(Debug, Clone)]
pub(crate) struct RunContext {
    /// The current configuration; connections read it when they start.
    pub(crate) shared: watch::Receiver<Arc<Shared>>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) handshakes: Arc<HandshakeSlots>,
    /// Open QUIC connections per identity.
    pub(crate) quic_per_identity: Arc<KeyedSlots<String>>,
    /// Open connections that are not tunnels (website, routes), per source.
    pub(crate) others_per_source: Arc<HandshakeSlots>,
    pub(crate) tracker: TaskTracker,
    /// The threads TCP connections are served on.
    pub(crate) workers: Arc<Workers>,
    /// Cancelled when the drain starts: no new connections, hellos get `busy`.
    pub(crate) draining: CancellationToken,
    /// Cancelled at the drain deadline: whatever is still open is closed.
    pub(crate) force: CancellationToken,
    pub(crate) listen: SocketAddr,
}

impl RunContext {
    /// The configuration new work should use.
    pub(crate) fn current(&self) -> Arc<Shared> {
        self.shared.borrow().clone()
    }
}

/// Pause after an accept error that means the process is out of resources
/// (EMFILE, ENFILE, ENOBUFS, ENOMEM), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long the QUIC endpoint gets to tell its peers it is closing.
const QUIC_CLOSE_GRACE: Duration = Duration::from_secs(1);

impl Shared {
    fn new(
        config: Config,
        listen: SocketAddr,
        tunnels: Arc<TunnelSlots>,
        registry: Arc<Registry>,
    ) -> Result<Shared, RunError> {
        let verifier = crate::tls::client_verifier(&config.tls)?;
        let tls = crate::tls::server_config_with(&config.tls, verifier.clone())?;
        let website_tls = crate::tls::website_config(&config.tls, &config.website)?;
        let terminate_tls =
            crate::terminate::configs(&config.tls, &config.website, &config.terminate, &verifier)?;
        let stealth_tls = (config.stealth.enabled())
            .then(|| crate::tls::stealth_config(&config.tls, &config.website, verifier.clone()))
            .transpose()?;
        let opens_tunnels = config.tls.has_client_ca();
        Ok(Shared {
            tls,
            quic: config.quic,
            verifier,
            policy: config.policy,
            limits: config.limits,
            listen,
            tunnels,
            reverse: config.reverse,
            website: config.website,
            website_tls,
            passthrough: config.passthrough,
            signal: config.signal,
            terminate: config.terminate,
            terminate_tls,
            registry,
            stealth: config.stealth,
            stealth_tls,
            opens_tunnels,
        })
    }

    /// Runs the current configuration's client verifier on `chain` again, now:
    /// a certificate that expired, was revoked or lost its CA since its
    /// handshake fails.
    pub(crate) fn reverify(
        &self,
        chain: &[rustls_pki_types::CertificateDer<'static>],
    ) -> Result<(), rustls::Error> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or(rustls::Error::NoCertificatesPresented)?;
        self.verifier
            .verify_client_cert(leaf, intermediates, rustls_pki_types::UnixTime::now())
            .map(|_| ())
    }

    fn quic_config(&self) -> Result<quinn::ServerConfig, RunError> {
        Ok(crate::tls::quic_server_config(
            self.tls.clone(),
            &self.quic.limits,
        )?)
    }
}

/// Serves tunnels on `listeners` until `shutdown` is cancelled, then drains.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let (_no_reloads, reloads) = mpsc::channel(1);
    run_with_reload(config, listeners, shutdown, reloads).await
}

/// Like [`run`], and applies every [`Config`] received on `reloads` to the connections
/// accepted after it (`listen`, `workers`, `max_connections`, `max_handshakes_per_source`,
/// `max_tunnels_per_identity` and whether QUIC runs cannot change without a restart).
pub async fn run_with_reload(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    mut reloads: mpsc::Receiver<Config>,
) -> Result<(), RunError> {
    let Listeners { tcp, udp, routes } = listeners;
    let listen = tcp.local_addr().map_err(RunError::Listener)?;
    let listener = TcpListeners::new(tcp, routes);
    let at_start = AtStart {
        listen: config.listen,
        workers: config.workers,
    };
    let workers = match config.workers {
        Some(count) => Workers::start(count),
        None => Workers::per_core(),
    };
    // QUIC carries tunnels only.
    let quic_configured = config.quic.enabled;
    let quic_wanted = quic_configured && config.tls.has_client_ca();
    if config.quic.enabled && !quic_wanted {
        info!(listen = %listen, "QUIC off: no [tls] client_ca is configured, so no tunnels open here");
    }
    let endpoint_config = crate::tls::quic_endpoint_config(&config.tls.key);
    let tunnels = TunnelSlots::new(config.limits.max_tunnels_per_identity);
    let first = Arc::new(Shared::new(config, listen, tunnels, Arc::default())?);
    let (shared_tx, shared_rx) = watch::channel(first.clone());
    let ctx = RunContext {
        shared: shared_rx,
        permits: Arc::new(Semaphore::new(first.limits.max_connections.get())),
        handshakes: HandshakeSlots::new(first.limits.max_handshakes_per_source),
        quic_per_identity: KeyedSlots::new(first.quic.max_connections_per_identity),
        others_per_source: HandshakeSlots::new(first.website.max_connections_per_source),
        tracker: TaskTracker::new(),
        workers: Arc::new(workers.map_err(RunError::Workers)?),
        draining: shutdown.clone(),
        force: CancellationToken::new(),
        listen,
    };
    let endpoint = match (quic_wanted, udp) {
        (true, Some(udp)) => {
            let endpoint = quinn::Endpoint::new(
                endpoint_config,
                Some(first.quic_config()?),
                udp,
                Arc::new(quinn::TokioRuntime),
            )
            .map_err(RunError::Listener)?;
            // Not tracked: it refuses connections through the drain and ends when
            // the endpoint closes, after it.
            tokio::spawn(quic::accept_loop(endpoint.clone(), ctx.clone()));
            Some(endpoint)
        }
        (true, None) => {
            warn!(listen = %listen, "QUIC is enabled but no UDP socket was given; serving TLS/TCP only");
            None
        }
        (false, _) => None,
    };
    info!(
        listen = %listen,
        quic = endpoint.is_some(),
        tunnels = first.opens_tunnels,
        workers = ctx.workers.count(),
        rules = first.policy.rule_count(),
        "tp-server listening ({})",
        if first.opens_tunnels {
            "TLS 1.3, ALPN tp/1, client certificate required"
        } else {
            "no tunnels: no [tls] client_ca"
        }
    );
    if first.stealth.enabled() {
        info!(names = ?first.stealth.names, "stealth mode: tunnels hide behind the website on these names");
        if endpoint.is_some() {
            warn!("{}", crate::stealth::QUIC_WARNING);
        }
    }
    for route in &listener.routes {
        let route_addr = route.tcp.local_addr().map_err(RunError::Listener)?;
        let name = (first.terminate.get(route.port.index)).map_or_else(String::new, |r| r.label());
        info!(listen = %listen, route_port = %route_addr, route = %name, "listening for [[terminate]] route {name}");
    }
    drop(first);

    let mut reloads_open = true;
    loop {
        // Reloads are taken in the same select as accepts, so a connection accepted
        // after a reload arrived is always served with the reloaded configuration.
        let next = async {
            let permit = ctx.permits.clone().acquire_owned().await;
            (permit, listener.accept().await)
        };
        let (permit, (port, accepted)) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            reload = reloads.recv(), if reloads_open => {
                match reload {
                    Some(config) => {
                        if quic_configured && endpoint.is_none() && config.tls.has_client_ca() {
                            warn!(listen = %listen, "QUIC was off at start (no [tls] client_ca) and starts only on restart");
                        }
                        let current = ctx.current();
                        let next = reload_into(&current, &at_start, config);
                        if let Some(endpoint) = &endpoint
                            && !Arc::ptr_eq(&current, &next)
                        {
                            match next.quic_config() {
                                Ok(quic) => endpoint.set_server_config(Some(quic)),
                                Err(e) => warn!(error = %e, "QUIC keeps its running TLS configuration"),
                            }
                        }
                        shared_tx.send_replace(next);
                    }
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
        let Some(slot) = ctx.handshakes.try_take(Source::of(peer.ip())) else {
            debug!(listen = %listen, peer = %peer, "connection closed: too many handshakes from this source");
            continue;
        };
        let span = info_span!(
            "conn",
            listen = %listen,
            peer = %peer,
            transport = "tcp",
            route_port = tracing::field::Empty,
            id = tracing::field::Empty,
        );
        if let (Some(_), Ok(on)) = (port, tcp.local_addr()) {
            span.record("route_port", tracing::field::display(on));
        }
        let shared = ctx.current();
        let force = ctx.force.clone();
        let conn_ctx = ctx.clone();
        let serve = move |tcp| {
            async move {
                let serve = async {
                    match port {
                        None => conn::serve(shared, tcp, peer, slot, conn_ctx).await,
                        // Boxed, so it does not size the task of every tunnel.
                        Some(port) => {
                            let serve = crate::terminate::port::serve;
                            Box::pin(serve(shared, tcp, peer, slot, conn_ctx, port)).await;
                        }
                    }
                };
                tokio::select! {
                    () = serve => {}
                    () = force.cancelled() => debug!("closed by shutdown deadline"),
                }
                drop(permit);
            }
        };
        if let Err(e) = ctx.workers.spawn(tcp, &ctx.tracker, span, serve) {
            warn!(listen = %listen, peer = %peer, error = %e, "connection dropped: it could not be handed to a worker");
        }
    }

    // No new TCP connections; new QUIC ones are refused by the accept loop, and
    // streams on open ones are answered `busy`.
    drop(listener);
    let tracker = &ctx.tracker;
    tracker.close();
    let open = tracker.len();
    let drain = ctx.current().limits.drain_timeout;
    info!(listen = %listen, open, drain = ?drain, "shutting down: no new connections; draining");
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        warn!(
            listen = %listen,
            open = tracker.len(),
            "drain deadline passed; closing remaining connections"
        );
        ctx.force.cancel();
        tracker.wait().await;
    }
    if let Some(endpoint) = endpoint {
        endpoint.close(quic::CLOSE_SHUTDOWN, b"server stopped");
        let _ = tokio::time::timeout(QUIC_CLOSE_GRACE, endpoint.wait_idle()).await;
    }
    info!(listen = %listen, "tp-server stopped");
    Ok(())
}

/// What the config said at start about things only a restart changes, besides what
/// [`Shared`] keeps.
struct AtStart {
    listen: SocketAddr,
    workers: Option<NonZeroUsize>,
}

/// Builds the state for a reloaded config, or keeps the current one if it is unusable.
fn reload_into(current: &Arc<Shared>, at_start: &AtStart, config: Config) -> Arc<Shared> {
    let fixed = [
        (
            "max_connections",
            config.limits.max_connections != current.limits.max_connections,
        ),
        (
            "max_handshakes_per_source",
            config.limits.max_handshakes_per_source != current.limits.max_handshakes_per_source,
        ),
        (
            "max_tunnels_per_identity",
            config.limits.max_tunnels_per_identity != current.limits.max_tunnels_per_identity,
        ),
        ("quic.enabled", config.quic.enabled != current.quic.enabled),
        (
            "quic.max_connections_per_identity",
            config.quic.max_connections_per_identity != current.quic.max_connections_per_identity,
        ),
        ("listen", config.listen != at_start.listen),
        ("workers", config.workers != at_start.workers),
        (
            "[[terminate]] listen",
            route_ports(&config.terminate) != route_ports(&current.terminate),
        ),
    ];
    for (field, changed) in fixed {
        if changed {
            warn!(listen = %current.listen, "{field} changes only on restart; keeping the running value");
        }
    }
    match Shared::new(
        config,
        current.listen,
        current.tunnels.clone(),
        current.registry.clone(),
    ) {
        Ok(mut next) => {
            next.limits.max_connections = current.limits.max_connections;
            next.limits.max_handshakes_per_source = current.limits.max_handshakes_per_source;
            next.limits.max_tunnels_per_identity = current.limits.max_tunnels_per_identity;
            next.quic.enabled = current.quic.enabled;
            next.quic.max_connections_per_identity = current.quic.max_connections_per_identity;
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

/// Every route's own listen addresses, sorted.
fn route_ports(routes: &[crate::terminate::Route]) -> Vec<SocketAddr> {
    let mut ports: Vec<SocketAddr> = routes.iter().flat_map(|r| r.listen.clone()).collect();
    ports.sort();
    ports
}

fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}
