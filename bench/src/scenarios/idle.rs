//! (e): many idle tunnels. Each tunnel is opened and proven with one echo, then held
//! without traffic. Memory per tunnel = (PSS of the side's process group with every
//! tunnel open - PSS before the first one) / tunnels open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;

use super::conn;
use crate::children::{group_pss_kib, group_size};

/// What (e) measured.
#[derive(Debug, Clone)]
pub(crate) struct Idle {
    pub(crate) opened: usize,
    /// Attempts that failed; opening stops early once they pile up.
    pub(crate) failed: usize,
    pub(crate) server_kib: Option<f64>,
    pub(crate) client_kib: Option<f64>,
    /// Processes in the server group with every tunnel open (forking servers).
    pub(crate) server_processes: usize,
    /// The first failure, if any.
    pub(crate) first_error: Option<String>,
}

/// Time for the systems to settle (buffers freed, tasks parked) before measuring.
const SETTLE: Duration = Duration::from_secs(2);

pub(crate) async fn run(
    entry: SocketAddr,
    server_pgid: Option<u32>,
    client_pgid: Option<u32>,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Idle> {
    let pss = |pgid: Option<u32>| pgid.map(group_pss_kib).transpose();
    let server_before = pss(server_pgid)?;
    let client_before = pss(client_pgid)?;

    let permits = Arc::new(Semaphore::new(concurrency));
    let failures = Arc::new(AtomicUsize::new(0));
    // A system that stops admitting tunnels would otherwise cost a timeout per
    // remaining tunnel: stop opening after this many failures.
    let give_up = (count / 20).max(concurrency);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let permit = permits.clone().acquire_owned().await?;
        if failures.load(Ordering::Relaxed) >= give_up {
            break;
        }
        let failures = failures.clone();
        tasks.spawn(async move {
            let result = conn::open(entry).await;
            if result.is_err() {
                failures.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
            result
        });
    }
    let mut streams = Vec::with_capacity(count);
    let mut failed = 0;
    let mut first_error = None;
    while let Some(result) = tasks.join_next().await {
        match result.context("idle task panicked")? {
            Ok(stream) => streams.push(stream),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    tokio::time::sleep(SETTLE).await;
    let opened = streams.len();
    let per = |before: Option<u64>, pgid: Option<u32>| -> anyhow::Result<Option<f64>> {
        match (before, pss(pgid)?) {
            (Some(b), Some(a)) if opened > 0 => Ok(Some((a as f64 - b as f64) / opened as f64)),
            _ => Ok(None),
        }
    };
    let result = Idle {
        opened,
        failed,
        server_kib: per(server_before, server_pgid)?,
        client_kib: per(client_before, client_pgid)?,
        server_processes: server_pgid.map_or(0, group_size),
        first_error,
    };
    drop(streams);
    // Let the systems tear the tunnels down before whatever runs next.
    tokio::time::sleep(SETTLE).await;
    Ok(result)
}
