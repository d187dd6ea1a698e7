//! A real OpenSSH `sshd` on `127.0.0.1` at an ephemeral port, with a host key and an
//! authorized client key generated at test time by `ssh-keygen`, its own
//! `sshd_config` in a temporary directory, running in the foreground (`-D -e`).
//! Killed when dropped.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::bins::{Finished, Lines, run, system_bin, tp_bin};

/// A running sshd. See the module docs.
#[derive(Debug)]
pub struct Sshd {
    dir: TempDir,
    port: u16,
    user: String,
    child: Child,
    log: Lines,
}

fn keygen(path: &Path) {
    let out = std::process::Command::new(system_bin("ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "tp-e2e", "-f"])
        .arg(path)
        .output()
        .expect("running ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The user the tests log in as: whoever runs them (sshd not running as root can only
/// log in its own user).
fn current_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("running id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// sshd refuses to start without its privilege separation directory; the package's
/// service unit creates it at boot, which a container never ran.
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.exists() {
        let _ = std::fs::create_dir_all(dir);
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

impl Sshd {
    /// Generates keys, writes the config and starts sshd; returns once it listens. Retries on another port if the chosen one was taken meanwhile.
    pub async fn start() -> Sshd {
        ensure_privsep_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        keygen(&dir.path().join("host_key"));
        keygen(&dir.path().join("client_key"));
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("writing authorized_keys");
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            match Sshd::spawn(&dir, port).await {
                Ok((child, log)) => {
                    return Sshd {
                        dir,
                        port,
                        user: current_user(),
                        child,
                        log,
                    };
                }
                Err(why) => failures.push(why),
            }
        }
        panic!("sshd did not start:\n{}", failures.join("\n---\n"));
    }

    async fn spawn(dir: &TempDir, port: u16) -> Result<(Child, Lines), String> {
        let d = dir.path();
        let config = d.join("sshd_config");
        let text = format!(
            "ListenAddress 127.0.0.1:{port}\n\
             HostKey {host_key}\n\
             AuthorizedKeysFile {authorized}\n\
             PidFile none\n\
             UsePAM no\n\
             StrictModes no\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UseDNS no\n\
             LogLevel VERBOSE\n\
             MaxStartups 100\n\
             Subsystem sftp internal-sftp\n",
            host_key = d.join("host_key").display(),
            authorized = d.join("authorized_keys").display(),
        );
        std::fs::write(&config, text).map_err(|e| e.to_string())?;
        let mut child = Command::new(system_bin("sshd"))
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start sshd: {e}"))?;
        let log = Lines::collect(child.stderr.take().expect("piped stderr"));
        // Readiness from its log rather than a probe connection, so that sshd's log
        // shows only the tests' own connections.
        let ready = format!("Server listening on 127.0.0.1 port {port}.");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if log.snapshot().iter().any(|l| l.contains(&ready)) {
                return Ok((child, log));
            }
            if let Ok(Some(status)) = child.try_wait() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(format!(
                    "sshd exited with {status}:\n{}",
                    log.snapshot().join("\n")
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "sshd on port {port} did not say it listens within 10s:\n{}",
                    log.snapshot().join("\n")
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user to log in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// `USER@127.0.0.1`.
    pub fn destination(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    /// The authorized client private key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// A scratch directory that lives as long as the sshd.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// sshd's log so far.
    pub fn log(&self) -> Vec<String> {
        self.log.snapshot()
    }

    /// Options for `ssh` and `scp`: no user config, no host key prompts or records,
    /// never ask for a password, this key only.
    pub fn client_options(&self) -> Vec<String> {
        let mut opts: Vec<String> = [
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
            "-i",
        ]
        .map(str::to_owned)
        .to_vec();
        opts.push(self.client_key().display().to_string());
        opts
    }

    /// Runs `ssh -o ProxyCommand="tp --config CONFIG %h %p" -p PORT USER@HOST
    /// COMMAND` against this sshd: `host` is what tp is asked to reach
    /// (`127.0.0.1`, or a service name).
    pub async fn ssh_through_tp(&self, config: &Path, host: &str, command: &str) -> Finished {
        let mut ssh = self.ssh();
        ssh.arg("-o")
            .arg(format!(
                "ProxyCommand={} --config {} %h %p",
                tp_bin().display(),
                config.display()
            ))
            .arg("-p")
            .arg(self.port().to_string())
            .arg(format!("{}@{host}", self.user))
            .arg(command);
        run(ssh, b"").await
    }

    /// An `ssh` command with [`client_options`](Self::client_options).
    pub fn ssh(&self) -> Command {
        let mut cmd = Command::new(system_bin("ssh"));
        cmd.args(self.client_options())
            .env("XDG_CACHE_HOME", self.cache_dir());
        cmd
    }

    /// Where a `tp` run by ssh as its ProxyCommand keeps its transport cache:
    /// inside this sshd's folder, never the user's.
    pub fn cache_dir(&self) -> std::path::PathBuf {
        self.dir().join("tp-cache")
    }

    /// An `scp` command with [`client_options`](Self::client_options).
    pub fn scp(&self) -> Command {
        let mut cmd = Command::new(system_bin("scp"));
        cmd.args(self.client_options());
        cmd
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!(
                "---- sshd log (port {}) ----\n{}\n----",
                self.port,
                self.log.snapshot().join("\n")
            );
        }
    }
}
