//! Reverse tunnels, the server's side (protocol.md, "`listen` and `accept`"): a raw
//! exposing client ([`tp_tests::reverse::Exposer`]) registers a service name or a
//! public port, callers reach it, and the server relays, decides policy, settles
//! conflicts, hands out TLS/TCP sessions, watches heartbeats and writes audit lines.
//! One module per topic.

mod audit;
mod lifecycle;
mod public;
mod rules;
mod service;
mod sessions;

use tp_tests::TestServer;

/// The service alice exposes in these tests.
const LAPTOP: &str = "alice-laptop";

/// The policy of these tests, with `public_ports` for alice: alice may register
/// `*-laptop` names and those ports; bob (group `ops`) may call `*-laptop`
/// services and may also register alice's name, so that what stops him is the
/// conflict, not the policy; carol may do none of it.
fn policy(public_ports: &str) -> String {
    format!(
        r#"
[groups]
ops = ["bob@test"]

[[rule]]
name = "alice-exposes"
who = ["alice@test"]
listen = ["alice-laptop", "*-laptop"]
public_ports = [{public_ports}]

[[rule]]
name = "ops-reach-laptops"
who = ["group:ops"]
services = ["*-laptop"]

[[rule]]
name = "bob-may-take-over"
who = ["bob@test"]
listen = ["alice-laptop"]
"#
    )
}

/// A server with [`policy`] (public ports 2222 and 2200-2299).
async fn start() -> TestServer {
    TestServer::builder()
        .policy(&policy(r#"2222, "2200-2299""#))
        .start()
        .await
}

/// A server with [`policy`] granting alice the public port `port`, which it opens
/// on 127.0.0.1.
async fn start_public(port: u16) -> TestServer {
    TestServer::builder()
        .policy(&policy(&port.to_string()))
        .section("reverse", "public_address", "\"127.0.0.1\"")
        .start()
        .await
}
