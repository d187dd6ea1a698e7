//! A real DNS server for tests: dnsmasq on loopback.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tp_server::pki::Issued;

use crate::bins::{Finished, run, system_bin};
use crate::reverse::free_port;

/// dnsmasq on 127.0.0.1 answering `dot.test` with 192.0.2.53 (UDP and TCP).
pub async fn dnsmasq() -> (Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new(system_bin("dnsmasq"))
            .args([
                "--keep-in-foreground",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--pid-file",
                "--address=/dot.test/192.0.2.53",
            ])
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting dnsmasq");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return (child, port);
            }
            if child.try_wait().ok().flatten().is_some() || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("dnsmasq did not start");
}

/// `dig +tls +short dot.test A` to 127.0.0.1:`port`, verifying the server's
/// certificate for `localhost` against the test root.
pub async fn dig_tls(port: u16) -> Finished {
    dig_tls_as(port, None).await
}

/// Like [`dig_tls`], presenting `leaf` (its chain and key) as the client
/// certificate when given.
pub async fn dig_tls_as(port: u16, leaf: Option<&Issued>) -> Finished {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("root.pem");
    std::fs::write(&ca, crate::pki().root.cert_pem()).expect("root");
    let mut dig = Command::new(system_bin("dig"));
    dig.arg("@127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .arg("+tls")
        .arg(format!("+tls-ca={}", ca.display()))
        .arg("+tls-hostname=localhost");
    if let Some(leaf) = leaf {
        let files = leaf
            .save(dir.path(), "client")
            .expect("saving the client leaf");
        dig.arg(format!("+tls-certfile={}", files.cert.display()))
            .arg(format!("+tls-keyfile={}", files.key.display()));
    }
    dig.args(["+short", "+tries=1", "+time=5", "dot.test", "A"]);
    run(dig, b"").await
}
