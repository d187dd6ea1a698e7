//! The product's binaries (`tp`, `tp-server`) and the peers' (ssh, sshd), run as
//! child processes with deadlines. Children are killed when dropped.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Deadline for a child that is expected to finish by itself.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(30);

/// `target/debug` (or whichever profile built the test binary).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/e2e-HASH -> target/debug
    let deps = exe.parent().expect("the test binary is in a directory");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("deps has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

fn product_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// The `tp` client binary.
pub fn tp_bin() -> PathBuf {
    product_bin("tp")
}

/// The `tp-server` binary.
pub fn tp_server_bin() -> PathBuf {
    product_bin("tp-server")
}

/// Finds a system program in `PATH`, `/usr/sbin` or `/usr/bin`; panics with an
/// install hint if it is missing.
pub fn system_bin(name: &str) -> PathBuf {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: install it (scripts/test.sh installs every peer the tests use)"
            )
        })
}

/// How a finished child ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr, lossily decoded.
    pub stderr: String,
}

impl Finished {
    /// The exit code; panics if it was killed by a signal.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }

    /// stdout, lossily decoded.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `cmd` to completion with `stdin` as its input, under [`CHILD_DEADLINE`].
pub async fn run(mut cmd: Command, stdin: &[u8]) -> Finished {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let feeder = tokio::spawn(async move {
        // The child may exit without reading all of it.
        let _ = input.write_all(&stdin).await;
    });
    let output = crate::within(&what, CHILD_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
    feeder.abort();
    Finished {
        status: output.status,
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A `tp` command with `--config config`. Its transport cache
/// (`$XDG_CACHE_HOME/tp/transport`) lives beside the config, so tests never
/// share it or touch the user's.
pub fn tp(config: &Path) -> Command {
    let mut cmd = Command::new(tp_bin());
    cmd.arg("--config")
        .arg(config)
        .env("XDG_CACHE_HOME", cache_dir(config));
    cmd
}

/// A copy of the `tp` config `config`, named `name` beside it, that dials
/// `127.0.0.1:port` instead (through a relay in front of the server, say).
pub fn config_via(config: &Path, port: u16, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(config).expect("reading the client config");
    let server_line = text
        .lines()
        .find(|l| l.starts_with("server = "))
        .expect("a server line")
        .to_owned();
    let text = text.replace(&server_line, &format!("server = \"127.0.0.1:{port}\""));
    let path = config.with_file_name(name);
    std::fs::write(&path, text).expect("writing the client config");
    path
}

/// The transport cache folder of the `tp` runs that use `config`.
pub fn cache_dir(config: &Path) -> PathBuf {
    config
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("cache")
}

/// Runs `tp --config CONFIG ARGS...` with `stdin` as input.
pub async fn run_tp<I, S>(config: &Path, args: I, stdin: &[u8]) -> Finished
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = tp(config);
    cmd.args(args);
    run(cmd, stdin).await
}

/// Collects a child's output lines in the background.
#[derive(Debug, Clone, Default)]
pub struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    closed: Arc<AtomicBool>,
}

impl Lines {
    /// Reads `from` line by line into a new collector until EOF.
    pub fn collect<R: AsyncRead + Unpin + Send + 'static>(from: R) -> Lines {
        let lines = Lines::default();
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(from).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line);
            }
            sink.closed.store(true, Ordering::SeqCst);
        });
        lines
    }

    /// The lines so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// All lines, once the stream has ended (or what there is after `limit`).
    pub async fn until_closed(&self, limit: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.closed.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.snapshot()
    }

    /// Waits (up to [`crate::EVENTUALLY`]) for a line satisfying `pred` and returns it.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + crate::EVENTUALLY;
        loop {
            let lines = self.snapshot();
            if let Some(line) = lines.iter().find(|l| pred(l)) {
                return line.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no line {what} after {:?}; lines:\n{}",
                crate::EVENTUALLY,
                lines.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `tp up TARGET 0`, running: the local port it chose, and its stderr.
#[derive(Debug)]
pub struct TpUp {
    child: Child,
    port: u16,
    stderr: Lines,
}

impl TpUp {
    /// Starts `tp up --config CONFIG TARGET 0` and waits for its
    /// `tp up: forwarding 127.0.0.1:PORT -> TARGET` line.
    pub async fn start(config: &Path, target: &str) -> TpUp {
        let mut cmd = tp(config);
        cmd.arg("up").arg(target).arg("0");
        TpUp::spawn(cmd).await
    }

    /// Starts a prepared `tp ... up ...` command and waits for its forwarding line.
    pub async fn spawn(mut cmd: Command) -> TpUp {
        let what = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stderr = Lines::collect(child.stderr.take().expect("piped stderr"));
        let deadline = tokio::time::Instant::now() + crate::EVENTUALLY;
        let line = loop {
            if let Some(line) = stderr
                .snapshot()
                .into_iter()
                .find(|l| l.starts_with("tp up: forwarding "))
            {
                break line;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let lines = stderr.until_closed(Duration::from_secs(2)).await;
                panic!("{what} exited with {status}:\n{}", lines.join("\n"));
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} printed no forwarding line:\n{}",
                stderr.snapshot().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let port = parse_forwarding_port(&line)
            .unwrap_or_else(|| panic!("cannot read the local port from {line:?}"));
        TpUp {
            child,
            port,
            stderr,
        }
    }

    /// The local port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its stderr lines so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.snapshot()
    }

    /// Waits (up to [`crate::EVENTUALLY`]) for a stderr line containing every
    /// one of `needles`, and returns it.
    pub async fn expect_stderr(&self, needles: &[&str]) -> String {
        self.stderr
            .wait_for(&format!("with {needles:?}"), |line| {
                needles.iter().all(|n| line.contains(n))
            })
            .await
    }

    /// Sends SIGTERM and returns its exit status (it must exit within 10s).
    pub async fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().expect("still running");
        sigterm(pid);
        crate::within(
            "tp up exiting after SIGTERM",
            Duration::from_secs(10),
            self.child.wait(),
        )
        .await
        .expect("waiting for tp up")
    }
}

/// `tp up: forwarding 127.0.0.1:PORT -> TARGET` → PORT.
pub fn parse_forwarding_port(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("tp up: forwarding ")?;
    let (local, _) = rest.split_once(" -> ")?;
    local.rsplit_once(':')?.1.parse().ok()
}

/// Sends SIGTERM to `pid`.
pub fn sigterm(pid: u32) {
    send_signal(pid, "TERM");
}

/// Sends the signal named `name` (`"HUP"`, `"TERM"`...) to `pid`, through kill(1):
/// no libc binding in this crate.
pub fn send_signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}
