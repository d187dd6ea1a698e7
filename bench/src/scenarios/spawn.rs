//! One sample of (f1): spawn a process, optionally write to its stdin, and time the
//! wait for the first byte on its stdout. The process then gets stdin EOF and must
//! exit successfully on its own; the time to its exit is taken too (tokio's child
//! reaping wakes the wait when the child exits, so no polling interval rounds it).
//!
//! stdin and stdout are tokio pipes, so every wait has a deadline.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::children::tail;

/// Deadline for the first byte, and again for the process to finish after it.
const DEADLINE: Duration = Duration::from_secs(15);

/// What to feed the process and what its first byte must be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exchange<'a> {
    /// Written to stdin at once; empty: stdin is `/dev/null`.
    pub(crate) send: &'a [u8],
    /// The first byte on stdout, if it matters.
    pub(crate) expect: Option<u8>,
}

/// Times of one sample, from `spawn()`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// To the first byte on stdout.
    pub(crate) first_byte: Duration,
    /// To the process's exit, stdin closed right after that byte.
    pub(crate) exit: Duration,
}

/// Time from `spawn()` to the first byte on stdout, and to the exit. stderr is
/// appended to `log`.
pub(crate) async fn first_byte(
    mut cmd: Command,
    exchange: Exchange<'_>,
    log: &Path,
) -> anyhow::Result<Timing> {
    let err = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let stdin = if exchange.send.is_empty() {
        Stdio::null()
    } else {
        Stdio::piped()
    };
    cmd.stdin(stdin).stdout(Stdio::piped()).stderr(err);
    let mut cmd = tokio::process::Command::from(cmd);
    // Killed (and reaped by tokio) if a deadline below gives up on it.
    cmd.kill_on_drop(true);

    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.as_std()))?;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take().context("no stdout pipe")?;
    if let Some(w) = &mut stdin {
        w.write_all(exchange.send)
            .await
            .context("writing to the process's stdin")?;
    }
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(DEADLINE, stdout.read(&mut byte))
        .await
        .context("no byte on stdout within 15 s")?
        .context("reading the process's stdout")?;
    let elapsed = start.elapsed();
    if n == 0 {
        bail!("stdout closed without a byte; stderr:\n{}", tail(log));
    }
    if exchange.expect.is_some_and(|want| want != byte[0]) {
        bail!(
            "the first byte on stdout is {:?}, not the one sent",
            byte[0]
        );
    }

    // Then stdin EOF, the rest of stdout, a clean exit.
    drop(stdin);
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, stdout.read_to_end(&mut rest))
        .await
        .context("stdout still open 15 s after stdin closed")?
        .context("reading the rest of stdout")?;
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .context("still running 15 s after its stdout closed")?
        .context("waiting for the process")?;
    let exit = start.elapsed();
    if !status.success() {
        bail!("exited with {status}; stderr:\n{}", tail(log));
    }
    Ok(Timing {
        first_byte: elapsed,
        exit,
    })
}
