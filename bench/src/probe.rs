//! A check that each system really verifies client certificates: TLS clients
//! connect to the server side's TLS port and try to reach the echo target, one
//! without a certificate and one with a certificate of the right name from a CA
//! the system does not trust (the same CA name, another key). Neither may get an
//! echo back. The real client certificate must get one, or the check proves
//! nothing (a probe the system cannot parse would "pass" too).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::certs::{Certs, SERVER_NAME};
use crate::target::MODE_ECHO;

const MARK: &[u8] = b"mTLS probe";

/// How long one probe waits for an echo after sending.
const ECHO_WAIT: Duration = Duration::from_secs(5);

/// What the check found.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Both bad clients were refused and the real one got through.
    Verified(String),
    /// A bad client reached the target.
    Failed(String),
    /// The bad clients were refused, but so was the real one.
    Inconclusive(String),
}

/// Probes the system whose server side is at `tls_port`; `tp_hello` sends tp's
/// hello line first.
pub(crate) async fn client_auth(
    tls_port: SocketAddr,
    certs: &Certs,
    target: SocketAddr,
    tp_hello: bool,
) -> anyhow::Result<Verdict> {
    let probe = |client| probe(tls_port, &certs.ca, client, target, tp_hello);
    let none = match probe(None).await? {
        Reached::Target => {
            return Ok(Verdict::Failed(
                "a client without a certificate reached the target".into(),
            ));
        }
        Reached::Nothing(how) => how,
    };
    let foreign = match probe(Some((
        &certs.foreign_client_cert,
        &certs.foreign_client_key,
    )))
    .await?
    {
        Reached::Target => {
            return Ok(Verdict::Failed(
                "a client certificate from an untrusted CA reached the target".into(),
            ));
        }
        Reached::Nothing(how) => how,
    };
    Ok(
        match probe(Some((&certs.client_cert, &certs.client_key))).await? {
            Reached::Target => Verdict::Verified(format!(
                "no client certificate: {none}; one from an untrusted CA: {foreign}; the real \
                 one reached the target"
            )),
            Reached::Nothing(how) => Verdict::Inconclusive(format!(
                "the real client certificate did not reach the target either ({how})"
            )),
        },
    )
}

/// How one probe ended.
enum Reached {
    /// The echo came back.
    Target,
    /// It did not; how the system refused.
    Nothing(String),
}

/// One TLS client, with `client` (certificate and key files) or none.
async fn probe(
    tls_port: SocketAddr,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    target: SocketAddr,
    tp_hello: bool,
) -> anyhow::Result<Reached> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).context("reading the CA")? {
        roots.add(cert.context("parsing the CA")?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .context("reading a client certificate")?
                .collect::<Result<Vec<_>, _>>()
                .context("parsing a client certificate")?;
            let key = PrivateKeyDer::from_pem_file(key).context("reading a client key")?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    config.alpn_protocols = vec![b"tp/1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));

    let tcp = TcpStream::connect(tls_port).await?;
    let name = ServerName::try_from(SERVER_NAME)?;
    let mut tls = match connector.connect(name, tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            return Ok(Reached::Nothing(format!(
                "refused during the handshake ({e})"
            )));
        }
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
        return Ok(Reached::Nothing(format!("refused: write failed ({e})")));
    }
    let mut got = Vec::new();
    let read = tokio::time::timeout(ECHO_WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            if got.windows(MARK.len()).any(|w| w == MARK) {
                return Ok(());
            }
            match tls.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    if got.windows(MARK.len()).any(|w| w == MARK) {
        return Ok(Reached::Target);
    }
    Ok(Reached::Nothing(match read {
        Err(_) => "no answer within 5 s, nothing forwarded".to_owned(),
        Ok(Ok(())) => "closed without forwarding".to_owned(),
        Ok(Err(e)) => format!("refused after the handshake ({e})"),
    }))
}
