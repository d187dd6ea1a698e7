//! `workers`: the threads that serve connections (TCP workers, and the main runtime
//! with the accept loops and QUIC), one per core unless the config says how many; a
//! reload does not change them.

use tp_tests::client::{echo, open_tunnel, round_trip};
use tp_tests::process::ServerProcess;
use tp_tests::target::EchoTarget;
use tp_tests::{TestServer, pki};

/// The names of process `pid`'s threads (cut to 15 bytes by the kernel).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("listing the server's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|comm| comm.trim_end().to_owned())
        .collect()
}

/// The connection workers of process `pid`: its threads named `tp-worker-N`
/// (their blocking threads are `tp-worker-N-blocking`, cut to `tp-worker-N-blo`).
fn worker_threads(pid: u32) -> usize {
    (thread_names(pid).iter())
        .filter(|name| {
            name.strip_prefix("tp-worker-")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count()
}

/// The main runtime's threads (accept loops, QUIC): `tp-main`. Its blocking
/// threads have the same name, so this counts its workers only until the first
/// blocking call (a reload).
fn main_threads(pid: u32) -> usize {
    (thread_names(pid).iter())
        .filter(|name| *name == "tp-main")
        .count()
}

fn listening_line(server: &ServerProcess) -> String {
    (server.stderr.snapshot().into_iter())
        .find(|l| l.contains("tp-server listening"))
        .expect("the listening line")
}

#[tokio::test]
async fn workers_sets_the_threads_serving_tcp_and_only_a_restart_changes_it() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TestServer::builder()
        .top("workers", "3")
        .write_files(dir.path());
    let server = ServerProcess::start(&config).await;
    let pid = server.child.id().expect("running");
    let line = listening_line(&server);
    assert!(line.contains("workers=3"), "{line}");
    assert_eq!(worker_threads(pid), 3);
    assert_eq!(main_threads(pid), 3);

    // Four tunnels at once, so every worker serves at least one.
    let target = EchoTarget::start().await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(open_tunnel(server.addr, &pki.alice, "127.0.0.1", target.port()).await);
    }
    for (i, tunnel) in open.iter_mut().enumerate() {
        echo(tunnel, format!("tunnel {i}").as_bytes()).await;
    }

    // A reload asking for five says it keeps three, and does.
    let text = std::fs::read_to_string(&config).expect("reading the config");
    std::fs::write(&config, text.replace("workers = 3", "workers = 5")).expect("config");
    server.reload("workers changes only on restart").await;
    server
        .stderr
        .wait_for("the reload", |l| l.contains("configuration reloaded"))
        .await;
    assert_eq!(worker_threads(pid), 3);
    for tunnel in &mut open {
        echo(tunnel, b"after the reload").await;
    }
    let mut next = open_tunnel(server.addr, &pki.bob, "127.0.0.1", target.port()).await;
    assert_eq!(round_trip(&mut next, b"bob").await, b"bob");
}

#[tokio::test]
async fn without_workers_there_is_one_per_core() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = TestServer::builder().write_files(dir.path());
    let server = ServerProcess::start(&config).await;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let pid = server.child.id().expect("running");
    assert_eq!(worker_threads(pid), cores);
    assert_eq!(main_threads(pid), cores);
    let line = listening_line(&server);
    assert!(line.contains(&format!("workers={cores}")), "{line}");
}
