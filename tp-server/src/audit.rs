//! Audit events: one per policy decision, on the `tp::audit` target so they can be
//! routed or filtered on their own (`TP_LOG=tp::audit=info`).

use std::net::IpAddr;

use policy::{Decision, Identity};
use tp_proto::{Host, Proto};

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
