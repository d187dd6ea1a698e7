//! HAProxy 2.6 in TCP mode: an instance with an `ssl` server line (client side) and
//! an instance with an `ssl ... verify required` bind (server side).

use std::path::Path;

use super::{Ctx, Running, Tuning, openssl_peer, start_pair, write_config};
use crate::certs::SERVER_NAME;

pub(super) const SETUP: &str = "haproxy (mode tcp, `server ... ssl verify required crt client \
sni str(localhost) verifyhost localhost no-ssl-reuse`) -> haproxy (`bind ... ssl crt server \
ca-file ca verify required no-tls-tickets`); `ssl-min-ver TLSv1.3`, ciphersuites \
TLS_AES_128_GCM_SHA256, `maxconn` from the open-file limit, default `nbthread` (one per CPU), \
no logging configured; `tune.bufsize 65536` for (a)-(d) and (h), the default 16 KiB for (e).";

fn global(tuning: Tuning) -> String {
    // Two descriptors per tunnel, within the open-file limit haproxy inherits.
    let maxconn = (super::fd_limit().saturating_sub(200) / 2).clamp(100, 60_000);
    let bufsize = match tuning {
        Tuning::Throughput => "  tune.bufsize 65536\n",
        Tuning::Memory => "",
    };
    format!(
        "global\n  maxconn {maxconn}\n{bufsize}  ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256\n  \
     ssl-default-server-ciphersuites TLS_AES_128_GCM_SHA256\n  \
     ssl-default-bind-options ssl-min-ver TLSv1.3\n  \
     ssl-default-server-options ssl-min-ver TLSv1.3\n\n\
     defaults\n  mode tcp\n  timeout connect 10s\n  timeout client 1h\n  timeout server 1h\n\n"
    )
}

pub(super) fn start(ctx: &Ctx, dir: &Path, tuning: Tuning) -> anyhow::Result<Running> {
    let server_addr = ctx.server_addr()?;
    let entry = ctx.ports.take()?;
    let c = &ctx.certs;
    let server_conf = dir.join("server.cfg");
    write_config(
        &server_conf,
        &format!(
            "{}frontend tls_in\n  bind {server_addr} ssl crt {} ca-file {} verify required \
             no-tls-tickets\n  default_backend target\n\n\
             backend target\n  server t {}\n",
            global(tuning),
            c.server_combined.display(),
            c.ca.display(),
            ctx.target
        ),
    )?;
    let client_conf = dir.join("client.cfg");
    write_config(
        &client_conf,
        &format!(
            "{}frontend plain_in\n  bind {entry}\n  default_backend tls_out\n\n\
             backend tls_out\n  server s {server_addr} ssl verify required ca-file {} crt {} \
             sni str({SERVER_NAME}) verifyhost {SERVER_NAME} no-ssl-reuse\n",
            global(tuning),
            c.ca.display(),
            c.client_combined.display()
        ),
    )?;
    let mut server = openssl_peer(ctx, "haproxy")?;
    server.arg("-db").arg("-f").arg(&server_conf);
    let mut client = openssl_peer(ctx, "haproxy")?;
    client.arg("-db").arg("-f").arg(&client_conf);
    start_pair(ctx, (server, server_addr), (client, entry), dir)
}
