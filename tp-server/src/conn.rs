//! One accepted TCP connection: TLS handshake under a total deadline, identity from
//! the verified certificate, the hello under its own total deadline, dispatch.

use std::sync::Arc;

use bytes::BytesMut;
use policy::Identity;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tp_net::message::{ReadMessageError, read_message};
use tp_proto::{ALPN_TP_V1, Answer, ErrorCode, Hello};
use tracing::{Span, debug, info};

use crate::audit;
use crate::preauth::Slot;
use crate::server::Shared;
use crate::tunnel;

/// The TLS stream of an accepted tunnel connection.
pub(crate) type Stream = TlsStream<TcpStream>;

/// Serves one connection to its end. Never panics on peer input; every outcome is
/// logged: certificate verdicts at info, scanners and dropped connections at debug.
/// `slot` is held until the handshake ends. A hello that arrives once `draining` is
/// cancelled gets `busy`.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    slot: Slot,
    draining: CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    let handshake =
        tokio::time::timeout(shared.limits.handshake_timeout, shared.acceptor.accept(tcp));
    let mut tls = match handshake.await {
        Err(_) => {
            debug!(timeout = ?shared.limits.handshake_timeout, "TLS handshake refused: timed out");
            return;
        }
        Ok(Err(e)) => {
            match tls_error(&e) {
                // A TLS-level verdict (bad certificate, no shared version...) is news.
                Some(reason) => info!("TLS handshake refused: {reason}"),
                // EOF or reset mid-handshake: port scanners and impatient clients.
                None => debug!(error = %e, "TLS handshake refused: connection ended"),
            }
            return;
        }
        Ok(Ok(tls)) => tls,
    };
    drop(slot);

    let (_, session) = tls.get_ref();
    if session.alpn_protocol() != Some(ALPN_TP_V1) {
        debug!("connection refused: client did not negotiate ALPN tp/1");
        return;
    }
    // rustls only completes a handshake with a verified chain (client auth is mandatory),
    // so the first certificate is the verified leaf.
    let Some(leaf) = session.peer_certificates().and_then(|c| c.first()) else {
        info!("connection refused: no client certificate");
        return;
    };
    let who = match Identity::from_cert_der(leaf) {
        Ok(who) => who,
        Err(e) => {
            info!(error = %e, "connection refused: no usable identity in the client certificate");
            return;
        }
    };
    Span::current().record("id", tracing::field::display(&who));
    debug!("TLS established");

    let mut buf = BytesMut::with_capacity(1024);
    let read = read_message(&mut tls, &mut buf, tp_proto::decode_hello);
    let hello = match tokio::time::timeout(shared.limits.hello_timeout, read).await {
        Err(_) => {
            info!(timeout = ?shared.limits.hello_timeout, "hello timed out");
            let answer = Answer::err(ErrorCode::Timeout, "no complete hello line in time");
            finish(&mut tls, &answer).await;
            return;
        }
        Ok(Err(ReadMessageError::Decode(e))) => {
            info!(error = %e, code = %e.code(), "bad hello");
            finish(&mut tls, &Answer::err(e.code(), e.to_string())).await;
            return;
        }
        Ok(Err(e)) => {
            debug!(error = %e, "connection ended before a hello");
            return;
        }
        Ok(Ok(hello)) => hello,
    };
    if draining.is_cancelled() {
        info!(op = hello.op(), "hello refused: server is shutting down");
        let answer = Answer::err(ErrorCode::Busy, "server is shutting down; retry shortly");
        finish(&mut tls, &answer).await;
        return;
    }

    match hello {
        Hello::Connect(c) => tunnel::connect::serve(&shared, tls, &who, c, buf).await,
        other => {
            let why = format!("{} is not supported by this server yet", other.op());
            audit::refused_op(&who, other.op(), &why);
            finish(&mut tls, &Answer::err(ErrorCode::Unsupported, why)).await;
        }
    }
}

/// Sends a final answer and closes the TLS stream cleanly (close_notify).
pub(crate) async fn finish(tls: &mut Stream, answer: &Answer) {
    let mut line = Vec::with_capacity(128);
    tp_proto::encode_answer(answer, &mut line);
    if let Err(e) = tls.write_all(&line).await {
        debug!(error = %e, "could not send the answer");
        return;
    }
    let _ = tls.shutdown().await;
}

/// The rustls error inside a failed handshake, if the failure was a TLS verdict
/// rather than the connection dropping.
fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}
