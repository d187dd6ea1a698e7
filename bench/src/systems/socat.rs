//! socat 1.7: `TCP-LISTEN,fork` -> `OPENSSL` on the client side,
//! `OPENSSL-LISTEN,fork,verify=1` -> `TCP` on the server side.

use std::path::Path;

use super::{Ctx, Running, Tuning, openssl_peer, start_pair};
use crate::certs::SERVER_NAME;

pub(super) const SETUP: &str = "socat `TCP-LISTEN:E,fork OPENSSL:S,cert,key,cafile,verify=1,\
commonname=localhost` -> socat `OPENSSL-LISTEN:S,fork,cert,key,cafile,verify=1 TCP:target`; \
`min-version=TLS1.3`, `nodelay` on all four sockets. socat has no setting for TLS 1.3 ciphersuites: \
AES-128-GCM comes from the OpenSSL configuration all OpenSSL peers share. One forked process per \
connection on each side; copy buffer `-b 65536` for (a)-(d) and (h), socat's default 8 KiB for (e).";

pub(super) fn start(ctx: &Ctx, dir: &Path, tuning: Tuning) -> anyhow::Result<Running> {
    let server_addr = ctx.server_addr()?;
    let entry = ctx.ports.take()?;
    let c = &ctx.certs;
    let buffer = |cmd: &mut std::process::Command| {
        if tuning == Tuning::Throughput {
            cmd.args(["-b", "65536"]);
        }
    };
    let mut server = openssl_peer(ctx, "socat")?;
    buffer(&mut server);
    server.arg(format!(
        "OPENSSL-LISTEN:{},bind={},reuseaddr,fork,backlog=1024,nodelay,cert={},key={},cafile={},\
         verify=1,min-version=TLS1.3",
        server_addr.port(),
        server_addr.ip(),
        c.server_cert.display(),
        c.server_key.display(),
        c.ca.display()
    ));
    server.arg(format!("TCP:{},nodelay", ctx.target));
    let mut client = openssl_peer(ctx, "socat")?;
    buffer(&mut client);
    client.arg(format!(
        "TCP-LISTEN:{},bind=127.0.0.1,reuseaddr,fork,backlog=1024,nodelay",
        entry.port()
    ));
    client.arg(format!(
        "OPENSSL:{server_addr},nodelay,cert={},key={},cafile={},verify=1,commonname={SERVER_NAME},\
         min-version=TLS1.3",
        c.client_cert.display(),
        c.client_key.display(),
        c.ca.display()
    ));
    start_pair(ctx, (server, server_addr), (client, entry), dir)
}
