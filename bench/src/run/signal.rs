//! Running (g) for one system and one run: the stand-in Signal host (started once
//! per harness run), then the system as a Signal proxy for the traffic figures, and
//! again, fresh, for the idle connections.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

use super::{percentiles, progress};
use crate::certs::Certs;
use crate::children::Child;
use crate::ports::Ports;
use crate::results::Results;
use crate::scenarios::bulk::Direction;
use crate::scenarios::signal;
use crate::scenarios::tls_in_tls::{SignalClient, negotiated};
use crate::scenarios::{Metric, idle};
use crate::settings::Settings;
use crate::systems::{self, Ctx, SystemId};

/// Starts the stand-in Signal host (`tp-bench signal-host`).
pub(super) fn start_host(
    self_exe: &Path,
    certs: &Certs,
    ports: &Ports,
    work_dir: &Path,
) -> anyhow::Result<(Child, SocketAddr)> {
    let addr = ports.take()?;
    let mut cmd = Command::new(self_exe);
    cmd.arg("signal-host")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--cert")
        .arg(&certs.signal_cert)
        .arg("--key")
        .arg(&certs.signal_key);
    let mut child = Child::spawn("Signal stand-in", cmd, &work_dir.join("signal-host.log"))?;
    child.wait_listening(addr)?;
    Ok((child, addr))
}

pub(super) async fn scenario(
    ctx: &Ctx,
    settings: &Settings,
    system: SystemId,
    run: u32,
    results: &mut Results,
) -> anyhow::Result<()> {
    let Some(host) = ctx.signal_host else {
        return Ok(());
    };
    let Some(proxy) = systems::start_signal(system, ctx, host, &format!("run{run}-signal"))
        .context("did not start")?
    else {
        return Ok(());
    };
    let client = SignalClient::new(&ctx.certs.ca)?;
    let entry = proxy.entry;
    if run == 1 {
        checks(&client, entry, system, results).await;
    }
    for _ in 0..3 {
        drop(client.open(entry).await.context("warm-up connection")?);
    }
    for (direction, metric, what) in [
        (Direction::Up, Metric::SignalUp, "(g) Signal bulk up"),
        (Direction::Down, Metric::SignalDown, "(g) Signal bulk down"),
    ] {
        let mbps = signal::bulk(&client, entry, settings.bulk_bytes, direction)
            .await
            .context(what)?;
        progress(system, run, what, format!("{mbps:.0} MB/s"));
        results.add(system, metric, run, mbps);
    }
    let l = signal::latency(&client, entry, settings.opens)
        .await
        .context("(g) setup latency")?;
    percentiles(
        results,
        system,
        run,
        "(g) Signal setup",
        (Metric::SignalOpenP50, Metric::SignalOpenP99),
        (l.p50_ms, l.p99_ms),
    );
    drop(proxy);

    // Idle connections on a fresh start, as (e): no allocator state from the bulk.
    let Some(proxy) = systems::start_signal(system, ctx, host, &format!("run{run}-signal-idle"))
        .context("did not start")?
    else {
        return Ok(());
    };
    let entry = proxy.entry;
    for _ in 0..3 {
        drop(client.open(entry).await.context("warm-up connection")?);
    }
    let opener = client.clone();
    let r = idle::run(
        move || {
            let c = opener.clone();
            async move { c.open(entry).await }
        },
        &proxy.pgids(),
        &[],
        settings.idle,
        settings.idle_concurrency,
    )
    .await?;
    progress(
        system,
        run,
        "(g) Signal idle",
        format!(
            "{} open, {} failed; server {}/connection",
            r.opened,
            r.failed,
            r.server_kib
                .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1} KiB"))
        ),
    );
    if let Some(note) = r.closed_note(run, "(g)") {
        results.note(system, note);
    }
    if r.failed > 0 {
        results.note(
            system,
            format!(
                "run {run} (g): {} idle Signal connections open of {} wanted, {} attempts \
                 failed; first error: {}",
                r.opened,
                settings.idle,
                r.failed,
                r.first_error.as_deref().unwrap_or("?")
            ),
        );
    }
    if let Some(v) = r.server_kib {
        results.add(system, Metric::SignalIdle, run, v);
    }
    Ok(())
}

/// Notes, once per system: what the outer handshake negotiated, and that an inner
/// server name off the allowlist gets nowhere.
async fn checks(client: &SignalClient, entry: SocketAddr, system: SystemId, results: &mut Results) {
    match client.outer(entry).await {
        Ok(outer) => results.note(
            system,
            format!("(g) outer TLS negotiated: {}", negotiated(&outer)),
        ),
        Err(e) => results.note(system, format!("(g) outer TLS FAILED: {e:#}")),
    }
    let refused = tokio::time::timeout(
        crate::scenarios::conn::PING_TIMEOUT,
        client.connect_to(entry, "example.com"),
    );
    match refused.await.unwrap_or_else(|_| {
        Err(anyhow::anyhow!(
            "no answer within {:?}",
            crate::scenarios::conn::PING_TIMEOUT
        ))
    }) {
        Ok(_) => results.note(
            system,
            "(g) check FAILED: an inner TLS handshake to example.com (not on the allowlist) \
             completed",
        ),
        Err(e) => results.note(
            system,
            format!("(g) check: inner server name example.com (not allowed) refused: {e:#}"),
        ),
    }
}
