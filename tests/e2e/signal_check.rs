//! `tp-server signal-check`: the real binary checks a real running server whose
//! Signal relay reaches a local stand-in (per-host `upstreams`), the outer
//! certificate verified with `--outer-ca`. A working relay is reported host by
//! host with exit 0; a host off the allowlist, a wrong inner certificate and a
//! relay that is off each fail with exit 3 and say why; a server that is not
//! there, or whose certificate is not trusted, exits 4.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::process::Command;
use tp_server::pki::{Ca, Validity};
use tp_server::website::signal::parse_hosts;
use tp_tests::TestServer;
use tp_tests::bins::{run, tp_server_bin};
use tp_tests::nginx::Nginx;
use tp_tests::signal::{StandIn, signal_check, signal_check_through};

/// Signal's hosts as the server has them built in.
fn built_in_hosts() -> Vec<String> {
    parse_hosts(include_str!("../../tp-server/data/signal-hosts.txt")).expect("the built-in list")
}

/// `[signal]` on, every one of `hosts` dialed at the stand-in, and `extra` lines.
fn relay_to(stand_in: &StandIn, hosts: &[&str], extra: &str) -> String {
    let upstreams: Vec<String> = hosts
        .iter()
        .map(|h| format!("\"{h}\" = \"127.0.0.1:{}\"", stand_in.port))
        .collect();
    format!(
        "[signal]\nenabled = true\n{extra}upstreams = {{ {} }}\n",
        upstreams.join(", ")
    )
}

/// The line of `host` in the report.
fn line_of<'a>(stdout: &'a str, host: &str) -> &'a str {
    let ok = format!("  ok    {host} ");
    let fail = format!("  FAIL  {host} ");
    stdout
        .lines()
        .find(|l| l.starts_with(&ok) || l.starts_with(&fail))
        .unwrap_or_else(|| panic!("no line for {host} in:\n{stdout}"))
}

#[tokio::test]
async fn a_working_relay_is_reported_host_by_host() {
    let hosts = built_in_hosts();
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let stand_in = StandIn::start_for(&names).await;
    let server = TestServer::builder()
        .raw(&relay_to(&stand_in, &names, ""))
        .start()
        .await;

    // No --host: every built-in host, each through its own outer connection.
    let out = signal_check_through(&server, &[]).await;
    let stdout = out.stdout_text();
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        stdout.starts_with("Checking the Signal relay on localhost (127.0.0.1:"),
        "{stdout}"
    );
    for host in &hosts {
        let line = line_of(&stdout, host);
        assert!(line.starts_with("  ok "), "{line}");
        assert!(line.contains(" through the relay); answered by CN=chat.signal.org, issued by CN=tp e2e root CA; chain not verified"), "{line}");
    }
    assert!(
        stdout.contains("Signal relay on localhost: works for all 13 hosts.\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"chain not verified\": "),
        "the footnote: {stdout}"
    );
    assert_eq!(stand_in.accepted.load(Ordering::SeqCst), 13);
    server
        .expect_log(&["Signal relay closed", "host=svrb.signal.org"])
        .await;

    // With the stand-in's CA the chain is verified too.
    let root = server.dir().join("root.pem");
    let out = signal_check_through(
        &server,
        &[
            "--host",
            "chat.signal.org",
            "--inner-ca",
            root.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    let stdout = out.stdout_text();
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        line_of(&stdout, "chat.signal.org").ends_with("; chain verified"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("Signal relay on localhost: works for chat.signal.org.\n"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_host_off_the_allowlist_or_with_the_wrong_certificate_fails() {
    let stand_in = StandIn::start("chat.signal.org").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("signal-hosts.txt");
    std::fs::write(&list, "chat.signal.org\ncdn.signal.org\n").expect("hosts");
    let hosts_line = format!("hosts = \"{}\"\n", list.display());
    let all = ["chat.signal.org", "cdn.signal.org", "storage.signal.org"];
    let server = TestServer::builder()
        .raw(&relay_to(&stand_in, &all, &hosts_line))
        .start()
        .await;

    let out = signal_check_through(
        &server,
        &[
            "--host",
            "chat.signal.org",
            "--host",
            "cdn.signal.org",
            "--host",
            "storage.signal.org",
        ],
    )
    .await;
    let stdout = out.stdout_text();
    assert_eq!(out.code(), 3, "{out:?}");
    assert!(
        line_of(&stdout, "chat.signal.org").starts_with("  ok "),
        "{stdout}"
    );
    // Relayed, but the stand-in's certificate is for chat.signal.org only.
    let cdn = line_of(&stdout, "cdn.signal.org");
    assert!(
        cdn.contains(
            "inner TLS with cdn.signal.org: its certificate not valid for name \"cdn.signal.org\""
        ),
        "{cdn}"
    );
    assert!(
        cdn.ends_with("; answered by CN=chat.signal.org, issued by CN=tp e2e root CA"),
        "{cdn}"
    );
    // Not on the server's list: closed, nothing dialed.
    let storage = line_of(&stdout, "storage.signal.org");
    assert!(
        storage.contains("the relay closed the connection")
            && storage.contains("storage.signal.org is not on the server's allowlist"),
        "{storage}"
    );
    assert!(
        stdout.contains("Signal relay on localhost: works for 1 of 3 hosts; 2 failed.\n"),
        "{stdout}"
    );
    assert_eq!(stand_in.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_relay_that_is_off_is_named() {
    // No [signal]: the built-in page answers the inner hello with a 400 at
    // once, and so does a website in front of nginx.
    let nginx = Nginx::start_website().await;
    let plain = TestServer::start().await;
    let fronted = TestServer::builder()
        .section(
            "website",
            "backend",
            &format!("\"unix:{}\"", nginx.http1_socket().display()),
        )
        .start()
        .await;
    for server in [&plain, &fronted] {
        let out = signal_check_through(server, &["--host", "chat.signal.org"]).await;
        let stdout = out.stdout_text();
        assert_eq!(out.code(), 3, "{out:?}");
        assert!(
            line_of(&stdout, "chat.signal.org").contains(
                "the website answered (\"HTTP/1.1 400 Bad Request\"), not the Signal relay: \
                 the relay is off on this server ([signal] enabled = true turns it on)"
            ),
            "{stdout}"
        );
    }
}

#[tokio::test]
async fn a_server_that_is_not_there_or_not_trusted_is_a_connection_error() {
    let server = TestServer::start().await;
    let root = server.dir().join("root.pem");
    let root = root.to_str().expect("utf-8 path");

    // Nothing listens.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let at = format!("127.0.0.1:{port}");
    let out = signal_check(&[
        "localhost",
        "--connect",
        &at,
        "--outer-ca",
        root,
        "--host",
        "chat.signal.org",
    ])
    .await;
    assert_eq!(out.code(), 4, "{out:?}");
    assert!(
        out.stdout_text().contains(&format!(
            "  FAIL  chat.signal.org  TCP: {at} refused the connection (is tp-server running and listening there?)"
        )),
        "{out:?}"
    );

    // Up, but its certificate is not from a CA this machine trusts: the
    // system's CAs are SSL_CERT_FILE's, here another CA.
    let dir = tempfile::tempdir().expect("tempdir");
    let other = Ca::generate(
        "some other CA",
        Validity::for_ttl(SystemTime::now(), Duration::from_secs(3_600)),
    )
    .expect("CA");
    let other_pem = dir.path().join("other.pem");
    std::fs::write(&other_pem, other.cert_pem()).expect("other.pem");
    let addr = server.addr().to_string();
    let mut cmd = Command::new(tp_server_bin());
    cmd.args([
        "signal-check",
        "localhost",
        "--connect",
        &addr,
        "--host",
        "chat.signal.org",
    ])
    .env("SSL_CERT_FILE", &other_pem)
    .env_remove("SSL_CERT_DIR");
    let out = run(cmd, b"").await;
    assert_eq!(out.code(), 4, "{out:?}");
    assert!(
        out.stdout_text().contains(
            "outer TLS with localhost: its certificate is not from a CA trusted here \
             (for a private CA, pass it with --outer-ca FILE)"
        ),
        "{out:?}"
    );

    // Something that accepts and never speaks TLS: the deadline names the step.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let at = silent.local_addr().expect("addr").to_string();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let out = signal_check(&[
        "localhost",
        "--connect",
        &at,
        "--outer-ca",
        root,
        "--host",
        "chat.signal.org",
        "--timeout",
        "500ms",
    ])
    .await;
    holder.abort();
    assert_eq!(out.code(), 4, "{out:?}");
    assert!(
        out.stdout_text()
            .contains("outer TLS with localhost: no handshake within 500 ms"),
        "{out:?}"
    );
}

#[tokio::test]
async fn bad_arguments_are_refused_before_connecting() {
    let out = signal_check(&["bad name.org"]).await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("is not a DNS name"), "{out:?}");
    let out = signal_check(&["localhost", "--timeout", "15"]).await;
    assert_eq!(out.code(), 2, "{out:?}");
    let out = signal_check(&["localhost", "--outer-ca", "/nonexistent/ca.pem"]).await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("/nonexistent/ca.pem"), "{out:?}");
}
