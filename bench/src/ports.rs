//! Listening ports for the systems under test. Peers need fixed ports in their
//! configs, so the harness hands them out from a range below the kernel's ephemeral
//! range (32768+), where no outgoing connection can be holding one.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};

use anyhow::bail;

const FIRST: u16 = 20_000;
const LAST: u16 = 32_000;

/// Hands out loopback ports that were free when asked for.
#[derive(Debug)]
pub(crate) struct Ports {
    next: AtomicU16,
}

impl Ports {
    pub(crate) fn new() -> Self {
        // Start at a different place on each run so a previous run's TIME_WAIT
        // sockets do not matter.
        let offset = (std::process::id() % 4_000) as u16;
        Self {
            next: AtomicU16::new(FIRST + offset),
        }
    }

    /// A free `127.0.0.1` address.
    pub(crate) fn take(&self) -> anyhow::Result<SocketAddr> {
        for _ in FIRST..=LAST {
            let mut port = self.next.fetch_add(1, Ordering::Relaxed);
            if !(FIRST..=LAST).contains(&port) {
                self.next.store(FIRST + 1, Ordering::Relaxed);
                port = FIRST;
            }
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            if TcpListener::bind(addr).is_ok() {
                return Ok(addr);
            }
        }
        bail!("no free port in {FIRST}..={LAST}")
    }
}
