//! Running (h): the link and a target at its far end are set up once per harness
//! run; then, per run and system, the system starts with its server side across the
//! link and its client side here, and sequential opens are timed as in (c); for tp,
//! also fresh `tp HOST PORT` processes as in (f1).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;

use anyhow::Context;

use super::{percentiles, progress};
use crate::children::Child;
use crate::link::{self, Link};
use crate::results::Results;
use crate::scenarios::{Metric, conn, first, latency};
use crate::settings::Settings;
use crate::systems::{self, Ctx, SystemId, Tuning};

/// Connects timed to measure the link's round trip before each system.
const RTT_PROBES: usize = 20;

/// The far side of (h): its own context (whose `far` is the link) and the target
/// there. Fields drop in order: the target stops before the link goes.
#[derive(Debug)]
pub(super) struct FarSide {
    _target: Child,
    ctx: Ctx,
}

/// Sets up the link with the round trip of `settings` and starts a target at its far
/// end, listening on every address there: the server sides reach it on loopback,
/// the reference with no tunnel across the link.
pub(super) fn start(near: &Ctx, settings: &Settings) -> anyhow::Result<FarSide> {
    let work_dir = near.work_dir.join("far");
    // As for the near side: no configs or logs of an earlier run.
    if work_dir.join("systems").exists() {
        std::fs::remove_dir_all(work_dir.join("systems"))?;
    }
    std::fs::create_dir_all(&work_dir)?;
    let link = Link::start(&work_dir, settings.link_rtt).context("setting up the link")?;
    let port = near.ports.take()?.port();
    let mut cmd = Command::new(&near.self_exe);
    cmd.arg("target")
        .arg("--listen")
        .arg(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).to_string());
    let mut target = Child::spawn(
        "target across the link",
        link.far_command(&cmd),
        &work_dir.join("target.log"),
    )?;
    target.wait_listening(SocketAddr::from((link::FAR, port)))?;
    let ctx = Ctx {
        bin_dir: near.bin_dir.clone(),
        self_exe: near.self_exe.clone(),
        work_dir,
        certs: near.certs.clone(),
        ports: Arc::clone(&near.ports),
        target: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        signal_host: None,
        far: Some(link),
    };
    Ok(FarSide {
        _target: target,
        ctx,
    })
}

/// One run of (h) for `system`: the link's round trip as measured now, then the
/// system across it.
pub(super) async fn scenario(
    far: &FarSide,
    settings: &Settings,
    system: SystemId,
    run: u32,
    results: &mut Results,
) -> anyhow::Result<()> {
    let ctx = &far.ctx;
    let running = systems::start(system, ctx, &format!("run{run}-link"), Tuning::Throughput)
        .context("did not start")?;
    let probe = SocketAddr::from((link::FAR, ctx.target.port()));
    let rtt = link::measured_rtt(probe, RTT_PROBES)?;
    for _ in 0..3 {
        drop(conn::open(running.entry).await.context("warm-up tunnel")?);
    }
    let l = latency::run(running.entry, settings.link_opens)
        .await
        .context("(h)")?;
    let rtt_ms = rtt.as_secs_f64() * 1e3;
    progress(
        system,
        run,
        "(h) open across the link",
        format!(
            "p50 {:.3} ms, p99 {:.3} ms (link round trip {rtt_ms:.3} ms)",
            l.p50_ms, l.p99_ms
        ),
    );
    results.add(system, Metric::LinkRtt, run, rtt_ms);
    results.add(system, Metric::LinkOpenP50, run, l.p50_ms);
    results.add(system, Metric::LinkOpenP99, run, l.p99_ms);
    drop(running);

    // tp alone: (f1) across the link, a fresh `tp HOST PORT` per sample.
    let Some(stdio) = systems::start_stdio(system, ctx, &format!("run{run}-link-first"))
        .context("did not start for the first tunnels")?
    else {
        return Ok(());
    };
    let count = (settings.link_opens / 4).max(10);
    let f = first::run(|| stdio.tunnel(), || stdio.version(), count, &stdio.log())
        .await
        .context("(h) first tunnels")?;
    percentiles(
        results,
        system,
        run,
        "(h) first tunnel across the link",
        (Metric::LinkFirstP50, Metric::LinkFirstP99),
        (f.p50_ms, f.p99_ms),
    );
    Ok(())
}
