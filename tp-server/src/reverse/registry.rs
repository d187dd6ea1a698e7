//! Who exposes what: registered service names and public ports, and the TLS/TCP
//! sessions announced to an exposing client and waiting for its `accept`.
//!
//! The registry outlives configuration reloads. A [`Registration`] is the
//! exposing side's handle: dropping it frees the name or port (if it was not
//! replaced meanwhile) and fails the sessions still waiting for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tp_proto::Incoming;

use crate::session::TunnelStream;

/// Connections waiting for one registration's control loop; more are refused.
pub(crate) const MAX_QUEUED: usize = 64;
/// TLS/TCP sessions one registration may have announced and not yet attached.
const MAX_PARKED: usize = 256;

/// What a registration is reached by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// A service name (end-to-end mode).
    Name(String),
    /// A public TCP port on the server.
    Port(u16),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Name(name) => write!(f, "service {name}"),
            Key::Port(port) => write!(f, "public port {port}"),
        }
    }
}

/// The exposing side's stream for one incoming connection.
pub(crate) struct Attached {
    pub(crate) stream: Box<dyn TunnelStream>,
    /// Bytes the exposing client sent behind its `accept`, for the caller.
    pub(crate) early: BytesMut,
    /// Held by whoever relays; dropped when the relay ends, which releases the
    /// task that owns the stream's connection (a TLS/TCP `accept`).
    pub(crate) done: Option<oneshot::Sender<()>>,
    /// A stream the server opened on a QUIC connection counts as one of its
    /// tasks until the relay ends, so the drain waits for it.
    pub(crate) _tracked: Option<TaskTrackerToken>,
}

/// An incoming connection offered to a registration's control loop.
pub(crate) struct Offer {
    pub(crate) incoming: Incoming,
    pub(crate) reply: oneshot::Sender<Attached>,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Taken {
    /// The identity holding it.
    pub(crate) owner: String,
}

/// Why an `accept` found no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unclaimable {
    /// No such id (never issued, already used, or its registration ended).
    Unknown,
    /// Issued, but its time ran out.
    Expired,
    /// Issued to another identity.
    OtherIdentity,
}

impl Unclaimable {
    /// For the audit line; the client always hears "unknown or expired session".
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Unclaimable::Unknown => "unknown session",
            Unclaimable::Expired => "expired session",
            Unclaimable::OtherIdentity => "session issued to another identity",
        }
    }
}

struct Entry {
    owner: String,
    generation: u64,
    offers: mpsc::Sender<Offer>,
    replaced: CancellationToken,
    /// A public port's listening socket, handed on to a re-registration.
    listener: Option<Arc<TcpListener>>,
}

struct Parked {
    owner: String,
    generation: u64,
    expires: Instant,
    reply: oneshot::Sender<Attached>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    parked: HashMap<String, Parked>,
    next_generation: u64,
}

/// Every registration of a server run.
#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// The exposing side's handle on its registration.
pub(crate) struct Registration {
    registry: Arc<Registry>,
    key: Key,
    generation: u64,
    pub(crate) offers: mpsc::Receiver<Offer>,
    sender: mpsc::Sender<Offer>,
    /// Cancelled when the same identity registers the same key again.
    pub(crate) replaced: CancellationToken,
    /// The public port's socket of the registration this one replaced: no new
    /// bind, so the port is never closed in between and cannot be lost.
    pub(crate) inherited: Option<Arc<TcpListener>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a
        // way that matters more than losing the registry: keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `key` for `owner`. The same owner's older registration of it is
    /// replaced (its control loop is told to end); another owner's is [`Taken`].
    pub(crate) fn register(self: &Arc<Self>, key: Key, owner: &str) -> Result<Registration, Taken> {
        let mut inner = self.lock();
        let mut inherited = None;
        if let Some(old) = inner.entries.get(&key) {
            if old.owner != owner {
                return Err(Taken {
                    owner: old.owner.clone(),
                });
            }
            old.replaced.cancel();
            inherited = old.listener.clone();
        }
        inner.next_generation += 1;
        let generation = inner.next_generation;
        let (offers, rx) = mpsc::channel(MAX_QUEUED);
        let replaced = CancellationToken::new();
        inner.entries.insert(
            key.clone(),
            Entry {
                owner: owner.to_owned(),
                generation,
                offers: offers.clone(),
                replaced: replaced.clone(),
                listener: inherited.clone(),
            },
        );
        Ok(Registration {
            registry: self.clone(),
            key,
            generation,
            offers: rx,
            sender: offers,
            replaced,
            inherited,
        })
    }

    /// The owner of `key` and the way to offer it a connection, if registered.
    pub(crate) fn lookup(&self, key: &Key) -> Option<(String, mpsc::Sender<Offer>)> {
        let inner = self.lock();
        inner
            .entries
            .get(key)
            .map(|e| (e.owner.clone(), e.offers.clone()))
    }

    /// Parks an announced TLS/TCP session until its owner claims it or `ttl`
    /// passes. `false` (and `reply` dropped) if the registration has too many.
    fn park(
        &self,
        session: &str,
        registration: &Registration,
        owner: &str,
        ttl: Duration,
        reply: oneshot::Sender<Attached>,
    ) -> bool {
        let now = Instant::now();
        let mut inner = self.lock();
        inner
            .parked
            .retain(|_, p| p.expires > now && !p.reply.is_closed());
        let mine = inner
            .parked
            .values()
            .filter(|p| p.generation == registration.generation)
            .count();
        if mine >= MAX_PARKED {
            return false;
        }
        inner.parked.insert(
            session.to_owned(),
            Parked {
                owner: owner.to_owned(),
                generation: registration.generation,
                expires: now + ttl,
                reply,
            },
        );
        true
    }

    /// Takes the parked session `session` for `who`. A session is single-use;
    /// another identity's attempt does not consume it.
    pub(crate) fn claim(
        &self,
        session: &str,
        who: &str,
    ) -> Result<oneshot::Sender<Attached>, Unclaimable> {
        let mut inner = self.lock();
        let parked = inner.parked.get(session).ok_or(Unclaimable::Unknown)?;
        if parked.owner != who {
            return Err(Unclaimable::OtherIdentity);
        }
        let parked = inner.parked.remove(session).ok_or(Unclaimable::Unknown)?;
        if parked.expires <= Instant::now() {
            return Err(Unclaimable::Expired);
        }
        Ok(parked.reply)
    }
}

impl Registration {
    /// What this registration is reached by.
    pub(crate) fn key(&self) -> &Key {
        &self.key
    }

    /// Records the public port's socket, for a registration that replaces this one.
    pub(crate) fn set_listener(&self, listener: Arc<TcpListener>) {
        let mut inner = self.registry.lock();
        if let Some(entry) = inner.entries.get_mut(&self.key)
            && entry.generation == self.generation
        {
            entry.listener = Some(listener);
        }
    }

    /// A way to offer this registration connections (its public listener's).
    pub(crate) fn sender(&self) -> mpsc::Sender<Offer> {
        self.sender.clone()
    }

    /// Parks an announced TLS/TCP session for this registration's owner.
    pub(crate) fn park(
        &self,
        session: &str,
        owner: &str,
        ttl: Duration,
        reply: oneshot::Sender<Attached>,
    ) -> bool {
        self.registry.park(session, self, owner, ttl, reply)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if inner
            .entries
            .get(&self.key)
            .is_some_and(|e| e.generation == self.generation)
        {
            inner.entries.remove(&self.key);
        }
        let generation = self.generation;
        inner.parked.retain(|_, p| p.generation != generation);
    }
}

/// A new session id: 128 random bits as 32 hex digits.
pub(crate) fn session_id() -> String {
    let mut bytes = [0u8; 16];
    // The process cannot run tunnels without a working random source (TLS needs
    // it for every handshake); failing here is as fatal as failing there.
    tp_net::tls::provider()
        .secure_random
        .fill(&mut bytes)
        .expect("the system random source works");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Key {
        Key::Name(n.into())
    }

    #[test]
    fn another_identity_cannot_take_a_name_and_the_owner_replaces_its_own() {
        let registry = Arc::new(Registry::default());
        let first = registry.register(name("laptop"), "alice").unwrap();
        assert_eq!(
            registry.register(name("laptop"), "bob").err(),
            Some(Taken {
                owner: "alice".into()
            })
        );
        let second = registry.register(name("laptop"), "alice").unwrap();
        assert!(first.replaced.is_cancelled());
        assert!(!second.replaced.is_cancelled());
        // The replaced registration going away does not free the new one.
        drop(first);
        assert_eq!(registry.lookup(&name("laptop")).unwrap().0, "alice");
        drop(second);
        assert!(registry.lookup(&name("laptop")).is_none());
        registry.register(name("laptop"), "bob").unwrap();
    }

    #[tokio::test]
    async fn a_re_registration_inherits_the_public_port_socket() {
        let registry = Arc::new(Registry::default());
        let first = registry.register(Key::Port(2222), "alice").unwrap();
        assert!(first.inherited.is_none());
        let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
        first.set_listener(listener.clone());
        let second = registry.register(Key::Port(2222), "alice").unwrap();
        let inherited = second.inherited.clone().expect("the socket is handed on");
        assert!(Arc::ptr_eq(&inherited, &listener));
        // The replaced registration going away leaves the socket with the new one.
        drop(first);
        let third = registry.register(Key::Port(2222), "alice").unwrap();
        assert!(third.inherited.is_some());
        drop((second, third));
        let fresh = registry.register(Key::Port(2222), "alice").unwrap();
        assert!(fresh.inherited.is_none(), "gone with the last registration");
    }

    #[test]
    fn names_and_ports_are_separate_keys() {
        let registry = Arc::new(Registry::default());
        let _a = registry.register(Key::Port(2222), "alice").unwrap();
        assert!(registry.register(Key::Port(2222), "bob").is_err());
        let _b = registry.register(Key::Port(2223), "bob").unwrap();
        let _c = registry.register(name("2222"), "bob").unwrap();
    }

    #[test]
    fn a_session_is_claimed_once_by_its_owner_only() {
        let registry = Arc::new(Registry::default());
        let reg = registry.register(name("laptop"), "alice").unwrap();
        let id = session_id();
        let (tx, _rx) = oneshot::channel();
        assert!(reg.park(&id, "alice", Duration::from_secs(10), tx));
        assert_eq!(
            registry.claim(&id, "bob").err(),
            Some(Unclaimable::OtherIdentity)
        );
        assert!(registry.claim(&id, "alice").is_ok());
        assert_eq!(
            registry.claim(&id, "alice").err(),
            Some(Unclaimable::Unknown)
        );
        assert_eq!(
            registry.claim("forged", "alice").err(),
            Some(Unclaimable::Unknown)
        );
    }

    #[test]
    fn an_expired_session_is_refused() {
        let registry = Arc::new(Registry::default());
        let reg = registry.register(name("laptop"), "alice").unwrap();
        let (tx, _rx) = oneshot::channel();
        assert!(reg.park("s1", "alice", Duration::ZERO, tx));
        assert_eq!(
            registry.claim("s1", "alice").err(),
            Some(Unclaimable::Expired)
        );
    }

    #[test]
    fn a_registration_ending_fails_its_waiting_sessions() {
        let registry = Arc::new(Registry::default());
        let reg = registry.register(name("laptop"), "alice").unwrap();
        let (tx, mut rx) = oneshot::channel();
        assert!(reg.park("s1", "alice", Duration::from_secs(10), tx));
        drop(reg);
        assert!(rx.try_recv().is_err());
        assert_eq!(
            registry.claim("s1", "alice").err(),
            Some(Unclaimable::Unknown)
        );
    }

    #[test]
    fn parked_sessions_are_bounded_per_registration() {
        let registry = Arc::new(Registry::default());
        let reg = registry.register(name("laptop"), "alice").unwrap();
        let mut keep = Vec::new();
        for i in 0..MAX_PARKED {
            let (tx, rx) = oneshot::channel();
            keep.push(rx);
            assert!(reg.park(&format!("s{i}"), "alice", Duration::from_secs(10), tx));
        }
        let (tx, _rx) = oneshot::channel();
        assert!(!reg.park("one-more", "alice", Duration::from_secs(10), tx));
    }

    #[test]
    fn session_ids_are_32_hex_digits_and_differ() {
        let a = session_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, session_id());
    }
}
