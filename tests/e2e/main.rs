//! End-to-end tests of tp: the real server (in-process, `tp_server::run`), the real
//! `tp` and `tp-server` binaries, and real peers (OpenSSH) on loopback, with
//! certificates made at test time. One module per topic; the harness is the
//! `tp_tests` library (`tests/src`).

mod certs;
mod cli;
mod deadlines;
mod deploy;
mod dial;
mod expose;
mod first_bytes;
mod fragmented;
mod halfclose;
mod hello;
mod limits;
mod no_client_ca;
mod passthrough;
mod quic;
mod quic_idle;
mod quickstart;
mod reload;
mod resumption;
mod reverse;
mod roaming;
mod signal;
mod signal_check;
mod ssh;
mod ssrf;
mod stealth;
mod terminate;
mod terminate_cert;
mod terminate_port;
mod transfer;
mod transport;
mod tunnel_log;
mod udp;
mod website;
mod workers;
