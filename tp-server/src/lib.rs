//! The tp server as a library: configuration, the TLS tunnel listener, policy-checked
//! `connect` tunnels, the development PKI and the quickstart. The `tp-server` binary
//! is a thin shell over [`cli`]; tests drive [`run`] directly on a listener they
//! bound themselves.
//!
//! What it does not do (yet): QUIC, reverse tunnels (`listen`/`accept`), UDP, the
//! shared-443 website/Signal demux, reload on file change (SIGHUP reloads). Those
//! hellos are answered `unsupported`.

pub mod cli;
pub mod config;
pub mod pki;
pub mod quickstart;
pub mod tls;

mod audit;
mod conn;
mod preauth;
mod server;
mod tunnel;

pub use config::Config;
pub use server::{RunError, run, run_with_reload};
