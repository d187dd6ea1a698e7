//! `tp-bench run --merge RUN_JSON`: a partial run (a few scenarios or systems) folded
//! into a saved full run, so the report keeps every figure. Every figure this run
//! set out to measure (its systems times its scenarios' figures) replaces the saved
//! one, even where this run got none (a system that failed now shows no figure
//! rather than an old one); every other figure, note and the machine description
//! stay as saved. Each figure remembers which run measured it, so the report can
//! mark ratios between runs, and names the merged run with its own command, date
//! and tp build.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;

use crate::report::{MergedRun, RunRecord};
use crate::scenarios::Metric;
use crate::systems::SystemId;

/// Refuses a merge whose figures would not compare: a quick run into a full one
/// or the other way round, or a scenario measured with other sizes than the saved
/// run's (`sizes`: this run's, per scenario letter). The number of runs may differ.
pub(crate) fn check(
    base: &RunRecord,
    quick: bool,
    sizes: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    if base.quick != quick {
        let mode = |q| if q { "a quick run" } else { "a full run" };
        bail!(
            "cannot merge {} into {}: their sizes differ ({} --quick, or drop --merge)",
            mode(quick),
            mode(base.quick),
            if quick { "drop" } else { "add" }
        );
    }
    for (scenario, ours) in sizes {
        if let Some(saved) = base.scenario_sizes.get(scenario)
            && saved != ours
        {
            bail!(
                "cannot merge: ({scenario}) would run with {ours}, the saved run's with \
                 {saved}; give the same sizes, or drop --merge"
            );
        }
    }
    Ok(())
}

/// `base` with the figures of `part`: `attempted` are the figures `part` set out
/// to measure, `measured` says in words what it ran.
pub(crate) fn merge(
    mut base: RunRecord,
    part: RunRecord,
    attempted: &BTreeSet<(SystemId, Metric)>,
    measured: String,
) -> RunRecord {
    let results = &mut base.results;
    results
        .samples
        .retain(|s| !attempted.contains(&(s.system, s.metric)));
    // `part`'s own merged runs come first in the list, then `part` itself.
    let offset = base.merged.len() as u32;
    let own = offset + part.merged.len() as u32 + 1;
    results
        .samples
        .extend(part.results.samples.into_iter().map(|mut s| {
            s.origin = if s.origin == 0 {
                own
            } else {
                offset + s.origin
            };
            s
        }));
    // The mTLS verdict of a system this run checked is this run's; one it did
    // not check (no traffic scenario) keeps the saved verdict.
    let checked = &part.results.mtls_checked;
    results.unverified.retain(|s| !checked.contains(s));
    results.unverified.extend(part.results.unverified);
    for &system in checked {
        if !results.mtls_checked.contains(&system) {
            results.mtls_checked.push(system);
        }
    }
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
    base.scenario_sizes.extend(part.scenario_sizes);
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
                cpu_family_model: String::new(),
                libc: String::new(),
                glibc_tunables: String::new(),
            },
            versions: Vec::new(),
            results,
            load_before: String::new(),
            load_after: String::new(),
            elapsed_secs: 60.0,
            command: format!("run of {date}"),
            merged: Vec::new(),
            scenario_sizes: BTreeMap::new(),
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
        let attempted = [(Tp, FirstP50), (TpQuic, FirstP50)].into_iter().collect();
        let merged = merge(base, part, &attempted, "(f1) for tp, tp-quic".into());
        let r = &merged.results;
        assert_eq!(r.values(Tp, OpenP50), [1.3]);
        assert_eq!(r.values(TpQuic, OpenP50), [0.7]);
        assert_eq!(r.values(Tp, FirstP50), [5.0]);
        assert_eq!(r.values(TpQuic, FirstP50), [4.0]);
        // The merged figures are the first merged run's; tp's (c) is the base's.
        assert!(r.mixed(&[(Tp, OpenP50), (Tp, FirstP50)]));
        assert!(!r.mixed(&[(Tp, FirstP50), (TpQuic, FirstP50)]));
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

    #[test]
    fn a_figure_the_part_set_out_to_measure_but_did_not_get_is_gone() {
        use {Metric::*, SystemId::*};
        let base = record("day 1", &[(Tp, OpenP50, 1.3), (Nginx, OpenP50, 1.5)]);
        // tp failed to start in the part: nginx has a new figure, tp none.
        let part = record("day 2", &[(Nginx, OpenP50, 1.4)]);
        let attempted = [(Tp, OpenP50), (Nginx, OpenP50)].into_iter().collect();
        let merged = merge(base, part, &attempted, "(c) for nginx".into());
        assert!(merged.results.values(Tp, OpenP50).is_empty());
        assert_eq!(merged.results.values(Nginx, OpenP50), [1.4]);
    }

    #[test]
    fn a_failed_mtls_check_stands_until_a_merged_run_checks_again() {
        use {Metric::*, SystemId::*};
        let mut base = record("day 1", &[(Haproxy, BulkOne, 600.0)]);
        base.results.unverified.push(Haproxy);
        base.results.mtls_checked.push(Haproxy);
        // (e) alone does not run the check: haproxy stays left out.
        let part = record("day 2", &[(Haproxy, IdleServer, 22.0)]);
        let attempted = [(Haproxy, IdleServer), (Haproxy, IdleClient)]
            .into_iter()
            .collect();
        let merged = merge(base, part, &attempted, "(e) for haproxy".into());
        assert_eq!(merged.results.unverified, [Haproxy]);
        // A traffic run that checked it and found it verifying clears the mark.
        let mut part = record("day 3", &[(Haproxy, BulkOne, 650.0)]);
        part.results.mtls_checked.push(Haproxy);
        let attempted = [(Haproxy, BulkOne)].into_iter().collect();
        let merged = merge(merged, part, &attempted, "(a) for haproxy".into());
        assert!(merged.results.unverified.is_empty());
    }

    #[test]
    fn quick_and_full_runs_do_not_merge() {
        let base = record("day 1", &[]);
        let none = BTreeMap::new();
        assert!(check(&base, false, &none).is_ok());
        let e = check(&base, true, &none).expect_err("a quick run into a full one");
        assert!(e.to_string().contains("sizes differ"), "{e}");
    }

    #[test]
    fn a_scenario_with_other_sizes_does_not_merge() {
        let mut base = record("day 1", &[]);
        let sizes = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        base.scenario_sizes = sizes(&[
            ("a", "1024 MiB"),
            ("h", "200 opens across a 10 ms round trip"),
        ]);
        // The same sizes, or a scenario the saved run lacks: fine.
        assert!(
            check(
                &base,
                false,
                &sizes(&[("a", "1024 MiB"), ("f1", "200 first tunnels")])
            )
            .is_ok()
        );
        let e = check(
            &base,
            false,
            &sizes(&[("h", "200 opens across a 40 ms round trip")]),
        )
        .expect_err("another round trip");
        assert!(e.to_string().contains("40 ms"), "{e}");
        // Merged, the part's sizes become the record's.
        let mut part = record("day 2", &[]);
        part.scenario_sizes = sizes(&[("a", "2048 MiB")]);
        let merged = merge(base, part, &BTreeSet::new(), "(a)".into());
        assert_eq!(merged.scenario_sizes["a"], "2048 MiB");
    }
}
