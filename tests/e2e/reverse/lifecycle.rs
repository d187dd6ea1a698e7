//! How long a registration lives: as long as its control channel. Closing the
//! connection frees the name at once; a channel silent for three heartbeats is
//! dead; a quiet channel gets the server's pings, and a client's pings keep it
//! (events it does not know are ignored).

use std::time::{Duration, Instant};

use tp_proto::Event;
use tp_tests::reverse::{Exposer, listen_name_hello};
use tp_tests::{TestServer, Transport, pki};

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

tp_tests::over_both_transports!(
    closing_the_control_connection_frees_the_name_at_once,
    a_silent_control_channel_is_dead_after_three_heartbeats,
    the_server_pings_a_quiet_channel_and_answers_pings,
);
