//! The (g) table: the Signal relay of tp-server against nginx as Signal's TLS
//! proxy, raw medians and tp / nginx.

use std::fmt::Write as _;

use super::{Report, mark, ratio, value};
use crate::scenarios::Metric;
use crate::systems::{SystemId, signal_setup};

/// The (g) figures, in column order.
const METRICS: [Metric; 5] = [
    Metric::SignalUp,
    Metric::SignalDown,
    Metric::SignalOpenP50,
    Metric::SignalOpenP99,
    Metric::SignalIdle,
];

/// The systems (g) compares.
const SYSTEMS: [SystemId; 2] = [SystemId::Tp, SystemId::Nginx];

impl Report<'_> {
    pub(super) fn has_signal(&self) -> bool {
        self.run
            .results
            .samples
            .iter()
            .any(|s| METRICS.contains(&s.metric))
    }

    fn signal_cell(&self, system: SystemId, metric: Metric) -> String {
        self.run
            .results
            .median(system, metric)
            .map_or("-".into(), |v| value(metric, v))
    }

    /// tp's median over nginx's, for one (g) figure.
    fn signal_ratio(&self, metric: Metric) -> String {
        let r = &self.run.results;
        let mixed = r.mixed(&[(SystemId::Tp, metric), (SystemId::Nginx, metric)]);
        r.median(SystemId::Tp, metric)
            .zip(r.median(SystemId::Nginx, metric))
            .filter(|&(_, n)| n > 0.0)
            .map_or("-".into(), |(t, n)| {
                format!("{}{}", ratio(t / n), mark(mixed))
            })
    }

    /// The (g) section of the markdown report, if (g) ran.
    pub(super) fn signal(&self, md: &mut String) {
        if !self.has_signal() {
            return;
        }
        let _ = writeln!(
            md,
            "### The Signal relay (g)\n\nA client like Signal's apps behind a proxy: outer TLS to \
             the proxy (SNI `localhost`, the site's name; ALPN http/1.1), inner TLS through it \
             to a stand-in Signal host (`tp-bench signal-host`: SNI `chat.signal.org`, a \
             certificate from the bench CA, the target protocol inside), both verified, no \
             resumption. The same client (rustls + aws-lc-rs), certificates (ECDSA P-256) and \
             stand-in for both proxies. Bulk: one inner stream moves the bulk size up into the \
             stand-in's sink, then one down from its source (checked byte for byte against the \
             pattern sent; the inner TLS authenticates every record as well); MB/s from the TCP \
             connect to the last byte. Setup: sequential TCP connect, both handshakes and a \
             32-byte echo, after 10 untimed; p50 and p99. Idle: the idle count of connections \
             opened 64 at a time, each proven by one echo, then held; memory of the proxy's \
             process groups (PSS, summed) per connection. Medians over the runs; the last row \
             is tp's median over nginx's (above 1 is more of the figure).\n"
        );
        let _ = write!(md, "| |");
        for metric in METRICS {
            let _ = write!(md, " {} [{}] |", metric.title(), metric.unit());
        }
        let _ = write!(md, "\n|---|");
        for _ in METRICS {
            md.push_str("---:|");
        }
        md.push('\n');
        for (system, name) in SYSTEMS
            .into_iter()
            .zip(["**tp**", "nginx (Signal TLS Proxy)"])
        {
            let _ = write!(md, "| {name} |");
            for metric in METRICS {
                let _ = write!(md, " {} |", self.signal_cell(system, metric));
            }
            md.push('\n');
        }
        let _ = write!(md, "| tp / nginx |");
        for metric in METRICS {
            let _ = write!(md, " {} |", self.signal_ratio(metric));
        }
        md.push_str("\n\n");
        for system in SYSTEMS {
            if let Some(setup) = signal_setup(system) {
                let _ = writeln!(md, "- {}: {setup}", system.name());
            }
        }
        md.push('\n');
    }

    /// The (g) lines of the terminal table, if (g) ran.
    pub(super) fn signal_text(&self) -> String {
        if !self.has_signal() {
            return String::new();
        }
        let mut out = String::from(
            "\n(g) Signal relay: up, down [MB/s]; setup p50, p99 [ms]; server [KiB/connection]:\n",
        );
        let rows: Vec<(&str, Vec<String>)> = vec![
            (
                "tp",
                METRICS.map(|m| self.signal_cell(SystemId::Tp, m)).to_vec(),
            ),
            (
                "nginx",
                METRICS
                    .map(|m| self.signal_cell(SystemId::Nginx, m))
                    .to_vec(),
            ),
            ("tp / nginx", METRICS.map(|m| self.signal_ratio(m)).to_vec()),
        ];
        for (name, cells) in rows {
            let _ = write!(out, "{name:<12}");
            for cell in cells {
                let _ = write!(out, "  {cell:>9}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RunRecord;
    use crate::results::Results;

    #[test]
    fn the_table_shows_medians_and_tp_over_nginx() {
        let mut results = Results::default();
        for (run, (tp, nginx)) in [(300.0, 200.0), (330.0, 210.0), (360.0, 220.0)]
            .into_iter()
            .enumerate()
        {
            let run = run as u32 + 1;
            results.add(SystemId::Tp, Metric::SignalUp, run, tp);
            results.add(SystemId::Nginx, Metric::SignalUp, run, nginx);
        }
        results.add(SystemId::Tp, Metric::SignalOpenP50, 1, 3.0);
        results.add(SystemId::Nginx, Metric::SignalOpenP50, 1, 2.0);
        let run = RunRecord::with_results(results);
        let report = Report::bare(&run);
        let md = report.markdown();
        assert!(md.contains("| **tp** | 330 | - | 3.000 | - | - |"), "{md}");
        assert!(
            md.contains("| tp / nginx | 1.57x | - | 1.50x | - | - |"),
            "{md}"
        );
        assert!(!md.contains("## Summary"), "no empty summary");
        assert!(md.contains("(g) Signal setup p50: tp 3.000 ms vs nginx 2.000 ms (1.50x)"));
        let text = report.text_table();
        assert!(text.contains("tp / nginx"), "{text}");
    }
}
