//! `tp-server run` as a real process, for what only a process shows: signals,
//! restarts on the same port.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::bins::{Lines, send_signal, tp_server_bin};

/// `tp-server run -c CONFIG` on the port the config names (`127.0.0.1:0`).
#[derive(Debug)]
pub struct ServerProcess {
    /// The process.
    pub child: Child,
    /// Its stderr, line by line.
    pub stderr: Lines,
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
}

impl ServerProcess {
    /// Starts it and waits until it says where it listens.
    pub async fn start(config: &Path) -> ServerProcess {
        let mut child = Command::new(tp_server_bin())
            .arg("run")
            .arg("-c")
            .arg(config)
            .env("TP_LOG", "info,tp_server=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting tp-server");
        let stderr = Lines::collect(child.stderr.take().expect("piped stderr"));
        let line = stderr
            .wait_for("saying where it listens", |l| {
                l.contains("tp-server listening")
            })
            .await;
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no listen=ADDR in {line:?}"));
        ServerProcess {
            child,
            stderr,
            addr,
        }
    }

    /// Sends SIGHUP and waits for a line after it containing `outcome`.
    pub async fn reload(&self, outcome: &str) -> String {
        let before = self.stderr.snapshot().len();
        send_signal(self.child.id().expect("running"), "HUP");
        let deadline = tokio::time::Instant::now() + crate::EVENTUALLY;
        loop {
            let lines = self.stderr.snapshot();
            if let Some(line) = lines[before..].iter().find(|l| l.contains(outcome)) {
                return line.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {outcome:?} line after SIGHUP:\n{}",
                lines[before..].join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A free port on 127.0.0.1 for both TCP and UDP (checked, then released).
pub fn free_port_both() -> u16 {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
        let port = tcp.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP");
}
