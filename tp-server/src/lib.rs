//! The tp server as a library: configuration, the TLS tunnel listener, policy-checked
//! `connect` tunnels, the development PKI and the quickstart. The `tp-server` binary
//! is a thin shell over [`cli`]; tests drive [`run`] directly on a listener they
//! bound themselves.
//!
//! Tunnels arrive over TLS/TCP ([`conn`]) or as QUIC streams on the same port over
//! UDP ([`quic`]); both hand an authenticated byte stream to [`session`].
//!
//! Reverse tunnels (`listen`, `accept`, `connect` to a service) live in
//! [`reverse`].
//!
//! Clients whose ClientHello does not offer ALPN `tp/1` get the website
//! ([`website`]).
//!
//! A ClientHello whose SNI names a [`passthrough`] route is relayed untouched;
//! one naming a [`terminate`] route is decrypted and relayed to a plain TCP
//! service, as is every connection to such a route's own listeners; a route may
//! require a client certificate whose identity the policy grants it.
//!
//! Without `[tls] client_ca` no client certificate is trusted ([`no_client_ca`]):
//! the server is then a website, Signal relay or set of routes only.
//!
//! On [`stealth`] names tunnels hide behind the website: no ALPN `tp/1`, a
//! verified certificate and a tp hello after the handshake.
//!
//! What it does not do (yet): reload on file change (SIGHUP reloads).

pub mod cli;
pub mod config;
pub mod passthrough;
pub mod pki;
pub mod quickstart;
pub mod stealth;
pub mod terminate;
pub mod tls;
pub mod website;

mod audit;
mod conn;
mod hello;
mod listeners;
mod no_client_ca;
mod quic;
mod reverse;
mod server;
mod session;
mod slots;
mod tunnel;
mod workers;

pub use config::Config;
pub use listeners::Listeners;
pub use server::{RunError, run, run_with_reload};
