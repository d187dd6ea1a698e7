//! What every `connect` does before it dials, for TCP and UDP alike: the policy
//! pre-check before any DNS lookup, resolution under the connect timeout, and the
//! policy on every resolved address. Only allowed addresses come out, in resolver
//! order; a refusal is audited here, an allow by the dialer once it knows which
//! address it used.

use std::net::{IpAddr, SocketAddr};

use policy::{ConnectRequest, Decision, Identity};
use tp_proto::{Answer, ErrorCode, Host, Proto};

use crate::audit::{self, ConnectAsk};
use crate::server::Shared;

/// The addresses a `connect` may dial, each with the decision that allowed it.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) proto: Proto,
    pub(crate) allowed: Vec<(SocketAddr, Decision)>,
}

impl Plan {
    /// The audit record for this request; the dialer fills in `addr`.
    pub(crate) fn ask<'a>(&self, who: &'a Identity, host: &'a Host, port: u16) -> ConnectAsk<'a> {
        ConnectAsk {
            who,
            proto: self.proto,
            host,
            port,
            addr: None,
        }
    }
}

/// Decides which addresses of `host:port` `who` may reach over `proto`, or the
/// answer to send (`denied`, `unreachable`, `timeout`).
pub(crate) async fn plan(
    shared: &Shared,
    who: &Identity,
    proto: Proto,
    host: &Host,
    port: u16,
) -> Result<Plan, Answer> {
    let mut ask = ConnectAsk {
        who,
        proto,
        host,
        port,
        addr: None,
    };
    let pre = shared.policy.precheck_connect(who, proto, host, port);
    if let Decision::Deny { reason } = &pre {
        audit::connect_decision(&ask, &pre);
        return Err(Answer::err(ErrorCode::Denied, reason.to_string()));
    }

    let addrs = resolve(host, port, shared.limits.connect_timeout).await?;

    let mut allowed = Vec::new();
    let mut first_denial = None;
    for addr in addrs {
        let ip = addr.ip().to_canonical();
        let req = ConnectRequest {
            proto,
            host,
            port,
            addr: ip,
        };
        match shared.policy.decide_connect(who, &req) {
            d @ Decision::Allow { .. } => allowed.push((SocketAddr::new(ip, port), d)),
            d @ Decision::Deny { .. } => {
                if first_denial.is_none() {
                    first_denial = Some((ip, d));
                }
            }
        }
    }
    if allowed.is_empty() {
        let (ip, denial) = first_denial.unwrap_or((IpAddr::from([0, 0, 0, 0]), pre));
        ask.addr = Some(ip);
        audit::connect_decision(&ask, &denial);
        let message = match denial {
            Decision::Deny { reason } => reason.to_string(),
            Decision::Allow { .. } => "no address to dial".to_owned(),
        };
        return Err(Answer::err(ErrorCode::Denied, message));
    }
    Ok(Plan { proto, allowed })
}

async fn resolve(
    host: &Host,
    port: u16,
    timeout: std::time::Duration,
) -> Result<Vec<SocketAddr>, Answer> {
    let name = match host {
        Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(name) => name,
    };
    match tokio::time::timeout(timeout, tokio::net::lookup_host((name.as_str(), port))).await {
        Err(_) => Err(Answer::err(
            ErrorCode::Timeout,
            format!("resolving {name} timed out"),
        )),
        Ok(Err(e)) => Err(Answer::err(
            ErrorCode::Unreachable,
            format!("cannot resolve {name}: {e}"),
        )),
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(Answer::err(
                    ErrorCode::Unreachable,
                    format!("{name} has no address"),
                ))
            } else {
                Ok(addrs)
            }
        }
    }
}
