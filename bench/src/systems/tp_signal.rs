//! tp's Signal relay for (g): `tp-server run` with `[signal] enabled = true` and
//! `chat.signal.org` sent to the stand-in, as deploy.md's "Signal proxy only" recipe.

use std::path::Path;
use std::process::Command;

use anyhow::bail;

use super::tp::TP_VARS;
use super::{Ctx, SignalProxy, write_config};
use crate::certs::SIGNAL_HOST;
use crate::children::Child;

pub(super) const SETUP: &str = "`tp-server run` with docs/deploy.md's \"Signal proxy only\" \
recipe: `[signal] enabled = true` (built-in allowlist) and `upstreams = { \"chat.signal.org\" = \
\"127.0.0.1:STAND-IN\" }`; one process terminates the outer TLS (rustls + aws-lc-rs, the \
`[tls]` certificate), reads the inner ClientHello's SNI and relays the inner TLS, bytes as they \
are, to the stand-in. Raised limits, as one address opens every connection: \
`max_connections = 30000`, `max_handshakes_per_source = 1024`, `[website] \
max_connections_per_source = 30000`. Log level `info` (one line per relayed connection), \
stderr to a file.";

pub(super) fn start(
    ctx: &Ctx,
    dir: &Path,
    host: std::net::SocketAddr,
) -> anyhow::Result<SignalProxy> {
    let listen = ctx.ports.take()?;
    let c = &ctx.certs;
    // An empty policy allows nothing: no tunnels here, only the website and the relay.
    write_config(&dir.join("policy.toml"), "")?;
    let config = dir.join("server.toml");
    write_config(
        &config,
        &format!(
            "listen = \"{listen}\"\npolicy = \"policy.toml\"\n\n[tls]\ncert = \"{}\"\n\
             key = \"{}\"\nclient_ca = \"{}\"\n\n[limits]\nmax_connections = 30000\n\
             max_handshakes_per_source = 1024\n\n[website]\nmax_connections_per_source = 30000\n\n\
             [signal]\nenabled = true\nupstreams = {{ \"{SIGNAL_HOST}\" = \"{host}\" }}\n",
            c.server_cert.display(),
            c.server_key.display(),
            c.ca.display()
        ),
    )?;
    let server = ctx.bin_dir.join("tp-server");
    let check = Command::new(&server)
        .arg("check")
        .arg("-c")
        .arg(&config)
        .output()?;
    if !check.status.success() {
        bail!(
            "tp-server check refused the Signal config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let mut cmd = Command::new(&server);
    cmd.arg("run").arg("-c").arg(&config);
    for var in TP_VARS {
        cmd.env_remove(var);
    }
    let mut child = Child::spawn("tp-server (Signal relay)", cmd, &dir.join("server.log"))?;
    child.wait_listening(listen)?;
    Ok(SignalProxy {
        entry: listen,
        processes: vec![child],
    })
}
