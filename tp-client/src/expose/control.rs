//! The control channel of a registration: the `listen` tunnel after its `ok`.
//!
//! Both sides send event lines on it. We send `ping` when we have sent nothing
//! for [`Heartbeat::ping_every`] (15 s), and take [`Heartbeat::dead_after`]
//! (45 s) without any line from the server as a dead channel. `incoming`
//! events (over TLS/TCP) and the streams the server opens on the QUIC
//! connection (over QUIC) are handed on, each served in a task of its own.
//! Unknown events are ignored.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use quinn::{Connection, ConnectionError, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, sleep_until, timeout};
use tp_net::message::{ReadMessageError, read_message};
use tp_proto::{Event, Incoming, decode_event, encode_event};
use tracing::{Instrument, debug, info_span};

use super::incoming::Serve;
use crate::connect::Tunnel;
use crate::quic_error;

/// Heartbeat timing of a control channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Send a `ping` after this long without sending anything.
    pub ping_every: Duration,
    /// Take the channel for dead after this long without any line.
    pub dead_after: Duration,
}

impl Default for Heartbeat {
    /// 15 s and 45 s, as docs/protocol.md says.
    fn default() -> Self {
        Heartbeat {
            ping_every: Duration::from_secs(15),
            dead_after: Duration::from_secs(45),
        }
    }
}

/// How a registration's control channel ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// We were told to stop; the channel is still open, to be closed in order.
    Stopped(Tunnel),
    /// The channel died (and was aborted); why.
    Lost(String),
}

/// What arrived for the registration.
#[derive(Debug)]
pub(super) enum Arrival {
    /// An `incoming` event on the control channel (TLS/TCP).
    Incoming(Incoming),
    /// A stream the server opened on the QUIC connection.
    Stream(SendStream, RecvStream),
}

/// How [`watch`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Watched {
    /// `stop` completed.
    Stopped,
    /// The channel died: why.
    Lost(String),
}

/// Serves the registration whose control channel is `tunnel` until `stop`
/// completes or the channel dies.
pub(super) async fn serve<F>(
    mut tunnel: Tunnel,
    serve: Arc<Serve>,
    heartbeat: Heartbeat,
    stop: Pin<&mut F>,
) -> Ended
where
    F: Future<Output = ()>,
{
    let conn = tunnel.quic_connection().cloned();
    let watched = watch(&mut tunnel, conn.as_ref(), heartbeat, stop, |arrival| {
        match (arrival, &conn) {
            (Arrival::Stream(send, recv), Some(conn)) => {
                let span = info_span!("incoming", stream = %send.id());
                let task = serve.clone().stream(conn.clone(), send, recv);
                tokio::spawn(task.instrument(span));
            }
            (Arrival::Incoming(incoming), None) => {
                let span = info_span!("incoming", session = %incoming.session);
                tokio::spawn(serve.clone().accept(incoming).instrument(span));
            }
            (Arrival::Incoming(incoming), Some(_)) => {
                // Over QUIC the connection comes as a stream, never as an event.
                debug!(session = %incoming.session, "ignoring an incoming event on a QUIC control stream");
            }
            (Arrival::Stream(..), None) => {}
        }
    })
    .await;
    match watched {
        Watched::Stopped => Ended::Stopped(tunnel),
        // Dropping the tunnel aborts it.
        Watched::Lost(why) => Ended::Lost(why),
    }
}

/// Ends the control channel in order (TLS `close_notify` or the stream's FIN),
/// so the server frees the registration at once, and waits (at most `grace`)
/// for the server to have it.
pub(super) async fn close(mut tunnel: Tunnel, grace: Duration) {
    if timeout(grace, tunnel.shutdown()).await.is_err() {
        debug!("closing the control channel timed out");
        return;
    }
    let _ = timeout(grace, tunnel.delivered()).await;
}

/// One turn of [`watch`].
enum Step {
    Stop,
    Line(Result<Event, ReadMessageError>),
    Stream(Result<(SendStream, RecvStream), ConnectionError>),
    Ping,
    Dead,
}

/// Reads the control channel, sends heartbeats and accepts the server's QUIC
/// streams on `conn` (if any), handing each arrival to `on`, until `stop`
/// completes or the channel dies.
pub(super) async fn watch<S, F>(
    control: &mut S,
    conn: Option<&Connection>,
    heartbeat: Heartbeat,
    mut stop: Pin<&mut F>,
    mut on: impl FnMut(Arrival),
) -> Watched
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let mut buf = BytesMut::new();
    let mut heard = Instant::now();
    let mut sent = Instant::now();
    loop {
        // `read_message` is cancel-safe: what it read stays in `buf`.
        let step = tokio::select! {
            () = stop.as_mut() => Step::Stop,
            line = read_message(control, &mut buf, decode_event) => Step::Line(line),
            accepted = accept(conn) => Step::Stream(accepted),
            () = sleep_until(sent + heartbeat.ping_every) => Step::Ping,
            () = sleep_until(heard + heartbeat.dead_after) => Step::Dead,
        };
        match step {
            Step::Stop => return Watched::Stopped,
            Step::Line(Ok(event)) => {
                heard = Instant::now();
                match event {
                    Event::Incoming(incoming) => on(Arrival::Incoming(incoming)),
                    Event::Ping => {
                        if let Err(e) = send_event(control, &Event::Pong).await {
                            return Watched::Lost(format!("answering a ping failed: {e}"));
                        }
                        sent = Instant::now();
                    }
                    Event::Pong => debug!("pong from the server"),
                    other => debug!("ignoring the event {other:?}"),
                }
            }
            Step::Line(Err(ReadMessageError::Eof(_))) => {
                return Watched::Lost("the server closed the control channel".into());
            }
            Step::Line(Err(ReadMessageError::Decode(e))) => {
                return Watched::Lost(format!("the server sent a bad control line: {e}"));
            }
            Step::Line(Err(ReadMessageError::Io(e))) => {
                return Watched::Lost(format!("the control channel broke: {}", broke(&e)));
            }
            Step::Line(Err(e)) => return Watched::Lost(format!("the control channel broke: {e}")),
            Step::Stream(Ok((send, recv))) => {
                heard = Instant::now();
                on(Arrival::Stream(send, recv));
            }
            Step::Stream(Err(e)) => {
                let why = quic_error::lost_reason(&e);
                return Watched::Lost(format!("the QUIC connection broke: {why}"));
            }
            Step::Ping => {
                if let Err(e) = send_event(control, &Event::Ping).await {
                    return Watched::Lost(format!("sending a ping failed: {e}"));
                }
                sent = Instant::now();
            }
            Step::Dead => {
                return Watched::Lost(format!(
                    "nothing heard from the server for {:?}",
                    heartbeat.dead_after
                ));
            }
        }
    }
}

/// Writes one event line on the control channel.
async fn send_event<S: AsyncWrite + Unpin>(control: &mut S, event: &Event) -> io::Result<()> {
    let mut line = Vec::with_capacity(32);
    encode_event(event, &mut line);
    control.write_all(&line).await?;
    control.flush().await
}

/// Why the control channel broke, in plain words (the transports' own
/// messages name stream ids or a docs.rs page).
fn broke(e: &io::Error) -> String {
    if let Some(how) = quic_error::tunnel_broke(e) {
        return how;
    }
    if e.kind() == io::ErrorKind::UnexpectedEof {
        // tokio-rustls: the TCP connection ended without close_notify.
        return "the server ended it abruptly (did it restart?)".into();
    }
    e.to_string()
}

/// The next stream the server opens on `conn`; never without a connection.
async fn accept(conn: Option<&Connection>) -> Result<(SendStream, RecvStream), ConnectionError> {
    match conn {
        Some(conn) => conn.accept_bi().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use tokio::io::{AsyncBufReadExt, BufReader, duplex};
    use tokio::sync::oneshot;

    use super::*;

    const PING: &str = "{\"v\":1,\"event\":\"ping\"}";
    const PONG: &str = "{\"v\":1,\"event\":\"pong\"}";

    #[tokio::test(start_paused = true)]
    async fn pings_after_15s_of_silence_answers_pings_and_gives_up_after_45s() {
        let (mut ours, theirs) = duplex(4096);
        let (server_r, mut server_w) = tokio::io::split(theirs);
        let t0 = Instant::now();
        let pings = tokio::spawn(async move {
            let mut lines = BufReader::new(server_r).lines();
            let mut at = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                at.push((line, t0.elapsed().as_secs()));
            }
            at
        });
        // The server speaks at 20 s (an unknown event, then one with an
        // unknown field), then never again.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(20)).await;
            server_w
                .write_all(b"{\"v\":1,\"event\":\"drain\"}\n{\"v\":1,\"event\":\"ping\",\"x\":1}\n")
                .await
                .unwrap();
            std::future::pending::<()>().await;
        });
        let mut arrivals = 0;
        let watched = watch(
            &mut ours,
            None,
            Heartbeat::default(),
            pin!(std::future::pending::<()>()),
            |_| arrivals += 1,
        )
        .await;
        assert_eq!(
            watched,
            Watched::Lost("nothing heard from the server for 45s".into())
        );
        assert_eq!(t0.elapsed(), Duration::from_secs(65), "45 s after 20 s");
        assert_eq!(arrivals, 0);
        drop(ours);
        // Pings after each 15 s of silence; the server's ping is answered at
        // once, and restarts the count. (At 65 s, the next ping and the end
        // come due together: either may win.)
        let sent = pings.await.unwrap();
        let ping = |at| (PING.to_owned(), at);
        let expected = [ping(15), (PONG.to_owned(), 20), ping(35), ping(50)];
        assert_eq!(sent[..4], expected[..], "{sent:?}");
        assert!(sent.len() == 4 || sent[4] == ping(65), "{sent:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn incoming_events_are_handed_on_and_stop_stops() {
        let (mut ours, mut theirs) = duplex(4096);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let line = b"{\"v\":1,\"event\":\"incoming\",\"session\":\"s1\",\"from\":\"bob@corp\",\"groups\":[\"ops\"],\"peer\":\"198.51.100.7:50123\"}\n";
        theirs.write_all(line).await.unwrap();
        let mut got = Vec::new();
        let stop = pin!(async move {
            let _ = stop_rx.await;
        });
        let watching = watch(&mut ours, None, Heartbeat::default(), stop, |a| {
            if let Arrival::Incoming(i) = a {
                got.push(i);
            }
        });
        let stopper = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stop_tx.send(()).unwrap();
        };
        let (watched, ()) = tokio::join!(watching, stopper);
        assert_eq!(watched, Watched::Stopped);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].session, "s1");
        assert_eq!(got[0].from.as_deref(), Some("bob@corp"));
        assert_eq!(got[0].groups, vec!["ops".to_owned()]);
    }

    #[tokio::test]
    async fn a_closed_or_garbled_channel_is_lost() {
        let (mut ours, theirs) = duplex(4096);
        drop(theirs);
        let watched = watch(
            &mut ours,
            None,
            Heartbeat::default(),
            pin!(std::future::pending::<()>()),
            |_| {},
        )
        .await;
        assert_eq!(
            watched,
            Watched::Lost("the server closed the control channel".into())
        );

        let (mut ours, mut theirs) = duplex(4096);
        theirs.write_all(b"not json\n").await.unwrap();
        let watched = watch(
            &mut ours,
            None,
            Heartbeat::default(),
            pin!(std::future::pending::<()>()),
            |_| {},
        )
        .await;
        let Watched::Lost(why) = watched else {
            panic!("{watched:?}");
        };
        assert!(
            why.starts_with("the server sent a bad control line"),
            "{why}"
        );
    }
}
