//! `tp HOST PORT`: one tunnel bridged to stdin and stdout, for ssh's
//! `ProxyCommand`. stdout carries tunnel bytes only; logs go to stderr.
//!
//! stdin EOF shuts down the tunnel's write side (TLS `close_notify`, or the end
//! of the QUIC stream) and the tunnel keeps flowing to stdout. Tunnel EOF ends
//! the bridge at once, without waiting for stdin (ssh keeps stdin open until the
//! proxy command exits): tp closes its write side in turn, so the server sees an
//! orderly close, and the caller exits the process, which also ends tokio's
//! blocking read of stdin.
//!
//! Over QUIC, bytes written are only delivered while the process runs, so
//! [`run`] waits (at most [`CLOSE_GRACE`]) until the server has acknowledged
//! everything up to the end of the stream, then closes the connection with code
//! 0 before returning.
//!
//! ssh sends SIGHUP to its `ProxyCommand` when it is done; SIGHUP, SIGTERM and
//! SIGINT end the bridge the same orderly way instead of killing the process
//! with the tunnel half open.
//!
//! A tunnel that breaks (the server aborted it, the connection was lost, TLS
//! ended without `close_notify`) is an error, "tunnel broke", and so exit
//! status 1 over either transport. After a failure, including a stdout nobody
//! reads any more, the tunnel is aborted ([`crate::Tunnel::abort`]), never
//! closed in order, and over QUIC the reset gets [`CLOSE_GRACE`] to reach the
//! server before the connection closes.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tp_net::relay::{ALIGN, place};
use tracing::{debug, info, warn};

use crate::addr::Target;
use crate::connect::{ConnectError, Connector, FirstBytes};
use crate::{exit, quic_error};

/// Copy buffer size of each direction.
pub const BUF_SIZE: usize = 64 * 1024;

/// How long closing the tunnel's write side may take once the bridge is over,
/// and how long `run` waits for the server to acknowledge what was sent.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why the bridge ended badly after the tunnel was open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// Reading from the tunnel failed (reset, or closed without `close_notify`).
    #[error("tunnel broke: {}", broken_tunnel(.0))]
    Tunnel(io::Error),
    /// Writing to stdout failed (the reader went away).
    #[error("writing to stdout failed: {0}")]
    Stdout(io::Error),
    /// Installing the signal handlers failed.
    #[error("installing signal handlers failed: {0}")]
    Signal(io::Error),
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
/// Returns when the tunnel has ended; stdout is flushed by then, and over QUIC
/// what was sent has been acknowledged (or [`CLOSE_GRACE`] has passed) and the
/// connection is closed. A stdout whose reader has gone (broken pipe) ends the
/// tunnel quietly.
pub async fn run(connector: &Connector, target: &Target) -> Result<BridgeStats, StdioError> {
    run_with(
        connector,
        target,
        tokio::io::stdin(),
        tokio::io::stdout(),
        stop_signal,
    )
    .await
}

/// [`run`] with `input` and `output` for stdin and stdout, and `stop` making
/// the stop signal once the tunnel is open.
pub(crate) async fn run_with<R, W, S>(
    connector: &Connector,
    target: &Target,
    input: R,
    output: W,
    stop: impl FnOnce() -> Result<S, BridgeError>,
) -> Result<BridgeStats, StdioError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin,
    S: Future<Output = &'static str>,
{
    let result = open_and_bridge(connector, target, input, output, stop).await;
    // Refused or done: a QUIC server should not have to wait for an idle timeout.
    connector.close().await;
    result
}

async fn open_and_bridge<R, W, S>(
    connector: &Connector,
    target: &Target,
    mut input: R,
    output: W,
    stop: impl FnOnce() -> Result<S, BridgeError>,
) -> Result<BridgeStats, StdioError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin,
    S: Future<Output = &'static str>,
{
    // What the local client (ssh's banner, a request) writes before the answer
    // goes behind the hello, without waiting for the answer.
    let mut first = FirstBytes::reader(&mut input);
    let mut link = connector.open_link_with(target, &mut first).await?;
    let (sent_first, ended) = (first.len() as u64, first.reached_eof());
    // Read but not sent (no hello took it: a service, stealth mode): first.
    let unsent = first.into_unsent();
    info!(%target, server = %connector.server(), transport = %link.via(), "tunnel open");
    // Installed only now: until the tunnel is open, a signal just ends tp.
    let stop = stop()?;
    // stdin's end was read before the tunnel opened: a terminal does not give
    // it twice, so the bridge must not wait for it again.
    let input = std::io::Cursor::new(unsent).chain(input.take(if ended { 0 } else { u64::MAX }));
    let write_offset = link.write_offset();
    let bridged = bridge(&mut link, write_offset, input, output, stop)
        .await
        .map(|stats| BridgeStats {
            sent: sent_first + stats.sent,
            ..stats
        });
    let tunnel = link.into_tunnel();
    if bridged.is_ok() {
        // The bridge has ended our write side; over QUIC, wait until the server
        // has it all, or the bytes still in flight die with the process.
        if tokio::time::timeout(CLOSE_GRACE, tunnel.delivered())
            .await
            .is_err()
        {
            debug!("the server did not acknowledge the end of the tunnel within {CLOSE_GRACE:?}");
        }
    } else {
        // The tunnel broke, or nobody reads what it brings: abort it, so the
        // server does not take it for complete, and let the reset arrive
        // before the connection closes.
        let aborted = tunnel.abort();
        if tokio::time::timeout(CLOSE_GRACE, aborted.acknowledged())
            .await
            .is_err()
        {
            debug!("the server did not acknowledge the tunnel's reset within {CLOSE_GRACE:?}");
        }
    }
    match bridged {
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

/// Why a tunnel broke, in plain words: the transports' own messages name
/// stream ids, alerts or a docs.rs page.
fn broken_tunnel(e: &io::Error) -> String {
    if let Some(how) = quic_error::tunnel_broke(e) {
        return how;
    }
    // tokio-rustls: the TCP connection ended without close_notify.
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return ENDED_ABRUPTLY.into();
    }
    e.to_string()
}

/// A TLS/TCP tunnel that ended without `close_notify`.
pub(crate) const ENDED_ABRUPTLY: &str =
    "the server ended the tunnel abruptly (the target or the server failed)";

/// Resolves at the first SIGHUP, SIGTERM or SIGINT.
fn stop_signal() -> Result<impl Future<Output = &'static str>, BridgeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).map_err(BridgeError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(BridgeError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(BridgeError::Signal)?;
    Ok(async move {
        tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// Bridges `tunnel` with `input` (stdin) and `output` (stdout) until the tunnel
/// reaches EOF or fails, or `stop` resolves. See the module docs for the
/// half-close rules. After an error the tunnel's write side is left as it is:
/// the caller aborts the tunnel ([`crate::Tunnel::abort`]).
///
/// What stdin gives is placed `write_offset` bytes past a 64-byte boundary
/// before it is written to the tunnel, as the relay places it
/// ([`tp_net::relay::RelayOptions::write_offset_a`]; the tunnel's own
/// `write_offset()` says where).
pub async fn bridge<T, R, W, S>(
    tunnel: T,
    write_offset: usize,
    input: R,
    output: W,
    stop: S,
) -> Result<BridgeStats, BridgeError>
where
    T: AsyncRead + AsyncWrite,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    S: Future<Output = &'static str>,
{
    let (from_tunnel, mut to_tunnel) = tokio::io::split(tunnel);
    let sent = AtomicU64::new(0);
    let received = AtomicU64::new(0);
    let mut up_done = false;
    let result = {
        let down = copy_down(from_tunnel, output, &received);
        let up = copy_up(input, &mut to_tunnel, write_offset, &sent);
        tokio::pin!(down, up, stop);
        loop {
            tokio::select! {
                r = &mut down => break r,
                () = &mut up, if !up_done => up_done = true,
                signal = &mut stop => {
                    debug!("{signal}: closing the tunnel");
                    break Ok(());
                }
            }
        }
    };
    if !up_done && result.is_ok() {
        // The tunnel ended (or we were told to stop) while stdin was still open:
        // close our side too, so the server sees close_notify, not a dropped link.
        // After a failure the caller aborts the tunnel instead.
        match tokio::time::timeout(CLOSE_GRACE, to_tunnel.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!("closing the tunnel's write side failed: {e}"),
            Err(_) => debug!("closing the tunnel's write side timed out"),
        }
    }
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
/// The bytes read start `write_offset` past a 64-byte boundary.
async fn copy_up<R, W>(mut from: R, to: &mut W, write_offset: usize, count: &AtomicU64)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE + ALIGN];
    let start = place(&buf, write_offset);
    let buf = &mut buf[start..start + BUF_SIZE];
    loop {
        let n = match from.read(buf).await {
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
        if let Err(e) = write_flush(to, &buf[..n]).await {
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
    use crate::testutil::{Behaviour, ClientEnd, Pki, ServerSetup, connector_via, start_dual};
    use crate::transport::Transport;
    use tokio::io::duplex;

    fn never() -> std::future::Pending<&'static str> {
        std::future::pending()
    }

    #[tokio::test]
    async fn tunnel_eof_closes_our_side_too() {
        let (tunnel, server) = duplex(1024);
        let (mut server_r, mut server_w) = tokio::io::split(server);
        let (_stdin_w, stdin) = duplex(1024); // stays open, as ssh keeps it
        let (stdout, _stdout_r) = duplex(1024);
        server_w.write_all(b"bye").await.unwrap();
        server_w.shutdown().await.unwrap();
        let task = tokio::spawn(bridge(tunnel, 0, stdin, stdout, never()));
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), server_r.read_to_end(&mut rest))
            .await
            .expect("the server sees our EOF")
            .unwrap();
        assert!(rest.is_empty());
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_stop_signal_closes_the_tunnel_in_order() {
        let (tunnel, mut server) = duplex(1024);
        let (mut stdin_w, stdin) = duplex(1024);
        let (stdout, _stdout_r) = duplex(1024);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            let _ = stop_rx.await;
            "SIGHUP"
        };
        let task = tokio::spawn(bridge(tunnel, 0, stdin, stdout, stop));
        stdin_w.write_all(b"last words").await.unwrap();
        let mut got = [0u8; 10];
        server.read_exact(&mut got).await.unwrap();
        stop_tx.send(()).unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), server.read_to_end(&mut rest))
            .await
            .expect("the server sees our EOF")
            .unwrap();
        assert_eq!(&got, b"last words");
        assert!(rest.is_empty());
        let stats = task.await.unwrap().unwrap();
        assert_eq!(stats.sent, 10);
    }

    #[tokio::test]
    async fn stdin_eof_half_closes_and_the_reply_still_arrives() {
        let (tunnel, mut server) = duplex(1024);
        let (mut stdin_w, stdin) = duplex(1024);
        let (stdout, mut stdout_r) = duplex(256 * 1024);
        let task = tokio::spawn(bridge(tunnel, 0, stdin, stdout, never()));

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
        let stats = tokio::time::timeout(
            Duration::from_secs(5),
            bridge(tunnel, 0, stdin, stdout, never()),
        )
        .await
        .expect("bridge ends at tunnel EOF")
        .unwrap();
        assert_eq!(stats.received, 3);
        let mut out = [0u8; 3];
        stdout_r.read_exact(&mut out).await.unwrap();
        assert_eq!(&out, b"bye");
    }

    fn db9() -> Target {
        Target::host(tp_proto::Host::parse("db9.internal").unwrap(), 22)
    }

    fn no_signal() -> Result<std::future::Pending<&'static str>, BridgeError> {
        Ok(never())
    }

    /// A tunnel to db9 through `connector`, bridged to `stdin` and `stdout`
    /// until it ends (within 10 s).
    async fn bridged(
        connector: &Connector,
        stdin: impl AsyncRead + Unpin + Send,
        stdout: impl AsyncWrite + Unpin,
    ) -> Result<BridgeStats, StdioError> {
        tokio::time::timeout(
            Duration::from_secs(10),
            run_with(connector, &db9(), stdin, stdout, no_signal),
        )
        .await
        .expect("the bridge ends")
    }

    #[tokio::test]
    async fn a_tunnel_the_server_aborts_exits_non_zero() {
        let pki = Pki::new("test CA");
        for transport in [Transport::Quic, Transport::Tcp] {
            let mut server = start_dual(ServerSetup::trusting(&pki), Behaviour::Abort).await;
            let connector = connector_via(&pki, &pki, server.addr.port(), transport);
            let (mut stdin_w, stdin) = duplex(1024);
            let (stdout, _stdout_r) = duplex(1024);
            // The byte that makes the server abort, once the tunnel is open (a
            // byte that came with the hello would have it abort before its
            // answer is read).
            let byte_later = async {
                server.hellos.recv().await.expect("the server runs");
                tokio::time::sleep(Duration::from_millis(200)).await;
                stdin_w.write_all(b"x").await.unwrap();
                std::future::pending::<()>().await;
            };
            let target = db9();
            let bridged = async {
                tokio::select! {
                    bridged = run_with(&connector, &target, stdin, stdout, no_signal) => bridged,
                    () = byte_later => unreachable!(),
                }
            };
            let err = tokio::time::timeout(Duration::from_secs(10), bridged)
                .await
                .expect("the bridge ends")
                .unwrap_err();
            assert_eq!(err.exit_status(), exit::LOCAL, "{transport:?}");
            let text = err.to_string();
            match transport {
                Transport::Quic => assert_eq!(
                    text,
                    "tunnel broke: the server aborted the tunnel (QUIC code 1): \
                     the target or the server failed"
                ),
                _ => assert_eq!(text, format!("tunnel broke: {ENDED_ABRUPTLY}")),
            }
        }
    }

    #[tokio::test]
    async fn what_stdin_gives_before_the_answer_goes_behind_the_hello() {
        let pki = Pki::new("test CA");
        for transport in [Transport::Quic, Transport::Tcp] {
            // Never answers: whatever it reads came before the answer.
            let mut server = start_dual(ServerSetup::trusting(&pki), Behaviour::Silent).await;
            let connector = connector_via(&pki, &pki, server.addr.port(), transport);
            let (mut stdin_w, stdin) = duplex(1024);
            let (stdout, _stdout_r) = duplex(1024);
            stdin_w.write_all(b"SSH-2.0-banner\r\n").await.unwrap();
            let target = db9();
            let opening = run_with(&connector, &target, stdin, stdout, no_signal);
            let late = async {
                server.hellos.recv().await.expect("the server runs");
                stdin_w.write_all(b"more").await.unwrap();
                // Loopback: read by the server well within this.
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            tokio::select! {
                _ = opening => panic!("{transport:?}: the tunnel opened without an answer"),
                () = late => {}
            }
            let end = server.next_end().await;
            assert_eq!(end.bytes, 20, "{transport:?}: {end:?}");
            connector.close().await;
        }
    }

    #[tokio::test]
    async fn in_stealth_mode_stdin_waits_for_the_tunnel_and_nothing_is_lost() {
        let pki = Pki::new("test CA");
        let setup = ServerSetup {
            alpn: false,
            ..ServerSetup::trusting(&pki)
        };
        let server = start_dual(setup, Behaviour::Echo).await;
        let connector = connector_via(&pki, &pki, server.addr.port(), Transport::Tcp).stealth();
        // Read before the hello went (stdin is polled early), but not sent
        // with it: it must come first once the tunnel is open.
        let stdin = EndsOnce(Some(b"request".to_vec()));
        let (stdout, mut stdout_r) = duplex(1024);
        let stats = bridged(&connector, stdin, stdout).await.unwrap();
        let mut got = Vec::new();
        stdout_r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"earlyrequest");
        assert_eq!(stats.sent, 7);
    }

    /// A stdin like a terminal's: its bytes, then its end once (Ctrl-D), then
    /// nothing, ever.
    struct EndsOnce(Option<Vec<u8>>);

    impl AsyncRead for EndsOnce {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            match self.0.take() {
                Some(bytes) if !bytes.is_empty() => {
                    buf.put_slice(&bytes);
                    self.0 = Some(Vec::new());
                    std::task::Poll::Ready(Ok(()))
                }
                Some(_) => std::task::Poll::Ready(Ok(())),
                None => std::task::Poll::Pending,
            }
        }
    }

    #[tokio::test]
    async fn a_stdin_that_ends_before_the_answer_still_half_closes_the_tunnel() {
        let pki = Pki::new("test CA");
        for transport in [Transport::Quic, Transport::Tcp] {
            let server = start_dual(ServerSetup::trusting(&pki), Behaviour::Echo).await;
            let connector = connector_via(&pki, &pki, server.addr.port(), transport);
            let (stdout, mut stdout_r) = duplex(1024);
            let stdin = EndsOnce(Some(b"request".to_vec()));
            let stats = bridged(&connector, stdin, stdout).await.unwrap();
            let mut got = Vec::new();
            stdout_r.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"earlyrequest", "{transport:?}");
            assert_eq!(stats.sent, 7, "{transport:?}");
        }
    }

    #[tokio::test]
    async fn a_stdout_nobody_reads_aborts_the_tunnel() {
        let pki = Pki::new("test CA");
        let mut server = start_dual(ServerSetup::trusting(&pki), Behaviour::Echo).await;
        let connector = connector_via(&pki, &pki, server.addr.port(), Transport::Quic);
        let (_stdin_w, stdin) = duplex(1024);
        let (stdout, stdout_r) = duplex(1024);
        drop(stdout_r);
        // The server's "early" bytes cannot be written: ssh has gone.
        let stats = bridged(&connector, stdin, stdout).await.unwrap();
        assert_eq!(stats, BridgeStats::default());
        assert_eq!(server.next_end().await.how, ClientEnd::Reset(1));
    }

    #[test]
    fn broken_tunnels_are_told_in_plain_words() {
        // tokio-rustls's words for a TCP close without close_notify.
        let eof = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: \
             https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof",
        );
        assert_eq!(
            BridgeError::Tunnel(eof).to_string(),
            "tunnel broke: the server ended the tunnel abruptly (the target or the server failed)"
        );
        let reset = io::Error::from(quinn::ReadError::Reset(quinn::VarInt::from_u32(1)));
        assert_eq!(
            BridgeError::Tunnel(reset).to_string(),
            "tunnel broke: the server aborted the tunnel (QUIC code 1): \
             the target or the server failed"
        );
        let lost = io::Error::from(quinn::ReadError::ConnectionLost(
            quinn::ConnectionError::Reset,
        ));
        assert_eq!(
            BridgeError::Tunnel(lost).to_string(),
            "tunnel broke: the QUIC connection broke: \
             the server reset the connection (did it restart?)"
        );
        let other = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(
            BridgeError::Tunnel(other).to_string(),
            format!(
                "tunnel broke: {}",
                io::Error::from(io::ErrorKind::ConnectionReset)
            )
        );
    }

    #[tokio::test]
    async fn a_closed_stdout_is_an_error() {
        let (tunnel, mut server) = duplex(1024);
        let (_stdin_w, stdin) = duplex(1024);
        let (stdout, stdout_r) = duplex(1024);
        drop(stdout_r);
        server.write_all(b"data").await.unwrap();
        let err = bridge(tunnel, 0, stdin, stdout, never()).await.unwrap_err();
        assert!(matches!(err, BridgeError::Stdout(_)), "{err:?}");
    }

    /// Records where each write's bytes start, modulo 64, and keeps them.
    #[derive(Default)]
    struct Placed {
        places: Vec<usize>,
        data: Vec<u8>,
        shut: bool,
    }

    impl AsyncWrite for Placed {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.places.push(buf.as_ptr().addr() % 64);
            self.data.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            self.shut = true;
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn stdin_is_placed_where_the_tunnels_writer_asked() {
        let stdin: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for offset in [0, tp_net::relay::TLS_WRITE_OFFSET, 63] {
            let mut tunnel = Placed::default();
            let sent = AtomicU64::new(0);
            copy_up(&stdin[..], &mut tunnel, offset, &sent).await;
            assert!(tunnel.data == stdin, "every byte, in order");
            assert_eq!(sent.load(Ordering::Relaxed), stdin.len() as u64);
            assert!(tunnel.shut, "stdin EOF shuts the tunnel's write side");
            assert_eq!(tunnel.places.len(), stdin.len().div_ceil(BUF_SIZE));
            assert!(
                tunnel.places.iter().all(|&p| p == offset),
                "{offset}: {:?}",
                tunnel.places
            );
        }
    }
}
