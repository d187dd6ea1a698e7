//! The `tp` client: opens tunnels through a tp server, authenticated by the
//! user's client certificate.
//!
//! - `tp HOST PORT` ([`stdio`]): one tunnel bridged to stdin/stdout, for ssh's
//!   `ProxyCommand`.
//! - `tp up HOST:PORT LOCALPORT` ([`up`], also installed as `tp-up`): a local
//!   listener, one tunnel per accepted connection; with `--udp` ([`up::udp`]),
//!   a local UDP socket, one UDP tunnel per source address.
//! - `tp expose LOCALPORT (--name NAME | --public PORT)` ([`expose`]): a local
//!   service made reachable through the server; a service runs end-to-end TLS
//!   with its callers ([`e2e`]), and `tp NAME PORT` reaches one.
//!
//! [`connect`] opens one tunnel over QUIC or TLS/TCP ([`transport`]; `auto`
//! races them), with TLS 1.3, ALPN `tp/1`, hello and answer; [`config`] merges
//! the config file, environment and flags; [`exit`] maps outcomes to exit
//! statuses. The wire format is `tp-proto`'s and the relay is `tp-net`'s.
//!
//! This crate does not install a tracing subscriber, read the process environment
//! or exit the process: `main.rs` does those.

pub mod addr;
pub mod cli;
pub mod config;
pub mod connect;
pub mod e2e;
pub mod exit;
pub mod expose;
mod quic_error;
pub mod stdio;
mod tls_error;
pub mod transport;
pub mod up;

pub use connect::{ConnectError, Connector, Link, Tunnel};

#[cfg(test)]
mod testutil;
