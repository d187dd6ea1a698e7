//! The (h) table: tunnel opens across the emulated link, in milliseconds and in
//! round trips of the link, each system against the best peer.

use std::fmt::Write as _;

use super::{Report, mark, ratio, value};
use crate::scenarios::Metric;
use crate::systems::{LINK_SETUP, SystemId};

/// One system's (h) figures, medians over the runs.
#[derive(Debug, Clone, Copy)]
struct Row {
    p50: f64,
    p99: Option<f64>,
    /// The link's round trip measured before this system's runs.
    rtt: Option<f64>,
}

impl Report<'_> {
    fn link_rows(&self) -> Vec<(SystemId, Row)> {
        let r = &self.run.results;
        SystemId::ALL
            .into_iter()
            .filter_map(|system| {
                let p50 = r.median(system, Metric::LinkOpenP50)?;
                Some((
                    system,
                    Row {
                        p50,
                        p99: r.median(system, Metric::LinkOpenP99),
                        rtt: r.median(system, Metric::LinkRtt),
                    },
                ))
            })
            .collect()
    }

    /// The (h) section of the markdown report, if (h) ran.
    pub(super) fn link(&self, md: &mut String) {
        let rows = self.link_rows();
        if rows.is_empty() {
            return;
        }
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| value(Metric::LinkOpenP50, v));
        let _ = writeln!(
            md,
            "### Tunnel open across a link with a round trip (h)\n\n{LINK_SETUP} The link's \
             round trip as measured (TCP connect p50 to the far target, before each system's \
             opens) includes the forwarder's own time. Medians over the runs; in brackets, the \
             median over the best peer's.\n"
        );
        let _ = writeln!(
            md,
            "| system | link round trip [ms] | open p50 [ms] | open p99 [ms] | p50 in round trips |\n\
             |---|---:|---:|---:|---:|"
        );
        let results = &self.run.results;
        for (system, row) in &rows {
            let name = match system {
                SystemId::Tp | SystemId::TpQuic => format!("**{}**", system.name()),
                SystemId::Direct | SystemId::Relay => format!("{} (reference)", system.name()),
                _ => system.name().to_owned(),
            };
            let p50 = match results.ratio(*system, Metric::LinkOpenP50) {
                Some(r) => format!(
                    "{} ({}{})",
                    ms(Some(row.p50)),
                    ratio(r),
                    mark(results.ratio_mixed(*system, Metric::LinkOpenP50))
                ),
                None => ms(Some(row.p50)),
            };
            let trips = row
                .rtt
                .filter(|&rtt| rtt > 0.0)
                .map_or("-".into(), |rtt| format!("{:.2}", row.p50 / rtt));
            let _ = writeln!(
                md,
                "| {name} | {} | {p50} | {} | {trips} |",
                ms(row.rtt),
                ms(row.p99)
            );
        }
        md.push('\n');
        let find = |id| rows.iter().find(|(s, _)| *s == id).map(|(_, row)| row.p50);
        if let (Some(tcp), Some(quic)) = (find(SystemId::Tp), find(SystemId::TpQuic)) {
            let loopback = results
                .median(SystemId::Tp, Metric::OpenP50)
                .zip(results.median(SystemId::TpQuic, Metric::OpenP50))
                .map_or(String::new(), |(t, q)| {
                    format!(" (on loopback, (c): {})", ratio(q / t))
                });
            let _ = writeln!(
                md,
                "A tunnel over `tp up`'s kept QUIC connection against a fresh TLS/TCP tunnel \
                 across the link: tp-quic / tp = {}{}{loopback}; run by run: {}.\n",
                ratio(quic / tcp),
                mark(results.mixed(&[
                    (SystemId::Tp, Metric::LinkOpenP50),
                    (SystemId::TpQuic, Metric::LinkOpenP50)
                ])),
                // Three decimals: a third is 0.333.
                self.quic_over_tcp_by_run(Metric::LinkOpenP50)
                    .iter()
                    .map(|r| format!("{r:.3}x"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        self.link_first(md);
    }

    /// The first tunnel of a fresh `tp HOST PORT` across the link, if measured.
    fn link_first(&self, md: &mut String) {
        let r = &self.run.results;
        let row = |system| {
            let p50 = r.median(system, Metric::LinkFirstP50)?;
            Some((
                p50,
                r.median(system, Metric::LinkFirstP99),
                r.median(system, Metric::LinkRtt),
            ))
        };
        let (tcp, quic) = (row(SystemId::Tp), row(SystemId::TpQuic));
        if tcp.is_none() && quic.is_none() {
            return;
        }
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| value(Metric::LinkFirstP50, v));
        let _ = writeln!(
            md,
            "The first tunnel of a fresh `tp HOST PORT` across the link, as in (f1) (a new \
             process, connection and handshake per sample, the way ssh's ProxyCommand runs \
             it; the byte it sends goes behind the hello): over TLS/TCP the TCP handshake, \
             the TLS handshake and the request are three round trips, over QUIC the \
             handshake and the request two.\n\n\
             | | p50 [ms] | p99 [ms] | p50 in round trips |\n|---|---:|---:|---:|"
        );
        for (name, row) in [("**tp** (TLS/TCP)", tcp), ("**tp-quic**", quic)] {
            let Some((p50, p99, rtt)) = row else { continue };
            let trips = rtt
                .filter(|&rtt| rtt > 0.0)
                .map_or("-".into(), |rtt| format!("{:.2}", p50 / rtt));
            let _ = writeln!(md, "| {name} | {} | {} | {trips} |", ms(Some(p50)), ms(p99));
        }
        if let (Some((t, ..)), Some((q, ..))) = (tcp, quic) {
            let _ = writeln!(md, "| tp-quic / tp | {} | | |", ratio(q / t));
        }
        md.push('\n');
    }

    /// The (h) lines of the terminal table, if (h) ran.
    pub(super) fn link_text(&self) -> String {
        let rows = self.link_rows();
        if rows.is_empty() {
            return String::new();
        }
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| value(Metric::LinkOpenP50, v));
        let mut out = String::from("\n(h) open across the link, ms:\n");
        for (system, row) in rows {
            let _ = writeln!(
                out,
                "{:<8}  link {:>7}  p50 {:>8}  p99 {:>8}",
                system.name(),
                ms(row.rtt),
                ms(Some(row.p50)),
                ms(row.p99)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::report::{Report, RunRecord};
    use crate::results::Results;
    use crate::scenarios::Metric;
    use crate::systems::SystemId;

    #[test]
    fn the_link_table_gives_round_trips_peer_ratios_and_quic_over_tls() {
        let mut results = Results::default();
        for (system, rtt, p50) in [
            (SystemId::Tp, 10.0, 33.0),
            (SystemId::TpQuic, 10.0, 10.9),
            (SystemId::Haproxy, 10.5, 33.6),
            (SystemId::Direct, 10.0, 20.5),
        ] {
            results.add(system, Metric::LinkRtt, 1, rtt);
            results.add(system, Metric::LinkOpenP50, 1, p50);
            results.add(system, Metric::LinkOpenP99, 1, p50 + 2.0);
        }
        results.add(SystemId::Tp, Metric::LinkFirstP50, 1, 35.0);
        results.add(SystemId::Tp, Metric::LinkFirstP99, 1, 40.0);
        results.add(SystemId::TpQuic, Metric::LinkFirstP50, 1, 25.0);
        results.add(SystemId::TpQuic, Metric::LinkFirstP99, 1, 30.0);
        results.add(SystemId::Tp, Metric::OpenP50, 1, 1.5);
        results.add(SystemId::TpQuic, Metric::OpenP50, 1, 0.5);
        let run = RunRecord::with_results(results);
        let report = Report::bare(&run);
        let md = report.markdown();
        for row in [
            "| **tp** | 10.000 | 33.000 (0.98x) | 35.000 | 3.30 |",
            "| **tp-quic** | 10.000 | 10.900 (0.32x) | 12.900 | 1.09 |",
            "| haproxy | 10.500 | 33.600 (1.00x) | 35.600 | 3.20 |",
            "| direct (reference) | 10.000 | 20.500 (0.61x) | 22.500 | 2.05 |",
            "tp-quic / tp = 0.33x (on loopback, (c): 0.33x); run by run: 0.330x.",
            "| **tp** (TLS/TCP) | 35.000 | 40.000 | 3.50 |",
            "| **tp-quic** | 25.000 | 30.000 | 2.50 |",
            "| tp-quic / tp | 0.71x | | |",
        ] {
            assert!(md.contains(row), "{row} in:\n{md}");
        }
        // The link's round trip is not a figure tp can be behind on.
        assert!(md.contains("Nowhere in this run."), "{md}");
        for row in [
            "| (h) open p50 across the link: no slower than the best peer | 0.98x | met |",
            "| (h) open p50 across the link over a reused QUIC connection: under a third of \
             TLS/TCP | 0.3303x | met |",
        ] {
            assert!(md.contains(row), "{row} in:\n{md}");
        }
        assert!(report.text_table().contains("(h) open across the link"));
    }
}
