//! Identity and access policy for tp.
//!
//! This crate reads a peer's [`Identity`] from its verified leaf certificate, parses the
//! policy file into a [`Policy`], and answers five questions about an identity: may it
//! connect to this destination, register this service name, have the server open this
//! public port, connect to this registered service, use this TLS route of the server
//! ([`Policy::decide_route`])? Every answer is a [`Decision`] that
//! names the allowing rule or explains the denial, so audit logs and `tp-server policy
//! check` explain themselves.
//!
//! Destinations are checked twice: [`Policy::precheck_connect`] before DNS, so a denied
//! name is never resolved, and [`Policy::decide_connect`] on the address actually
//! dialed, where loopback, private, link-local, cloud metadata and other
//! [special ranges](special_range) are refused unless a rule names them with a network
//! inside the range. Reverse tunnels are decided by [`Policy::decide_listen_name`],
//! [`Policy::decide_listen_port`] and [`Policy::decide_service`]; service names and
//! public ports are not addresses, so no range check applies to them. `docs/policy.md`
//! is the specification.
//!
//! This crate performs no IO: it opens no files, touches no network, resolves no names
//! and reads no clock (time, if ever needed, is passed in). Certificate *verification*
//! is the TLS stack's job; this crate only reads names from a certificate already
//! verified. Decisions are pure functions of the policy and the request, and never
//! panic.
//!
//! ```
//! use policy::{ConnectRequest, Identity, IdentityKind, Policy};
//! use tp_proto::{Host, Proto};
//!
//! let policy = Policy::from_toml(
//!     r#"
//!     [groups]
//!     ops = ["spiffe://corp/ops/*"]
//!
//!     [[rule]]
//!     name = "ops-ssh"
//!     who = ["group:ops"]
//!     connect = ["*.internal", "10.0.0.0/8"]
//!     ports = [22]
//!     "#,
//!     "policy.toml",
//! )?;
//! let alice = Identity::new(IdentityKind::Uri, "spiffe://corp/ops/alice");
//! let host = Host::parse("db1.internal")?;
//!
//! // Before DNS: worth resolving?
//! let pre = policy.precheck_connect(&alice, Proto::Tcp, &host, 22);
//! assert_eq!(pre.to_string(), r#"allow (rule "ops-ssh")"#);
//!
//! // On each resolved address, before dialing it.
//! let req = ConnectRequest { proto: Proto::Tcp, host: &host, port: 22, addr: "10.0.0.5".parse()? };
//! assert!(policy.decide_connect(&alice, &req).is_allow());
//! let req = ConnectRequest { addr: "127.0.0.1".parse()?, ..req };
//! assert_eq!(
//!     policy.decide_connect(&alice, &req).to_string(),
//!     r#"deny: address 127.0.0.1 is loopback and no rule names it (rule "ops-ssh" matched the name)"#,
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod address;
mod cidr;
mod config;
mod decision;
mod error;
mod identity;
mod pattern;
mod rules;

pub use address::{SpecialRange, special_range};
pub use cidr::{Cidr, CidrError};
pub use decision::{Decision, DenyReason, MatchedBy};
pub use error::{Location, PolicyError, PolicyProblem};
pub use identity::{Identity, IdentityError, IdentityKind};
pub use pattern::{check_route_name, glob_matches};
pub use rules::{ConnectRequest, Policy};
