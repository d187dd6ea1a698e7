//! (g): the Signal relay. One inner TLS stream moves the bulk size up into the
//! stand-in's sink and, on a second connection, down from its source; sequential
//! TLS-in-TLS connection setups with a small echo give the latency. The idle
//! connections use (e)'s `idle::run` with [`SignalClient::open`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::bulk::{self, Direction};
use super::latency::{self, Latency};
use super::tls_in_tls::SignalClient;

const BULK_TIMEOUT: Duration = Duration::from_secs(600);

/// One inner stream moves `bytes`; returns MB/s (10^6 bytes) over the wall time from
/// the TCP connect (both handshakes included, as (a) includes the tunnel's) to the
/// last byte (up: the sink's count back; down: EOF after the last byte).
pub(crate) async fn bulk(
    client: &SignalClient,
    entry: SocketAddr,
    bytes: u64,
    direction: Direction,
) -> anyhow::Result<f64> {
    let transfer = async {
        let start = Instant::now();
        let mut inner = client.connect(entry).await?;
        let moved = match direction {
            Direction::Up => bulk::send(&mut inner, bytes).await?,
            Direction::Down => bulk::receive(&mut inner, bytes).await?,
        };
        anyhow::Ok(moved as f64 / start.elapsed().as_secs_f64() / 1e6)
    };
    tokio::time::timeout(BULK_TIMEOUT, transfer)
        .await
        .context("bulk stream took over 600 s")?
}

/// Sequential connection setups: TCP connect, outer and inner handshakes, a 32-byte
/// echo; timed from connect to the echo's last byte.
pub(crate) async fn latency(
    client: &SignalClient,
    entry: SocketAddr,
    count: usize,
) -> anyhow::Result<Latency> {
    latency::run_with(|| client.open(entry), count).await
}
