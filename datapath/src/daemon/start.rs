//! Starting a switch: ports opened, the core and port table built ([`prepare`]), then the
//! packet workers and the monitor started ([`launch`]). A takeover ([`super::handover`]) runs
//! the same two steps over ports handed over by the previous process.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::monitor::monitor;
use super::ports::{open_port, LivePort, PortTable};
use super::{worker, DaemonError, PollCounters, Shared, SwitchHandle, SwitchOptions};
use crate::io::sys::EventFd;
use crate::{Datapath, IoBackend, Snapshot, SwitchConfig};

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
