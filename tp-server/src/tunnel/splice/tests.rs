use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, DuplexStream, duplex};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use super::*;

impl TunnelStream for DuplexStream {
    fn abort(&mut self) {}

    fn write_offset(&self) -> usize {
        0
    }
}

/// Sets its flag when dropped: stands for a slot under the server's limits.
struct Held(Arc<AtomicBool>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// At each of splice's info lines, records whether the held place was given back.
struct AtCloseLine {
    released: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<bool>>>,
}

impl<S: Subscriber> Layer<S> for AtCloseLine {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() == tracing::Level::INFO
            && meta.target() == module_path!().trim_end_matches("::tests")
        {
            let released = self.released.load(Ordering::SeqCst);
            self.seen.lock().expect("lock").push(released);
        }
    }
}

/// Runs a tunnel whose client and target both close cleanly (`peers_close`) or
/// stay silent until the idle timeout, and checks how it ended and that its
/// one close line came after the held place was given back.
async fn assert_place_given_back_first(idle_timeout: Duration, peers_close: bool, expected: Ended) {
    let released = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let layer = AtCloseLine {
        released: released.clone(),
        seen: seen.clone(),
    };
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    let (mut client, mut client_peer) = duplex(1024);
    let (mut target, mut target_peer) = duplex(1024);
    let peers = async {
        if peers_close {
            client_peer.shutdown().await.expect("client shutdown");
            target_peer.shutdown().await.expect("target shutdown");
            let mut rest = Vec::new();
            client_peer
                .read_to_end(&mut rest)
                .await
                .expect("client reads");
            target_peer
                .read_to_end(&mut rest)
                .await
                .expect("target reads");
            assert_eq!(rest, b"early");
        }
        (client_peer, target_peer)
    };
    let early = BytesMut::from(&b"early"[..]);
    let held = Held(released.clone());
    let (ended, _peers) = tokio::join!(
        splice(
            &mut client,
            &mut target,
            early,
            "target",
            idle_timeout,
            held
        ),
        peers
    );
    assert_eq!(ended, expected);
    assert_eq!(
        *seen.lock().expect("lock"),
        [true],
        "one close line, logged after the place was given back"
    );
}

#[tokio::test]
async fn a_tunnel_gives_its_place_back_before_its_clean_close_line() {
    assert_place_given_back_first(Duration::from_secs(60), true, Ended::Clean).await;
}

#[tokio::test(start_paused = true)]
async fn a_tunnel_gives_its_place_back_before_its_idle_close_line() {
    assert_place_given_back_first(Duration::from_secs(5), false, Ended::Failed).await;
}
