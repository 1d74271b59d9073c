//! [`SwitchHandle`]: reconfiguring a running switch ([`SwitchHandle::apply`]), its ports' state,
//! and stopping it. The control socket's requests are in [`super::requests`], the metrics in
//! [`super::metrics_source`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::ports::{dress, open_port, LivePort, PortTable};
use super::{now_ns, DaemonError, PollCounts, SwitchHandle};
use crate::{Datapath, PortRole, Snapshot, SwitchConfig};

/// What [`SwitchHandle::apply`] changed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ApplyReport {
    /// Ports opened (or left pending).
    pub added: Vec<String>,
    /// Ports closed.
    pub removed: Vec<String>,
    /// Ports closed and reopened (kind changed).
    pub reattached: Vec<String>,
    /// Ports whose config changed in place (network, MAC, IPs, security).
    pub updated: Vec<String>,
    /// Snapshot generation now running.
    pub generation: u64,
}

/// One port's state, for `weft ctl ports` and the agent's status reports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PortState {
    /// Port number.
    pub no: u16,
    /// Interface name.
    pub name: String,
    /// tap | system.
    pub kind: String,
    /// vm | uplink.
    pub role: String,
    /// Network (VM ports) or physnet (uplinks).
    pub network: Option<String>,
    /// Local VLAN of the port's network (0 for uplinks).
    pub local_vlan: u16,
    /// True when its I/O is open; false while a `system` netdev is pending.
    pub attached: bool,
    /// Frames/bytes received and sent, rx errors, tx drops (shell counters).
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames dropped by the pipeline on ingress at this port.
    pub drops: u64,
    /// Read errors / truncated frames.
    pub rx_errors: u64,
    /// Frames lost in the kernel's AF_PACKET rx ring before the switch read them.
    pub rx_ring_drops: u64,
    /// Frames that could not be sent out of this port.
    pub tx_dropped: u64,
}
impl SwitchHandle {
    /// Moves the switch to `cfg`: compiles it (on error nothing changes),
    /// opens new ports, swaps the pipeline snapshot, then closes removed ports.
    /// Unchanged ports keep their fds, counters and learned MACs.
    pub fn apply(&self, cfg: SwitchConfig) -> Result<ApplyReport, DaemonError> {
        // One `switch_reload` span per apply, whoever asked (the agent, `weft
        // ctl reload`): the port (re)opens it causes log inside it.
        let span = tracing::info_span!("switch_reload", ports = cfg.ports.len());
        let _in = span.enter();
        let started = std::time::Instant::now();
        let r = self.apply_locked(cfg);
        match &r {
            Ok(rep) => tracing::info!(
                added = rep.added.len(),
                removed = rep.removed.len(),
                updated = rep.updated.len(),
                us = started.elapsed().as_micros() as u64,
                "switch reloaded"
            ),
            Err(e) => tracing::warn!(error = %e, "switch reload refused; the running config stays"),
        }
        r
    }

    /// [`SwitchHandle::apply`] under the apply lock (the monitor also changes the port table).
    fn apply_locked(&self, cfg: SwitchConfig) -> Result<ApplyReport, DaemonError> {
        let _g = self
            .shared
            .apply_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.handed_over() {
            return Err(DaemonError::HandedOver);
        }
        let old = self.shared.dp.snapshot();
        let snap = Snapshot::compile(&cfg, Some(&old))?;
        let diff = snap.diff(&old);
        let table = self.shared.ports.load();
        // One name index for the whole apply: 10k ports must not cost 10k
        // linear scans of the port table.
        let by_name: HashMap<&str, &Arc<LivePort>> =
            table.iter().map(|p| (p.info.name.as_str(), p)).collect();
        let reattached: std::collections::HashSet<&str> =
            diff.reattached.iter().map(|r| r.name.as_str()).collect();
        // Open everything new before touching the running state.
        let mut opened: HashMap<String, Arc<LivePort>> = HashMap::new();
        for info in diff.added.iter().chain(&diff.reattached) {
            let lp = if reattached.contains(info.name.as_str()) {
                by_name.get(info.name.as_str()).copied()
            } else {
                None
            };
            opened.insert(
                info.name.clone(),
                Arc::new(open_port(info, &self.shared.opts, lp)?),
            );
        }
        let mut report = ApplyReport {
            added: diff.added.iter().map(|p| p.name.clone()).collect(),
            removed: diff.removed.iter().map(|p| p.name.clone()).collect(),
            reattached: diff.reattached.iter().map(|p| p.name.clone()).collect(),
            ..Default::default()
        };
        let mut next = Vec::new();
        for info in snap.ports() {
            if let Some(lp) = opened.remove(&info.name) {
                next.push(lp);
                continue;
            }
            let Some(&cur) = by_name.get(info.name.as_str()) else {
                continue;
            };
            if cur.info == *info {
                next.push(cur.clone());
            } else {
                // New metadata (network, MAC, IPs, capture...), same fd, counters kept.
                report.updated.push(info.name.clone());
                let io = if cur.info.capture == info.capture {
                    cur.io.clone()
                } else {
                    cur.base
                        .clone()
                        .map(|b| dress(info, b, &self.shared.opts))
                        .transpose()?
                };
                next.push(Arc::new(LivePort {
                    no: info.no,
                    info: info.clone(),
                    io,
                    base: cur.base.clone(),
                    counters: cur.counters.clone(),
                    dead: AtomicBool::new(cur.dead.load(Ordering::Acquire)),
                }));
            }
        }
        report.generation = snap.generation();
        self.shared.dp.swap_snapshot(snap);
        self.shared.publish(PortTable::from_ports(next));
        Ok(report)
    }

    /// Every port with its state and counters, in port-number order.
    pub fn port_states(&self) -> Vec<PortState> {
        let table = self.shared.ports.load();
        let counters = self.shared.dp.counters();
        table
            .iter()
            .map(|p| {
                let c = &p.counters;
                if let Some(io) = p.io.as_deref() {
                    c.rx_ring_drops
                        .fetch_add(io.take_kernel_drops(), Ordering::Relaxed);
                }
                PortState {
                    no: p.no.0,
                    name: p.info.name.clone(),
                    kind: p.info.kind.to_string(),
                    role: match p.info.role {
                        PortRole::Vm => "vm".into(),
                        PortRole::Uplink => "uplink".into(),
                    },
                    network: p.info.network.clone().or_else(|| p.info.physnet.clone()),
                    local_vlan: p.info.local_vlan,
                    attached: p.io.is_some(),
                    rx_frames: c.rx_frames.load(Ordering::Relaxed),
                    rx_bytes: c.rx_bytes.load(Ordering::Relaxed),
                    tx_frames: c.tx_frames.load(Ordering::Relaxed),
                    tx_bytes: c.tx_bytes.load(Ordering::Relaxed),
                    drops: counters.port(p.no).map(|c| c.drops_total()).unwrap_or(0),
                    rx_errors: c.rx_errors.load(Ordering::Relaxed),
                    rx_ring_drops: c.rx_ring_drops.load(Ordering::Relaxed),
                    tx_dropped: c.tx_dropped.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// How the workers waited for frames (sleeps, spin windows that paid or not).
    pub fn poll_counts(&self) -> PollCounts {
        let p = &self.shared.poll;
        PollCounts {
            sleeps: p.sleeps.load(Ordering::Relaxed),
            spin_hits: p.spin_hits.load(Ordering::Relaxed),
            spin_misses: p.spin_misses.load(Ordering::Relaxed),
            io: self.shared.io.as_str(),
            uring_enters: p.uring_enters.load(Ordering::Relaxed),
        }
    }

    /// The core, for MAC table listing, counters and traces.
    pub fn datapath(&self) -> &Datapath {
        &self.shared.dp
    }

    /// The config now running.
    pub fn config(&self) -> SwitchConfig {
        self.shared.dp.snapshot().config().clone()
    }
    /// Learned and static MAC entries, sorted by (local VLAN, MAC).
    pub fn mac_table(&self) -> Vec<crate::MacEntry> {
        self.shared.dp.mac_table(now_ns())
    }

    /// What the pipeline would do with the frame described by `desc`
    /// (`in_port=NAME dl_src=MAC dl_dst=MAC ...`), stage by stage.
    pub fn trace(&self, desc: &str) -> Result<Vec<crate::TraceStep>, String> {
        self.shared
            .dp
            .trace_description(desc, now_ns())
            .map_err(|e| e.to_string())
    }
    /// Stops the workers and closes every port.
    pub fn shutdown(&self) {
        self.stop_threads();
        self.shared.ports.store(Arc::new(PortTable::default()));
    }

    /// Stops the workers and the monitor; the ports stay open.
    fn stop_threads(&self) {
        self.shared.stop.store(true, Ordering::Release);
        for w in &self.shared.wakers {
            w.notify();
        }
        let threads: Vec<_> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}
impl Drop for SwitchHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
