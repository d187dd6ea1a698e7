//! Bulk transfer through `tp up`: 64 MiB each way on one tunnel, checksummed, while
//! four more tunnels move 8 MiB each way at the same time.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tp_tests::bins::TpUp;
use tp_tests::data::{Summary, read_summary, write_stream};
use tp_tests::target::{ExchangeTarget, exchange_header};
use tp_tests::{TestServer, pki, within};

const MIB: u64 = 1024 * 1024;

/// Uploads `len` bytes of stream `seed` through `port` while the target sends
/// `len` bytes of stream `seed + 1000`; returns what came down.
async fn exchange(port: u16, seed: u64, len: u64) -> Summary {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to tp up");
    let (mut r, mut w) = tcp.into_split();
    let up = async move {
        w.write_all(&exchange_header(seed + 1000, len)).await?;
        write_stream(&mut w, seed, len).await?;
        w.shutdown().await
    };
    let down = async move { read_summary(&mut r).await };
    let (up, down) = tokio::join!(up, down);
    up.expect("upload");
    down.expect("download")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksummed_64_mib_both_ways_with_four_more_tunnels() {
    let server = TestServer::start().await;
    let mut target = ExchangeTarget::start().await;
    let config = server.client_config_for(&pki().alice);
    let up = TpUp::start(&config, &target.addr().to_string()).await;
    let port = up.port();

    let started = Instant::now();
    let transfers = [
        (1, 64 * MIB),
        (2, 8 * MIB),
        (3, 8 * MIB),
        (4, 8 * MIB),
        (5, 8 * MIB),
    ];
    let tasks: Vec<_> = transfers
        .iter()
        .map(|&(seed, len)| tokio::spawn(exchange(port, seed, len)))
        .collect();
    for (task, &(seed, len)) in tasks.into_iter().zip(&transfers) {
        let down = within("a transfer", Duration::from_secs(90), task)
            .await
            .expect("transfer task");
        assert_eq!(
            down,
            Summary::of_stream(seed + 1000, len),
            "download of tunnel {seed} ({len} bytes)"
        );
    }
    let elapsed = started.elapsed();

    let mut reports = Vec::new();
    for _ in &transfers {
        reports.push(target.next_report().await);
    }
    for &(seed, len) in &transfers {
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
    let total = 2 * (64 + 4 * 8);
    eprintln!(
        "moved {total} MiB in {elapsed:?} ({:.0} MiB/s)",
        total as f64 / elapsed.as_secs_f64()
    );

    // The server counted every byte of the big one, both ways (+16 header bytes up).
    let big = format!("bytes.up={}", 64 * MIB + 16);
    let line = server.expect_log(&["tunnel closed", &big]).await;
    assert!(line.contains(&format!("bytes.down={}", 64 * MIB)), "{line}");
    assert_eq!(
        server.log_lines_with(&["tunnel closed"]).len(),
        transfers.len()
    );
    assert_eq!(up.terminate().await.code(), Some(0));
}
