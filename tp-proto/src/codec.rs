//! JSON-line framing of hellos and answers.
//!
//! `decode_*` look for the terminating `\n` within the first [`MAX_LINE_LEN`] bytes
//! of the buffer before parsing anything: `Ok(None)` means "need more bytes",
//! and a buffer that reaches the bound without a newline is an error at once, so a
//! peer cannot make the reader grow its buffer past the bound. Bytes after the line
//! (early payload) stay in the buffer.

use bytes::{Buf, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::answer::{Answer, ErrorCode};
use crate::hello::{Accept, Connect, ConnectTarget, Hello, Listen, ListenKind, Proto};
use crate::host::Host;
use crate::{MAX_LINE_LEN, PROTOCOL_VERSION};

/// The longest message an encoded error answer carries, so it always fits a line.
const MAX_MESSAGE_LEN: usize = 1024;
/// The longest service name.
const MAX_SERVICE_LEN: usize = 63;
/// The longest reverse-session id.
const MAX_SESSION_LEN: usize = 128;

/// Why a hello or answer line could not be decoded. The `Display` text is meant for
/// the peer: the server sends it back as the answer's `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No `\n` within the first [`MAX_LINE_LEN`] bytes.
    #[error("hello line exceeds {MAX_LINE_LEN} bytes")]
    TooLong,
    /// The line is not valid UTF-8.
    #[error("hello is not valid UTF-8")]
    NotUtf8,
    /// The line is not one JSON object.
    #[error("hello is not a JSON object: {0}")]
    NotJson(String),
    /// `"v"` is missing or not a number.
    #[error("hello has no numeric \"v\" field")]
    MissingVersion,
    /// `"v"` names a version this side does not speak.
    #[error("protocol version {0} is not supported (this side speaks version {PROTOCOL_VERSION})")]
    UnsupportedVersion(String),
    /// `"op"` is missing or not a string.
    #[error("hello has no string \"op\" field")]
    MissingOp,
    /// `"op"` names an operation this side does not know.
    #[error("unknown op {0:?} (known: connect, listen, accept)")]
    UnknownOp(String),
    /// A field is missing, unknown, of the wrong type or out of range.
    #[error("invalid {op}: {reason}")]
    Invalid {
        /// The operation whose fields were wrong (or `answer`).
        op: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl DecodeError {
    /// The answer code the server sends for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            DecodeError::UnknownOp(_) => ErrorCode::Unsupported,
            _ => ErrorCode::BadRequest,
        }
    }

    pub(crate) fn invalid(op: &'static str, reason: impl ToString) -> Self {
        DecodeError::Invalid {
            op,
            reason: reason.to_string(),
        }
    }
}

/// Splits one line (without its `\n`, and without a `\r` before it) off the front of
/// `buf`, or says that more bytes are needed.
pub(crate) fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, DecodeError> {
    let window = &buf[..buf.len().min(MAX_LINE_LEN)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let mut line = buf.split_to(i);
            buf.advance(1);
            if line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() >= MAX_LINE_LEN => Err(DecodeError::TooLong),
        None => Ok(None),
    }
}

/// Parses a line into a JSON object and checks its `"v"`.
pub(crate) fn parse_object(line: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    let text = std::str::from_utf8(line).map_err(|_| DecodeError::NotUtf8)?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(DecodeError::NotJson("expected an object".into()));
    };
    match map.remove("v") {
        Some(Value::Number(n)) if n.as_u64() == Some(PROTOCOL_VERSION) => Ok(map),
        Some(Value::Number(n)) => Err(DecodeError::UnsupportedVersion(n.to_string())),
        _ => Err(DecodeError::MissingVersion),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnect {
    #[serde(default)]
    proto: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    service: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccept {
    session: String,
}

fn fields<T: serde::de::DeserializeOwned>(
    op: &'static str,
    map: Map<String, Value>,
) -> Result<T, DecodeError> {
    serde_json::from_value(Value::Object(map)).map_err(|e| DecodeError::invalid(op, e))
}

fn nonzero_port(op: &'static str, port: u16) -> Result<u16, DecodeError> {
    if port == 0 {
        Err(DecodeError::invalid(op, "port must be between 1 and 65535"))
    } else {
        Ok(port)
    }
}

fn check_token(
    op: &'static str,
    what: &str,
    s: &str,
    max: usize,
    ok: fn(u8) -> bool,
) -> Result<(), DecodeError> {
    if s.is_empty() || s.len() > max || !s.bytes().all(ok) {
        return Err(DecodeError::invalid(
            op,
            format!("{what} must be 1-{max} characters of [a-z0-9_-]"),
        ));
    }
    Ok(())
}

fn service_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

fn session_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn decode_connect(map: Map<String, Value>) -> Result<Connect, DecodeError> {
    const OP: &str = "connect";
    let raw: RawConnect = fields(OP, map)?;
    let proto = match raw.proto.as_deref() {
        None | Some("tcp") => Proto::Tcp,
        Some("udp") => Proto::Udp,
        Some(other) => {
            return Err(DecodeError::invalid(
                OP,
                format!("proto {other:?} is neither \"tcp\" nor \"udp\""),
            ));
        }
    };
    let target = match (raw.host, raw.service) {
        (Some(_), Some(_)) => {
            return Err(DecodeError::invalid(
                OP,
                "give either host or service, not both",
            ));
        }
        (Some(host), None) => {
            let host = Host::parse(&host).map_err(|e| DecodeError::invalid(OP, e))?;
            let port = raw
                .port
                .ok_or_else(|| DecodeError::invalid(OP, "missing field `port`"))?;
            ConnectTarget::Addr {
                host,
                port: nonzero_port(OP, port)?,
            }
        }
        (None, Some(name)) => {
            check_token(OP, "service", &name, MAX_SERVICE_LEN, service_char)?;
            let port = raw.port.map(|p| nonzero_port(OP, p)).transpose()?;
            ConnectTarget::Service { name, port }
        }
        (None, None) => {
            return Err(DecodeError::invalid(
                OP,
                "missing field `host` (or `service`)",
            ));
        }
    };
    Ok(Connect { proto, target })
}

fn decode_listen(map: Map<String, Value>) -> Result<Listen, DecodeError> {
    const OP: &str = "listen";
    let raw: RawListen = fields(OP, map)?;
    let kind = match (raw.name, raw.port) {
        (Some(name), None) => {
            check_token(OP, "name", &name, MAX_SERVICE_LEN, service_char)?;
            ListenKind::Name(name)
        }
        (None, Some(port)) => ListenKind::Port(nonzero_port(OP, port)?),
        _ => return Err(DecodeError::invalid(OP, "give exactly one of name or port")),
    };
    Ok(Listen { kind })
}

fn decode_accept(map: Map<String, Value>) -> Result<Accept, DecodeError> {
    const OP: &str = "accept";
    let raw: RawAccept = fields(OP, map)?;
    check_token(OP, "session", &raw.session, MAX_SESSION_LEN, session_char)?;
    Ok(Accept {
        session: raw.session,
    })
}

/// Decodes a client hello from the front of `buf`.
///
/// `Ok(None)`: no complete line yet (and fewer than [`MAX_LINE_LEN`] bytes buffered).
/// On success the line is consumed and any bytes after it stay in `buf`.
pub fn decode_hello(buf: &mut BytesMut) -> Result<Option<Hello>, DecodeError> {
    let Some(line) = take_line(buf)? else {
        return Ok(None);
    };
    let mut map = parse_object(&line)?;
    let op = match map.remove("op") {
        Some(Value::String(op)) => op,
        _ => return Err(DecodeError::MissingOp),
    };
    let hello = match op.as_str() {
        "connect" => Hello::Connect(decode_connect(map)?),
        "listen" => Hello::Listen(decode_listen(map)?),
        "accept" => Hello::Accept(decode_accept(map)?),
        _ => {
            let mut shown: String = op.chars().take(64).collect();
            if shown.len() < op.len() {
                shown.push('…');
            }
            return Err(DecodeError::UnknownOp(shown));
        }
    };
    Ok(Some(hello))
}

#[derive(Serialize)]
struct WireHello<'a> {
    v: u64,
    op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    proto: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a str>,
}

/// Appends the hello as one JSON line (with its `\n`) to `out`.
pub fn encode_hello(hello: &Hello, out: &mut Vec<u8>) {
    let mut wire = WireHello {
        v: PROTOCOL_VERSION,
        op: hello.op(),
        proto: None,
        host: None,
        service: None,
        name: None,
        port: None,
        session: None,
    };
    match hello {
        Hello::Connect(c) => {
            if c.proto != Proto::Tcp {
                wire.proto = Some(c.proto.as_str());
            }
            match &c.target {
                ConnectTarget::Addr { host, port } => {
                    wire.host = Some(host.to_string());
                    wire.port = Some(*port);
                }
                ConnectTarget::Service { name, port } => {
                    wire.service = Some(name);
                    wire.port = *port;
                }
            }
        }
        Hello::Listen(l) => match &l.kind {
            ListenKind::Name(n) => wire.name = Some(n),
            ListenKind::Port(p) => wire.port = Some(*p),
        },
        Hello::Accept(a) => wire.session = Some(&a.session),
    }
    // Serializing a struct of strings and integers to a Vec cannot fail.
    serde_json::to_writer(&mut *out, &wire).expect("hello serializes");
    out.push(b'\n');
}

#[derive(Serialize)]
struct WireAnswer<'a> {
    v: u64,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

/// Appends the answer as one JSON line (with its `\n`) to `out`. Messages longer
/// than 1 KiB are cut (at a character boundary) so the line stays within bounds.
pub fn encode_answer(answer: &Answer, out: &mut Vec<u8>) {
    let wire = match answer {
        Answer::Ok => WireAnswer {
            v: PROTOCOL_VERSION,
            ok: true,
            code: None,
            message: None,
        },
        Answer::Err { code, message } => {
            let mut end = message.len().min(MAX_MESSAGE_LEN);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            WireAnswer {
                v: PROTOCOL_VERSION,
                ok: false,
                code: Some(code.as_str()),
                message: Some(&message[..end]),
            }
        }
    };
    // Serializing a struct of strings and a bool to a Vec cannot fail.
    serde_json::to_writer(&mut *out, &wire).expect("answer serializes");
    out.push(b'\n');
}

#[derive(Deserialize)]
struct RawAnswer {
    ok: bool,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Decodes the server's answer from the front of `buf`. Unknown fields are ignored
/// (a newer server may add some); unknown codes become [`ErrorCode::Other`].
pub fn decode_answer(buf: &mut BytesMut) -> Result<Option<Answer>, DecodeError> {
    const OP: &str = "answer";
    let Some(line) = take_line(buf)? else {
        return Ok(None);
    };
    let map = parse_object(&line)?;
    let raw: RawAnswer =
        serde_json::from_value(Value::Object(map)).map_err(|e| DecodeError::invalid(OP, e))?;
    if raw.ok {
        return Ok(Some(Answer::Ok));
    }
    let code = raw
        .code
        .ok_or_else(|| DecodeError::invalid(OP, "error answer without `code`"))?;
    Ok(Some(Answer::Err {
        code: ErrorCode::from_wire(&code),
        message: raw.message.unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(s: &[u8]) -> Result<Option<Hello>, DecodeError> {
        decode_hello(&mut BytesMut::from(s))
    }

    #[test]
    fn documented_example_decodes() {
        let mut buf = BytesMut::from(
            &b"{\"v\":1,\"op\":\"connect\",\"host\":\"example.org\",\"port\":22}\nSSH-2.0"[..],
        );
        let hello = decode_hello(&mut buf).unwrap().unwrap();
        assert_eq!(
            hello,
            Hello::connect_tcp(Host::Name("example.org".into()), 22)
        );
        assert_eq!(&buf[..], b"SSH-2.0", "early payload stays in the buffer");
    }

    #[test]
    fn crlf_is_accepted() {
        let h = decode(b"{\"v\":1,\"op\":\"connect\",\"host\":\"a.org\",\"port\":1}\r\n").unwrap();
        assert!(h.is_some());
    }

    #[test]
    fn incomplete_line_needs_more() {
        assert_eq!(decode(b"{\"v\":1,\"op\":\"conn"), Ok(None));
        assert_eq!(decode(b""), Ok(None));
    }

    #[test]
    fn bound_is_checked_before_growing() {
        let long = vec![b' '; MAX_LINE_LEN];
        assert_eq!(decode(&long), Err(DecodeError::TooLong));
        let mut almost = vec![b' '; MAX_LINE_LEN - 1];
        assert_eq!(decode(&almost), Ok(None));
        // A newline as the 8192nd byte is still within bounds.
        almost.push(b'\n');
        assert!(matches!(decode(&almost), Err(DecodeError::NotJson(_))));
    }

    #[test]
    fn hostile_hellos_get_the_documented_codes() {
        let cases: &[(&[u8], ErrorCode)] = &[
            (b"\xff\xfe{}\n", ErrorCode::BadRequest),
            (b"not json\n", ErrorCode::BadRequest),
            (b"[1,2]\n", ErrorCode::BadRequest),
            (b"\n", ErrorCode::BadRequest),
            (b"{\"op\":\"connect\"}\n", ErrorCode::BadRequest),
            (b"{\"v\":\"1\",\"op\":\"connect\"}\n", ErrorCode::BadRequest),
            (
                b"{\"v\":2,\"op\":\"connect\",\"host\":\"a.org\",\"port\":1}\n",
                ErrorCode::UnsupportedVersion,
            ),
            (b"{\"v\":1,\"op\":\"teleport\"}\n", ErrorCode::Unsupported),
            (b"{\"v\":1,\"op\":7}\n", ErrorCode::BadRequest),
            (
                b"{\"v\":1,\"op\":\"connect\",\"host\":22,\"port\":22}\n",
                ErrorCode::BadRequest,
            ),
            (
                b"{\"v\":1,\"op\":\"connect\",\"host\":\"a.org\",\"port\":\"22\"}\n",
                ErrorCode::BadRequest,
            ),
            (
                b"{\"v\":1,\"op\":\"connect\",\"host\":\"a.org\",\"port\":0}\n",
                ErrorCode::BadRequest,
            ),
            (
                b"{\"v\":1,\"op\":\"connect\",\"host\":\"a.org\",\"port\":70000}\n",
                ErrorCode::BadRequest,
            ),
            (
                b"{\"v\":1,\"op\":\"connect\",\"host\":\"a.org\",\"port\":-1}\n",
                ErrorCode::BadRequest,
            ),
            (
                b"{\"v\":1,\"op\":\"connect\",\"host\":\"a.org\"}\n",
                ErrorCode::BadRequest,
            ),
            (
                b"{\"v\":1,\"op\":\"connect\",\"host\":\"a.org\",\"port\":1,\"x\":1}\n",
                ErrorCode::BadRequest,
            ),
            (
                b"{\"v\":1,\"op\":\"connect\",\"host\":\"a b\",\"port\":1}\n",
                ErrorCode::BadRequest,
            ),
            (
                b"{\"v\":1,\"op\":\"connect\",\"host\":\"a.org\",\"port\":1,\"proto\":\"sctp\"}\n",
                ErrorCode::BadRequest,
            ),
            (b"{\"v\":1,\"op\":\"listen\"}\n", ErrorCode::BadRequest),
            (
                b"{\"v\":1,\"op\":\"accept\",\"session\":\"../x\"}\n",
                ErrorCode::BadRequest,
            ),
        ];
        for (input, code) in cases {
            let err = decode(input).expect_err(&String::from_utf8_lossy(input));
            assert_eq!(
                &err.code(),
                code,
                "{:?}: {err}",
                String::from_utf8_lossy(input)
            );
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn answers_round_trip_and_tolerate_unknown_fields() {
        let mut buf = BytesMut::from(&b"{\"v\":1,\"ok\":true,\"extra\":[1]}\nrest"[..]);
        assert_eq!(decode_answer(&mut buf), Ok(Some(Answer::Ok)));
        assert_eq!(&buf[..], b"rest");
        let mut buf =
            BytesMut::from(&b"{\"v\":1,\"ok\":false,\"code\":\"quota\",\"message\":\"m\"}\n"[..]);
        assert_eq!(
            decode_answer(&mut buf),
            Ok(Some(Answer::err(ErrorCode::Other("quota".into()), "m")))
        );
    }

    #[test]
    fn long_messages_are_cut_to_fit() {
        let answer = Answer::err(ErrorCode::Denied, "é".repeat(10_000));
        let mut out = Vec::new();
        encode_answer(&answer, &mut out);
        assert!(out.len() < MAX_LINE_LEN);
        let decoded = decode_answer(&mut BytesMut::from(&out[..]))
            .unwrap()
            .unwrap();
        assert!(matches!(
            decoded,
            Answer::Err {
                code: ErrorCode::Denied,
                ..
            }
        ));
    }

    fn arb_host() -> impl Strategy<Value = Host> {
        prop_oneof![
            any::<std::net::Ipv4Addr>().prop_map(|a| Host::Ip(a.into())),
            any::<std::net::Ipv6Addr>()
                .prop_map(|a| Host::Ip(std::net::IpAddr::V6(a).to_canonical())),
            "[a-z][a-z0-9]{0,10}(\\.[a-z][a-z0-9]{0,10}){0,3}".prop_map(Host::Name),
        ]
    }

    fn arb_hello() -> impl Strategy<Value = Hello> {
        let port = 1u16..;
        let token = "[a-z0-9_-]{1,20}";
        prop_oneof![
            (arb_host(), port.clone(), any::<bool>()).prop_map(|(host, port, udp)| {
                Hello::Connect(Connect {
                    proto: if udp { Proto::Udp } else { Proto::Tcp },
                    target: ConnectTarget::Addr { host, port },
                })
            }),
            (token, proptest::option::of(port.clone())).prop_map(|(name, port)| {
                Hello::Connect(Connect {
                    proto: Proto::Tcp,
                    target: ConnectTarget::Service { name, port },
                })
            }),
            token.prop_map(|n| Hello::Listen(Listen {
                kind: ListenKind::Name(n)
            })),
            port.prop_map(|p| Hello::Listen(Listen {
                kind: ListenKind::Port(p)
            })),
            "[A-Za-z0-9_-]{1,64}".prop_map(|session| Hello::Accept(Accept { session })),
        ]
    }

    proptest! {
        #[test]
        fn hello_round_trips(hello in arb_hello(), tail in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut out = Vec::new();
            encode_hello(&hello, &mut out);
            prop_assert!(out.len() <= MAX_LINE_LEN);
            out.extend_from_slice(&tail);
            let mut buf = BytesMut::from(&out[..]);
            prop_assert_eq!(decode_hello(&mut buf), Ok(Some(hello)));
            prop_assert_eq!(&buf[..], &tail[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_hello(&mut BytesMut::from(&input[..]));
            let _ = decode_answer(&mut BytesMut::from(&input[..]));
        }

        #[test]
        fn split_input_decodes_the_same(hello in arb_hello(), cut in 0usize..200) {
            let mut out = Vec::new();
            encode_hello(&hello, &mut out);
            let cut = cut.min(out.len() - 1);
            let mut buf = BytesMut::from(&out[..cut]);
            prop_assert_eq!(decode_hello(&mut buf), Ok(None));
            buf.extend_from_slice(&out[cut..]);
            prop_assert_eq!(decode_hello(&mut buf), Ok(Some(hello)));
        }
    }
}
