//! The scenarios, and the figures they produce.

pub(crate) mod bulk;
pub(crate) mod conn;
pub(crate) mod first;
pub(crate) mod idle;
pub(crate) mod latency;
pub(crate) mod rate;
pub(crate) mod signal;
pub(crate) mod spawn;
pub(crate) mod tls_in_tls;

use serde::{Deserialize, Serialize};

/// A scenario of the issues: (a) to (e) and (g) of issue 6, (f1) of issue 3; (h) is
/// (c) across an emulated link with a real round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum ScenarioId {
    /// (a) one stream moves the bulk size.
    BulkOne,
    /// (b) eight streams move the bulk size between them.
    BulkEight,
    /// (c) sequential connect-send-echo-close.
    OpenLatency,
    /// (d) connect-send-echo-close from 64 concurrent clients.
    OpenRate,
    /// (e) many idle tunnels: memory per tunnel.
    Idle,
    /// (f1) tp only: the first tunnel of a fresh `tp HOST PORT` process (a fresh
    /// connection), TLS/TCP vs QUIC, with `tp --version` as the process-start reference.
    FirstTunnel,
    /// (g) tp and nginx only: the Signal relay, TLS in TLS to a stand-in Signal host.
    Signal,
    /// (h) (c) with the server sides and the target across a link with a round trip.
    LinkOpen,
}

impl ScenarioId {
    pub(crate) const ALL: [ScenarioId; 8] = [
        ScenarioId::BulkOne,
        ScenarioId::BulkEight,
        ScenarioId::OpenLatency,
        ScenarioId::OpenRate,
        ScenarioId::Idle,
        ScenarioId::FirstTunnel,
        ScenarioId::Signal,
        ScenarioId::LinkOpen,
    ];

    pub(crate) fn letter(self) -> &'static str {
        match self {
            ScenarioId::BulkOne => "a",
            ScenarioId::BulkEight => "b",
            ScenarioId::OpenLatency => "c",
            ScenarioId::OpenRate => "d",
            ScenarioId::Idle => "e",
            ScenarioId::FirstTunnel => "f1",
            ScenarioId::Signal => "g",
            ScenarioId::LinkOpen => "h",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|id| id.letter() == s.trim())
    }
}

/// One figure a scenario reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Metric {
    /// (a) uploaded, into the sink.
    BulkOne,
    /// (a) downloaded, from the source.
    BulkOneDown,
    /// (b) uploaded, into the sink.
    BulkEight,
    /// (b) downloaded, from the source.
    BulkEightDown,
    OpenP50,
    OpenP99,
    OpenRate,
    IdleServer,
    IdleClient,
    /// (f1) process start -> first echoed byte, p50 of one run.
    FirstP50,
    FirstP99,
    /// (f1) reference: `tp --version` start -> first byte on stdout, p50 of one run.
    StartP50,
    StartP99,
    /// (f1) process start -> exit of the tunnel's process, p50 of one run.
    ExitP50,
    /// (g) one inner stream, client to Signal host.
    SignalUp,
    /// (g) one inner stream, Signal host to client.
    SignalDown,
    /// (g) TCP connect -> both handshakes -> echo, p50 of one run.
    SignalOpenP50,
    SignalOpenP99,
    /// (g) memory of the proxy per idle relayed connection.
    SignalIdle,
    /// (h) (c) across the link, p50 of one run.
    LinkOpenP50,
    LinkOpenP99,
    /// (h) the link's round trip, measured (TCP connect p50) before the system's opens.
    LinkRtt,
    /// (h) tp only: (f1) across the link, p50 of one run.
    LinkFirstP50,
    LinkFirstP99,
}

impl Metric {
    pub(crate) const ALL: [Metric; 24] = [
        Metric::BulkOne,
        Metric::BulkOneDown,
        Metric::BulkEight,
        Metric::BulkEightDown,
        Metric::OpenP50,
        Metric::OpenP99,
        Metric::OpenRate,
        Metric::IdleServer,
        Metric::IdleClient,
        Metric::FirstP50,
        Metric::FirstP99,
        Metric::StartP50,
        Metric::StartP99,
        Metric::ExitP50,
        Metric::SignalUp,
        Metric::SignalDown,
        Metric::SignalOpenP50,
        Metric::SignalOpenP99,
        Metric::SignalIdle,
        Metric::LinkOpenP50,
        Metric::LinkOpenP99,
        Metric::LinkRtt,
        Metric::LinkFirstP50,
        Metric::LinkFirstP99,
    ];

    /// The scenario that measures it.
    pub(crate) fn scenario(self) -> ScenarioId {
        match self {
            Metric::BulkOne | Metric::BulkOneDown => ScenarioId::BulkOne,
            Metric::BulkEight | Metric::BulkEightDown => ScenarioId::BulkEight,
            Metric::OpenP50 | Metric::OpenP99 => ScenarioId::OpenLatency,
            Metric::OpenRate => ScenarioId::OpenRate,
            Metric::IdleServer | Metric::IdleClient => ScenarioId::Idle,
            Metric::FirstP50
            | Metric::FirstP99
            | Metric::StartP50
            | Metric::StartP99
            | Metric::ExitP50 => ScenarioId::FirstTunnel,
            Metric::SignalUp
            | Metric::SignalDown
            | Metric::SignalOpenP50
            | Metric::SignalOpenP99
            | Metric::SignalIdle => ScenarioId::Signal,
            Metric::LinkOpenP50
            | Metric::LinkOpenP99
            | Metric::LinkRtt
            | Metric::LinkFirstP50
            | Metric::LinkFirstP99 => ScenarioId::LinkOpen,
        }
    }

    /// Column title.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Metric::BulkOne => "(a) bulk 1 stream",
            Metric::BulkOneDown => "(a) bulk 1 stream down",
            Metric::BulkEight => "(b) bulk 8 streams",
            Metric::BulkEightDown => "(b) bulk 8 streams down",
            Metric::OpenP50 => "(c) open p50",
            Metric::OpenP99 => "(c) open p99",
            Metric::OpenRate => "(d) tunnels/s, 64 clients",
            Metric::IdleServer => "(e) server KiB/tunnel",
            Metric::IdleClient => "(e) client KiB/tunnel",
            Metric::FirstP50 => "(f1) first tunnel p50",
            Metric::FirstP99 => "(f1) first tunnel p99",
            Metric::StartP50 => "(f1) process start p50",
            Metric::StartP99 => "(f1) process start p99",
            Metric::ExitP50 => "(f1) first tunnel to exit p50",
            Metric::SignalUp => "(g) Signal bulk up",
            Metric::SignalDown => "(g) Signal bulk down",
            Metric::SignalOpenP50 => "(g) Signal setup p50",
            Metric::SignalOpenP99 => "(g) Signal setup p99",
            Metric::SignalIdle => "(g) Signal server KiB/connection",
            Metric::LinkOpenP50 => "(h) open p50 across the link",
            Metric::LinkOpenP99 => "(h) open p99 across the link",
            Metric::LinkRtt => "(h) link round trip",
            Metric::LinkFirstP50 => "(h) first tunnel p50 across the link",
            Metric::LinkFirstP99 => "(h) first tunnel p99 across the link",
        }
    }

    pub(crate) fn unit(self) -> &'static str {
        match self {
            Metric::BulkOne
            | Metric::BulkOneDown
            | Metric::BulkEight
            | Metric::BulkEightDown
            | Metric::SignalUp
            | Metric::SignalDown => "MB/s",
            Metric::OpenP50
            | Metric::OpenP99
            | Metric::FirstP50
            | Metric::FirstP99
            | Metric::StartP50
            | Metric::StartP99
            | Metric::ExitP50
            | Metric::SignalOpenP50
            | Metric::SignalOpenP99
            | Metric::LinkOpenP50
            | Metric::LinkOpenP99
            | Metric::LinkRtt
            | Metric::LinkFirstP50
            | Metric::LinkFirstP99 => "ms",
            Metric::OpenRate => "/s",
            Metric::IdleServer | Metric::IdleClient | Metric::SignalIdle => "KiB",
        }
    }

    pub(crate) fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::BulkOne
                | Metric::BulkOneDown
                | Metric::BulkEight
                | Metric::BulkEightDown
                | Metric::OpenRate
                | Metric::SignalUp
                | Metric::SignalDown
        )
    }

    /// A column of the summary table, compared with the peers. The (f1) figures are
    /// tp's alone, the (g) figures a different job (the Signal relay, tp against
    /// nginx only) and the (h) figures a different setup (the link): each has its
    /// own table.
    pub(crate) fn in_summary(self) -> bool {
        !matches!(
            self,
            Metric::FirstP50
                | Metric::FirstP99
                | Metric::StartP50
                | Metric::StartP99
                | Metric::ExitP50
                | Metric::SignalUp
                | Metric::SignalDown
                | Metric::SignalOpenP50
                | Metric::SignalOpenP99
                | Metric::SignalIdle
                | Metric::LinkOpenP50
                | Metric::LinkOpenP99
                | Metric::LinkRtt
                | Metric::LinkFirstP50
                | Metric::LinkFirstP99
        )
    }
}
