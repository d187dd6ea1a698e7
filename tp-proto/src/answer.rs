//! The server's answer to a hello.

use std::fmt;

/// Why the server refused or failed a hello. Every code is documented in
/// `docs/protocol.md`, and the `tp` client exits with a distinct status per code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The hello was malformed: not JSON, too long, wrong types, bad host or port.
    BadRequest,
    /// The hello's `"v"` is a version this server does not speak.
    UnsupportedVersion,
    /// The operation or option is understood but not offered by this server.
    Unsupported,
    /// Policy does not allow this identity to do this.
    Denied,
    /// The target name did not resolve, or no route to it.
    Unreachable,
    /// The target actively refused the connection.
    Refused,
    /// The target did not answer within the connect timeout, or the hello was too slow.
    Timeout,
    /// The server is at a limit or shutting down; try again later.
    Busy,
    /// A `listen` asked for a service name or public port that another identity holds.
    Conflict,
    /// The server failed in a way that is not the client's fault.
    Internal,
    /// A code this version of tp does not know (sent by a newer server).
    Other(String),
}

impl ErrorCode {
    /// The wire spelling, e.g. `"denied"`.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Denied => "denied",
            ErrorCode::Unreachable => "unreachable",
            ErrorCode::Refused => "refused",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Busy => "busy",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Internal => "internal",
            ErrorCode::Other(s) => s,
        }
    }

    /// Parses the wire spelling; unknown codes become [`ErrorCode::Other`].
    pub fn from_wire(s: &str) -> Self {
        match s {
            "bad_request" => ErrorCode::BadRequest,
            "unsupported_version" => ErrorCode::UnsupportedVersion,
            "unsupported" => ErrorCode::Unsupported,
            "denied" => ErrorCode::Denied,
            "unreachable" => ErrorCode::Unreachable,
            "refused" => ErrorCode::Refused,
            "timeout" => ErrorCode::Timeout,
            "busy" => ErrorCode::Busy,
            "conflict" => ErrorCode::Conflict,
            "internal" => ErrorCode::Internal,
            other => ErrorCode::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server's one-line answer to a hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `{"v":1,"ok":true}`: the tunnel is open; raw bytes follow.
    Ok,
    /// `{"v":1,"ok":false,"code":...,"message":...}`: refused; the server closes after it.
    Err {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable explanation, printed by the client.
        message: String,
    },
}

impl Answer {
    /// Builds an error answer.
    pub fn err(code: ErrorCode, message: impl Into<String>) -> Self {
        Answer::Err {
            code,
            message: message.into(),
        }
    }
}
