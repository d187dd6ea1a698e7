//! `connect`: dispatch by protocol, and the TCP tunnel: the plan (see
//! [`super::plan`]), dial under the connect timeout, answer, relay.

use std::io;
use std::time::Instant;

use bytes::BytesMut;
use policy::Identity;
use tokio::net::TcpStream;
use tp_proto::{Answer, Connect, ConnectTarget, ErrorCode, Host, Proto};
use tracing::{Instrument, debug, info_span};

use super::plan;
use super::splice::splice;
use crate::audit;
use crate::reverse;
use crate::server::Shared;
use crate::session::{Origin, TunnelStream, answer_ok, finish};
use crate::slots::TunnelSlot;

/// Handles a `connect` hello; `early` holds payload the client sent behind its
/// hello, `slot` the tunnel's place among its identity's.
pub(crate) async fn serve<S: TunnelStream>(
    shared: &Shared,
    mut client: S,
    who: &Identity,
    hello: Connect,
    early: BytesMut,
    origin: Origin,
    slot: TunnelSlot,
) {
    let (host, port) = match (&hello.proto, hello.target) {
        (Proto::Tcp, ConnectTarget::Addr { host, port }) => (host, port),
        (Proto::Udp, ConnectTarget::Addr { host, port }) => {
            return super::udp::serve(shared, client, who, (&host, port), early, origin.quic, slot)
                .await;
        }
        (Proto::Tcp, ConnectTarget::Service { name, .. }) => {
            return reverse::service::serve(shared, client, who, &name, early, &origin, slot).await;
        }
        (Proto::Udp, ConnectTarget::Service { name, .. }) => {
            let why = format!("UDP to an exposed service (\"{name}\") is not supported");
            audit::refused_op(who, "connect", &why);
            return finish(&mut client, &Answer::err(ErrorCode::Unsupported, why)).await;
        }
    };
    let span =
        info_span!("tunnel", target = %format_args!("{host}:{port}"), addr = tracing::field::Empty);
    async move {
        let target = match open(shared, who, &host, port).await {
            Ok(target) => target,
            Err(answer) => return finish(&mut client, &answer).await,
        };
        tracing::Span::current().record(
            "addr",
            tracing::field::display(
                target
                    .peer_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string()),
            ),
        );
        bridge(shared, client, target, early, slot).await;
    }
    .instrument(span)
    .await
}

/// Decides and dials. On failure returns the answer to send.
async fn open(
    shared: &Shared,
    who: &Identity,
    host: &Host,
    port: u16,
) -> Result<TcpStream, Answer> {
    let deadline = Instant::now() + shared.limits.connect_timeout;
    let plan = plan::plan(shared, who, Proto::Tcp, host, port).await?;
    let allowed = &plan.allowed;
    let mut ask = plan.ask(who, host, port);

    // The last failure decides the answer; running out of time is a timeout even if
    // an earlier address refused.
    let mut last_error = None;
    for (addr, decision) in allowed {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            last_error = None;
            break;
        }
        ask.addr = Some(addr.ip());
        match tokio::time::timeout(remaining, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                audit::connect_decision(&ask, decision);
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => {
                debug!(addr = %addr, error = %e, "dial failed");
                last_error = Some(e);
            }
            Err(_) => {
                debug!(addr = %addr, "dial timed out");
                last_error = None;
                break;
            }
        }
    }
    // Allowed but not reachable: the decision was still an allow; log it with the failure.
    audit::connect_decision(&ask, &allowed[0].1);
    Err(dial_failure(
        host,
        port,
        last_error,
        shared.limits.connect_timeout,
    ))
}

/// The answer for a dial that failed with `last_error` (`None`: out of time).
fn dial_failure(
    host: &Host,
    port: u16,
    last_error: Option<io::Error>,
    timeout: std::time::Duration,
) -> Answer {
    match last_error {
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => Answer::err(
            ErrorCode::Refused,
            format!("{host}:{port} refused the connection"),
        ),
        Some(e) => Answer::err(
            ErrorCode::Unreachable,
            format!("cannot reach {host}:{port}: {e}"),
        ),
        None => Answer::err(
            ErrorCode::Timeout,
            format!("{host}:{port} did not answer within {timeout:?}"),
        ),
    }
}

/// Answers ok, then relays until both sides are done.
async fn bridge<S: TunnelStream>(
    shared: &Shared,
    mut client: S,
    mut target: TcpStream,
    early: BytesMut,
    slot: TunnelSlot,
) {
    if !answer_ok(&mut client).await {
        return;
    }
    let idle = shared.limits.idle_timeout;
    splice(&mut client, &mut target, early, "target", idle, slot).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_failures_map_to_codes() {
        let host = Host::parse("db1").expect("host");
        let t = std::time::Duration::from_secs(3);
        let code = |e: Option<io::Error>| match dial_failure(&host, 22, e, t) {
            Answer::Err { code, .. } => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code(Some(io::ErrorKind::ConnectionRefused.into())),
            ErrorCode::Refused
        );
        assert_eq!(
            code(Some(io::ErrorKind::HostUnreachable.into())),
            ErrorCode::Unreachable
        );
        assert_eq!(code(None), ErrorCode::Timeout);
    }
}
