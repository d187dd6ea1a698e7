//! End-to-end tests of tp: the real server (in-process, `tp_server::run`), the real
//! `tp` and `tp-server` binaries, and real peers (OpenSSH) on loopback, with
//! certificates made at test time. One module per topic; the harness is the
//! `tp_tests` library (`tests/src`).

mod certs;
mod cli;
mod deploy;
mod expose;
mod halfclose;
mod hello;
mod limits;
mod no_client_ca;
mod passthrough;
mod quic;
mod quickstart;
mod reload;
mod reverse;
mod signal;
mod ssh;
mod ssrf;
mod terminate;
mod terminate_cert;
mod terminate_port;
mod transfer;
mod transport;
mod udp;
mod website;
