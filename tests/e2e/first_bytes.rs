//! `tp up` sends what the local client has already written along with the
//! hello (docs/protocol.md allows payload right behind the hello): curl's
//! request reaches nginx without waiting for the answer, and a refused
//! tunnel's request reaches no one.

use tokio::process::Command;
use tp_tests::bins::{TpUp, run, system_bin, tp};
use tp_tests::nginx::{BODY, Nginx};
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, Transport, pki};

/// The `first=N` of `tp up -vv`'s "tunnel open" line: bytes sent with the hello.
async fn first_bytes(up: &TpUp) -> usize {
    let line = up.expect_stderr(&["tunnel open", " first="]).await;
    line.split_once(" first=")
        .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("first=N in {line}"))
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

    let mut curl = Command::new(system_bin("curl"));
    curl.args(["--silent", "--show-error", "--max-time", "10"])
        .arg("--haproxy-protocol")
        .arg(format!("http://127.0.0.1:{}/", up.port()));
    let out = run(curl, b"").await;
    assert_eq!(out.code(), 0, "curl through tp up: {out:?}");
    assert_eq!(out.stdout_text(), BODY);

    let first = first_bytes(&up).await;
    assert!(
        first > "GET / HTTP/1.1\r\n".len(),
        "{transport:?}: the request did not go with the hello (first={first})"
    );
    let closed = server
        .expect_log(&["tunnel closed", transport.log_field()])
        .await;
    let up_bytes: usize = closed
        .split_once("bytes.up=")
        .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
        .expect("bytes.up");
    assert_eq!(up_bytes, first, "everything curl sent went with the hello");
    assert_eq!(up.terminate().await.code(), Some(0));
}

/// A denied tunnel: what the local client sent with the hello reaches no one,
/// and the local connection is closed.
async fn a_refused_tunnels_first_bytes_reach_no_one(transport: Transport) {
    let server = TestServer::builder()
        .policy(
            r#"
[[rule]]
name = "only-bob"
who = ["bob@test"]
connect = ["127.0.0.0/8"]
ports = ["*"]
"#,
        )
        .start()
        .await;
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

tp_tests::over_both_transports!(
    curls_request_goes_out_with_the_hello,
    a_refused_tunnels_first_bytes_reach_no_one,
);
