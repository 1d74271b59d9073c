//! The VXLAN endpoint's I/O shell: one UDP socket bound to the host's tunnel IP and port. The
//! kernel builds the outer IP/UDP headers; this shell only moves `[VXLAN hdr | inner frame]`
//! payloads, using the sans-IO [`crate::tunnel`] functions for everything else.
//!
//! ```text
//!   peer --UDP 4789--> recv_from --decap(VNI -> local VLAN tag), learn MAC -> VTEP--> pipeline
//!   pipeline --(PushTag(local VLAN))--> segment/checksum offloads --encap(VNI)--> send_to peer(s)
//! ```
//!
//! Frames from taps may be GSO or CHECKSUM_PARTIAL: they are segmented (to the guest's MSS) and
//! checksummed before encapsulation, since the far end's switch receives plain datagrams. The
//! tenant MTU must leave room for the 50 bytes of VXLAN-over-IPv4 overhead (1450 on a 1500
//! wire); larger datagrams are fragmented by the kernel rather than lost.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use crate::config::tunnel_port_name;
use crate::io::{sys, IoCounters, Port, PortCtx, RxBatch, TxFrame, TxScratch, VNET_HDR_LEN};
use crate::tunnel::{self, FdbEntry, TunnelDest, TunnelDrop, TunnelFdb, VXLAN_HDR_LEN};
use crate::{gso_segment, EgressEdit, MacAddr, PortNo, Segments, Snapshot, VirtioNetHdr};

/// Learned (VNI, MAC) -> VTEP entries kept at most.
pub(crate) const FDB_CAPACITY: usize = 65536;

/// Receive/send buffer of the tunnel socket.
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;

/// Datagrams queued before a flush (one sendmmsg per batch).
pub(crate) const TX_BATCH: usize = 64;

/// Per-thread encapsulation buffers and the tx queue: datagrams back to back in one arena,
/// sent with one sendmmsg when the worker flushes (or the queue is full). No allocation per
/// datagram once warm.
#[derive(Default)]
pub(crate) struct TunnelTx {
    segs: Segments,
    arena: Vec<u8>,
    queue: Vec<(SocketAddr, Range<usize>)>,
    port: Option<PortNo>,
}

impl TunnelTx {
    /// Empty buffers.
    pub fn new() -> TunnelTx {
        TunnelTx::default()
    }

    /// The tunnel port with datagrams queued, if any.
    #[cfg(test)]
    fn pending_port(&self) -> Option<PortNo> {
        if self.queue.is_empty() {
            None
        } else {
            self.port
        }
    }

    /// Forgets queued datagrams (their port went away).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.arena.clear();
    }

    /// Queues `[VXLAN hdr(vni) | inner]` once per destination.
    fn push(&mut self, vni: u32, inner: &[u8], dest: TunnelDest, peers: &[IpAddr], port: u16) {
        let start = self.arena.len();
        self.arena.extend_from_slice(&tunnel::vxlan_header(vni));
        self.arena.extend_from_slice(inner);
        let r = start..self.arena.len();
        match dest {
            TunnelDest::Unicast(ip) => self.queue.push((SocketAddr::new(ip, port), r)),
            TunnelDest::Flood => {
                for &ip in peers {
                    self.queue.push((SocketAddr::new(ip, port), r.clone()));
                }
            }
        }
    }
}

/// The VXLAN endpoint: socket, learned remote VTEPs, drop counters.
pub struct TunnelPort {
    name: String,
    sock: UdpSocket,
    local: SocketAddr,
    fdb: RwLock<TunnelFdb>,
    drops: [AtomicU64; TunnelDrop::COUNT],
    last_age: AtomicU64,
    /// recvmmsg slots; only the worker polling this port drains it, so uncontended.
    rx: Mutex<RecvBufs>,
}

/// Receive buffers for one recvmmsg, and the decapsulated frame.
#[derive(Default)]
struct RecvBufs {
    buf: Vec<u8>,
    got: Vec<(usize, Option<SocketAddr>, bool)>,
    inner: Vec<u8>,
}

/// Datagrams read per recvmmsg.
const RX_SLOTS: usize = 32;
/// Bytes per receive slot: the largest UDP payload.
const RX_SLOT: usize = 65536;

impl TunnelPort {
    /// Binds the endpoint's socket to `local_ip:udp_port` (non-blocking).
    pub fn open(local_ip: IpAddr, udp_port: u16) -> io::Result<TunnelPort> {
        let local = SocketAddr::new(local_ip, udp_port);
        let sock = UdpSocket::bind(local)?;
        sys::set_socket_buffers(sock.as_raw_fd(), SOCKET_BUFFER);
        TunnelPort::from_socket(sock)
    }

    /// The endpoint over an already bound UDP socket: one a previous switch process handed
    /// over on restart (datagrams queued on it are read here, none is lost to a re-bind).
    pub fn from_socket(sock: UdpSocket) -> io::Result<TunnelPort> {
        let local = sock.local_addr()?;
        let udp_port = local.port();
        sock.set_nonblocking(true)?;
        Ok(TunnelPort {
            name: tunnel_port_name(udp_port),
            sock,
            local,
            fdb: RwLock::new(TunnelFdb::new(FDB_CAPACITY)),
            drops: Default::default(),
            last_age: AtomicU64::new(0),
            rx: Mutex::new(RecvBufs::default()),
        })
    }

    /// The endpoint's switch port name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Clears a pending socket error (ICMP port unreachable from a peer that is down).
    pub fn take_error(&self) -> Option<io::Error> {
        self.sock.take_error().ok().flatten()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The socket fd (for epoll).
    pub fn raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Datagrams dropped, per reason (only reasons with a count).
    pub fn drop_counts(&self) -> Vec<(TunnelDrop, u64)> {
        TunnelDrop::ALL
            .iter()
            .map(|&r| (r, self.drops[r as usize].load(Ordering::Relaxed)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// Fresh learned (VNI, MAC) -> VTEP entries.
    pub fn fdb(&self, now: u64, aging_ns: u64) -> Vec<FdbEntry> {
        self.fdb
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .entries(now, aging_ns)
    }

    /// Reads up to `max` datagrams and hands each accepted one to `f(vnet, frame)` as the
    /// pipeline expects it from the tunnel port (inner frame tagged with its local VLAN, no
    /// offloads). Refused datagrams are counted per reason and as rx errors.
    pub fn drain(
        &self,
        max: usize,
        snap: &Snapshot,
        now: u64,
        counters: &IoCounters,
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> usize {
        let Some(tn) = snap.tunnel() else { return 0 };
        self.maybe_age(snap, now);
        let vnet = [0u8; VNET_HDR_LEN];
        let mut rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        let rx = &mut *rx;
        if rx.buf.is_empty() {
            rx.buf = vec![0u8; RX_SLOTS * RX_SLOT];
        }
        let mut n = 0;
        while n < max {
            rx.got.clear();
            let want = (max - n).min(RX_SLOTS);
            let got = match sys::recv_from_batch(
                self.sock.as_raw_fd(),
                &mut rx.buf[..want * RX_SLOT],
                RX_SLOT,
                &mut rx.got,
            ) {
                Ok(0) => break,
                Ok(g) => g,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            n += got;
            for (i, &(len, from, truncated)) in rx.got.iter().enumerate() {
                let datagram = &rx.buf[i * RX_SLOT..i * RX_SLOT + len.min(RX_SLOT)];
                let res = match (from, truncated) {
                    (_, true) => Err(TunnelDrop::Truncated),
                    (None, _) => Err(TunnelDrop::UnknownPeer),
                    (Some(from), false) => {
                        let remote = canonical(from.ip());
                        tunnel::decap(
                            datagram,
                            remote,
                            |ip| tn.is_peer(ip),
                            |vni| tn.vlan_of_vni(vni),
                            &mut rx.inner,
                        )
                        .map(|d| (d, remote))
                    }
                };
                match res {
                    Ok((d, remote)) => {
                        self.learn(d.vni, d.inner_src, remote, now);
                        f(&vnet, &rx.inner);
                    }
                    Err(r) => {
                        self.drops[r as usize].fetch_add(1, Ordering::Relaxed);
                        counters.rx_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if got < want {
                break;
            }
        }
        n
    }

    fn learn(&self, vni: u32, mac: MacAddr, remote: IpAddr, now: u64) {
        {
            let fdb = self.fdb.read().unwrap_or_else(|p| p.into_inner());
            if fdb.is_current(vni, mac, remote)
                && fdb.lookup(vni, mac, now, 1_000_000_000).is_some()
            {
                // Seen behind the same VTEP within the last second: nothing to write.
                return;
            }
        }
        self.fdb
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .learn(vni, mac, remote, now);
    }

    /// About once a second: forget aged entries and those of removed peers/networks.
    fn maybe_age(&self, snap: &Snapshot, now: u64) {
        let last = self.last_age.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1_000_000_000 {
            return;
        }
        self.last_age.store(now, Ordering::Relaxed);
        let Some(tn) = snap.tunnel() else { return };
        self.fdb.write().unwrap_or_else(|p| p.into_inner()).age(
            now,
            snap.mac_aging_ns(),
            |ip| tn.is_peer(ip),
            |vni| tn.vlan_of_vni(vni).is_some(),
        );
    }

    /// Encapsulates one pipeline output (the frame as it entered, its vnet header, and the
    /// edit the pipeline chose for this port: `PushTag(local VLAN)`) and sends it to the VTEP
    /// the destination MAC was learned behind, or to every peer.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn transmit(
        &self,
        counters: &IoCounters,
        snap: &Snapshot,
        now: u64,
        vnet: &[u8],
        frame: &[u8],
        edit: EgressEdit,
        tx: &mut TunnelTx,
    ) {
        let dropped = |n: u64| {
            counters.tx_dropped.fetch_add(n, Ordering::Relaxed);
        };
        let Some(tn) = snap.tunnel() else {
            return dropped(1);
        };
        let vlan = match edit {
            EgressEdit::PushTag(v) | EgressEdit::RewriteVid(v) => v,
            EgressEdit::Keep | EgressEdit::StripTag => return dropped(1),
        };
        let Some(vni) = tn.vni_of_vlan(vlan) else {
            return dropped(1);
        };
        if frame.len() < 14 {
            return dropped(1);
        }
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        let dest = {
            let fdb = self.fdb.read().unwrap_or_else(|p| p.into_inner());
            fdb.dest(vni, MacAddr(dst), now, snap.mac_aging_ns())
        };
        let hdr = VirtioNetHdr::parse(vnet, VNET_HDR_LEN).unwrap_or_default();
        if tx.port != Some(tn.port) {
            self.flush(counters, tx);
            tx.port = Some(tn.port);
        }
        if !hdr.is_gso() && !hdr.needs_csum() {
            tx.push(vni, frame, dest, &tn.peers, tn.udp_port);
        } else {
            // The far end gets plain datagrams: finish what the guest left to offloads.
            let mut segs = std::mem::take(&mut tx.segs);
            segs.clear();
            if gso_segment(frame, &hdr, &mut segs).is_err() {
                tx.segs = segs;
                return dropped(1);
            }
            for seg in segs.iter() {
                tx.push(vni, seg, dest, &tn.peers, tn.udp_port);
            }
            tx.segs = segs;
        }
        if tx.queue.len() >= TX_BATCH {
            self.flush(counters, tx);
        }
    }

    /// Sends everything queued in `tx` (one sendmmsg per batch).
    pub(crate) fn flush(&self, counters: &IoCounters, tx: &mut TunnelTx) {
        if tx.queue.is_empty() {
            return;
        }
        let (sent, bytes) = sys::send_to_batch(self.sock.as_raw_fd(), &tx.arena, &tx.queue);
        counters.tx_frames.fetch_add(sent as u64, Ordering::Relaxed);
        counters.tx_bytes.fetch_add(
            bytes.saturating_sub(sent * VXLAN_HDR_LEN) as u64,
            Ordering::Relaxed,
        );
        counters
            .tx_dropped
            .fetch_add((tx.queue.len() - sent) as u64, Ordering::Relaxed);
        tx.clear();
    }
}

impl Port for TunnelPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn recv(&self, ctx: &PortCtx<'_>, batch: &mut RxBatch) -> io::Result<()> {
        let room = batch.room();
        self.drain(room, ctx.snap, ctx.now_ns, ctx.counters, |vnet, frame| {
            if !batch.push(vnet, frame) {
                ctx.counters.rx_errors.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(())
    }

    fn send(&self, ctx: &PortCtx<'_>, batch: &RxBatch, frames: &[TxFrame], s: &mut TxScratch) {
        for t in frames {
            let (vnet, frame) = batch.frame(t.index);
            self.transmit(
                ctx.counters,
                ctx.snap,
                ctx.now_ns,
                vnet,
                frame,
                t.edit,
                &mut s.tunnel,
            );
        }
        self.flush(ctx.counters, &mut s.tunnel);
    }

    fn still_usable(&self) -> bool {
        // A UDP socket's error (an ICMP unreachable from a peer) is transient.
        let _ = self.take_error();
        true
    }

    fn drop_counts(&self) -> Vec<(&'static str, u64)> {
        TunnelPort::drop_counts(self)
            .into_iter()
            .map(|(r, n)| (r.name(), n))
            .collect()
    }
}

/// IPv4-mapped IPv6 sources (dual-stack sockets) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::FrameBuilder;
    use crate::SwitchConfig;

    fn snap(local: &str, peer: &str, pad: bool) -> Snapshot {
        let pad = if pad {
            "[[network]]\nname = \"pad\"\ntype = \"local\"\n"
        } else {
            ""
        };
        let cfg = format!(
            "[tunnel]\nlocal_ip = \"{local}\"\nudp_port = 47891\nremote_ips = [\"{peer}\"]\n\
             {pad}[[network]]\nname = \"vx\"\ntype = \"vxlan\"\nsegmentation_id = 4242\n"
        );
        Snapshot::compile(&SwitchConfig::from_toml(&cfg, "t").unwrap(), None).unwrap()
    }

    /// Two endpoints on loopback addresses: sendmmsg on one side, recvmmsg on the other.
    #[test]
    fn datagrams_cross_loopback_in_batches() {
        let (sa, sb) = (
            snap("127.0.0.21", "127.0.0.22", false),
            snap("127.0.0.22", "127.0.0.21", true),
        );
        let a = TunnelPort::open("127.0.0.21".parse().unwrap(), 47891).unwrap();
        let b = TunnelPort::open("127.0.0.22".parse().unwrap(), 47891).unwrap();
        assert_eq!(a.name(), "vxlan-47891");
        let (ca, cb) = (IoCounters::default(), IoCounters::default());
        let vlan_a = sa.network("vx").unwrap().local_vlan;
        let vlan_b = sb.network("vx").unwrap().local_vlan;
        assert_ne!(vlan_a, vlan_b);
        let frames: Vec<Vec<u8>> = (0..40u8)
            .map(|i| {
                FrameBuilder::udp4(
                    MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]),
                    MacAddr::BROADCAST,
                    "10.0.0.1".parse().unwrap(),
                    "10.0.0.255".parse().unwrap(),
                    1000 + u16::from(i),
                    2,
                )
                .payload(100)
                .build()
            })
            .collect();
        let mut tx = TunnelTx::new();
        let vnet = [0u8; VNET_HDR_LEN];
        for f in &frames {
            a.transmit(&ca, &sa, 1, &vnet, f, EgressEdit::PushTag(vlan_a), &mut tx);
        }
        assert_eq!(tx.pending_port(), Some(sa.tunnel().unwrap().port));
        a.flush(&ca, &mut tx);
        assert_eq!(tx.pending_port(), None);
        assert_eq!(ca.tx_frames.load(Ordering::Relaxed), 40);
        // Not a vxlan network's VLAN: dropped, nothing queued.
        a.transmit(
            &ca,
            &sa,
            1,
            &vnet,
            &frames[0],
            EgressEdit::PushTag(4000),
            &mut tx,
        );
        assert_eq!(ca.tx_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(tx.pending_port(), None);

        let mut got = Vec::new();
        for _ in 0..100 {
            b.drain(64, &sb, 2, &cb, |_, f| got.push(f.to_vec()));
            if got.len() == 40 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got.len(), 40);
        for (g, f) in got.iter().zip(&frames) {
            assert_eq!(&g[12..16], &[0x81, 0x00, 0x00, vlan_b as u8]);
            assert_eq!(&g[..12], &f[..12]);
            assert_eq!(&g[16..], &f[12..]);
        }
        // B learned the sender behind A's address.
        let fdb = b.fdb(2, u64::MAX);
        assert_eq!(fdb.len(), 1);
        assert_eq!(fdb[0].remote.to_string(), "127.0.0.21");
        assert_eq!(fdb[0].vni, 4242);
        assert!(b.drop_counts().is_empty());
    }
}
