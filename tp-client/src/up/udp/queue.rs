//! A flow's queue of datagrams from its local source, bounded in datagrams and
//! in bytes. A full queue drops the new datagram, as a full UDP socket buffer
//! would: the sender never waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Datagrams a flow queues before new ones are dropped.
pub const QUEUE_DATAGRAMS: usize = 64;
/// Payload bytes a flow queues before new datagrams are dropped.
pub const QUEUE_BYTES: usize = 256 * 1024;

/// What [`FlowSender::offer`] did with a datagram.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Offer {
    /// Queued for the flow.
    Queued,
    /// Dropped: the queue is full.
    Dropped,
    /// The flow has ended; the datagram is handed back.
    Closed(Bytes),
}

#[derive(Debug)]
struct Shared {
    max_bytes: usize,
    queued_bytes: AtomicUsize,
    dropped: AtomicU64,
}

/// The dispatcher's end of a flow's queue.
#[derive(Debug)]
pub(super) struct FlowSender {
    tx: mpsc::Sender<Bytes>,
    shared: Arc<Shared>,
}

/// The flow's end of its queue.
#[derive(Debug)]
pub(super) struct FlowReceiver {
    rx: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
}

/// A queue of at most `datagrams` datagrams and `max_bytes` payload bytes (a
/// single datagram larger than that is still taken by an empty queue).
pub(super) fn queue(datagrams: usize, max_bytes: usize) -> (FlowSender, FlowReceiver) {
    let (tx, rx) = mpsc::channel(datagrams.max(1));
    let shared = Arc::new(Shared {
        max_bytes,
        queued_bytes: AtomicUsize::new(0),
        dropped: AtomicU64::new(0),
    });
    let receiver = FlowReceiver {
        rx,
        shared: shared.clone(),
    };
    (FlowSender { tx, shared }, receiver)
}

impl FlowSender {
    /// Whether the flow has ended.
    pub(super) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Queues `payload` unless the queue is full (dropped) or the flow ended.
    pub(super) fn offer(&self, payload: Bytes) -> Offer {
        if self.tx.is_closed() {
            return Offer::Closed(payload);
        }
        let len = payload.len();
        let queued = self.shared.queued_bytes.load(Ordering::Relaxed);
        if queued > 0 && queued + len > self.shared.max_bytes {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Offer::Dropped;
        }
        // Counted before it can be received, so the receiver never goes below 0.
        self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        match self.tx.try_send(payload) {
            Ok(()) => Offer::Queued,
            Err(e) => {
                self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                match e {
                    mpsc::error::TrySendError::Full(_) => {
                        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                        Offer::Dropped
                    }
                    mpsc::error::TrySendError::Closed(payload) => Offer::Closed(payload),
                }
            }
        }
    }
}

impl FlowReceiver {
    /// The next datagram; `None` once the dispatcher dropped its end (shutdown)
    /// and the queue is empty.
    pub(super) async fn recv(&mut self) -> Option<Bytes> {
        let payload = self.rx.recv().await?;
        self.shared
            .queued_bytes
            .fetch_sub(payload.len(), Ordering::Relaxed);
        Some(payload)
    }

    /// Takes no more datagrams: the dispatcher sees the flow as ended (its
    /// offers come back as [`Offer::Closed`]).
    pub(super) fn close(&mut self) {
        self.rx.close();
    }

    /// Datagrams dropped so far because the queue was full.
    pub(super) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Counts a datagram taken off the queue and dropped by the flow itself.
    pub(super) fn count_drop(&self) {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_drops_new_datagrams() {
        let (tx, mut rx) = queue(2, 1000);
        assert_eq!(tx.offer(Bytes::from_static(b"a")), Offer::Queued);
        assert_eq!(tx.offer(Bytes::from_static(b"b")), Offer::Queued);
        assert_eq!(tx.offer(Bytes::from_static(b"c")), Offer::Dropped);
        assert_eq!(rx.recv().await.as_deref(), Some(&b"a"[..]));
        assert_eq!(tx.offer(Bytes::from_static(b"d")), Offer::Queued);
        assert_eq!(rx.recv().await.as_deref(), Some(&b"b"[..]));
        assert_eq!(rx.recv().await.as_deref(), Some(&b"d"[..]));
        assert_eq!(rx.dropped(), 1);
    }

    #[tokio::test]
    async fn bytes_are_bounded_too() {
        let (tx, mut rx) = queue(100, 10);
        // An empty queue takes even an oversized datagram.
        assert_eq!(tx.offer(Bytes::from(vec![0; 50])), Offer::Queued);
        assert_eq!(tx.offer(Bytes::from(vec![1; 1])), Offer::Dropped);
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(50));
        assert_eq!(tx.offer(Bytes::from(vec![2; 6])), Offer::Queued);
        assert_eq!(tx.offer(Bytes::from(vec![3; 4])), Offer::Queued);
        assert_eq!(tx.offer(Bytes::from(vec![4; 1])), Offer::Dropped);
        assert_eq!(rx.dropped(), 2);
    }

    #[tokio::test]
    async fn an_ended_flow_hands_the_datagram_back_and_shutdown_ends_the_flow() {
        let (tx, rx) = queue(4, 1000);
        drop(rx);
        assert_eq!(
            tx.offer(Bytes::from_static(b"x")),
            Offer::Closed(Bytes::from_static(b"x"))
        );
        let (tx, mut rx) = queue(4, 1000);
        assert_eq!(tx.offer(Bytes::from_static(b"last")), Offer::Queued);
        drop(tx);
        assert_eq!(rx.recv().await.as_deref(), Some(&b"last"[..]));
        assert_eq!(rx.recv().await, None);
    }
}
