//! Who may register which name or port and who may call it (policy), who holds
//! a name when two registrations want it (conflict, replacement), and what a
//! reloaded policy does to registrations it no longer grants.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tp_proto::Event;
use tp_tests::process::ServerProcess;
use tp_tests::reverse::{Exposer, call, free_port, listen_name_hello, listen_port_hello};
use tp_tests::{TestServer, Transport, pki, within};

use super::{LAPTOP, policy, start};

async fn policy_decides_listen_names_ports_and_callers(transport: Transport) {
    let server = start().await;
    let addr = server.addr();
    let _alice = Exposer::expose(transport, addr, &pki().alice, LAPTOP).await;

    // carol has no `services` rule: denied, though the service is there.
    let carol = call(transport, addr, &pki().via_intermediate, LAPTOP).await;
    assert_eq!(carol.reply.code(), "denied", "{carol:?}");
    assert!(
        carol
            .reply
            .message()
            .contains("no rule allows carol@test to connect to service alice-laptop"),
        "{carol:?}"
    );

    // A name alice's `listen` does not grant.
    let desktop = Exposer::register(
        transport,
        addr,
        &pki().alice,
        &listen_name_hello("alice-desktop"),
    )
    .await
    .expect_err("listen on a name no rule grants");
    assert_eq!(desktop.code(), "denied", "{desktop:?}");
    assert!(
        desktop
            .message()
            .contains("no rule allows alice@test to listen on service alice-desktop"),
        "{desktop:?}"
    );

    // A public port outside her `public_ports` (2222, 2200-2299).
    let port = Exposer::register(transport, addr, &pki().alice, &listen_port_hello(2300))
        .await
        .expect_err("listen on a port no rule grants");
    assert_eq!(port.code(), "denied", "{port:?}");
    assert!(port.message().contains("public port 2300"), "{port:?}");

    // bob may call any `*-laptop`, but nobody exposes this one.
    let nobody = call(transport, addr, &pki().bob, "nobody-laptop").await;
    assert_eq!(nobody.reply.code(), "unreachable", "{nobody:?}");
}

async fn another_identity_conflicts_and_the_owner_replaces_its_registration(transport: Transport) {
    let server = start().await;
    let addr = server.addr();
    let mut first = Exposer::expose(transport, addr, &pki().alice, LAPTOP).await;

    // bob's policy lets him register the name, but alice holds it.
    let bob = Exposer::register(transport, addr, &pki().bob, &listen_name_hello(LAPTOP))
        .await
        .expect_err("bob registering alice's name");
    assert_eq!(bob.code(), "conflict", "{bob:?}");
    // ...and that did not disturb her registration.
    let (caller, (_, mut exposed)) = tokio::join!(
        call(transport, addr, &pki().bob, LAPTOP),
        first.next_incoming(),
    );
    assert_eq!(caller.reply.code(), "ok", "{caller:?}");
    exposed.shutdown().await.expect("shutdown");
    drop(caller);

    // alice again: her new registration replaces the old, whose channel the
    // server closes.
    let mut second = Exposer::expose(transport, addr, &pki().alice, LAPTOP).await;
    first.expect_closed().await;
    server
        .expect_log(&[
            "unregistered service alice-laptop",
            "replaced by a newer registration",
        ])
        .await;

    // Callers now reach the new registration.
    let (caller, (incoming, mut exposed)) = tokio::join!(
        call(transport, addr, &pki().bob, LAPTOP),
        second.next_incoming(),
    );
    assert_eq!(caller.reply.code(), "ok", "{caller:?}");
    assert_eq!(incoming.peer, caller.peer);
    let mut tunnel = caller.tunnel;
    exposed.write_all(b"from the second").await.expect("write");
    exposed.shutdown().await.expect("shutdown");
    let mut got = Vec::new();
    within(
        "the second exposer's bytes",
        tp_tests::EVENTUALLY,
        tunnel.read_to_end(&mut got),
    )
    .await
    .expect("read");
    assert_eq!(got, b"from the second");
}

const HEARTBEAT: Duration = Duration::from_secs(1);

/// `tp-server run` reloads (SIGHUP) a policy without alice's `public_ports`: her
/// port registration ends at the next recheck, within a heartbeat or two, and
/// the port closes; her name, still granted, stays registered.
async fn a_reloaded_policy_ends_a_registration_it_no_longer_grants(transport: Transport) {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let granting = policy(&port.to_string());
    let config = TestServer::builder()
        .policy(&granting)
        .section("reverse", "public_address", "\"127.0.0.1\"")
        .section("reverse", "heartbeat", "\"1s\"")
        .write_files(dir.path());
    let server = ServerProcess::start(&config).await;
    let mut by_port = Exposer::register(
        transport,
        server.addr,
        &pki().alice,
        &listen_port_hello(port),
    )
    .await
    .unwrap_or_else(|reply| panic!("listen on public port {port}: {reply:?}"));
    let mut by_name = Exposer::expose(transport, server.addr, &pki().alice, LAPTOP).await;

    let grant = format!("public_ports = [{port}]\n");
    assert!(granting.contains(&grant), "{granting}");
    std::fs::write(dir.path().join("policy.toml"), granting.replace(&grant, ""))
        .expect("writing policy.toml");
    // Heard from just now: the name's channel lives 3 s more without a word.
    by_name.send_ping().await;
    server.reload("configuration reloaded").await;
    let reloaded = Instant::now();
    server
        .stderr
        .wait_for("the port registration's end", |l| {
            l.contains("registration ended: the policy no longer allows it")
        })
        .await;
    let took = reloaded.elapsed();
    assert!(
        took <= HEARTBEAT * 2,
        "ended {took:?} after the reload, heartbeat {HEARTBEAT:?}"
    );
    let unregistered = format!("unregistered public port {port} for alice@test");
    server
        .stderr
        .wait_for("the audit line", |l| {
            l.contains(&unregistered) && l.contains("policy no longer allows it")
        })
        .await;
    by_port.expect_closed().await;
    let public = SocketAddr::from(([127, 0, 0, 1], port));
    tp_tests::assert_eventually!(
        TcpStream::connect(public).await.is_err(),
        "public port {port} still accepts connections after the reload"
    );

    // The name's registration answers a ping: still there.
    by_name.send_ping().await;
    let pong = async {
        loop {
            match by_name.read_event().await {
                Some(Event::Pong) => return,
                Some(Event::Ping) => {}
                other => panic!("on the name's control channel: {other:?}"),
            }
        }
    };
    within("the name's pong", HEARTBEAT * 2, pong).await;
    let lines = server.stderr.snapshot();
    assert!(
        !lines.iter().any(|l| l.contains("unregistered service")),
        "{lines:#?}"
    );
}

tp_tests::over_both_transports!(
    policy_decides_listen_names_ports_and_callers,
    another_identity_conflicts_and_the_owner_replaces_its_registration,
    a_reloaded_policy_ends_a_registration_it_no_longer_grants,
);
