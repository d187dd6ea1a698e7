//! `tp-bench run`: start the target, then for each run and each system start the
//! system, drive the scenarios, stop it; finally print and write the report.

mod first;
mod link;
mod merge;
mod signal;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::children::Child;
use crate::machine::{self, Machine};
use crate::ports::Ports;
use crate::report::{RunRecord, save};
use crate::results::Results;
use crate::scenarios::bulk::Direction;
use crate::scenarios::{Metric, ScenarioId, bulk, conn, idle, latency, rate};
use crate::settings::{RunArgs, Settings};
use crate::systems::{self, Ctx, Running, SystemId, Tuning};
use crate::{certs, crypto, probe};

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    })
}

/// SIGINT, SIGTERM and SIGHUP, caught from the start: every child runs in a
/// process group of its own, so only this process can stop them, and it must not
/// die of a signal before it has. A signal that arrives during the setup (the
/// target, `openssl speed`, the link) takes effect when the scenarios start.
struct Stop {
    signals: Vec<(&'static str, tokio::signal::unix::Signal)>,
}

impl Stop {
    fn install() -> anyhow::Result<Stop> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut signals = Vec::new();
        for (name, kind) in [
            ("SIGINT", SignalKind::interrupt()),
            ("SIGTERM", SignalKind::terminate()),
            ("SIGHUP", SignalKind::hangup()),
        ] {
            signals.push((
                name,
                signal(kind).with_context(|| format!("catching {name}"))?,
            ));
        }
        Ok(Stop { signals })
    }

    /// The name of the first of the signals to arrive.
    async fn received(&mut self) -> &'static str {
        std::future::poll_fn(|cx| {
            for (name, signal) in &mut self.signals {
                if signal.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*name);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

pub(crate) async fn main(args: RunArgs) -> anyhow::Result<()> {
    let mut stop = Stop::install()?;
    let mut settings = Settings::from_args(&args)?;
    let work_dir = absolute(&args.work_dir)?;
    let bin_dir = absolute(&args.bin_dir)?;
    save::check_out(&args.out)?;
    if settings
        .systems
        .iter()
        .any(|s| matches!(s, SystemId::Tp | SystemId::TpQuic))
    {
        for bin in ["tp", "tp-server"] {
            if !bin_dir.join(bin).is_file() {
                bail!(
                    "{} not found: build with `cargo build --release -p tp-server -p tp-client` \
                     or pass --bin-dir",
                    bin_dir.join(bin).display()
                );
            }
        }
    }
    if work_dir.join("systems").exists() {
        std::fs::remove_dir_all(work_dir.join("systems"))?;
    }
    std::fs::create_dir_all(&work_dir)?;
    // Read the run to merge into before measuring anything: a bad file fails now.
    let base = args.merge.as_deref().map(save::load).transpose()?;
    let started = Instant::now();
    let mut machine = Machine::read();
    if let Some(source) = &args.tp_source {
        machine.tp_commit.clone_from(source);
    }
    let load_before = machine::loadavg();
    eprintln!("tp-bench: {}", settings.describe());

    let certs = certs::generate(&work_dir.join("certs"))?;
    let ports = Arc::new(Ports::new());
    let target_addr = ports.take()?;
    let self_exe = std::env::current_exe().context("locating tp-bench itself")?;
    let mut target_cmd = Command::new(&self_exe);
    target_cmd
        .arg("target")
        .arg("--listen")
        .arg(target_addr.to_string());
    let mut target = Child::spawn("target", target_cmd, &work_dir.join("target.log"))?;
    target.wait_listening(target_addr)?;
    let signal_host = if settings.scenarios.contains(&ScenarioId::Signal) {
        Some(signal::start_host(&self_exe, &certs, &ports, &work_dir)?)
    } else {
        None
    };
    let ctx = Ctx {
        bin_dir: bin_dir.clone(),
        self_exe,
        work_dir: work_dir.clone(),
        certs,
        ports,
        target: target_addr,
        signal_host: signal_host.as_ref().map(|&(_, addr)| addr),
        far: None,
    };

    let mut results = Results::default();
    let far = if settings.scenarios.contains(&ScenarioId::LinkOpen) {
        match link::start(&ctx, &settings) {
            Ok(far) => Some(far),
            Err(e) => {
                let note = format!("(h) did not run: {e:#}");
                eprintln!("tp-bench: {note}");
                results.general.push(note);
                None
            }
        }
    } else {
        None
    };
    // A tunnel's client and server sides each hold two descriptors per tunnel, under
    // the open-file limit they inherit from this process.
    let limit: usize = machine::open_files_limit()
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let fd_cap = (limit.saturating_sub(1_000) / 2).max(1);
    // (g)'s idle connections are two descriptors each in tp-server as well.
    let holding: Vec<String> = [ScenarioId::Idle, ScenarioId::Signal]
        .into_iter()
        .filter(|s| settings.scenarios.contains(s))
        .map(|s| format!("({})", s.letter()))
        .collect();
    if !holding.is_empty() && settings.idle > fd_cap {
        let note = format!(
            "{} held {fd_cap} idle connections, not {}: the open-file limit is {limit} and \
             could not be raised (bench/run.sh tries; it needs CAP_SYS_RESOURCE for more than \
             the hard limit), and each side of a tunnel (in (g): the proxy) needs two \
             descriptors per connection",
            holding.join(" and "),
            settings.idle
        );
        eprintln!("tp-bench: {note}");
        results.general.push(note);
        settings.idle = fd_cap;
    }
    // Before measuring anything, with the idle count as capped: the sizes this
    // run will measure with against the saved run's.
    if let Some(base) = &base {
        merge::check(base, settings.quick, &settings.scenario_sizes())?;
    }
    settings.systems.retain(|&system| {
        let why = systems::unavailable(system, &bin_dir);
        if let Some(why) = &why {
            results.note(system, why.clone());
        }
        why.is_none()
    });
    for cipher in crypto::CIPHERS {
        let speed = crypto::speed(cipher, settings.crypto_seconds).map_err(|e| format!("{e:#}"));
        eprintln!("tp-bench: openssl speed {cipher}: {speed:?} GB/s");
        results.crypto.push((cipher.to_owned(), speed));
    }

    let harness = async {
        for run in 1..=settings.runs {
            for &system in &settings.systems {
                run_system(&ctx, far.as_ref(), &settings, system, run, &mut results).await;
            }
        }
    };
    tokio::select! {
        () = harness => {}
        name = stop.received() => bail!("stopped by {name}; every started process was stopped"),
    }
    drop(far);
    drop(target);
    drop(signal_host);

    let mut record = RunRecord {
        quick: settings.quick,
        sizes: settings.describe(),
        machine,
        versions: systems::versions(&bin_dir),
        results,
        load_before,
        load_after: machine::loadavg(),
        elapsed_secs: started.elapsed().as_secs_f64(),
        command: args
            .command
            .clone()
            .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" ")),
        merged: Vec::new(),
        scenario_sizes: settings.scenario_sizes(),
    };
    if let Some(base) = base {
        let measured = measured(&settings, &record);
        record = merge::merge(base, record, &attempted(&settings), measured);
    }
    save::write(&record, &args.analysis, &args.out)
}

/// The figures a run sets out to measure: each of its systems, each figure of
/// each of its scenarios.
fn attempted(settings: &Settings) -> std::collections::BTreeSet<(SystemId, Metric)> {
    settings
        .systems
        .iter()
        .flat_map(|&system| {
            Metric::ALL
                .into_iter()
                .filter(|m| settings.scenarios.contains(&m.scenario()))
                .map(move |m| (system, m))
        })
        .collect()
}

/// What a run measured, in words: per scenario, the systems it got figures from.
fn measured(settings: &Settings, record: &RunRecord) -> String {
    let per_scenario: Vec<String> = settings
        .scenarios
        .iter()
        .map(|&scenario| {
            let systems: Vec<&str> = settings
                .systems
                .iter()
                .filter(|&&s| {
                    record
                        .results
                        .samples
                        .iter()
                        .any(|x| x.system == s && x.metric.scenario() == scenario)
                })
                .map(|s| s.name())
                .collect();
            let systems = if systems.is_empty() {
                "no system".to_owned()
            } else {
                systems.join(", ")
            };
            format!("({}) for {systems}", scenario.letter())
        })
        .collect();
    per_scenario.join("; ")
}

async fn run_system(
    ctx: &Ctx,
    far: Option<&link::FarSide>,
    settings: &Settings,
    system: SystemId,
    run: u32,
    results: &mut Results,
) {
    let has = |s: ScenarioId| settings.scenarios.contains(&s);
    let traffic = [
        ScenarioId::BulkOne,
        ScenarioId::BulkEight,
        ScenarioId::OpenLatency,
        ScenarioId::OpenRate,
    ];
    if traffic.into_iter().any(has) {
        match systems::start(
            system,
            ctx,
            &format!("run{run}-traffic"),
            Tuning::Throughput,
        ) {
            Ok(running) => {
                if run == 1 {
                    check_mtls(ctx, system, &running, results).await;
                }
                if let Err(e) = traffic_scenarios(settings, system, run, &running, results).await {
                    results.note(system, format!("run {run}: {e:#}"));
                }
            }
            Err(e) => results.note(system, format!("run {run}: did not start: {e:#}")),
        }
    }
    if has(ScenarioId::Idle) {
        match systems::start(system, ctx, &format!("run{run}-idle"), Tuning::Memory) {
            Ok(running) => {
                if let Err(e) = idle_scenario(settings, system, run, &running, results).await {
                    results.note(system, format!("run {run} (e): {e:#}"));
                }
            }
            Err(e) => results.note(system, format!("run {run}: did not start: {e:#}")),
        }
    }
    if has(ScenarioId::FirstTunnel)
        && let Err(e) = first::scenario(ctx, settings, system, run, results).await
    {
        results.note(system, format!("run {run} (f1): {e:#}"));
    }
    if has(ScenarioId::Signal)
        && let Err(e) = signal::scenario(ctx, settings, system, run, results).await
    {
        results.note(system, format!("run {run} (g): {e:#}"));
    }
    if let Some(far) = far
        && let Err(e) = link::scenario(far, settings, system, run, results).await
    {
        results.note(system, format!("run {run} (h): {e:#}"));
    }
}

async fn check_mtls(ctx: &Ctx, system: SystemId, running: &Running, results: &mut Results) {
    let Some(port) = running.tls_port else { return };
    let transport = match system {
        SystemId::Tp => probe::Transport::TpTls,
        // tp-server's QUIC endpoint, on the TLS port's number.
        SystemId::TpQuic => probe::Transport::TpQuic,
        _ => probe::Transport::Tls,
    };
    // Bounded: a server that stalls the probes must not stall the run.
    let limit = std::time::Duration::from_secs(60);
    let check = tokio::time::timeout(
        limit,
        probe::client_auth(port, &ctx.certs, ctx.target, transport),
    );
    results.mtls_checked.push(system);
    let verdict = match check.await {
        Ok(Ok(verdict)) => verdict,
        Ok(Err(e)) => probe::Verdict::Inconclusive(format!("{e:#}")),
        Err(_) => probe::Verdict::Inconclusive(format!("the probes took over {limit:?}")),
    };
    let via = if system == SystemId::TpQuic {
        " (over QUIC)"
    } else {
        ""
    };
    match verdict {
        probe::Verdict::Verified(how) => {
            results.note(system, format!("mTLS check{via}: {how}"));
        }
        probe::Verdict::Inconclusive(why) => {
            results.note(system, format!("mTLS check{via} INCONCLUSIVE: {why}"));
        }
        probe::Verdict::Failed(what) => {
            let consequence = if system.is_peer() {
                results.unverified.push(system);
                "; left out of the best peer"
            } else {
                ""
            };
            results.note(
                system,
                format!("mTLS check{via} FAILED: {what}{consequence}"),
            );
        }
    }
}

fn progress(system: SystemId, run: u32, what: &str, value: String) {
    eprintln!("tp-bench: run {run} {:<8} {what}: {value}", system.name());
}

/// Reports a p50 and p99 in ms and records them as `metrics` (p50, p99).
fn percentiles(
    results: &mut Results,
    system: SystemId,
    run: u32,
    what: &str,
    metrics: (Metric, Metric),
    (p50, p99): (f64, f64),
) {
    progress(
        system,
        run,
        what,
        format!("p50 {p50:.3} ms, p99 {p99:.3} ms"),
    );
    results.add(system, metrics.0, run, p50);
    results.add(system, metrics.1, run, p99);
}

async fn traffic_scenarios(
    settings: &Settings,
    system: SystemId,
    run: u32,
    running: &Running,
    results: &mut Results,
) -> anyhow::Result<()> {
    let has = |s: ScenarioId| settings.scenarios.contains(&s);
    let entry = running.entry;
    for _ in 0..3 {
        drop(conn::open(entry).await.context("warm-up tunnel")?);
    }
    // (a) and (b): each scenario up, then down; the metric's title names it.
    let transfers = [
        (ScenarioId::BulkOne, 1, Direction::Up, Metric::BulkOne),
        (ScenarioId::BulkOne, 1, Direction::Down, Metric::BulkOneDown),
        (
            ScenarioId::BulkEight,
            settings.bulk_streams,
            Direction::Up,
            Metric::BulkEight,
        ),
        (
            ScenarioId::BulkEight,
            settings.bulk_streams,
            Direction::Down,
            Metric::BulkEightDown,
        ),
    ];
    for (scenario, streams, direction, metric) in transfers {
        if has(scenario) {
            let mbps = bulk::run(entry, settings.bulk_bytes, streams, direction)
                .await
                .context(metric.title())?;
            progress(system, run, metric.title(), format!("{mbps:.0} MB/s"));
            results.add(system, metric, run, mbps);
        }
    }
    if has(ScenarioId::OpenLatency) {
        let l = latency::run(entry, settings.opens).await.context("(c)")?;
        percentiles(
            results,
            system,
            run,
            "(c) open latency",
            (Metric::OpenP50, Metric::OpenP99),
            (l.p50_ms, l.p99_ms),
        );
    }
    if has(ScenarioId::OpenRate) {
        let r = rate::run(entry, settings.rate_clients, settings.rate_duration)
            .await
            .context("(d)")?;
        progress(
            system,
            run,
            "(d) tunnels/s",
            format!("{:.0} ({} failed)", r.per_sec, r.failures),
        );
        results.add(system, Metric::OpenRate, run, r.per_sec);
        if r.failures > 0 {
            results.note(
                system,
                format!("run {run} (d): {} tunnel opens failed", r.failures),
            );
        }
    }
    Ok(())
}

async fn idle_scenario(
    settings: &Settings,
    system: SystemId,
    run: u32,
    running: &Running,
    results: &mut Results,
) -> anyhow::Result<()> {
    let mut count = settings.idle;
    if let Some(cap) = system.idle_cap().filter(|&cap| cap < count) {
        count = cap;
        if run == 1 {
            results.note(
                system,
                format!("(e) capped at {cap} idle tunnels (one process per tunnel per side)"),
            );
        }
    }
    for _ in 0..3 {
        drop(conn::open(running.entry).await.context("warm-up tunnel")?);
    }
    let pgids = |c: &Option<Child>| c.iter().map(Child::pgid).collect::<Vec<_>>();
    let entry = running.entry;
    let r = idle::run(
        move || conn::open(entry),
        &pgids(&running.server),
        &pgids(&running.client),
        count,
        settings.idle_concurrency,
    )
    .await?;
    let fmt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1} KiB"));
    progress(
        system,
        run,
        "(e) idle tunnels",
        format!(
            "{} open, {} failed; server {}/tunnel, client {}/tunnel",
            r.opened,
            r.failed,
            fmt(r.server_kib),
            fmt(r.client_kib)
        ),
    );
    if let Some(note) = r.closed_note(run, "(e)") {
        results.note(system, note);
    }
    if r.failed > 0 {
        results.note(
            system,
            format!(
                "run {run} (e): {} idle tunnels open of {count} wanted, {} attempts failed \
                 (opening stops after 5% fail); first error: {}",
                r.opened,
                r.failed,
                r.first_error.as_deref().unwrap_or("?")
            ),
        );
    }
    if run == 1 && r.server_processes > 1 {
        results.note(
            system,
            format!(
                "(e) the server side ran as {} processes with every tunnel open (memory is their summed PSS)",
                r.server_processes
            ),
        );
    }
    if let Some(v) = r.server_kib {
        results.add(system, Metric::IdleServer, run, v);
    }
    if let Some(v) = r.client_kib {
        results.add(system, Metric::IdleClient, run, v);
    }
    Ok(())
}
