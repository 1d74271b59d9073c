//! The switch's counters in Prometheus' exposition format: what `weft ctl
//! counters` shows (per port, per stage, per drop reason), for a scraper.
//!
//! ```text
//!  SwitchHandle::metrics() ─► SwitchMetrics (plain numbers, one point in time)
//!                               │ encode(): one family per counter
//!                               ▼
//!  control socket {"cmd":"metrics"} / serve_http(--metrics-listen) / an agent's registry
//! ```
//!
//! The numbers are read at scrape time from the counters the workers already
//! keep; nothing here touches the packet path. [`SwitchCollector`] plugs a
//! running switch into any `prometheus_client` registry (the agent's, `weft
//! serve`'s), so one scrape shows the switch beside its owner's metrics.
//!
//! Non-goals: no push gateway, no TLS or authentication on the HTTP
//! responder (bind it to a management address); no per-flow metrics.

use std::fmt;
use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::counters::StageCounters;

mod server;
#[cfg(test)]
mod tests;

pub use server::{MetricsServer, Render};

/// The content type of [`render`]'s text (OpenMetrics, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Frames dropped at one port for one reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortDrop {
    /// Drop reason (`DropReason::name`, or a tunnel endpoint's `TunnelDrop::name`).
    pub reason: &'static str,
    /// Stage that dropped it (`Stage::name`; `tunnel` for the tunnel endpoint).
    pub stage: &'static str,
    /// Frames.
    pub count: u64,
}

/// One port's counters, as `weft ctl counters` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMetrics {
    /// Interface name (the `port` label).
    pub name: String,
    /// tap | system | vxlan.
    pub kind: String,
    /// vm | uplink.
    pub role: String,
    /// Whether its I/O is open (false while a `system` netdev is pending).
    pub attached: bool,
    /// Frames read from the port.
    pub rx_frames: u64,
    /// Bytes read.
    pub rx_bytes: u64,
    /// Frames written.
    pub tx_frames: u64,
    /// Bytes written.
    pub tx_bytes: u64,
    /// Failed or truncated reads.
    pub rx_errors: u64,
    /// Frames lost in the kernel's AF_PACKET ring before the switch read them.
    pub rx_ring_drops: u64,
    /// Frames that could not be written.
    pub tx_dropped: u64,
    /// Drops of frames received here, by reason (only reasons that occurred).
    pub drops: Vec<PortDrop>,
}

/// The switch's counters at one point in time: plain numbers, so that
/// encoding is a pure function of them (and testable without a switch).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SwitchMetrics {
    /// Frames handed to the pipeline.
    pub processed: u64,
    /// Flow cache hits.
    pub flow_cache_hits: u64,
    /// Flow cache misses (full pipeline runs).
    pub flow_cache_misses: u64,
    /// Per stage, in pipeline order.
    pub stages: Vec<StageCounters>,
    /// Drops over all ports, for every pipeline drop reason (zeros included,
    /// so that a rate over a reason that never happened is 0, not absent).
    pub drop_reasons: Vec<PortDrop>,
    /// Per port, in port-number order.
    pub ports: Vec<PortMetrics>,
    /// Per security-group rule of each firewalled port: packets it admitted (new connections
    /// and every packet of the connections it admitted).
    pub rule_hits: Vec<RuleHits>,
    /// Connection table: (entries, bound, created, invalid, refused when full).
    pub conntrack: ConntrackMetrics,
}

/// One rule's hits on one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleHits {
    /// Port name.
    pub port: String,
    /// Neutron rule id.
    pub rule: String,
    /// Packets admitted.
    pub packets: u64,
}

/// The connection table's size and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConntrackMetrics {
    /// Entries now.
    pub entries: u64,
    /// The bound (`conntrack_size`).
    pub capacity: u64,
    /// Connections created.
    pub created: u64,
    /// Packets found invalid.
    pub invalid: u64,
    /// New connections refused because the table was full.
    pub refused_full: u64,
}

/// A counter family: one descriptor, one sample per label set.
fn counters<'a, const N: usize>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = ([(&'a str, &'a str); N], u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in samples {
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
    }
    Ok(())
}

/// A counter without labels.
fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let mut m: MetricEncoder = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    m.encode_counter::<NoLabelSet, _, u64>(&v, None)
}

/// A gauge without labels (a level, not a count: rates over it mean nothing).
fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    m.encode_gauge(&i64::try_from(v).unwrap_or(i64::MAX))
}

/// One per-port I/O counter: its family name, help and where it is in [`PortMetrics`].
type PortField = (&'static str, &'static str, fn(&PortMetrics) -> u64);

/// The per-port I/O counters, each a family with a `port` label.
const PORT_IO: [PortField; 7] = [
    ("switch_port_rx_frames", "Frames read from the port", |p| {
        p.rx_frames
    }),
    ("switch_port_rx_bytes", "Bytes read from the port", |p| {
        p.rx_bytes
    }),
    ("switch_port_tx_frames", "Frames written to the port", |p| {
        p.tx_frames
    }),
    ("switch_port_tx_bytes", "Bytes written to the port", |p| {
        p.tx_bytes
    }),
    (
        "switch_port_rx_errors",
        "Failed or truncated reads on the port",
        |p| p.rx_errors,
    ),
    (
        "switch_port_rx_ring_drops",
        "Frames the kernel dropped in the port's AF_PACKET ring",
        |p| p.rx_ring_drops,
    ),
    (
        "switch_port_tx_dropped",
        "Frames that could not be written to the port",
        |p| p.tx_dropped,
    ),
];

impl SwitchMetrics {
    /// Writes every family under `switch_` (a registry's prefix comes first:
    /// `weft_switch_port_rx_frames_total`). The families come in a fixed order (pipeline,
    /// ports, security groups, per-port drops), so a scrape's text is stable.
    pub fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let e = &mut enc;
        self.encode_pipeline(e)?;
        self.encode_port_io(e)?;
        self.encode_secgroups(e)?;
        self.encode_port_drops(e)
    }

    /// The pipeline as a whole: frames processed, the flow cache, each stage, each drop reason.
    fn encode_pipeline(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        counter(
            e,
            "switch_frames_processed",
            "Frames handed to the pipeline",
            self.processed,
        )?;
        counter(
            e,
            "switch_flow_cache_hits",
            "Frames decided by the flow cache",
            self.flow_cache_hits,
        )?;
        counter(
            e,
            "switch_flow_cache_misses",
            "Frames that ran the full pipeline",
            self.flow_cache_misses,
        )?;
        counters(
            e,
            "switch_stage_frames_entered",
            "Frames that reached a pipeline stage",
            self.stages
                .iter()
                .map(|s| ([("stage", s.stage.name())], s.entered)),
        )?;
        counters(
            e,
            "switch_stage_frames_dropped",
            "Frames a pipeline stage dropped",
            self.stages
                .iter()
                .map(|s| ([("stage", s.stage.name())], s.dropped)),
        )?;
        counters(
            e,
            "switch_drops",
            "Frames dropped over all ports, by reason and stage",
            self.drop_reasons
                .iter()
                .map(|d| ([("reason", d.reason), ("stage", d.stage)], d.count)),
        )
    }

    /// Each port's state (attached or pending) and its I/O counters.
    fn encode_port_io(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        {
            let mut m = e.encode_descriptor(
                "switch_port_attached",
                "1 when the port's I/O is open, 0 while its netdev is pending",
                None,
                MetricType::Gauge,
            )?;
            for p in &self.ports {
                let labels = [
                    ("port", p.name.as_str()),
                    ("kind", p.kind.as_str()),
                    ("role", p.role.as_str()),
                ];
                m.encode_family(&labels)?
                    .encode_gauge(&i64::from(p.attached))?;
            }
        }
        for (name, help, field) in PORT_IO {
            counters(
                e,
                name,
                help,
                self.ports
                    .iter()
                    .map(|p| ([("port", p.name.as_str())], field(p))),
            )?;
        }
        Ok(())
    }

    /// The security groups: each rule's hits per port, and the connection table's fill and
    /// counters.
    fn encode_secgroups(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        counters(
            e,
            "switch_secgroup_rule_hits",
            "Packets a security-group rule admitted on a port (its connections' packets too)",
            self.rule_hits.iter().map(|h| {
                (
                    [("port", h.port.as_str()), ("rule", h.rule.as_str())],
                    h.packets,
                )
            }),
        )?;
        let ct = &self.conntrack;
        gauge(
            e,
            "switch_conntrack_entries",
            "Connections tracked now",
            ct.entries,
        )?;
        gauge(
            e,
            "switch_conntrack_capacity",
            "The connection table's bound (conntrack_size)",
            ct.capacity,
        )?;
        counter(
            e,
            "switch_conntrack_created",
            "Connections created",
            ct.created,
        )?;
        counter(
            e,
            "switch_conntrack_refused_full",
            "New connections refused because the connection table was full",
            ct.refused_full,
        )
    }

    /// Drops of the frames each port received, by reason and stage (only those that occurred).
    fn encode_port_drops(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        counters(
            e,
            "switch_port_drops",
            "Frames received on the port and dropped, by reason and stage",
            self.ports.iter().flat_map(|p| {
                p.drops.iter().map(|d| {
                    (
                        [
                            ("port", p.name.as_str()),
                            ("reason", d.reason),
                            ("stage", d.stage),
                        ],
                        d.count,
                    )
                })
            }),
        )
    }
}

impl Collector for SwitchMetrics {
    fn encode(&self, enc: DescriptorEncoder) -> fmt::Result {
        SwitchMetrics::encode(self, enc)
    }
}

/// The exposition text of `m` alone, names prefixed `weft_`.
pub fn render(m: &SwitchMetrics) -> String {
    let mut reg = Registry::with_prefix("weft");
    reg.register_collector(Box::new(m.clone()));
    encode_registry(&reg)
}

/// The exposition text of a registry.
pub fn encode_registry(reg: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, reg);
    out
}

/// Whatever can say its counters now: the running switch (`SwitchHandle`).
/// A trait rather than the handle itself, so this module (the format) does
/// not depend on the daemon (the runtime), which depends on it.
pub trait MetricsSource: Send + Sync {
    /// The counters at this instant.
    fn metrics(&self) -> SwitchMetrics;
}

/// A running switch as a `prometheus_client` collector: its counters are read
/// at each scrape. Holds the switch weakly, so registering it does not keep a
/// stopped switch alive; a dropped switch shows no samples.
#[derive(Clone)]
pub struct SwitchCollector(Weak<dyn MetricsSource>);

impl SwitchCollector {
    /// Collects from `switch`.
    pub fn new<S: MetricsSource + 'static>(switch: &Arc<S>) -> SwitchCollector {
        let weak: Weak<dyn MetricsSource> = Arc::downgrade(switch) as Weak<dyn MetricsSource>;
        SwitchCollector(weak)
    }
}

impl fmt::Debug for SwitchCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SwitchCollector")
    }
}

impl Collector for SwitchCollector {
    fn encode(&self, enc: DescriptorEncoder) -> fmt::Result {
        match self.0.upgrade() {
            Some(sw) => sw.metrics().encode(enc),
            None => Ok(()),
        }
    }
}
