//! Counted slots per key: how many unauthenticated connections one source may have
//! in the handshake ([`HandshakeSlots`]), and how many tunnels one identity may have
//! open ([`TunnelSlots`]).
//!
//! Before its certificate is verified a connection is anonymous, and the handshake
//! deadline alone would let one host hold every connection slot by opening sockets
//! and going quiet. A source (an IPv4 address, or an IPv6 /64, which one host
//! usually owns whole) may have only so many connections in the handshake at a
//! time; the slot is given back when the handshake ends, either way. After it, the
//! identity is known and the per-identity tunnel count bounds what one leaked or
//! misbehaving certificate can hold, over TLS/TCP and QUIC together.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

/// Who counts as one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    V4(u32),
    V6Prefix64(u64),
}

impl Source {
    pub(crate) fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4.to_bits()),
            IpAddr::V6(v6) => Source::V6Prefix64((v6.to_bits() >> 64) as u64),
        }
    }
}

/// Handshake slots per source.
pub(crate) type HandshakeSlots = KeyedSlots<Source>;
/// One connection's handshake slot.
pub(crate) type HandshakeSlot = Slot<Source>;
/// Open tunnels per identity.
pub(crate) type TunnelSlots = KeyedSlots<String>;
/// One tunnel's place among its identity's [`TunnelSlots`].
pub(crate) type TunnelSlot = Slot<String>;

/// At most `max` slots per key, shared by every task that takes them.
#[derive(Debug)]
pub(crate) struct KeyedSlots<K> {
    max: usize,
    taken: Mutex<HashMap<K, usize>>,
}

/// One taken slot; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct Slot<K: Eq + Hash> {
    slots: Arc<KeyedSlots<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> KeyedSlots<K> {
    pub(crate) fn new(max: NonZeroUsize) -> Arc<KeyedSlots<K>> {
        Arc::new(KeyedSlots {
            max: max.get(),
            taken: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for `key`, or `None` if it already holds the maximum.
    pub(crate) fn try_take(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        let count = taken.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self.clone(),
            key,
        })
    }

    /// The most slots one key may hold.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl<K: Eq + Hash> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut taken = self
            .slots
            .taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = taken.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                taken.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn a_source_gets_at_most_max_slots_and_gets_them_back() {
        let slots = HandshakeSlots::new(NonZeroUsize::new(2).expect("nonzero"));
        let a = slots.try_take(Source::of(ip("192.0.2.1"))).expect("first");
        let b = slots.try_take(Source::of(ip("192.0.2.1"))).expect("second");
        assert!(
            slots.try_take(Source::of(ip("192.0.2.1"))).is_none(),
            "third refused"
        );
        assert!(
            slots.try_take(Source::of(ip("::ffff:192.0.2.1"))).is_none(),
            "a v4-mapped spelling is the same source"
        );
        let other = slots
            .try_take(Source::of(ip("192.0.2.2")))
            .expect("other source");
        drop(a);
        let c = slots
            .try_take(Source::of(ip("192.0.2.1")))
            .expect("a slot came back");
        drop((b, c, other));
        assert_eq!(slots.keys(), 0, "no entry is left behind");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source() {
        let slots = HandshakeSlots::new(NonZeroUsize::MIN);
        let _a = slots
            .try_take(Source::of(ip("2001:db8:1:2::1")))
            .expect("first");
        assert!(
            slots
                .try_take(Source::of(ip("2001:db8:1:2:ffff::9")))
                .is_none()
        );
        assert!(slots.try_take(Source::of(ip("2001:db8:1:3::1"))).is_some());
    }
}
