//! The scenarios, and the figures they produce.

pub(crate) mod bulk;
pub(crate) mod conn;
pub(crate) mod idle;
pub(crate) mod latency;
pub(crate) mod rate;

use serde::{Deserialize, Serialize};

/// A scenario of the issue: (a) to (e).
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
}

impl ScenarioId {
    pub(crate) const ALL: [ScenarioId; 5] = [
        ScenarioId::BulkOne,
        ScenarioId::BulkEight,
        ScenarioId::OpenLatency,
        ScenarioId::OpenRate,
        ScenarioId::Idle,
    ];

    pub(crate) fn letter(self) -> &'static str {
        match self {
            ScenarioId::BulkOne => "a",
            ScenarioId::BulkEight => "b",
            ScenarioId::OpenLatency => "c",
            ScenarioId::OpenRate => "d",
            ScenarioId::Idle => "e",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|id| id.letter() == s.trim())
    }
}

/// One figure a scenario reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Metric {
    BulkOne,
    BulkEight,
    OpenP50,
    OpenP99,
    OpenRate,
    IdleServer,
    IdleClient,
}

impl Metric {
    pub(crate) const ALL: [Metric; 7] = [
        Metric::BulkOne,
        Metric::BulkEight,
        Metric::OpenP50,
        Metric::OpenP99,
        Metric::OpenRate,
        Metric::IdleServer,
        Metric::IdleClient,
    ];

    /// Column title.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Metric::BulkOne => "(a) bulk 1 stream",
            Metric::BulkEight => "(b) bulk 8 streams",
            Metric::OpenP50 => "(c) open p50",
            Metric::OpenP99 => "(c) open p99",
            Metric::OpenRate => "(d) tunnels/s, 64 clients",
            Metric::IdleServer => "(e) server KiB/tunnel",
            Metric::IdleClient => "(e) client KiB/tunnel",
        }
    }

    pub(crate) fn unit(self) -> &'static str {
        match self {
            Metric::BulkOne | Metric::BulkEight => "MB/s",
            Metric::OpenP50 | Metric::OpenP99 => "ms",
            Metric::OpenRate => "/s",
            Metric::IdleServer | Metric::IdleClient => "KiB",
        }
    }

    pub(crate) fn higher_is_better(self) -> bool {
        matches!(self, Metric::BulkOne | Metric::BulkEight | Metric::OpenRate)
    }
}
