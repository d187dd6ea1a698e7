//! The report and the run record behind it, written side by side (`docs/benchmarks.md`
//! and `docs/benchmarks.json`), so that the report can be written again after the
//! analysis changes, and a later partial run merged into the record, from any checkout.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{Report, RunRecord};

/// Where the run record behind the report `out` is kept: beside it, as `.json`.
pub(crate) fn record_path(out: &Path) -> PathBuf {
    out.with_extension("json")
}

/// Refuses a report path where its own record would go (a `.json` name), before
/// anything is measured.
pub(crate) fn check_out(out: &Path) -> anyhow::Result<()> {
    if record_path(out) == out {
        bail!(
            "--out {}: the run record goes beside the report as .json; give the report \
             another extension (.md)",
            out.display()
        );
    }
    Ok(())
}

/// Prints the table, writes the markdown report `out` with `analysis` in it, and
/// `record` beside it ([`record_path`]).
pub(crate) fn write(record: &RunRecord, analysis: &Path, out: &Path) -> anyhow::Result<()> {
    let saved = record_path(out);
    let report = Report {
        run: record,
        analysis: std::fs::read_to_string(analysis).ok(),
        record: saved.display().to_string(),
    };
    println!("{}", report.text_table());
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, report.markdown()).with_context(|| format!("writing {}", out.display()))?;
    std::fs::write(&saved, serde_json::to_string_pretty(record)? + "\n")
        .with_context(|| format!("writing {}", saved.display()))?;
    eprintln!(
        "tp-bench: wrote {} and the figures behind it, {} (`tp-bench report` writes the \
         report again from them, `--merge` folds a later partial run into them)",
        out.display(),
        saved.display()
    );
    Ok(())
}

/// Reads a run record.
pub(crate) fn load(from: &Path) -> anyhow::Result<RunRecord> {
    let text =
        std::fs::read_to_string(from).with_context(|| format!("reading {}", from.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", from.display()))
}

/// `tp-bench report`: the report of a saved run, with the current analysis.
pub(crate) fn report_only(from: &Path, analysis: &Path, out: &Path) -> anyhow::Result<()> {
    check_out(out)?;
    write(&load(from)?, analysis, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Results;
    use crate::scenarios::Metric;
    use crate::systems::SystemId;

    /// A directory of its own under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tp-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_record_goes_beside_the_report_and_writes_it_again() {
        let dir = scratch("save");
        let mut results = Results::default();
        results.add(SystemId::Tp, Metric::BulkOne, 1, 987.0);
        let record = RunRecord::with_results(results);
        let (out, analysis) = (dir.join("bench.md"), dir.join("analysis.md"));
        std::fs::write(&analysis, "the analysis, first version\n").unwrap();
        write(&record, &analysis, &out).unwrap();

        let saved = dir.join("bench.json");
        let first = std::fs::read_to_string(&out).unwrap();
        assert!(
            first.contains(&format!("kept in `{}`", saved.display())),
            "{first}"
        );
        assert!(first.contains("987"), "{first}");
        assert_eq!(
            load(&saved)
                .unwrap()
                .results
                .values(SystemId::Tp, Metric::BulkOne),
            [987.0]
        );

        // From the record alone, with a new analysis, into another directory: the
        // same figures, the new text, and the record beside the new report too.
        std::fs::write(&analysis, "the analysis, second version\n").unwrap();
        let other = dir.join("copy").join("bench.md");
        report_only(&saved, &analysis, &other).unwrap();
        let again = std::fs::read_to_string(&other).unwrap();
        assert!(
            again.contains("987") && again.contains("second version"),
            "{again}"
        );
        assert!(!again.contains("first version"), "{again}");
        assert_eq!(
            std::fs::read_to_string(dir.join("copy").join("bench.json")).unwrap(),
            std::fs::read_to_string(&saved).unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_report_named_json_is_refused_where_its_record_would_go() {
        let err = check_out(Path::new("docs/benchmarks.json")).unwrap_err();
        assert!(
            err.to_string()
                .contains("give the report another extension"),
            "{err}"
        );
        check_out(Path::new("docs/benchmarks.md")).unwrap();
        check_out(Path::new("report")).unwrap();
        // `tp-bench report` too, before it reads anything.
        let err = report_only(
            Path::new("no-such-record.json"),
            Path::new("no-such-analysis.md"),
            Path::new("x.json"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--out x.json"), "{err}");
        assert_eq!(record_path(Path::new("report")), Path::new("report.json"));
    }
}
