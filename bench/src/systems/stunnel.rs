//! stunnel 5: one `client = yes` instance, one server instance with `requireCert`.

use std::path::Path;

use super::{Ctx, Running, openssl_peer, start_pair, write_config};
use crate::certs::SERVER_NAME;

pub(super) const SETUP: &str = "stunnel4 client (`client = yes`, `verifyChain`, `checkHost = localhost`) \
-> stunnel4 server (`requireCert = yes`, `verifyChain`); both `sslVersionMin = TLSv1.3`, \
`ciphersuites = TLS_AES_128_GCM_SHA256`, `sessionResume = no`, TCP_NODELAY both ways; default thread-per-connection \
model and logging (level notice, to a file); no setting for its copy buffers.";

const COMMON: &str = "foreground = yes\npid =\nsyslog = no\n\
                      socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n";

pub(super) fn start(ctx: &Ctx, dir: &Path) -> anyhow::Result<Running> {
    let server_addr = ctx.server_addr()?;
    let entry = ctx.ports.take()?;
    let c = &ctx.certs;
    let tls = format!(
        "CAfile = {}\nverifyChain = yes\nsslVersionMin = TLSv1.3\n\
         ciphersuites = TLS_AES_128_GCM_SHA256\nsessionResume = no\n",
        c.ca.display()
    );
    let server_conf = dir.join("server.conf");
    write_config(
        &server_conf,
        &format!(
            "{COMMON}[bench]\naccept = {server_addr}\nconnect = {}\ncert = {}\nkey = {}\n\
             requireCert = yes\n{tls}",
            ctx.target,
            c.server_cert.display(),
            c.server_key.display()
        ),
    )?;
    let client_conf = dir.join("client.conf");
    write_config(
        &client_conf,
        &format!(
            "{COMMON}[bench]\nclient = yes\naccept = {entry}\nconnect = {server_addr}\n\
             cert = {}\nkey = {}\ncheckHost = {SERVER_NAME}\nsni = {SERVER_NAME}\n{tls}",
            c.client_cert.display(),
            c.client_key.display()
        ),
    )?;
    let mut server = openssl_peer(ctx, "stunnel4")?;
    server.arg(&server_conf);
    let mut client = openssl_peer(ctx, "stunnel4")?;
    client.arg(&client_conf);
    start_pair(ctx, (server, server_addr), (client, entry), dir)
}
