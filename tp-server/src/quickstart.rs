//! The quickstart's state folder: a dev CA, a server certificate for localhost, a
//! client certificate for the dev identity, a policy that names loopback, the server
//! config and the client config. Re-running reuses the CA and the policy, and renews
//! certificates that are missing or close to expiry, so it is idempotent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki::{self, Ca, LeafSpec, PkiError, Validity};

/// The identity of the quickstart's client certificate.
pub const DEV_IDENTITY: &str = "dev@quickstart.tp";
/// Lifetime of the dev client certificate; re-issued when less than an hour is left.
pub const CLIENT_TTL: Duration = Duration::from_secs(8 * 3_600);
/// Lifetime of the localhost server certificate; re-issued when less than a day is left.
pub const SERVER_TTL: Duration = Duration::from_secs(30 * 86_400);

/// The policy the quickstart writes (once; edit it freely afterwards).
pub const DEV_POLICY: &str = r#"# tp quickstart policy: the dev identity may reach services on this machine.
# Loopback is refused unless a rule names it, so this rule names it explicitly.
# See docs/policy.md.

[[rule]]
name = "dev-loopback"
who = ["dev@quickstart.tp"]
connect = ["localhost", "127.0.0.0/8", "::1/128"]
ports = ["*"]

# It may also expose local services by name (`tp expose 22 --name dev-laptop`)
# and reach them (`tp dev-laptop 22`).
[[rule]]
name = "dev-expose"
who = ["dev@quickstart.tp"]
listen = ["*"]
services = ["*"]
"#;

/// Why the quickstart folder could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuickstartError {
    /// Generating or saving certificates failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Writing a file failed.
    #[error("{}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
}

/// The files of a prepared quickstart folder (absolute paths).
#[derive(Debug, Clone)]
pub struct Files {
    /// The folder.
    pub dir: PathBuf,
    /// The server config.
    pub server_config: PathBuf,
    /// The client config (written by [`write_client_config`]).
    pub client_config: PathBuf,
    /// The dev client certificate chain.
    pub client_cert: PathBuf,
    /// The CA certificate.
    pub ca_cert: PathBuf,
    /// The policy.
    pub policy: PathBuf,
}

fn write(path: &Path, text: &str) -> Result<(), QuickstartError> {
    std::fs::write(path, text).map_err(|error| QuickstartError::Write {
        path: path.to_owned(),
        error,
    })
}

/// True if `path` holds a certificate valid for at least `margin` after `now`.
fn still_valid(path: &Path, now: SystemTime, margin: Duration) -> bool {
    let Ok(certs) = tp_net::pem::load_certs(path) else {
        return false;
    };
    let Ok((_, cert)) = X509Certificate::from_der(&certs[0]) else {
        return false;
    };
    let deadline = now + margin;
    let secs = deadline
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    cert.validity().not_after.timestamp() > secs
}

/// Creates or refreshes the quickstart folder. `listen` goes into the server config.
pub fn prepare(dir: &Path, listen: SocketAddr, now: SystemTime) -> Result<Files, QuickstartError> {
    std::fs::create_dir_all(dir).map_err(|error| QuickstartError::Write {
        path: dir.to_owned(),
        error,
    })?;
    let dir = std::fs::canonicalize(dir).map_err(|error| QuickstartError::Write {
        path: dir.to_owned(),
        error,
    })?;
    let ca_dir = dir.join("ca");
    let ca = if ca_dir.join("ca.pem").exists() {
        Ca::load(&ca_dir)?
    } else {
        let ca = Ca::generate(
            "tp quickstart dev CA",
            Validity::for_ttl(now, pki::DEFAULT_CA_TTL),
        )?;
        ca.save(&ca_dir, false)?;
        ca
    };

    let server_cert = dir.join("server.pem");
    if !still_valid(&server_cert, now, Duration::from_secs(86_400)) {
        let ips = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        let spec = LeafSpec::server(
            vec!["localhost".into()],
            ips,
            Validity::for_ttl(now, SERVER_TTL),
        );
        ca.issue(&spec)?.save(&dir, "server")?;
    }
    let client_cert = dir.join("dev.pem");
    if !still_valid(&client_cert, now, Duration::from_secs(3_600)) {
        let spec = LeafSpec::client(DEV_IDENTITY, Validity::for_ttl(now, CLIENT_TTL));
        ca.issue(&spec)?.save(&dir, "dev")?;
    }
    let policy = dir.join("policy.toml");
    if !policy.exists() {
        write(&policy, DEV_POLICY)?;
    }
    let server_config = dir.join("server.toml");
    write(
        &server_config,
        &format!(
            "# tp quickstart server config (rewritten by each quickstart run). See docs/config.md.\n\
             listen = \"{listen}\"\n\
             policy = \"policy.toml\"\n\n\
             [tls]\n\
             cert = \"server.pem\"\n\
             key = \"server.key\"\n\
             client_ca = \"ca/ca.pem\"\n"
        ),
    )?;
    Ok(Files {
        client_config: dir.join("client.toml"),
        ca_cert: ca_dir.join("ca.pem"),
        dir,
        server_config,
        client_cert,
        policy,
    })
}

/// Writes the client config for the dev identity, pointing at `server`.
pub fn write_client_config(files: &Files, server: SocketAddr) -> Result<(), QuickstartError> {
    write(
        &files.client_config,
        &format!(
            "# tp client config for the quickstart's dev identity ({DEV_IDENTITY}).\n\
             # Use it with: tp --config {} HOST PORT   (or copy it to ~/.config/tp/config.toml)\n\
             server = \"{server}\"\n\
             server_name = \"localhost\"\n\
             cert = \"dev.pem\"\n\
             key = \"dev.key\"\n\
             ca = \"ca/ca.pem\"\n",
            files.client_config.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_is_idempotent_and_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let now = SystemTime::now();
        let files = prepare(tmp.path(), listen, now).unwrap();
        let ca_before = std::fs::read(&files.ca_cert).unwrap();
        let client_before = std::fs::read(&files.client_cert).unwrap();
        std::fs::write(&files.policy, DEV_POLICY.replace("dev-loopback", "edited")).unwrap();

        let files = prepare(tmp.path(), listen, now).unwrap();
        assert_eq!(
            std::fs::read(&files.ca_cert).unwrap(),
            ca_before,
            "CA is reused"
        );
        assert_eq!(
            std::fs::read(&files.client_cert).unwrap(),
            client_before,
            "valid cert reused"
        );
        assert!(
            std::fs::read_to_string(&files.policy)
                .unwrap()
                .contains("edited"),
            "policy kept"
        );

        // Nine hours later the 8h client certificate is renewed.
        let later = now + Duration::from_secs(9 * 3_600);
        let files = prepare(tmp.path(), listen, later).unwrap();
        assert_ne!(std::fs::read(&files.client_cert).unwrap(), client_before);

        let config = crate::Config::load(&files.server_config).unwrap();
        assert_eq!(config.policy.rule_count(), 2);
    }
}
