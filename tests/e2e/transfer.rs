//! Bulk transfer: 64 MiB each way on one tunnel, checksummed, while four more
//! tunnels move 8 MiB each way at the same time. Through `tp up`, and through raw
//! tunnels over both transports.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tp_tests::bins::TpUp;
use tp_tests::client::open_tunnel_over;
use tp_tests::data::{Summary, read_summary, write_stream};
use tp_tests::target::{ExchangeTarget, exchange_header};
use tp_tests::{TestServer, Transport, pki, within};

const MIB: u64 = 1024 * 1024;

/// `(seed, length)` of each transfer: one big, four more at the same time.
const TRANSFERS: [(u64, u64); 5] = [
    (1, 64 * MIB),
    (2, 8 * MIB),
    (3, 8 * MIB),
    (4, 8 * MIB),
    (5, 8 * MIB),
];

/// Uploads `len` bytes of stream `seed` through `tunnel` (to an [`ExchangeTarget`])
/// while the target sends `len` bytes of stream `seed + 1000`; returns what came
/// down, and the tunnel.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin + Send>(
    tunnel: S,
    seed: u64,
    len: u64,
) -> (Summary, S) {
    let (mut r, mut w) = tokio::io::split(tunnel);
    let up = async {
        w.write_all(&exchange_header(seed + 1000, len)).await?;
        write_stream(&mut w, seed, len).await?;
        w.shutdown().await
    };
    let down = read_summary(&mut r);
    let (up, down) = tokio::join!(up, down);
    up.expect("upload");
    (down.expect("download"), r.unsplit(w))
}

/// Runs [`TRANSFERS`] at once, one on each of `tunnels` (all to `target`), and
/// checks every byte both ways and the server's count of the big one.
async fn transfer_all<S>(server: &TestServer, target: &mut ExchangeTarget, tunnels: Vec<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    assert_eq!(tunnels.len(), TRANSFERS.len());
    let started = Instant::now();
    let tasks: Vec<_> = tunnels
        .into_iter()
        .zip(TRANSFERS)
        .map(|(tunnel, (seed, len))| tokio::spawn(exchange(tunnel, seed, len)))
        .collect();
    // Every tunnel stays open until the target has reported: the last handle of a
    // QUIC connection closes it at once, and upload bytes the server has not yet
    // acknowledged would be lost (a closed TCP socket still delivers them).
    let mut done = Vec::new();
    for (task, (seed, len)) in tasks.into_iter().zip(TRANSFERS) {
        let (down, tunnel) = within("a transfer", Duration::from_secs(90), task)
            .await
            .expect("transfer task");
        done.push(tunnel);
        assert_eq!(
            down,
            Summary::of_stream(seed + 1000, len),
            "download of tunnel {seed} ({len} bytes)"
        );
    }
    let elapsed = started.elapsed();

    let mut reports = Vec::new();
    for _ in TRANSFERS {
        reports.push(target.next_report().await);
    }
    for (seed, len) in TRANSFERS {
        let report = reports
            .iter()
            .find(|r| r.asked.0 == seed + 1000)
            .unwrap_or_else(|| panic!("no report for tunnel {seed}: {reports:?}"));
        assert_eq!(report.asked.1, len);
        assert_eq!(
            report.received,
            Summary::of_stream(seed, len),
            "upload of tunnel {seed} ({len} bytes)"
        );
    }
    drop(done);
    let total = 2 * (64 + 4 * 8);
    eprintln!(
        "moved {total} MiB in {elapsed:?} ({:.0} MiB/s)",
        total as f64 / elapsed.as_secs_f64()
    );

    // The server counted every byte of the big one, both ways (+16 header bytes up).
    let big = format!("bytes.up={}", 64 * MIB + 16);
    let line = server.expect_log(&["tunnel closed", &big]).await;
    assert!(line.contains(&format!("bytes.down={}", 64 * MIB)), "{line}");
    tp_tests::assert_eventually!(
        server.log_lines_with(&["tunnel closed"]).len() == TRANSFERS.len(),
        "{} tunnel closed lines",
        server.log_lines_with(&["tunnel closed"]).len()
    );
}

/// Through `tp up`: over QUIC the five tunnels share one connection.
async fn checksummed_64_mib_both_ways_through_tp_up(transport: Transport) {
    let server = TestServer::start().await;
    let mut target = ExchangeTarget::start().await;
    let config = server.client_config_over(&pki().alice, transport);
    let up = TpUp::start(&config, &target.addr().to_string()).await;
    let mut tunnels = Vec::new();
    for _ in TRANSFERS {
        let tcp = TcpStream::connect(("127.0.0.1", up.port()))
            .await
            .expect("connect to tp up");
        tunnels.push(tcp);
    }
    transfer_all(&server, &mut target, tunnels).await;
    assert_eq!(up.terminate().await.code(), Some(0));
    let opened = server.log_lines_with(&["tunnel closed", transport.log_field()]);
    assert_eq!(opened.len(), TRANSFERS.len(), "{opened:#?}");
    if transport == Transport::Quic {
        assert_eq!(
            server.log_lines_with(&["QUIC established"]).len(),
            1,
            "tp up carried every tunnel on one QUIC connection"
        );
    }
}

/// The same transfers on raw tunnels: five connections over TLS/TCP, or five
/// QUIC connections of one stream each.
async fn checksummed_64_mib_both_ways_on_raw_tunnels(transport: Transport) {
    let server = TestServer::start().await;
    let mut target = ExchangeTarget::start().await;
    let (host, port) = (target.addr().ip().to_string(), target.addr().port());
    let mut tunnels = Vec::new();
    for _ in TRANSFERS {
        tunnels.push(open_tunnel_over(transport, server.addr(), &pki().alice, &host, port).await);
    }
    transfer_all(&server, &mut target, tunnels).await;
}

tp_tests::over_both_transports!(
    checksummed_64_mib_both_ways_on_raw_tunnels,
    checksummed_64_mib_both_ways_through_tp_up,
);
