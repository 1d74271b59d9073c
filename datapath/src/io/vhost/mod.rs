//! `vhostuser` ports: a QEMU guest's virtio-net device served by the switch over a vhost-user
//! socket, as OVS-DPDK's `dpdkvhostuser` ports are. QEMU shares the guest's memory (a
//! `memory-backend-memfd,share=on`), and the switch reads the guest's TX virtqueue and writes
//! its RX virtqueue there directly: no tap, no copy through the kernel, no syscall per frame
//! (one eventfd read per wake-up, one eventfd write per batch's interrupt).
//!
//! ```text
//!   QEMU ──unix socket──> server thread (vhost-user-backend: features, memory table, rings)
//!   guest kick (TX) ──> ring thread ──> Link::wake ──> packet worker: Port::recv
//!                                                       take_tx: TX ring -> RxBatch
//!   other ports' frames ──> Port::send: put_rx: RxBatch -> RX ring, then one call (irq)
//! ```
//!
//! The guest connects with:
//! `-object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem
//!  -chardev socket,id=c0,path=<vhost_dir>/<port> -netdev vhost-user,id=n0,chardev=c0
//!  -device virtio-net-pci,netdev=n0,mac=<the port's MAC>`.
//! The socket stays for the port's life: a guest that quits (or reboots QEMU) connects again.

mod backend;
mod ring;
mod shim;

use std::io;
use std::os::fd::RawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vhost_user_backend::{VhostUserDaemon, VringT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

use super::{Port, PortCtx, RxBatch, RxStep, TxFrame, TxScratch, VNET_HDR_LEN};
use crate::{apply_edit, complete_checksum, gso_segment, EgressEdit, VirtioNetHdr};
use backend::{Layout, Link, NetBackend, RX_QUEUE, TX_QUEUE};
use ring::{put_rx, take_tx};

/// A `vhostuser` port: the socket it serves and the guest connected to it, if any.
pub struct VhostUserPort {
    name: String,
    path: PathBuf,
    link: Arc<Link>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl VhostUserPort {
    /// Makes the socket `path` (replacing a stale one, creating its directory) and serves it
    /// from a thread of its own until the port is dropped.
    pub fn open(name: &str, path: &Path) -> io::Result<VhostUserPort> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // A socket left by an earlier switch (killed) is replaced.
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let link = Arc::new(Link::new()?);
        let (l, label, p) = (link.clone(), format!("vhost-{name}"), path.to_path_buf());
        let server = std::thread::Builder::new()
            .name(label.clone())
            .spawn(move || serve(&label, &p, &listener, &l))?;
        Ok(VhostUserPort {
            name: name.to_string(),
            path: path.to_path_buf(),
            link,
            server: Mutex::new(Some(server)),
        })
    }

    /// The socket QEMU connects to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// True while a guest's rings are set up.
    pub fn connected(&self) -> bool {
        self.link.active.load().is_some()
    }
}

/// The server thread: one vhost-user daemon per connection, until the port closes.
fn serve(label: &str, path: &Path, listener: &UnixListener, link: &Arc<Link>) {
    while !link.stop.load(Ordering::SeqCst) {
        let qemu = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(port = label, "vhost-user: accept failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        if link.stop.load(Ordering::SeqCst) {
            break;
        }
        if let Err(e) = serve_one(label, path, qemu, link) {
            tracing::warn!(port = label, "vhost-user: {e}");
        }
        *link.shutdown.lock().unwrap_or_else(|p| p.into_inner()) = None;
        link.active.store(None);
        link.acked.store(0, Ordering::Release);
        tracing::info!(port = label, "vhost-user: frontend gone");
    }
}

/// Serves one frontend connection until it ends: a vhost-user-backend daemon behind the
/// [`shim`] relay, on a socket of its own next to the port's (removed once connected).
fn serve_one(label: &str, path: &Path, qemu: UnixStream, link: &Arc<Link>) -> io::Result<()> {
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let inner = path.with_file_name(format!(
        ".{}.{conn}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("vhost")
    ));
    let _ = std::fs::remove_file(&inner);
    let inner_listener = UnixListener::bind(&inner)?;
    let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
    *link.conn_mem.lock().unwrap_or_else(|p| p.into_inner()) = Some(mem.clone());
    let backend = NetBackend {
        link: link.clone(),
        conn,
    };
    let mut daemon = VhostUserDaemon::new(label.to_string(), backend, mem)
        .map_err(|e| io::Error::other(format!("cannot start a daemon: {e}")))?;
    let started = inner
        .to_str()
        .ok_or_else(|| io::Error::other("socket path is not UTF-8"))
        .and_then(|p| {
            daemon
                .start_client(p)
                .map_err(|e| io::Error::other(format!("backend did not connect: {e}")))
        });
    let accepted = started.and_then(|()| inner_listener.accept());
    let _ = std::fs::remove_file(&inner);
    let (be, _) = accepted?;
    shim::relay(label, qemu, be)?;
    *link.shutdown.lock().unwrap_or_else(|p| p.into_inner()) = daemon.shutdown_handle();
    // The port may have been closed between the accept and publishing the handle.
    if link.stop.load(Ordering::SeqCst) {
        daemon.request_shutdown();
    }
    tracing::info!(port = label, "vhost-user: frontend connected");
    let ended = daemon.wait();
    for h in daemon.get_epoll_handlers() {
        h.send_exit_event();
    }
    ended.map_err(|e| io::Error::other(format!("connection ended: {e}")))
}

/// Numbers connections (of every port) so that a new one's rings replace the last one's.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

impl Drop for VhostUserPort {
    fn drop(&mut self) {
        self.link.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self
            .link
            .shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            h.shutdown();
        }
        // A server blocked in accept() wakes up on a connection of our own.
        let _ = UnixStream::connect(&self.path);
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = server {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Port for VhostUserPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn raw_fd(&self) -> RawFd {
        self.link.wake.raw()
    }

    fn recv(&self, ctx: &PortCtx<'_>, batch: &mut RxBatch) -> io::Result<()> {
        self.link.wake.drain();
        let Some(active) = self.link.active.load_full() else {
            return Ok(());
        };
        let mem = active.mem.memory();
        let layout = self.link.layout();
        let mut vring = active.vrings[TX_QUEUE].get_mut();
        if !vring.is_enabled() {
            return Ok(());
        }
        let (mut returned, mut emptied) = (0usize, false);
        let q = vring.get_queue_mut();
        let (hdr_len, keep) = (layout.hdr_len, layout.from_guest_offloads);
        batch.fill(|slot| match take_tx(q, &mem, hdr_len, keep, slot) {
            None => {
                emptied = true;
                RxStep::Empty
            }
            Some(Ok(len)) => {
                returned += 1;
                RxStep::Frame(len)
            }
            Some(Err(())) => {
                returned += 1;
                ctx.counters.rx_errors.fetch_add(1, Ordering::Relaxed);
                RxStep::Skip
            }
        });
        if returned > 0 && vring.needs_notification().unwrap_or(true) {
            let _ = vring.signal_used_queue();
        }
        if !emptied {
            // The batch filled up with frames still queued; no kick will come for them.
            self.link.wake.notify();
        }
        Ok(())
    }

    fn send(&self, ctx: &PortCtx<'_>, batch: &RxBatch, frames: &[TxFrame], s: &mut TxScratch) {
        let c = ctx.counters;
        let Some(active) = self.link.active.load_full() else {
            c.tx_dropped
                .fetch_add(frames.len() as u64, Ordering::Relaxed);
            return;
        };
        let mem = active.mem.memory();
        let layout = self.link.layout();
        let mut vring = active.vrings[RX_QUEUE].get_mut();
        if !vring.is_enabled() {
            c.tx_dropped
                .fetch_add(frames.len() as u64, Ordering::Relaxed);
            return;
        }
        let (mut sent, mut bytes, mut dropped) = (0u64, 0u64, 0u64);
        let q = vring.get_queue_mut();
        for t in frames {
            let (vnet, frame) = batch.frame(t.index);
            let mut put = |h: &[u8; VNET_HDR_LEN], f: &[u8]| match put_rx(
                q,
                &mem,
                layout.hdr_len,
                layout.mergeable,
                h,
                f,
            ) {
                Ok(()) => {
                    sent += 1;
                    bytes += f.len() as u64;
                }
                Err(_) => dropped += 1,
            };
            if deliver(&layout, vnet, frame, t.edit, s, &mut put).is_err() {
                dropped += 1;
            }
        }
        if sent > 0 && vring.needs_notification().unwrap_or(true) {
            let _ = vring.signal_used_queue();
        }
        c.tx_frames.fetch_add(sent, Ordering::Relaxed);
        c.tx_bytes.fetch_add(bytes, Ordering::Relaxed);
        c.tx_dropped.fetch_add(dropped, Ordering::Relaxed);
    }

    fn still_usable(&self) -> bool {
        // The fd is the port's own eventfd, which has no error to report.
        true
    }
}

/// Hands `put` the frame (or its segments) with the header the guest gets, as the guest can
/// take it: edited for this port; segmented and checksummed here for the offloads the guest
/// did not negotiate, passed on (header and all) for those it did. Unedited frames that need
/// nothing done pass without a copy.
fn deliver(
    layout: &Layout,
    vnet: &[u8],
    frame: &[u8],
    edit: EgressEdit,
    s: &mut TxScratch,
    put: &mut impl FnMut(&[u8; VNET_HDR_LEN], &[u8]),
) -> Result<(), ()> {
    let mut hdr = VirtioNetHdr::parse(vnet, VNET_HDR_LEN).unwrap_or_default();
    let gso_ok = !hdr.is_gso() || guest_takes_gso(layout, hdr.gso_type);
    let csum_ok = !hdr.needs_csum() || layout.guest_csum;
    if edit == EgressEdit::Keep && gso_ok && csum_ok {
        put(&guest_hdr(layout, &hdr), frame);
        return Ok(());
    }
    s.edited.clear();
    apply_edit(edit, frame, Some(&mut hdr), &mut s.edited).map_err(|_| ())?;
    if hdr.is_gso() && !gso_ok {
        s.segs.clear();
        gso_segment(&s.edited, &hdr, &mut s.segs).map_err(|_| ())?;
        for seg in s.segs.iter() {
            put(&[0; VNET_HDR_LEN], seg);
        }
        return Ok(());
    }
    if hdr.needs_csum() && !csum_ok {
        complete_checksum(&mut s.edited, &mut hdr).map_err(|_| ())?;
    }
    put(&guest_hdr(layout, &hdr), &s.edited);
    Ok(())
}

/// Whether the guest negotiated receiving this GSO type.
fn guest_takes_gso(layout: &Layout, gso_type: u8) -> bool {
    use crate::offload::{
        VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    };
    let base = match gso_type & !VIRTIO_NET_HDR_GSO_ECN {
        VIRTIO_NET_HDR_GSO_TCPV4 => layout.guest_tso4,
        VIRTIO_NET_HDR_GSO_TCPV6 => layout.guest_tso6,
        _ => false,
    };
    base && (gso_type & VIRTIO_NET_HDR_GSO_ECN == 0 || layout.guest_ecn) && layout.guest_csum
}

/// The header the guest gets: the frame's, when the guest takes checksum offloads (then it
/// may say NEEDS_CSUM, DATA_VALID or GSO); all zero otherwise, as the spec wants.
fn guest_hdr(layout: &Layout, hdr: &VirtioNetHdr) -> [u8; VNET_HDR_LEN] {
    if layout.guest_csum {
        crate::io::hdr_bytes(hdr)
    } else {
        [0; VNET_HDR_LEN]
    }
}
