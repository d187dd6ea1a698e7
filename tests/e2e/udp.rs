//! UDP tunnels (`"proto":"udp"`): datagrams framed on the stream over both
//! transports, QUIC datagrams tagged with the stream's id, policy on `proto`, and
//! the idle expiry of a quiet flow.

use std::collections::HashSet;
use std::time::Duration;

use tp_tests::client::{Transport, connect_as_over, send_hello};
use tp_tests::data::random_bytes;
use tp_tests::udp::{UdpEchoTarget, UdpTunnel, udp_hello};
use tp_tests::{TestServer, pki, within};

const UDP_POLICY: &str = r#"
[[rule]]
name = "udp-loopback"
who = ["*"]
connect = ["127.0.0.0/8"]
ports = ["*"]
proto = ["udp", "tcp"]
"#;

/// A datagram that says which one it is: 4 bytes of sequence number, then bytes
/// derived from it, so a corrupted or mixed-up datagram cannot pass.
fn datagram(seq: u32, len: usize) -> Vec<u8> {
    let mut d = seq.to_be_bytes().to_vec();
    d.extend(random_bytes(u64::from(seq), len.saturating_sub(4)));
    d
}

fn size_of(seq: u32) -> usize {
    // 4 bytes to 1400, and every 97th a large one that only fits a stream frame.
    if seq.is_multiple_of(97) {
        4 + (seq as usize * 131) % 20_000
    } else {
        4 + (seq as usize * 37) % 1_397
    }
}

/// Opens a UDP tunnel to `port` over `transport`.
async fn open_udp(transport: Transport, server: &TestServer, port: u16) -> UdpTunnel {
    match transport {
        Transport::Tcp => {
            let mut stream = connect_as_over(transport, server.addr(), &pki().alice).await;
            let reply = send_hello(&mut stream, &udp_hello("127.0.0.1", port)).await;
            assert_eq!(reply.code(), "ok", "{reply:?}");
            UdpTunnel::new(stream, None)
        }
        Transport::Quic => {
            let mut client = tp_tests::quic::connect(
                server.addr(),
                &tp_tests::client::ClientOptions::with(&pki().alice),
            )
            .await
            .expect("QUIC connect");
            let reply = send_hello(&mut client, &udp_hello("127.0.0.1", port)).await;
            assert_eq!(reply.code(), "ok", "{reply:?}");
            let quic = Some((client.connection().clone(), client.flow_id()));
            UdpTunnel::new(Box::new(client), quic)
        }
    }
}

/// Sends 10,000 datagrams of varied sizes, at most `WINDOW` unanswered at a time,
/// and checks every echo is exactly one that was sent. Counts loss and reordering.
async fn ten_thousand_datagrams_echo(transport: Transport) {
    const COUNT: u32 = 10_000;
    const WINDOW: u32 = 64;
    let server = TestServer::builder().policy(UDP_POLICY).start().await;
    let target = UdpEchoTarget::start().await;
    let mut tunnel = open_udp(transport, &server, target.port()).await;

    let mut seen = HashSet::new();
    let (mut next, mut last_seq, mut reordered) = (0u32, None, 0u32);
    while next < COUNT {
        while next < COUNT && next < seen.len() as u32 + WINDOW {
            tunnel.send_frame(&datagram(next, size_of(next))).await;
            next += 1;
        }
        // A lost datagram never comes back: stop waiting for this window after a while.
        let Ok(Some(echo)) = tokio::time::timeout(Duration::from_secs(2), tunnel.recv()).await
        else {
            break;
        };
        let seq = u32::from_be_bytes(echo[..4].try_into().expect("4 bytes"));
        assert_eq!(
            echo.to_vec(),
            datagram(seq, size_of(seq)),
            "datagram {seq} came back altered"
        );
        assert!(seen.insert(seq), "datagram {seq} came back twice");
        if last_seq.is_some_and(|l| seq < l) {
            reordered += 1;
        }
        last_seq = Some(seq);
    }
    // Collect the stragglers.
    while let Ok(Some(echo)) = tokio::time::timeout(Duration::from_millis(500), tunnel.recv()).await
    {
        let seq = u32::from_be_bytes(echo[..4].try_into().expect("4 bytes"));
        assert_eq!(echo.to_vec(), datagram(seq, size_of(seq)));
        assert!(seen.insert(seq), "datagram {seq} came back twice");
    }
    let lost = COUNT as usize - seen.len();
    println!("{transport:?}: {COUNT} sent, {lost} lost, {reordered} reordered");
    assert!(
        lost <= COUNT as usize / 100,
        "{lost} of {COUNT} datagrams lost on loopback"
    );
    tunnel.close().await;
    server
        .expect_log(&["tunnel closed: client closed", "proto=\"udp\""])
        .await;
}

/// A UDP tunnel needs a rule whose `proto` lists udp.
async fn udp_needs_a_udp_rule(transport: Transport) {
    let server = TestServer::start().await; // the default policy allows tcp only
    let target = UdpEchoTarget::start().await;
    let mut stream = connect_as_over(transport, server.addr(), &pki().alice).await;
    let reply = send_hello(&mut stream, &udp_hello("127.0.0.1", target.port())).await;
    assert_eq!(reply.code(), "denied", "{reply:?}");
    assert_eq!(target.received(), 0);
}

/// A flow with no datagram either way for `udp_idle_timeout` ends.
async fn a_quiet_udp_flow_expires(transport: Transport) {
    let server = TestServer::builder()
        .policy(UDP_POLICY)
        .limit("udp_idle_timeout", "1s")
        .start()
        .await;
    let target = UdpEchoTarget::start().await;
    let mut tunnel = open_udp(transport, &server, target.port()).await;
    tunnel.send_frame(b"ping").await;
    let echo = within("the echo", Duration::from_secs(5), tunnel.recv()).await;
    assert_eq!(echo.as_deref(), Some(&b"ping"[..]));
    let end = within("the idle end", Duration::from_secs(5), tunnel.recv()).await;
    assert_eq!(end, None, "the stream ends after the idle timeout");
    server
        .expect_log(&["tunnel closed: idle timeout", "datagrams.up=1"])
        .await;
}

#[tokio::test]
async fn quic_datagrams_carry_the_flow_both_ways() {
    let server = TestServer::builder().policy(UDP_POLICY).start().await;
    let target = UdpEchoTarget::start().await;
    let mut tunnel = open_udp(Transport::Quic, &server, target.port()).await;
    for seq in 0..100u32 {
        tunnel.send_datagram(&datagram(seq, 200));
        let echo = within("an echo", Duration::from_secs(5), tunnel.recv())
            .await
            .expect("echo");
        assert_eq!(echo.to_vec(), datagram(seq, 200));
    }
    // Too large for a QUIC datagram: the server falls back to a stream frame.
    let big = datagram(1_000, 30_000);
    tunnel.send_frame(&big).await;
    let echo = within("the large echo", Duration::from_secs(5), tunnel.recv())
        .await
        .expect("echo");
    assert_eq!(echo.to_vec(), big);
    tunnel.close().await;
    server
        .expect_log(&[
            "tunnel closed",
            "datagrams.down=101",
            "datagrams.down_quic=100",
        ])
        .await;
}

/// `tp up --udp`: 10,000 checksummed datagrams from a local UDP socket through the
/// real client and server to a UDP echo target, windowed, counting loss and
/// reordering.
async fn ten_thousand_datagrams_through_tp_up_udp(transport: Transport) {
    const COUNT: u32 = 10_000;
    const WINDOW: usize = 64;
    let server = TestServer::builder().policy(UDP_POLICY).start().await;
    let target = UdpEchoTarget::start().await;
    let config = server.client_config_over(&pki().alice, transport);
    let mut cmd = tp_tests::bins::tp(&config);
    cmd.arg("up")
        .arg("--udp")
        .arg(format!("127.0.0.1:{}", target.port()))
        .arg("0");
    let up = tp_tests::bins::TpUp::spawn(cmd).await;
    let local = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("local socket");
    local
        .connect(("127.0.0.1", up.port()))
        .await
        .expect("connect to tp up");

    let mut seen = HashSet::new();
    let (mut next, mut last_seq, mut reordered) = (0u32, None, 0u32);
    // Datagrams given up on as lost, so the window moves on without them.
    let mut given_up = 0usize;
    let mut buf = vec![0u8; 65_536];
    loop {
        while next < COUNT && (next as usize) < seen.len() + given_up + WINDOW {
            local
                .send(&datagram(next, size_of(next)))
                .await
                .expect("send");
            next += 1;
        }
        let wait = if next < COUNT { 2_000 } else { 500 };
        let Ok(received) =
            tokio::time::timeout(Duration::from_millis(wait), local.recv(&mut buf)).await
        else {
            if next < COUNT {
                given_up += 1;
                continue;
            }
            break;
        };
        let n = received.expect("recv");
        let seq = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
        assert_eq!(
            buf[..n].to_vec(),
            datagram(seq, size_of(seq)),
            "datagram {seq} came back altered"
        );
        assert!(seen.insert(seq), "datagram {seq} came back twice");
        if last_seq.is_some_and(|l| seq < l) {
            reordered += 1;
        }
        last_seq = Some(seq);
    }
    let lost = COUNT as usize - seen.len();
    println!("tp up --udp over {transport:?}: {COUNT} sent, {lost} lost, {reordered} reordered");
    assert!(
        lost <= COUNT as usize / 100,
        "{lost} of {COUNT} datagrams lost on loopback"
    );
    assert_eq!(up.terminate().await.code(), Some(0));
    server
        .expect_log(&["tunnel closed", "proto=\"udp\"", transport.log_field()])
        .await;
}

tp_tests::over_both_transports!(
    ten_thousand_datagrams_echo,
    udp_needs_a_udp_rule,
    a_quiet_udp_flow_expires,
    ten_thousand_datagrams_through_tp_up_udp,
);
