//! A check that each system really verifies client certificates: TLS clients
//! connect to the server side's TLS port (for tp-quic: QUIC on the same port
//! number) and try to reach the echo target, one without a certificate and one
//! with a certificate of the right name from a CA the system does not trust (the
//! same CA name, another key). Neither may get an echo back. The real client
//! certificate must get one, or the check proves nothing (a probe the system
//! cannot parse would "pass" too).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use quinn::crypto::rustls::QuicClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::certs::{Certs, SERVER_NAME};
use crate::target::MODE_ECHO;

const MARK: &[u8] = b"mTLS probe";

/// How long one probe waits for an echo after sending.
const ECHO_WAIT: Duration = Duration::from_secs(5);

/// How long a QUIC probe waits on a silent server.
const QUIC_IDLE: Duration = Duration::from_secs(10);

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

/// How the probes reach the server side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// TLS over TCP, the peers' raw bytes after the handshake.
    Tls,
    /// TLS over TCP, tp's hello line first.
    TpTls,
    /// One stream of a QUIC connection, tp's hello line first.
    TpQuic,
}

/// Probes the system whose server side is at `tls_port`.
pub(crate) async fn client_auth(
    tls_port: SocketAddr,
    certs: &Certs,
    target: SocketAddr,
    transport: Transport,
) -> anyhow::Result<Verdict> {
    let probe = |client| probe(tls_port, &certs.ca, client, target, transport);
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

/// One TLS or QUIC client, with `client` (certificate and key files) or none.
async fn probe(
    tls_port: SocketAddr,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    target: SocketAddr,
    transport: Transport,
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
    let mut msg = Vec::new();
    if transport != Transport::Tls {
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
    let refused = |e: &dyn std::fmt::Display| {
        Ok(Reached::Nothing(format!(
            "refused during the handshake ({e})"
        )))
    };
    if transport == Transport::TpQuic {
        let crypto = QuicClientConfig::try_from(Arc::new(config))?;
        // Any address of the server's family: the kernel picks the route's.
        let local: SocketAddr = match tls_port {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let endpoint = quinn::Endpoint::client(local).context("a QUIC client endpoint")?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        // A silent endpoint fails this probe in 10 s, not quinn's 30 s, so the
        // check's bound keeps every probe's reason.
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(QUIC_IDLE.try_into()?));
        config.transport_config(Arc::new(transport));
        let conn = match endpoint.connect_with(config, tls_port, SERVER_NAME)?.await {
            Ok(conn) => conn,
            Err(e) => return refused(&e),
        };
        let reached = match conn.open_bi().await {
            Ok((send, recv)) => echo(tokio::io::join(recv, send), &msg).await,
            Err(e) => Reached::Nothing(format!("refused after the handshake ({e})")),
        };
        conn.close(0u32.into(), b"probe done");
        endpoint.wait_idle().await;
        return Ok(reached);
    }
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(tls_port).await?;
    let name = ServerName::try_from(SERVER_NAME)?;
    match connector.connect(name, tcp).await {
        Ok(tls) => Ok(echo(tls, &msg).await),
        Err(e) => refused(&e),
    }
}

/// Sends `msg` (ending in [`MARK`]) on `stream` and waits for the mark to come back.
async fn echo(mut stream: impl AsyncRead + AsyncWrite + Unpin, msg: &[u8]) -> Reached {
    if let Err(e) = stream.write_all(msg).await {
        return Reached::Nothing(format!("refused: write failed ({})", chain(&e)));
    }
    let mut got = Vec::new();
    let read = tokio::time::timeout(ECHO_WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            if got.windows(MARK.len()).any(|w| w == MARK) {
                return Ok(());
            }
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    if got.windows(MARK.len()).any(|w| w == MARK) {
        return Reached::Target;
    }
    Reached::Nothing(match read {
        Err(_) => "no answer within 5 s, nothing forwarded".to_owned(),
        Ok(Ok(())) => "closed without forwarding".to_owned(),
        Ok(Err(e)) => format!("refused after the handshake ({})", chain(&e)),
    })
}

/// An error and its sources, `: `-separated (quinn's stream errors say
/// "connection lost" and keep the reason in their source).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}
