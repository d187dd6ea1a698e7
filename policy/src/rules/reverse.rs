//! The decisions for reverse tunnels: which service names and public ports an identity
//! may listen on, and which services it may connect to.
//!
//! Services and public ports are not addresses, so none of the special-range checks of
//! connect apply: the first rule that matches the identity and lists the name or port
//! allows.

use crate::decision::{Decision, DenyReason};
use crate::identity::Identity;
use crate::pattern::ServicePattern;

use super::{Policy, Rule};

impl Policy {
    /// May `who` register the service name `name` (`{"op":"listen","name":...}`)?
    /// Allowed by the first rule, in file order, whose `who` matches and one of whose
    /// `listen` patterns matches `name`. A name that is not 1 to 63 characters of
    /// `[a-z0-9_-]` is never allowed.
    pub fn decide_listen_name(&self, who: &Identity, name: &str) -> Decision {
        self.first_allowing(
            who,
            |rule| any_matches(&rule.listen, name),
            || DenyReason::NoListenNameRule {
                who: who.as_str().to_owned(),
                name: name.to_owned(),
            },
        )
    }

    /// May `who` have the server open the public TCP port `port`
    /// (`{"op":"listen","port":...}`)? Allowed by the first rule, in file order, whose
    /// `who` matches and one of whose `public_ports` ranges contains `port`. Port 0 is
    /// never allowed.
    pub fn decide_listen_port(&self, who: &Identity, port: u16) -> Decision {
        self.first_allowing(
            who,
            |rule| {
                port != 0
                    && rule
                        .public_ports
                        .iter()
                        .any(|&(lo, hi)| (lo..=hi).contains(&port))
            },
            || DenyReason::NoListenPortRule {
                who: who.as_str().to_owned(),
                port,
            },
        )
    }

    /// May `who` connect to the registered service `name`
    /// (`{"op":"connect","service":...}`)? Allowed by the first rule, in file order,
    /// whose `who` matches and one of whose `services` patterns matches `name`. A name
    /// that is not 1 to 63 characters of `[a-z0-9_-]` is never allowed.
    pub fn decide_service(&self, who: &Identity, name: &str) -> Decision {
        self.first_allowing(
            who,
            |rule| any_matches(&rule.services, name),
            || DenyReason::NoServiceRule {
                who: who.as_str().to_owned(),
                name: name.to_owned(),
            },
        )
    }

    /// Allowed by the first rule, in file order, that `grants` the request and whose
    /// `who` matches; otherwise denied for `reason`.
    pub(super) fn first_allowing(
        &self,
        who: &Identity,
        grants: impl Fn(&Rule) -> bool,
        reason: impl FnOnce() -> DenyReason,
    ) -> Decision {
        let allowing = self
            .rules
            .iter()
            .find(|rule| grants(rule) && rule.who.iter().any(|w| self.who_matches(w, who)));
        match allowing {
            Some(rule) => Decision::Allow {
                rule: rule.name.clone(),
            },
            None => Decision::Deny { reason: reason() },
        }
    }
}

pub(super) fn any_matches(patterns: &[ServicePattern], name: &str) -> bool {
    patterns.iter().any(|p| p.matches(name))
}

#[cfg(test)]
mod tests;
