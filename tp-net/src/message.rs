//! Reading one bounded JSON line (a hello or an answer) from a byte stream.

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tp_proto::{DecodeError, MAX_LINE_LEN};

/// Bytes read per call while looking for the end of the line.
const CHUNK: usize = 4096;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadMessageError {
    /// The stream failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended before a complete line arrived.
    #[error("connection closed before a complete line ({0} bytes buffered)")]
    Eof(usize),
    /// The line arrived but was not a valid message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Reads from `stream` into `buf` until `decode` yields a message. Bytes after the
/// line stay in `buf`. The buffer never holds more than [`MAX_LINE_LEN`] plus one
/// read chunk. The caller bounds the total time.
pub async fn read_message<S, T>(
    stream: &mut S,
    buf: &mut BytesMut,
    decode: fn(&mut BytesMut) -> Result<Option<T>, DecodeError>,
) -> Result<T, ReadMessageError>
where
    S: AsyncRead + Unpin,
{
    loop {
        if let Some(message) = decode(buf)? {
            return Ok(message);
        }
        debug_assert!(buf.len() < MAX_LINE_LEN);
        // Straight into `buf`, no chunk in this future: it is part of every
        // tunnel's task for the tunnel's whole life.
        buf.reserve(CHUNK);
        let n = stream.read_buf(&mut (&mut *buf).limit(CHUNK)).await?;
        if n == 0 {
            return Err(ReadMessageError::Eof(buf.len()));
        }
    }
}
