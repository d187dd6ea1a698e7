//! (d): new tunnels per second. 64 clients each loop connect, ping, echo, close
//! until the duration is over; completed tunnels divided by the elapsed time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::conn;

/// Completed tunnels per second and failed attempts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    pub(crate) per_sec: f64,
    pub(crate) failures: u64,
}

pub(crate) async fn run(
    entry: SocketAddr,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        tasks.spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < deadline {
                match conn::open(entry).await {
                    Ok(stream) => {
                        ok += 1;
                        drop(stream);
                    }
                    Err(_) => {
                        failed += 1;
                        // A failing system must not turn this into a busy loop.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (ok, failed)
        });
    }
    let (mut ok, mut failures) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        let (o, f) = result.context("rate client panicked")?;
        ok += o;
        failures += f;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Rate {
        per_sec: ok as f64 / secs,
        failures,
    })
}
