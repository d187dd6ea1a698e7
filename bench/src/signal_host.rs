//! Helper process of scenario (g): a stand-in for a Signal host. It terminates TLS
//! with a certificate for `chat.signal.org` from the bench CA and speaks the
//! target protocol (echo, sink, source: `target.rs`) inside it. Both Signal
//! proxies under test send the inner TLS here instead of to Signal.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Accepts until the process is killed; errors of one connection end only that one.
pub(crate) async fn serve(listen: SocketAddr, cert: &Path, key: &Path) -> anyhow::Result<()> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the certificate")?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the stand-in's certificate and key")?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // EMFILE and friends: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let _ = crate::target::serve(&mut tls).await;
            }
        });
    }
}
