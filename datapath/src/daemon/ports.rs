//! The ports as the shell holds them: each one's I/O (a tap, an AF_PACKET socket, a vhost-user
//! socket or the tunnel's UDP socket), opened from its [`PortInfo`] and dressed in the
//! configured wrappers, in a table indexed by port number that the workers read.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{DaemonError, IoCounters, SwitchOptions};
use crate::io::{Capture, PacketPort, Port, TapPort, VhostUserPort};
use crate::{PortInfo, PortKind, PortNo};

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

/// Opens the I/O of a port (None: a `system` netdev not there yet, left pending). With
/// `reuse`, the port keeps that live port's counters (a reopen is the same port to `weft ctl`).
pub(crate) fn open_port(
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
pub(crate) fn dress(
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
