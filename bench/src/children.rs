//! Child processes the harness starts (tp, peers, helpers): each in its own process
//! group, output to a log file, stopped (the whole group) when dropped. Memory of a
//! group is read from /proc.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running child process group.
#[derive(Debug)]
pub(crate) struct Child {
    name: String,
    log: PathBuf,
    child: std::process::Child,
}

impl Child {
    /// Starts `cmd` as the leader of a new process group, stdout and stderr to `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file")?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            log: log.to_owned(),
            child,
        })
    }

    /// The process id, which is also the process group id.
    pub(crate) fn pgid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `addr` accepts TCP connections; fails if the child exits first.
    pub(crate) fn wait_listening(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let what = format!("listening on {addr}");
        self.wait_until(
            &what,
            Duration::from_secs(20),
            Duration::from_millis(50),
            // Long enough for a connect across (h)'s link at its longest
            // round trip (`--rtt-ms` up to 1000); on loopback a closed port
            // refuses at once.
            || TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok(),
        )
    }

    /// Waits until the child's output (its log) contains `marker`; fails if the child
    /// exits first, or after 10 s.
    pub(crate) fn wait_output(&mut self, marker: &str) -> anyhow::Result<()> {
        let log = self.log.clone();
        let what = format!("ready (its output says {marker:?})");
        self.wait_until(
            &what,
            Duration::from_secs(10),
            Duration::from_millis(20),
            || std::fs::read_to_string(&log).is_ok_and(|text| text.contains(marker)),
        )
    }

    /// Polls `ready` every `every` until it holds; fails, quoting the log, if the
    /// child exits first or `limit` passes. `what` says what is awaited.
    fn wait_until(
        &mut self,
        what: &str,
        limit: Duration,
        every: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().context("polling a child")? {
                bail!(
                    "{} exited ({status}) before {what}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log)
                );
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} is not {what} after {} s; log {}:\n{}",
                    self.name,
                    limit.as_secs(),
                    self.log.display(),
                    tail(&self.log)
                );
            }
            std::thread::sleep(every);
        }
    }

    fn signal_group(&self, signal: &str) {
        // The leader and everything it forked (nginx workers, socat's
        // per-connection children). Only groups this harness created.
        let _ = kill(signal, &format!("-{}", self.pgid()));
    }

    /// Stops the group: SIGTERM, up to 5 s, then SIGKILL.
    pub(crate) fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            // The leader is gone; its group may still hold forked children.
            self.signal_group("KILL");
            return;
        }
        self.signal_group("TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal_group("KILL");
        // Should the shell have failed to signal the group, the leader at least
        // must not be waited for forever.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -s SIGNAL -- TARGET` (a pid, or `-PGID` for a process group) with the
/// shell's built-in kill, which needs no procps. Whether it succeeded.
pub(crate) fn kill(signal: &str, target: &str) -> bool {
    Command::new("sh")
        .args(["-c", "kill -s \"$0\" -- \"$1\"", signal, target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last lines of a log file, for error messages.
pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Proportional set size (KiB) summed over every process of group `pgid`. For one
/// process the change of PSS equals the change of RSS for new private memory; for
/// forking servers it counts shared pages once instead of once per process.
pub(crate) fn group_pss_kib(pgid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if process_group(pid) != Some(pgid) {
            continue;
        }
        if let Some(kib) = pss_kib(pid) {
            total += kib;
            found = true;
        }
    }
    if !found {
        bail!("no process left in group {pgid}");
    }
    Ok(total)
}

/// Number of processes in group `pgid` (socat forks one per connection).
pub(crate) fn group_size(pgid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|&pid| process_group(pid) == Some(pgid))
        .count()
}

fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = &stat[stat.rfind(')')? + 2..];
    // state ppid pgrp ...
    rest.split_whitespace().nth(2)?.parse().ok()
}

fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    field_kib(&text, "Pss:")
}

/// The value of a `Name:   123 kB` line.
pub(crate) fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields() {
        let text = "Rss:               12345 kB\nPss:                2048 kB\nPss_Anon: 7 kB\n";
        assert_eq!(field_kib(text, "Pss:"), Some(2048));
        assert_eq!(field_kib(text, "Rss:"), Some(12345));
        assert_eq!(field_kib(text, "Swap:"), None);
    }

    #[test]
    fn this_process_is_in_its_group() {
        let me = std::process::id();
        let group = process_group(me).expect("our own /proc/self/stat");
        assert!(group_pss_kib(group).expect("our group") > 0);
    }
}
