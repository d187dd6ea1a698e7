//! SNI passthrough: a ClientHello naming a `[[passthrough]]` route is relayed
//! untouched to a real TLS server (`openssl s_server`), whose own certificate the
//! client sees; other names on the same port still get tp's website and tunnels.

use std::process::Stdio;
use std::time::{Duration, SystemTime};

use tokio::process::{Child, Command};
use tp_server::pki::{LeafSpec, Validity};
use tp_tests::bins::{Finished, run, run_tp, system_bin};
use tp_tests::reverse::free_port;
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, Transport, pki};

/// `openssl s_server -www` on 127.0.0.1 with a certificate for `name`, issued
/// by the test root.
struct SServer {
    _child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl SServer {
    async fn start(name: &str) -> SServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let validity = Validity::for_ttl(SystemTime::now(), Duration::from_secs(3_600));
        let leaf = pki()
            .root
            .issue(&LeafSpec::server(vec![name.to_owned()], vec![], validity))
            .expect("backend certificate");
        let paths = leaf.save(dir.path(), "backend").expect("save");
        let port = free_port();
        let child = Command::new(system_bin("openssl"))
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&paths.cert)
            .arg("-key")
            .arg(&paths.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting openssl s_server");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "openssl s_server did not listen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        SServer {
            _child: child,
            _dir: dir,
            port,
        }
    }
}

/// `openssl s_client -servername NAME` to the tp server: what it prints about
/// the certificate it got.
async fn s_client(server: std::net::SocketAddr, name: &str) -> Finished {
    let mut cmd = Command::new(system_bin("openssl"));
    cmd.args(["s_client", "-brief", "-connect"])
        .arg(server.to_string())
        .args(["-servername", name]);
    run(cmd, b"").await
}

#[tokio::test]
async fn a_passthrough_name_reaches_the_backend_and_its_certificate() {
    let backend = SServer::start("git.example.org").await;
    let server = TestServer::builder()
        .raw(&format!(
            "[[passthrough]]\nnames = [\"git.example.org\", \"*.apps.example.org\"]\nbackend = \"127.0.0.1:{}\"\n",
            backend.port
        ))
        .start()
        .await;

    // The backend's certificate, not tp's (localhost).
    let out = s_client(server.addr(), "git.example.org").await;
    assert!(
        out.stderr.contains("CN = git.example.org") || out.stderr.contains("CN=git.example.org"),
        "{}",
        out.stderr
    );
    // A name no route has: tp's own certificate, the website's handshake.
    let out = s_client(server.addr(), "www.example.org").await;
    assert!(!out.stderr.contains("git.example.org"), "{}", out.stderr);

    // A ClientHello cut into 32-byte records, each its own TCP segment: the
    // name is still read, and the backend gets the records as they came.
    let split = tp_tests::fragment::Fragmenter::start(server.addr(), 32).await;
    let out = s_client(split.addr, "git.example.org").await;
    assert!(
        out.stderr.contains("CN = git.example.org") || out.stderr.contains("CN=git.example.org"),
        "{}",
        out.stderr
    );

    // curl through the passthrough gets s_server's -www page over TLS it verified.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("root.pem");
    std::fs::write(&ca, pki().root.cert_pem()).expect("root");
    let port = server.addr().port();
    let mut curl = Command::new(system_bin("curl"));
    curl.args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .arg("--resolve")
        .arg(format!("git.example.org:{port}:127.0.0.1"))
        .arg(format!("https://git.example.org:{port}/"));
    let out = run(curl, b"").await;
    assert_eq!(out.code(), 0, "curl: {}", out.stderr);
    assert!(
        out.stdout_text().contains("s_server"),
        "{}",
        out.stdout_text()
    );
    server
        .expect_log(&["passthrough closed", "backend=127.0.0.1"])
        .await;

    // A tp client still works on the same port.
    let target = EchoTarget::start().await;
    let config = server.client_config_over(&pki().alice, Transport::Tcp);
    let port = target.port().to_string();
    let out = run_tp(&config, ["127.0.0.1", port.as_str()], b"ping").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, b"ping");
}
