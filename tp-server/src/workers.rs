//! Connection workers: every accepted TCP connection is served, for its whole
//! life, on one of a few single-threaded runtimes, one per core.
//!
//! A connection's TLS handshake, its tunnel, the target's socket and their timers
//! then stay on one thread, as in haproxy's and nginx's worker model. On tokio's
//! work-stealing runtime a busy tunnel's task kept being woken on one core and run
//! on the other; on one thread, one bulk stream moved about 15 % more
//! (docs/adr/0004-thread-per-core-tcp.md). A new connection goes to the worker
//! serving the fewest, so long-lived tunnels spread evenly. QUIC connections stay
//! on the main runtime: a QUIC connection's streams share one connection driver,
//! and they gain from more than one thread.
//!
//! The workers stop when the last handle to [`Workers`] is dropped: the run's
//! context holds it, so after the drain, once the QUIC accept loop (which holds
//! a clone) has ended too. Whatever still runs on them then (nothing the drain
//! waited for) is dropped.

use std::future::Future;
use std::io;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span, warn};

/// Blocking threads of all workers together (tokio's default for one runtime).
const MAX_BLOCKING_THREADS: usize = 512;
/// At least this many per worker.
const MIN_BLOCKING_THREADS: usize = 64;

/// The connection workers of one server run.
#[derive(Debug)]
pub(crate) struct Workers {
    workers: Vec<Worker>,
}

#[derive(Debug)]
struct Worker {
    handle: Handle,
    /// Connections being served on this worker.
    load: Arc<AtomicUsize>,
    /// Dropped to stop the worker's thread.
    _stop: oneshot::Sender<()>,
}

impl Workers {
    /// One worker per core this process may run on (CPU affinity and cgroup
    /// quotas count), at least one.
    pub(crate) fn per_core() -> io::Result<Workers> {
        let cores = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        Workers::start(cores)
    }

    /// Starts `count` workers, each a thread running a single-threaded runtime.
    pub(crate) fn start(count: NonZeroUsize) -> io::Result<Workers> {
        // Blocking threads (DNS lookups) per worker: the process keeps about
        // tokio's default of 512 for its connections in all.
        let blocking = (MAX_BLOCKING_THREADS / count.get()).max(MIN_BLOCKING_THREADS);
        let workers = (0..count.get())
            .map(|index| Worker::start(index, blocking))
            .collect::<io::Result<_>>()?;
        Ok(Workers { workers })
    }

    /// Serves `tcp` on the least busy worker: `serve` runs there in `span`, with
    /// the connection registered on that worker's runtime, tracked by `tracker`
    /// from now on. Fails only if the connection could not leave the runtime it
    /// was accepted on (it is then closed).
    pub(crate) fn spawn<F, Fut>(
        &self,
        tcp: TcpStream,
        tracker: &TaskTracker,
        span: Span,
        serve: F,
    ) -> io::Result<()>
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let worker = (self.workers.iter())
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
            .expect("at least one worker");
        let tcp = tcp.into_std()?;
        let load = Load::count(&worker.load);
        let task = async move {
            let _load = load;
            match TcpStream::from_std(tcp) {
                Ok(tcp) => serve(tcp).await,
                Err(e) => {
                    warn!(error = %e, "connection dropped: it could not be registered on a worker")
                }
            }
        };
        worker
            .handle
            .spawn(tracker.track_future(task.instrument(span)));
        Ok(())
    }

    /// How many workers there are.
    pub(crate) fn count(&self) -> usize {
        self.workers.len()
    }

    /// Connections being served on each worker.
    #[cfg(test)]
    fn loads(&self) -> Vec<usize> {
        (self.workers.iter())
            .map(|w| w.load.load(Ordering::Relaxed))
            .collect()
    }
}

impl Worker {
    /// Starts the thread of worker `index`; its runtime is built there, so a
    /// failure to start leaves no runtime to drop here.
    fn start(index: usize, blocking: usize) -> io::Result<Worker> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (started, handle) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(format!("tp-worker-{index}"))
            .spawn(move || {
                // A current-thread runtime's only threads are its blocking pool
                // (DNS lookups): named after the worker they serve.
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name(format!("tp-worker-{index}-blocking"))
                    .max_blocking_threads(blocking)
                    .build();
                let runtime = match runtime {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started.send(Err(e));
                        return;
                    }
                };
                if started.send(Ok(runtime.handle().clone())).is_err() {
                    return;
                }
                // Runs the connections spawned onto the handle until the sender
                // is dropped.
                let _ = runtime.block_on(stopped);
                // Does not wait for blocking tasks (a DNS lookup) to end.
                runtime.shutdown_background();
            })?;
        // Waits for the runtime's construction, microseconds; once, at start.
        let handle = handle
            .recv()
            .map_err(|_| io::Error::other("the worker thread ended before it started"))??;
        Ok(Worker {
            handle,
            load: Arc::default(),
            _stop: stop,
        })
    }
}

/// One connection on a worker's count, taken off when dropped (also when the
/// task is cancelled or panics).
struct Load(Arc<AtomicUsize>);

impl Load {
    fn count(load: &Arc<AtomicUsize>) -> Load {
        load.fetch_add(1, Ordering::Relaxed);
        Load(load.clone())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair: the accepted end (to hand to a worker) and the client.
    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (accepted.expect("accept").0, client.expect("connect"))
    }

    fn two() -> Workers {
        Workers::start(NonZeroUsize::new(2).expect("2")).expect("workers start")
    }

    #[tokio::test]
    async fn a_connection_is_served_on_a_worker_thread_and_its_bytes_flow() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let workers = two();
        let tracker = TaskTracker::new();
        let (accepted, mut client) = pair(&listener).await;
        let (thread_tx, thread_rx) = oneshot::channel();
        workers
            .spawn(accepted, &tracker, Span::none(), |mut tcp| async move {
                let name = std::thread::current().name().map(str::to_owned);
                // A blocking task (a DNS lookup) runs on the worker's own pool.
                let blocking = tokio::task::spawn_blocking(|| {
                    std::thread::current().name().map(str::to_owned)
                })
                .await
                .expect("blocking task");
                let _ = thread_tx.send((name, blocking));
                let mut line = [0; 5];
                tcp.read_exact(&mut line).await.expect("read on the worker");
                tcp.write_all(&line).await.expect("write on the worker");
            })
            .expect("spawn");
        let (name, blocking) = thread_rx.await.expect("served");
        let name = name.expect("a named thread");
        assert!(name.starts_with("tp-worker-"), "served on {name}");
        assert_eq!(
            blocking.as_deref(),
            Some(format!("{name}-blocking").as_str()),
            "its blocking pool is named after it"
        );
        client.write_all(b"hello").await.expect("write");
        let mut echo = [0; 5];
        client.read_exact(&mut echo).await.expect("echo");
        assert_eq!(&echo, b"hello");
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .expect("the tracker sees the connection end");
    }

    #[tokio::test]
    async fn connections_go_to_the_least_busy_worker_and_leave_its_count_when_done() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let workers = two();
        let tracker = TaskTracker::new();
        let mut releases = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..4 {
            let (accepted, client) = pair(&listener).await;
            clients.push(client);
            let (release, released) = oneshot::channel::<()>();
            releases.push(release);
            workers
                .spawn(accepted, &tracker, Span::none(), |_tcp| async move {
                    let _ = released.await;
                })
                .expect("spawn");
        }
        assert_eq!(workers.loads(), [2, 2]);
        assert_eq!(tracker.len(), 4, "the tracker counts every connection");
        drop(releases);
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .expect("all four end");
        assert_eq!(workers.loads(), [0, 0]);
    }

    #[tokio::test]
    async fn dropping_the_workers_stops_what_still_runs_on_them() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let workers = two();
        let tracker = TaskTracker::new();
        let (accepted, _client) = pair(&listener).await;
        let (started_tx, started) = oneshot::channel();
        let (held_tx, held) = oneshot::channel::<()>();
        workers
            .spawn(accepted, &tracker, Span::none(), |_tcp| async move {
                let _ = started_tx.send(());
                let _held = held_tx;
                std::future::pending::<()>().await;
            })
            .expect("spawn");
        started.await.expect("started");
        drop(workers);
        let dropped = tokio::time::timeout(Duration::from_secs(5), held).await;
        assert!(
            matches!(dropped, Ok(Err(_))),
            "the task was dropped with its worker: {dropped:?}"
        );
    }
}
