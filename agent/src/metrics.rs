//! What an operator sees of the agent at `/metrics`: its sync rounds, how
//! long they take, and what failed; beside them the switch it runs.
//!
//! ```text
//!  ctrl ─(long-poll answers revision R)─► t0 ─ plan ─ switch.apply ─ status report ─► t1
//!                                          └──────── weft_agent_sync_lag_seconds ───────┘
//! ```
//!
//! **Lag** is the time from a host state reaching the agent to the switch
//! running it with its port statuses reported (`t1 - t0` above). ctrl answers
//! a waiting long-poll as soon as a commit bumps the revision, so `t0` is when
//! revision R became visible to this host; the time R spends on the wire is
//! not in it (ctrl and agent clocks are not compared). A round is one host
//! state received and applied (or refused); failures are counted by step
//! (`register`, `state`, `apply`, `report`).
//!
//! The metrics are handles (cheap clones sharing their values): the loop
//! counts into them, a registry ([`AgentMetrics::register`]) reads them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The step of a sync round that failed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum SyncStep {
    /// Registering with ctrl (the heartbeat).
    Register,
    /// Fetching the host's desired state.
    State,
    /// The switch refused the desired state (or the plan could not express it).
    Apply,
    /// Reporting port statuses back.
    Report,
}

impl SyncStep {
    fn name(self) -> &'static str {
        match self {
            SyncStep::Register => "register",
            SyncStep::State => "state",
            SyncStep::Apply => "apply",
            SyncStep::Report => "report",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: &'static str,
}

/// The agent's counters (see the module doc for what they mean).
#[derive(Clone, Debug)]
pub struct AgentMetrics {
    rounds: Counter,
    failures: Family<StepLabel, Counter>,
    lag: Histogram,
    revision: Gauge,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics {
            rounds: Counter::default(),
            failures: Family::default(),
            // 100 µs .. ~6.5 s: an apply of a few ports takes milliseconds;
            // thousands of ports, seconds.
            lag: Histogram::new(exponential_buckets(0.0001, 2.0, 17)),
            revision: Gauge::default(),
        }
    }
}

impl AgentMetrics {
    /// Registers every metric in `reg` as `agent_*` (after the registry's own
    /// prefix: `weft_agent_sync_rounds_total`).
    pub fn register(&self, reg: &mut Registry) {
        let reg = reg.sub_registry_with_prefix("agent");
        reg.register(
            "sync_rounds",
            "Host states received from ctrl and applied to the switch (or refused)",
            self.rounds.clone(),
        );
        reg.register(
            "sync_failures",
            "Failed sync steps, by step (register, state, apply, report)",
            self.failures.clone(),
        );
        reg.register(
            "sync_lag_seconds",
            "From a host state reaching the agent to the switch running it with statuses reported",
            self.lag.clone(),
        );
        reg.register(
            "applied_revision",
            "ctrl revision of the last host state the agent processed",
            self.revision.clone(),
        );
    }

    /// One round done: its revision and its lag.
    pub fn round(&self, revision: u64, lag: Duration) {
        // The lag first: a scrape between the two never sees more rounds than lags.
        self.lag.observe(lag.as_secs_f64());
        self.rounds.inc();
        self.revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
    }

    /// One failed step.
    pub fn failed(&self, step: SyncStep) {
        self.failures
            .get_or_create(&StepLabel { step: step.name() })
            .inc();
    }

    /// Rounds so far (for tests and logs).
    pub fn rounds(&self) -> u64 {
        self.rounds.get()
    }
}
