//! `tp HOST PORT`: one tunnel bridged to stdin and stdout, for ssh's
//! `ProxyCommand`. stdout carries tunnel bytes only; logs go to stderr.
//!
//! stdin EOF shuts down the tunnel's write side (TLS `close_notify`) and the
//! tunnel keeps flowing to stdout. Tunnel EOF ends the bridge at once, without
//! waiting for stdin: the caller then exits the process, which also ends tokio's
//! blocking read of stdin.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tp_proto::Hello;
use tracing::{debug, info, warn};

use crate::addr::Target;
use crate::connect::{ConnectError, Connector};
use crate::exit;

/// Copy buffer size of each direction.
pub const BUF_SIZE: usize = 64 * 1024;

/// Why the bridge ended badly after the tunnel was open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// Reading from the tunnel failed (reset, or closed without `close_notify`).
    #[error("tunnel broke: {0}")]
    Tunnel(io::Error),
    /// Writing to stdout failed (the reader went away).
    #[error("writing to stdout failed: {0}")]
    Stdout(io::Error),
}

/// Why `tp HOST PORT` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StdioError {
    /// The tunnel could not be opened, or the server refused it.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The tunnel broke while bridging.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

impl StdioError {
    /// The status `tp` exits with for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            StdioError::Connect(e) => e.exit_status(),
            StdioError::Bridge(_) => exit::LOCAL,
        }
    }
}

/// Bytes moved by a bridge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Bytes read from stdin and sent into the tunnel.
    pub sent: u64,
    /// Bytes received from the tunnel and written to stdout.
    pub received: u64,
}

/// Opens a tunnel to `target` and bridges it to the process's stdin and stdout.
/// Returns when the tunnel has ended; stdout is flushed by then. A stdout whose
/// reader has gone (broken pipe) ends the tunnel quietly.
pub async fn run(connector: &Connector, target: &Target) -> Result<BridgeStats, StdioError> {
    let hello = Hello::connect_tcp(target.host.clone(), target.port);
    let tunnel = connector.open(&hello).await?;
    info!(%target, server = %connector.server(), "tunnel open");
    match bridge(tunnel, tokio::io::stdin(), tokio::io::stdout()).await {
        Ok(stats) => {
            info!(
                sent = stats.sent,
                received = stats.received,
                "tunnel closed"
            );
            Ok(stats)
        }
        // Whoever read our stdout (ssh) has gone: nobody is left to tell.
        Err(BridgeError::Stdout(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            debug!("stdout closed by its reader, ending the tunnel");
            Ok(BridgeStats::default())
        }
        Err(e) => Err(e.into()),
    }
}

/// Bridges `tunnel` with `input` (stdin) and `output` (stdout) until the tunnel
/// reaches EOF or fails. See the module docs for the half-close rules.
pub async fn bridge<T, R, W>(tunnel: T, input: R, output: W) -> Result<BridgeStats, BridgeError>
where
    T: AsyncRead + AsyncWrite,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (from_tunnel, to_tunnel) = tokio::io::split(tunnel);
    let sent = AtomicU64::new(0);
    let received = AtomicU64::new(0);
    let down = copy_down(from_tunnel, output, &received);
    let up = copy_up(input, to_tunnel, &sent);
    tokio::pin!(down, up);
    let mut up_done = false;
    let result = loop {
        tokio::select! {
            r = &mut down => break r,
            () = &mut up, if !up_done => up_done = true,
        }
    };
    result.map(|()| BridgeStats {
        sent: sent.load(Ordering::Relaxed),
        received: received.load(Ordering::Relaxed),
    })
}

/// Tunnel → stdout, flushing after every write so ssh sees each packet at once.
async fn copy_down<R, W>(mut from: R, mut to: W, count: &AtomicU64) -> Result<(), BridgeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = from.read(&mut buf).await.map_err(BridgeError::Tunnel)?;
        if n == 0 {
            debug!("tunnel EOF");
            return to.flush().await.map_err(BridgeError::Stdout);
        }
        to.write_all(&buf[..n]).await.map_err(BridgeError::Stdout)?;
        to.flush().await.map_err(BridgeError::Stdout)?;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// stdin → tunnel; at stdin EOF (or a stdin error) shuts the tunnel's write side.
/// A failing tunnel write ends this direction; the other one reports the failure.
async fn copy_up<R, W>(mut from: R, mut to: W, count: &AtomicU64)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                debug!("stdin EOF, closing the tunnel's write side");
                break;
            }
            Ok(n) => n,
            Err(e) => {
                warn!("reading stdin failed, closing the tunnel's write side: {e}");
                break;
            }
        };
        if let Err(e) = write_flush(&mut to, &buf[..n]).await {
            debug!("writing to the tunnel failed: {e}");
            return;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
    if let Err(e) = to.shutdown().await {
        debug!("shutting down the tunnel's write side failed: {e}");
    }
}

async fn write_flush<W: AsyncWrite + Unpin>(to: &mut W, bytes: &[u8]) -> io::Result<()> {
    to.write_all(bytes).await?;
    to.flush().await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn stdin_eof_half_closes_and_the_reply_still_arrives() {
        let (tunnel, mut server) = duplex(1024);
        let (mut stdin_w, stdin) = duplex(1024);
        let (stdout, mut stdout_r) = duplex(256 * 1024);
        let task = tokio::spawn(bridge(tunnel, stdin, stdout));

        stdin_w.write_all(b"request").await.unwrap();
        drop(stdin_w);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request", "stdin EOF reaches the server as EOF");

        let reply: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        server.write_all(&reply).await.unwrap();
        drop(server);
        let stats = task.await.unwrap().unwrap();
        let mut out = Vec::new();
        stdout_r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, reply);
        assert_eq!(
            stats,
            BridgeStats {
                sent: 7,
                received: 200_000
            }
        );
    }

    #[tokio::test]
    async fn tunnel_eof_ends_the_bridge_without_waiting_for_stdin() {
        let (tunnel, mut server) = duplex(1024);
        let (_stdin_w, stdin) = duplex(1024); // stays open, never written
        let (stdout, mut stdout_r) = duplex(1024);
        server.write_all(b"bye").await.unwrap();
        drop(server);
        let stats = tokio::time::timeout(Duration::from_secs(5), bridge(tunnel, stdin, stdout))
            .await
            .expect("bridge ends at tunnel EOF")
            .unwrap();
        assert_eq!(stats.received, 3);
        let mut out = [0u8; 3];
        stdout_r.read_exact(&mut out).await.unwrap();
        assert_eq!(&out, b"bye");
    }

    #[tokio::test]
    async fn a_closed_stdout_is_an_error() {
        let (tunnel, mut server) = duplex(1024);
        let (_stdin_w, stdin) = duplex(1024);
        let (stdout, stdout_r) = duplex(1024);
        drop(stdout_r);
        server.write_all(b"data").await.unwrap();
        let err = bridge(tunnel, stdin, stdout).await.unwrap_err();
        assert!(matches!(err, BridgeError::Stdout(_)), "{err:?}");
    }
}
