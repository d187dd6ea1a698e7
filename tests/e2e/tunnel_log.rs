//! What the server logs about one tunnel, over both transports: its `tunnel
//! closed` line carries the connection's span (`peer`, `transport`, the verified
//! `id`), the tunnel's (`target`) and its own fields (bytes each way, `duration`),
//! as docs/config.md ("Logs") says.

use tp_tests::client::{ClientOptions, connect_from, connect_hello, round_trip, send_hello};
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, Transport, pki};

async fn the_tunnel_closed_line_names_peer_identity_bytes_and_duration(transport: Transport) {
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let (peer, tunnel) =
        connect_from(transport, server.addr(), &ClientOptions::with(&pki().alice)).await;
    let mut tunnel = tunnel.expect("handshake");
    let reply = send_hello(&mut tunnel, &connect_hello("127.0.0.1", target.port())).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");
    assert_eq!(
        round_trip(&mut tunnel, b"twelve bytes").await,
        b"twelve bytes"
    );

    let line = server.expect_log(&["tunnel closed"]).await;
    for field in [
        format!("peer={peer}"),
        transport.log_field().to_owned(),
        "id=alice@test".to_owned(),
        format!("target=127.0.0.1:{}", target.port()),
        "bytes.up=12".to_owned(),
        "bytes.down=12".to_owned(),
        "duration=".to_owned(),
    ] {
        assert!(line.contains(&field), "{field:?} missing from: {line}");
    }
    println!("{line}");
}

tp_tests::over_both_transports!(the_tunnel_closed_line_names_peer_identity_bytes_and_duration);
