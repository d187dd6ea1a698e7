//! The helper processes: the target every system forwards to, and one hop of the
//! plain TCP relay reference.
//!
//! Target protocol (also spoken inside TLS by the stand-in Signal host of (g),
//! `signal_host.rs`): the first byte picks the mode.
//! - `E` echo: every following byte is sent back; EOF is answered with EOF.
//! - `S` sink: a big-endian u64 length, then that many bytes of [`pattern`], which
//!   are checked, counted and dropped; the count goes back as a big-endian u64
//!   ([`SINK_CORRUPT`] if a byte differed from the pattern), then EOF. The length
//!   prefix means no system's half-close behaviour is needed to end a transfer.
//! - `D` source: a big-endian u64 length; that many bytes come back, then EOF.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Mode byte: echo.
pub(crate) const MODE_ECHO: u8 = b'E';
/// Mode byte: count and discard.
pub(crate) const MODE_SINK: u8 = b'S';
/// Mode byte: send the number of bytes asked for.
pub(crate) const MODE_SOURCE: u8 = b'D';

/// What the sink answers when the bytes it got are not the pattern.
pub(crate) const SINK_CORRUPT: u64 = u64::MAX;
/// Bulk data is [`pattern`]`(PATTERN_PERIOD)` over and over.
pub(crate) const PATTERN_PERIOD: usize = 256 * 1024;

const SINK_BUF: usize = 256 * 1024;
const ECHO_BUF: usize = 16 * 1024;
/// Buffer per direction of a relay hop.
const RELAY_BUF: usize = 64 * 1024;

/// Accepts until the process is killed; errors of one connection end only that one.
pub(crate) async fn serve_target(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // EMFILE and friends: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(async move {
            let _ = target_conn(stream).await;
        });
    }
}

async fn target_conn(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    serve(&mut stream).await
}

/// Serves one connection of the target protocol on `stream`.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
) -> std::io::Result<()> {
    let mode = stream.read_u8().await?;
    match mode {
        MODE_ECHO => {
            let mut buf = vec![0u8; ECHO_BUF];
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                stream.write_all(&buf[..n]).await?;
                stream.flush().await?;
            }
            stream.shutdown().await
        }
        MODE_SINK => {
            let want = stream.read_u64().await?;
            let mut buf = vec![0u8; SINK_BUF];
            let expected = pattern(PATTERN_PERIOD);
            let mut count: u64 = 0;
            let mut corrupt = false;
            while count < want {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                // Read on to the end even so: closing with bytes unread would
                // reset the connection, and the answer with it.
                corrupt = corrupt || !is_pattern(&buf[..n], count, &expected);
                count += n as u64;
            }
            stream
                .write_u64(if corrupt { SINK_CORRUPT } else { count })
                .await?;
            stream.shutdown().await
        }
        MODE_SOURCE => {
            let mut left = stream.read_u64().await?;
            let chunk = pattern(PATTERN_PERIOD);
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                stream.write_all(&chunk[..n]).await?;
                left -= n as u64;
            }
            stream.shutdown().await
        }
        _ => Ok(()),
    }
}

/// Whether `got`, found `offset` bytes into a transfer, is what the pattern
/// repeated every [`PATTERN_PERIOD`] bytes has there; `period` is one period of it.
pub(crate) fn is_pattern(got: &[u8], offset: u64, period: &[u8]) -> bool {
    let mut at = (offset % period.len() as u64) as usize;
    let mut got = got;
    while !got.is_empty() {
        let take = got.len().min(period.len() - at);
        if got[..take] != period[at..at + take] {
            return false;
        }
        got = &got[take..];
        at = 0;
    }
    true
}

/// `len` bytes of a fixed pattern: what bulk transfers send.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 % 251) as u8).collect()
}

/// One relay hop: each accepted connection is copied both ways to `to`.
pub(crate) async fn serve_relay(listen: SocketAddr, to: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(to).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional_with_sizes(
                &mut inbound,
                &mut outbound,
                RELAY_BUF,
                RELAY_BUF,
            )
            .await;
        });
    }
}
