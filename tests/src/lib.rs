//! The end-to-end test harness of tp: the real server in-process on `127.0.0.1:0`
//! ([`TestServer`]), the real `tp` and `tp-server` binaries as child processes
//! ([`bins`]), a real OpenSSH sshd ([`Sshd`]), a test PKI minted once per process
//! ([`pki()`]), a raw client over TLS/TCP or QUIC for protocol tests ([`client`],
//! [`quic`]), a raw exposing client for reverse tunnels ([`reverse`]), local TCP
//! targets ([`target`]), a relay that trickles a client's bytes ([`trickle`]), one
//! that splits a ClientHello into many records ([`fragment`]) and per-server log
//! capture ([`logs`]).
//!
//! It does not build the binaries: run `cargo build --workspace --bins` first (the
//! harness says so when one is missing). It does not install OpenSSH:
//! `scripts/test.sh` does. Every wait has a deadline, so a hang fails with a message
//! naming what was awaited.

pub mod bins;
pub mod client;
pub mod data;
pub mod dns;
pub mod fragment;
pub mod logs;
pub mod nginx;
pub mod pki;
pub mod process;
pub mod quic;
pub mod reverse;
pub mod server;
pub mod signal;
pub mod sshd;
pub mod target;
pub mod trickle;
pub mod udp;

use std::future::Future;
use std::time::Duration;

pub use client::Transport;
pub use pki::{TestPki, pki};
pub use server::{TestServer, TestServerBuilder};
pub use sshd::Sshd;

/// How long [`assert_eventually!`] and the log helpers wait.
pub const EVENTUALLY: Duration = Duration::from_secs(10);

/// Awaits `fut` for at most `limit`; panics naming `what` if it takes longer.
pub async fn within<F: Future>(what: &str, limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls a condition every 20 ms until it holds, for at most [`EVENTUALLY`];
/// panics with the message otherwise. Use inside async tests instead of sleeps.
///
/// ```ignore
/// assert_eventually!(server.logs().iter().any(|l| l.contains("closed")), "no close line");
/// ```
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr $(,)?) => {
        $crate::assert_eventually!($cond, "{}", stringify!($cond))
    };
    ($cond:expr, $($msg:tt)+) => {{
        let deadline = ::tokio::time::Instant::now() + $crate::EVENTUALLY;
        loop {
            if $cond {
                break;
            }
            if ::tokio::time::Instant::now() >= deadline {
                panic!(
                    "still false after {:?}: {}",
                    $crate::EVENTUALLY,
                    format!($($msg)+)
                );
            }
            ::tokio::time::sleep(::std::time::Duration::from_millis(20)).await;
        }
    }};
}

/// Runs each named `async fn NAME(transport: Transport)` of the calling module as
/// two tests, `tcp::NAME` and `quic::NAME`: one test body, both transports.
#[macro_export]
macro_rules! over_both_transports {
    ($($name:ident),+ $(,)?) => {
        mod tcp {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Transport::Tcp).await
                }
            )+
        }
        mod quic {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Transport::Quic).await
                }
            )+
        }
    };
}
