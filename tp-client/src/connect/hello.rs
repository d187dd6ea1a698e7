//! The tunnel's opening exchange, the same over every transport: send the hello
//! line (with the tunnel's first bytes behind it, if any, and what the local
//! side writes while waiting), read the answer line.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use tp_net::message::{ReadMessageError, read_message};
use tp_proto::{Answer, Hello, decode_answer, encode_hello};
use tracing::debug;

use super::{ConnectError, FirstBytes};
use crate::addr::ServerAddr;

/// How a transport explains its failures while the hello and answer travel.
pub(super) struct Errors<'a> {
    pub(super) server: &'a ServerAddr,
    /// For a failed write of the hello.
    pub(super) send: fn(&ServerAddr, io::Error) -> ConnectError,
    /// For a failed read of the answer.
    pub(super) answer: fn(&ServerAddr, ReadMessageError) -> ConnectError,
}

/// Sends `hello` on `stream`, the first bytes right behind it in the same
/// write, and reads the answer within `answer_timeout`; what the local side
/// writes meanwhile follows at once ([`FirstBytes::more`]). Returns the bytes
/// that arrived behind the answer line.
pub(super) async fn exchange<S>(
    stream: &mut S,
    hello: &Hello,
    first: &mut FirstBytes<'_>,
    answer_timeout: Duration,
    errors: Errors<'_>,
) -> Result<BytesMut, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let with_hello = first.take().map_err(ConnectError::Local)?;
    let mut request = Vec::with_capacity(128 + with_hello.len());
    encode_hello(hello, &mut request);
    request.extend_from_slice(with_hello);
    let send_error = |e| (errors.send)(errors.server, e);
    stream.write_all(&request).await.map_err(send_error)?;
    stream.flush().await.map_err(send_error)?;

    let mut buf = BytesMut::with_capacity(4096);
    let answered = timeout(answer_timeout, async {
        let mut watching = true;
        loop {
            // Both are cancel-safe: a partial answer stays in `buf`, bytes
            // read from the local side are kept in `first`.
            tokio::select! {
                answer = read_message(stream, &mut buf, decode_answer) => {
                    return answer.map_err(|e| (errors.answer)(errors.server, e));
                }
                more = first.more(), if watching => match more.map_err(ConnectError::Local)? {
                    Some(bytes) => {
                        stream.write_all(bytes).await.map_err(send_error)?;
                        stream.flush().await.map_err(send_error)?;
                    }
                    None => watching = false,
                },
            }
        }
    });
    let answer = answered.await.map_err(|_| ConnectError::Timeout {
        server: errors.server.clone(),
        during: "waiting for the answer of",
        after: answer_timeout,
    })??;
    match answer {
        Answer::Ok => {
            debug!(early = buf.len(), sent = first.len(), "tunnel open");
            Ok(buf)
        }
        Answer::Err { code, message } => Err(ConnectError::Refused { code, message }),
    }
}
