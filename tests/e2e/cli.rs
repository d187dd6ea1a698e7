//! The command lines: `tp-server check` (ok, and `file:line:column` errors from the
//! fixtures under `tests/fixtures/server-config/`), `tp-server policy check` (allow
//! with the rule, deny, exit statuses), `tp`'s own config errors and exit
//! statuses, and `tp` started under the name `tp-up`.

use std::path::{Path, PathBuf};

use tokio::process::Command;
use tp_tests::bins::{Finished, TpUp, run, run_tp, tp_bin, tp_server_bin};
use tp_tests::server::LOOPBACK_POLICY;
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, pki};

async fn tp_server<I, S>(args: I) -> Finished
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(tp_server_bin());
    cmd.args(args).env("NO_COLOR", "1");
    run(cmd, b"").await
}

/// A directory with the server's certificate, key, the root and a loopback policy;
/// `server.toml` is a good config.
fn config_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = TestServer::builder().write_files(dir.path());
    (dir, path)
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/server-config")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// 1-based line and column of the first occurrence of `needle` in `text`.
fn location_of(text: &str, needle: &str) -> (usize, usize) {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the fixture"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[tokio::test]
async fn check_accepts_a_good_config() {
    let (_dir, path) = config_dir();
    let out = tp_server(["check", "-c", path.to_str().expect("utf-8 path")]).await;
    assert_eq!(out.code(), 0, "{out:?}");
    let stdout = out.stdout_text();
    assert!(
        stdout.starts_with(&format!("{}: ok\n", path.display())),
        "{stdout}"
    );
    assert!(stdout.contains("(1 rules)"), "{stdout}");
    assert!(stdout.contains("client CAs        1"), "{stdout}");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(
        stdout.contains(&format!("workers           one per core ({cores} here)")),
        "{stdout}"
    );
}

#[tokio::test]
async fn check_names_the_workers_the_config_asks_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = TestServer::builder()
        .top("workers", "6")
        .write_files(dir.path());
    let out = tp_server(["check", "-c", path.to_str().expect("utf-8 path")]).await;
    assert_eq!(out.code(), 0, "{out:?}");
    let stdout = out.stdout_text();
    assert!(
        stdout.contains("workers           6 (threads for TCP connections, and as many for QUIC)"),
        "{stdout}"
    );
}

#[tokio::test]
async fn check_lists_stealth_names_and_warns_about_what_gives_tp_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = TestServer::builder()
        .raw(
            "[stealth]\nnames = [\"www.example.org\"]\n\n\
             [[passthrough]]\nnames = [\"*.example.org\"]\nbackend = \"127.0.0.1:9443\"\n\n\
             [[terminate]]\nalpn = [\"dot\"]\nbackend = \"127.0.0.1:53\"\n\n\
             [[terminate]]\nlisten = [\"127.0.0.1:8853\"]\nbackend = \"127.0.0.1:53\"\n",
        )
        .write_files(dir.path());
    let out = tp_server(["check", "-c", path.to_str().expect("utf-8 path")]).await;
    assert_eq!(out.code(), 0, "{out:?}");
    let stdout = out.stdout_text();
    assert!(
        stdout.contains("  stealth           www.example.org\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: stealth mode: QUIC answers ALPN tp/1"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "warning: the passthrough route to 127.0.0.1:9443 shares names with [stealth]"
        ),
        "{stdout}"
    );
    // A DoT route takes no browser ALPN, and one on its own port only is not
    // on 443: no warning for either.
    assert!(!stdout.contains("terminate route"), "{stdout}");

    // Without stealth names, none of it.
    let (_dir, plain) = config_dir();
    let out = tp_server(["check", "-c", plain.to_str().expect("utf-8 path")]).await;
    assert!(!out.stdout_text().contains("stealth"), "{out:?}");
}

#[tokio::test]
async fn check_warns_that_no_tunnel_opens_without_a_client_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = TestServer::builder()
        .no_client_ca()
        .raw("[[terminate]]\nname = \"dot\"\nlisten = [\"127.0.0.1:8853\"]\nbackend = \"127.0.0.1:53\"\n")
        .write_files(dir.path());
    let out = tp_server(["check", "-c", path.to_str().expect("utf-8 path")]).await;
    assert_eq!(out.code(), 0, "{out:?}");
    let stdout = out.stdout_text();
    assert!(stdout.contains("client CAs        0"), "{stdout}");
    assert!(
        stdout.contains(
            "warning: no [tls] client_ca: no tunnels can be opened (tp clients are refused, and QUIC is off)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("terminate         dot: listen 127.0.0.1:8853 -> 127.0.0.1:53"),
        "{stdout}"
    );

    // A route that asks for client certificates has nothing to verify them with.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path).expect("config") + "client_cert = \"required\"\n",
    )
    .expect("config");
    let out = tp_server(["check", "-c", path.to_str().expect("utf-8 path")]).await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.contains("client_cert: needs [tls] client_ca"),
        "{}",
        out.stderr
    );
}

/// `tp-server check` on fixture `name` exits 1 and names `FILE:LINE:COL` of `needle`
/// and says `what`.
async fn check_fails_at(name: &str, needle: &str, what: &str) {
    let (dir, _) = config_dir();
    let text = fixture(name);
    let path = dir.path().join(name);
    std::fs::write(&path, &text).expect("writing the fixture");
    let out = tp_server(["check", "-c", path.to_str().expect("utf-8 path")]).await;
    assert_eq!(out.code(), 1, "{name}: {out:?}");
    assert!(out.stdout.is_empty(), "{name}: nothing on stdout: {out:?}");
    let (line, column) = location_of(&text, needle);
    let at = format!("{}:{line}:{column}: ", path.display());
    assert!(
        out.stderr.starts_with(&format!("tp-server: {at}")),
        "{name}: expected `tp-server: {at}...`, got:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains(what), "{name}: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
}

#[tokio::test]
async fn check_locates_a_bad_duration() {
    check_fails_at("bad-duration.toml", "\"10 parsecs\"", "hello_timeout").await;
}

#[tokio::test]
async fn check_locates_a_bare_number_duration() {
    check_fails_at("bare-number-duration.toml", "30", "string").await;
}

#[tokio::test]
async fn check_locates_an_unknown_key() {
    check_fails_at("unknown-key.toml", "bogus", "unknown field `bogus`").await;
}

#[tokio::test]
async fn check_locates_an_unknown_limit() {
    check_fails_at(
        "unknown-limit.toml",
        "helo_timeout",
        "unknown field `helo_timeout`",
    )
    .await;
}

#[tokio::test]
async fn check_locates_a_bad_listen_address() {
    check_fails_at("bad-listen.toml", "\"localhost:https\"", "listen").await;
}

#[tokio::test]
async fn check_locates_a_missing_certificate_file() {
    check_fails_at(
        "missing-cert.toml",
        "\"no-such-file.pem\"",
        "no-such-file.pem",
    )
    .await;
}

#[tokio::test]
async fn check_reports_a_bad_policy_with_its_line() {
    let (dir, path) = config_dir();
    let policy = "[[rule]]\nname = \"r\"\nwho = [\"*\"]\nconnect = [\"127.1\"]\nports = [22]\n";
    std::fs::write(dir.path().join("policy.toml"), policy).expect("policy");
    let out = tp_server(["check", "-c", path.to_str().expect("utf-8 path")]).await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("policy.toml:4:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("127.0.0.1"),
        "the standard form is suggested: {}",
        out.stderr
    );
}

async fn policy_check(cert: &Path, connect: &str, policy: &Path) -> Finished {
    tp_server([
        "policy".as_ref(),
        "check".as_ref(),
        "--cert".as_ref(),
        cert.as_os_str(),
        "--connect".as_ref(),
        connect.as_ref(),
        "--policy".as_ref(),
        policy.as_os_str(),
    ])
    .await
}

#[tokio::test]
async fn policy_check_explains_allow_and_deny() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = pki().alice.save(dir.path(), "alice").expect("save");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, LOOPBACK_POLICY).expect("policy");

    let out = policy_check(&paths.cert, "127.0.0.1:22", &policy).await;
    assert_eq!(out.code(), 0, "{out:?}");
    let stdout = out.stdout_text();
    assert!(stdout.contains("identity  alice@test (email)"), "{stdout}");
    assert!(
        stdout.contains("result    allow: would dial 127.0.0.1:22 (rule \"test-loopback\")"),
        "{stdout}"
    );

    // An alternate spelling is the same address, and the same decision.
    let out = policy_check(&paths.cert, "0x7f000001:22", &policy).await;
    assert_eq!(out.code(), 0, "{out:?}");

    // Metadata is not loopback: denied, exit 3, with the reason.
    let out = policy_check(&paths.cert, "169.254.169.254:80", &policy).await;
    assert_eq!(out.code(), 3, "{out:?}");
    let stdout = out.stdout_text();
    assert!(stdout.contains("result    deny"), "{stdout}");
    assert!(
        stdout.contains("no rule allows alice@test to connect to tcp 169.254.169.254:80"),
        "{stdout}"
    );

    // A bad target is an error (exit 1), not a decision.
    let out = policy_check(&paths.cert, "127.0.0.1:0", &policy).await;
    assert_eq!(out.code(), 1, "{out:?}");
}

#[tokio::test]
async fn policy_check_explains_a_route_of_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TestServer::builder()
        .policy("[[rule]]\nname = \"dns-users\"\nwho = [\"alice@test\"]\nroutes = [\"dot\"]\n")
        .raw(concat!(
            "[[terminate]]\nname = \"dot\"\nalpn = [\"dot\"]\nbackend = \"127.0.0.1:53\"\nclient_cert = \"required\"\n",
            "[[terminate]]\nname = \"open\"\nnames = [\"open.test\"]\nbackend = \"127.0.0.1:54\"\n",
        ))
        .write_files(dir.path());
    let alice = pki().alice.save(dir.path(), "alice").expect("save").cert;
    let bob = pki().bob.save(dir.path(), "bob").expect("save").cert;
    let check = |cert: &Path, route: &str| {
        let args = [
            "policy".as_ref(),
            "check".as_ref(),
            "--cert".as_ref(),
            cert.as_os_str(),
            "--route".as_ref(),
            route.as_ref(),
            "-c".as_ref(),
            config.as_os_str(),
        ]
        .map(std::ffi::OsStr::to_owned);
        tp_server(args)
    };

    let out = check(&alice, "dot").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout_text()
            .contains("request   use route dot\nresult    allow (rule \"dns-users\")"),
        "{out:?}"
    );

    let out = check(&bob, "dot").await;
    assert_eq!(out.code(), 3, "{out:?}");
    assert!(
        out.stdout_text()
            .contains("result    deny: no rule allows bob@test to use route dot"),
        "{out:?}"
    );

    // A route without client_cert is open to anyone; the policy is not asked.
    let out = check(&bob, "open").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout_text().contains("asks for no client certificate"),
        "{out:?}"
    );

    let out = check(&alice, "nope").await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr
            .contains("no [[terminate]] route is named \"nope\""),
        "{out:?}"
    );
}

#[tokio::test]
async fn tp_config_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "server = \"127.0.0.1:1\"\n\nsrever = \"x\"\n").expect("config");
    let out = run_tp(&config, ["127.0.0.1", "22"], b"").await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.starts_with(&format!(
            "tp: {}:3:1: unknown field `srever`",
            config.display()
        )),
        "{}",
        out.stderr
    );

    // Missing settings are named, each with its three sources.
    std::fs::write(&config, "server = \"127.0.0.1:1\"\n").expect("config");
    let out = run_tp(&config, ["127.0.0.1", "22"], b"").await;
    assert_eq!(out.code(), 1, "{out:?}");
    for setting in ["cert", "key", "ca"] {
        assert!(
            out.stderr
                .contains(&format!("  {setting}: set `{setting}` in")),
            "{}",
            out.stderr
        );
    }

    // A bad port is a usage error.
    let out = run_tp(&config, ["127.0.0.1", "70000"], b"").await;
    assert_eq!(out.code(), 2, "{out:?}");
}

#[tokio::test]
async fn tp_exit_status_names_the_answer() {
    let server = TestServer::start().await;
    let config = server.client_config_for(&pki().alice);
    // Nothing listens on this port: the server's dial is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
        .to_string();
    let out = run_tp(&config, ["127.0.0.1", closed.as_str()], b"").await;
    assert_eq!(out.code(), 15, "{out:?}");
    assert_eq!(
        out.stderr,
        format!("tp: refused: 127.0.0.1:{closed} refused the connection\n")
    );
    // Not loopback: denied.
    let out = run_tp(&config, ["10.0.0.1", "22"], b"").await;
    assert_eq!(out.code(), 10, "{out:?}");
    assert!(out.stderr.starts_with("tp: denied: "), "{}", out.stderr);
    // The server is not there at all: a local error.
    let down = server.addr();
    server.cancel();
    tp_tests::assert_eventually!(
        std::net::TcpStream::connect(down).is_err(),
        "the server on {down} stopped listening"
    );
    let out = run_tp(&config, ["127.0.0.1", closed.as_str()], b"").await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.contains("cannot connect to server"),
        "{}",
        out.stderr
    );
}

/// Global flags go before the subcommand as well as after it: the brief's and the
/// quickstart's `tp --config FILE up HOST:PORT LOCALPORT` form.
#[tokio::test]
async fn global_flags_before_the_up_subcommand() {
    let server = TestServer::start().await;
    let config = server.client_config_for(&pki().alice);
    let target = EchoTarget::start().await;
    for flags_first in [false, true] {
        let mut cmd = Command::new(tp_bin());
        cmd.env("XDG_CACHE_HOME", tp_tests::bins::cache_dir(&config));
        if flags_first {
            cmd.arg("--config").arg(&config).arg("up");
        } else {
            cmd.arg("up").arg("--config").arg(&config);
        }
        cmd.arg(target.addr().to_string()).arg("0");
        let up = TpUp::spawn(cmd).await;
        assert_ne!(up.port(), 0);
        assert_eq!(up.terminate().await.code(), Some(0));
    }
    // The same for `connect`.
    let port = target.port().to_string();
    let out = run_tp(&config, ["connect", "127.0.0.1", port.as_str()], b"ping").await;
    assert_eq!(out.code(), 0, "tp --config FILE connect HOST PORT: {out:?}");
    assert_eq!(out.stdout, b"ping");
}

/// `tp-up ARGS` is `tp up ARGS`: the binary, linked under that name, forwards a
/// local port (docs/client.md: a symlink is enough).
#[tokio::test]
async fn tp_started_as_tp_up_forwards_a_local_port() {
    let server = TestServer::start().await;
    let config = server.client_config_for(&pki().alice);
    let target = EchoTarget::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("tp-up");
    std::os::unix::fs::symlink(tp_bin(), &link).expect("symlink tp-up");
    let mut cmd = Command::new(&link);
    cmd.env("XDG_CACHE_HOME", tp_tests::bins::cache_dir(&config))
        .arg("--config")
        .arg(&config)
        .arg(target.addr().to_string())
        .arg("0");
    let up = TpUp::spawn(cmd).await;

    let mut local = tokio::net::TcpStream::connect(("127.0.0.1", up.port()))
        .await
        .expect("connect the forwarded port");
    let back = tp_tests::client::round_trip(&mut local, b"through tp-up").await;
    assert_eq!(back, b"through tp-up");
    assert_eq!(target.accepted(), 1);
    server
        .expect_log(&["tunnel closed", "id=alice@test", "bytes.up=13"])
        .await;
    assert_eq!(up.terminate().await.code(), Some(0));
}
