//! Audit events: one per policy decision, on the `tp::audit` target so they can be
//! routed or filtered on their own (`TP_LOG=tp::audit=info`).

use std::net::{IpAddr, SocketAddr};

use policy::{Decision, Identity};
use tp_proto::{Host, Proto};

use crate::reverse::registry::Key;

/// What was asked, for the audit line.
#[derive(Debug)]
pub(crate) struct ConnectAsk<'a> {
    pub(crate) who: &'a Identity,
    pub(crate) proto: Proto,
    pub(crate) host: &'a Host,
    pub(crate) port: u16,
    pub(crate) addr: Option<IpAddr>,
}

/// Records one decision. The connection span carries the peer address.
pub(crate) fn connect_decision(ask: &ConnectAsk<'_>, decision: &Decision) {
    let addr = ask.addr.map(|a| a.to_string());
    match decision {
        Decision::Allow { rule } => tracing::info!(
            target: "tp::audit",
            event = "decision",
            op = "connect",
            identity = %ask.who,
            proto = %ask.proto,
            host = %ask.host,
            port = ask.port,
            addr = addr.as_deref(),
            decision = "allow",
            rule = %rule,
            "allow connect {}:{} (rule {rule:?})", ask.host, ask.port,
        ),
        Decision::Deny { reason } => tracing::info!(
            target: "tp::audit",
            event = "decision",
            op = "connect",
            identity = %ask.who,
            proto = %ask.proto,
            host = %ask.host,
            port = ask.port,
            addr = addr.as_deref(),
            decision = "deny",
            reason = %reason,
            "deny connect {}:{}: {reason}", ask.host, ask.port,
        ),
    }
}

/// Records a request refused before policy could look at it (unsupported op).
pub(crate) fn refused_op(who: &Identity, op: &str, why: &str) {
    tracing::info!(
        target: "tp::audit",
        event = "decision",
        op,
        identity = %who,
        decision = "deny",
        reason = why,
        "deny {op}: {why}"
    );
}

/// Records a `listen` decision.
pub(crate) fn listen_decision(who: &Identity, key: &Key, decision: &Decision) {
    match decision {
        Decision::Allow { rule } => tracing::info!(
            target: "tp::audit",
            event = "decision",
            op = "listen",
            identity = %who,
            on = %key,
            decision = "allow",
            rule = %rule,
            "allow listen on {key} (rule {rule:?})",
        ),
        Decision::Deny { reason } => tracing::info!(
            target: "tp::audit",
            event = "decision",
            op = "listen",
            identity = %who,
            on = %key,
            decision = "deny",
            reason = %reason,
            "deny listen on {key}: {reason}",
        ),
    }
}

/// Records a registration starting or ending (`what`: `registered` or
/// `unregistered`; `detail`: the transport, or why it ended).
pub(crate) fn registration(who: &Identity, key: &Key, what: &str, detail: &str) {
    tracing::info!(
        target: "tp::audit",
        event = what,
        identity = %who,
        on = %key,
        detail,
        "{what} {key} for {who} ({detail})",
    );
}

/// Records a `connect` to a service: who asked, which service, who exposes it
/// (`None` when nobody does or policy refused first).
pub(crate) fn service_decision(
    who: &Identity,
    service: &str,
    exposer: Option<&str>,
    decision: &Decision,
) {
    match decision {
        Decision::Allow { rule } => tracing::info!(
            target: "tp::audit",
            event = "decision",
            op = "connect",
            identity = %who,
            service,
            exposer,
            decision = "allow",
            rule = %rule,
            "allow connect to service {service} exposed by {} (rule {rule:?})",
            exposer.unwrap_or("nobody"),
        ),
        Decision::Deny { reason } => tracing::info!(
            target: "tp::audit",
            event = "decision",
            op = "connect",
            identity = %who,
            service,
            decision = "deny",
            reason = %reason,
            "deny connect to service {service}: {reason}",
        ),
    }
}

/// Records a plain TCP connection arriving on a public port.
pub(crate) fn public_incoming(key: &Key, exposer: &str, peer: SocketAddr, session: &str) {
    tracing::info!(
        target: "tp::audit",
        event = "incoming",
        on = %key,
        exposer,
        peer = %peer,
        session,
        "incoming connection from {peer} on {key} exposed by {exposer}",
    );
}

/// Records whether `who` may use the TLS route `route` (`[[terminate]]` with a
/// client certificate). The connection span carries the peer address.
pub(crate) fn route_decision(who: &Identity, route: &str, decision: &Decision) {
    match decision {
        Decision::Allow { rule } => tracing::info!(
            target: "tp::audit",
            event = "decision",
            op = "route",
            identity = %who,
            route,
            decision = "allow",
            rule = %rule,
            "allow route {route} (rule {rule:?})",
        ),
        Decision::Deny { reason } => tracing::info!(
            target: "tp::audit",
            event = "decision",
            op = "route",
            identity = %who,
            route,
            decision = "deny",
            reason = %reason,
            "deny route {route}: {reason}; connection closed, nothing forwarded",
        ),
    }
}
