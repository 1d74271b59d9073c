//! The agent loop: fetch the host's desired state, apply the difference to
//! the switch, report port status. Deciding is pure (`plan`, `statuses`);
//! the loop only moves data between ctrl and the switch.

use crate::client::Ctrl;
use crate::metrics::{AgentMetrics, SyncStep};
use crate::translate::{plan, HostBase, Plan};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::watch;
use weft_datapath::SwitchConfig;
use weft_proto::HostState;

/// The switch as the agent sees it.
pub trait Datapath: Send {
    /// Moves the switch to `config`. On error (the config does not validate, a
    /// port cannot be opened) the switch keeps what it had.
    fn apply(&mut self, config: &SwitchConfig) -> Result<(), String>;
    /// Interfaces whose I/O is open (a `system` port whose netdev has not
    /// appeared yet is configured but not attached).
    fn attached(&self) -> BTreeSet<String>;
}

/// Status each port should have, for those whose reported status differs.
pub fn statuses(st: &HostState, plan: &Plan, attached: &BTreeSet<String>) -> Vec<(String, String)> {
    st.ports
        .iter()
        .filter_map(|p| {
            let up = plan
                .wired
                .get(&p.id)
                .is_some_and(|dev| attached.contains(dev));
            let want = if up { "ACTIVE" } else { "DOWN" };
            (p.status != want).then(|| (p.id.clone(), want.to_string()))
        })
        .collect()
}

/// The agent: follows `ctrl`'s desired state for this host and keeps `dp` in
/// line with it. Generic over both so that tests drive it with fakes.
pub struct Agent<C: Ctrl, D: Datapath> {
    /// Where the desired state comes from.
    pub ctrl: C,
    /// The switch it drives.
    pub dp: D,
    /// The host's own config, which ctrl's networks and ports are added to.
    pub base: HostBase,
    applied: Option<SwitchConfig>,
    revision: u64,
    /// How long a long-poll waits when every wired port is attached.
    pub idle_wait: Duration,
    /// How often the agent re-registers: its heartbeat, which ctrl's agents
    /// API judges `alive` by (Neutron's agent_down_time is 75 s).
    pub heartbeat: Duration,
    /// How long it waits while some port is still pending (to see it attach soon).
    pub pending_wait: Duration,
    /// Sync rounds, their lag and failures (handles: clone them before `run`).
    pub metrics: AgentMetrics,
}

impl<C: Ctrl, D: Datapath> Agent<C, D> {
    /// An agent that has applied nothing yet (revision 0), with the default waits.
    pub fn new(ctrl: C, dp: D, base: HostBase) -> Self {
        Agent {
            ctrl,
            dp,
            base,
            applied: None,
            revision: 0,
            idle_wait: Duration::from_secs(25),
            heartbeat: Duration::from_secs(30),
            pending_wait: Duration::from_secs(1),
            metrics: AgentMetrics::default(),
        }
    }

    /// Applies one host state: returns whether ports are still pending. One
    /// `sync_round` span (host, revision) covers the plan, the switch reload
    /// and the status report, so a round's log lines read together.
    pub async fn step(&mut self, st: &HostState) -> bool {
        use tracing::Instrument;
        let span = tracing::info_span!("sync_round", host = %st.host, revision = st.revision);
        self.round(st).instrument(span).await
    }

    async fn round(&mut self, st: &HostState) -> bool {
        let p = plan(&self.base, st);
        // A state the plan cannot express as a switch config is refused like one
        // the switch rejects: the switch keeps what it had.
        let applied = match &p.config {
            Ok(cfg) if self.applied.as_ref() == Some(cfg) => Ok(()),
            Ok(cfg) => self.dp.apply(cfg).map(|()| {
                tracing::info!(host = %st.host, revision = st.revision, ports = p.wired.len(), "applied desired state");
                self.applied = Some(cfg.clone());
            }),
            Err(e) => Err(e.clone()),
        };
        if let Err(e) = applied {
            self.metrics.failed(SyncStep::Apply);
            tracing::error!(host = %st.host, revision = st.revision, error = %e, "switch refused the desired state")
        }
        let attached = self.dp.attached();
        let report = statuses(st, &p, &attached);
        if !report.is_empty() {
            if let Err(e) = self.ctrl.report(&report).await {
                self.metrics.failed(SyncStep::Report);
                tracing::warn!(error = %e, "status report failed; will retry");
            }
        }
        p.wired.values().any(|dev| !attached.contains(dev))
    }

    /// Runs until `stop` turns true. Errors from ctrl are retried after a pause.
    /// The agent registers (its tunnel endpoint) before its first poll, again
    /// after any failed call, since ctrl may have been replaced, and every
    /// `heartbeat` (the long-poll wakes at least every `idle_wait`).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> D {
        let mut pending = false;
        let mut since = 0u64;
        let mut registered = false;
        let mut last_beat = tokio::time::Instant::now();
        loop {
            if *stop.borrow() {
                return self.dp;
            }
            if last_beat.elapsed() >= self.heartbeat {
                registered = false;
            }
            if !registered {
                let r = tokio::select! {
                    r = self.ctrl.register() => r,
                    _ = stop.changed() => return self.dp,
                };
                match r {
                    Ok(()) => {
                        registered = true;
                        last_beat = tokio::time::Instant::now();
                    }
                    Err(e) => {
                        self.metrics.failed(SyncStep::Register);
                        tracing::warn!(error = %e, "cannot register with ctrl; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stop.changed() => return self.dp,
                        }
                        continue;
                    }
                }
            }
            let wait = if pending {
                self.pending_wait
            } else {
                self.idle_wait
            };
            let got = tokio::select! {
                r = self.ctrl.state(since, wait) => r,
                _ = stop.changed() => return self.dp,
            };
            match got {
                Ok(st) => {
                    let received = tokio::time::Instant::now();
                    self.revision = st.revision;
                    pending = self.step(&st).await;
                    self.metrics.round(st.revision, received.elapsed());
                    since = if pending { 0 } else { st.revision };
                    // While ports are pending, re-ask at once-per-pending_wait
                    // rather than blocking on the revision.
                    if pending {
                        tokio::select! {
                            _ = tokio::time::sleep(self.pending_wait) => {}
                            _ = stop.changed() => return self.dp,
                        }
                    }
                }
                Err(e) => {
                    self.metrics.failed(SyncStep::State);
                    tracing::warn!(error = %e, "cannot get desired state; retrying");
                    registered = false;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return self.dp,
                    }
                }
            }
        }
    }

    /// The revision of the last host state it received.
    pub fn revision(&self) -> u64 {
        self.revision
    }
}
