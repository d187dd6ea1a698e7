//! tp for (f1): `tp-server run` alone, and per sample a fresh `tp HOST PORT` (stdio
//! mode, the way ssh's ProxyCommand runs it) or `tp --version`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;

use super::tp::{self, Transport};
use super::{Ctx, write_config};
use crate::children::Child;

pub(super) const SETUP: &str = "`tp-server run` as for (a)-(e), with the same settings for both \
transports (one tunnel per connection, so the default `max_streams_per_connection`); per sample a fresh \
`tp --config client.toml --transport tcp|quic 127.0.0.1 TARGET` (stdio mode, as ssh's \
ProxyCommand runs it: a new process, so a new connection and a full handshake), and \
`tp --version` beside it as the process-start reference.";

/// A started tp server and the client commands of (f1).
#[derive(Debug)]
pub(crate) struct Stdio {
    _server: Child,
    tp: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    target: SocketAddr,
    /// `--transport` (None: a client without the flag, which speaks TLS/TCP only).
    transport: Option<&'static str>,
}

impl Stdio {
    /// `tp ... 127.0.0.1 TARGET`: one tunnel to the echo target on stdin/stdout.
    pub(crate) fn tunnel(&self) -> Command {
        let mut cmd = self.tp();
        cmd.arg("--config").arg(&self.config);
        if let Some(transport) = self.transport {
            cmd.arg("--transport").arg(transport);
        }
        cmd.arg(self.target.ip().to_string())
            .arg(self.target.port().to_string());
        cmd
    }

    /// `tp --version`: the same binary, started and done.
    pub(crate) fn version(&self) -> Command {
        let mut cmd = self.tp();
        cmd.arg("--version");
        cmd
    }

    /// Where both commands' stderr goes.
    pub(crate) fn log(&self) -> PathBuf {
        self.dir.join("client.log")
    }

    fn tp(&self) -> Command {
        let mut cmd = Command::new(&self.tp);
        tp::defaults_only(&mut cmd, &self.dir);
        cmd
    }
}

pub(super) fn start(ctx: &Ctx, dir: &Path, transport: Transport) -> anyhow::Result<Stdio> {
    let tp = ctx.bin_dir.join("tp");
    let choose = tp::has_transport_flag(&tp);
    if transport == Transport::Quic && !choose {
        bail!("not available: this tp client has no `--transport` flag (no QUIC client yet)");
    }
    let (server, addr) = tp::server(ctx, dir, false)?;
    let c = &ctx.certs;
    let config = dir.join("client.toml");
    write_config(
        &config,
        &format!(
            "server = \"{addr}\"\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
            c.client_cert.display(),
            c.client_key.display(),
            c.ca.display()
        ),
    )?;
    let server = ctx.server_side(server);
    let mut server = Child::spawn("server side", server, &dir.join("server.log"))?;
    server.wait_listening(addr)?;
    Ok(Stdio {
        _server: server,
        tp,
        dir: dir.to_owned(),
        config,
        target: ctx.target,
        transport: choose.then(|| transport.flag()),
    })
}
