//! (a) and (b): bulk through fresh tunnels, uploaded into the sink and downloaded
//! from the source. The figure is the bytes moved divided by the
//! wall time from the first connect to the last byte: up, the sink's count coming
//! back; down, EOF after the last byte the source sent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::{MODE_SINK, MODE_SOURCE, PATTERN_PERIOD, SINK_CORRUPT, is_pattern, pattern};

const CHUNK: usize = PATTERN_PERIOD;
const STREAM_TIMEOUT: Duration = Duration::from_secs(600);

/// Which way the bulk bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Load generator to target (the sink).
    Up,
    /// Target (the source) to load generator, checked against the pattern sent.
    Down,
}

/// Moves `total` bytes over `streams` concurrent tunnels; returns MB/s (10^6 bytes).
pub(crate) async fn run(
    entry: SocketAddr,
    total: u64,
    streams: usize,
    direction: Direction,
) -> anyhow::Result<f64> {
    let per_stream = total / streams as u64;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..streams {
        tasks.spawn(async move {
            tokio::time::timeout(STREAM_TIMEOUT, transfer(entry, per_stream, direction))
                .await
                .context("bulk stream took over 600 s")?
        });
    }
    let mut moved = 0;
    while let Some(result) = tasks.join_next().await {
        moved += result.context("bulk task panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(moved as f64 / secs / 1e6)
}

/// One stream: [`send`] or [`receive`] `bytes` through a fresh tunnel.
async fn transfer(entry: SocketAddr, bytes: u64, direction: Direction) -> anyhow::Result<u64> {
    let mut stream = TcpStream::connect(entry)
        .await
        .with_context(|| format!("connecting to {entry}"))?;
    stream.set_nodelay(true)?;
    match direction {
        Direction::Up => send(&mut stream, bytes).await,
        Direction::Down => receive(&mut stream, bytes).await,
    }
}

/// Sends `bytes` into the sink over `stream`; returns the count the sink confirmed.
pub(crate) async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: u64,
) -> anyhow::Result<u64> {
    stream.write_u8(MODE_SINK).await?;
    stream.write_u64(bytes).await?;
    let chunk = pattern(CHUNK);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        stream
            .write_all(&chunk[..n])
            .await
            .context("writing bulk data")?;
        left -= n as u64;
    }
    stream.flush().await.context("writing bulk data")?;
    let count = stream
        .read_u64()
        .await
        .context("reading the sink's byte count (tunnel closed early?)")?;
    if count == SINK_CORRUPT {
        bail!("the sink got bytes that differ from those sent");
    }
    if count != bytes {
        bail!("the sink counted {count} bytes of {bytes}");
    }
    Ok(count)
}

/// Asks the source for `bytes` over `stream` and reads them to EOF, checking that
/// they are the pattern the source sends; returns the count.
pub(crate) async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: u64,
) -> anyhow::Result<u64> {
    stream.write_u8(MODE_SOURCE).await?;
    stream.write_u64(bytes).await?;
    stream.flush().await?;
    let want = pattern(CHUNK);
    let mut buf = vec![0u8; CHUNK];
    let mut count: u64 = 0;
    loop {
        let n = stream.read(&mut buf).await.context("reading bulk data")?;
        if n == 0 {
            break;
        }
        if !is_pattern(&buf[..n], count, &want) {
            bail!("bulk data differs from what the source sent, after {count} bytes");
        }
        count += n as u64;
    }
    if count != bytes {
        bail!("received {count} bytes of {bytes}");
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sink_and_source_round_trip_in_memory() {
        for bytes in [0, 1, CHUNK as u64 - 1, 3 * CHUNK as u64 + 17] {
            let (mut ours, mut theirs) = tokio::io::duplex(64 * 1024);
            let target = tokio::spawn(async move { crate::target::serve(&mut theirs).await });
            assert_eq!(send(&mut ours, bytes).await.expect("send"), bytes);
            target.await.expect("join").expect("sink");

            let (mut ours, mut theirs) = tokio::io::duplex(64 * 1024);
            let target = tokio::spawn(async move { crate::target::serve(&mut theirs).await });
            assert_eq!(receive(&mut ours, bytes).await.expect("receive"), bytes);
            target.await.expect("join").expect("source");
        }
    }

    #[tokio::test]
    async fn receive_notices_changed_bytes() {
        let (mut ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let wrong = tokio::spawn(async move {
            let mut ask = [0u8; 9];
            theirs.read_exact(&mut ask).await?;
            let mut data = pattern(CHUNK + 10);
            data[CHUNK + 3] ^= 1;
            theirs.write_all(&data).await?;
            theirs.shutdown().await
        });
        let e = receive(&mut ours, CHUNK as u64 + 10)
            .await
            .expect_err("a flipped bit");
        assert!(format!("{e:#}").contains("differs"), "{e:#}");
        wrong.await.expect("join").expect("peer");
    }

    #[tokio::test]
    async fn the_sink_notices_changed_bytes() {
        let (mut ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let target = tokio::spawn(async move { crate::target::serve(&mut theirs).await });
        let bytes = CHUNK as u64 + 10;
        ours.write_u8(MODE_SINK).await.expect("mode");
        ours.write_u64(bytes).await.expect("length");
        let mut data = pattern(CHUNK);
        data.extend_from_slice(&pattern(10));
        // Early, so that the sink must read on past it before answering.
        data[3] ^= 1;
        ours.write_all(&data).await.expect("data");
        assert_eq!(ours.read_u64().await.expect("count"), SINK_CORRUPT);
        target.await.expect("join").expect("sink");
    }
}
