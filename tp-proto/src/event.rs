//! Lines on a reverse tunnel's control channel.
//!
//! After the server answers `ok` to a `listen`, the hello's stream becomes the
//! control channel: both sides send [`Event`] lines on it, one JSON object per line,
//! bounded like hellos by [`MAX_LINE_LEN`](crate::MAX_LINE_LEN). Over QUIC, the same
//! `incoming` line also heads each stream the server opens for an incoming
//! connection.

use std::net::SocketAddr;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::PROTOCOL_VERSION;
use crate::codec::{DecodeError, parse_object, take_line};

/// One control-channel line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// `{"v":1,"event":"ping"}`: the sender is alive, and asks for a [`Event::Pong`].
    /// Either side sends one when it has sent nothing for its heartbeat interval.
    Ping,
    /// `{"v":1,"event":"pong"}`: the answer to a ping. With it, each side hears
    /// from the other at least once per its *own* interval, whatever the other's.
    Pong,
    /// `{"v":1,"event":"incoming",...}`: a connection arrived for the service or
    /// public port.
    Incoming(Incoming),
    /// An event this version of tp does not know (sent by a newer peer): ignored.
    Other(String),
}

/// A connection that arrived for a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The server's id for this connection. Over TLS/TCP the exposing client
    /// attaches a new connection to it with `accept`; over QUIC it only names the
    /// stream in logs.
    pub session: String,
    /// The caller's verified identity (a `connect` to a service); `None` for a
    /// plain TCP connection to a public port.
    pub from: Option<String>,
    /// The policy groups of `from`, as the server's policy has them.
    pub groups: Vec<String>,
    /// The caller's address as the server sees it.
    pub peer: SocketAddr,
    /// Public mode: the server address the caller connected to (a PROXY header's
    /// destination). `None` for a service.
    pub to: Option<SocketAddr>,
}

#[derive(Serialize, Deserialize)]
struct WireIncoming {
    session: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    peer: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<SocketAddr>,
}

#[derive(Serialize)]
struct WireEvent<'a> {
    v: u64,
    event: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    incoming: Option<WireIncoming>,
}

/// Appends the event as one JSON line (with its `\n`) to `out`.
pub fn encode_event(event: &Event, out: &mut Vec<u8>) {
    let (name, incoming) = match event {
        Event::Ping => ("ping", None),
        Event::Pong => ("pong", None),
        Event::Incoming(i) => (
            "incoming",
            Some(WireIncoming {
                session: i.session.clone(),
                from: i.from.clone(),
                groups: i.groups.clone(),
                peer: i.peer,
                to: i.to,
            }),
        ),
        Event::Other(name) => (name.as_str(), None),
    };
    let wire = WireEvent {
        v: PROTOCOL_VERSION,
        event: name,
        incoming,
    };
    // Strings, integers and addresses always serialize.
    serde_json::to_writer(&mut *out, &wire).expect("event serializes");
    out.push(b'\n');
}

/// Decodes one event from the front of `buf`; `Ok(None)` means more bytes are
/// needed. Unknown fields are ignored and unknown events decode as
/// [`Event::Other`], so a newer peer can add both.
pub fn decode_event(buf: &mut BytesMut) -> Result<Option<Event>, DecodeError> {
    const OP: &str = "event";
    let Some(line) = take_line(buf)? else {
        return Ok(None);
    };
    let mut map = parse_object(&line)?;
    let name = match map.remove("event") {
        Some(Value::String(name)) => name,
        _ => return Err(DecodeError::invalid(OP, "no string \"event\" field")),
    };
    let event = match name.as_str() {
        "ping" => Event::Ping,
        "pong" => Event::Pong,
        "incoming" => {
            let raw: WireIncoming = serde_json::from_value(Value::Object(map))
                .map_err(|e| DecodeError::invalid(OP, e))?;
            Event::Incoming(Incoming {
                session: raw.session,
                from: raw.from,
                groups: raw.groups,
                peer: raw.peer,
                to: raw.to,
            })
        }
        _ => Event::Other(name),
    };
    Ok(Some(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(event: &Event) -> Event {
        let mut out = Vec::new();
        encode_event(event, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let mut buf = BytesMut::from(&out[..]);
        let back = decode_event(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        back
    }

    #[test]
    fn ping_and_pong_are_one_short_line_each() {
        let mut out = Vec::new();
        encode_event(&Event::Ping, &mut out);
        assert_eq!(out, b"{\"v\":1,\"event\":\"ping\"}\n");
        assert_eq!(round_trip(&Event::Ping), Event::Ping);
        let mut out = Vec::new();
        encode_event(&Event::Pong, &mut out);
        assert_eq!(out, b"{\"v\":1,\"event\":\"pong\"}\n");
        assert_eq!(round_trip(&Event::Pong), Event::Pong);
    }

    #[test]
    fn incoming_round_trips_with_and_without_optional_fields() {
        let service = Event::Incoming(Incoming {
            session: "Zq3x".into(),
            from: Some("bob@corp".into()),
            groups: vec!["ops".into(), "sre".into()],
            peer: "[2001:db8::1]:50123".parse().unwrap(),
            to: None,
        });
        assert_eq!(round_trip(&service), service);
        let public = Event::Incoming(Incoming {
            session: "a-b_c".into(),
            from: None,
            groups: vec![],
            peer: "203.0.113.9:50123".parse().unwrap(),
            to: Some("198.51.100.1:2222".parse().unwrap()),
        });
        assert_eq!(round_trip(&public), public);
        let mut out = Vec::new();
        encode_event(&public, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "{\"v\":1,\"event\":\"incoming\",\"session\":\"a-b_c\",\"peer\":\"203.0.113.9:50123\",\"to\":\"198.51.100.1:2222\"}\n"
        );
    }

    #[test]
    fn newer_peers_may_add_events_and_fields() {
        let mut buf = BytesMut::from(&b"{\"v\":1,\"event\":\"drain\",\"in\":5}\n"[..]);
        assert_eq!(
            decode_event(&mut buf).unwrap(),
            Some(Event::Other("drain".into()))
        );
        let mut buf = BytesMut::from(
            &b"{\"v\":1,\"event\":\"incoming\",\"session\":\"s\",\"peer\":\"127.0.0.1:1\",\"new\":true}\n"[..],
        );
        assert!(matches!(
            decode_event(&mut buf).unwrap(),
            Some(Event::Incoming(_))
        ));
    }

    #[test]
    fn bad_lines_are_errors_and_partial_lines_wait() {
        let mut buf = BytesMut::from(&b"{\"v\":1,\"event\":\"pi"[..]);
        assert_eq!(decode_event(&mut buf).unwrap(), None);
        for line in [
            &b"{\"v\":1}\n"[..],
            b"{\"v\":2,\"event\":\"ping\"}\n",
            b"{\"v\":1,\"event\":\"incoming\",\"session\":\"s\"}\n",
            b"{\"v\":1,\"event\":\"incoming\",\"session\":\"s\",\"peer\":\"nowhere\"}\n",
            b"not json\n",
        ] {
            let mut buf = BytesMut::from(line);
            assert!(decode_event(&mut buf).is_err(), "{line:?}");
        }
        let mut buf = BytesMut::from(&vec![b' '; crate::MAX_LINE_LEN][..]);
        assert_eq!(decode_event(&mut buf), Err(DecodeError::TooLong));
    }
}
