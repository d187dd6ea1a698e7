//! The (f1) table: the first tunnel of a fresh `tp HOST PORT` process over TLS/TCP
//! and over QUIC, the process-start reference, and QUIC / TLS-TCP.

use std::fmt::Write as _;

use super::{Report, ratio, value};
use crate::results::median;
use crate::scenarios::Metric;
use crate::systems::{STDIO_SETUP, SystemId};

/// The (f1) figures, medians over runs (of each run's percentile), in ms.
#[derive(Debug, Clone, Copy)]
struct Row {
    p50: Option<f64>,
    p99: Option<f64>,
    /// Spawn -> exit (runs before it was measured have none).
    exit: Option<f64>,
}

impl Report<'_> {
    fn first_row(&self, system: SystemId) -> Row {
        let r = &self.run.results;
        Row {
            p50: r.median(system, Metric::FirstP50),
            p99: r.median(system, Metric::FirstP99),
            exit: r.median(system, Metric::ExitP50),
        }
    }

    /// `tp --version`, measured beside both transports: the median of all their runs.
    fn start_row(&self) -> Row {
        let r = &self.run.results;
        let pooled = |metric| {
            let mut v = r.values(SystemId::Tp, metric);
            v.extend(r.values(SystemId::TpQuic, metric));
            median(&v)
        };
        Row {
            p50: pooled(Metric::StartP50),
            p99: pooled(Metric::StartP99),
            exit: None,
        }
    }

    fn has_first(&self) -> bool {
        self.run
            .results
            .samples
            .iter()
            .any(|s| s.metric == Metric::FirstP50)
    }

    /// The (f1) section of the markdown report, if (f1) ran.
    pub(super) fn first_tunnel(&self, md: &mut String) {
        if !self.has_first() {
            return;
        }
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| value(Metric::FirstP50, v));
        let start = self.start_row();
        let net = |row: Row| row.p50.zip(start.p50).map(|(t, s)| t - s);
        let tcp = self.first_row(SystemId::Tp);
        let quic = self.first_row(SystemId::TpQuic);
        let _ = writeln!(
            md,
            "### First tunnel on a fresh connection (f1)\n\n{STDIO_SETUP} Time from `spawn()` \
             to the echoed byte on stdout (for `tp --version`: to its first byte on stdout); \
             medians over the runs of each run's p50 and p99. The last column is the time \
             from `spawn()` to the exit of that process, its stdin closed right after the \
             echo: what a script that runs `tp` once waits (p50). Only tp runs (f1): the \
             peers' clients are long-running proxies with no one-shot mode like `tp HOST \
             PORT`.\n"
        );
        let _ = writeln!(
            md,
            "| | p50 [ms] | p99 [ms] | p50 minus process start [ms] | to exit, p50 [ms] |\n\
             |---|---:|---:|---:|---:|"
        );
        for (name, row) in [("**tp** (TLS/TCP)", tcp), ("**tp-quic**", quic)] {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} |",
                ms(row.p50),
                ms(row.p99),
                ms(net(row)),
                ms(row.exit)
            );
        }
        let _ = writeln!(
            md,
            "| process start (`tp --version`, reference) | {} | {} | - | - |",
            ms(start.p50),
            ms(start.p99)
        );
        let over = |q: Option<f64>, t: Option<f64>| {
            q.zip(t)
                .filter(|&(_, t)| t > 0.0)
                .map_or("-".into(), |(q, t)| ratio(q / t))
        };
        let _ = writeln!(
            md,
            "| tp-quic / tp | {} | {} | {} | {} |\n",
            over(quic.p50, tcp.p50),
            over(quic.p99, tcp.p99),
            over(net(quic), net(tcp)),
            over(quic.exit, tcp.exit)
        );
        self.subsequent(md);
    }

    /// The (c) figures beside (f1): later tunnels, through a running `tp up`.
    fn subsequent(&self, md: &mut String) {
        let r = &self.run.results;
        let (Some(tcp), Some(quic)) = (
            r.median(SystemId::Tp, Metric::OpenP50),
            r.median(SystemId::TpQuic, Metric::OpenP50),
        ) else {
            return;
        };
        let _ = writeln!(
            md,
            "Subsequent tunnels, for comparison: (c) through a running `tp up`, which keeps one \
             QUIC connection and opens a stream per tunnel (over TLS/TCP every tunnel is still a \
             new connection and handshake), p50 {} ms over TLS/TCP and {} ms over QUIC ({}).\n",
            value(Metric::OpenP50, tcp),
            value(Metric::OpenP50, quic),
            ratio(quic / tcp)
        );
    }

    /// The (f1) lines of the terminal table, if (f1) ran.
    pub(super) fn first_text(&self) -> String {
        if !self.has_first() {
            return String::new();
        }
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| value(Metric::FirstP50, v));
        let mut out = String::from("\n(f1) first tunnel on a fresh connection, ms:\n");
        let rows = [
            ("tp", self.first_row(SystemId::Tp)),
            ("tp-quic", self.first_row(SystemId::TpQuic)),
            ("tp --version", self.start_row()),
        ];
        for (name, row) in rows {
            let _ = writeln!(
                out,
                "{name:<14}  p50 {:>8}  p99 {:>8}  to exit p50 {:>8}",
                ms(row.p50),
                ms(row.p99),
                ms(row.exit)
            );
        }
        out
    }
}
