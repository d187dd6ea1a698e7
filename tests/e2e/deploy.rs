//! The four recipes of `docs/deploy.md`, loaded from the file as written (only
//! paths, ports and upstreams swapped for test ones) and exercised against real
//! peers, so the documentation cannot drift from what works.

use std::path::Path;
use std::sync::atomic::Ordering;

use tp_tests::client::browse;
use tp_tests::dns::{dig_tls, dnsmasq};
use tp_tests::nginx::{BODY, Nginx};
use tp_tests::server::LOOPBACK_POLICY;
use tp_tests::signal::{StandIn, signal_check_through, tls_in_tls};
use tp_tests::{TestServer, pki};

/// The TOML block after `<!-- recipe: NAME -->` in docs/deploy.md.
fn recipe(name: &str) -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy.md"))
            .expect("docs/deploy.md");
    let marker = format!("<!-- recipe: {name} -->\n```toml\n");
    let start = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("no recipe {name} in docs/deploy.md"))
        + marker.len();
    let end = start + doc[start..].find("```").expect("the block ends");
    doc[start..end].to_owned()
}

/// Writes the recipe's files into a temp dir (the test server's certificate,
/// the test root as client CA, `policy`), swapping `/etc/tp/` for that dir and
/// each `(from, to)` of `swaps`, and starts the server on 127.0.0.1:0.
async fn start(name: &str, policy: &str, swaps: &[(&str, String)]) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    pki()
        .server
        .save(dir.path(), "server")
        .expect("server cert");
    std::fs::write(dir.path().join("ca.pem"), pki().root.cert_pem()).expect("ca");
    // What clients of the test server trust (`client_config_for`).
    std::fs::write(dir.path().join("root.pem"), pki().root.cert_pem()).expect("root");
    std::fs::write(dir.path().join("policy.toml"), policy).expect("policy");
    let mut text = recipe(name).replace("/etc/tp/", &format!("{}/", dir.path().display()));
    for (from, to) in swaps {
        assert!(text.contains(from), "recipe {name} has no {from:?}");
        text = text.replace(from, to);
    }
    let path = dir.path().join("server.toml");
    std::fs::write(&path, text).expect("config");
    TestServer::start_config(dir, &path).await
}

/// `[signal.upstreams]` sending chat.signal.org to the stand-in.
fn signal_upstream(stand_in: &StandIn) -> String {
    format!(
        "enabled = true\n\n[signal.upstreams]\n\"chat.signal.org\" = \"127.0.0.1:{}\"\n",
        stand_in.port
    )
}

/// A tunnel through `tp` to an echo target.
async fn tunnel_works(server: &TestServer) {
    let (out, _) = server.tp_echo().await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"ping");
}

#[tokio::test]
async fn signal_only() {
    let stand_in = StandIn::start("chat.signal.org").await;
    let server = start(
        "signal-only",
        "",
        &[("enabled = true\n", signal_upstream(&stand_in))],
    )
    .await;
    let back = tls_in_tls(server.addr(), "chat.signal.org", b"relayed")
        .await
        .expect("the relay");
    assert_eq!(back, b"relayed");
    assert!(browse(server.addr()).await.contains("<h1>Welcome</h1>"));
    assert_eq!(stand_in.accepted.load(Ordering::SeqCst), 1);
    // "Check it works".
    let check = signal_check_through(&server, &["--host", "chat.signal.org"]).await;
    assert_eq!(check.code(), 0, "{check:?}");
    assert!(
        check
            .stdout_text()
            .contains("\nSignal relay on localhost: works for chat.signal.org.\n"),
        "{check:?}"
    );
    assert_eq!(stand_in.accepted.load(Ordering::SeqCst), 2);

    // No client CA: a tp client gets no tunnel.
    let (out, reached) = server.tp_echo().await;
    assert_ne!(out.code(), 0, "{out:?}");
    assert_eq!(reached, 0);
}

#[tokio::test]
async fn all_in_one() {
    let nginx = Nginx::start_website().await;
    let stand_in = StandIn::start("chat.signal.org").await;
    let server = start(
        "all-in-one",
        LOOPBACK_POLICY,
        &[
            (
                "unix:/run/nginx/site.sock",
                format!("unix:{}", nginx.http1_socket().display()),
            ),
            (
                "unix:/run/nginx/site-h2.sock",
                format!("unix:{}", nginx.h2_socket().display()),
            ),
            ("enabled = true\n", signal_upstream(&stand_in)),
        ],
    )
    .await;
    let page = browse(server.addr()).await;
    assert!(page.ends_with(BODY), "{page}");
    let back = tls_in_tls(server.addr(), "chat.signal.org", b"relayed")
        .await
        .expect("the relay");
    assert_eq!(back, b"relayed");
    tunnel_works(&server).await;
}

#[tokio::test]
async fn dns_over_tls() {
    let (_dnsmasq, dns_port) = dnsmasq().await;
    let server = start(
        "dns-over-tls",
        "",
        &[
            ("127.0.0.1:53", format!("127.0.0.1:{dns_port}")),
            ("0.0.0.0:853", "127.0.0.1:0".to_owned()),
        ],
    )
    .await;
    // On the route's own port (853 in the recipe), and by ALPN on the main one.
    for port in [server.route_addrs()[0].port(), server.addr().port()] {
        let out = dig_tls(port).await;
        assert_eq!(out.stdout_text().trim(), "192.0.2.53", "{}", out.stderr);
    }
    assert!(browse(server.addr()).await.contains("<h1>Welcome</h1>"));
}

#[tokio::test]
async fn tunnels_only() {
    let server = start("tunnels-only", LOOPBACK_POLICY, &[]).await;
    tunnel_works(&server).await;
    assert!(browse(server.addr()).await.contains("<h1>Welcome</h1>"));
}
