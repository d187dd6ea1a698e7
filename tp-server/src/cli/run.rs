//! `tp-server run -c FILE`: bind, serve until a signal, drain. SIGHUP reloads. The
//! config is loaded before the runtime starts (its `workers` sizes the runtime).

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Config, Listeners};

/// Binds the address of `config`, loaded from `config_path` (TCP, and UDP for QUIC),
/// and those of the routes with their own ports, and serves until SIGTERM/SIGINT.
pub async fn run(config: Config, config_path: &Path) -> anyhow::Result<()> {
    // QUIC carries tunnels only, and without client CAs none open.
    let quic = config.quic.enabled && config.tls.has_client_ca();
    let listeners = Listeners::bind(config.listen, quic)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?
        .bind_routes(&config.terminate)
        .await
        .context("cannot listen for a [[terminate]] route")?;
    serve_until_signal(config, config_path, listeners).await
}

/// Runs the server on a bound listener. The first SIGTERM/SIGINT drains, a second
/// exits; SIGHUP re-reads `config_path` (and every file it names) and applies it to
/// new connections, or logs why not and keeps the running configuration.
pub async fn serve_until_signal(
    config: Config,
    config_path: &Path,
    listeners: Listeners,
) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let (reload_tx, reloads) = mpsc::channel(1);
    tokio::spawn(watch_shutdown_signals(shutdown.clone()));
    tokio::spawn(watch_reload_signal(config_path.to_owned(), reload_tx));
    crate::run_with_reload(config, listeners, shutdown, reloads).await?;
    Ok(())
}

async fn watch_reload_signal(path: PathBuf, reloads: mpsc::Sender<Config>) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot install the SIGHUP handler; reload by restarting");
        return;
    };
    while hup.recv().await.is_some() {
        info!(config = %path.display(), "SIGHUP: reloading");
        let loaded = tokio::task::spawn_blocking({
            let path = path.clone();
            move || Config::load(&path)
        })
        .await;
        match loaded {
            Ok(Ok(config)) => {
                if reloads.send(config).await.is_err() {
                    return;
                }
            }
            Ok(Err(e)) => warn!("reload refused, keeping the running configuration: {e}"),
            Err(e) => warn!("reload failed: {e}"),
        }
    }
}

async fn watch_shutdown_signals(shutdown: CancellationToken) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stop the server with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: draining"),
        _ = int.recv() => info!("SIGINT: draining"),
    }
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    warn!("second signal: exiting now");
    std::process::exit(130);
}
