//! The certificates every system uses, made at run time with rcgen: one CA, a server
//! leaf for `localhost` and `127.0.0.1`, a client leaf, and a leaf for the Signal
//! host the stand-in of scenario (g) plays. ECDSA P-256, SHA-256. Also a client leaf
//! with the same name from a CA no system trusts, for the mTLS check.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The client certificate's identity (its CN); tp's policy names it.
pub(crate) const CLIENT_IDENTITY: &str = "bench-client";
/// The name the client side verifies the server certificate against.
pub(crate) const SERVER_NAME: &str = "localhost";
/// The Signal host of scenario (g): the inner TLS's server name, which the stand-in
/// holds a certificate for and both Signal proxies send to the stand-in.
pub(crate) const SIGNAL_HOST: &str = "chat.signal.org";

/// Paths of the PEM files written by [`generate`].
#[derive(Debug, Clone)]
pub(crate) struct Certs {
    pub(crate) ca: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    /// Certificate followed by key, for haproxy's `crt`.
    pub(crate) server_combined: PathBuf,
    pub(crate) client_cert: PathBuf,
    pub(crate) client_key: PathBuf,
    /// Certificate followed by key, for haproxy's `crt`.
    pub(crate) client_combined: PathBuf,
    /// The stand-in Signal host's certificate ([`SIGNAL_HOST`]) and key.
    pub(crate) signal_cert: PathBuf,
    pub(crate) signal_key: PathBuf,
    /// A client leaf named [`CLIENT_IDENTITY`] issued by another CA, and its key.
    pub(crate) foreign_client_cert: PathBuf,
    pub(crate) foreign_client_key: PathBuf,
}

fn key() -> anyhow::Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating a P-256 key")
}

fn leaf_params(cn: &str, eku: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    params
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A self-signed CA named `cn`, and the issuer it makes.
fn ca(cn: &str) -> anyhow::Result<(rcgen::Certificate, Issuer<'static, KeyPair>)> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = key()?;
    let cert = params
        .self_signed(&key)
        .with_context(|| format!("self-signing {cn}"))?;
    Ok((cert, Issuer::new(params, key)))
}

/// Makes a fresh CA and the leaves under `dir`.
pub(crate) fn generate(dir: &Path) -> anyhow::Result<Certs> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let (ca_cert, issuer) = ca("tp-bench CA")?;

    let mut server = leaf_params(SERVER_NAME, ExtendedKeyUsagePurpose::ServerAuth);
    server.subject_alt_names = vec![
        SanType::DnsName(SERVER_NAME.try_into().context("DNS name")?),
        SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        // The server sides of (h) listen at the far end of the link.
        SanType::IpAddress(crate::link::FAR.into()),
    ];
    let server_key = key()?;
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .context("issuing the server certificate")?;

    let client = leaf_params(CLIENT_IDENTITY, ExtendedKeyUsagePurpose::ClientAuth);
    let client_key = key()?;
    let client_cert = client
        .signed_by(&client_key, &issuer)
        .context("issuing the client certificate")?;

    let mut signal = leaf_params(SIGNAL_HOST, ExtendedKeyUsagePurpose::ServerAuth);
    signal.subject_alt_names = vec![SanType::DnsName(
        SIGNAL_HOST.try_into().context("DNS name")?,
    )];
    let signal_key = key()?;
    let signal_cert = signal
        .signed_by(&signal_key, &issuer)
        .context("issuing the Signal host's certificate")?;

    let (_, foreign_issuer) = ca("tp-bench CA")?;
    let foreign_key = key()?;
    let foreign_cert = leaf_params(CLIENT_IDENTITY, ExtendedKeyUsagePurpose::ClientAuth)
        .signed_by(&foreign_key, &foreign_issuer)
        .context("issuing the foreign client certificate")?;

    let certs = Certs {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        server_combined: dir.join("server-combined.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        client_combined: dir.join("client-combined.pem"),
        signal_cert: dir.join("signal.pem"),
        signal_key: dir.join("signal.key"),
        foreign_client_cert: dir.join("foreign-client.pem"),
        foreign_client_key: dir.join("foreign-client.key"),
    };
    write(&certs.ca, &ca_cert.pem())?;
    write(&certs.server_cert, &server_cert.pem())?;
    write(&certs.server_key, &server_key.serialize_pem())?;
    write(
        &certs.server_combined,
        &format!("{}{}", server_cert.pem(), server_key.serialize_pem()),
    )?;
    write(&certs.client_cert, &client_cert.pem())?;
    write(&certs.client_key, &client_key.serialize_pem())?;
    write(
        &certs.client_combined,
        &format!("{}{}", client_cert.pem(), client_key.serialize_pem()),
    )?;
    write(&certs.signal_cert, &signal_cert.pem())?;
    write(&certs.signal_key, &signal_key.serialize_pem())?;
    write(&certs.foreign_client_cert, &foreign_cert.pem())?;
    write(&certs.foreign_client_key, &foreign_key.serialize_pem())?;
    Ok(certs)
}
