//! (c): tunnel-open latency. Sequential connect, 32-byte ping, echo, close; the
//! time from `connect()` to the echo's last byte. A few untimed opens warm up first.

use std::net::SocketAddr;
use std::time::Instant;

use super::conn;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Latency {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

const WARMUP: usize = 10;

pub(crate) async fn run(entry: SocketAddr, count: usize) -> anyhow::Result<Latency> {
    run_with(|| conn::open(entry), count).await
}

/// The same with any way of opening a proven connection, timed from the call of
/// `open` to its return; the connection is dropped (closed) after each sample.
pub(crate) async fn run_with<F, Fut, S>(mut open: F, count: usize) -> anyhow::Result<Latency>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<S>>,
{
    for _ in 0..WARMUP {
        drop(open().await?);
    }
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        let stream = open().await?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
        drop(stream);
    }
    samples.sort_by(f64::total_cmp);
    Ok(Latency {
        p50_ms: percentile(&samples, 50.0),
        p99_ms: percentile(&samples, 99.0),
    })
}

/// Nearest-rank percentile of sorted samples.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
