//! `listen`: policy, registration, then the control channel until it ends.
//!
//! The control loop hands each incoming connection to the exposing client: over
//! QUIC it opens a stream headed by the `incoming` event; over TLS/TCP it parks
//! a session and announces it, and the client's `accept` claims it
//! ([`super::accept`]). Both sides send `ping` after a quiet heartbeat interval
//! and answer each `ping` with a `pong`; three silent intervals end the channel,
//! and with it the registration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use policy::{Decision, Identity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tp_proto::{Answer, ErrorCode, Event, Listen, ListenKind};
use tracing::{Instrument, Span, debug, info, warn};

use super::public::{self, PublicConn, PublicSlots};
use super::registry::{Attached, Key, Offer, Registration};
use crate::audit;
use crate::server::Shared;
use crate::session::{Origin, TunnelStream, answer_ok, finish, write_flush};

/// A channel silent for this many heartbeat intervals is dead.
const DEAD_AFTER_INTERVALS: u32 = 3;
/// Pause after a failed public accept (out of file descriptors), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long the server waits to end a finished control channel cleanly.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Handles a `listen` hello on `stream`, which becomes the control channel.
/// `early` holds what the client sent behind its hello: control lines.
pub(crate) async fn serve<S: TunnelStream>(
    shared: &Shared,
    mut stream: S,
    who: &Identity,
    listen: Listen,
    early: BytesMut,
    origin: Origin,
) {
    let key = match listen.kind {
        ListenKind::Name(name) => Key::Name(name),
        ListenKind::Port(port) => Key::Port(port),
    };
    let decision = decide(&shared.policy, who, &key);
    audit::listen_decision(who, &key, &decision);
    if let Decision::Deny { reason } = &decision {
        let answer = Answer::err(ErrorCode::Denied, reason.to_string());
        return finish(&mut stream, &answer).await;
    }
    let registration = match shared.registry.register(key.clone(), who.as_str()) {
        Ok(registration) => registration,
        Err(taken) => {
            info!(owner = %taken.owner, "listen refused: {key} is held by another identity");
            let why = format!("{key} is exposed by another identity");
            return finish(&mut stream, &Answer::err(ErrorCode::Conflict, why)).await;
        }
    };
    let public = match (&key, registration.inherited.clone()) {
        (Key::Port(_), Some(listener)) => Some(listener),
        (Key::Port(port), None) => {
            let addr = SocketAddr::new(shared.reverse.public_address, *port);
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    let listener = Arc::new(listener);
                    registration.set_listener(listener.clone());
                    Some(listener)
                }
                Err(e) => {
                    info!(error = %e, "listen refused: cannot bind the public port");
                    let why = format!("cannot listen on public port {port}: {e}");
                    return finish(&mut stream, &Answer::err(ErrorCode::Busy, why)).await;
                }
            }
        }
        (Key::Name(_), _) => None,
    };
    if !answer_ok(&mut stream).await {
        return;
    }
    let via = if origin.quic.is_some() { "quic" } else { "tcp" };
    audit::registration(who, &key, "registered", via);
    let mut channel = Channel {
        shared,
        stream,
        who,
        origin: &origin,
        registration,
        heartbeat: shared.reverse.heartbeat,
        public_slots: PublicSlots::new(&shared.reverse),
    };
    let why = channel.run(public, early).await;
    audit::registration(who, &key, "unregistered", why);
    // The name or port is free; tell the client with a clean end.
    let _ = tokio::time::timeout(CLOSE_GRACE, channel.stream.shutdown()).await;
}

/// What the policy says about `who` registering `key`.
fn decide(policy: &policy::Policy, who: &Identity, key: &Key) -> Decision {
    match key {
        Key::Name(name) => policy.decide_listen_name(who, name),
        Key::Port(port) => policy.decide_listen_port(who, *port),
    }
}

struct Channel<'a, S> {
    shared: &'a Shared,
    stream: S,
    who: &'a Identity,
    origin: &'a Origin,
    registration: Registration,
    heartbeat: Duration,
    public_slots: PublicSlots,
}

impl<S: TunnelStream> Channel<'_, S> {
    /// Runs the control channel; returns why it ended. `buf` starts with what
    /// the client sent behind its hello.
    async fn run(&mut self, public: Option<Arc<TcpListener>>, mut buf: BytesMut) -> &'static str {
        let mut last_heard = Instant::now();
        let mut last_ping = Instant::now();
        let dead_after = self.heartbeat * DEAD_AFTER_INTERVALS;
        // Independent of traffic: the registration is checked against the
        // current certificate verifier and policy once per interval.
        let mut recheck = tokio::time::interval(self.heartbeat);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recheck.reset();
        let ctx = &self.origin.ctx;
        if let Err(why) = self.read_events(&mut buf).await {
            return why;
        }
        loop {
            tokio::select! {
                biased;
                () = ctx.force.cancelled() => return "server stopped",
                () = ctx.draining.cancelled() => return "server shutting down",
                () = self.registration.replaced.cancelled() => return "replaced by a newer registration",
                // Before the offers: a flood of connections must not starve
                // the client's pings.
                read = self.stream.read_buf(&mut buf) => match read {
                    Ok(0) => return "closed by the client",
                    Err(e) => {
                        debug!(error = %e, "control channel failed");
                        return "control channel failed";
                    }
                    Ok(_) => {
                        last_heard = Instant::now();
                        if let Err(why) = self.read_events(&mut buf).await {
                            return why;
                        }
                    }
                },
                offer = self.registration.offers.recv() => {
                    // The registration holds a sender itself: never closed here.
                    let Some(offer) = offer else { return "registration closed" };
                    if let Err(why) = self.still_allowed() {
                        return why;
                    }
                    if let Err(why) = self.hand_over(offer).await {
                        return why;
                    }
                }
                accepted = accept(public.as_deref()) => match accepted {
                    Ok((tcp, peer)) => self.spawn_public(tcp, peer),
                    Err(e) => {
                        debug!(error = %e, "public accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                _ = recheck.tick() => {
                    if let Err(why) = self.still_allowed() {
                        return why;
                    }
                }
                // Heard nothing for an interval: ask (at most once an interval).
                () = tokio::time::sleep_until(last_heard.max(last_ping) + self.heartbeat) => {
                    if let Err(why) = self.send(&Event::Ping).await {
                        return why;
                    }
                    last_ping = Instant::now();
                }
                () = tokio::time::sleep_until(last_heard + dead_after) => {
                    info!(silent = ?dead_after, "control channel dead: no heartbeat");
                    return "no heartbeat";
                }
            }
        }
    }

    /// Handles the complete lines in `buf`: a `ping` gets one `pong`.
    async fn read_events(&mut self, buf: &mut BytesMut) -> Result<(), &'static str> {
        let mut pinged = false;
        loop {
            match tp_proto::decode_event(buf) {
                Ok(Some(Event::Ping)) => pinged = true,
                Ok(Some(Event::Pong)) => {}
                Ok(Some(other)) => debug!(event = ?other, "control event ignored"),
                Ok(None) => break,
                Err(e) => {
                    info!(error = %e, "bad control line");
                    return Err("bad control line");
                }
            }
        }
        if pinged {
            self.send(&Event::Pong).await?;
        }
        Ok(())
    }

    /// Writes one event, bounded by a heartbeat interval.
    async fn send(&mut self, event: &Event) -> Result<(), &'static str> {
        let mut line = Vec::with_capacity(256);
        tp_proto::encode_event(event, &mut line);
        match tokio::time::timeout(self.heartbeat, write_flush(&mut self.stream, &line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                debug!(error = %e, "control channel failed");
                Err("control channel failed")
            }
            Err(_) => Err("control channel stalled"),
        }
    }

    /// Gives the exposing client an incoming connection: a new QUIC stream, or a
    /// parked session announced on the channel.
    async fn hand_over(&mut self, offer: Offer) -> Result<(), &'static str> {
        let Offer { incoming, reply } = offer;
        if let Some(path) = &self.origin.quic {
            let timeout = self.shared.limits.connect_timeout;
            let tracked = self.origin.streams.as_ref().map(|t| t.token());
            let head = Event::Incoming(incoming);
            let task = open_stream(path.conn.clone(), head, reply, timeout, tracked);
            tokio::spawn(task.in_current_span());
            return Ok(());
        }
        let ttl = self.shared.reverse.session_timeout;
        if !self
            .registration
            .park(&incoming.session, self.who.as_str(), ttl, reply)
        {
            info!("incoming connection refused: too many sessions await their accept");
            return Ok(());
        }
        self.send(&Event::Incoming(incoming)).await
    }

    /// Whether the registration is still allowed under the current
    /// configuration: the client's certificate still verifies (a registration
    /// often outlives a short-lived certificate), and the policy still grants
    /// the name or port (a reload may have taken it away).
    fn still_allowed(&self) -> Result<(), &'static str> {
        let shared = self.origin.ctx.current();
        if let Err(e) = shared.reverify(&self.origin.chain) {
            info!("registration ended: the client certificate is no longer valid: {e}");
            return Err("client certificate no longer valid");
        }
        let key = self.registration.key();
        let decision = decide(&shared.policy, self.who, key);
        if let Decision::Deny { reason } = &decision {
            audit::listen_decision(self.who, key, &decision);
            info!("registration ended: the policy no longer allows it: {reason}");
            return Err("policy no longer allows it");
        }
        Ok(())
    }

    fn spawn_public(&self, mut tcp: tokio::net::TcpStream, peer: SocketAddr) {
        let Ok(to) = tcp.local_addr() else { return };
        let Some(slots) = self.public_slots.try_take(peer) else {
            debug!(peer = %peer, "public connection refused: at the registration's connection limits");
            tcp.abort();
            return;
        };
        let key = self.registration.key().clone();
        let owner = self.who.to_string();
        let offers = self.registration.sender();
        let ctx = &self.origin.ctx;
        let shared = ctx.current();
        let force = ctx.force.clone();
        // Served on the least busy worker, as any TCP connection, under the
        // control channel's span: its connection, listen address and identity.
        let serve = move |tcp| async move {
            let conn = PublicConn {
                tcp,
                peer,
                to,
                key,
                owner,
                offers,
                slots,
            };
            tokio::select! {
                () = public::serve(shared, conn) => {}
                () = force.cancelled() => debug!("public connection closed by shutdown deadline"),
            }
        };
        if let Err(e) = (ctx.workers).spawn(tcp, &ctx.tracker, Span::current(), serve) {
            warn!(peer = %peer, error = %e, "public connection dropped: it could not be handed to a worker");
        }
    }
}

/// The next connection on the public listener, or never without one.
async fn accept(
    public: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match public {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Opens a server-initiated QUIC stream headed by `head` and gives it to the
/// waiting caller; on failure the caller hears that the exposing client went away.
async fn open_stream(
    conn: quinn::Connection,
    head: Event,
    reply: tokio::sync::oneshot::Sender<Attached>,
    timeout: Duration,
    tracked: Option<TaskTrackerToken>,
) {
    let open = async move {
        let (mut send, recv) = conn.open_bi().await.map_err(std::io::Error::from)?;
        let mut line = Vec::with_capacity(256);
        tp_proto::encode_event(&head, &mut line);
        send.write_all(&line).await.map_err(std::io::Error::from)?;
        Ok::<_, std::io::Error>(tp_net::quic::stream(send, recv))
    };
    match tokio::time::timeout(timeout, open).await {
        Ok(Ok(stream)) => {
            let attached = Attached {
                stream: Box::new(stream),
                early: BytesMut::new(),
                done: None,
                _tracked: tracked,
            };
            if let Err(mut attached) = reply.send(attached) {
                attached.stream.abort();
            }
        }
        Ok(Err(e)) => debug!(error = %e, "could not open a stream to the exposing client"),
        Err(_) => debug!("the exposing client granted no stream in time"),
    }
}
