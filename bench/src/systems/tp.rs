//! tp: `tp up TARGET LOCALPORT` on the client side, `tp-server run` on the server side.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::bail;

use super::{Ctx, Running, start_pair, write_config};
use crate::certs::CLIENT_IDENTITY;

pub(super) const SETUP: &str = "`tp up 127.0.0.1:TARGET ENTRY` -> `tp-server run` (default settings \
except `max_connections = 30000`, `max_tunnels_per_identity = 30000`, \
`max_handshakes_per_source = 1024`, as one identity on one address opens every tunnel; log \
level `info`, stderr to a file). TLS over TCP, one TCP \
connection per tunnel (`--transport tcp` when the client has that flag). rustls 0.23 + aws-lc-rs \
defaults: TLS 1.3, X25519MLKEM768, TLS_AES_256_GCM_SHA384 (tp has no cipher setting, so no \
AES-128-GCM), no session resumption.";

pub(super) const QUIC_SETUP: &str = "as tp, with `tp up --transport quic`: one QUIC connection \
carries every tunnel (scenario (f)); the server allows `max_streams_per_connection = 10000` (the \
most it accepts; default 256), for (e)'s thousands of tunnels on one connection. Runs only when \
the `tp` client has a `--transport` flag.";

/// Which transport the tp client (`tp up`, `tp HOST PORT`) is told to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    Tcp,
    Quic,
}

impl Transport {
    /// The value of `--transport`.
    pub(super) fn flag(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        }
    }
}

/// True if this `tp` client chooses its transport (`--transport auto|quic|tcp`).
pub(super) fn has_transport_flag(tp: &Path) -> bool {
    Command::new(tp)
        .args(["up", "--help"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--transport"))
}

const LIMITS: &str = "max_connections = 30000\nmax_tunnels_per_identity = 30000\n\
                      max_handshakes_per_source = 1024\n";
const LIMITS_OLD: &str = "max_connections = 30000\n";

pub(super) const TP_VARS: [&str; 10] = [
    "TP_CONFIG",
    "TP_SERVER",
    "TP_SERVER_NAME",
    "TP_CERT",
    "TP_KEY",
    "TP_CA",
    "TP_CONNECT_TIMEOUT",
    "TP_LOG",
    "TP_LOG_FORMAT",
    "TP_TRANSPORT",
];

pub(super) fn start(ctx: &Ctx, dir: &Path, transport: Transport) -> anyhow::Result<Running> {
    let tp = ctx.bin_dir.join("tp");
    let choose = has_transport_flag(&tp);
    if transport == Transport::Quic && !choose {
        bail!("not available: this tp client has no `--transport` flag (no QUIC client yet)");
    }
    let (server, server_addr) = server(ctx, dir, transport == Transport::Quic)?;
    let entry = ctx.ports.take()?;
    let c = &ctx.certs;

    let mut client = Command::new(&tp);
    client
        .arg("up")
        .arg(ctx.target.to_string())
        .arg(entry.port().to_string())
        .arg("--server")
        .arg(server_addr.to_string())
        .arg("--cert")
        .arg(&c.client_cert)
        .arg("--key")
        .arg(&c.client_key)
        .arg("--ca")
        .arg(&c.ca);
    defaults_only(&mut client, dir);
    if choose {
        client.arg("--transport").arg(transport.flag());
    }

    start_pair(ctx, (server, server_addr), (client, entry), dir)
}

/// A client with defaults only: no user config file, no transport cache, no TP_*
/// variable from the caller.
pub(super) fn defaults_only(cmd: &mut Command, dir: &Path) {
    cmd.env("XDG_CONFIG_HOME", dir).env("XDG_CACHE_HOME", dir);
    for var in TP_VARS {
        cmd.env_remove(var);
    }
}

/// `tp-server run` with its config and policy written to `dir` (not started yet), and
/// the address it will listen on (TCP, and UDP for QUIC). `many_streams`: one QUIC
/// connection carries every tunnel, so allow it the most streams the server takes.
/// Only then: quinn sets up state for every stream a connection may open when the
/// connection starts, so the limit costs every new QUIC connection CPU and memory.
pub(super) fn server(
    ctx: &Ctx,
    dir: &Path,
    many_streams: bool,
) -> anyhow::Result<(Command, SocketAddr)> {
    let server_addr = ctx.server_addr()?;
    let c = &ctx.certs;
    write_config(
        &dir.join("policy.toml"),
        &format!(
            "[[rule]]\nname = \"bench\"\nwho = [\"{CLIENT_IDENTITY}\"]\n\
             connect = [\"127.0.0.0/8\"]\nports = [\"*\"]\n"
        ),
    )?;
    let config = dir.join("server.toml");
    // One identity from one address opens thousands of tunnels here, so the
    // per-identity and per-source limits are raised. Older servers do not know
    // those keys (unknown keys are errors), so fall back to the ones they know.
    let mut last_error = String::new();
    let mut accepted = false;
    let quic = if many_streams {
        "\n[quic]\nmax_streams_per_connection = 10000\n"
    } else {
        ""
    };
    for limits in [LIMITS, LIMITS_OLD] {
        write_config(
            &config,
            &format!(
                "listen = \"{server_addr}\"\npolicy = \"policy.toml\"\n\n[tls]\n\
                 cert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n\n[limits]\n{limits}{quic}",
                c.server_cert.display(),
                c.server_key.display(),
                c.ca.display()
            ),
        )?;
        let check = Command::new(ctx.bin_dir.join("tp-server"))
            .arg("check")
            .arg("-c")
            .arg(&config)
            .output()?;
        if check.status.success() {
            accepted = true;
            break;
        }
        last_error = String::from_utf8_lossy(&check.stderr).into_owned();
    }
    if !accepted {
        bail!("tp-server check refused the config: {last_error}");
    }

    let mut server = Command::new(ctx.bin_dir.join("tp-server"));
    server.arg("run").arg("-c").arg(&config);
    for var in TP_VARS {
        server.env_remove(var);
    }
    Ok((server, server_addr))
}
