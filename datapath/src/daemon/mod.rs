//! The running switch, as a library: [`Switch::start`] opens the ports of a
//! [`SwitchConfig`](crate::SwitchConfig), starts packet workers and hands back a [`SwitchHandle`]
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
//!
//! Here: the shared state and options. `start` builds and launches a switch, `ports` opens
//! and dresses its ports, `monitor` (re)attaches them, `worker` (with `poll`, `uring`) moves
//! the frames; `handle` reconfigures and stops it, `requests` answers the control socket
//! ([`control`]), `metrics_source` feeds `/metrics`; [`handover`] passes the ports to a new
//! process.

mod conntrack;
pub mod control;
mod handle;
pub mod handover;
mod metrics_source;
mod monitor;
mod poll;
mod ports;
mod requests;
mod start;
mod uring;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::io::sys::EventFd;
/// Re-exported from [`crate::io`], where the port shells that count into it live.
pub use crate::io::IoCounters;
use crate::io::{PacketConfig, Port};
use crate::{ConfigError, Datapath, IoBackend, PortInfo};

pub use handle::{ApplyReport, PortState};
pub(crate) use ports::{dress, open_port, LivePort, PortTable};
pub use start::Switch;
pub(crate) use start::{launch, prepare};

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

/// A running switch. Dropping it without [`SwitchHandle::shutdown`] also stops it.
pub struct SwitchHandle {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Set once a new switch process took this one's ports over (see [`handover`]): the
    /// workers are stopped and every apply is refused, so that no change lands here.
    handed_over: AtomicBool,
}

/// Default control socket path when the config names none.
pub fn default_control_socket() -> PathBuf {
    PathBuf::from(crate::config::DEFAULT_CONTROL_SOCKET)
}
