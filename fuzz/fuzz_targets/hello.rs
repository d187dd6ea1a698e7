//! `cargo fuzz run hello`: the hello and answer decoders never panic, never keep more
//! than the line bound, and what decodes re-encodes to something that decodes the same.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(hello)) = tp_proto::decode_hello(&mut buf) {
        let mut out = Vec::new();
        tp_proto::encode_hello(&hello, &mut out);
        assert!(out.len() <= tp_proto::MAX_LINE_LEN);
        let again = tp_proto::decode_hello(&mut BytesMut::from(&out[..]));
        assert_eq!(again, Ok(Some(hello)));
    }
    let _ = tp_proto::decode_answer(&mut BytesMut::from(data));
});
