//! `tp-server quickstart` as a user runs it: a subprocess whose printed lines are
//! used as printed, against a real sshd. A second run reuses the CA. SIGTERM drains
//! (open tunnels finish, new ones are refused) and exits 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tp_tests::bins::{Lines, TpUp, run, run_tp, sigterm, tp_bin, tp_server_bin};
use tp_tests::target::EchoTarget;
use tp_tests::{Sshd, within};

/// A running `tp-server quickstart` and what it printed.
struct Quickstart {
    child: Child,
    stdout: Lines,
    stderr: Lines,
    /// The address it listens on.
    addr: SocketAddr,
    /// The ProxyCommand from the printed ssh line, `%h %p` included.
    proxy_command: String,
    /// The printed `tp ... up 127.0.0.1:22 2222` line, split into words.
    up_words: Vec<String>,
    /// The client config the printed commands name.
    client_config: PathBuf,
}

impl Quickstart {
    async fn start(dir: &Path) -> Quickstart {
        let mut cmd = Command::new(tp_server_bin());
        cmd.arg("quickstart")
            .arg("--dir")
            .arg(dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            // Whatever the developer's environment says: stderr is a pipe here.
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("starting tp-server quickstart");
        let stdout = Lines::collect(child.stdout.take().expect("stdout"));
        let stderr = Lines::collect(child.stderr.take().expect("stderr"));
        stdout
            .wait_for("ending the instructions (Policy: ...)", |l| {
                l.starts_with("Policy: ")
            })
            .await;
        let printed = stdout.snapshot();

        let listening = find(&printed, "tp-server listening on ");
        let addr = listening
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {listening:?}"));

        let ssh = find(&printed, "ssh -o ProxyCommand=");
        let proxy_command = ssh
            .split_once("ProxyCommand=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(cmd, _)| cmd.to_owned())
            .unwrap_or_else(|| panic!("no quoted ProxyCommand in {ssh:?}"));
        assert!(proxy_command.ends_with(" %h %p"), "{proxy_command}");

        let up = printed
            .iter()
            .map(|l| l.trim())
            .find(|l| l.ends_with(" up 127.0.0.1:22 2222"))
            .unwrap_or_else(|| panic!("no `tp up` line in:\n{}", printed.join("\n")));
        let up_words: Vec<String> = up.split_whitespace().map(str::to_owned).collect();

        let words: Vec<&str> = proxy_command.split_whitespace().collect();
        assert_eq!(
            Path::new(words[0]),
            tp_bin(),
            "quickstart names the tp next to tp-server"
        );
        assert_eq!(words[1], "--config", "{proxy_command}");
        let client_config = PathBuf::from(words[2]);
        assert!(client_config.is_file(), "{}", client_config.display());
        Quickstart {
            child,
            stdout,
            stderr,
            addr,
            proxy_command,
            up_words,
            client_config,
        }
    }

    /// Sends SIGTERM and waits (at most `limit`) for the exit.
    async fn terminate(&mut self, limit: Duration) -> ExitStatus {
        sigterm(self.child.id().expect("running"));
        within("tp-server exiting after SIGTERM", limit, self.child.wait())
            .await
            .expect("waiting for tp-server")
    }
}

fn find(lines: &[String], needle: &str) -> String {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{}", lines.join("\n")))
        .trim()
        .to_owned()
}

async fn ssh_echo(sshd: &Sshd, proxy_command: &str, word: &str) {
    let mut ssh = sshd.ssh();
    ssh.arg("-o")
        .arg(format!("ProxyCommand={proxy_command}"))
        .arg("-p")
        .arg(sshd.port().to_string())
        .arg(sshd.destination())
        .arg(format!("echo {word}"));
    let out = run(ssh, b"").await;
    assert_eq!(
        out.code(),
        0,
        "ssh through the printed ProxyCommand: {}",
        out.stderr
    );
    assert_eq!(out.stdout_text(), format!("{word}\n"));
}

#[tokio::test]
async fn printed_ssh_line_works_the_ca_is_reused_and_sigterm_exits_0() {
    let sshd = Sshd::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("qs");

    let mut first = Quickstart::start(&dir).await;
    ssh_echo(&sshd, &first.proxy_command, "first-run").await;
    let ca = std::fs::read(dir.join("ca/ca.pem")).expect("ca/ca.pem");
    let status = first.terminate(Duration::from_secs(5)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "stderr:\n{}",
        first.stderr.snapshot().join("\n")
    );
    let stderr = first
        .stderr
        .until_closed(Duration::from_secs(5))
        .await
        .join("\n");
    assert!(stderr.contains("SIGTERM: draining"), "{stderr}");
    assert!(stderr.contains("tp-server stopped"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escapes in a piped log: {stderr:?}"
    );

    // Again on the same folder: same CA, a new port, the new printed line works.
    let mut second = Quickstart::start(&dir).await;
    assert_eq!(
        std::fs::read(dir.join("ca/ca.pem")).expect("ca/ca.pem"),
        ca,
        "the second run reuses the CA"
    );
    assert_ne!(second.addr, first.addr);
    ssh_echo(&sshd, &second.proxy_command, "second-run").await;
    assert_eq!(
        second.terminate(Duration::from_secs(5)).await.code(),
        Some(0)
    );
    drop(first.stdout);
}

#[tokio::test]
async fn sigterm_drains_open_tunnels_and_refuses_new_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut qs = Quickstart::start(&tmp.path().join("qs")).await;
    let target = EchoTarget::start().await;

    // An open tunnel through the printed config, via the tp binary.
    let mut cmd = Command::new(tp_bin());
    cmd.env("XDG_CACHE_HOME", tmp.path().join("cache"))
        .arg("--config")
        .arg(&qs.client_config)
        .arg("127.0.0.1")
        .arg(target.port().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut tunnel = cmd.spawn().expect("tp");
    let mut input = tunnel.stdin.take().expect("stdin");
    let mut output = tunnel.stdout.take().expect("stdout");
    let mut echo = [0u8; 11];
    input.write_all(b"before-term").await.expect("write");
    input.flush().await.expect("flush");
    within(
        "echo before SIGTERM",
        Duration::from_secs(10),
        output.read_exact(&mut echo),
    )
    .await
    .expect("read");
    assert_eq!(&echo, b"before-term");

    sigterm(qs.child.id().expect("running"));
    qs.stderr
        .wait_for("saying it drains", |l| {
            l.contains("no new connections; draining")
        })
        .await;

    // New tunnels are refused (the listener is closed)...
    let port = target.port().to_string();
    let out = run_tp(&qs.client_config, ["127.0.0.1", port.as_str()], b"").await;
    assert_eq!(out.code(), 1, "a new tunnel while draining: {out:?}");
    assert!(
        out.stderr.contains("cannot connect to server"),
        "{}",
        out.stderr
    );
    // ...the open one still carries bytes...
    input.write_all(b"after--term").await.expect("write");
    input.flush().await.expect("flush");
    within(
        "echo after SIGTERM",
        Duration::from_secs(10),
        output.read_exact(&mut echo),
    )
    .await
    .expect("read");
    assert_eq!(&echo, b"after--term");
    // ...and when it ends, the server exits 0 without waiting for the deadline.
    drop(input);
    let mut rest = Vec::new();
    within(
        "the tunnel's end",
        Duration::from_secs(10),
        output.read_to_end(&mut rest),
    )
    .await
    .expect("read");
    assert!(rest.is_empty());
    let status = within(
        "tp-server exiting",
        Duration::from_secs(10),
        qs.child.wait(),
    )
    .await
    .expect("wait");
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        qs.stderr.snapshot().join("\n")
    );
    let tp_status = within("tp exiting", Duration::from_secs(10), tunnel.wait())
        .await
        .expect("wait");
    assert_eq!(tp_status.code(), Some(0));
}

#[tokio::test]
async fn printed_tp_up_line_works() {
    let sshd = Sshd::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let qs = Quickstart::start(&tmp.path().join("qs")).await;
    // The printed line as printed, with sshd's port and a free local port.
    let words = &qs.up_words;
    let mut cmd = Command::new(&words[0]);
    cmd.env("XDG_CACHE_HOME", tmp.path().join("cache"));
    for word in &words[1..] {
        cmd.arg(match word.as_str() {
            "127.0.0.1:22" => format!("127.0.0.1:{}", sshd.port()),
            "2222" => "0".to_owned(),
            other => other.to_owned(),
        });
    }
    let up = TpUp::spawn(cmd).await;
    let mut ssh = sshd.ssh();
    ssh.arg("-p")
        .arg(up.port().to_string())
        .arg(sshd.destination())
        .arg("echo via-tp-up");
    let out = run(ssh, b"").await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout_text(), "via-tp-up\n");
}

#[tokio::test]
async fn printed_policy_check_line_works() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let qs = Quickstart::start(&tmp.path().join("qs")).await;
    let printed = qs.stdout.snapshot();
    let line = find(&printed, " policy check -c ");
    let words: Vec<&str> = line.split_whitespace().collect();
    // The binary itself, so the line works without tp-server on PATH.
    assert_eq!(Path::new(words[0]), tp_server_bin(), "{line}");
    let mut cmd = Command::new(words[0]);
    cmd.args(&words[1..]);
    let out = run(cmd, b"").await;
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout_text().contains("allow"), "{out:?}");
}
