//! `tp-bench run --merge RUN_JSON`: a partial run (a few scenarios or systems) folded
//! into a saved full run, so the report keeps every figure. A figure this run
//! measured (same system and metric) replaces the saved one's runs; every other
//! figure, note and the machine description stay as saved, and the report names
//! the merged run with its own command, date and tp build.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;

use crate::report::{MergedRun, RunRecord};

/// Reads a saved run record.
pub(crate) fn load(path: &Path) -> anyhow::Result<RunRecord> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// `base` with the figures of `part`; `measured` says in words what `part` ran.
pub(crate) fn merge(mut base: RunRecord, part: RunRecord, measured: String) -> RunRecord {
    let replaced: BTreeSet<_> = part
        .results
        .samples
        .iter()
        .map(|s| (s.system, s.metric))
        .collect();
    let results = &mut base.results;
    results
        .samples
        .retain(|s| !replaced.contains(&(s.system, s.metric)));
    results.samples.extend(part.results.samples);
    let date = &part.machine.date;
    results.general.extend(
        part.results
            .general
            .into_iter()
            .map(|g| format!("(merged run of {date}) {g}")),
    );
    for mut note in part.results.notes {
        note.text = format!("(merged run of {date}) {}", note.text);
        results.notes.push(note);
    }
    base.merged.extend(part.merged);
    base.merged.push(MergedRun {
        measured,
        command: part.command,
        date: part.machine.date,
        tp_commit: part.machine.tp_commit,
        quick: part.quick,
        sizes: part.sizes,
        load_before: part.load_before,
        load_after: part.load_after,
        elapsed_secs: part.elapsed_secs,
    });
    base
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Machine;
    use crate::results::Results;
    use crate::scenarios::Metric;
    use crate::systems::SystemId;

    fn record(date: &str, samples: &[(SystemId, Metric, f64)]) -> RunRecord {
        let mut results = Results::default();
        for &(system, metric, value) in samples {
            results.add(system, metric, 1, value);
        }
        results.note(SystemId::Tp, format!("note of {date}"));
        RunRecord {
            quick: false,
            sizes: "sizes".into(),
            machine: Machine {
                cpus: 2,
                cpu_model: String::new(),
                kernel: String::new(),
                os: String::new(),
                mem_gib: 1.0,
                open_files_limit: String::new(),
                tp_commit: format!("tp of {date}"),
                rustc: String::new(),
                date: date.into(),
            },
            versions: Vec::new(),
            results,
            load_before: String::new(),
            load_after: String::new(),
            elapsed_secs: 60.0,
            command: format!("run of {date}"),
            merged: Vec::new(),
        }
    }

    #[test]
    fn replaces_what_the_part_measured_and_keeps_the_rest() {
        use {Metric::*, SystemId::*};
        let base = record(
            "day 1",
            &[
                (Tp, OpenP50, 1.3),
                (TpQuic, OpenP50, 0.7),
                (Tp, FirstP50, 9.0),
            ],
        );
        let part = record("day 2", &[(Tp, FirstP50, 5.0), (TpQuic, FirstP50, 4.0)]);
        let merged = merge(base, part, "(f1) for tp, tp-quic".into());
        let r = &merged.results;
        assert_eq!(r.values(Tp, OpenP50), [1.3]);
        assert_eq!(r.values(TpQuic, OpenP50), [0.7]);
        assert_eq!(r.values(Tp, FirstP50), [5.0]);
        assert_eq!(r.values(TpQuic, FirstP50), [4.0]);
        assert_eq!(merged.command, "run of day 1");
        assert_eq!(merged.merged.len(), 1);
        assert_eq!(merged.merged[0].command, "run of day 2");
        assert_eq!(merged.merged[0].tp_commit, "tp of day 2");
        let notes: Vec<&str> = r.notes.iter().map(|n| n.text.as_str()).collect();
        assert_eq!(
            notes,
            ["note of day 1", "(merged run of day 2) note of day 2"]
        );
    }
}
