//! Reverse tunnels: a client exposes a local service through the server, under a
//! service name (end-to-end mode) or on a public port.
//!
//! - [`control`]: the `listen` hello and its control channel: registration,
//!   heartbeats, and handing each incoming connection to the exposing client (a
//!   server-opened stream over QUIC, an announced session over TLS/TCP).
//! - [`accept`]: the TLS/TCP data connection that claims an announced session.
//! - [`service`]: a `connect` to a service name, relayed to the exposing client.
//! - [`public`]: plain TCP connections to a public port, relayed likewise.
//! - [`registry`]: who holds which name or port; outlives config reloads.

pub(crate) mod accept;
pub(crate) mod control;
pub(crate) mod public;
pub(crate) mod registry;
pub(crate) mod service;

use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tp_proto::{Answer, ErrorCode, Incoming};

use registry::{Attached, Key, Offer};

/// Offers `incoming` to the registration behind `offers` and waits, at most
/// `timeout`, for the exposing client's stream. On failure, the answer for the
/// caller.
pub(crate) async fn reach(
    offers: &mpsc::Sender<Offer>,
    incoming: Incoming,
    timeout: Duration,
    key: &Key,
) -> Result<Attached, Answer> {
    let (reply, attached) = oneshot::channel();
    match offers.try_send(Offer { incoming, reply }) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return Err(Answer::err(
                ErrorCode::Busy,
                format!("{key} has too many connections waiting; retry shortly"),
            ));
        }
        Err(TrySendError::Closed(_)) => return Err(gone(key)),
    }
    match tokio::time::timeout(timeout, attached).await {
        Ok(Ok(attached)) => Ok(attached),
        Ok(Err(_)) => Err(gone(key)),
        Err(_) => Err(Answer::err(
            ErrorCode::Timeout,
            format!("the client exposing {key} did not take the connection within {timeout:?}"),
        )),
    }
}

fn gone(key: &Key) -> Answer {
    Answer::err(
        ErrorCode::Unreachable,
        format!("the client exposing {key} went away"),
    )
}
