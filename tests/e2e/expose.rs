//! `tp expose` as users run it: a real sshd exposed by alice's `tp expose`, reached
//! by bob with `ssh -o ProxyCommand="tp %h %p" alice-laptop`, over both transports;
//! refusals by policy (the server) and by `--allow` (the exposing side); and a
//! server restart the exposed service survives without anyone touching the laptop.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use tokio::process::{Child, Command};
use tp_server::pki::{LeafSpec, Validity};
use tp_tests::bins::{Finished, Lines, run, run_tp, system_bin, tp};
use tp_tests::nginx::Nginx;
use tp_tests::process::ServerProcess;
use tp_tests::reverse::free_port;
use tp_tests::target::EchoTarget;
use tp_tests::{Sshd, TestServer, Transport, pki};

/// alice may expose `alice-laptop`; bob and carol may reach it.
const POLICY: &str = r#"
[[rule]]
name = "alice-exposes"
who = ["alice@test"]
listen = ["alice-laptop"]

[[rule]]
name = "reach-laptops"
who = ["bob@test", "carol@test"]
services = ["*-laptop"]
"#;

/// A running `tp expose`, and its stderr.
struct Exposed {
    child: Child,
    stderr: Lines,
}

impl Exposed {
    /// Starts `tp --config CONFIG expose ARGS...` and waits for its first
    /// `exposing ...` line.
    async fn start(config: &Path, args: &[&str]) -> Exposed {
        let mut cmd = tp(config);
        cmd.arg("expose")
            .args(args)
            .env("TP_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("starting tp expose");
        let stderr = Lines::collect(child.stderr.take().expect("piped stderr"));
        let exposed = Exposed { child, stderr };
        exposed.registrations(1).await;
        exposed
    }

    /// Waits until `tp expose` has said it registered (`tp expose: exposing ...`,
    /// then `tp expose: registered again: ...`) `n` times in all.
    async fn registrations(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let lines = self.stderr.snapshot();
            let count = lines
                .iter()
                .filter(|l| {
                    l.starts_with("tp expose: exposing ")
                        || l.starts_with("tp expose: registered again: ")
                })
                .count();
            if count >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "tp expose registered fewer than {n} times:\n{}",
                lines.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Exposed {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// `ssh -o ProxyCommand="tp --config CONFIG %h %p" -p PORT USER@NAME COMMAND`.
async fn ssh_by_name(sshd: &Sshd, config: &Path, name: &str, command: &str) -> Finished {
    sshd.ssh_through_tp(config, name, command).await
}

async fn ssh_reaches_an_exposed_sshd_by_name(transport: Transport) {
    let sshd = Sshd::start().await;
    let server = TestServer::builder().policy(POLICY).start().await;
    let laptop = server.client_config_over(&pki().alice, transport);
    let port = sshd.port().to_string();
    let _exposed = Exposed::start(&laptop, &[&port, "--name", "alice-laptop"]).await;

    let bob = server.client_config_over(&pki().bob, transport);
    let out = ssh_by_name(&sshd, &bob, "alice-laptop", "echo hello-from-the-laptop").await;
    assert_eq!(out.code(), 0, "ssh failed: {}", out.stderr);
    assert_eq!(out.stdout_text(), "hello-from-the-laptop\n");

    server
        .expect_log(&["registered service alice-laptop for alice@test"])
        .await;
    server
        .expect_log(&[
            "tp::audit",
            "allow connect to service alice-laptop exposed by alice@test",
            "id=bob@test",
            transport.log_field(),
        ])
        .await;
}

#[tokio::test]
async fn ssh_reaches_an_exposed_sshd_in_stealth_mode() {
    let sshd = Sshd::start().await;
    let server = TestServer::builder()
        .policy(POLICY)
        .section("stealth", "names", "[\"localhost\"]")
        .start()
        .await;
    let laptop = server.stealth_client_config(&pki().alice);
    let port = sshd.port().to_string();
    let _exposed = Exposed::start(&laptop, &[&port, "--name", "alice-laptop"]).await;

    let bob = server.stealth_client_config(&pki().bob);
    let out = ssh_by_name(&sshd, &bob, "alice-laptop", "echo hello-in-stealth").await;
    assert_eq!(out.code(), 0, "ssh failed: {}", out.stderr);
    assert_eq!(out.stdout_text(), "hello-in-stealth\n");
    server
        .expect_log(&["stealth: TLS established", "id=alice@test"])
        .await;
    server
        .expect_log(&["stealth: TLS established", "id=bob@test"])
        .await;
}

async fn a_caller_policy_refuses_is_denied_by_the_server(transport: Transport) {
    let server = TestServer::builder().policy(POLICY).start().await;
    let laptop = server.client_config_over(&pki().alice, transport);
    let _exposed = Exposed::start(&laptop, &["9", "--name", "alice-laptop"]).await;

    // alice may expose the name but not reach services: no `services` rule.
    let config = server.client_config_over(&pki().alice, transport);
    let out = run_tp(&config, ["alice-laptop", "22"], b"").await;
    assert_eq!(out.code(), 10, "denied is status 10: {out:?}");
    assert!(
        out.stderr
            .contains("no rule allows alice@test to connect to service alice-laptop"),
        "{}",
        out.stderr
    );
}

async fn allow_narrows_who_the_exposing_side_accepts(transport: Transport) {
    let sshd = Sshd::start().await;
    let server = TestServer::builder().policy(POLICY).start().await;
    let laptop = server.client_config_over(&pki().alice, transport);
    let port = sshd.port().to_string();
    let exposed = Exposed::start(
        &laptop,
        &[&port, "--name", "alice-laptop", "--allow", "bob@test"],
    )
    .await;

    // carol passes the server's policy but not alice's --allow.
    let carol = server.client_config_over(&pki().via_intermediate, transport);
    let out = run_tp(&carol, ["alice-laptop", "22"], b"SSH-2.0-x\r\n").await;
    assert_ne!(out.code(), 0, "{out:?}");
    assert!(
        out.stderr
            .contains("the exposing side refused your certificate (--allow)"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "nothing of sshd reached carol");
    exposed
        .stderr
        .wait_for("naming the refused identity", |l| l.contains("carol@test"))
        .await;

    let bob = server.client_config_over(&pki().bob, transport);
    let out = ssh_by_name(&sshd, &bob, "alice-laptop", "echo bob-is-allowed").await;
    assert_eq!(out.code(), 0, "ssh failed: {}", out.stderr);
    assert_eq!(out.stdout_text(), "bob-is-allowed\n");
}

/// A registration does not outlive the certificate that made it: the server
/// checks it again at each heartbeat and ends the registration once it has
/// expired; `tp expose` then reads its certificate files again and registers
/// with the renewed certificate it finds there.
async fn a_registration_ends_with_its_certificate_and_a_renewed_one_takes_over(
    transport: Transport,
) {
    let server = TestServer::builder()
        .policy(POLICY)
        .section("reverse", "heartbeat", "\"1s\"")
        .start()
        .await;
    let now = SystemTime::now();
    let short = pki()
        .root
        .issue(&LeafSpec::client(
            "alice@test",
            Validity::for_ttl(now, Duration::from_secs(3)),
        ))
        .expect("a short-lived certificate");
    let laptop = server.client_config_over(&short, transport);
    let echo = EchoTarget::start().await;
    let port = echo.port().to_string();
    let exposed = Exposed::start(&laptop, &[&port, "--name", "alice-laptop"]).await;

    // The certificate is renewed on disk (as a renewal job would) while the
    // registration made with the old one still runs.
    let stem = format!("client-{}-{}", short.serial_hex, transport.name());
    pki()
        .alice
        .save(server.dir(), &stem)
        .expect("renewed files");

    server
        .expect_log(&[
            "unregistered service alice-laptop",
            "client certificate no longer valid",
        ])
        .await;
    exposed.registrations(2).await;
    let bob = server.client_config_over(&pki().bob, transport);
    let out = run_tp(&bob, ["alice-laptop", "7"], b"renewed").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"renewed");
}

/// Public mode with `--proxy-protocol`: plain `curl` to the server's public port
/// reaches a real nginx behind `tp expose`, and nginx logs curl's own address
/// (from the PROXY v2 header), not the one the laptop dialed from.
async fn a_public_port_shows_nginx_the_real_client_with_proxy_protocol(transport: Transport) {
    let nginx = Nginx::start_proxy_protocol().await;
    let public = free_port();
    let policy = format!(
        "[[rule]]\nname = \"alice-public\"\nwho = [\"alice@test\"]\npublic_ports = [{public}]\n"
    );
    let server = TestServer::builder()
        .policy(&policy)
        .section("reverse", "public_address", "\"127.0.0.1\"")
        .start()
        .await;
    let laptop = server.client_config_over(&pki().alice, transport);
    let (nginx_port, public_port) = (nginx.port().to_string(), public.to_string());
    let _exposed = Exposed::start(
        &laptop,
        &[&nginx_port, "--public", &public_port, "--proxy-protocol"],
    )
    .await;

    let curl_port = free_port();
    let mut curl = Command::new(system_bin("curl"));
    curl.args(["--silent", "--show-error", "--max-time", "10"])
        .arg("--local-port")
        .arg(curl_port.to_string())
        .arg(format!("http://127.0.0.1:{public}/"));
    let out = run(curl, b"").await;
    assert_eq!(out.code(), 0, "curl failed: {}", out.stderr);
    assert_eq!(out.stdout_text(), tp_tests::nginx::BODY);

    let log = nginx.access_log();
    assert!(
        log.iter()
            .any(|l| l.starts_with(&format!("127.0.0.1:{curl_port} "))),
        "nginx did not see curl's address 127.0.0.1:{curl_port}: {log:?}"
    );
    server
        .expect_log(&[
            "tp::audit",
            &format!("incoming connection from 127.0.0.1:{curl_port} on public port {public} exposed by alice@test"),
        ])
        .await;
}

tp_tests::over_both_transports!(
    a_public_port_shows_nginx_the_real_client_with_proxy_protocol,
    a_registration_ends_with_its_certificate_and_a_renewed_one_takes_over,
    ssh_reaches_an_exposed_sshd_by_name,
    a_caller_policy_refuses_is_denied_by_the_server,
    allow_narrows_who_the_exposing_side_accepts,
    an_exposed_service_is_back_soon_after_a_server_restart,
);

/// A server killed and started again on the same port: `tp expose` registers
/// again by itself, and the service is reachable within seconds.
async fn an_exposed_service_is_back_soon_after_a_server_restart(transport: Transport) {
    let sshd = Sshd::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, port) = TestServer::builder()
        .policy(POLICY)
        .write_files_on_free_port(dir.path());

    let mut first = ServerProcess::start(&config).await;
    let laptop = write_client_config(dir.path(), &pki().alice, port, transport);
    let bob = write_client_config(dir.path(), &pki().bob, port, transport);
    let sshd_port = sshd.port().to_string();
    let exposed = Exposed::start(&laptop, &[&sshd_port, "--name", "alice-laptop"]).await;
    let out = ssh_by_name(&sshd, &bob, "alice-laptop", "echo before").await;
    assert_eq!(out.code(), 0, "ssh failed: {}", out.stderr);

    first.child.start_kill().expect("SIGKILL");
    let _ = first.child.wait().await;
    let _second = ServerProcess::start(&config).await;

    let restarted = tokio::time::Instant::now();
    exposed.registrations(2).await;
    let out = ssh_by_name(&sshd, &bob, "alice-laptop", "echo after").await;
    assert_eq!(out.code(), 0, "ssh failed: {}", out.stderr);
    assert_eq!(out.stdout_text(), "after\n");
    let took = restarted.elapsed();
    // Generous for a loaded machine; the backoff starts at 250 ms.
    assert!(took < Duration::from_secs(10), "back after {took:?}");
}

/// A client config for `leaf` against the server on 127.0.0.1:`port`, in `dir`.
fn write_client_config(
    dir: &Path,
    leaf: &tp_server::pki::Issued,
    port: u16,
    transport: Transport,
) -> std::path::PathBuf {
    let folder = dir.join(&leaf.serial_hex);
    std::fs::create_dir_all(&folder).expect("client folder");
    leaf.save(&folder, "client").expect("save client cert");
    std::fs::write(folder.join("root.pem"), pki().root.cert_pem()).expect("root");
    let config = folder.join("client.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"127.0.0.1:{port}\"\nserver_name = \"localhost\"\ncert = \"client.pem\"\nkey = \"client.key\"\nca = \"root.pem\"\nconnect_timeout = \"5s\"\ntransport = \"{}\"\n",
            transport.name()
        ),
    )
    .expect("client config");
    config
}
