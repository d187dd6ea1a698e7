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
}

impl Machine {
    pub(crate) fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
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
