//! Who may register which name or port and who may call it (policy), and who
//! holds a name when two registrations want it (conflict, replacement).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tp_tests::reverse::{Exposer, call, listen_name_hello, listen_port_hello};
use tp_tests::{Transport, pki, within};

use super::{LAPTOP, start};

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

tp_tests::over_both_transports!(
    policy_decides_listen_names_ports_and_callers,
    another_identity_conflicts_and_the_owner_replaces_its_registration,
);
