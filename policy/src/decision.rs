//! The outcome of a policy check, with the rule or the reason that decided it.
//!
//! `Display` texts are written for people: the server sends a denial's text to the
//! client and writes it to the audit log, and `tp-server policy check` prints it. They
//! name the request and at most one rule, never the rest of the policy.

use std::fmt;
use std::net::IpAddr;

use tp_proto::{Host, Proto};

use crate::address::SpecialRange;

/// Allow or deny, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by the named rule (the first allowing rule in file order).
    Allow {
        /// The allowing rule's `name`.
        rule: String,
    },
    /// Denied; the reason says what did not match.
    Deny {
        /// Why.
        reason: DenyReason,
    },
}

impl Decision {
    /// Whether this is an [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The allowing rule's name, if allowed.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Decision::Allow { rule } => Some(rule),
            Decision::Deny { .. } => None,
        }
    }
}

impl fmt::Display for Decision {
    /// `allow (rule "ops-ssh")` or `deny: <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow { rule } => write!(f, "allow (rule {rule:?})"),
            Decision::Deny { reason } => write!(f, "deny: {reason}"),
        }
    }
}

/// How a rule matched the destination of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchedBy {
    /// A host name pattern of the rule matched the requested name.
    Name,
    /// A network of the rule contains the address.
    Address,
}

/// Why a request was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// No rule allows this identity this protocol, destination and port. The policy is
    /// default-deny, so this is also the answer of [`crate::Policy::deny_all`].
    NoRule {
        /// The requesting identity's value.
        who: String,
        /// The requested protocol.
        proto: Proto,
        /// The requested host.
        host: Host,
        /// The requested port.
        port: u16,
        /// The address that would have been dialed, when the check was on one that
        /// differs from `host`.
        addr: Option<IpAddr>,
    },
    /// A rule matched the request, but the address is in a special (non-public) range
    /// and no matching rule names that range with a network inside it.
    SpecialAddress {
        /// The address (canonical) that would have been dialed.
        addr: IpAddr,
        /// Its special range.
        range: SpecialRange,
        /// The first rule, in file order, that matched everything but the address.
        rule: String,
        /// How that rule matched the destination.
        matched: MatchedBy,
    },
    /// No rule's `listen` lets this identity register this service name.
    NoListenNameRule {
        /// The requesting identity's value.
        who: String,
        /// The requested service name.
        name: String,
    },
    /// No rule's `public_ports` lets this identity have this port opened.
    NoListenPortRule {
        /// The requesting identity's value.
        who: String,
        /// The requested public port.
        port: u16,
    },
    /// No rule's `services` lets this identity connect to this service.
    NoServiceRule {
        /// The requesting identity's value.
        who: String,
        /// The requested service name.
        name: String,
    },
    /// No rule's `routes` lets this identity use this TLS route of the server.
    NoRouteRule {
        /// The requesting identity's value.
        who: String,
        /// The route's name.
        name: String,
    },
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NoRule {
                who,
                proto,
                host,
                port,
                addr,
            } => {
                write!(f, "no rule allows {who} to connect to {proto} ")?;
                match host {
                    Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{port}")?,
                    _ => write!(f, "{host}:{port}")?,
                }
                match addr {
                    Some(a) if host.ip() != Some(*a) => write!(f, " (address {a})"),
                    _ => Ok(()),
                }
            }
            DenyReason::SpecialAddress {
                addr,
                range,
                rule,
                matched,
            } => {
                let what = match matched {
                    MatchedBy::Name => "name",
                    MatchedBy::Address => "address",
                };
                write!(
                    f,
                    "address {addr} is {range} and no rule names it (rule {rule:?} matched the {what})"
                )
            }
            // Names reaching a decision passed the codec, but the decision does not
            // rely on it: anything unusual is escaped before it reaches a log line.
            DenyReason::NoListenNameRule { who, name } => write!(
                f,
                "no rule allows {who} to listen on service {}",
                name.escape_debug()
            ),
            DenyReason::NoListenPortRule { who, port } => {
                write!(f, "no rule allows {who} to listen on public port {port}")
            }
            DenyReason::NoServiceRule { who, name } => write!(
                f,
                "no rule allows {who} to connect to service {}",
                name.escape_debug()
            ),
            DenyReason::NoRouteRule { who, name } => write!(
                f,
                "no rule allows {who} to use route {}",
                name.escape_debug()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_texts() {
        assert_eq!(
            Decision::Allow {
                rule: "ops-ssh".into()
            }
            .to_string(),
            r#"allow (rule "ops-ssh")"#
        );
        let special = Decision::Deny {
            reason: DenyReason::SpecialAddress {
                addr: "127.0.0.1".parse().unwrap(),
                range: SpecialRange::Loopback,
                rule: "web".into(),
                matched: MatchedBy::Name,
            },
        };
        assert_eq!(
            special.to_string(),
            r#"deny: address 127.0.0.1 is loopback and no rule names it (rule "web" matched the name)"#
        );
        let no_rule = |host: &str, addr: Option<&str>| DenyReason::NoRule {
            who: "alice@corp".into(),
            proto: Proto::Tcp,
            host: Host::parse(host).unwrap(),
            port: 22,
            addr: addr.map(|a| a.parse().unwrap()),
        };
        assert_eq!(
            no_rule("db9.internal", None).to_string(),
            "no rule allows alice@corp to connect to tcp db9.internal:22"
        );
        assert_eq!(
            no_rule("db9.internal", Some("10.0.0.9")).to_string(),
            "no rule allows alice@corp to connect to tcp db9.internal:22 (address 10.0.0.9)"
        );
        assert_eq!(
            no_rule("::1", Some("::1")).to_string(),
            "no rule allows alice@corp to connect to tcp [::1]:22"
        );
        assert!(!special.is_allow());
        assert_eq!(special.rule(), None);

        let listen = DenyReason::NoListenNameRule {
            who: "bob@corp".into(),
            name: "alice-laptop".into(),
        };
        assert_eq!(
            listen.to_string(),
            "no rule allows bob@corp to listen on service alice-laptop"
        );
        let port = DenyReason::NoListenPortRule {
            who: "bob@corp".into(),
            port: 2222,
        };
        assert_eq!(
            port.to_string(),
            "no rule allows bob@corp to listen on public port 2222"
        );
        let service = DenyReason::NoServiceRule {
            who: "bob@corp".into(),
            name: "alice-laptop".into(),
        };
        assert_eq!(
            service.to_string(),
            "no rule allows bob@corp to connect to service alice-laptop"
        );
        let odd = DenyReason::NoServiceRule {
            who: "bob@corp".into(),
            name: "a\nb\u{1b}".into(),
        };
        assert_eq!(
            odd.to_string(),
            r"no rule allows bob@corp to connect to service a\nb\u{1b}"
        );
    }
}
