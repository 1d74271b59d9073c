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
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::counters::StageCounters;

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

/// What an HTTP scrape answers: the exposition text.
pub type Render = dyn Fn() -> String + Send + Sync;

/// A blocking HTTP responder for `GET /metrics`; stops on drop.
///
/// A scrape is one small request every few seconds, so one thread answering
/// one connection at a time is enough, and the switch (and the agent) need no
/// HTTP server framework.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0 picks a free port) and answers `GET
    /// /metrics` with `render()`; other paths get 404, other methods 405.
    pub fn bind(addr: SocketAddr, render: Arc<Render>) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weft-metrics".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            if let Err(e) = answer(s, &*render) {
                                tracing::debug!("metrics scrape: {e}");
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one connection: reads the request head, writes one response and
/// closes (`Connection: close`), so a slow or silent client costs at most the
/// timeout.
fn answer(stream: TcpStream, render: &Render) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers; a scrape has no body.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 && line.trim_end() != "" {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", CONTENT_TYPE, render()),
        (_, "/metrics") => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
        _ => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = stream;
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Stage;
    use std::collections::BTreeMap;
    use std::io::Read;

    /// Samples of an exposition text: `name{k="v",...}` -> value. Checks the
    /// shape of every line it reads, so a malformed line fails the test.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                assert!(
                    line.is_empty()
                        || line.starts_with("# HELP ")
                        || line.starts_with("# TYPE ")
                        || line == "# EOF",
                    "bad comment line {line:?}"
                );
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let v: f64 = value.parse().expect("value is a number");
            if let Some((name, labels)) = series.split_once('{') {
                assert!(labels.ends_with('}'), "labels closed in {line:?}");
                for kv in labels.trim_end_matches('}').split(',') {
                    let (k, v) = kv.split_once('=').expect("label is k=v");
                    assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                    assert!(v.starts_with('"') && v.ends_with('"'), "quoted {kv}");
                }
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            }
            assert!(out.insert(series.to_string(), v).is_none(), "dup {series}");
        }
        out
    }

    fn sample(ports_rx: u64) -> SwitchMetrics {
        SwitchMetrics {
            processed: 10,
            flow_cache_hits: 7,
            flow_cache_misses: 3,
            stages: vec![StageCounters {
                stage: Stage::Classify,
                entered: 10,
                dropped: 2,
            }],
            drop_reasons: vec![PortDrop {
                reason: "reserved_vlan",
                stage: "classify",
                count: 2,
            }],
            rule_hits: vec![RuleHits {
                port: "tap1".into(),
                rule: "r1".into(),
                packets: 5,
            }],
            conntrack: ConntrackMetrics {
                entries: 1,
                capacity: 16,
                ..Default::default()
            },
            ports: vec![PortMetrics {
                name: "tap1".into(),
                kind: "tap".into(),
                role: "vm".into(),
                attached: true,
                rx_frames: ports_rx,
                rx_bytes: 640,
                tx_frames: 4,
                tx_bytes: 256,
                rx_errors: 0,
                rx_ring_drops: 0,
                tx_dropped: 1,
                drops: vec![PortDrop {
                    reason: "reserved_vlan",
                    stage: "classify",
                    count: 2,
                }],
            }],
        }
    }

    #[test]
    fn every_counter_is_a_sample_with_its_labels() {
        let s = parse(&render(&sample(10)));
        assert_eq!(s["weft_switch_frames_processed_total"], 10.0);
        assert_eq!(s["weft_switch_flow_cache_hits_total"], 7.0);
        assert_eq!(
            s["weft_switch_stage_frames_dropped_total{stage=\"classify\"}"],
            2.0
        );
        assert_eq!(
            s["weft_switch_port_attached{port=\"tap1\",kind=\"tap\",role=\"vm\"}"],
            1.0
        );
        assert_eq!(s["weft_switch_port_rx_frames_total{port=\"tap1\"}"], 10.0);
        assert_eq!(s["weft_switch_port_tx_dropped_total{port=\"tap1\"}"], 1.0);
        assert_eq!(
            s["weft_switch_port_drops_total{port=\"tap1\",reason=\"reserved_vlan\",stage=\"classify\"}"],
            2.0
        );
        assert_eq!(
            s["weft_switch_drops_total{reason=\"reserved_vlan\",stage=\"classify\"}"],
            2.0
        );
    }

    #[test]
    fn http_scrape_answers_the_current_numbers() {
        let rx = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let r = rx.clone();
        let srv = MetricsServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(move || render(&sample(r.load(Ordering::Relaxed)))),
        )
        .unwrap();
        let get = |req: &str| {
            let mut s = TcpStream::connect(srv.local_addr()).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            text
        };
        let scrape = || {
            let text = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.contains(&format!("Content-Length: {}", body.len())));
            parse(body)["weft_switch_port_rx_frames_total{port=\"tap1\"}"]
        };
        assert_eq!(scrape(), 1.0);
        rx.store(5, Ordering::Relaxed);
        assert_eq!(scrape(), 5.0);
        assert!(get("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    }
}
