//! The running switch as a [`crate::metrics::MetricsSource`]: the workers' counters, the port
//! shells' counters, the firewalls' rule hits and the connection table, read at scrape time.

use super::SwitchHandle;
use crate::PortNo;

impl SwitchHandle {
    /// What `weft ctl counters` shows, as plain numbers for `/metrics`.
    pub fn metrics(&self) -> crate::metrics::SwitchMetrics {
        crate::metrics::MetricsSource::metrics(self)
    }
}

impl crate::metrics::MetricsSource for SwitchHandle {
    fn metrics(&self) -> crate::metrics::SwitchMetrics {
        use crate::metrics::{PortDrop, PortMetrics, SwitchMetrics};
        let c = self.shared.dp.counters();
        let snap = self.shared.dp.snapshot();
        let table = self.shared.ports.load();
        let ports =
            self.port_states()
                .into_iter()
                .map(|s| {
                    let pc = c.port(PortNo(s.no));
                    let mut drops: Vec<PortDrop> = crate::DropReason::ALL
                        .iter()
                        .filter_map(|&r| {
                            let count = pc.map(|p| p.drop_count(r)).unwrap_or(0);
                            (count > 0).then(|| PortDrop {
                                reason: r.name(),
                                stage: r.stage().name(),
                                count,
                            })
                        })
                        .collect();
                    // Drops a port counts itself (the tunnel endpoint's refused datagrams).
                    if let Some(io) = table.get(PortNo(s.no)).and_then(|p| p.io.as_deref()) {
                        drops.extend(io.drop_counts().into_iter().map(|(reason, count)| {
                            PortDrop {
                                reason,
                                stage: "tunnel",
                                count,
                            }
                        }));
                    }
                    PortMetrics {
                        name: s.name,
                        kind: s.kind,
                        role: s.role,
                        attached: s.attached,
                        rx_frames: s.rx_frames,
                        rx_bytes: s.rx_bytes,
                        tx_frames: s.tx_frames,
                        tx_bytes: s.tx_bytes,
                        rx_errors: s.rx_errors,
                        rx_ring_drops: s.rx_ring_drops,
                        tx_dropped: s.tx_dropped,
                        drops,
                    }
                })
                .collect();
        SwitchMetrics {
            processed: c.processed,
            flow_cache_hits: c.flow_cache_hits,
            flow_cache_misses: c.flow_cache_misses,
            stages: c.stages(),
            drop_reasons: crate::DropReason::ALL
                .iter()
                .map(|&r| PortDrop {
                    reason: r.name(),
                    stage: r.stage().name(),
                    count: c.drops(r),
                })
                .collect(),
            ports,
            rule_hits: snap
                .ports()
                .filter_map(|p| snap.firewall(p.no).map(|f| (p, f)))
                .flat_map(|(p, f)| {
                    f.hits()
                        .into_iter()
                        .map(|(rule, packets)| crate::metrics::RuleHits {
                            port: p.name.clone(),
                            rule,
                            packets,
                        })
                })
                .collect(),
            conntrack: {
                let ct = self.shared.dp.conntrack();
                let st = ct.stats();
                crate::metrics::ConntrackMetrics {
                    entries: ct.len() as u64,
                    capacity: ct.capacity() as u64,
                    created: st.created,
                    invalid: st.invalid,
                    refused_full: st.refused_full,
                }
            },
        }
    }
}
