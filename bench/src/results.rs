//! Every figure measured, with medians and ratios to the best peer.

use serde::{Deserialize, Serialize};

use crate::scenarios::Metric;
use crate::systems::SystemId;

/// One measured value of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sample {
    pub(crate) system: SystemId,
    pub(crate) metric: Metric,
    pub(crate) run: u32,
    pub(crate) value: f64,
    /// Which harness run measured it: 0 the record's own, k its k-th merged run
    /// (`tp-bench run --merge`).
    #[serde(default)]
    pub(crate) origin: u32,
}

/// A remark about one system (a failure, a cap, a check).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Note {
    pub(crate) system: SystemId,
    pub(crate) text: String,
}

/// Everything a harness run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Results {
    /// Remarks about the whole run (limits of the machine).
    #[serde(default)]
    pub(crate) general: Vec<String>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) notes: Vec<Note>,
    /// `openssl speed` per cipher, GB/s at 16 KiB blocks, one core.
    pub(crate) crypto: Vec<(String, Result<f64, String>)>,
    /// Peers that forwarded for a client without a certificate (the mTLS check
    /// failed): they do less than the job, so they never set the bar.
    #[serde(default)]
    pub(crate) unverified: Vec<SystemId>,
    /// Systems the mTLS check ran against (it runs with the traffic scenarios).
    #[serde(default)]
    pub(crate) mtls_checked: Vec<SystemId>,
}

impl Results {
    pub(crate) fn add(&mut self, system: SystemId, metric: Metric, run: u32, value: f64) {
        if value.is_finite() {
            self.samples.push(Sample {
                system,
                metric,
                run,
                value,
                origin: 0,
            });
        }
    }

    pub(crate) fn note(&mut self, system: SystemId, text: impl Into<String>) {
        let text = text.into();
        eprintln!("tp-bench: {}: {text}", system.name());
        self.notes.push(Note { system, text });
    }

    pub(crate) fn values(&self, system: SystemId, metric: Metric) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| s.system == system && s.metric == metric)
            .map(|s| s.value)
            .collect()
    }

    pub(crate) fn median(&self, system: SystemId, metric: Metric) -> Option<f64> {
        median(&self.values(system, metric))
    }

    /// The best median among the TLS peers (stunnel, haproxy, nginx, socat) that
    /// passed the mTLS check.
    pub(crate) fn best_peer(&self, metric: Metric) -> Option<(SystemId, f64)> {
        SystemId::ALL
            .into_iter()
            .filter(|s| s.is_peer() && !self.unverified.contains(s))
            .filter_map(|s| self.median(s, metric).map(|m| (s, m)))
            .reduce(|best, next| {
                let better = if metric.higher_is_better() {
                    next.1 > best.1
                } else {
                    next.1 < best.1
                };
                if better { next } else { best }
            })
    }

    /// `median / best peer's median` (same units: above 1 is more of the figure).
    pub(crate) fn ratio(&self, system: SystemId, metric: Metric) -> Option<f64> {
        let (_, best) = self.best_peer(metric)?;
        let mine = self.median(system, metric)?;
        (best != 0.0).then(|| mine / best)
    }

    /// `system`'s figure over the best verified peer's of the same run, run by run,
    /// in the order measured: every system runs once per round, so a round's
    /// figures saw the same machine. Rounds without a peer's figure are left out.
    pub(crate) fn ratio_by_run(&self, system: SystemId, metric: Metric) -> Vec<f64> {
        let mut mine: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.system == system && s.metric == metric)
            .collect();
        mine.sort_by_key(|s| (s.origin, s.run));
        mine.into_iter()
            .filter_map(|m| {
                let best = self
                    .samples
                    .iter()
                    .filter(|p| {
                        p.system.is_peer()
                            && !self.unverified.contains(&p.system)
                            && p.metric == metric
                            && (p.origin, p.run) == (m.origin, m.run)
                    })
                    .map(|p| p.value)
                    .reduce(|a, b| {
                        if metric.higher_is_better() {
                            a.max(b)
                        } else {
                            a.min(b)
                        }
                    })?;
                (best != 0.0).then(|| m.value / best)
            })
            .collect()
    }

    /// Whether the figures named come from more than one harness run (a merged
    /// record): a ratio between them also measures how the machine changed.
    pub(crate) fn mixed(&self, figures: &[(SystemId, Metric)]) -> bool {
        let mut origins = self
            .samples
            .iter()
            .filter(|s| figures.contains(&(s.system, s.metric)))
            .map(|s| s.origin);
        origins
            .next()
            .is_some_and(|first| origins.any(|o| o != first))
    }

    /// Whether `system`'s ratio to the best peer compares two runs' figures.
    pub(crate) fn ratio_mixed(&self, system: SystemId, metric: Metric) -> bool {
        self.best_peer(metric)
            .is_some_and(|(peer, _)| self.mixed(&[(system, metric), (peer, metric)]))
    }
}

/// Put after a ratio between figures of different runs ([`Results::mixed`]).
pub(crate) const MIXED: &str = " †";

/// What [`MIXED`] means, said once where the merged runs are listed.
pub(crate) const MIXED_NOTE: &str = "A ratio marked † compares figures from different runs \
of the harness: the machine's speed moves between runs, and the ratio moves with it.";

/// Median of unsorted values; the mean of the middle two for an even count.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn best_peer_follows_the_direction_and_ignores_tp_and_references() {
        let mut r = Results::default();
        r.add(SystemId::Tp, Metric::BulkOne, 1, 900.0);
        r.add(SystemId::Direct, Metric::BulkOne, 1, 5000.0);
        r.add(SystemId::Stunnel, Metric::BulkOne, 1, 400.0);
        r.add(SystemId::Haproxy, Metric::BulkOne, 1, 600.0);
        r.add(SystemId::Tp, Metric::OpenP50, 1, 0.9);
        r.add(SystemId::Stunnel, Metric::OpenP50, 1, 1.2);
        r.add(SystemId::Haproxy, Metric::OpenP50, 1, 0.8);
        assert_eq!(
            r.best_peer(Metric::BulkOne),
            Some((SystemId::Haproxy, 600.0))
        );
        assert_eq!(r.ratio(SystemId::Tp, Metric::BulkOne), Some(1.5));
        assert_eq!(r.best_peer(Metric::OpenP50), Some((SystemId::Haproxy, 0.8)));
        assert_eq!(r.best_peer(Metric::IdleServer), None);
        // A peer that skipped client authentication never sets the bar.
        r.unverified.push(SystemId::Haproxy);
        assert_eq!(
            r.best_peer(Metric::BulkOne),
            Some((SystemId::Stunnel, 400.0))
        );
        assert_eq!(r.best_peer(Metric::OpenP50), Some((SystemId::Stunnel, 1.2)));
    }

    #[test]
    fn ratios_run_by_run_pair_each_round_with_its_best_peer() {
        let mut r = Results::default();
        for (run, tp, haproxy, nginx) in [(1, 900.0, 600.0, 700.0), (2, 800.0, 800.0, 400.0)] {
            r.add(SystemId::Tp, Metric::BulkOne, run, tp);
            r.add(SystemId::Haproxy, Metric::BulkOne, run, haproxy);
            r.add(SystemId::Nginx, Metric::BulkOne, run, nginx);
        }
        // A round no peer finished has no ratio.
        r.add(SystemId::Tp, Metric::BulkOne, 3, 1000.0);
        let by_run = r.ratio_by_run(SystemId::Tp, Metric::BulkOne);
        assert_eq!(by_run.len(), 2, "{by_run:?}");
        assert!((by_run[0] - 900.0 / 700.0).abs() < 1e-9, "{by_run:?}");
        assert!((by_run[1] - 1.0).abs() < 1e-9, "{by_run:?}");
        // A merged run's round 1 is not the record's round 1.
        r.samples[0].origin = 1;
        assert_eq!(r.ratio_by_run(SystemId::Tp, Metric::BulkOne).len(), 1);
        // Lower is better for latency: the best peer is the fastest.
        r.add(SystemId::Tp, Metric::OpenP50, 1, 1.0);
        r.add(SystemId::Haproxy, Metric::OpenP50, 1, 2.0);
        r.add(SystemId::Nginx, Metric::OpenP50, 1, 4.0);
        assert_eq!(r.ratio_by_run(SystemId::Tp, Metric::OpenP50), vec![0.5]);
    }

    #[test]
    fn figures_of_two_runs_are_mixed() {
        let mut r = Results::default();
        r.add(SystemId::Tp, Metric::BulkOne, 1, 900.0);
        r.add(SystemId::Haproxy, Metric::BulkOne, 1, 600.0);
        assert!(!r.mixed(&[
            (SystemId::Tp, Metric::BulkOne),
            (SystemId::Haproxy, Metric::BulkOne)
        ]));
        assert!(!r.ratio_mixed(SystemId::Tp, Metric::BulkOne));
        r.samples[0].origin = 1;
        assert!(r.mixed(&[
            (SystemId::Tp, Metric::BulkOne),
            (SystemId::Haproxy, Metric::BulkOne)
        ]));
        assert!(r.ratio_mixed(SystemId::Tp, Metric::BulkOne));
        assert!(!r.mixed(&[(SystemId::Tp, Metric::BulkOne)]));
    }
}
