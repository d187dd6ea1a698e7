//! A real nginx on loopback, started by a test in its own folder: an HTTP server
//! whose listener expects a PROXY protocol header and logs the client address it
//! carries, beside the address the connection came from.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::bins::system_bin;

/// The body every request gets.
pub const BODY: &str = "hello from nginx\n";

/// A running nginx (stopped when dropped).
#[derive(Debug)]
pub struct Nginx {
    dir: TempDir,
    port: u16,
    _child: Child,
}

impl Nginx {
    /// Starts nginx on a free 127.0.0.1 port with `listen ... proxy_protocol`.
    /// Its access log has one line per request: `PROXY-ADDR:PROXY-PORT REMOTE-ADDR`.
    pub async fn start_proxy_protocol() -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = crate::reverse::free_port();
            match spawn(dir.path(), port).await {
                Ok(child) => {
                    return Nginx {
                        dir,
                        port,
                        _child: child,
                    };
                }
                Err(why) => failures.push(why),
            }
        }
        panic!("nginx did not start:\n{}", failures.join("\n---\n"));
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The access log lines so far.
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "daemon off;\n\
         master_process off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         \x20 client_body_temp_path {d}/body;\n\
         \x20 proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n\
         \x20 uwsgi_temp_path {d}/uwsgi;\n\
         \x20 scgi_temp_path {d}/scgi;\n\
         \x20 log_format pp '$proxy_protocol_addr:$proxy_protocol_port $remote_addr';\n\
         \x20 access_log {d}/access.log pp;\n\
         \x20 server {{\n\
         \x20   listen 127.0.0.1:{port} proxy_protocol;\n\
         \x20   location / {{ default_type text/plain; return 200 \"{body}\"; }}\n\
         \x20 }}\n\
         }}\n",
        body = BODY.escape_default(),
    )
}

/// One nginx process (`master_process off`): killing it on drop leaves no
/// worker behind.
async fn spawn(dir: &Path, port: u16) -> Result<Child, String> {
    let conf: PathBuf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, port)).map_err(|e| e.to_string())?;
    let mut child = Command::new(system_bin("nginx"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start nginx: {e}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // A probe without a PROXY header is refused by nginx, but it accepts
        // the TCP connection once it listens.
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            return Err(format!("nginx exited with {status}:\n{log}"));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("nginx on port {port} did not listen within 10s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
