//! A check that each system really requires a client certificate: a TLS client
//! without one connects to the server side's TLS port and tries to reach the echo
//! target. Passing means no echo ever comes back.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::certs::SERVER_NAME;
use crate::target::MODE_ECHO;

const MARK: &[u8] = b"no-cert probe";

/// Ok(description of how it was refused), or Err if the target answered.
pub(crate) async fn without_client_cert(
    tls_port: SocketAddr,
    ca: &Path,
    target: SocketAddr,
    tp_hello: bool,
) -> anyhow::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).context("reading the CA")? {
        roots.add(cert.context("parsing the CA")?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"tp/1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    let tcp = TcpStream::connect(tls_port).await?;
    let name = ServerName::try_from(SERVER_NAME)?;
    let mut tls = match connector.connect(name, tcp).await {
        Ok(tls) => tls,
        Err(e) => return Ok(format!("refused during the handshake ({e})")),
    };
    let mut msg = Vec::new();
    if tp_hello {
        msg.extend_from_slice(
            format!(
                "{{\"v\":1,\"op\":\"connect\",\"host\":\"{}\",\"port\":{}}}\n",
                target.ip(),
                target.port()
            )
            .as_bytes(),
        );
    }
    msg.push(MODE_ECHO);
    msg.extend_from_slice(MARK);
    if let Err(e) = tls.write_all(&msg).await {
        return Ok(format!("refused: write failed ({e})"));
    }
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    if got.windows(MARK.len()).any(|w| w == MARK) {
        anyhow::bail!("a client without a certificate reached the target");
    }
    Ok(match read {
        Err(_) => "no answer within 5 s, nothing forwarded".to_owned(),
        Ok(Ok(())) => "closed without forwarding".to_owned(),
        Ok(Err(e)) => format!("refused after the handshake ({e})"),
    })
}
