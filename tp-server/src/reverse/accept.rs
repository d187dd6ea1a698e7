//! `accept`: a TLS/TCP data connection from an exposing client, claiming a
//! session the server announced on its control channel. The connection's bytes
//! are then relayed by the caller's task; this one holds the connection until
//! that relay ends.

use bytes::BytesMut;
use policy::Identity;
use tokio::sync::oneshot;
use tp_proto::{Accept, Answer, ErrorCode};
use tracing::debug;

use super::registry::Attached;
use crate::audit;
use crate::server::Shared;
use crate::session::{Origin, TunnelStream, answer_ok, finish};

/// Handles an `accept` hello; `early` is what the client sent behind it.
pub(crate) async fn serve<S: TunnelStream + 'static>(
    shared: &Shared,
    mut stream: S,
    who: &Identity,
    accept: Accept,
    early: BytesMut,
    origin: &Origin,
) {
    if origin.quic.is_some() {
        let why = "accept is for TLS/TCP: over QUIC the server opens a stream per connection";
        audit::refused_op(who, "accept", why);
        return finish(&mut stream, &Answer::err(ErrorCode::BadRequest, why)).await;
    }
    let reply = match shared.registry.claim(&accept.session, who.as_str()) {
        Ok(reply) => reply,
        Err(why) => {
            audit::refused_op(who, "accept", why.as_str());
            let answer = Answer::err(ErrorCode::Denied, "unknown or expired session");
            return finish(&mut stream, &answer).await;
        }
    };
    if !answer_ok(&mut stream).await {
        return;
    }
    let (done, relayed) = oneshot::channel();
    let attached = Attached {
        stream: Box::new(stream),
        early,
        done: Some(done),
        _tracked: None,
    };
    if reply.send(attached).is_err() {
        debug!(session = %accept.session, "the caller went away before the data connection arrived");
        return;
    }
    // Err once the relay drops `done`: the tunnel is over.
    let _ = relayed.await;
}
