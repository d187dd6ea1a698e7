//! The relay of an open tunnel: the client's early payload first, then bytes both
//! ways until both sides are done, one fails or the tunnel idles out; one close
//! line with the counts.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tp_net::relay::{RelayEnd, RelayOptions, Side, relay};
use tracing::{debug, info};

use crate::session::TunnelStream;

/// How a spliced tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Both sides closed cleanly.
    Clean,
    /// A side failed or the tunnel idled out; the client was aborted.
    Failed,
}

/// Relays `client` (already answered `ok`) and `target`, which `target_name`
/// names in the close line. `early` is what the client sent behind its hello.
/// The tunnel ends after `idle_timeout` without a byte either way.
///
/// `held` is the tunnel's place under the server's limits (a slot among its
/// identity's tunnels, or a public port's): given back as soon as the relay
/// ends, before the close line, so a client that saw the line may open another.
pub(crate) async fn splice<S, T, H>(
    client: &mut S,
    target: &mut T,
    early: BytesMut,
    target_name: &'static str,
    idle_timeout: Duration,
    held: H,
) -> Ended
where
    S: TunnelStream,
    T: TunnelStream,
{
    let started = Instant::now();
    let early_len = early.len() as u64;
    if !early.is_empty()
        && let Err(e) = target.write_all(&early).await
    {
        debug!(error = %e, "{target_name} failed while receiving early payload");
        client.abort();
        return Ended::Failed;
    }
    // The hello's read buffer is not needed for the tunnel's lifetime.
    drop(early);
    let options = RelayOptions {
        idle_timeout: Some(idle_timeout),
        write_offset_a: client.write_offset(),
        write_offset_b: target.write_offset(),
    };
    let (stats, end) = relay(&mut *client, &mut *target, options).await;
    drop(held);
    let up = stats.a_to_b + early_len;
    let down = stats.b_to_a;
    let duration = started.elapsed();
    match end {
        RelayEnd::Closed => {
            info!(bytes.up = up, bytes.down = down, duration = ?duration, "tunnel closed");
            Ended::Clean
        }
        RelayEnd::IdleTimeout => {
            client.abort();
            info!(bytes.up = up, bytes.down = down, duration = ?duration, "tunnel closed: idle timeout");
            Ended::Failed
        }
        RelayEnd::Error { side, error } => {
            client.abort();
            let side = match side {
                Side::A => "client",
                Side::B => target_name,
            };
            info!(bytes.up = up, bytes.down = down, duration = ?duration, side, error = %error, "tunnel closed: {side} failed");
            Ended::Failed
        }
    }
}

#[cfg(test)]
mod tests;
