//! The policy: groups and rules, and the decisions made with them.
//!
//! Default deny; rules only allow. A connect request is checked twice: before DNS
//! ([`Policy::precheck_connect`], so a denied name is never resolved) and on the address
//! that will actually be dialed ([`Policy::decide_connect`]). Reverse tunnels are
//! decided in the `reverse` submodule. See `docs/policy.md`.

use std::net::IpAddr;

use tp_proto::{Host, Proto};

use crate::address::special_block;
use crate::cidr::Cidr;
use crate::decision::{Decision, DenyReason, MatchedBy};
use crate::error::PolicyError;
use crate::identity::Identity;
use crate::pattern::{IdPattern, ServicePattern, Target};

/// A parsed policy: named groups of identity patterns and allow rules, in file order.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub(crate) groups: Vec<Group>,
    pub(crate) rules: Vec<Rule>,
}

/// A named set of identity patterns.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) members: Vec<IdPattern>,
}

/// One `[[rule]]`: who may connect where, on which ports and protocols; which service
/// names and public ports they may listen on; which services and TLS routes they may
/// reach. A grant
/// the rule does not give is an empty list, which matches nothing.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) name: String,
    pub(crate) who: Vec<Who>,
    pub(crate) targets: Vec<Target>,
    /// Inclusive port ranges of `connect`, each within 1..=65535.
    pub(crate) ports: Vec<(u16, u16)>,
    pub(crate) protos: Vec<Proto>,
    /// Service names the rule lets `who` register.
    pub(crate) listen: Vec<ServicePattern>,
    /// Inclusive ranges of public ports the rule lets `who` open, each within 1..=65535.
    pub(crate) public_ports: Vec<(u16, u16)>,
    /// Service names the rule lets `who` connect to.
    pub(crate) services: Vec<ServicePattern>,
    /// Names of the server's TLS routes (`[[terminate]]` with a client certificate)
    /// the rule lets `who` use.
    pub(crate) routes: Vec<ServicePattern>,
}

/// One entry of a rule's `who`.
#[derive(Debug, Clone)]
pub(crate) enum Who {
    /// `"*"`: any verified identity.
    Anyone,
    /// An exact identity or a glob.
    Id(IdPattern),
    /// `"group:NAME"`, as an index into [`Policy::groups`].
    Group(usize),
}

/// A connect request after DNS resolution: what the client asked for, and the address
/// the server is about to dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRequest<'a> {
    /// The requested protocol.
    pub proto: Proto,
    /// The host as the client asked for it (canonical).
    pub host: &'a Host,
    /// The requested port.
    pub port: u16,
    /// The address that will be dialed: the host itself, or one of its DNS answers.
    pub addr: IpAddr,
}

impl Policy {
    /// Parses the policy TOML. `origin` (e.g. a file path) is used in error messages,
    /// which carry `origin:line:column` and say what is wrong.
    pub fn from_toml(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        crate::config::parse(text, origin)
    }

    /// A policy that denies everything.
    pub fn deny_all() -> Policy {
        Policy::default()
    }

    /// The pre-DNS check: could any rule allow `who` to reach this host, port and
    /// protocol at all? A denial here means the server does not even resolve the name.
    /// An allow names the first candidate rule; the final word is
    /// [`Policy::decide_connect`] on each resolved address.
    ///
    /// A name is a candidate for a rule that matches it with a name pattern, or that
    /// lists any network (the name may resolve into it). An address gets the full
    /// address check of [`Policy::decide_connect`] right away.
    pub fn precheck_connect(
        &self,
        who: &Identity,
        proto: Proto,
        host: &Host,
        port: u16,
    ) -> Decision {
        let name = match host {
            Host::Ip(ip) => {
                let req = ConnectRequest {
                    proto,
                    host,
                    port,
                    addr: *ip,
                };
                return self.decide_connect(who, &req);
            }
            Host::Name(name) => name,
        };
        let candidate = self.applicable(who, proto, port).find(|rule| {
            rule.targets
                .iter()
                .any(|t| t.matches_name(name) || matches!(t, Target::Net(_)))
        });
        match candidate {
            Some(rule) => Decision::Allow {
                rule: rule.name.clone(),
            },
            None => no_rule(who, proto, host, port, None),
        }
    }

    /// The final decision, on the address that will actually be dialed (`req.addr`,
    /// compared in canonical form).
    ///
    /// A rule allows if it matches the identity, protocol and port, its destination
    /// matches (a network contains the address, or a name pattern matches the requested
    /// name), and, when the address is in a special range, the rule lists a network that
    /// contains the address and lies inside that range. `0.0.0.0/0` therefore never
    /// reaches loopback, private or metadata addresses; `127.0.0.0/8` reaches loopback.
    pub fn decide_connect(&self, who: &Identity, req: &ConnectRequest<'_>) -> Decision {
        let addr = req.addr.to_canonical();
        let special = special_block(addr);
        let mut first_unnamed: Option<(&Rule, MatchedBy)> = None;
        for rule in self.applicable(who, req.proto, req.port) {
            let by_name = match req.host {
                Host::Name(name) => rule.targets.iter().any(|t| t.matches_name(name)),
                Host::Ip(_) => false,
            };
            let by_addr = rule.nets().any(|n| n.contains(addr));
            let matched = match (by_name, by_addr) {
                (true, _) => MatchedBy::Name,
                (false, true) => MatchedBy::Address,
                (false, false) => continue,
            };
            let names_range = match special {
                None => true,
                Some((_, block)) => rule
                    .nets()
                    .any(|n| n.contains(addr) && block.contains_net(n)),
            };
            if names_range {
                return Decision::Allow {
                    rule: rule.name.clone(),
                };
            }
            first_unnamed.get_or_insert((rule, matched));
        }
        match (first_unnamed, special) {
            (Some((rule, matched)), Some((range, _))) => Decision::Deny {
                reason: DenyReason::SpecialAddress {
                    addr,
                    range,
                    rule: rule.name.clone(),
                    matched,
                },
            },
            _ => no_rule(who, req.proto, req.host, req.port, Some(addr)),
        }
    }

    /// The groups `who` belongs to, in file order (for audit logs).
    pub fn groups_of(&self, who: &Identity) -> Vec<&str> {
        self.groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m.matches(who.as_str())))
            .map(|g| g.name.as_str())
            .collect()
    }

    /// How many rules the policy has.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Rules, in file order, that match the identity, protocol and port.
    fn applicable<'p>(
        &'p self,
        who: &'p Identity,
        proto: Proto,
        port: u16,
    ) -> impl Iterator<Item = &'p Rule> + 'p {
        self.rules.iter().filter(move |rule| {
            rule.protos.contains(&proto)
                && rule.ports.iter().any(|&(lo, hi)| (lo..=hi).contains(&port))
                && rule.who.iter().any(|w| self.who_matches(w, who))
        })
    }

    fn who_matches(&self, pattern: &Who, who: &Identity) -> bool {
        match pattern {
            Who::Anyone => true,
            Who::Id(p) => p.matches(who.as_str()),
            Who::Group(i) => self
                .groups
                .get(*i)
                .is_some_and(|g| g.members.iter().any(|m| m.matches(who.as_str()))),
        }
    }
}

impl Rule {
    fn nets(&self) -> impl Iterator<Item = &Cidr> {
        self.targets.iter().filter_map(|t| match t {
            Target::Net(n) => Some(n),
            _ => None,
        })
    }
}

fn no_rule(who: &Identity, proto: Proto, host: &Host, port: u16, addr: Option<IpAddr>) -> Decision {
    Decision::Deny {
        reason: DenyReason::NoRule {
            who: who.as_str().to_owned(),
            proto,
            host: host.clone(),
            port,
            addr,
        },
    }
}

mod reverse;
mod route;

#[cfg(test)]
mod tests;
