//! The references without TLS: the target directly, and two plain TCP relay hops.

use std::path::Path;
use std::process::Command;

use super::{Ctx, Running, start_pair};

pub(super) const DIRECT_SETUP: &str =
    "the load generator connects straight to the target: no tunnel at all.";
pub(super) const RELAY_SETUP: &str = "two `tp-bench relay` processes (tokio \
`copy_bidirectional_with_sizes`, 64 KiB per direction, TCP_NODELAY): the same two hops and \
copies as a tunnel, without TLS. Its buffers are allocated per connection up front, so its \
memory per tunnel is not a lower bound.";

pub(super) fn start_relay(ctx: &Ctx, dir: &Path) -> anyhow::Result<Running> {
    let middle = ctx.server_addr()?;
    let entry = ctx.ports.take()?;
    let hop = |listen: std::net::SocketAddr, to: std::net::SocketAddr| {
        let mut cmd = Command::new(&ctx.self_exe);
        cmd.arg("relay")
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--to")
            .arg(to.to_string());
        cmd
    };
    let running = start_pair(
        ctx,
        (hop(middle, ctx.target), middle),
        (hop(entry, middle), entry),
        dir,
    )?;
    // Two plain hops: no TLS port to probe.
    Ok(Running {
        tls_port: None,
        ..running
    })
}
