//! How long a registration lives: as long as its control channel. Closing the
//! connection frees the name at once; a channel silent for three heartbeats is
//! dead; a quiet channel gets the server's pings, and a client's pings keep it
//! (events it does not know are ignored, lines behind the hello are read); a
//! client that only answers pings is alive however busy the registration is. The
//! drain ends registrations but lets their tunnels finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tp_proto::Event;
use tp_tests::reverse::{Exposer, accept_as, call, listen_name_hello};
use tp_tests::{TestServer, Transport, pki, within};

use super::{LAPTOP, policy, start};

const HEARTBEAT: Duration = Duration::from_secs(1);

/// A server whose control channels have a 1 s heartbeat (dead after 3 s).
async fn start_with_heartbeat() -> TestServer {
    TestServer::builder()
        .policy(&policy("2222"))
        .section("reverse", "heartbeat", "\"1s\"")
        .start()
        .await
}

/// bob registers alice's name, retrying a refusal for at most `limit`; returns
/// how long it took.
async fn bob_takes_the_name(
    transport: Transport,
    server: &TestServer,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        match Exposer::register(
            transport,
            server.addr(),
            &pki().bob,
            &listen_name_hello(LAPTOP),
        )
        .await
        {
            Ok(_) => return started.elapsed(),
            Err(reply) if started.elapsed() < limit => {
                assert_eq!(reply.code(), "conflict", "{reply:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(reply) => panic!("the name is still taken after {limit:?}: {reply:?}"),
        }
    }
}

async fn closing_the_control_connection_frees_the_name_at_once(transport: Transport) {
    let server = start().await;
    let alice = Exposer::expose(transport, server.addr(), &pki().alice, LAPTOP).await;
    // No goodbye: the TCP connection or the QUIC connection just goes.
    drop(alice);
    // The heartbeat (15 s) plays no part: freeing is immediate.
    let took = bob_takes_the_name(transport, &server, Duration::from_secs(2)).await;
    eprintln!("the name was free {took:?} after the close");
    server
        .expect_log(&["unregistered service alice-laptop for alice@test"])
        .await;
}

async fn a_silent_control_channel_is_dead_after_three_heartbeats(transport: Transport) {
    let server = start_with_heartbeat().await;
    let registered = Instant::now();
    // alice neither reads nor sends from here on.
    let _alice = Exposer::expose(transport, server.addr(), &pki().alice, LAPTOP).await;
    server
        .expect_log(&["control channel dead: no heartbeat"])
        .await;
    let dead_after = registered.elapsed();
    assert!(
        dead_after >= HEARTBEAT * 3 - Duration::from_millis(300) && dead_after <= HEARTBEAT * 5,
        "declared dead after {dead_after:?}, heartbeat {HEARTBEAT:?}"
    );
    server
        .expect_log(&["unregistered service alice-laptop", "no heartbeat"])
        .await;
    bob_takes_the_name(transport, &server, Duration::from_millis(500)).await;
}

async fn the_server_pings_a_quiet_channel_and_answers_pings(transport: Transport) {
    let server = start_with_heartbeat().await;
    let mut alice = Exposer::expose(transport, server.addr(), &pki().alice, LAPTOP).await;
    // Unknown events and fields are ignored, not an error.
    alice
        .send_raw(b"{\"v\":1,\"event\":\"from-the-future\",\"extra\":[1,2]}\n")
        .await;
    // Quiet for a heartbeat and a half: the server pings.
    let (events, closed) = alice.events_for(HEARTBEAT * 3 / 2).await;
    assert!(!closed);
    assert!(events.contains(&Event::Ping), "{events:?}");

    // Every ping is answered with a pong, and a client that pings keeps the
    // channel past the 3 s a silent one lives.
    let started = Instant::now();
    let (mut sent, mut pongs) = (0, 0);
    while started.elapsed() < HEARTBEAT * 4 {
        alice.send_ping().await;
        sent += 1;
        let (events, closed) = alice.events_for(HEARTBEAT / 2).await;
        assert!(
            !closed,
            "the server closed a channel whose client pings, after {:?}",
            started.elapsed()
        );
        for event in events {
            match event {
                Event::Pong => pongs += 1,
                Event::Ping => {}
                other => panic!("on a quiet channel: {other:?}"),
            }
        }
    }
    assert_eq!(pongs, sent, "one pong per ping");
    assert!(
        server.log_lines_with(&["control channel dead"]).is_empty(),
        "{:#?}",
        server.logs()
    );
}

/// A `ping` in the same write as the `listen` hello is a control line like any
/// other: answered right after the `ok`, long before the server's own heartbeat
/// (15 s) would make it speak.
async fn a_ping_behind_the_listen_hello_is_answered(transport: Transport) {
    let server = start().await;
    let mut hello = listen_name_hello(LAPTOP);
    hello.extend_from_slice(b"{\"v\":1,\"event\":\"ping\"}\n");
    let mut alice = Exposer::register(transport, server.addr(), &pki().alice, &hello)
        .await
        .unwrap_or_else(|reply| panic!("listen with a ping behind it: {reply:?}"));
    let event = within("the pong", Duration::from_secs(2), alice.read_event()).await;
    assert_eq!(event, Some(Event::Pong));
}

/// How long bob keeps calling in the busy test: five heartbeats, past the three
/// silent ones that end a channel.
const BUSY_FOR: Duration = Duration::from_secs(5);
const CALL_EVERY: Duration = Duration::from_millis(300);

/// alice answers every ping with a pong but never pings herself (as `tp expose`,
/// whose own interval is 15 s, against a server with a 1 s heartbeat), while bob
/// calls every 300 ms: the server, hearing nothing from her, pings her, and her
/// pongs keep the busy registration alive.
async fn a_busy_registration_that_only_answers_pings_stays_alive(transport: Transport) {
    let server = start_with_heartbeat().await;
    let addr = server.addr();
    let mut alice = Exposer::expose(transport, addr, &pki().alice, LAPTOP).await;
    // Over QUIC each call arrives as a stream of its own, taken aside here and
    // dropped (which returns its credit: the raw exposer grants 16 at once).
    let streams = Arc::new(AtomicUsize::new(0));
    let taking = alice.quic_connection().map(|conn| {
        let streams = streams.clone();
        tokio::spawn(async move {
            while let Ok(stream) = conn.accept_bi().await {
                drop(stream);
                streams.fetch_add(1, Ordering::Relaxed);
            }
        })
    });
    let mut calls = tokio::spawn(async move {
        let mut calls = JoinSet::new();
        let started = Instant::now();
        while started.elapsed() < BUSY_FOR {
            calls.spawn(async move { call(transport, addr, &pki().bob, LAPTOP).await.reply });
            tokio::time::sleep(CALL_EVERY).await;
        }
        calls.join_all().await
    });

    // alice reads her control channel until every call has its answer.
    let (mut pings, mut announced) = (0, 0);
    let mut accepts = Vec::new();
    let busy = async {
        loop {
            let event = tokio::select! {
                replies = &mut calls => return replies.expect("bob's calls"),
                event = alice.read_event() => event,
            };
            match event {
                Some(Event::Ping) => {
                    alice.send_pong().await;
                    pings += 1;
                }
                // Over TLS/TCP: claimed on a connection of its own.
                Some(Event::Incoming(incoming)) => {
                    announced += 1;
                    accepts.push(tokio::spawn(async move {
                        accept_as(addr, &pki().alice, &incoming.session).await
                    }));
                }
                Some(other) => panic!("on alice's control channel: {other:?}"),
                None => panic!(
                    "the server closed a busy registration whose client answers pings: {:#?}",
                    server.log_lines_with(&["unregistered"])
                ),
            }
        }
    };
    let replies = within("bob's calls", BUSY_FOR + tp_tests::EVENTUALLY, busy).await;
    assert!(
        replies.iter().all(|reply| reply.code() == "ok"),
        "{replies:?}"
    );
    assert!(
        pings >= 3,
        "the server pinged a busy channel it heard nothing on {pings} times in {BUSY_FOR:?}"
    );
    if let Some(taking) = taking {
        tp_tests::assert_eventually!(
            streams.load(Ordering::Relaxed) == replies.len(),
            "alice took {streams:?} of {} calls",
            replies.len()
        );
        taking.abort();
    } else {
        assert_eq!(announced, replies.len(), "every call was announced");
    }
    assert!(
        server.log_lines_with(&["control channel dead"]).is_empty(),
        "{:#?}",
        server.logs()
    );
}

/// The drain ends the registration but not the tunnel through it: bytes flow
/// both ways well after the drain began (longer than the QUIC connection's own
/// close grace of 2 s), then both ends close and the server finishes before the
/// drain deadline.
async fn a_tunnel_through_a_registration_outlives_the_start_of_the_drain(transport: Transport) {
    let server = TestServer::builder()
        .policy(&policy("2222"))
        .limit("drain_timeout", "10s")
        .start()
        .await;
    let mut alice = Exposer::expose(transport, server.addr(), &pki().alice, LAPTOP).await;
    let (bob, (_, mut exposed)) = tokio::join!(
        call(transport, server.addr(), &pki().bob, LAPTOP),
        alice.next_incoming(),
    );
    assert_eq!(bob.reply.code(), "ok", "{bob:?}");
    let mut caller = bob.tunnel;
    echo(&mut caller, &mut exposed, b"before the drain").await;

    server.cancel();
    let drain_began = Instant::now();
    server
        .expect_log(&[
            "unregistered service alice-laptop for alice@test",
            "server shutting down",
        ])
        .await;
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(drain_began.elapsed())).await;
    echo(&mut caller, &mut exposed, b"3 s into the drain").await;

    caller.shutdown().await.expect("the caller's shutdown");
    let mut rest = Vec::new();
    within(
        "the caller's end",
        tp_tests::EVENTUALLY,
        exposed.read_to_end(&mut rest),
    )
    .await
    .expect("the exposer reads to the end");
    exposed.shutdown().await.expect("the exposer's shutdown");
    within(
        "the exposer's end",
        tp_tests::EVENTUALLY,
        caller.read_to_end(&mut rest),
    )
    .await
    .expect("the caller reads to the end");
    assert!(rest.is_empty(), "{rest:?}");
    server
        .expect_log(&["tunnel closed", "bytes.up=34", "bytes.down=34"])
        .await;
    drop((caller, exposed, alice));
    let addr = server.addr();
    server.shutdown().await.expect("run() returns Ok");
    let finished = drain_began.elapsed();
    let lines = tp_tests::logs::lines_for(addr);
    assert!(
        !lines.iter().any(|l| l.contains("drain deadline passed")),
        "the drain ran to its deadline after {finished:?}: {lines:#?}"
    );
}

/// Writes `bytes` at one end of a tunnel and reads them at the other, both ways.
async fn echo<A, B>(caller: &mut A, exposed: &mut B, bytes: &[u8])
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut got = vec![0u8; bytes.len()];
    caller.write_all(bytes).await.expect("the caller writes");
    within(
        "the caller's bytes",
        Duration::from_secs(5),
        exposed.read_exact(&mut got),
    )
    .await
    .expect("the exposer reads");
    assert_eq!(got, bytes);
    exposed.write_all(bytes).await.expect("the exposer writes");
    within(
        "the exposer's bytes",
        Duration::from_secs(5),
        caller.read_exact(&mut got),
    )
    .await
    .expect("the caller reads");
    assert_eq!(got, bytes);
}

tp_tests::over_both_transports!(
    closing_the_control_connection_frees_the_name_at_once,
    a_silent_control_channel_is_dead_after_three_heartbeats,
    the_server_pings_a_quiet_channel_and_answers_pings,
    a_ping_behind_the_listen_hello_is_answered,
    a_busy_registration_that_only_answers_pings_stays_alive,
    a_tunnel_through_a_registration_outlives_the_start_of_the_drain,
);
