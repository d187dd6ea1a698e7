//! `tp-server run` as a process and SIGHUP: a reloaded revocation list and policy
//! apply to the next connection at once, open tunnels keep running, and a broken
//! config is refused while the running one stays.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tp_tests::client::{self, ClientOptions, Reply, connect_hello, echo, open_tunnel, send_hello};
use tp_tests::process::ServerProcess;
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, pki, within};

/// The server refuses `leaf` now: at the handshake or by closing before any answer.
async fn assert_refused(addr: std::net::SocketAddr, leaf: &tp_server::pki::Issued, port: u16) {
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    if let Ok(mut tls) = client::handshake(tcp, &ClientOptions::with(leaf)).await {
        let reply = send_hello(&mut tls, &connect_hello("127.0.0.1", port)).await;
        assert!(
            matches!(reply, Reply::Closed { ref partial, .. } if partial.is_empty()),
            "a revoked client got an answer: {reply:?}"
        );
    }
}

/// `tp-server run` as a process whose config names a revocation list (holding
/// the test PKI's revoked certificate), with its files in the returned folder.
async fn with_revocation_list() -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TestServer::builder()
        .revoked(&pki().revoked)
        .write_files(dir.path());
    let server = ServerProcess::start(&config).await;
    (dir, server)
}

/// Adds `leaf` to the revocation list in `dir` and reloads `server` (SIGHUP).
async fn revoke_and_reload(
    dir: &std::path::Path,
    server: &ServerProcess,
    leaf: &tp_server::pki::Issued,
) {
    let path = dir.join("revoked.txt");
    let mut list = std::fs::read_to_string(&path).expect("reading the revocation list");
    list.push_str(&format!("{}\n", leaf.serial_hex));
    std::fs::write(&path, list).expect("writing the revocation list");
    server.reload("configuration reloaded").await;
}

#[tokio::test]
async fn sighup_applies_revocation_and_policy_to_new_connections_only() {
    let pki = pki();
    let (dir, server) = with_revocation_list().await;
    let target = EchoTarget::start().await;

    let mut open = open_tunnel(server.addr, &pki.alice, "127.0.0.1", target.port()).await;
    echo(&mut open, b"before the reload").await;

    // Revoke alice and reload: her next connection is refused at once...
    revoke_and_reload(dir.path(), &server, &pki.alice).await;
    assert_refused(server.addr, &pki.alice, target.port()).await;
    server
        .stderr
        .wait_for("a revocation refusal", |l| {
            l.contains("TLS handshake refused") && l.to_lowercase().contains("revoked")
        })
        .await;
    // ...while her open tunnel keeps running, and bob is unaffected.
    echo(&mut open, b"after the reload").await;
    let mut bob = open_tunnel(server.addr, &pki.bob, "127.0.0.1", target.port()).await;
    echo(&mut bob, b"bob").await;

    // A broken policy is refused; the running policy (loopback allowed) stays.
    std::fs::write(dir.path().join("policy.toml"), "[[rule]]\nname = 1\n").expect("policy");
    server.reload("reload refused").await;
    let mut bob2 = open_tunnel(server.addr, &pki.bob, "127.0.0.1", target.port()).await;
    echo(&mut bob2, b"still allowed").await;

    // A valid policy that no longer allows loopback takes effect.
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[rule]]\nname = \"public-only\"\nwho = [\"*\"]\nconnect = [\"192.0.2.0/24\"]\nports = [22]\n",
    )
    .expect("policy");
    server.reload("configuration reloaded").await;
    let mut tls = client::connect_as(server.addr, &pki.bob).await;
    let reply = send_hello(&mut tls, &connect_hello("127.0.0.1", target.port())).await;
    assert_eq!(reply.code(), "denied", "{reply:?}");
    echo(&mut bob, b"open tunnels are untouched").await;
}

/// A server killed with SIGKILL and started again on the same port and key tells
/// its old QUIC clients at once (a stateless reset signed with a key derived from
/// the server key), instead of leaving them to their idle timeout.
#[tokio::test]
async fn a_restarted_server_resets_its_old_quic_connections_at_once() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, _) = TestServer::builder().write_files_on_free_port(dir.path());
    let target = EchoTarget::start().await;

    let mut first = ServerProcess::start(&config).await;
    let mut client = tp_tests::quic::connect(first.addr, &ClientOptions::with(&pki.alice))
        .await
        .expect("QUIC connect");
    let reply = send_hello(&mut client, &connect_hello("127.0.0.1", target.port())).await;
    assert_eq!(reply.code(), "ok", "{reply:?}");
    echo(&mut client, b"before the crash").await;

    first.child.start_kill().expect("SIGKILL");
    let _ = first.child.wait().await;
    let _second = ServerProcess::start(&config).await;

    // The next packet reaches a server that does not know the connection.
    let _ = client.write_all(b"after the restart").await;
    let _ = client.flush().await;
    let closed = within(
        "the stateless reset",
        Duration::from_secs(5),
        client.connection().closed(),
    )
    .await;
    assert!(
        matches!(closed, quinn::ConnectionError::Reset),
        "{closed:?}"
    );
}

/// On an open QUIC connection each new stream is a tunnel checked against the
/// configuration of its moment: after a reload that revokes the certificate,
/// the next stream is refused and the connection closed, even though the same
/// chain passed on that connection a moment before (the server remembers a
/// pass only for the configuration it was made with).
#[tokio::test]
async fn a_reloaded_revocation_stops_the_next_tunnel_on_an_open_quic_connection() {
    let pki = pki();
    let (dir, server) = with_revocation_list().await;
    let target = EchoTarget::start().await;
    let hello = connect_hello("127.0.0.1", target.port());

    let mut client = tp_tests::quic::connect(server.addr, &ClientOptions::with(&pki.alice))
        .await
        .expect("QUIC connect");
    assert_eq!(send_hello(&mut client, &hello).await.code(), "ok");
    let mut second = client.open_stream().await.expect("stream");
    assert_eq!(send_hello(&mut second, &hello).await.code(), "ok");
    echo(&mut second, b"same configuration").await;

    revoke_and_reload(dir.path(), &server, &pki.alice).await;

    let mut third = client.open_stream().await.expect("stream");
    let reply = send_hello(&mut third, &hello).await;
    assert!(
        matches!(reply, Reply::Closed { .. }),
        "a revoked certificate opened a tunnel: {reply:?}"
    );
    server
        .stderr
        .wait_for("the revocation on the open connection", |l| {
            l.contains("no longer valid") && l.to_lowercase().contains("revoked")
        })
        .await;
    assert_eq!(target.accepted(), 2);
}
