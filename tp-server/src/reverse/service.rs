//! `connect` to a service name: the policy's `services` check, then the
//! registration's exposing client gets the connection and the two are relayed.
//! In end-to-end mode both clients then run TLS inside this relay; the server
//! sees only ciphertext.

use bytes::BytesMut;
use policy::{Decision, Identity};
use tp_proto::{Answer, ErrorCode, Incoming};
use tracing::{Instrument, info_span};

use super::reach;
use super::registry::{Key, session_id};
use crate::audit;
use crate::server::Shared;
use crate::session::{Origin, TunnelStream, answer_ok, finish, write_flush};
use crate::slots::TunnelSlot;
use crate::tunnel::splice::{Ended, splice};

/// Handles a TCP `connect` to the service `name`; `slot` is the tunnel's place
/// among its identity's.
pub(crate) async fn serve<S: TunnelStream>(
    shared: &Shared,
    mut client: S,
    who: &Identity,
    name: &str,
    early: BytesMut,
    origin: &Origin,
    slot: TunnelSlot,
) {
    let span = info_span!("tunnel", service = name, exposer = tracing::field::Empty);
    async move {
        let decision = shared.policy.decide_service(who, name);
        if let Decision::Deny { reason } = &decision {
            audit::service_decision(who, name, None, &decision);
            let answer = Answer::err(ErrorCode::Denied, reason.to_string());
            return finish(&mut client, &answer).await;
        }
        let key = Key::Name(name.to_owned());
        let Some((owner, offers)) = shared.registry.lookup(&key) else {
            audit::service_decision(who, name, None, &decision);
            let why = format!(
                "no service named {name} is exposed (a host whose name has no dot is written with a trailing one: {name}.)"
            );
            return finish(&mut client, &Answer::err(ErrorCode::Unreachable, why)).await;
        };
        tracing::Span::current().record("exposer", tracing::field::display(&owner));
        audit::service_decision(who, name, Some(&owner), &decision);
        let incoming = Incoming {
            session: session_id(),
            from: Some(who.to_string()),
            groups: shared
                .policy
                .groups_of(who)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            peer: origin.peer,
            to: None,
        };
        let attached = match reach(&offers, incoming, shared.limits.connect_timeout, &key).await {
            Ok(attached) => attached,
            Err(answer) => return finish(&mut client, &answer).await,
        };
        let mut exposer = attached.stream;
        if !answer_ok(&mut client).await {
            exposer.abort();
            return;
        }
        if !attached.early.is_empty() && write_flush(&mut client, &attached.early).await.is_err() {
            exposer.abort();
            return;
        }
        let idle = shared.limits.idle_timeout;
        let ended = splice(&mut client, &mut exposer, early, "exposing client", idle, slot).await;
        if ended == Ended::Failed {
            exposer.abort();
        }
        drop(attached.done);
    }
    .instrument(span)
    .await
}
