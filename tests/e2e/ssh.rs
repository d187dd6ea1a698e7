//! Real OpenSSH through tp: `ssh` with tp as its ProxyCommand, `scp` of 64 MiB each
//! way through `tp up`, and a policy denial that ssh's user gets to read, each over
//! both transports (`tp` pinned to `tcp` or `quic` by its config).

use std::path::Path;

use tokio::process::Command;
use tp_tests::bins::{Finished, TpUp, run, run_tp};
use tp_tests::data::{random_bytes, sha256_hex};
use tp_tests::{Sshd, TestServer, Transport, pki};

/// Runs `ssh -o ProxyCommand="tp ... %h %p" DEST COMMAND` against `sshd`.
async fn ssh_through_tp(sshd: &Sshd, config: &Path, command: &str) -> Finished {
    sshd.ssh_through_tp(config, "127.0.0.1", command).await
}

async fn ssh_with_tp_as_proxy_command(transport: Transport) {
    let sshd = Sshd::start().await;
    let server = TestServer::start().await;
    let config = server.client_config_over(&pki().alice, transport);
    let out = ssh_through_tp(&sshd, &config, "echo hello-from-sshd").await;
    assert_eq!(out.code(), 0, "ssh failed: {}", out.stderr);
    assert_eq!(out.stdout_text(), "hello-from-sshd\n");

    let target = format!("host=127.0.0.1 port={}", sshd.port());
    server
        .expect_log(&[
            "tp::audit",
            "decision=\"allow\"",
            "id=alice@test",
            &target,
            transport.log_field(),
        ])
        .await;
    server
        .expect_log(&["tunnel closed", transport.log_field()])
        .await;
    // sshd saw the connection come from the server's dial (LogLevel VERBOSE).
    assert!(
        sshd.log()
            .iter()
            .any(|l| l.contains("Connection from 127.0.0.1")),
        "sshd log: {:#?}",
        sshd.log()
    );
}

/// An ssh session that ends normally is a clean close on the server too: `tp` ends
/// its side with close_notify, so the server does not log the tunnel as failed.
///
/// When sshd ends the session first, the server relays its EOF to `tp` (close_notify);
/// `tp` then exits at once (docs/client.md) and must still close its own write side
/// cleanly on the way out, or the server logs `tunnel closed: client failed ...
/// peer closed connection without sending TLS close_notify` for every ordinary session.
async fn ssh_session_end_is_a_clean_close_on_the_server(transport: Transport) {
    let sshd = Sshd::start().await;
    let server = TestServer::start().await;
    let config = server.client_config_over(&pki().alice, transport);
    let out = ssh_through_tp(&sshd, &config, "echo bye").await;
    assert_eq!(out.code(), 0, "ssh failed: {}", out.stderr);
    let closed = server
        .expect_log(&["tunnel closed", transport.log_field()])
        .await;
    assert!(
        !closed.contains("failed"),
        "an ordinary ssh session is logged as a failure:\n{closed}"
    );
}

async fn scp_64_mib_both_ways_through_tp_up(transport: Transport) {
    let sshd = Sshd::start().await;
    let server = TestServer::start().await;
    let config = server.client_config_over(&pki().alice, transport);
    let up = TpUp::start(&config, &format!("127.0.0.1:{}", sshd.port())).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let original = dir.path().join("original.bin");
    let uploaded = sshd.dir().join("uploaded.bin");
    let downloaded = dir.path().join("downloaded.bin");
    let content = random_bytes(42, 64 * 1024 * 1024);
    std::fs::write(&original, &content).expect("writing the file");

    let remote = |path: &Path| format!("{}:{}", sshd.destination(), path.display());
    let scp = |from: String, to: String| {
        let mut cmd: Command = sshd.scp();
        cmd.arg("-P").arg(up.port().to_string()).arg(from).arg(to);
        cmd
    };
    let out = run(scp(original.display().to_string(), remote(&uploaded)), b"").await;
    assert_eq!(out.code(), 0, "scp upload: {}", out.stderr);
    let out = run(
        scp(remote(&uploaded), downloaded.display().to_string()),
        b"",
    )
    .await;
    assert_eq!(out.code(), 0, "scp download: {}", out.stderr);

    let want = sha256_hex(&content);
    for (what, path) in [("uploaded", &uploaded), ("downloaded", &downloaded)] {
        let got = std::fs::read(path).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got.len(), content.len(), "{what} length");
        assert_eq!(sha256_hex(&got), want, "{what} checksum");
    }
    // Two tunnels, one per scp, each closed cleanly.
    assert_eq!(
        server
            .log_lines_with(&["decision=\"allow\"", transport.log_field()])
            .len(),
        2
    );
    tp_tests::assert_eventually!(
        server
            .log_lines_with(&["tunnel closed", transport.log_field()])
            .len()
            == 2,
        "two tunnel closed lines: {:#?}",
        server.logs()
    );
    assert_eq!(up.terminate().await.code(), Some(0));
}

async fn denied_target_is_reported_to_the_ssh_user(transport: Transport) {
    let sshd = Sshd::start().await;
    // The policy allows loopback, but only on a port that is not sshd's.
    let other_port = if sshd.port() == 65535 {
        1
    } else {
        sshd.port() + 1
    };
    let server = TestServer::builder()
        .policy(&format!(
            r#"
[[rule]]
name = "loopback-other-port"
who = ["alice@test"]
connect = ["127.0.0.0/8"]
ports = [{other_port}]
"#
        ))
        .start()
        .await;
    let config = server.client_config_over(&pki().alice, transport);
    let reason = format!(
        "no rule allows alice@test to connect to tcp 127.0.0.1:{}",
        sshd.port()
    );

    let out = ssh_through_tp(&sshd, &config, "echo should-not-run").await;
    assert_ne!(out.code(), 0, "ssh must fail: {out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.contains(&format!("tp: denied: {reason}")),
        "ssh's stderr shows tp's line with the server's reason:\n{}",
        out.stderr
    );

    // tp itself exits 10 for `denied`, with exactly one line on stderr.
    let port = sshd.port().to_string();
    let out = run_tp(&config, ["127.0.0.1", port.as_str()], b"").await;
    assert_eq!(out.code(), 10, "{out:?}");
    assert_eq!(out.stderr, format!("tp: denied: {reason}\n"));
    assert!(out.stdout.is_empty());

    // Both denials are audit events; sshd never saw a connection.
    let denials = server.log_lines_with(&[
        "tp::audit",
        "decision=\"deny\"",
        &reason,
        transport.log_field(),
    ]);
    assert_eq!(denials.len(), 2, "{denials:#?}");
    assert!(
        !sshd.log().iter().any(|l| l.contains("Connection from")),
        "sshd log: {:#?}",
        sshd.log()
    );
}

tp_tests::over_both_transports!(
    ssh_with_tp_as_proxy_command,
    ssh_session_end_is_a_clean_close_on_the_server,
    scp_64_mib_both_ways_through_tp_up,
    denied_target_is_reported_to_the_ssh_user,
);
