//! The report: a plain-text table for the terminal and `docs/benchmarks.md`.

mod first;
mod link;
mod markdown;
pub(crate) mod save;
mod signal;

use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use crate::results::Results;
use crate::scenarios::Metric;
use crate::systems::SystemId;

/// Everything one harness run recorded; saved beside the report (`docs/benchmarks.json`)
/// so the report can be written again (`tp-bench report`) after the analysis changes,
/// and a later partial run merged into it, from any checkout.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    pub(crate) quick: bool,
    /// The sizes, in words.
    pub(crate) sizes: String,
    pub(crate) machine: Machine,
    pub(crate) versions: Vec<(String, String)>,
    pub(crate) results: Results,
    pub(crate) load_before: String,
    pub(crate) load_after: String,
    pub(crate) elapsed_secs: f64,
    pub(crate) command: String,
    /// Later partial runs merged into this one (`tp-bench run --merge`), oldest first.
    #[serde(default)]
    pub(crate) merged: Vec<MergedRun>,
    /// Per scenario letter, the sizes its figures were measured with
    /// ([`crate::settings::Settings::scenario_sizes`]; a merged run's replace
    /// those of the scenarios it ran). Empty in records older than this field.
    #[serde(default)]
    pub(crate) scenario_sizes: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
impl RunRecord {
    /// A quick run that recorded `results` and nothing else, for report tests.
    pub(crate) fn with_results(results: Results) -> RunRecord {
        RunRecord {
            quick: true,
            sizes: String::new(),
            machine: Machine::read(),
            versions: Vec::new(),
            results,
            load_before: String::new(),
            load_after: String::new(),
            elapsed_secs: 1.0,
            command: String::new(),
            merged: Vec::new(),
            scenario_sizes: Default::default(),
        }
    }
}

/// A partial run whose figures replaced or joined those of the base run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MergedRun {
    /// What it measured, in words (scenarios and systems).
    pub(crate) measured: String,
    pub(crate) command: String,
    pub(crate) date: String,
    pub(crate) tp_commit: String,
    pub(crate) quick: bool,
    pub(crate) sizes: String,
    pub(crate) load_before: String,
    pub(crate) load_after: String,
    pub(crate) elapsed_secs: f64,
}

/// A run and the hand-written analysis to show with it.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    pub(crate) run: &'a RunRecord,
    pub(crate) analysis: Option<String>,
    /// Where the run record is kept beside the report (`docs/benchmarks.json`).
    pub(crate) record: String,
}

#[cfg(test)]
impl<'a> Report<'a> {
    /// The report of `run` alone, as the tests read it: no analysis, the record where
    /// `bench/run.sh` keeps it.
    pub(crate) fn bare(run: &'a RunRecord) -> Self {
        Report {
            run,
            analysis: None,
            record: "docs/benchmarks.json".to_owned(),
        }
    }
}

/// A value in its metric's usual precision.
pub(crate) fn value(metric: Metric, v: f64) -> String {
    match metric {
        Metric::BulkOne
        | Metric::BulkOneDown
        | Metric::BulkEight
        | Metric::BulkEightDown
        | Metric::OpenRate
        | Metric::SignalUp
        | Metric::SignalDown => format!("{v:.0}"),
        Metric::OpenP50
        | Metric::OpenP99
        | Metric::FirstP50
        | Metric::FirstP99
        | Metric::StartP50
        | Metric::StartP99
        | Metric::ExitP50
        | Metric::SignalOpenP50
        | Metric::SignalOpenP99
        | Metric::LinkOpenP50
        | Metric::LinkOpenP99
        | Metric::LinkRtt
        | Metric::LinkFirstP50
        | Metric::LinkFirstP99 => format!("{v:.3}"),
        Metric::IdleServer | Metric::IdleClient | Metric::SignalIdle => format!("{v:.1}"),
    }
}

/// [`crate::results::MIXED`] when `mixed`.
pub(crate) fn mark(mixed: bool) -> &'static str {
    if mixed { crate::results::MIXED } else { "" }
}

/// A ratio to the best peer.
pub(crate) fn ratio(r: f64) -> String {
    format!("{r:.2}x")
}

/// A ratio shown beside a verdict against `threshold`: four decimals where two
/// would round it onto the threshold, so that 0.3340 does not read "0.33x, not met".
pub(crate) fn ratio_beside(r: f64, threshold: f64) -> String {
    if ratio(r) == ratio(threshold) && r != threshold {
        format!("{r:.4}x")
    } else {
        ratio(r)
    }
}

impl Report<'_> {
    /// The systems that produced at least one figure, in the canonical order.
    fn systems(&self) -> Vec<SystemId> {
        SystemId::ALL
            .into_iter()
            .filter(|&s| self.run.results.samples.iter().any(|x| x.system == s))
            .collect()
    }

    /// Metrics with at least one figure.
    fn metrics(&self) -> Vec<Metric> {
        Metric::ALL
            .into_iter()
            .filter(|&m| self.run.results.samples.iter().any(|s| s.metric == m))
            .collect()
    }

    /// The metrics of the summary table (compared with the peers).
    fn summary_metrics(&self) -> Vec<Metric> {
        let mut metrics = self.metrics();
        metrics.retain(|m| m.in_summary());
        metrics
    }

    /// `median (ratio)` or `-`; the ratio marked when it compares two runs.
    fn cell(&self, system: SystemId, metric: Metric) -> String {
        let results = &self.run.results;
        match results.median(system, metric) {
            None => "-".to_owned(),
            Some(m) => match results.ratio(system, metric) {
                Some(r) => format!(
                    "{} ({}{})",
                    value(metric, m),
                    ratio(r),
                    mark(results.ratio_mixed(system, metric))
                ),
                None => value(metric, m),
            },
        }
    }

    /// The summary as aligned plain text.
    pub(crate) fn text_table(&self) -> String {
        let metrics = self.summary_metrics();
        if metrics.is_empty() {
            // A run of (f1), (g) or (h) alone: only their own tables.
            return format!(
                "{}{}{}",
                self.first_text(),
                self.signal_text(),
                self.link_text()
            );
        }
        let mut rows = vec![{
            let mut head = vec!["system".to_owned()];
            head.extend(
                metrics
                    .iter()
                    .map(|m| format!("{} [{}]", m.title(), m.unit())),
            );
            head
        }];
        for system in self.systems() {
            let mut row = vec![system.name().to_owned()];
            row.extend(metrics.iter().map(|&m| self.cell(system, m)));
            rows.push(row);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::from(
            "\nMedians; (ratio) = median / best peer's median (stunnel, haproxy, nginx, socat).\n",
        );
        for row in rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out.push_str(&self.first_text());
        out.push_str(&self.signal_text());
        out.push_str(&self.link_text());
        out
    }

    /// tp-quic's `metric` over tp's, run by run (runs where both have one).
    fn quic_over_tcp_by_run(&self, metric: Metric) -> Vec<f64> {
        let samples = &self.run.results.samples;
        let of = |system| {
            samples
                .iter()
                .filter(move |s| s.system == system && s.metric == metric)
        };
        of(SystemId::TpQuic)
            .filter_map(|q| {
                of(SystemId::Tp)
                    .find(|t| t.run == q.run && t.origin == q.origin && t.value > 0.0)
                    .map(|t| q.value / t.value)
            })
            .collect()
    }

    /// Figures where tp is behind the best peer: the summary's, (g)'s and (h)'s (the
    /// (f1) figures have no peer; the link's round trip is the link's, not tp's).
    fn tp_behind(&self) -> Vec<String> {
        let mut out = Vec::new();
        for metric in self.metrics() {
            if metric == Metric::LinkRtt {
                continue;
            }
            let (Some((peer, best)), Some(tp), Some(r)) = (
                self.run.results.best_peer(metric),
                self.run.results.median(SystemId::Tp, metric),
                self.run.results.ratio(SystemId::Tp, metric),
            ) else {
                continue;
            };
            let behind = if metric.higher_is_better() {
                r < 1.0
            } else {
                r > 1.0
            };
            if behind {
                out.push(format!(
                    "{}: tp {} {unit} vs {} {} {unit} ({}{})",
                    metric.title(),
                    value(metric, tp),
                    peer.name(),
                    value(metric, best),
                    ratio(r),
                    mark(self.run.results.ratio_mixed(SystemId::Tp, metric)),
                    unit = metric.unit()
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_beside_its_threshold_never_rounds_onto_it() {
        assert_eq!(ratio_beside(0.3340, 1.0 / 3.0), "0.3340x");
        assert_eq!(ratio_beside(0.3321, 1.0 / 3.0), "0.3321x");
        assert_eq!(ratio_beside(1.196, 1.2), "1.1960x");
        assert_eq!(ratio_beside(1.004, 1.0), "1.0040x");
        assert_eq!(ratio_beside(1.0, 1.0), "1.00x");
        assert_eq!(ratio_beside(0.35, 1.0 / 3.0), "0.35x");
        assert_eq!(ratio_beside(1.43, 1.2), "1.43x");
    }
}
