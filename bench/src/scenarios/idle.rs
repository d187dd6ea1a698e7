//! (e): many idle tunnels. Each tunnel is opened and proven with one echo, then held
//! without traffic. Memory per tunnel = (PSS of the side's process groups with every
//! tunnel open - PSS before the first one) / tunnels still open once it is taken (a
//! system that closed idle tunnels must not look lighter for it). (g) uses the same
//! with its TLS-in-TLS connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::children::{group_pss_kib, group_size};

/// A held connection whose socket can be asked whether the other end closed it.
pub(crate) trait Held {
    /// The TCP connection to the system's entry.
    fn tcp(&self) -> &TcpStream;

    /// Whether the system closed or reset it. Reads (and discards) what has
    /// arrived, without waiting, to see whether the end of the stream follows
    /// (a TLS peer sends close_notify before its FIN): only for a connection
    /// about to be dropped.
    fn closed(&self) -> bool {
        let mut sink = [0u8; 4096];
        loop {
            match self.tcp().try_read(&mut sink) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock,
            }
        }
    }
}

impl Held for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// What (e) measured.
#[derive(Debug, Clone)]
pub(crate) struct Idle {
    pub(crate) opened: usize,
    /// Of those, closed by the system by the time memory was measured; the
    /// figures are per tunnel still open.
    pub(crate) closed: usize,
    /// Attempts that failed; opening stops early once they pile up.
    pub(crate) failed: usize,
    pub(crate) server_kib: Option<f64>,
    pub(crate) client_kib: Option<f64>,
    /// Processes in the server group with every tunnel open (forking servers).
    pub(crate) server_processes: usize,
    /// The first failure, if any.
    pub(crate) first_error: Option<String>,
}

impl Idle {
    /// The note for a run in which the system closed some of the idle
    /// connections; `scenario` is "(e)" or "(g)".
    pub(crate) fn closed_note(&self, run: u32, scenario: &str) -> Option<String> {
        (self.closed > 0).then(|| {
            format!(
                "run {run} {scenario}: {} of the {} idle connections were closed by the system \
                 when memory was measured; the figures are per connection still open",
                self.closed, self.opened
            )
        })
    }
}

/// Time for the systems to settle (buffers freed, tasks parked) before measuring.
const SETTLE: Duration = Duration::from_secs(2);

/// Opens `count` connections with `open` (`concurrency` at a time) and holds them;
/// memory of the process groups `server` and `client` (each side: summed; empty:
/// not measured).
pub(crate) async fn run<F, Fut, S>(
    open: F,
    server: &[u32],
    client: &[u32],
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Idle>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<S>> + Send + 'static,
    S: Held + Send + 'static,
{
    let pss = |pgids: &[u32]| -> anyhow::Result<Option<u64>> {
        if pgids.is_empty() {
            return Ok(None);
        }
        let mut sum = 0;
        for &pgid in pgids {
            sum += group_pss_kib(pgid)?;
        }
        Ok(Some(sum))
    };
    let server_before = pss(server)?;
    let client_before = pss(client)?;

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
        let connection = open();
        tasks.spawn(async move {
            let result = connection.await;
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
    let server_after = pss(server)?;
    let client_after = pss(client)?;
    let closed = streams.iter().filter(|s| s.closed()).count();
    let live = opened - closed;
    let per = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) if live > 0 => Some((a as f64 - b as f64) / live as f64),
        _ => None,
    };
    let result = Idle {
        opened,
        closed,
        failed,
        server_kib: per(server_before, server_after),
        client_kib: per(client_before, client_after),
        server_processes: server.iter().map(|&pgid| group_size(pgid)).sum(),
        first_error,
    };
    drop(streams);
    // Let the systems tear the tunnels down before whatever runs next.
    tokio::time::sleep(SETTLE).await;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_connection_knows_when_the_other_end_closed_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let ours = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (theirs, _) = listener.accept().await.expect("accept");
        assert!(!ours.closed(), "open and quiet");
        // Bytes before the FIN (a TLS close_notify, say) do not hide it, however
        // many: one check reads past them all.
        let mut theirs = theirs;
        tokio::io::AsyncWriteExt::write_all(&mut theirs, &[7u8; 64 * 1024])
            .await
            .expect("write");
        drop(theirs);
        // The FIN arrives on its own time, even on loopback.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !ours.closed() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the close never showed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
