//! TLS/TCP sessions: the id announced in an `incoming` event is claimed once, by
//! the exposing identity, in time; anything else is `denied` with the same
//! message. Over QUIC there is nothing to claim: `accept` is a bad request.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tp_proto::{Event, Incoming};
use tp_tests::client::{Reply, connect_as, connect_as_over, send_hello};
use tp_tests::reverse::{Call, Exposer, accept_as, accept_hello, call};
use tp_tests::{TestServer, Transport, pki, within};

use super::{LAPTOP, policy, start};

const UNCLAIMABLE: &str = "unknown or expired session";

fn assert_unclaimable(what: &str, reply: &Reply) {
    assert_eq!(reply.code(), "denied", "{what}: {reply:?}");
    assert_eq!(reply.message(), UNCLAIMABLE, "{what}: {reply:?}");
}

/// bob calls alice's service (in a task: his answer waits for her); returns the
/// call and the `incoming` event on her control channel.
async fn bob_calls(server: &TestServer, alice: &mut Exposer) -> (JoinHandle<Call>, Incoming) {
    let addr = server.addr();
    let bob = tokio::spawn(async move { call(Transport::Tcp, addr, &pki().bob, LAPTOP).await });
    loop {
        match alice.next_event().await {
            Some(Event::Incoming(incoming)) => return (bob, incoming),
            Some(_) => {}
            None => panic!("alice's control channel closed"),
        }
    }
}

#[tokio::test]
async fn a_forged_session_is_denied() {
    let server = start().await;
    let _alice = Exposer::expose(Transport::Tcp, server.addr(), &pki().alice, LAPTOP).await;
    let (reply, _) = accept_as(
        server.addr(),
        &pki().alice,
        "0123456789abcdef0123456789abcdef",
    )
    .await;
    assert_unclaimable("a forged id", &reply);
    server
        .expect_log(&["deny accept: unknown session", "alice@test"])
        .await;
}

#[tokio::test]
async fn another_identitys_session_is_denied_and_stays_the_owners() {
    let server = start().await;
    let mut alice = Exposer::expose(Transport::Tcp, server.addr(), &pki().alice, LAPTOP).await;
    let (bob, incoming) = bob_calls(&server, &mut alice).await;

    let (reply, _) = accept_as(server.addr(), &pki().bob, &incoming.session).await;
    assert_unclaimable("bob claiming alice's session", &reply);
    server
        .expect_log(&[
            "deny accept: session issued to another identity",
            "bob@test",
        ])
        .await;

    // The attempt did not consume it: alice claims it and the caller is through.
    let (reply, mut exposed) = alice.accept(&incoming.session).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");
    let mut bob = within("bob's answer", tp_tests::EVENTUALLY, bob)
        .await
        .expect("bob's task");
    assert_eq!(bob.reply.code(), "ok", "{bob:?}");
    exposed.write_all(b"hello bob").await.expect("write");
    exposed.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    within(
        "bytes from alice",
        tp_tests::EVENTUALLY,
        bob.tunnel.read_to_end(&mut got),
    )
    .await
    .expect("read");
    assert_eq!(got, b"hello bob");
}

#[tokio::test]
async fn a_used_session_is_denied() {
    let server = start().await;
    let mut alice = Exposer::expose(Transport::Tcp, server.addr(), &pki().alice, LAPTOP).await;
    let (bob, incoming) = bob_calls(&server, &mut alice).await;
    let (reply, _first) = alice.accept(&incoming.session).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");
    let bob = within("bob's answer", tp_tests::EVENTUALLY, bob)
        .await
        .expect("bob's task");
    assert_eq!(bob.reply.code(), "ok", "{bob:?}");

    let (reply, _) = alice.accept(&incoming.session).await;
    assert_unclaimable("the same id again", &reply);
    server
        .expect_log(&["deny accept: unknown session", "alice@test"])
        .await;
}

#[tokio::test]
async fn an_expired_session_is_denied() {
    let server = TestServer::builder()
        .policy(&policy("2222"))
        .section("reverse", "session_timeout", "\"1s\"")
        .start()
        .await;
    let mut alice = Exposer::expose(Transport::Tcp, server.addr(), &pki().alice, LAPTOP).await;
    let (bob, incoming) = bob_calls(&server, &mut alice).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let (reply, _) = alice.accept(&incoming.session).await;
    assert_unclaimable("an id past session_timeout", &reply);
    server
        .expect_log(&["deny accept: expired session", "alice@test"])
        .await;
    let bob = within("bob's answer", tp_tests::EVENTUALLY, bob)
        .await
        .expect("bob's task");
    assert_ne!(bob.reply.code(), "ok", "{bob:?}");
}

/// The exposing client may send payload right behind its `accept`, like any
/// client behind its hello: the caller gets it first.
#[tokio::test]
async fn payload_behind_the_accept_reaches_the_caller_first() {
    let server = start().await;
    let mut alice = Exposer::expose(Transport::Tcp, server.addr(), &pki().alice, LAPTOP).await;
    let (bob, incoming) = bob_calls(&server, &mut alice).await;
    let mut exposed = connect_as(server.addr(), &pki().alice).await;
    let mut hello = accept_hello(&incoming.session);
    hello.extend_from_slice(b"behind the accept|");
    let reply = send_hello(&mut exposed, &hello).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");
    let mut bob = within("bob's answer", tp_tests::EVENTUALLY, bob)
        .await
        .expect("bob's task");
    assert_eq!(bob.reply.code(), "ok", "{bob:?}");
    exposed.write_all(b"after the answer").await.expect("write");
    exposed.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    within(
        "alice's bytes",
        tp_tests::EVENTUALLY,
        bob.tunnel.read_to_end(&mut got),
    )
    .await
    .expect("read");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "behind the accept|after the answer"
    );
}

/// The exposer never claims the session: the caller hears `timeout` after
/// `connect_timeout` (2 s in the test server).
#[tokio::test]
async fn an_unclaimed_session_times_the_caller_out() {
    let server = start().await;
    let mut alice = Exposer::expose(Transport::Tcp, server.addr(), &pki().alice, LAPTOP).await;
    let (bob, _incoming) = bob_calls(&server, &mut alice).await;
    let bob = within("bob's answer", tp_tests::EVENTUALLY, bob)
        .await
        .expect("bob's task");
    assert_eq!(bob.reply.code(), "timeout", "{bob:?}");
}

/// The data connection of an `accept` is the caller's tunnel, already counted:
/// with `max_tunnels_per_identity = 3`, alice's control channel and three data
/// connections at once all work, while bob's three tunnels are his whole share
/// (a fourth call is `busy`).
#[tokio::test]
async fn accepted_connections_are_not_the_exposers_tunnels() {
    let server = TestServer::builder()
        .policy(&policy("2222"))
        .limit("max_tunnels_per_identity", "3")
        .start()
        .await;
    let mut alice = Exposer::expose(Transport::Tcp, server.addr(), &pki().alice, LAPTOP).await;
    let mut open = Vec::new();
    for n in 0..3 {
        let (bob, incoming) = bob_calls(&server, &mut alice).await;
        let (reply, mut exposed) = alice.accept(&incoming.session).await;
        assert_eq!(reply.code(), "ok", "alice's accept {n}: {reply:?}");
        let mut bob = within("bob's answer", tp_tests::EVENTUALLY, bob)
            .await
            .expect("bob's task");
        assert_eq!(bob.reply.code(), "ok", "bob's call {n}: {bob:?}");
        exposed.write_all(b"hello bob").await.expect("write");
        let mut got = [0u8; 9];
        within(
            "bytes from alice",
            tp_tests::EVENTUALLY,
            bob.tunnel.read_exact(&mut got),
        )
        .await
        .expect("read");
        assert_eq!(&got, b"hello bob");
        open.push((bob, exposed));
    }
    let fourth = call(Transport::Tcp, server.addr(), &pki().bob, LAPTOP).await;
    assert_eq!(fourth.reply.code(), "busy", "{fourth:?}");
    assert!(fourth.reply.message().contains("bob@test"), "{fourth:?}");
}

/// Even with a live id (announced to a TLS/TCP registration), an `accept` over
/// QUIC is refused as malformed for that transport, and does not use the id up.
#[tokio::test]
async fn accept_over_quic_is_a_bad_request() {
    let server = start().await;
    let mut alice = Exposer::expose(Transport::Tcp, server.addr(), &pki().alice, LAPTOP).await;
    let (bob, incoming) = bob_calls(&server, &mut alice).await;
    let mut stream = connect_as_over(Transport::Quic, server.addr(), &pki().alice).await;
    let reply = send_hello(&mut stream, &accept_hello(&incoming.session)).await;
    assert_eq!(reply.code(), "bad_request", "{reply:?}");

    let (reply, _exposed) = alice.accept(&incoming.session).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");
    let bob = within("bob's answer", tp_tests::EVENTUALLY, bob)
        .await
        .expect("bob's task");
    assert_eq!(bob.reply.code(), "ok", "{bob:?}");
}
