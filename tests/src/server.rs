//! [`TestServer`]: the real server (`tp_server::run`, the code production runs) on
//! `127.0.0.1:0`, configured through a real `server.toml` loaded by
//! `tp_server::Config::load`. Dropping it cancels it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tp_server::pki::Issued;

use crate::logs;
use crate::pki::pki;

/// A policy letting every verified identity reach anything on loopback (and nothing
/// else).
pub const LOOPBACK_POLICY: &str = r#"
[[rule]]
name = "test-loopback"
who = ["*"]
connect = ["localhost", "127.0.0.0/8", "::1/128"]
ports = ["*"]
"#;

/// A policy letting only `bob@test` reach loopback: alice is denied everything.
pub const ONLY_BOB_POLICY: &str = r#"
[[rule]]
name = "only-bob"
who = ["bob@test"]
connect = ["127.0.0.0/8"]
ports = ["*"]
"#;

/// Builds a [`TestServer`]. Defaults: [`LOOPBACK_POLICY`], the test root as client CA,
/// short timeouts (`connect_timeout = "2s"`, `drain_timeout = "1s"`).
#[derive(Debug)]
pub struct TestServerBuilder {
    policy: String,
    limits: Vec<(String, String)>,
    sections: Vec<(String, String, String)>,
    revoked: Vec<String>,
    raw: String,
    top: Vec<(String, String)>,
    client_ca: bool,
}

/// A running server. See the module docs.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    route_addrs: Vec<SocketAddr>,
    dir: TempDir,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), tp_server::RunError>>>,
}

impl TestServer {
    /// A builder with the defaults.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder {
            policy: LOOPBACK_POLICY.to_owned(),
            limits: vec![
                ("connect_timeout".into(), "\"2s\"".into()),
                ("drain_timeout".into(), "\"1s\"".into()),
            ],
            sections: Vec::new(),
            revoked: Vec::new(),
            raw: String::new(),
            top: Vec::new(),
            client_ca: true,
        }
    }

    /// Starts a server with the defaults.
    pub async fn start() -> TestServer {
        TestServer::builder().start().await
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound addresses of the `[[terminate]] listen` entries, in config order
    /// (each `127.0.0.1:0` in a test config gets a free port of its own).
    pub fn route_addrs(&self) -> &[SocketAddr] {
        &self.route_addrs
    }

    /// Its working directory (config, policy, certificates, client configs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its log lines so far.
    pub fn logs(&self) -> Vec<String> {
        logs::lines_for(self.addr)
    }

    /// Waits (up to [`crate::EVENTUALLY`]) for a log line containing every one of
    /// `parts` and returns it; panics with all of the server's lines otherwise.
    pub async fn expect_log(&self, parts: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + crate::EVENTUALLY;
        loop {
            let lines = self.logs();
            if let Some(line) = lines.iter().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.clone();
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "no log line of the server on {} contains all of {parts:?}; its lines:\n{}",
                    self.addr,
                    lines.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lines (so far) containing every one of `parts`.
    pub fn log_lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.logs()
            .into_iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .collect()
    }

    /// Writes a `tp` client config for `leaf` (its chain and key, the root as the
    /// server CA, `server_name = "localhost"`, transport `auto`) and returns its path.
    pub fn client_config_for(&self, leaf: &Issued) -> PathBuf {
        self.write_client_config(leaf, "auto")
    }

    /// Like [`client_config_for`](Self::client_config_for), pinned to `transport`.
    pub fn client_config_over(&self, leaf: &Issued, transport: crate::Transport) -> PathBuf {
        self.write_client_config(leaf, transport.name())
    }

    /// Like [`client_config_over`](Self::client_config_over) TLS/TCP, in
    /// stealth mode (`stealth = true`).
    pub fn stealth_client_config(&self, leaf: &Issued) -> PathBuf {
        let path = self.write_client_config(leaf, "tcp");
        let mut text = std::fs::read_to_string(&path).expect("reading the client config");
        text.push_str("stealth = true\n");
        let stealthy = path.with_extension("stealth.toml");
        std::fs::write(&stealthy, text).expect("writing the stealth client config");
        stealthy
    }

    fn write_client_config(&self, leaf: &Issued, transport: &str) -> PathBuf {
        let stem = format!("client-{}-{transport}", leaf.serial_hex);
        let dir = self.dir.path();
        leaf.save(dir, &stem).expect("saving the client leaf");
        let path = dir.join(format!("{stem}.toml"));
        let text = format!(
            "server = \"{}\"\nserver_name = \"localhost\"\ncert = \"{stem}.pem\"\nkey = \"{stem}.key\"\nca = \"root.pem\"\nconnect_timeout = \"5s\"\ntransport = \"{transport}\"\n",
            self.addr
        );
        std::fs::write(&path, text).expect("writing the client config");
        path
    }

    /// What `openssl s_client -msg ARGS` printed (stdout, then stderr) for a
    /// handshake with this server: the test root as CA, no client certificate,
    /// stdin closed at once. `args` e.g. `-servername localhost -alpn h2`.
    pub async fn s_client(&self, args: &[&str]) -> String {
        let ca = self.dir().join("s_client-ca.pem");
        std::fs::write(&ca, pki().root.cert_pem()).expect("writing the CA file for openssl");
        let mut cmd = tokio::process::Command::new(crate::bins::system_bin("openssl"));
        cmd.arg("s_client")
            .arg("-connect")
            .arg(self.addr.to_string())
            .arg("-msg")
            .args(args)
            .arg("-CAfile")
            .arg(&ca);
        let out = crate::bins::run(cmd, b"").await;
        format!("{}\n{}", out.stdout_text(), out.stderr)
    }

    /// Runs `tp` as alice over TLS/TCP, sending `ping`, to a fresh echo target:
    /// what `tp` did, and how many connections the target accepted.
    pub async fn tp_echo(&self) -> (crate::bins::Finished, usize) {
        let target = crate::target::EchoTarget::start().await;
        let config = self.client_config_over(&pki().alice, crate::Transport::Tcp);
        let port = target.port().to_string();
        let out = crate::bins::run_tp(&config, ["127.0.0.1", port.as_str()], b"ping").await;
        (out, target.accepted())
    }

    /// Tells the server to shut down (it stops listening and drains), keeping its
    /// directory and client configs.
    pub fn cancel(&self) {
        self.shutdown.cancel();
    }

    /// Cancels the server and waits for `run` to return (drain included).
    pub async fn shutdown(mut self) -> Result<(), tp_server::RunError> {
        self.shutdown.cancel();
        let task = self
            .task
            .take()
            .expect("the server task is there until shutdown");
        crate::within("server shutdown", Duration::from_secs(10), task)
            .await
            .expect("the server task panicked")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if std::thread::panicking() {
            eprintln!(
                "---- log of the server on {} ----\n{}\n----",
                self.addr,
                self.logs().join("\n")
            );
        }
    }
}

impl TestServerBuilder {
    /// The policy file's text.
    pub fn policy(mut self, toml: &str) -> Self {
        toml.clone_into(&mut self.policy);
        self
    }

    /// Sets a `[limits]` key to a duration string (`"1s"`) or a number.
    pub fn limit(mut self, key: &str, value: &str) -> Self {
        let value = if value.bytes().all(|b| b.is_ascii_digit()) {
            value.to_owned()
        } else {
            format!("{value:?}")
        };
        self.limits.retain(|(k, _)| k != key);
        self.limits.push((key.to_owned(), value));
        self
    }

    /// Sets `key` in `[section]` (e.g. `quic`) to a TOML value written as is.
    pub fn section(mut self, section: &str, key: &str, toml_value: &str) -> Self {
        self.sections
            .push((section.to_owned(), key.to_owned(), toml_value.to_owned()));
        self
    }

    /// The website is `nginx`: HTTP/1.1 to its HTTP/1.1 socket, `h2` to its
    /// HTTP/2 socket, PROXY protocol by default.
    pub fn in_front_of(self, nginx: &crate::nginx::Nginx) -> Self {
        let socket = |path: PathBuf| format!("\"unix:{}\"", path.display());
        self.section("website", "backend", &socket(nginx.http1_socket()))
            .section("website", "h2_backend", &socket(nginx.h2_socket()))
    }

    /// Appends `toml` at the end of the config as is (arrays of tables such as
    /// `[[passthrough]]`).
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push_str(toml);
        self.raw.push('\n');
        self
    }

    /// Sets a top-level key (before any table, e.g. `workers`) to a TOML value
    /// written as is.
    pub fn top(mut self, key: &str, toml_value: &str) -> Self {
        self.top.retain(|(k, _)| k != key);
        self.top.push((key.to_owned(), toml_value.to_owned()));
        self
    }

    /// Leaves `[tls] client_ca` out: no client certificate is trusted, no tunnel
    /// opens.
    pub fn no_client_ca(mut self) -> Self {
        self.client_ca = false;
        self
    }

    /// Puts `leaf`'s serial on the revocation list.
    pub fn revoked(mut self, leaf: &Issued) -> Self {
        self.revoked.push(leaf.serial_hex.clone());
        self
    }

    /// [`write_files`](Self::write_files), listening on a port free on both TCP
    /// and UDP instead of port 0, so that a `ServerProcess` started again on the
    /// same config (a restart) listens where the first one did. Returns the
    /// config file and the port.
    pub fn write_files_on_free_port(&self, dir: &Path) -> (PathBuf, u16) {
        let config = self.write_files(dir);
        let port = crate::process::free_port_both();
        let text = std::fs::read_to_string(&config).expect("reading the config");
        let text = text.replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
        std::fs::write(&config, text).expect("writing the config");
        (config, port)
    }

    /// Writes `server.toml` and the files it names into `dir` and returns its path.
    pub fn write_files(&self, dir: &Path) -> PathBuf {
        let pki = pki();
        pki.server
            .save(dir, "server")
            .expect("saving the server certificate");
        std::fs::write(dir.join("root.pem"), pki.root.cert_pem()).expect("writing root.pem");
        std::fs::write(dir.join("policy.toml"), &self.policy).expect("writing policy.toml");
        let mut config = String::from("listen = \"127.0.0.1:0\"\npolicy = \"policy.toml\"\n");
        for (key, value) in &self.top {
            let _ = writeln!(config, "{key} = {value}");
        }
        config.push_str("\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n");
        if self.client_ca {
            config.push_str("client_ca = \"root.pem\"\n");
        }
        if !self.revoked.is_empty() {
            let mut list = String::from("# revoked by the test\n");
            for serial in &self.revoked {
                let _ = writeln!(list, "{serial}");
            }
            std::fs::write(dir.join("revoked.txt"), list).expect("writing revoked.txt");
            config.push_str("revoked = \"revoked.txt\"\n");
        }
        config.push_str("\n[limits]\n");
        for (key, value) in &self.limits {
            let _ = writeln!(config, "{key} = {value}");
        }
        // One table per section, in the order first named: TOML refuses a table
        // defined twice.
        let mut named: Vec<&str> = Vec::new();
        for (section, _, _) in &self.sections {
            if !named.contains(&section.as_str()) {
                named.push(section);
            }
        }
        for section in named {
            let _ = writeln!(config, "\n[{section}]");
            for (_, key, value) in self.sections.iter().filter(|(s, _, _)| s == section) {
                let _ = writeln!(config, "{key} = {value}");
            }
        }
        config.push('\n');
        config.push_str(&self.raw);
        let path = dir.join("server.toml");
        std::fs::write(&path, config).expect("writing server.toml");
        path
    }

    /// Writes the files, loads them with `Config::load`, binds `127.0.0.1:0` and runs
    /// the server in a task.
    pub async fn start(self) -> TestServer {
        logs::init();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = self.write_files(dir.path());
        TestServer::start_config(dir, &path).await
    }
}

impl TestServer {
    /// Loads the config at `path` (in `dir`, which the server keeps) and runs
    /// it on 127.0.0.1:0, whatever its `listen` says; route listeners bind as
    /// configured.
    pub async fn start_config(dir: TempDir, path: &Path) -> TestServer {
        let config = tp_server::Config::load(path)
            .unwrap_or_else(|e| panic!("the test server config does not load: {e}"));
        // TLS/TCP and QUIC on one port, as in production.
        let listeners = tp_server::Listeners::bind(([127, 0, 0, 1], 0).into(), true)
            .await
            .expect("binding 127.0.0.1:0 (TCP and UDP)")
            .bind_routes(&config.terminate)
            .await
            .expect("binding the [[terminate]] listen addresses");
        let addr = listeners.local_addr().expect("local_addr");
        let route_addrs = (listeners
            .route_addrs()
            .expect("route addresses")
            .into_iter())
        .map(|(_, bound)| bound)
        .collect();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tp_server::run(config, listeners, shutdown.clone()));
        TestServer {
            addr,
            route_addrs,
            dir,
            shutdown,
            task: Some(task),
        }
    }
}
