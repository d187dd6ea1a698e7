//! `tp up` sends what the local client has already written along with the
//! hello (docs/protocol.md allows payload right behind the hello): curl's
//! request reaches nginx without waiting for the answer, a refused tunnel's
//! request reaches no one, and after a server restart the tunnel retried on a
//! new QUIC connection delivers the bytes once. `tp HOST PORT` does the same
//! with what is piped into it.

use tokio::process::Command;
use tp_tests::bins::{TpUp, run, run_tp, system_bin, tp};
use tp_tests::nginx::{BODY, Nginx};
use tp_tests::process::ServerProcess;
use tp_tests::server::ONLY_BOB_POLICY;
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, Transport, assert_eventually, pki};

/// The `first=N` of each of `tp up -vv`'s "tunnel open" lines so far: bytes
/// sent before the answer, tunnel by tunnel.
fn first_bytes(up: &TpUp) -> Vec<usize> {
    up.stderr()
        .iter()
        .filter(|l| l.contains("tunnel open") && l.contains(" first="))
        .map(|line| {
            line.split_once(" first=")
                .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
                .unwrap_or_else(|| panic!("first=N in {line}"))
        })
        .collect()
}

fn up_verbose(config: &std::path::Path, target: &str) -> Command {
    let mut cmd = tp(config);
    cmd.arg("-vv").arg("up").arg(target).arg("0");
    cmd
}

/// curl speaks first: its request (a PROXY header and a GET) is in `tp up`'s
/// socket long before the handshake is done, and goes out with the hello.
async fn curls_request_goes_out_with_the_hello(transport: Transport) {
    let nginx = Nginx::start_proxy_protocol().await;
    let server = TestServer::start().await;
    let config = server.client_config_over(&pki().alice, transport);
    let up = TpUp::spawn(up_verbose(&config, &format!("127.0.0.1:{}", nginx.port()))).await;

    // curl writes its PROXY header and its request separately: under load
    // `tp up` may take only the header; either way something goes first. On a
    // machine loaded enough to hold curl back for a whole handshake, nothing may
    // have been written yet: up to three tunnels, one of which must carry bytes.
    const TUNNELS: usize = 3;
    let mut firsts = Vec::new();
    while firsts.len() < TUNNELS && !firsts.iter().any(|&n| n > 0) {
        let mut curl = Command::new(system_bin("curl"));
        curl.args(["--silent", "--show-error", "--max-time", "10"])
            .arg("--haproxy-protocol")
            .arg(format!("http://127.0.0.1:{}/", up.port()));
        let out = run(curl, b"").await;
        assert_eq!(out.code(), 0, "curl through tp up: {out:?}");
        assert_eq!(out.stdout_text(), BODY);
        let tunnels = firsts.len() + 1;
        assert_eventually!(
            first_bytes(&up).len() == tunnels,
            "{transport:?}: {tunnels} \"tunnel open\" lines with first=N in {:?}",
            up.stderr()
        );
        firsts = first_bytes(&up);
    }
    let first = firsts.iter().copied().max().unwrap_or(0);
    assert!(
        first > 0,
        "{transport:?}: nothing went with the hello in {} tunnels ({firsts:?})",
        firsts.len()
    );
    // Every tunnel carried the whole request, so at least what went first.
    let closed =
        |server: &TestServer| server.log_lines_with(&["tunnel closed", transport.log_field()]);
    assert_eventually!(closed(&server).len() == firsts.len(), "{:?}", server.logs());
    for line in closed(&server) {
        let up_bytes: usize = line
            .split_once("bytes.up=")
            .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
            .expect("bytes.up");
        assert!(
            up_bytes >= first,
            "bytes.up={up_bytes}, first={first}: {line}"
        );
    }
    assert_eq!(up.terminate().await.code(), Some(0));
}

/// A request piped into `tp HOST PORT` goes before the answer (real stdin,
/// read by tokio on a blocking thread), and comes back whole from the echo.
async fn a_request_piped_into_tp_goes_before_the_answer(transport: Transport) {
    let server = TestServer::start().await;
    let target = EchoTarget::start().await;
    let config = server.client_config_over(&pki().alice, transport);
    let port = target.addr().port().to_string();
    let request = b"GET / HTTP/1.0\r\nHost: example\r\n\r\n";
    let out = run_tp(&config, ["-vv", "127.0.0.1", port.as_str()], request).await;
    assert_eq!(out.code(), 0, "{transport:?}: {}", out.stderr);
    assert_eq!(out.stdout, request, "{transport:?}: the echo");
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("tunnel open") && l.contains(" first="))
        .unwrap_or_else(|| panic!("{transport:?}: no first=N in {}", out.stderr));
    let first: usize = line
        .split_once(" first=")
        .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("first=N in {line}"));
    assert!(
        first > 0,
        "{transport:?}: nothing went before the answer: {line}"
    );
}

/// A denied tunnel: what the local client sent with the hello reaches no one,
/// and the local connection is closed.
async fn a_refused_tunnels_first_bytes_reach_no_one(transport: Transport) {
    let server = TestServer::builder().policy(ONLY_BOB_POLICY).start().await;
    let target = EchoTarget::start().await;
    let config = server.client_config_over(&pki().alice, transport);
    let up = TpUp::spawn(up_verbose(&config, &target.addr().to_string())).await;

    let mut local = tokio::net::TcpStream::connect(("127.0.0.1", up.port()))
        .await
        .expect("connect the forwarded port");
    tokio::io::AsyncWriteExt::write_all(&mut local, b"must go nowhere")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut local, &mut rest),
    )
    .await
    .expect("tp up closes the local connection");
    assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
    server.expect_log(&["decision=\"deny\""]).await;
    assert_eq!(target.accepted(), 0);
    up.expect_stderr(&["refused", "denied"]).await;
    assert_eq!(up.terminate().await.code(), Some(0));
}

/// tp-server killed and started again on the same port and key: `tp up`'s
/// kept QUIC connection is gone, which the new process says at the first
/// packet (a stateless reset signed with a key derived from the server key).
/// The tunnel that found out is retried on a new connection with the same
/// first bytes, and the target gets them exactly once.
#[tokio::test]
async fn after_a_server_restart_the_first_bytes_reach_the_target_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, port) = TestServer::builder().write_files_on_free_port(dir.path());

    pki().alice.save(dir.path(), "alice").expect("saving alice");
    let client = dir.path().join("client.toml");
    std::fs::write(
        &client,
        format!(
            "server = \"127.0.0.1:{port}\"\nserver_name = \"localhost\"\ncert = \"alice.pem\"\n\
             key = \"alice.key\"\nca = \"root.pem\"\nconnect_timeout = \"5s\"\ntransport = \"quic\"\n"
        ),
    )
    .expect("client config");
    let target = EchoTarget::start().await;

    let mut server = ServerProcess::start(&config).await;
    let up = TpUp::spawn(up_verbose(&client, &target.addr().to_string())).await;
    let local_port = up.port();
    let round_trip = |bytes: &'static [u8]| async move {
        let mut local = tokio::net::TcpStream::connect(("127.0.0.1", local_port))
            .await
            .expect("connect the forwarded port");
        tp_tests::client::round_trip(&mut local, bytes).await
    };
    assert_eq!(round_trip(b"before the crash").await, b"before the crash");
    // Let the client finish acknowledging that tunnel's end: a packet it sent
    // to the restarted server would get the reset before the next tunnel
    // does, and that tunnel would just dial a new connection.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    server.child.start_kill().expect("SIGKILL");
    let _ = server.child.wait().await;
    let _restarted = ServerProcess::start(&config).await;
    assert_eq!(round_trip(b"after the restart").await, b"after the restart");
    let retried = up
        .expect_stderr(&["the kept QUIC connection is gone"])
        .await;
    assert!(retried.contains("connecting again"), "{retried}");
    let first = up
        .stderr()
        .iter()
        .filter(|l| l.contains("tunnel open") && l.contains(" first="))
        .count();
    assert!(first >= 2, "{:?}", up.stderr());
    // Two tunnels, each with its bytes once: what the target echoed is all
    // the local clients got back, checked above.
    assert_eq!(target.accepted(), 2);
    assert_eq!(up.terminate().await.code(), Some(0));
}

tp_tests::over_both_transports!(
    curls_request_goes_out_with_the_hello,
    a_refused_tunnels_first_bytes_reach_no_one,
    a_request_piped_into_tp_goes_before_the_answer,
);
