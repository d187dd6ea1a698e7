//! (f1): the first tunnel on a fresh connection. Each sample starts a fresh `tp
//! HOST PORT` (stdio mode: a new process, so a new TLS/TCP or QUIC connection),
//! writes the echo mode byte and one byte, and times spawn -> the echoed byte. Each
//! is paired with a `tp --version` (spawn -> its first byte on stdout): the cost of
//! starting the process at all, to subtract. Also spawn -> exit of the tunnel's
//! process, its stdin closed right after the echo: what a script running `tp`
//! once waits. Sequential, after a few untimed pairs.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use super::latency::percentile;
use super::spawn::{Exchange, first_byte};
use crate::target::MODE_ECHO;

/// The byte sent through the tunnel and expected back.
const PING: u8 = b'1';
const WARMUP: usize = 5;

/// Percentiles of one run, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct First {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// The same for `tp --version`.
    pub(crate) start_p50_ms: f64,
    pub(crate) start_p99_ms: f64,
    /// Spawn -> exit of the tunnel's process.
    pub(crate) exit_p50_ms: f64,
}

/// `tunnel` and `start` build the two commands afresh for each sample; stderr of
/// both goes to `log`.
pub(crate) async fn run(
    tunnel: impl Fn() -> Command,
    start: impl Fn() -> Command,
    count: usize,
    log: &Path,
) -> anyhow::Result<First> {
    let echo = Exchange {
        send: &[MODE_ECHO, PING],
        expect: Some(PING),
    };
    let version = Exchange {
        send: &[],
        expect: None,
    };
    let mut opens = Vec::with_capacity(count);
    let mut starts = Vec::with_capacity(count);
    let mut exits = Vec::with_capacity(count);
    for i in 0..WARMUP + count {
        let s = first_byte(start(), version, log)
            .await
            .context("`tp --version`")?;
        let t = first_byte(tunnel(), echo, log)
            .await
            .with_context(|| format!("first tunnel {}", i + 1))?;
        if i >= WARMUP {
            starts.push(s.first_byte.as_secs_f64() * 1e3);
            opens.push(t.first_byte.as_secs_f64() * 1e3);
            exits.push(t.exit.as_secs_f64() * 1e3);
        }
    }
    opens.sort_by(f64::total_cmp);
    starts.sort_by(f64::total_cmp);
    exits.sort_by(f64::total_cmp);
    Ok(First {
        p50_ms: percentile(&opens, 50.0),
        p99_ms: percentile(&opens, 99.0),
        start_p50_ms: percentile(&starts, 50.0),
        start_p99_ms: percentile(&starts, 99.0),
        exit_p50_ms: percentile(&exits, 50.0),
    })
}
