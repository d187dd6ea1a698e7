//! nginx 1.22 stream module: `proxy_ssl` on the client side, `ssl_verify_client on`
//! on the server side. Two nginx instances, each a master with its workers.

use std::path::Path;
use std::process::Command;

use super::{Ctx, Running, Tuning, openssl_env, start_pair, write_config};
use crate::certs::SERVER_NAME;

pub(super) const SETUP: &str = "nginx stream (`proxy_ssl on`, `proxy_ssl_verify on`, \
`proxy_ssl_certificate`, `proxy_ssl_session_reuse off`) -> nginx stream (`listen ... ssl`, \
`ssl_verify_client on`, `ssl_session_tickets off`); TLSv1.3 only, ciphersuites \
TLS_AES_128_GCM_SHA256 via `*ssl_conf_command`, `worker_processes auto` (2), `worker_connections` from the open-file limit, no access log; \
`proxy_buffer_size 64k` for (a)-(d) and (h), the default 16k for (e).";

const MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

pub(super) fn main_conf(dir: &Path, stream: &str) -> String {
    // A tunnel is two connections of one worker; the limit is per process.
    let limit = super::fd_limit();
    format!(
        "load_module {MODULE};\nuser root;\ndaemon off;\nworker_processes auto;\n\
         worker_rlimit_nofile {limit};\npid {pid};\nerror_log {log} warn;\n\
         events {{ worker_connections {conns}; }}\nstream {{\n{stream}}}\n",
        pid = dir.join("nginx.pid").display(),
        log = dir.join("error.log").display(),
        conns = limit.saturating_sub(100).max(512),
    )
}

pub(super) fn command(dir: &Path, conf: &Path) -> Command {
    let mut cmd = Command::new("nginx");
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(conf);
    cmd
}

pub(super) fn start(ctx: &Ctx, dir: &Path, tuning: Tuning) -> anyhow::Result<Running> {
    let buffer = match tuning {
        Tuning::Throughput => "    proxy_buffer_size 64k;\n",
        Tuning::Memory => "",
    };
    let server_addr = ctx.server_addr()?;
    let entry = ctx.ports.take()?;
    let c = &ctx.certs;
    let server_dir = dir.join("server");
    let client_dir = dir.join("client");
    for d in [&server_dir, &client_dir] {
        std::fs::create_dir_all(d)?;
    }
    let server_conf = server_dir.join("nginx.conf");
    write_config(
        &server_conf,
        &main_conf(
            &server_dir,
            &format!(
                "  server {{\n    listen {server_addr} ssl;\n    ssl_certificate {};\n    \
                 ssl_certificate_key {};\n    ssl_client_certificate {};\n    \
                 ssl_verify_client on;\n    ssl_protocols TLSv1.3;\n    \
                 ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;\n    \
                 ssl_session_tickets off;\n    proxy_timeout 1h;\n{buffer}    proxy_pass {};\n  }}\n",
                c.server_cert.display(),
                c.server_key.display(),
                c.ca.display(),
                ctx.target
            ),
        ),
    )?;
    let client_conf = client_dir.join("nginx.conf");
    write_config(
        &client_conf,
        &main_conf(
            &client_dir,
            &format!(
                "  server {{\n    listen {entry};\n    proxy_pass {server_addr};\n    \
                 proxy_ssl on;\n    proxy_ssl_certificate {};\n    \
                 proxy_ssl_certificate_key {};\n    proxy_ssl_trusted_certificate {};\n    \
                 proxy_ssl_verify on;\n    proxy_ssl_name {SERVER_NAME};\n    \
                 proxy_ssl_server_name on;\n    proxy_ssl_protocols TLSv1.3;\n    \
                 proxy_ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;\n    \
                 proxy_ssl_session_reuse off;\n    proxy_timeout 1h;\n{buffer}  }}\n",
                c.client_cert.display(),
                c.client_key.display(),
                c.ca.display()
            ),
        ),
    )?;
    let mut server = command(&server_dir, &server_conf);
    openssl_env(ctx, &mut server)?;
    let mut client = command(&client_dir, &client_conf);
    openssl_env(ctx, &mut client)?;
    start_pair(ctx, (server, server_addr), (client, entry), dir)
}
