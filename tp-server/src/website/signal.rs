//! The Signal TLS proxy: a client that, inside its TLS connection to this
//! server, starts a second TLS connection (TLS in TLS) to one of Signal's hosts
//! is relayed to that host, bytes as they are: the server reads only the inner
//! ClientHello's SNI. The name must be on the allowlist (built in, or
//! `[signal] hosts`); the server dials that same name on port 443, resolved
//! afresh per connection (or the configured override), never an address the
//! client chose. Any other inner SNI, or none: closed, nothing forwarded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tp_net::relay::{RelayEnd, RelayOptions, TLS_WRITE_OFFSET, relay};
use tracing::{debug, info, warn};

use crate::hello::{Hello, HelloReader};

/// The built-in allowlist.
pub(crate) const BUILT_IN_HOSTS: &str = include_str!("../../data/signal-hosts.txt");

/// The largest inner ClientHello read.
const MAX_HELLO: usize = 64 * 1024;

/// The relay's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalSettings {
    /// Relay TLS-in-TLS connections to the allowed hosts (default false).
    pub enabled: bool,
    /// The allowed inner server names, lowercase.
    pub hosts: Vec<String>,
    /// Where to dial instead of NAME:443, per name (tests, unusual networks).
    pub upstreams: HashMap<String, SocketAddr>,
}

/// Reads a hosts list: one name a line, `#` comments, blank lines skipped.
pub fn parse_hosts(text: &str) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.split('#').next().unwrap_or("").trim();
        if name.is_empty() {
            continue;
        }
        let ok = name.contains('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !ok {
            return Err(format!("line {}: {name:?} is not a host name", i + 1));
        }
        hosts.push(name.to_ascii_lowercase());
    }
    if hosts.is_empty() {
        return Err("the list names no host".into());
    }
    Ok(hosts)
}

/// What the client sent first inside the outer TLS.
pub(crate) enum First {
    /// An inner TLS ClientHello (all of it, as read) and its SNI, if any.
    InnerTls { sni: Option<String>, bytes: Vec<u8> },
    /// Anything else: for the website.
    Other(Vec<u8>),
    /// Nothing within the limit, or the connection ended.
    Nothing,
}

/// Reads the client's first bytes (within `limit`) and tells an inner TLS
/// ClientHello from anything else.
pub(crate) async fn first_bytes<S: AsyncRead + Unpin>(client: &mut S, limit: Duration) -> First {
    let read = async {
        let mut bytes = Vec::with_capacity(2048);
        let mut chunk = vec![0u8; 4 * 1024];
        let mut reader = HelloReader::default();
        loop {
            let n = match client.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    return if bytes.is_empty() {
                        First::Nothing
                    } else {
                        First::Other(bytes)
                    };
                }
                Ok(n) => n,
            };
            bytes.extend_from_slice(&chunk[..n]);
            // A TLS handshake record starts 0x16 0x03.
            if bytes[0] != 0x16 || (bytes.len() > 1 && bytes[1] != 0x03) {
                return First::Other(bytes);
            }
            match reader.feed(&chunk[..n]) {
                Hello::Complete { sni } => return First::InnerTls { sni, bytes },
                Hello::NotTls => return First::Other(bytes),
                Hello::Partial if bytes.len() < MAX_HELLO => {}
                Hello::Partial => return First::Other(bytes),
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or(First::Nothing)
}

/// Relays an inner TLS connection to its allowed Signal host, `hello` first.
/// `client` is the outer TLS tp-server terminated.
pub(crate) async fn relay_inner<S>(
    settings: &SignalSettings,
    mut client: S,
    sni: Option<String>,
    hello: Vec<u8>,
    connect_timeout: Duration,
    idle_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(name) = sni.filter(|n| settings.hosts.iter().any(|h| h == n)) else {
        // Anyone can cause this: debug, so it cannot flood the log.
        debug!("Signal relay refused: the inner server name is not on the allowlist");
        return;
    };
    let dial = async {
        match settings.upstreams.get(&name) {
            Some(addr) => TcpStream::connect(addr).await,
            None => TcpStream::connect((name.as_str(), 443)).await,
        }
    };
    let mut upstream = match tokio::time::timeout(connect_timeout, dial).await {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(e)) => {
            warn!(host = %name, error = %e, "Signal host unreachable");
            return;
        }
        Err(_) => {
            warn!(host = %name, "Signal host did not answer in time");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    if let Err(e) = upstream.write_all(&hello).await {
        debug!(host = %name, error = %e, "Signal host failed");
        return;
    }
    // Forwarded: only its length is still needed, not its 2 KiB or so for
    // the whole life of the relay.
    let hello_len = hello.len() as u64;
    drop(hello);
    let started = Instant::now();
    // The client is the outer TLS tp-server terminated: rustls copies what goes to it.
    let options = RelayOptions {
        idle_timeout: Some(idle_timeout),
        write_offset_a: TLS_WRITE_OFFSET,
        write_offset_b: 0,
    };
    let (stats, end) = relay(&mut client, &mut upstream, options).await;
    info!(
        host = %name,
        bytes.up = stats.a_to_b + hello_len,
        bytes.down = stats.b_to_a,
        duration = ?started.elapsed(),
        failed = !matches!(end, RelayEnd::Closed),
        "Signal relay closed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_list_has_signals_hosts() {
        let hosts = parse_hosts(BUILT_IN_HOSTS).unwrap();
        for name in [
            "chat.signal.org",
            "storage.signal.org",
            "cdn.signal.org",
            "cdn2.signal.org",
            "cdn3.signal.org",
            "cdsi.signal.org",
            "contentproxy.signal.org",
            "grpc.chat.signal.org",
            "sfu.voip.signal.org",
            "svr2.signal.org",
            "svrb.signal.org",
            "updates.signal.org",
            "updates2.signal.org",
        ] {
            assert!(hosts.iter().any(|h| h == name), "{name}");
        }
        assert_eq!(hosts.len(), 13);
    }

    #[test]
    fn host_lists_are_checked() {
        assert_eq!(
            parse_hosts("# c\n\nChat.Example.org # x\n").unwrap(),
            vec!["chat.example.org".to_owned()]
        );
        assert!(parse_hosts("# nothing\n").is_err());
        assert!(
            parse_hosts("bad host.org\n")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(parse_hosts("localhost\n").is_err());
    }

    #[tokio::test]
    async fn first_bytes_tell_tls_from_http_and_wait_for_a_split_hello() {
        use tokio::io::duplex;
        // A real ClientHello, from rustls, in two pieces.
        let client_config = rustls::ClientConfig::builder_with_provider(tp_net::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut conn = rustls::ClientConnection::new(
            std::sync::Arc::new(client_config),
            "chat.signal.org".try_into().unwrap(),
        )
        .unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        let (mut a, mut b) = duplex(64 * 1024);
        let half = hello.len() / 2;
        a.write_all(&hello[..half]).await.unwrap();
        let (first, rest) = hello.split_at(half);
        let rest = rest.to_vec();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            a.write_all(&rest).await.unwrap();
            a
        });
        match first_bytes(&mut b, Duration::from_secs(5)).await {
            First::InnerTls { sni, bytes } => {
                assert_eq!(sni.as_deref(), Some("chat.signal.org"));
                assert_eq!(&bytes[..half], first);
                assert_eq!(bytes, hello);
            }
            _ => panic!("not recognised as TLS"),
        }
        drop(writer.await.unwrap());

        let (mut a, mut b) = duplex(1024);
        a.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(matches!(
            first_bytes(&mut b, Duration::from_secs(5)).await,
            First::Other(bytes) if bytes.starts_with(b"GET ")
        ));
    }
}
