//! Tunnel handlers: one module per hello kind. A handler receives the verified
//! identity and a byte stream that already carried the hello.

pub(crate) mod connect;
pub(crate) mod plan;
pub(crate) mod splice;
pub(crate) mod udp;
