//! Audit lines (`tp::audit`) for reverse tunnels: the `listen` decision, the
//! registration and its end, and each caller's decision with the exposer named.

use tokio::net::TcpStream;
use tp_tests::reverse::{Exposer, call, free_port, listen_name_hello, listen_port_hello};
use tp_tests::{Transport, pki};

use super::{LAPTOP, start, start_public};

async fn registrations_and_caller_decisions_are_audited(transport: Transport) {
    let server = start().await;
    let addr = server.addr();
    let mut alice = Exposer::expose(transport, addr, &pki().alice, LAPTOP).await;
    let allow = server
        .expect_log(&[
            "tp::audit",
            "allow listen on service alice-laptop",
            "\"alice-exposes\"",
        ])
        .await;
    assert!(allow.contains("identity=alice@test"), "{allow}");
    server
        .expect_log(&[
            "tp::audit",
            &format!(
                "registered service alice-laptop for alice@test ({})",
                transport.name()
            ),
        ])
        .await;

    let denied = Exposer::register(
        transport,
        addr,
        &pki().alice,
        &listen_name_hello("alice-desktop"),
    )
    .await;
    assert_eq!(denied.expect_err("denied").code(), "denied");
    server
        .expect_log(&[
            "tp::audit",
            "deny listen on service alice-desktop",
            "no rule allows alice@test",
        ])
        .await;

    let (bob, (_, _exposed)) = tokio::join!(
        call(transport, addr, &pki().bob, LAPTOP),
        alice.next_incoming()
    );
    assert_eq!(bob.reply.code(), "ok", "{bob:?}");
    let line = server
        .expect_log(&[
            "tp::audit",
            "allow connect to service alice-laptop exposed by alice@test",
            "\"ops-reach-laptops\"",
        ])
        .await;
    assert!(line.contains("identity=bob@test"), "{line}");

    let carol = call(transport, addr, &pki().via_intermediate, LAPTOP).await;
    assert_eq!(carol.reply.code(), "denied", "{carol:?}");
    server
        .expect_log(&[
            "tp::audit",
            "deny connect to service alice-laptop: no rule allows carol@test to connect to service alice-laptop",
        ])
        .await;

    let nobody = call(transport, addr, &pki().bob, "nobody-laptop").await;
    assert_eq!(nobody.reply.code(), "unreachable", "{nobody:?}");
    server
        .expect_log(&[
            "tp::audit",
            "allow connect to service nobody-laptop exposed by nobody",
        ])
        .await;

    alice.close().await;
    server
        .expect_log(&[
            "tp::audit",
            "unregistered service alice-laptop for alice@test (closed by the client)",
        ])
        .await;
}

/// Each plain TCP connection to a public port is audited (who from, which port,
/// whose registration), among the lines of the server it reached.
async fn public_connections_are_audited(transport: Transport) {
    let port = free_port();
    let server = start_public(port).await;
    let mut alice = Exposer::register(
        transport,
        server.addr(),
        &pki().alice,
        &listen_port_hello(port),
    )
    .await
    .unwrap_or_else(|reply| panic!("listen on public port {port}: {reply:?}"));
    server
        .expect_log(&[
            "tp::audit",
            &format!("allow listen on public port {port} (rule \"alice-exposes\")"),
        ])
        .await;
    server
        .expect_log(&[
            "tp::audit",
            &format!(
                "registered public port {port} for alice@test ({})",
                transport.name()
            ),
        ])
        .await;

    let dial = async {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the public port");
        let local = tcp.local_addr().expect("local_addr");
        (tcp, local)
    };
    let ((_tcp, local), (incoming, _exposed)) = tokio::join!(dial, alice.next_incoming());
    assert_eq!(incoming.peer, local);
    server
        .expect_log(&[
            "tp::audit",
            &format!(
                "incoming connection from {local} on public port {port} exposed by alice@test"
            ),
        ])
        .await;
}

tp_tests::over_both_transports!(
    registrations_and_caller_decisions_are_audited,
    public_connections_are_audited,
);
