//! Facts about the machine and the software, for the report.

use std::process::Command;

use serde::{Deserialize, Serialize};

/// Where and when the benchmark ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub(crate) cpus: usize,
    pub(crate) cpu_model: String,
    pub(crate) kernel: String,
    pub(crate) os: String,
    pub(crate) mem_gib: f64,
    pub(crate) open_files_limit: String,
    pub(crate) tp_commit: String,
    pub(crate) rustc: String,
    pub(crate) date: String,
    /// CPU family and model as /proc/cpuinfo gives them (glibc picks its `memcpy`
    /// by them: see bench/analysis.md on `rep movsb`).
    #[serde(default = "not_recorded")]
    pub(crate) cpu_family_model: String,
    /// The C library every system here runs on (`ldd --version`).
    #[serde(default = "not_recorded")]
    pub(crate) libc: String,
    /// `GLIBC_TUNABLES` as the harness and every process it starts saw it.
    #[serde(default = "not_recorded")]
    pub(crate) glibc_tunables: String,
}

/// What a record made before a fact was recorded says for it.
fn not_recorded() -> String {
    "not recorded".to_owned()
}

impl Machine {
    pub(crate) fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_field = |name: &str| {
            cpuinfo
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == name)
                .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned())
        };
        let cpu_model = cpu_field("model name");
        let cpu_family_model = format!(
            "family {}, model {}",
            cpu_field("cpu family"),
            cpu_field("model")
        );
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib = crate::children::field_kib(&meminfo, "MemTotal:").unwrap_or(0);
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map_or_else(|| "unknown".to_owned(), |v| v.trim_matches('"').to_owned());
        Self {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned()),
            os,
            mem_gib: mem_kib as f64 / (1024.0 * 1024.0),
            open_files_limit: open_files_limit().unwrap_or_else(|| "unknown".to_owned()),
            tp_commit: output("git", &["describe", "--always", "--dirty", "--abbrev=12"])
                .map_or_else(
                    || "unknown".to_owned(),
                    |c| format!("{c} (`-dirty`: uncommitted changes)"),
                ),
            rustc: output("rustc", &["--version"]).unwrap_or_else(|| "unknown".to_owned()),
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
                .unwrap_or_else(|| "unknown".to_owned()),
            cpu_family_model,
            libc: output("ldd", &["--version"]).unwrap_or_else(|| "unknown".to_owned()),
            glibc_tunables: std::env::var("GLIBC_TUNABLES")
                .map_or_else(|_| "unset".to_owned(), |v| format!("`{v}`")),
        }
    }
}

/// The soft limit on open files, from /proc/self/limits.
pub(crate) fn open_files_limit() -> Option<String> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3).map(str::to_owned)
}

/// The 1-, 5- and 15-minute load averages.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// First line of a command's stdout, trimmed.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_owned())
}

/// The first line of stdout or stderr that starts with `prefix`.
pub(crate) fn command_line_starting(program: &str, args: &[&str], prefix: &str) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_from_before_the_libc_facts_still_loads() {
        let old = r#"{"cpus": 2, "cpu_model": "AMD EPYC", "kernel": "6.18", "os": "Debian",
            "mem_gib": 23.5, "open_files_limit": "20000", "tp_commit": "abc", "rustc": "1.95",
            "date": "2026-11-30 21:49 UTC"}"#;
        let m: Machine = serde_json::from_str(old).unwrap();
        assert_eq!(m.libc, "not recorded");
        assert_eq!(m.glibc_tunables, "not recorded");
        assert_eq!(m.cpu_family_model, "not recorded");
    }

    #[test]
    fn this_machine_names_its_cpu_family_and_c_library() {
        let m = Machine::read();
        assert!(
            m.cpu_family_model.starts_with("family "),
            "{}",
            m.cpu_family_model
        );
        assert_ne!(m.libc, "unknown", "ldd --version printed nothing");
    }
}
