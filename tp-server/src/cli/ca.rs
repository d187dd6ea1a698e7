//! `tp-server ca …`: mint a development CA, issue client and server certificates,
//! revoke them. The work is done by [`crate::pki`]; this file parses arguments, applies
//! the TTL policy and says what it wrote.

use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::pki::{self, Ca, Issued, LeafSpec, Validity};

/// Default CA directory (overridden by `--dir` or `TP_CA_DIR`).
pub const DEFAULT_CA_DIR: &str = "tp-ca";
/// Default revocation list name inside the CA directory.
pub const REVOCATION_LIST_NAME: &str = "revoked.txt";

/// `tp-server ca`: the development certificate authority.
#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Create a CA: DIR/ca.pem (certificate) and DIR/ca.key (private key, mode 0600).
    Init(InitArgs),
    /// Issue a client or server certificate signed by the CA.
    Issue {
        /// Which kind of certificate.
        #[command(subcommand)]
        kind: IssueKind,
    },
    /// Add a certificate's serial to the revocation list the server honours.
    Revoke(RevokeArgs),
}

/// The CA directory, shared by every `ca` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct CaDirArg {
    /// Directory holding ca.pem and ca.key.
    #[arg(long = "dir", value_name = "DIR", env = "TP_CA_DIR", default_value = DEFAULT_CA_DIR)]
    pub dir: PathBuf,
}

/// Arguments of `tp-server ca init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write the CA.
    #[command(flatten)]
    pub ca: CaDirArg,
    /// Common name of the CA certificate.
    #[arg(long, default_value = "tp dev CA")]
    pub name: String,
    /// Lifetime of the CA certificate (s, m, h or d, e.g. 3650d).
    #[arg(long, default_value = "3650d", value_parser = pki::parse_ttl)]
    pub ttl: Duration,
    /// Replace an existing CA. Every certificate it issued stops being trusted.
    #[arg(long)]
    pub force: bool,
}

/// `tp-server ca issue client|server`.
#[derive(Debug, clap::Subcommand)]
pub enum IssueKind {
    /// A short-lived client certificate (EKU clientAuth) for a user or device.
    Client(ClientArgs),
    /// A server certificate (EKU serverAuth) for the names clients dial.
    Server(ServerArgs),
}

/// Where a leaf goes.
#[derive(Debug, Clone, clap::Args)]
pub struct OutArgs {
    /// Directory for STEM.pem (certificate chain) and STEM.key (private key).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// File name stem; defaults to the identity (client) or first name (server), with
    /// characters unsafe in file names replaced by '_'.
    #[arg(long)]
    pub stem: Option<String>,
}

/// Arguments of `tp-server ca issue client`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Identity: alice@corp (SAN email), spiffe://corp/laptop/alice (SAN URI) or a
    /// plain name (CN only).
    #[arg(long)]
    pub name: String,
    /// Lifetime (s, m, h or d). More than 30d needs --allow-long-ttl.
    #[arg(long, default_value = "8h", value_parser = pki::parse_ttl)]
    pub ttl: Duration,
    /// Allow a client TTL above 30d. Short-lived client certificates are the default
    /// for a reason: a leaked one expires soon.
    #[arg(long)]
    pub allow_long_ttl: bool,
    /// The CA to sign with.
    #[command(flatten)]
    pub ca: CaDirArg,
    /// Output location.
    #[command(flatten)]
    pub out: OutArgs,
}

/// Arguments of `tp-server ca issue server`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("names").required(true).multiple(true).args(["dns", "ip"])))]
pub struct ServerArgs {
    /// DNS name clients use to reach the server (repeatable; the first is the CN).
    #[arg(long)]
    pub dns: Vec<String>,
    /// IP address clients use to reach the server (repeatable).
    #[arg(long)]
    pub ip: Vec<IpAddr>,
    /// Lifetime (s, m, h or d).
    #[arg(long, default_value = "90d", value_parser = pki::parse_ttl)]
    pub ttl: Duration,
    /// The CA to sign with.
    #[command(flatten)]
    pub ca: CaDirArg,
    /// Output location.
    #[command(flatten)]
    pub out: OutArgs,
}

/// Arguments of `tp-server ca revoke`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["cert", "serial"])))]
pub struct RevokeArgs {
    /// The certificate to revoke (PEM; the first certificate in the file).
    #[arg(value_name = "CERT.pem")]
    pub cert: Option<PathBuf>,
    /// The serial to revoke, in hex (colons and upper case accepted).
    #[arg(long, value_name = "HEX")]
    pub serial: Option<String>,
    /// Revocation list to append to [default: DIR/revoked.txt].
    #[arg(long, value_name = "FILE")]
    pub list: Option<PathBuf>,
    /// Why, recorded in the list as a comment.
    #[arg(long)]
    pub reason: Option<String>,
    /// The CA directory (locates the default list).
    #[command(flatten)]
    pub ca: CaDirArg,
}

impl CaCommand {
    /// Runs the subcommand, printing what it wrote (paths, identity, serial, expiry).
    pub fn run(self) -> anyhow::Result<()> {
        self.run_with(&mut std::io::stdout().lock(), SystemTime::now())
    }

    /// [`run`](CaCommand::run) with the output and the clock passed in.
    pub fn run_with(self, out: &mut dyn Write, now: SystemTime) -> anyhow::Result<()> {
        match self {
            CaCommand::Init(args) => init(args, out, now),
            CaCommand::Issue {
                kind: IssueKind::Client(args),
            } => issue_client(args, out, now),
            CaCommand::Issue {
                kind: IssueKind::Server(args),
            } => issue_server(args, out, now),
            CaCommand::Revoke(args) => revoke(args, out, now),
        }
    }
}

fn init(args: InitArgs, out: &mut dyn Write, now: SystemTime) -> anyhow::Result<()> {
    let ca = Ca::generate(&args.name, Validity::for_ttl(now, args.ttl))?;
    let paths = ca.save(&args.ca.dir, args.force)?;
    writeln!(out, "created CA {:?}", ca.subject())?;
    writeln!(out, "  certificate  {}", paths.cert.display())?;
    writeln!(
        out,
        "  private key  {}  (mode 0600, keep it secret)",
        paths.key.display()
    )?;
    writeln!(out, "  serial       {}", pki::serial_hex(ca.cert_der())?)?;
    writeln!(out, "  not_after    {}", pki::rfc3339(ca.not_after()))?;
    Ok(())
}

fn issue_client(args: ClientArgs, out: &mut dyn Write, now: SystemTime) -> anyhow::Result<()> {
    if args.ttl > pki::MAX_CLIENT_TTL && !args.allow_long_ttl {
        bail!(
            "client TTL {} is longer than 30d; client certificates are meant to be short-lived \
             (pass --allow-long-ttl to insist)",
            pki::format_ttl(args.ttl)
        );
    }
    let ca = load_ca(&args.ca.dir)?;
    let issued = ca.issue(&LeafSpec::client(
        args.name.clone(),
        Validity::for_ttl(now, args.ttl),
    ))?;
    // Print the identity as the server will read it, not as we meant it.
    let id = policy::Identity::from_cert_der(&issued.cert_der)?;
    let stem = args.out.stem.unwrap_or_else(|| pki::file_stem(&args.name));
    let names = format!("{id} ({})", id.kind());
    report(out, "client", &names, &issued, &args.out.out, &stem)
}

fn issue_server(args: ServerArgs, out: &mut dyn Write, now: SystemTime) -> anyhow::Result<()> {
    let ca = load_ca(&args.ca.dir)?;
    let spec = LeafSpec::server(args.dns, args.ip, Validity::for_ttl(now, args.ttl));
    let issued = ca.issue(&spec)?;
    let mut names = spec.dns_names.clone();
    names.extend(spec.ips.iter().map(IpAddr::to_string));
    let stem = args
        .out
        .stem
        .unwrap_or_else(|| pki::file_stem(&spec.identity));
    report(
        out,
        "server",
        &names.join(", "),
        &issued,
        &args.out.out,
        &stem,
    )
}

fn load_ca(dir: &Path) -> anyhow::Result<Ca> {
    Ca::load(dir).with_context(|| {
        format!(
            "loading the CA from {} (create one with `tp-server ca init --dir {}`)",
            dir.display(),
            dir.display()
        )
    })
}

fn report(
    out: &mut dyn Write,
    kind: &str,
    names: &str,
    issued: &Issued,
    dir: &Path,
    stem: &str,
) -> anyhow::Result<()> {
    let paths = issued.save(dir, stem)?;
    writeln!(out, "issued {kind} certificate")?;
    writeln!(
        out,
        "  certificate  {}  (leaf + chain)",
        paths.cert.display()
    )?;
    writeln!(out, "  private key  {}  (mode 0600)", paths.key.display())?;
    writeln!(out, "  identity     {names}")?;
    writeln!(out, "  serial       {}", issued.serial_hex)?;
    writeln!(out, "  not_after    {}", pki::rfc3339(issued.not_after))?;
    Ok(())
}

fn revoke(args: RevokeArgs, out: &mut dyn Write, now: SystemTime) -> anyhow::Result<()> {
    let list_path = args
        .list
        .unwrap_or_else(|| args.ca.dir.join(REVOCATION_LIST_NAME));
    let (serial, about) = match (&args.cert, &args.serial) {
        (Some(path), _) => {
            let der = CertificateDer::from_pem_file(path)
                .with_context(|| format!("reading a certificate from {}", path.display()))?;
            let (serial, about) = describe(&der)
                .with_context(|| format!("reading a certificate from {}", path.display()))?;
            (serial, Some(about))
        }
        (None, Some(serial)) => (
            pki::canonical_serial(serial).with_context(|| format!("--serial {serial:?}"))?,
            None,
        ),
        (None, None) => bail!("name a certificate file or --serial"),
    };

    let existing = match pki::RevocationList::load(&list_path) {
        Err(pki::PkiError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            pki::RevocationList::default()
        }
        other => other?,
    };
    if existing.contains_serial(&serial) {
        writeln!(
            out,
            "serial {serial} is already in {}; nothing written",
            list_path.display()
        )?;
        return Ok(());
    }
    let mut comment = format!("revoked {}", pki::rfc3339(now.into()));
    if let Some(about) = &about {
        comment.push_str(&format!(": {about}"));
    }
    if let Some(reason) = &args.reason {
        comment.push_str(&format!(" ({reason})"));
    }
    pki::append_revocation(&list_path, &serial, Some(&comment))?;
    writeln!(out, "revoked serial {serial}")?;
    if let Some(about) = about {
        writeln!(out, "  certificate  {about}")?;
    }
    writeln!(
        out,
        "  list         {}  ({} entries)",
        list_path.display(),
        existing.len() + 1
    )?;
    writeln!(
        out,
        "  running servers apply it on SIGHUP (`kill -HUP $(pidof tp-server)`)"
    )?;
    Ok(())
}

/// The canonical serial and a one-line description (identity as the server reads it,
/// expiry) of a certificate.
fn describe(der: &[u8]) -> anyhow::Result<(String, String)> {
    let (_, x509) = x509_parser::parse_x509_certificate(der).context("not an X.509 certificate")?;
    let not_after = pki::rfc3339(x509.validity().not_after.to_datetime());
    let who =
        policy::Identity::from_cert_der(der).map_or_else(|e| format!("({e})"), |id| id.to_string());
    Ok((
        pki::serial_hex(der)?,
        format!("{who}, not_after {not_after}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: CaCommand,
    }

    /// Runs `tp-server ca ARGS...` and returns its stdout.
    fn ca(args: &[&str]) -> anyhow::Result<String> {
        let cli = Cli::try_parse_from(std::iter::once("ca").chain(args.iter().copied()))?;
        let mut out = Vec::new();
        cli.cmd.run_with(&mut out, SystemTime::now())?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn init_issue_revoke_flow() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let (dir_s, out_s) = (dir.to_str().unwrap(), tmp.path().to_str().unwrap());
        let text = ca(&["init", "--dir", dir_s, "--name", "test CA"]).unwrap();
        assert!(
            text.contains("ca.key") && text.contains("not_after"),
            "{text}"
        );
        let e = ca(&["init", "--dir", dir_s]).unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        ca(&["init", "--dir", dir_s, "--force", "--ttl", "30d"]).unwrap();

        let text = ca(&[
            "issue",
            "client",
            "--name",
            "alice@corp",
            "--dir",
            dir_s,
            "--out",
            out_s,
        ])
        .unwrap();
        assert!(text.contains("alice@corp (email)"), "{text}");
        let alice = tmp.path().join("alice@corp.pem");
        let serial = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("serial"))
            .unwrap()
            .trim();
        let issued = CertificateDer::from_pem_file(&alice).unwrap();
        assert_eq!(pki::serial_hex(&issued).unwrap(), serial);

        let long = [
            "issue", "client", "--name", "a", "--dir", dir_s, "--out", out_s, "--ttl",
        ];
        let e = ca(&[&long[..], &["31d"]].concat()).unwrap_err();
        assert!(e.to_string().contains("--allow-long-ttl"), "{e}");
        let e = ca(&[&long[..], &["60d", "--allow-long-ttl"]].concat()).unwrap_err();
        assert!(e.to_string().contains("after the CA"), "{e}");
        ca(&[&long[..], &["29d"]].concat()).unwrap();

        let server = [
            "issue",
            "server",
            "--dns",
            "tp.test",
            "--ip",
            "127.0.0.1",
            "--ttl",
            "1d",
        ];
        let text = ca(&[&server[..], &["--dir", dir_s, "--out", out_s]].concat()).unwrap();
        assert!(text.contains("tp.test, 127.0.0.1"), "{text}");
        assert!(tmp.path().join("tp.test.key").exists());
        assert!(
            ca(&["issue", "server", "--dir", dir_s]).is_err(),
            "needs --dns or --ip"
        );

        let text = ca(&["revoke", alice.to_str().unwrap(), "--dir", dir_s]).unwrap();
        assert!(
            text.contains(serial) && text.contains("alice@corp"),
            "{text}"
        );
        let text = ca(&["revoke", "--serial", &serial.to_uppercase(), "--dir", dir_s]).unwrap();
        assert!(text.contains("already"), "{text}");
        let list = pki::RevocationList::load(&dir.join(REVOCATION_LIST_NAME)).unwrap();
        assert!(list.is_revoked(&issued) && list.len() == 1);
        assert!(ca(&["revoke", "--serial", "xyz", "--dir", dir_s]).is_err());
        assert!(
            ca(&["revoke", "--dir", dir_s]).is_err(),
            "needs CERT or --serial"
        );
    }
}
