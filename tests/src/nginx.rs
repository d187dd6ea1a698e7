//! A real nginx on loopback, started by a test in its own folder. Two shapes:
//! an HTTP server on a TCP port whose listener expects a PROXY protocol header
//! ([`Nginx::start_proxy_protocol`]), and a website behind unix sockets, one for
//! HTTP/1.1 and one for HTTP/2, both expecting a PROXY protocol header
//! ([`Nginx::start_website`]). Both log, per request, the client address the
//! header carries.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::bins::system_bin;

/// The body every request gets.
pub const BODY: &str = "hello from nginx\n";

/// The HTTP/1.1 socket of [`Nginx::start_website`], in its folder.
const HTTP1_SOCKET: &str = "http1.sock";
/// The HTTP/2 (prior knowledge, no TLS) socket of [`Nginx::start_website`].
const H2_SOCKET: &str = "h2.sock";

/// A running nginx (stopped when dropped).
#[derive(Debug)]
pub struct Nginx {
    dir: TempDir,
    site: Site,
    _child: Child,
}

/// What an nginx listens on, and what its access log says.
#[derive(Debug, Clone, Copy)]
enum Site {
    /// `127.0.0.1:PORT proxy_protocol`; logs `PROXY-ADDR:PROXY-PORT REMOTE-ADDR`.
    ProxyProtocolPort(u16),
    /// [`HTTP1_SOCKET`] and [`H2_SOCKET`] in its folder, both `proxy_protocol`;
    /// logs `PROXY-ADDR:PROXY-PORT PROTOCOL`.
    WebsiteSockets,
}

impl Nginx {
    /// Starts nginx on a free 127.0.0.1 port with `listen ... proxy_protocol`.
    /// Its access log has one line per request: `PROXY-ADDR:PROXY-PORT REMOTE-ADDR`.
    pub async fn start_proxy_protocol() -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut failures = Vec::new();
        for _ in 0..5 {
            let site = Site::ProxyProtocolPort(crate::reverse::free_port());
            match spawn(dir.path(), site).await {
                Ok(child) => {
                    return Nginx {
                        dir,
                        site,
                        _child: child,
                    };
                }
                Err(why) => failures.push(why),
            }
        }
        panic!("nginx did not start:\n{}", failures.join("\n---\n"));
    }

    /// Starts nginx as a website backend on two unix sockets in its folder,
    /// [`http1_socket`](Self::http1_socket) (HTTP/1.1) and
    /// [`h2_socket`](Self::h2_socket) (HTTP/2 with prior knowledge), both with
    /// `proxy_protocol`. Its access log has one line per request:
    /// `PROXY-ADDR:PROXY-PORT PROTOCOL` (`HTTP/1.1`, `HTTP/2.0`).
    pub async fn start_website() -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = Site::WebsiteSockets;
        match spawn(dir.path(), site).await {
            Ok(child) => Nginx {
                dir,
                site,
                _child: child,
            },
            Err(why) => panic!("nginx did not start:\n{why}"),
        }
    }

    /// Its port on 127.0.0.1; panics for an nginx on unix sockets.
    pub fn port(&self) -> u16 {
        match self.site {
            Site::ProxyProtocolPort(port) => port,
            Site::WebsiteSockets => panic!("this nginx listens on unix sockets only"),
        }
    }

    /// The HTTP/1.1 socket of [`start_website`](Self::start_website).
    pub fn http1_socket(&self) -> PathBuf {
        self.dir.path().join(HTTP1_SOCKET)
    }

    /// The HTTP/2 socket of [`start_website`](Self::start_website).
    pub fn h2_socket(&self) -> PathBuf {
        self.dir.path().join(H2_SOCKET)
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

impl Site {
    /// The `log_format` and the `listen` lines.
    fn log_and_listen(self, dir: &Path) -> (&'static str, String) {
        match self {
            Site::ProxyProtocolPort(port) => (
                "$proxy_protocol_addr:$proxy_protocol_port $remote_addr",
                format!("listen 127.0.0.1:{port} proxy_protocol;"),
            ),
            Site::WebsiteSockets => (
                "$proxy_protocol_addr:$proxy_protocol_port $server_protocol",
                format!(
                    "listen unix:{} proxy_protocol;\n\
                     \x20   listen unix:{} proxy_protocol http2;",
                    dir.join(HTTP1_SOCKET).display(),
                    dir.join(H2_SOCKET).display(),
                ),
            ),
        }
    }

    /// Whether every listener accepts connections. A probe without a PROXY
    /// header is refused by nginx, but it accepts the connection once it listens.
    async fn listening(self, dir: &Path) -> bool {
        match self {
            Site::ProxyProtocolPort(port) => tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok(),
            Site::WebsiteSockets => {
                tokio::net::UnixStream::connect(dir.join(HTTP1_SOCKET))
                    .await
                    .is_ok()
                    && tokio::net::UnixStream::connect(dir.join(H2_SOCKET))
                        .await
                        .is_ok()
            }
        }
    }
}

fn config(dir: &Path, site: Site) -> String {
    let d = dir.display();
    let (log_format, listen) = site.log_and_listen(dir);
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
         \x20 log_format pp '{log_format}';\n\
         \x20 access_log {d}/access.log pp;\n\
         \x20 server {{\n\
         \x20   {listen}\n\
         \x20   location / {{ default_type text/plain; return 200 \"{body}\"; }}\n\
         \x20 }}\n\
         }}\n",
        body = BODY.escape_default(),
    )
}

/// One nginx process (`master_process off`): killing it on drop leaves no
/// worker behind.
async fn spawn(dir: &Path, site: Site) -> Result<Child, String> {
    let conf: PathBuf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, site)).map_err(|e| e.to_string())?;
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
        if site.listening(dir).await {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            return Err(format!("nginx exited with {status}:\n{log}"));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("nginx ({site:?}) did not listen within 10s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
