//! The client's hello: which tunnel it asks for.

use crate::host::Host;

/// Transport protocol of a `connect` tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Proto {
    /// A TCP byte stream (the default).
    #[default]
    Tcp,
    /// UDP datagrams relayed over the tunnel.
    Udp,
}

impl Proto {
    /// The wire spelling: `"tcp"` or `"udp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a `connect` reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectTarget {
    /// A host (name or address) and port, dialed by the server.
    Addr {
        /// The host as the client spelled it, parsed to its canonical form.
        host: Host,
        /// The destination port, 1-65535.
        port: u16,
    },
    /// A service exposed by another client with `listen`.
    Service {
        /// The registered service name.
        name: String,
        /// The port the caller named, if any (informational: the exposer picks the local port).
        port: Option<u16>,
    },
}

/// `{"v":1,"op":"connect",...}`: open a tunnel to a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// TCP or UDP.
    pub proto: Proto,
    /// Where to.
    pub target: ConnectTarget,
}

/// What a `listen` registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenKind {
    /// End-to-end mode: register a service name.
    Name(String),
    /// Public mode: the server listens on this port.
    Port(u16),
}

/// `{"v":1,"op":"listen",...}`: expose a local service through the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Named service or public port.
    pub kind: ListenKind,
}

/// `{"v":1,"op":"accept","session":"..."}`: the data connection of a reverse session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    /// The session id the server announced on the control connection.
    pub session: String,
}

/// A decoded client hello.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hello {
    /// Open a tunnel to a target.
    Connect(Connect),
    /// Expose a local service.
    Listen(Listen),
    /// Attach a data connection to an announced reverse session.
    Accept(Accept),
}

impl Hello {
    /// The wire name of the operation: `connect`, `listen` or `accept`.
    pub fn op(&self) -> &'static str {
        match self {
            Hello::Connect(_) => "connect",
            Hello::Listen(_) => "listen",
            Hello::Accept(_) => "accept",
        }
    }

    /// Convenience constructor for a TCP connect to `host:port`.
    pub fn connect_tcp(host: Host, port: u16) -> Self {
        Hello::Connect(Connect {
            proto: Proto::Tcp,
            target: ConnectTarget::Addr { host, port },
        })
    }
}
