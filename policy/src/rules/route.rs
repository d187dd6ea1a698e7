//! The decision for the server's TLS routes: may an identity, verified by a client
//! certificate, use the `[[terminate]]` route of this name?
//!
//! Route names are not addresses: the first rule that matches the identity and lists
//! the name (or a glob matching it) in `routes` allows.

use crate::decision::{Decision, DenyReason};
use crate::identity::Identity;

use super::Policy;
use super::reverse::any_matches;

impl Policy {
    /// May `who` use the server's TLS route `name`? Allowed by the first rule, in
    /// file order, whose `who` matches and one of whose `routes` patterns matches
    /// `name`. A name that is not 1 to 63 characters of `[a-z0-9_-]` is never
    /// allowed.
    pub fn decide_route(&self, who: &Identity, name: &str) -> Decision {
        self.first_allowing(
            who,
            |rule| any_matches(&rule.routes, name),
            || DenyReason::NoRouteRule {
                who: who.as_str().to_owned(),
                name: name.to_owned(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::identity::{Identity, IdentityKind};
    use crate::rules::Policy;

    const ROUTES: &str = r#"
[groups]
ops = ["*@ops.example"]

[[rule]]
name = "dns"
who = ["group:ops", "alice@corp.example"]
routes = ["dot"]

[[rule]]
name = "caches"
who = ["spiffe://corp/app/*"]
routes = ["redis-*"]
services = ["db"]
"#;

    fn id(kind: IdentityKind, s: &str) -> Identity {
        Identity::new(kind, s)
    }

    #[test]
    fn the_first_rule_listing_the_route_for_the_identity_allows() {
        let p = Policy::from_toml(ROUTES, "p").unwrap();
        let carol = id(IdentityKind::Email, "carol@ops.example");
        let alice = id(IdentityKind::Email, "alice@corp.example");
        let app = id(IdentityKind::Uri, "spiffe://corp/app/web");
        assert_eq!(p.decide_route(&carol, "dot").rule(), Some("dns"));
        assert_eq!(p.decide_route(&alice, "dot").rule(), Some("dns"));
        assert_eq!(p.decide_route(&app, "redis-cache").rule(), Some("caches"));
        assert_eq!(
            p.decide_route(&app, "dot").to_string(),
            "deny: no rule allows spiffe://corp/app/web to use route dot"
        );
        assert!(!p.decide_route(&alice, "redis-cache").is_allow());
        // A service grant is not a route grant, nor the other way round.
        assert!(!p.decide_route(&app, "db").is_allow());
        assert!(!p.decide_service(&carol, "dot").is_allow());
        // Names the syntax refuses match nothing.
        assert!(!p.decide_route(&app, "redis-A").is_allow());
        assert!(!Policy::deny_all().decide_route(&alice, "dot").is_allow());
    }
}
