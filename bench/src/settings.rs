//! Command-line options of `tp-bench run` and the sizes they resolve to.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use crate::scenarios::ScenarioId;
use crate::systems::SystemId;

/// Options of `tp-bench run`. Sizes left unset take the full or `--quick` defaults.
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// Small sizes and one run: a smoke test that takes a few minutes.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Runs per system and scenario; the report shows medians [default: 3, quick: 1].
    #[arg(long)]
    pub(crate) runs: Option<u32>,
    /// Systems to run, comma-separated [default: all]: tp, stunnel, haproxy, nginx, socat, direct, relay.
    #[arg(long, value_delimiter = ',')]
    pub(crate) systems: Vec<String>,
    /// Scenarios to run, comma-separated [default: all]: a, b, c, d, e, f1 (f1: tp and tp-quic
    /// only), g (the Signal relay: tp and nginx only; sizes from --bulk-mib, --opens, --idle),
    /// h ((c) across an emulated link with --rtt-ms; needs root, iproute2 and python3).
    #[arg(long, value_delimiter = ',')]
    pub(crate) scenarios: Vec<String>,
    /// Bytes moved by the bulk scenarios, in MiB [default: 1024, quick: 64].
    #[arg(long)]
    pub(crate) bulk_mib: Option<u64>,
    /// Sequential tunnel opens in scenario (c) [default: 1000, quick: 200].
    #[arg(long)]
    pub(crate) opens: Option<usize>,
    /// Seconds of scenario (d) per run [default: 5, quick: 2].
    #[arg(long)]
    pub(crate) rate_secs: Option<u64>,
    /// Idle tunnels held open in scenario (e) [default: 10000, quick: 1000].
    #[arg(long)]
    pub(crate) idle: Option<usize>,
    /// Sequential first tunnels (fresh `tp HOST PORT` processes) in scenario (f1) [default: 200, quick: 50].
    #[arg(long)]
    pub(crate) first: Option<usize>,
    /// Round trip of the emulated link of scenario (h), in milliseconds [default: 10].
    #[arg(long)]
    pub(crate) rtt_ms: Option<u64>,
    /// Sequential tunnel opens across the link in scenario (h) [default: 200, quick: 30].
    #[arg(long)]
    pub(crate) link_opens: Option<usize>,
    /// A saved run record (docs/benchmarks.json) to merge this run into: its figures
    /// stay, except every figure this run sets out to measure (its systems, its
    /// scenarios), which is replaced; the sizes of those scenarios must be the saved
    /// run's. The report names both runs.
    #[arg(long, value_name = "RUN_JSON")]
    pub(crate) merge: Option<PathBuf>,
    /// Directory holding the release binaries `tp` and `tp-server`.
    #[arg(long, default_value = "target/release")]
    pub(crate) bin_dir: PathBuf,
    /// Scratch directory: certificates, peer configs, logs.
    #[arg(long, default_value = "target/bench")]
    pub(crate) work_dir: PathBuf,
    /// Markdown report to write; the run record goes beside it as .json.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub(crate) out: PathBuf,
    /// Hand-written analysis included verbatim in the report, if the file exists.
    #[arg(long, default_value = "bench/analysis.md")]
    pub(crate) analysis: PathBuf,
    /// The command line to print in the report (bench/run.sh passes its own).
    #[arg(long)]
    pub(crate) command: Option<String>,
    /// Where the tp binaries were built from, for the report [default: `git describe`].
    #[arg(long)]
    pub(crate) tp_source: Option<String>,
}

/// Resolved sizes and selections.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) quick: bool,
    pub(crate) runs: u32,
    pub(crate) systems: Vec<SystemId>,
    pub(crate) scenarios: Vec<ScenarioId>,
    pub(crate) bulk_bytes: u64,
    pub(crate) bulk_streams: usize,
    pub(crate) opens: usize,
    pub(crate) rate_clients: usize,
    pub(crate) rate_duration: Duration,
    pub(crate) idle: usize,
    pub(crate) idle_concurrency: usize,
    pub(crate) first: usize,
    pub(crate) link_rtt: Duration,
    pub(crate) link_opens: usize,
    pub(crate) crypto_seconds: u32,
}

impl Settings {
    pub(crate) fn from_args(args: &RunArgs) -> anyhow::Result<Self> {
        let q = args.quick;
        let systems = if args.systems.is_empty() {
            SystemId::ALL.to_vec()
        } else {
            args.systems
                .iter()
                .map(|s| SystemId::parse(s).with_context(|| format!("unknown system {s:?}")))
                .collect::<anyhow::Result<_>>()?
        };
        let scenarios = if args.scenarios.is_empty() {
            ScenarioId::ALL.to_vec()
        } else {
            args.scenarios
                .iter()
                .map(|s| ScenarioId::parse(s).with_context(|| format!("unknown scenario {s:?}")))
                .collect::<anyhow::Result<_>>()?
        };
        let runs = args.runs.unwrap_or(if q { 1 } else { 3 });
        if runs == 0 {
            bail!("--runs must be at least 1");
        }
        let bulk_mib = args.bulk_mib.unwrap_or(if q { 64 } else { 1024 });
        Ok(Self {
            quick: q,
            runs,
            systems,
            scenarios,
            bulk_bytes: bulk_mib.max(1) << 20,
            bulk_streams: 8,
            opens: args.opens.unwrap_or(if q { 200 } else { 1000 }).max(10),
            rate_clients: 64,
            rate_duration: Duration::from_secs(args.rate_secs.unwrap_or(if q { 2 } else { 5 })),
            idle: args.idle.unwrap_or(if q { 1000 } else { 10_000 }).max(1),
            idle_concurrency: 64,
            first: args.first.unwrap_or(if q { 50 } else { 200 }).max(10),
            link_rtt: Duration::from_millis(args.rtt_ms.unwrap_or(10).clamp(1, 1_000)),
            link_opens: args.link_opens.unwrap_or(if q { 30 } else { 200 }).max(10),
            crypto_seconds: if q { 1 } else { 3 },
        })
    }

    /// One line describing the sizes of the scenarios that run, for the report.
    /// For each scenario this run has, the sizes that shape its figures, in
    /// words: two runs whose words differ measured different things.
    pub(crate) fn scenario_sizes(&self) -> std::collections::BTreeMap<String, String> {
        let mib = self.bulk_bytes >> 20;
        self.scenarios
            .iter()
            .map(|&s| {
                let words = match s {
                    ScenarioId::BulkOne => format!("{mib} MiB"),
                    ScenarioId::BulkEight => {
                        format!("{mib} MiB over {} streams", self.bulk_streams)
                    }
                    ScenarioId::OpenLatency => format!("{} opens", self.opens),
                    ScenarioId::OpenRate => format!(
                        "{} clients for {} s",
                        self.rate_clients,
                        self.rate_duration.as_secs()
                    ),
                    ScenarioId::Idle => format!("{} idle tunnels", self.idle),
                    ScenarioId::FirstTunnel => format!("{} first tunnels", self.first),
                    ScenarioId::Signal => format!(
                        "{mib} MiB each way, {} setups, {} idle connections",
                        self.opens, self.idle
                    ),
                    ScenarioId::LinkOpen => format!(
                        "{} opens across a {} ms round trip",
                        self.link_opens,
                        self.link_rtt.as_millis()
                    ),
                };
                (s.letter().to_owned(), words)
            })
            .collect()
    }

    pub(crate) fn describe(&self) -> String {
        let has = |s| self.scenarios.contains(&s);
        let mut parts = vec![format!("{} run(s)", self.runs)];
        if has(ScenarioId::BulkOne) || has(ScenarioId::BulkEight) {
            parts.push(format!("bulk {} MiB", self.bulk_bytes >> 20));
        }
        if has(ScenarioId::OpenLatency) {
            parts.push(format!("{} sequential opens", self.opens));
        }
        if has(ScenarioId::OpenRate) {
            parts.push(format!(
                "{} clients for {} s",
                self.rate_clients,
                self.rate_duration.as_secs()
            ));
        }
        if has(ScenarioId::Idle) {
            parts.push(format!("{} idle tunnels", self.idle));
        }
        if has(ScenarioId::FirstTunnel) {
            parts.push(format!("{} first tunnels", self.first));
        }
        if has(ScenarioId::Signal) {
            parts.push(format!(
                "(g) {} MiB each way, {} sequential setups, {} idle connections",
                self.bulk_bytes >> 20,
                self.opens,
                self.idle
            ));
        }
        if has(ScenarioId::LinkOpen) {
            parts.push(format!(
                "(h) {} sequential opens across a {} ms round trip",
                self.link_opens,
                self.link_rtt.as_millis()
            ));
        }
        parts.join("; ")
    }
}
