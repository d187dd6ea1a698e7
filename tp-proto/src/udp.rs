//! UDP tunnels: how datagrams travel once a `connect` with `"proto":"udp"` was
//! answered `ok`.
//!
//! - **On the stream** (always possible, and the only way over TLS/TCP): each
//!   datagram is one frame, a 2-byte big-endian length then that many payload
//!   bytes. A zero-length frame is a valid empty datagram.
//! - **As QUIC datagrams** (RFC 9221), when the peer accepts them and the payload
//!   fits: a QUIC variable-length integer holding the tunnel's *flow id*, the id
//!   of the bidirectional stream that carried the hello, then the payload. Either
//!   side may send any datagram either way; a receiver takes both.
//!
//! Everything here is sans-IO: encoders append to a buffer, decoders take what is
//! complete and say when they need more.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The largest datagram a UDP tunnel carries (the largest UDP payload over IPv4).
pub const MAX_DATAGRAM: usize = 65_507;

/// Bytes of the length prefix of a frame on the stream.
pub const FRAME_HEADER_LEN: usize = 2;

/// A frame or datagram that breaks the rules above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UdpFrameError {
    /// A payload larger than [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes exceeds the {MAX_DATAGRAM}-byte limit")]
    TooLarge(usize),
    /// A QUIC datagram too short to hold its flow id.
    #[error("QUIC datagram without a complete flow id")]
    NoFlowId,
}

/// Appends `payload` as one stream frame.
pub fn encode_frame(payload: &[u8], out: &mut BytesMut) -> Result<(), UdpFrameError> {
    let len = u16::try_from(payload.len())
        .ok()
        .filter(|&l| usize::from(l) <= MAX_DATAGRAM)
        .ok_or(UdpFrameError::TooLarge(payload.len()))?;
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.put_u16(len);
    out.put_slice(payload);
    Ok(())
}

/// Takes one complete frame off the front of `buf`: `Ok(None)` until one is
/// complete. Never buffers more than one frame's worth of demand.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, UdpFrameError> {
    if buf.len() < FRAME_HEADER_LEN {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
    if len > MAX_DATAGRAM {
        return Err(UdpFrameError::TooLarge(len));
    }
    if buf.len() < FRAME_HEADER_LEN + len {
        return Ok(None);
    }
    buf.advance(FRAME_HEADER_LEN);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The largest value a QUIC variable-length integer holds.
pub const MAX_FLOW_ID: u64 = (1 << 62) - 1;

/// A QUIC datagram for `flow` carrying `payload`. `flow` must be at most
/// [`MAX_FLOW_ID`] (a QUIC stream id always is).
pub fn encode_datagram(flow: u64, payload: &[u8]) -> Result<Bytes, UdpFrameError> {
    if payload.len() > MAX_DATAGRAM {
        return Err(UdpFrameError::TooLarge(payload.len()));
    }
    let mut out = BytesMut::with_capacity(8 + payload.len());
    put_varint(flow & MAX_FLOW_ID, &mut out);
    out.put_slice(payload);
    Ok(out.freeze())
}

/// Splits a QUIC datagram into its flow id and payload.
pub fn decode_datagram(mut datagram: Bytes) -> Result<(u64, Bytes), UdpFrameError> {
    let flow = get_varint(&mut datagram).ok_or(UdpFrameError::NoFlowId)?;
    if datagram.len() > MAX_DATAGRAM {
        return Err(UdpFrameError::TooLarge(datagram.len()));
    }
    Ok((flow, datagram))
}

/// Bytes a flow id takes in front of a datagram's payload.
pub fn flow_id_len(flow: u64) -> usize {
    match flow {
        0..=63 => 1,
        64..=16_383 => 2,
        16_384..=1_073_741_823 => 4,
        _ => 8,
    }
}

fn put_varint(v: u64, out: &mut BytesMut) {
    match flow_id_len(v) {
        1 => out.put_u8(v as u8),
        2 => out.put_u16(0x4000 | v as u16),
        4 => out.put_u32(0x8000_0000 | v as u32),
        _ => out.put_u64(0xc000_0000_0000_0000 | v),
    }
}

fn get_varint(buf: &mut Bytes) -> Option<u64> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return None;
    }
    let mut v = u64::from(first & 0x3f);
    for &b in &buf[1..len] {
        v = (v << 8) | u64::from(b);
    }
    buf.advance(len);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_and_wait_for_more() {
        let mut buf = BytesMut::new();
        encode_frame(b"hello", &mut buf).expect("fits");
        encode_frame(b"", &mut buf).expect("fits");
        let mut partial = buf.split_to(4);
        assert_eq!(decode_frame(&mut partial), Ok(None), "incomplete");
        partial.unsplit(buf);
        let mut buf = partial;
        assert_eq!(
            decode_frame(&mut buf),
            Ok(Some(Bytes::from_static(b"hello")))
        );
        assert_eq!(decode_frame(&mut buf), Ok(Some(Bytes::new())));
        assert_eq!(decode_frame(&mut buf), Ok(None));
    }

    #[test]
    fn oversized_payloads_are_refused() {
        let big = vec![0u8; MAX_DATAGRAM + 1];
        assert_eq!(
            encode_frame(&big, &mut BytesMut::new()),
            Err(UdpFrameError::TooLarge(MAX_DATAGRAM + 1))
        );
        assert!(encode_datagram(4, &big).is_err());
        let mut header = BytesMut::from(&[0xff, 0xff][..]);
        assert_eq!(
            decode_frame(&mut header),
            Err(UdpFrameError::TooLarge(65_535))
        );
    }

    #[test]
    fn varint_flow_ids_match_rfc_9000_examples() {
        // RFC 9000 appendix A.1.
        let d = encode_datagram(151_288_809_941_952_652, b"").expect("encode");
        assert_eq!(&d[..], &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]);
        let d = encode_datagram(494_878_333, b"").expect("encode");
        assert_eq!(&d[..], &[0x9d, 0x7f, 0x3e, 0x7d]);
        let d = encode_datagram(15_293, b"").expect("encode");
        assert_eq!(&d[..], &[0x7b, 0xbd]);
        let d = encode_datagram(37, b"").expect("encode");
        assert_eq!(&d[..], &[0x25]);
        assert_eq!(decode_datagram(Bytes::new()), Err(UdpFrameError::NoFlowId));
        assert_eq!(
            decode_datagram(Bytes::from_static(&[0x7b])),
            Err(UdpFrameError::NoFlowId)
        );
    }

    proptest! {
        #[test]
        fn datagrams_round_trip(flow in 0..=MAX_FLOW_ID, payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let d = encode_datagram(flow, &payload).expect("encode");
            prop_assert_eq!(d.len(), flow_id_len(flow) + payload.len());
            let (f, p) = decode_datagram(d).expect("decode");
            prop_assert_eq!(f, flow);
            prop_assert_eq!(&p[..], &payload[..]);
        }

        #[test]
        fn frame_streams_split_anywhere_decode_the_same(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut wire = BytesMut::new();
            for p in &payloads {
                encode_frame(p, &mut wire).expect("fits");
            }
            let cut = cut.index(wire.len() + 1);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in [&wire[..cut], &wire[cut..]] {
                buf.extend_from_slice(chunk);
                while let Some(frame) = decode_frame(&mut buf).expect("valid") {
                    got.push(frame.to_vec());
                }
            }
            prop_assert_eq!(got, payloads);
            prop_assert!(buf.is_empty());
        }
    }
}
