//! The systems under test. Each one, once started, offers a plain-TCP entry on the
//! client side that ends up, after mutual TLS 1.3 across loopback, at the target.
//! For (g), tp and nginx also start as Signal proxies ([`start_signal`]).

mod haproxy;
mod nginx;
mod nginx_signal;
mod reference;
mod socat;
mod stunnel;
mod tp;
mod tp_signal;
mod tp_stdio;

pub(crate) use tp_stdio::Stdio;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::certs::Certs;
use crate::children::Child;
use crate::link::{self, Link};
use crate::ports::Ports;

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum SystemId {
    Tp,
    /// tp with `tp up --transport quic` (scenario (f)); skipped until the client has it.
    TpQuic,
    Stunnel,
    Haproxy,
    Nginx,
    Socat,
    /// Reference: the load generator talks to the target directly.
    Direct,
    /// Reference: two plain TCP relay hops (tp-bench processes), no TLS.
    Relay,
}

impl SystemId {
    pub(crate) const ALL: [SystemId; 8] = [
        SystemId::Tp,
        SystemId::TpQuic,
        SystemId::Stunnel,
        SystemId::Haproxy,
        SystemId::Nginx,
        SystemId::Socat,
        SystemId::Direct,
        SystemId::Relay,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            SystemId::Tp => "tp",
            SystemId::TpQuic => "tp-quic",
            SystemId::Stunnel => "stunnel",
            SystemId::Haproxy => "haproxy",
            SystemId::Nginx => "nginx",
            SystemId::Socat => "socat",
            SystemId::Direct => "direct",
            SystemId::Relay => "relay",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|id| id.name() == s.trim())
    }

    /// A TLS tunnel we compare tp against (not tp, not a reference).
    pub(crate) fn is_peer(self) -> bool {
        matches!(
            self,
            SystemId::Stunnel | SystemId::Haproxy | SystemId::Nginx | SystemId::Socat
        )
    }

    /// At most this many idle tunnels, whatever was asked: socat forks one process
    /// per connection on each side, and 10,000 of them would exhaust pids and memory.
    pub(crate) fn idle_cap(self) -> Option<usize> {
        match self {
            SystemId::Socat => Some(1_000),
            _ => None,
        }
    }

    /// What the system runs, for the report.
    pub(crate) fn setup(self) -> &'static str {
        match self {
            SystemId::Tp => tp::SETUP,
            SystemId::TpQuic => tp::QUIC_SETUP,
            SystemId::Stunnel => stunnel::SETUP,
            SystemId::Haproxy => haproxy::SETUP,
            SystemId::Nginx => nginx::SETUP,
            SystemId::Socat => socat::SETUP,
            SystemId::Direct => reference::DIRECT_SETUP,
            SystemId::Relay => reference::RELAY_SETUP,
        }
    }
}

/// What every system needs to start.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) bin_dir: PathBuf,
    pub(crate) self_exe: PathBuf,
    pub(crate) work_dir: PathBuf,
    pub(crate) certs: Certs,
    pub(crate) ports: Arc<Ports>,
    /// The target, as the server sides reach it.
    pub(crate) target: SocketAddr,
    /// The stand-in Signal host, when (g) runs.
    pub(crate) signal_host: Option<SocketAddr>,
    /// For (h): the server sides and the target run across this link, in its
    /// namespace; otherwise everything runs on this namespace's loopback.
    pub(crate) far: Option<Link>,
}

impl Ctx {
    /// A fresh directory for one start of one system.
    fn dir(&self, system: SystemId, tag: &str) -> anyhow::Result<PathBuf> {
        let dir = self.work_dir.join("systems").join(system.name()).join(tag);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// A free address for a server side to listen on: on loopback, or on the far end
    /// of the link.
    fn server_addr(&self) -> anyhow::Result<SocketAddr> {
        let port = self.ports.take()?.port();
        let host = if self.far.is_some() {
            link::FAR
        } else {
            Ipv4Addr::LOCALHOST
        };
        Ok(SocketAddr::from((host, port)))
    }

    /// `cmd` as a server side runs it: as it is, or in the far namespace.
    fn server_side(&self, cmd: Command) -> Command {
        match &self.far {
            Some(link) => link.far_command(&cmd),
            None => cmd,
        }
    }

    /// The target as the load generator reaches it (the reference with no tunnel).
    fn target_from_here(&self) -> SocketAddr {
        match self.far {
            Some(_) => SocketAddr::from((link::FAR, self.target.port())),
            None => self.target,
        }
    }
}

/// A started system. Dropping it stops every process it started.
#[derive(Debug)]
pub(crate) struct Running {
    /// Where the load generator connects.
    pub(crate) entry: SocketAddr,
    /// The server side's TLS port (None for the references without TLS).
    pub(crate) tls_port: Option<SocketAddr>,
    /// Process group of the server side, for memory.
    pub(crate) server: Option<Child>,
    /// Process group of the client side, for memory.
    pub(crate) client: Option<Child>,
}

/// A started Signal proxy (scenario (g)). Dropping it stops every process it started.
#[derive(Debug)]
pub(crate) struct SignalProxy {
    /// Where Signal's apps connect: the outer TLS.
    pub(crate) entry: SocketAddr,
    /// Its process groups, for memory.
    pub(crate) processes: Vec<Child>,
}

impl SignalProxy {
    pub(crate) fn pgids(&self) -> Vec<u32> {
        self.processes.iter().map(Child::pgid).collect()
    }
}

/// Starts `system` as a Signal proxy whose allowlist sends `chat.signal.org` to the
/// stand-in at `host`; None for the systems (g) does not compare (all but tp and nginx).
pub(crate) fn start_signal(
    system: SystemId,
    ctx: &Ctx,
    host: SocketAddr,
    tag: &str,
) -> anyhow::Result<Option<SignalProxy>> {
    let start = match system {
        SystemId::Tp => tp_signal::start,
        SystemId::Nginx => nginx_signal::start,
        _ => return Ok(None),
    };
    let dir = ctx.dir(system, tag)?;
    start(ctx, &dir, host).map(Some)
}

/// The setup of `system` as a Signal proxy, for the report.
pub(crate) fn signal_setup(system: SystemId) -> Option<&'static str> {
    match system {
        SystemId::Tp => Some(tp_signal::SETUP),
        SystemId::Nginx => Some(nginx_signal::SETUP),
        _ => None,
    }
}

/// Why `system` cannot run here, if it cannot: a missing program or feature.
pub(crate) fn unavailable(system: SystemId, bin_dir: &Path) -> Option<String> {
    let program = match system {
        SystemId::Tp => return None,
        SystemId::TpQuic => {
            return (!tp::has_transport_flag(&bin_dir.join("tp"))).then(|| {
                "not yet available (QUIC/Signal relay not implemented): this tp client has no \
                 `--transport` flag"
                    .to_owned()
            });
        }
        SystemId::Stunnel => "stunnel4",
        SystemId::Haproxy => "haproxy",
        SystemId::Nginx => "nginx",
        SystemId::Socat => "socat",
        SystemId::Direct | SystemId::Relay => return None,
    };
    let found = Command::new(program)
        .arg("-h")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    (!found).then(|| format!("`{program}` not found (bench/run.sh installs it)"))
}

/// What a peer is configured for. tp has one configuration (its copy buffers
/// come from a pool and go back when a tunnel idles); a peer gets what suits the
/// scenario best, as its operator would choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tuning {
    /// Traffic ((a)-(d), (h)): 64 KiB copy buffers where the peer has a setting,
    /// as tp's relay and the plain relay use.
    Throughput,
    /// Idle tunnels ((e)): the peer's default buffers.
    Memory,
}

/// Starts `system`; `tag` names its scratch directory (configs and logs).
pub(crate) fn start(
    system: SystemId,
    ctx: &Ctx,
    tag: &str,
    tuning: Tuning,
) -> anyhow::Result<Running> {
    let dir = ctx.dir(system, tag)?;
    match system {
        SystemId::Tp => tp::start(ctx, &dir, tp::Transport::Tcp),
        SystemId::TpQuic => tp::start(ctx, &dir, tp::Transport::Quic),
        SystemId::Stunnel => stunnel::start(ctx, &dir),
        SystemId::Haproxy => haproxy::start(ctx, &dir, tuning),
        SystemId::Nginx => nginx::start(ctx, &dir, tuning),
        SystemId::Socat => socat::start(ctx, &dir, tuning),
        SystemId::Direct => Ok(Running {
            entry: ctx.target_from_here(),
            tls_port: None,
            server: None,
            client: None,
        }),
        SystemId::Relay => reference::start_relay(ctx, &dir),
    }
}

/// Starts what (f1) needs of `system`: tp's server alone, the client being one
/// process per sample. None for the other systems, which have no one-shot client
/// like `tp HOST PORT` (their clients are long-running proxies).
pub(crate) fn start_stdio(system: SystemId, ctx: &Ctx, tag: &str) -> anyhow::Result<Option<Stdio>> {
    let transport = match system {
        SystemId::Tp => tp::Transport::Tcp,
        SystemId::TpQuic => tp::Transport::Quic,
        _ => return Ok(None),
    };
    let dir = ctx.dir(system, tag)?;
    tp_stdio::start(ctx, &dir, transport).map(Some)
}

/// The setup of (f1), for the report.
pub(crate) const STDIO_SETUP: &str = tp_stdio::SETUP;

/// The setup of (h), for the report.
pub(crate) const LINK_SETUP: &str = "Each system as in (a)-(e), except that its server side \
(and the target) runs in a network namespace of its own, joined to the client side's by a pair \
of TUN devices: a helper (`bench/src/link.py`) moves each IP packet from one to the other after \
half the round trip, in order, without loss or rate limit (the kernel here has no `sch_netem`). \
The load generator and the client sides stay on this side, on loopback. Sequential \
connect-send-echo-close as in (c), after 3 untimed. A fresh TLS/TCP tunnel needs three round \
trips before the echo comes back (TCP handshake, TLS 1.3 handshake, the request with tp's \
hello in the client's last flight), a stream on `tp up`'s kept QUIC connection one, the \
references two (TCP handshake, request).";

/// Starts the server side (across the link in (h)), waits until it listens, then
/// the client side likewise: a peer pair whose entry is the client side's address
/// and whose TLS port is the server side's.
fn start_pair(
    ctx: &Ctx,
    server: (Command, SocketAddr),
    client: (Command, SocketAddr),
    dir: &Path,
) -> anyhow::Result<Running> {
    let server_cmd = ctx.server_side(server.0);
    let mut s = Child::spawn("server side", server_cmd, &dir.join("server.log"))?;
    s.wait_listening(server.1)?;
    let mut c = Child::spawn("client side", client.0, &dir.join("client.log"))?;
    c.wait_listening(client.1)?;
    Ok(Running {
        entry: client.1,
        tls_port: Some(server.1),
        server: Some(s),
        client: Some(c),
    })
}

/// The open-file limit the peers inherit (they cannot raise it past the hard limit).
fn fd_limit() -> usize {
    crate::machine::open_files_limit()
        .and_then(|l| l.parse().ok())
        .unwrap_or(1024)
}

/// The OpenSSL configuration every OpenSSL peer runs with (`OPENSSL_CONF`): TLS 1.3
/// with AES-128-GCM (socat has no setting for TLS 1.3 ciphersuites), and no
/// session tickets. OpenSSL sends two tickets after every TLS 1.3 handshake even
/// with nginx's `ssl_session_tickets off`, haproxy's `no-tls-tickets` or stunnel's
/// `sessionResume = no`; tp-server sends none, and no client here resumes.
const OPENSSL_CONF: &str = "openssl_conf = openssl_init\n\n[openssl_init]\n\
ssl_conf = ssl_module\n\n[ssl_module]\nsystem_default = tls_defaults\n\n[tls_defaults]\n\
MinProtocol = TLSv1.3\nCiphersuites = TLS_AES_128_GCM_SHA256\nNumTickets = 0\n";

/// `program` with [`OPENSSL_CONF`] in its environment.
fn openssl_peer(ctx: &Ctx, program: &str) -> anyhow::Result<Command> {
    let mut cmd = Command::new(program);
    openssl_env(ctx, &mut cmd)?;
    Ok(cmd)
}

/// Puts [`OPENSSL_CONF`] in `cmd`'s environment.
fn openssl_env(ctx: &Ctx, cmd: &mut Command) -> anyhow::Result<()> {
    let conf = ctx.work_dir.join("openssl-peers.cnf");
    write_config(&conf, OPENSSL_CONF)?;
    cmd.env("OPENSSL_CONF", conf);
    Ok(())
}

/// Writes a config file.
fn write_config(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The version line of each system's software, for the report.
pub(crate) fn versions(bin_dir: &Path) -> Vec<(String, String)> {
    let tp = bin_dir.join("tp");
    let tp_server = bin_dir.join("tp-server");
    let probes: [(&str, &str, &[&str], &str); 7] = [
        ("tp", tp.to_str().unwrap_or("tp"), &["--version"], "tp"),
        (
            "tp-server",
            tp_server.to_str().unwrap_or("tp-server"),
            &["--version"],
            "tp-server",
        ),
        ("stunnel", "stunnel4", &["-version"], "stunnel "),
        ("haproxy", "haproxy", &["-v"], "HAProxy version"),
        ("nginx", "nginx", &["-v"], "nginx version"),
        ("socat", "socat", &["-V"], "socat version"),
        ("openssl", "openssl", &["version"], "OpenSSL"),
    ];
    probes
        .iter()
        .map(|(name, program, args, prefix)| {
            let line = crate::machine::command_line_starting(program, args, prefix)
                .unwrap_or_else(|| "not found".to_owned());
            ((*name).to_owned(), line)
        })
        .collect()
}
