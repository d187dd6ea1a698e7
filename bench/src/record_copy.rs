//! `tp-bench record-copy`: rustls alone, in memory, one connection after another,
//! each moving the same bytes from server to client; prints every connection's
//! MB/s. No socket and no tunnel: what is left is rustls' work on each record
//! (encrypt, decrypt, and the copies around them), so a connection much slower
//! than the rest shows a copy that takes a slow path of the machine's `memcpy` for
//! where that connection's buffers happen to lie (bench/analysis.md, "A new
//! machine of this kind"). Run it as built (the C library's `malloc`), with
//! another allocator preloaded (`LD_PRELOAD=.../libjemalloc.so.2`), and, on
//! x86-64 with glibc, with `GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=1048576`
//! (no `rep movsb` below 1 MiB) as the reference without that slow path.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use tp_net::relay::{ALIGN, place};

/// What the plaintext buffers are, as tp's relay has them.
const CHUNK: usize = 64 * 1024;

/// `tp-bench record-copy` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Connections, one after another.
    #[arg(long, default_value_t = 30)]
    connections: usize,
    /// MiB each connection moves.
    #[arg(long, default_value_t = 128)]
    mib: usize,
    /// Where the plaintext handed to the server starts, past a 64-byte boundary
    /// (tp's relay: 5, rustls' record header).
    #[arg(long, default_value_t = 0)]
    send_offset: usize,
    /// Where the client's plaintext is read to, past a 64-byte boundary.
    #[arg(long, default_value_t = 0)]
    receive_offset: usize,
}

pub(crate) fn main(args: &Args) -> anyhow::Result<()> {
    if args.connections == 0 || args.mib == 0 {
        bail!("--connections and --mib must be at least 1");
    }
    let (server, client) = configs()?;
    let mut rates = Vec::with_capacity(args.connections);
    // Allocations of varied sizes kept between connections, so that the heap
    // differs for each.
    let mut kept = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        kept.push(vec![0u8; 1000 + i * 7919 % 30_000]);
        rates.push(one(&server, &client, args)?);
    }
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let preload = std::env::var("LD_PRELOAD").unwrap_or_default();
    println!(
        "{} connections of {} MiB, server to client; plaintext sent from {} and received \
         to {} bytes past a 64-byte boundary; LD_PRELOAD={}",
        args.connections,
        args.mib,
        args.send_offset % ALIGN,
        args.receive_offset % ALIGN,
        if preload.is_empty() {
            "(unset)"
        } else {
            &preload
        },
    );
    let each: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    println!("MB/s per connection: {}", each.join(" "));
    println!(
        "median {:.0}, fastest {:.0}, slowest {:.0} MB/s",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        sorted[0],
    );
    Ok(())
}

/// A server configuration with a fresh self-signed certificate, and a client
/// configuration trusting it.
fn configs() -> anyhow::Result<(Arc<ServerConfig>, Arc<ClientConfig>)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])?.self_signed(&key)?;
    let der: CertificateDer<'static> = cert.der().clone();
    let mut roots = RootCertStore::empty();
    roots.add(der.clone())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)?;
    let client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((Arc::new(server), Arc::new(client)))
}

/// One connection: handshake, then `args.mib` MiB from server to client; MB/s.
fn one(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>, args: &Args) -> anyhow::Result<f64> {
    let name = ServerName::try_from("localhost")?;
    let mut c = ClientConnection::new(client.clone(), name)?;
    let mut s = ServerConnection::new(server.clone())?;
    let mut wire = Vec::with_capacity(2 * CHUNK);
    while c.is_handshaking() || s.is_handshaking() {
        wire.clear();
        c.write_tls(&mut wire)?;
        s.read_tls(&mut &wire[..])?;
        s.process_new_packets()?;
        wire.clear();
        s.write_tls(&mut wire)?;
        c.read_tls(&mut &wire[..])?;
        c.process_new_packets()?;
    }
    let mut send = vec![7u8; CHUNK + ALIGN];
    let at = place(&send, args.send_offset);
    let send = &mut send[at..at + CHUNK];
    let mut receive = vec![0u8; CHUNK + ALIGN];
    let at = place(&receive, args.receive_offset);
    let receive = &mut receive[at..at + CHUNK];

    let total = args.mib << 20;
    let mut moved = 0;
    let started = Instant::now();
    while moved < total {
        s.writer().write_all(send)?;
        wire.clear();
        while s.wants_write() {
            s.write_tls(&mut wire)?;
        }
        let mut tls = &wire[..];
        let mut filled = 0;
        while !tls.is_empty() {
            c.read_tls(&mut tls)?;
            c.process_new_packets()?;
            loop {
                match c.reader().read(&mut receive[filled..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        moved += n;
                        filled = (filled + n) % CHUNK;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e).context("reading plaintext"),
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(moved as f64 / secs / 1e6)
}
