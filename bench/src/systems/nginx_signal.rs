//! nginx as Signal's TLS proxy (signalapp/Signal-TLS-Proxy) for (g): two nginx
//! instances, as its two containers. The first terminates the outer TLS with the
//! site's certificate and passes the decrypted bytes (the inner TLS) to the second,
//! which reads the inner ClientHello's SNI (`ssl_preread on`) and picks the upstream
//! with a `map` of the allowed names; any other name goes to a closed port.

use std::net::SocketAddr;
use std::path::Path;

use super::nginx::{command, main_conf};
use super::{Ctx, SignalProxy, write_config};
use crate::certs::SIGNAL_HOST;
use crate::children::Child;

pub(super) const SETUP: &str = "the two stages of signalapp/Signal-TLS-Proxy, each its own \
nginx 1.22 (as its two containers; `worker_processes auto` (2 each), `worker_connections` from \
the open-file limit, no access log): nginx-terminate, a stream server `listen ... ssl` with the \
site's certificate (`ssl_protocols TLSv1.2 TLSv1.3`, `ssl_session_tickets off`, OpenSSL's \
default suites and groups) and `proxy_pass` to nginx-relay over loopback TCP; nginx-relay, a \
stream server with `ssl_preread on` and `proxy_pass $upstream`, from a `map \
$ssl_preread_server_name` sending `chat.signal.org` to an upstream block holding the stand-in's \
address and `default` to a closed port. Left out: the official setup's third hop, an \
`ssl_preread` server on 443 in front of nginx-terminate that passes on only the site's own \
SNI; without it nginx does one relay hop less than the proxy volunteers run. The map names \
only `chat.signal.org` (upstream hostnames of the real list would be resolved at start).";

pub(super) fn start(ctx: &Ctx, dir: &Path, host: SocketAddr) -> anyhow::Result<SignalProxy> {
    let entry = ctx.ports.take()?;
    let relay_addr = ctx.ports.take()?;
    let c = &ctx.certs;
    let relay_dir = dir.join("relay");
    let terminate_dir = dir.join("terminate");
    for d in [&relay_dir, &terminate_dir] {
        std::fs::create_dir_all(d)?;
    }

    let relay_conf = relay_dir.join("nginx.conf");
    write_config(
        &relay_conf,
        &main_conf(
            &relay_dir,
            &format!(
                "  map $ssl_preread_server_name $upstream {{\n    {SIGNAL_HOST} signal-service;\n    \
                 default deny;\n  }}\n  upstream signal-service {{ server {host}; }}\n  \
                 upstream deny {{ server 127.0.0.1:9; }}\n  server {{\n    listen {relay_addr};\n    \
                 ssl_preread on;\n    proxy_pass $upstream;\n  }}\n"
            ),
        ),
    )?;
    let terminate_conf = terminate_dir.join("nginx.conf");
    write_config(
        &terminate_conf,
        &main_conf(
            &terminate_dir,
            &format!(
                "  server {{\n    listen {entry} ssl;\n    ssl_certificate {};\n    \
                 ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;\n    \
                 ssl_session_tickets off;\n    proxy_pass {relay_addr};\n  }}\n",
                c.server_cert.display(),
                c.server_key.display()
            ),
        ),
    )?;

    let mut relay = Child::spawn(
        "nginx-relay",
        command(&relay_dir, &relay_conf),
        &dir.join("relay.log"),
    )?;
    relay.wait_listening(relay_addr)?;
    let mut terminate = Child::spawn(
        "nginx-terminate",
        command(&terminate_dir, &terminate_conf),
        &dir.join("terminate.log"),
    )?;
    terminate.wait_listening(entry)?;
    Ok(SignalProxy {
        entry,
        processes: vec![terminate, relay],
    })
}
