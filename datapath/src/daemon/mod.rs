//! The running switch, as a library: [`Switch::start`] opens the ports of a
//! [`SwitchConfig`], starts packet workers and hands back a [`SwitchHandle`]
//! to reconfigure ([`SwitchHandle::apply`]), inspect and stop it. `weft
//! switch` wraps it with a config file, SIGHUP and the control socket; the
//! networking agent embeds it directly.
//!
//! ```text
//!   apply(cfg) ─> Snapshot::compile ─> open new ports ─> swap snapshot ─> swap port table
//!                  (error: nothing changed)                               │ workers re-read
//!   workers: epoll ─> Port::recv ─> Worker::process ─> Port::send       <─┘ at next wakeup
//!            (per port: one RxBatch in, one send per destination port out)
//!   monitor: every 200 ms, attach `system` ports whose netdev appeared
//! ```

mod conntrack;
pub mod control;
pub mod handover;
mod poll;
mod uring;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use serde_json::{json, Value};

use crate::io::sys::EventFd;
/// Re-exported from [`crate::io`], where the port shells that count into it live.
pub use crate::io::IoCounters;
use crate::io::{Capture, PacketConfig, PacketPort, Port, TapPort, VhostUserPort};
use crate::{
    ConfigError, Datapath, IoBackend, PortInfo, PortKind, PortNo, PortRole, Snapshot, SwitchConfig,
};

/// How often pending `system` ports are looked for.
pub const PENDING_POLL: Duration = Duration::from_millis(200);

/// Errors starting or reconfiguring the switch.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config does not compile (names the field and line when known).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A tap could not be created.
    #[error("cannot create tap {name}: {source}")]
    Tap {
        /// Interface name.
        name: String,
        /// OS error.
        source: std::io::Error,
    },
    /// A system port/uplink exists but could not be attached.
    #[error("cannot attach {name}: {source}")]
    Attach {
        /// Interface name.
        name: String,
        /// OS error.
        source: std::io::Error,
    },
    /// A port's `capture` file could not be created.
    #[error("cannot open capture file {path} for {name}: {source}")]
    Capture {
        /// Interface name.
        name: String,
        /// The configured path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Threads, epoll, eventfd.
    #[error("switch runtime: {0}")]
    Runtime(std::io::Error),
    /// This process handed its ports to a new switch process; ask that one (same socket).
    #[error("this switch handed its ports over to a new process; retry on the control socket")]
    HandedOver,
    /// Taking the ports over from the running switch failed (that switch keeps running).
    #[error("takeover: {0}")]
    Takeover(String),
}

/// A port as the shell holds it: its number, name, and I/O (None = pending).
pub(crate) struct LivePort {
    pub(crate) no: PortNo,
    pub(crate) info: PortInfo,
    /// What the workers drive: `base` in its wrappers (capture, a test's fault injector).
    pub(crate) io: Option<Arc<dyn Port>>,
    /// The port as opened, kept to re-dress it when its `capture` changes.
    pub(crate) base: Option<Arc<dyn Port>>,
    pub(crate) counters: Arc<IoCounters>,
    /// Set by a worker when the netdev behind `io` vanished.
    pub(crate) dead: AtomicBool,
}

/// PortNo-indexed table of live ports, swapped whole on every change.
#[derive(Default)]
pub(crate) struct PortTable {
    slots: Vec<Option<Arc<LivePort>>>,
}

impl PortTable {
    pub(crate) fn get(&self, no: PortNo) -> Option<&Arc<LivePort>> {
        self.slots.get(usize::from(no.0)).and_then(|s| s.as_ref())
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<LivePort>> {
        self.slots.iter().flatten()
    }
    pub(crate) fn from_ports(ports: impl IntoIterator<Item = Arc<LivePort>>) -> PortTable {
        let mut slots: Vec<Option<Arc<LivePort>>> = Vec::new();
        for p in ports {
            let i = usize::from(p.no.0);
            if slots.len() <= i {
                slots.resize(i + 1, None);
            }
            slots[i] = Some(p);
        }
        PortTable { slots }
    }
}

pub(crate) struct Shared {
    pub(crate) dp: Arc<Datapath>,
    pub(crate) ports: ArcSwap<PortTable>,
    /// Bumped whenever `ports` changes, so workers refresh their epoll sets.
    pub(crate) port_gen: AtomicU64,
    pub(crate) stop: AtomicBool,
    wakers: Vec<Arc<EventFd>>,
    /// Serialises apply() and the pending-port monitor.
    apply_lock: Mutex<()>,
    opts: SwitchOptions,
    /// How the workers waited, summed over them (see [`PollCounts`]).
    pub(crate) poll: PollCounters,
    /// The tap I/O the workers use (`[switch] io`, after the probe).
    pub(crate) io: IoBackend,
}

/// The workers' wait counters, as atomics (bumped once per blocking wait, not per frame).
#[derive(Default)]
pub(crate) struct PollCounters {
    pub(crate) sleeps: AtomicU64,
    pub(crate) spin_hits: AtomicU64,
    pub(crate) spin_misses: AtomicU64,
    pub(crate) uring_enters: AtomicU64,
}

/// How the packet workers waited for frames since the switch started, summed over workers:
/// whether `[switch] busy_poll_us` pays on this host (hits) or burns CPU (misses).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PollCounts {
    /// Blocking waits (`epoll_wait` with a timeout); each one that is ended by a frame costs
    /// that frame a wake-up.
    pub sleeps: u64,
    /// Spin windows that found a frame without sleeping.
    pub spin_hits: u64,
    /// Spin windows that ended without a frame (CPU spent for nothing).
    pub spin_misses: u64,
    /// How taps are read and written: "uring" or "epoll" (`[switch] io`, after the probe).
    pub io: &'static str,
    /// `io_uring_enter` calls of all workers (counted when a worker goes to sleep).
    pub uring_enters: u64,
}

impl Shared {
    fn publish(&self, table: PortTable) {
        self.ports.store(Arc::new(table));
        self.port_gen.fetch_add(1, Ordering::AcqRel);
        for w in &self.wakers {
            w.notify();
        }
    }
}

/// The tap I/O to run: `asked`, unless that is io_uring and this kernel (or a container's
/// seccomp filter, or kernel.io_uring_disabled) refuses it. Logged either way, so that the
/// switch's log says which one runs.
fn io_backend(asked: IoBackend) -> IoBackend {
    let io = match asked {
        IoBackend::Uring => match crate::io::sys_uring::probe() {
            Ok(()) => IoBackend::Uring,
            Err(e) => {
                tracing::warn!("[switch] io = \"uring\" but io_uring is unavailable ({e})");
                IoBackend::Epoll
            }
        },
        IoBackend::Epoll => IoBackend::Epoll,
    };
    tracing::info!("tap I/O: {}", io.as_str());
    io
}

pub(crate) fn now_ns() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// Puts a port the switch opened in a wrapper (tests: a [`crate::io::FaultInjector`]); called
/// with the port's info each time the port is opened or re-dressed.
pub type PortWrapper = Arc<dyn Fn(&PortInfo, Arc<dyn Port>) -> Arc<dyn Port> + Send + Sync>;

/// Options for [`Switch::start_with`].
#[derive(Clone, Default)]
pub struct SwitchOptions {
    /// Packet worker threads (default: the config's `workers`, else one per core).
    pub workers: Option<usize>,
    /// AF_PACKET settings for `system` ports and uplinks.
    pub packet: PacketConfig,
    /// Wraps every port as it is opened, inside a capture if the port has one.
    pub wrap_port: Option<PortWrapper>,
    /// Directory of the `vhostuser` ports' sockets (default: the config's `[switch]
    /// vhost_dir`, read when the switch starts).
    pub vhost_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for SwitchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchOptions")
            .field("workers", &self.workers)
            .field("packet", &self.packet)
            .field("wrap_port", &self.wrap_port.is_some())
            .field("vhost_dir", &self.vhost_dir)
            .finish()
    }
}

/// Entry point: start a switch.
pub struct Switch;

impl Switch {
    /// Starts a switch for `cfg`: creates its taps, attaches existing netdevs
    /// (netdevs not there yet stay pending and are attached when they
    /// appear), and starts the workers.
    pub fn start(cfg: SwitchConfig) -> Result<SwitchHandle, DaemonError> {
        Switch::start_with(cfg, SwitchOptions::default())
    }

    /// [`Switch::start`] with explicit options.
    pub fn start_with(
        cfg: SwitchConfig,
        mut opts: SwitchOptions,
    ) -> Result<SwitchHandle, DaemonError> {
        if opts.vhost_dir.is_none() {
            opts.vhost_dir = Some(cfg.switch.vhost_dir.clone());
        }
        let snap = Snapshot::compile(&cfg, None)?;
        let mut live = Vec::new();
        for info in snap.ports() {
            live.push(Arc::new(open_port(info, &opts, None)?));
        }
        launch(prepare(snap, live, opts)?)
    }
}

/// A switch ready to run: its core and port table built, no thread started yet.
pub(crate) struct Prepared {
    pub(crate) shared: Arc<Shared>,
    workers: usize,
    settings: crate::config::SwitchSettings,
}

/// Builds the core, the port table and the wakers over ports already open: a fresh start, or
/// a takeover (whose ports came from the previous process; done before the old one stops, so
/// that only [`launch`] falls in the pause).
pub(crate) fn prepare(
    snap: Snapshot,
    live: Vec<Arc<LivePort>>,
    opts: SwitchOptions,
) -> Result<Prepared, DaemonError> {
    let settings = snap.config().switch.clone();
    let workers = opts
        .workers
        .or(settings.workers)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    let mut wakers = Vec::new();
    for _ in 0..workers {
        wakers.push(Arc::new(EventFd::new().map_err(DaemonError::Runtime)?));
    }
    let shared = Arc::new(Shared {
        dp: Arc::new(Datapath::new(snap)),
        ports: ArcSwap::from_pointee(PortTable::from_ports(live)),
        port_gen: AtomicU64::new(1),
        stop: AtomicBool::new(false),
        wakers,
        apply_lock: Mutex::new(()),
        opts,
        poll: PollCounters::default(),
        io: io_backend(settings.io),
    });
    Ok(Prepared {
        shared,
        workers,
        settings,
    })
}

/// Starts the workers and the monitor of a prepared switch.
pub(crate) fn launch(p: Prepared) -> Result<SwitchHandle, DaemonError> {
    let Prepared {
        shared,
        workers,
        settings,
    } = p;
    let mut threads = Vec::new();
    for i in 0..workers {
        let w = worker::PacketThread {
            index: i,
            count: workers,
            shared: shared.clone(),
            wake: shared.wakers[i].clone(),
            core: shared.dp.worker(),
            nice: settings.worker_nice,
            busy_poll_ns: settings.busy_poll_us.saturating_mul(1000),
            spin_yield: settings.busy_poll_yield,
            uring: shared.io == IoBackend::Uring,
        };
        let t = std::thread::Builder::new()
            .name(format!("weft-worker-{i}"))
            .spawn(move || w.run())
            .map_err(DaemonError::Runtime)?;
        threads.push(t);
    }
    let sh = shared.clone();
    threads.push(
        std::thread::Builder::new()
            .name("weft-monitor".into())
            .spawn(move || monitor(sh))
            .map_err(DaemonError::Runtime)?,
    );
    Ok(SwitchHandle {
        shared,
        threads: Mutex::new(threads),
        handed_over: AtomicBool::new(false),
    })
}

fn open_port(
    info: &PortInfo,
    opts: &SwitchOptions,
    reuse: Option<&Arc<LivePort>>,
) -> Result<LivePort, DaemonError> {
    let counters = reuse.map(|r| r.counters.clone()).unwrap_or_default();
    let packet = opts.packet;
    let base: Option<Arc<dyn Port>> = match info.kind {
        PortKind::Tap => {
            let tap = TapPort::create(&info.name, info.mac.map(|m| m.0)).map_err(|source| {
                DaemonError::Tap {
                    name: info.name.clone(),
                    source,
                }
            })?;
            // A tap we created gets its network's MTU (e.g. 1450 on vxlan).
            if let Some(mtu) = info.mtu {
                if let Err(e) = crate::io::sys::set_link_mtu(&info.name, mtu) {
                    tracing::warn!(port = %info.name, mtu, "cannot set the tap's MTU: {e}");
                }
            }
            Some(Arc::new(tap))
        }
        PortKind::System => match PacketPort::open(&info.name, packet) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(DaemonError::Attach {
                    name: info.name.clone(),
                    source,
                })
            }
        },
        PortKind::VhostUser => {
            let dir = opts
                .vhost_dir
                .as_deref()
                .unwrap_or(std::path::Path::new(crate::config::DEFAULT_VHOST_DIR));
            let path = dir.join(&info.name);
            Some(Arc::new(VhostUserPort::open(&info.name, &path).map_err(
                |source| DaemonError::Attach {
                    name: format!("{} ({})", info.name, path.display()),
                    source,
                },
            )?))
        }
        PortKind::Vxlan => {
            let ep = info.tunnel_endpoint.ok_or_else(|| DaemonError::Attach {
                name: info.name.clone(),
                source: std::io::Error::other("tunnel endpoint without an address"),
            })?;
            Some(Arc::new(
                crate::io::tunnel::TunnelPort::open(ep.ip(), ep.port()).map_err(|source| {
                    DaemonError::Attach {
                        name: format!("{} ({ep})", info.name),
                        source,
                    }
                })?,
            ))
        }
    };
    let io = base.clone().map(|b| dress(info, b, opts)).transpose()?;
    Ok(LivePort {
        no: info.no,
        info: info.clone(),
        io,
        base,
        counters,
        dead: AtomicBool::new(false),
    })
}

/// The port the workers drive: `base` in the options' wrapper, then in a pcap capture when
/// the port's config asks for one (outermost, so it records what the switch sees).
fn dress(
    info: &PortInfo,
    base: Arc<dyn Port>,
    opts: &SwitchOptions,
) -> Result<Arc<dyn Port>, DaemonError> {
    let port = match &opts.wrap_port {
        Some(wrap) => wrap(info, base),
        None => base,
    };
    let Some(path) = &info.capture else {
        return Ok(port);
    };
    let cap = Capture::create(port, path).map_err(|source| DaemonError::Capture {
        name: info.name.clone(),
        path: path.clone(),
        source,
    })?;
    tracing::info!(port = %info.name, path = %path.display(), "capturing the port's frames");
    Ok(Arc::new(cap))
}

/// Needs the monitor: a pending netdev that appeared, or a dead one.
fn needs_attention(p: &LivePort, probe: &crate::io::NetdevProbe) -> bool {
    p.dead.load(Ordering::Acquire)
        || (p.io.is_none() && p.info.kind == PortKind::System && probe.exists(&p.info.name))
}

fn monitor(shared: Arc<Shared>) {
    let mut last_age = now_ns();
    while !shared.stop.load(Ordering::Acquire) {
        std::thread::sleep(PENDING_POLL);
        let now = now_ns();
        if now - last_age > 1_000_000_000 {
            shared.dp.age_macs(now);
            let mut ct = shared.dp.conntrack();
            ct.expire(now);
            // Refusals since the last line, once the flood that caused them has stopped too.
            crate::datapath::report_refusals(&mut ct, now);
            drop(ct);
            last_age = now;
        }
        let probe = match crate::io::NetdevProbe::new() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("pending-port monitor: {e}");
                continue;
            }
        };
        if !shared
            .ports
            .load()
            .iter()
            .any(|p| needs_attention(p, &probe))
        {
            continue;
        }
        let _g = shared.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        let table = shared.ports.load();
        let mut changed = false;
        let mut next = Vec::new();
        for p in table.iter() {
            if !needs_attention(p, &probe) {
                next.push(p.clone());
                continue;
            }
            // Re-create a tap we own; attach (or leave pending) a system netdev.
            match open_port(&p.info, &shared.opts, Some(p)) {
                Ok(lp) => {
                    tracing::info!(port = %p.info.name, attached = lp.io.is_some(), "port (re)attached");
                    changed = true;
                    next.push(Arc::new(lp));
                }
                Err(e) => {
                    tracing::warn!(port = %p.info.name, "attach failed: {e}");
                    next.push(p.clone());
                }
            }
        }
        if changed {
            shared.publish(PortTable::from_ports(next));
        }
    }
}

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

/// A running switch. Dropping it without [`SwitchHandle::shutdown`] also stops it.
pub struct SwitchHandle {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Set once a new switch process took this one's ports over (see [`handover`]): the
    /// workers are stopped and every apply is refused, so that no change lands here.
    handed_over: AtomicBool,
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

    /// Answers one control-socket request (see [`control`]). `reload` is
    /// called for `{"cmd":"reload"}`; without it reload is refused.
    pub fn handle_request(
        &self,
        req: &Value,
        reload: Option<&dyn Fn() -> Result<ApplyReport, String>>,
    ) -> Value {
        let cmd = req.get("cmd").and_then(Value::as_str).unwrap_or("");
        match cmd {
            "ports" => json!({"ok": true, "ports": self.port_states()}),
            "macs" => json!({"ok": true, "macs": self.mac_table_json()}),
            "counters" => json!({"ok": true, "counters": self.counters_json()}),
            "metrics" => json!({"ok": true, "metrics": crate::metrics::render(&self.metrics())}),
            "conntrack" => conntrack::request(&self.shared.dp, req, now_ns()),
            "apply" => self.apply_request(req),
            "reload" => match reload {
                Some(f) => match f() {
                    Ok(r) => json!({"ok": true, "report": r}),
                    Err(e) => control::error_reply(&e),
                },
                None => control::error_reply("reload is not available on this switch"),
            },
            "trace" => {
                let desc = req.get("frame").and_then(Value::as_str).unwrap_or("");
                match self.trace_json(desc) {
                    Ok(v) => json!({"ok": true, "trace": v}),
                    Err(e) => control::error_reply(&e),
                }
            }
            other => control::error_reply(&format!(
                "unknown command {other:?} (ports, macs, counters, metrics, conntrack, reload, \
                 apply, trace, handover)"
            )),
        }
    }

    /// `{"cmd":"apply","config":{...}}`: a whole config from an agent in another process,
    /// validated like a file's, then applied as [`SwitchHandle::apply`] does.
    fn apply_request(&self, req: &Value) -> Value {
        let cfg = match serde_json::from_value::<SwitchConfig>(req["config"].clone()) {
            Ok(c) => c,
            Err(e) => return control::error_reply(&format!("apply: bad config: {e}")),
        };
        let cfg = match cfg.validated("apply request") {
            Ok(c) => c,
            Err(e) => return control::error_reply(&e.to_string()),
        };
        match self.apply(cfg) {
            Ok(r) => json!({"ok": true, "report": r}),
            Err(e) => control::error_reply(&e.to_string()),
        }
    }

    /// [`SwitchHandle::serve_control`] for a standalone `weft switch`: also answers
    /// `{"cmd":"handover"}` (a new process takes the ports over, see [`handover`]), and serves
    /// `listener` when given (the one a previous process handed over) instead of binding.
    pub fn serve_control_upgradable(
        self: &Arc<Self>,
        path: &std::path::Path,
        listener: Option<std::os::unix::net::UnixListener>,
        reload: Option<Arc<dyn Fn() -> Result<ApplyReport, String> + Send + Sync>>,
    ) -> std::io::Result<control::ControlServer> {
        let handler = self.control_handler(reload);
        let me = Arc::downgrade(self);
        let hook: Arc<control::HandoverHook> = Arc::new(
            move |rd: &mut dyn std::io::BufRead,
                  stream: &std::os::unix::net::UnixStream,
                  lfd: std::os::fd::RawFd| {
                me.upgrade().is_some_and(|h| h.hand_over(rd, stream, lfd))
            },
        );
        match listener {
            Some(l) => control::ControlServer::serve(l, path, handler, Some(hook)),
            None => control::ControlServer::bind_with(path, handler, Some(hook)),
        }
    }

    fn control_handler(
        self: &Arc<Self>,
        reload: Option<Arc<dyn Fn() -> Result<ApplyReport, String> + Send + Sync>>,
    ) -> Arc<control::Handler> {
        let me = Arc::downgrade(self);
        Arc::new(move |req: &Value| match me.upgrade() {
            Some(h) => h.handle_request(
                req,
                reload
                    .as_deref()
                    .map(|f| f as &dyn Fn() -> Result<ApplyReport, String>),
            ),
            None => control::error_reply("switch is shutting down"),
        })
    }

    /// Serves the control socket at `path` (e.g. the config's
    /// `switch.control_socket`) until the returned server is dropped.
    pub fn serve_control(
        self: &Arc<Self>,
        path: &std::path::Path,
        reload: Option<Arc<dyn Fn() -> Result<ApplyReport, String> + Send + Sync>>,
    ) -> std::io::Result<control::ControlServer> {
        control::ControlServer::bind(path, self.control_handler(reload))
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

    fn mac_table_json(&self) -> Value {
        let snap = self.shared.dp.snapshot();
        let rows: Vec<Value> = self
            .mac_table()
            .into_iter()
            .map(|e| {
                let port = snap
                    .port(e.port)
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| e.port.to_string());
                json!({
                    "vlan": e.vlan,
                    "mac": e.mac.to_string(),
                    "port": port,
                    "age_secs": e.age_ns / 1_000_000_000,
                    "static": e.is_static,
                })
            })
            .collect();
        Value::Array(rows)
    }

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

impl SwitchHandle {
    fn counters_json(&self) -> Value {
        let c = self.shared.dp.counters();
        let states = self.port_states();
        let table = self.shared.ports.load();
        let ports: Vec<Value> = states
            .iter()
            .map(|s| {
                let pc = c.port(PortNo(s.no));
                let mut drops: serde_json::Map<String, Value> = crate::DropReason::ALL
                    .iter()
                    .filter_map(|&r| {
                        let n = pc.map(|p| p.drop_count(r)).unwrap_or(0);
                        (n > 0).then(|| (r.name().to_string(), json!(n)))
                    })
                    .collect();
                // Drops a port counts itself: the tunnel endpoint's refused datagrams
                // (unknown VNI, bad flags...).
                if let Some(io) = table.get(PortNo(s.no)).and_then(|p| p.io.as_deref()) {
                    for (r, n) in io.drop_counts() {
                        drops.insert(r.to_string(), json!(n));
                    }
                }
                json!({
                    "name": s.name,
                    "rx": s.rx_frames,
                    "tx": s.tx_frames,
                    "rx_bytes": s.rx_bytes,
                    "tx_bytes": s.tx_bytes,
                    "rx_errors": s.rx_errors,
                    "rx_ring_drops": s.rx_ring_drops,
                    "tx_dropped": s.tx_dropped,
                    "drops": drops,
                })
            })
            .collect();
        let reasons: serde_json::Map<String, Value> = crate::DropReason::ALL
            .iter()
            .map(|&r| (r.name().to_string(), json!(c.drops(r))))
            .collect();
        let stages: Vec<Value> = c
            .stages()
            .iter()
            .map(|s| json!({"stage": s.stage.name(), "entered": s.entered, "dropped": s.dropped}))
            .collect();
        json!({
            "processed": c.processed,
            "flow_cache_hits": c.flow_cache_hits,
            "flow_cache_misses": c.flow_cache_misses,
            "ports": ports,
            "drop_reasons": reasons,
            "stages": stages,
            "poll": self.poll_counts(),
        })
    }

    fn trace_json(&self, desc: &str) -> Result<Value, String> {
        let steps = self.trace(desc)?;
        Ok(Value::Array(
            steps
                .iter()
                .map(|s| json!({"stage": s.stage.name(), "decision": s.decision}))
                .collect(),
        ))
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

/// Default control socket path when the config names none.
pub fn default_control_socket() -> PathBuf {
    PathBuf::from(crate::config::DEFAULT_CONTROL_SOCKET)
}
