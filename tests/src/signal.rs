//! Signal relay peers: a TLS echo server standing in for a Signal host, a
//! TLS-in-TLS client like Signal's apps behind a proxy, and `tp-server
//! signal-check` run against a test server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tp_server::pki::{LeafSpec, Validity};

use crate::bins::{Finished, run, tp_server_bin};
use crate::client::{ClientOptions, connect};
use crate::{TestServer, pki, within};

/// A TLS echo server standing in for a Signal host, with a certificate for
/// its name (or names) from the test root; counts the TCP connections it accepted.
#[derive(Debug)]
pub struct StandIn {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// TCP connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
}

impl StandIn {
    /// Starts it.
    pub async fn start(name: &str) -> StandIn {
        StandIn::start_for(&[name]).await
    }

    /// Starts one with a certificate for every one of `names` (the first is its CN),
    /// standing in for several Signal hosts at once.
    pub async fn start_for(names: &[&str]) -> StandIn {
        let validity = Validity::for_ttl(SystemTime::now(), Duration::from_secs(3_600));
        let names = names.iter().map(|&n| n.to_owned()).collect();
        let leaf = pki()
            .root
            .issue(&LeafSpec::server(names, vec![], validity))
            .expect("stand-in certificate");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(leaf.chain_der(), leaf.key_der())
        .expect("stand-in config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = tls.shutdown().await;
                });
            }
        });
        StandIn { port, accepted }
    }
}

/// Outer TLS to the tp server as a browser would (no tp/1), then an inner TLS
/// handshake to `inner` inside it; echoes `data` through.
pub async fn tls_in_tls(
    server: std::net::SocketAddr,
    inner: &str,
    data: &[u8],
) -> std::io::Result<Vec<u8>> {
    let outer = connect(
        server,
        &ClientOptions {
            cert: None,
            alpn: vec![b"http/1.1".to_vec()],
        },
    )
    .await?;
    let mut roots = RootCertStore::empty();
    roots.add(pki().root.cert_der().clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(inner.to_owned()).expect("name");
    let mut tls = within(
        "the inner handshake",
        Duration::from_secs(10),
        TlsConnector::from(Arc::new(config)).connect(name, outer),
    )
    .await?;
    tls.write_all(data).await?;
    let mut back = vec![0u8; data.len()];
    within(
        "the echo",
        Duration::from_secs(10),
        tls.read_exact(&mut back),
    )
    .await?;
    Ok(back)
}

/// Runs `tp-server signal-check ARGS...`.
pub async fn signal_check(args: &[&str]) -> Finished {
    let mut cmd = tokio::process::Command::new(tp_server_bin());
    cmd.arg("signal-check").args(args);
    run(cmd, b"").await
}

/// Runs `tp-server signal-check localhost --connect ADDR --outer-ca ROOT ARGS...`
/// against `server` (whose directory holds the test root as `root.pem`).
pub async fn signal_check_through(server: &TestServer, args: &[&str]) -> Finished {
    let addr = server.addr().to_string();
    let root = server.dir().join("root.pem");
    let root = root.to_str().expect("utf-8 path");
    let mut all = vec!["localhost", "--connect", &addr, "--outer-ca", root];
    all.extend_from_slice(args);
    signal_check(&all).await
}
