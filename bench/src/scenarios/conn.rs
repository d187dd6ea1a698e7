//! One tunnel from the load generator's side: connect to the entry, send a ping
//! through to the echo target, wait for it to come back.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::MODE_ECHO;

/// The ping after the mode byte: 31 bytes.
const PING: &[u8; 31] = b"tp-bench ping 0123456789abcdef.";
/// Deadline for one connect-send-echo.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens a tunnel and proves it carries bytes end to end; returns the open stream.
pub(crate) async fn open(entry: SocketAddr) -> anyhow::Result<TcpStream> {
    tokio::time::timeout(PING_TIMEOUT, open_inner(entry))
        .await
        .context("no echo within 15 s")?
}

async fn open_inner(entry: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(entry)
        .await
        .with_context(|| format!("connecting to {entry}"))?;
    stream.set_nodelay(true)?;
    ping(&mut stream).await?;
    Ok(stream)
}

/// Picks echo mode, sends the ping and checks that it comes back.
pub(crate) async fn ping<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> anyhow::Result<()> {
    let mut msg = [0u8; 32];
    msg[0] = MODE_ECHO;
    msg[1..].copy_from_slice(PING);
    stream.write_all(&msg).await.context("sending the ping")?;
    stream.flush().await.context("sending the ping")?;
    let mut back = [0u8; 31];
    stream
        .read_exact(&mut back)
        .await
        .context("reading the echo")?;
    if &back != PING {
        bail!("the echo differs from the ping");
    }
    Ok(())
}
