//! Switch restart (or binary upgrade) without closing a port: the new `weft switch` process
//! takes the running one's file descriptors over its control socket.
//!
//! ```text
//!  new process                         old process (keeps forwarding until "release")
//!  {"cmd":"handover"} ───────────────► holds its apply lock (no reload, no monitor)
//!                     ◄─────────────── {"ok":true,"offer":{config, ports},"fds":N}
//!                     ◄─────────────── N fds by SCM_RIGHTS: control listener, then one per
//!  adopts taps and tunnel sockets,                port (tap, AF_PACKET socket, UDP socket)
//!  compiles the snapshot
//!  {"cmd":"release"} ────────────────► stops accepting, refuses applies, joins its workers
//!                     ◄─────────────── {"ok":true,"released":{ring heads, learned MACs}}
//!  maps the AF_PACKET rings at those heads, restores the MACs, starts its workers,
//!  serves the control socket on the handed listener           old process exits
//! ```
//!
//! Why this shape:
//! - A tap is never closed: the new process holds new references to the same open files
//!   before the old one closes its own, so no netdev is destroyed and no namespace (or VM)
//!   loses its link. Frames that arrive while neither process reads wait in the tap's queue,
//!   the socket's buffer or the AF_PACKET ring, so the pause (workers joined, a reply, threads
//!   spawned) costs delay, not loss.
//! - Only one process reads at a time: an AF_PACKET ring is shared memory with one reader's
//!   position, and two readers of one tap would reorder a flow.
//! - Until "release" the old process has changed nothing: a new process that fails (a bad
//!   binary, a port it cannot adopt) just disconnects and the old one carries on.
//! - Learned MACs move with the ports, so 1,000 ports do not see every frame flooded while
//!   the new process relearns. Connection-tracking entries do not move: a stateful security
//!   group readmits an established flow only from its next packet that a rule allows.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    dress, launch, now_ns, open_port, prepare, DaemonError, LivePort, PortTable, SwitchHandle,
    SwitchOptions,
};
use crate::io::{recv_with_fds, send_fds, PacketPort, Port, RingPosition, TapPort};
use crate::{MacAddr, PortKind, Snapshot, SwitchConfig};

/// What the running switch offers: its config and its open ports (fd `i + 1` is port `i`'s;
/// fd 0 is the control socket's listener).
#[derive(Serialize, Deserialize)]
struct Offer {
    config: SwitchConfig,
    ports: Vec<HandedPort>,
}

#[derive(Serialize, Deserialize)]
struct HandedPort {
    name: String,
    kind: PortKind,
    ring: Option<RingPosition>,
}

/// What the old process says once its workers have stopped.
#[derive(Serialize, Deserialize, Default)]
struct Released {
    /// AF_PACKET ports: the slot to read next.
    heads: BTreeMap<String, usize>,
    macs: Vec<HandedMac>,
}

#[derive(Serialize, Deserialize)]
struct HandedMac {
    network: String,
    mac: MacAddr,
    port: String,
    age_ns: u64,
}

/// What a takeover did, for the log and the benchmarks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TakeoverReport {
    /// Ports whose fd was handed over (taps, AF_PACKET sockets, tunnel sockets).
    pub adopted: usize,
    /// Ports opened afresh (pending `system` netdevs, which had no fd to hand).
    pub opened: usize,
    /// Learned MAC entries carried over.
    pub macs: usize,
    /// From asking for the ports to the release request: the old process still forwards.
    pub prepare_us: u64,
    /// From the release request to this process's workers running: nobody reads the ports
    /// meanwhile (frames queue, none is lost unless a queue overflows).
    pub pause_us: u64,
}

impl SwitchHandle {
    /// Whether a new process has taken this switch's ports over (then exit: the ports live on
    /// there, and closing this process's references to them closes nothing).
    pub fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Acquire)
    }

    /// Serves a new process's `{"cmd":"handover"}` on `stream` (`reader` reads its further
    /// lines). `listener` is the control socket's, handed over too (the caller has stopped
    /// accepting on it). Returns whether the ports were handed over; on false (the new
    /// process went away before "release") nothing here changed.
    pub fn hand_over(
        &self,
        reader: &mut dyn BufRead,
        stream: &UnixStream,
        listener: RawFd,
    ) -> bool {
        // Held to the end: no apply and no monitor reattach may change what was offered.
        let _g = self
            .shared
            .apply_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.handed_over() {
            let _ = reply(stream, &super::control::error_reply("already handed over"));
            return false;
        }
        let table = self.shared.ports.load();
        let mut ports = Vec::new();
        let mut fds = vec![listener];
        let mut bases: Vec<(String, Arc<dyn Port>)> = Vec::new();
        for p in table.iter() {
            // A vhost-user port's state is QEMU's connection and the guest's memory map, not
            // one fd: it is not handed over. The successor opens its socket afresh, and the
            // guest's QEMU reconnects (`-chardev socket,...,reconnect=1`).
            if p.info.kind == PortKind::VhostUser {
                continue;
            }
            let Some(base) = &p.base else { continue };
            ports.push(HandedPort {
                name: p.info.name.clone(),
                kind: p.info.kind,
                ring: base.ring_position(),
            });
            fds.push(base.raw_fd());
            bases.push((p.info.name.clone(), base.clone()));
        }
        let offer = Offer {
            config: self.shared.dp.snapshot().config().clone(),
            ports,
        };
        let sent = reply(
            stream,
            &json!({"ok": true, "offer": offer, "fds": fds.len()}),
        )
        .and_then(|()| send_fds(stream.as_raw_fd(), &fds));
        if let Err(e) = sent {
            tracing::warn!("handover: cannot send the ports: {e}; this switch carries on");
            return false;
        }
        let mut line = String::new();
        let ok = reader.read_line(&mut line).is_ok()
            && serde_json::from_str::<serde_json::Value>(&line)
                .is_ok_and(|v| v["cmd"] == "release");
        if !ok {
            tracing::warn!("handover: the new process left before release; this switch carries on");
            return false;
        }
        self.handed_over.store(true, Ordering::Release);
        self.stop_workers();
        let released = Released {
            heads: bases
                .iter()
                .filter_map(|(n, b)| b.ring_position().map(|r| (n.clone(), r.head)))
                .collect(),
            macs: self.learned_macs(),
        };
        if let Err(e) = reply(stream, &json!({"ok": true, "released": released})) {
            tracing::error!("handover: release reply failed: {e}");
        }
        tracing::info!(
            ports = bases.len(),
            "ports handed over to the new switch process"
        );
        true
    }

    /// Stops the packet workers (not the monitor, which sleeps up to [`super::PENDING_POLL`]
    /// and stops by itself): they are the only readers of the ports.
    fn stop_workers(&self) {
        self.shared.stop.store(true, Ordering::Release);
        for w in &self.shared.wakers {
            w.notify();
        }
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        let (workers, rest): (Vec<_>, Vec<_>) =
            std::mem::take(&mut *threads).into_iter().partition(|t| {
                t.thread()
                    .name()
                    .is_some_and(|n| n.starts_with("weft-worker"))
            });
        *threads = rest;
        drop(threads);
        for t in workers {
            let _ = t.join();
        }
    }

    fn learned_macs(&self) -> Vec<HandedMac> {
        let snap = self.shared.dp.snapshot();
        self.shared
            .dp
            .mac_table(now_ns())
            .into_iter()
            .filter(|e| !e.is_static)
            .filter_map(|e| {
                Some(HandedMac {
                    network: snap.network_by_local_vlan(e.vlan)?.name.clone(),
                    mac: e.mac,
                    port: snap.port(e.port)?.name.clone(),
                    age_ns: e.age_ns,
                })
            })
            .collect()
    }
}

fn reply(mut stream: &UnixStream, v: &serde_json::Value) -> io::Result<()> {
    let mut text = v.to_string();
    text.push('\n');
    stream.write_all(text.as_bytes())
}

/// Reads lines and the fds sent along with them (a `BufReader` would drop the fds).
struct FdReader<'a> {
    sock: &'a UnixStream,
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl FdReader<'_> {
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = recv_with_fds(self.sock.as_raw_fd(), &mut chunk, &mut self.fds)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the running switch closed the connection",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The next JSON line (the one-byte markers that carried fds are skipped).
    fn line(&mut self) -> io::Result<serde_json::Value> {
        loop {
            let start = self.buf.iter().take_while(|&&b| b == b'.').count();
            self.buf.drain(..start);
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return serde_json::from_slice(&line)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
            }
            self.fill()?;
        }
    }
}

fn takeover_err(what: &str, e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Takeover(format!("{what}: {e}"))
}

fn check_ok(v: &serde_json::Value) -> Result<(), DaemonError> {
    if v["ok"] == true {
        return Ok(());
    }
    let msg = v["error"].as_str().unwrap_or("unexpected reply");
    Err(DaemonError::Takeover(format!(
        "the running switch refused: {msg}"
    )))
}

/// A handed port before it is adopted: its fd, and its ring for an AF_PACKET one.
struct Handed {
    kind: PortKind,
    fd: OwnedFd,
    ring: Option<RingPosition>,
}

impl super::Switch {
    /// Takes over the switch serving the control socket at `path`: its config, its ports (the
    /// same open taps, AF_PACKET sockets and tunnel sockets, see the module doc) and its
    /// control socket's listener, which the caller serves from then on. On error before the
    /// release, the running switch carries on untouched.
    pub fn take_over(
        path: &Path,
        opts: SwitchOptions,
    ) -> Result<(SwitchHandle, UnixListener, TakeoverReport), DaemonError> {
        let started = Instant::now();
        let sock = UnixStream::connect(path)
            .map_err(|e| takeover_err(&format!("cannot connect to {}", path.display()), e))?;
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(DaemonError::Runtime)?;
        reply(&sock, &json!({"cmd": "handover"})).map_err(|e| takeover_err("request", e))?;
        let mut rd = FdReader {
            sock: &sock,
            buf: Vec::new(),
            fds: Vec::new(),
        };
        let head = rd.line().map_err(|e| takeover_err("offer", e))?;
        check_ok(&head)?;
        let offer: Offer =
            serde_json::from_value(head["offer"].clone()).map_err(|e| takeover_err("offer", e))?;
        let want = head["fds"].as_u64().unwrap_or(0) as usize;
        if want != offer.ports.len() + 1 {
            return Err(takeover_err("offer", "fd count does not match the ports"));
        }
        while rd.fds.len() < want {
            rd.fill().map_err(|e| takeover_err("receiving fds", e))?;
        }
        let mut fds = std::mem::take(&mut rd.fds).into_iter();
        let listener = UnixListener::from(fds.next().ok_or_else(|| takeover_err("fds", "none"))?);
        let mut handed: HashMap<String, Handed> = offer
            .ports
            .into_iter()
            .zip(fds)
            .map(|(p, fd)| {
                let h = Handed {
                    kind: p.kind,
                    fd,
                    ring: p.ring,
                };
                (p.name, h)
            })
            .collect();
        let cfg = offer
            .config
            .validated("the running switch's config")
            .map_err(|e| takeover_err("config", e))?;
        let snap = Snapshot::compile(&cfg, None)?;
        let mut report = TakeoverReport::default();
        // Taps and tunnel sockets now; AF_PACKET rings once the old process stopped reading.
        let mut live: Vec<Arc<LivePort>> = Vec::new();
        let mut rings = Vec::new();
        for info in snap.ports() {
            match handed.remove(&info.name) {
                Some(h) if h.kind == info.kind && h.kind == PortKind::System => {
                    rings.push((info.clone(), h))
                }
                Some(h) if h.kind == info.kind => {
                    live.push(Arc::new(adopt(info, h, None, &opts)?));
                    report.adopted += 1;
                }
                _ => {
                    live.push(Arc::new(open_port(info, &opts, None)?));
                    report.opened += 1;
                }
            }
        }
        let prepared = prepare(snap, live.clone(), opts.clone())?;
        report.prepare_us = started.elapsed().as_micros() as u64;
        let paused = Instant::now();
        reply(&sock, &json!({"cmd": "release"})).map_err(|e| takeover_err("release", e))?;
        let rel = rd.line().map_err(|e| takeover_err("release reply", e))?;
        check_ok(&rel)?;
        let released: Released = serde_json::from_value(rel["released"].clone())
            .map_err(|e| takeover_err("release reply", e))?;
        if !rings.is_empty() {
            for (info, h) in rings {
                let head = released.heads.get(&info.name).copied();
                live.push(Arc::new(adopt(&info, h, head, &opts)?));
                report.adopted += 1;
            }
            prepared
                .shared
                .ports
                .store(Arc::new(PortTable::from_ports(live)));
        }
        report.macs = restore_macs(&prepared.shared.dp, &released.macs);
        let handle = launch(prepared)?;
        report.pause_us = paused.elapsed().as_micros() as u64;
        Ok((handle, listener, report))
    }
}

/// The port `info` over a handed fd (an AF_PACKET ring read on from `head`).
fn adopt(
    info: &crate::PortInfo,
    h: Handed,
    head: Option<usize>,
    opts: &SwitchOptions,
) -> Result<LivePort, DaemonError> {
    let fail = |e: io::Error| DaemonError::Attach {
        name: info.name.clone(),
        source: e,
    };
    let base: Arc<dyn Port> = match info.kind {
        PortKind::Tap => Arc::new(TapPort::adopt(h.fd, &info.name).map_err(fail)?),
        PortKind::Vxlan => Arc::new(
            crate::io::tunnel::TunnelPort::from_socket(std::net::UdpSocket::from(h.fd))
                .map_err(fail)?,
        ),
        PortKind::System => {
            let mut pos = h
                .ring
                .ok_or_else(|| fail(io::Error::other("AF_PACKET port without its ring")))?;
            pos.head = head.unwrap_or(pos.head);
            if !crate::io::same_netdev(&info.name, pos.ifindex) {
                tracing::warn!(port = %info.name, "handed socket is bound to a netdev since replaced; the monitor reattaches it");
            }
            Arc::new(PacketPort::adopt(h.fd, &info.name, pos).map_err(fail)?)
        }
        PortKind::VhostUser => {
            return Err(fail(io::Error::other(
                "a vhostuser port is not handed over (its guest reconnects)",
            )))
        }
    };
    let io = dress(info, base.clone(), opts)?;
    Ok(LivePort {
        no: info.no,
        info: info.clone(),
        io: Some(io),
        base: Some(base),
        counters: Default::default(),
        dead: std::sync::atomic::AtomicBool::new(false),
    })
}

fn restore_macs(dp: &crate::Datapath, macs: &[HandedMac]) -> usize {
    let snap = dp.snapshot();
    let now = now_ns();
    let mut n = 0;
    for m in macs {
        let (Some(net), Some(port)) = (snap.network(&m.network), snap.port_by_name(&m.port)) else {
            continue;
        };
        dp.restore_mac(net.local_vlan, m.mac, port.no, m.age_ns, now);
        n += 1;
    }
    n
}
