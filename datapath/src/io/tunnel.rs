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
//! checksummed before encapsulation, since the far end receives plain datagrams; a GSO frame's
//! segments leave as UDP_SEGMENT runs (one skb per run through the host's stack), and on
//! receipt consecutive TCP segments of one flow are merged back ([`crate::gro`]). The
//! tenant MTU must leave room for the 50 bytes of VXLAN-over-IPv4 overhead (1450 on a 1500
//! wire); larger datagrams are fragmented by the kernel rather than lost.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use crate::config::tunnel_port_name;
use crate::gro::TcpGro;
use crate::io::sys_udpgro::{self, GroMsg};
use crate::io::sys_udpgso::{self, GsoDgram};
use crate::io::{sys, IoCounters, Port, PortCtx, RxBatch, TxFrame, TxScratch, VNET_HDR_LEN};
use crate::offload::segment_behind;
use crate::tunnel::{self, FdbEntry, TunnelDest, TunnelDrop, TunnelFdb, VXLAN_HDR_LEN};
use crate::{EgressEdit, MacAddr, PortNo, Snapshot, VirtioNetHdr};

/// Learned (VNI, MAC) -> VTEP entries kept at most.
pub(crate) const FDB_CAPACITY: usize = 65536;

/// Receive/send buffer of the tunnel socket.
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;

/// Datagrams queued before a flush (one sendmmsg per batch).
pub(crate) const TX_BATCH: usize = 64;

/// Per-thread encapsulation buffers and the tx queue: datagrams back to back in one arena,
/// sent with one sendmmsg when the worker flushes (or the queue is full). A GSO frame's
/// segments are queued as runs of equal-sized datagrams, one message each with UDP_SEGMENT
/// (see [`sys_udpgso`]). No allocation per datagram once warm.
#[derive(Default)]
pub(crate) struct TunnelTx {
    /// Where the segments of the frame being queued lie in the arena (reused).
    ranges: Vec<Range<usize>>,
    arena: Vec<u8>,
    queue: Vec<GsoDgram>,
    /// Datagrams the queue holds (a UDP_SEGMENT message counts as its segments).
    dgrams: usize,
    port: Option<PortNo>,
    /// Messages refused by the kernel, resent as plain datagrams (reused).
    retry: Vec<GsoDgram>,
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
        self.dgrams = 0;
    }

    /// Queues `[VXLAN hdr(vni) | inner]` once per destination.
    fn push(&mut self, vni: u32, inner: &[u8], dest: TunnelDest, peers: &[IpAddr], port: u16) {
        let start = self.arena.len();
        self.arena.extend_from_slice(&tunnel::vxlan_header(vni));
        self.arena.extend_from_slice(inner);
        self.queue_run(start..self.arena.len(), 0, dest, peers, port);
    }

    /// Queues the arena's `range` (one datagram, or with `seg` a run of datagrams of `seg`
    /// bytes) once per destination.
    fn queue_run(
        &mut self,
        range: Range<usize>,
        seg: u16,
        dest: TunnelDest,
        peers: &[IpAddr],
        port: u16,
    ) {
        let n = dgram_count(range.len(), seg);
        let mut add = |ip| {
            self.queue.push(GsoDgram {
                to: SocketAddr::new(ip, port),
                range: range.clone(),
                seg,
            });
            self.dgrams += n;
        };
        match dest {
            TunnelDest::Unicast(ip) => add(ip),
            TunnelDest::Flood => peers.iter().for_each(|&ip| add(ip)),
        }
    }

    /// Queues `segs` (equal-sized but for the last, as `gso_segment` cuts them), each copied
    /// behind a VXLAN header, as runs for UDP_SEGMENT (see [`queue_runs`](Self::queue_runs)).
    #[cfg(test)]
    fn push_runs<'s>(
        &mut self,
        segs: impl IntoIterator<Item = &'s [u8]>,
        vni: u32,
        dest: TunnelDest,
        peers: &[IpAddr],
        port: u16,
    ) {
        let mut ranges = std::mem::take(&mut self.ranges);
        ranges.clear();
        for seg in segs {
            self.arena.extend_from_slice(&tunnel::vxlan_header(vni));
            let start = self.arena.len();
            self.arena.extend_from_slice(seg);
            ranges.push(start..self.arena.len());
        }
        self.queue_runs(&ranges, dest, peers, port);
        self.ranges = ranges;
    }

    /// Queues the segments at `ranges` of the arena, each right behind its VXLAN header and
    /// right after the previous one (as [`segment_behind`] writes them), as runs for
    /// UDP_SEGMENT: each run at most [`sys_udpgso::MAX_SEGMENTS`] datagrams and
    /// [`sys_udpgso::MAX_PAYLOAD`] bytes, ending early at a segment of another size.
    fn queue_runs(
        &mut self,
        ranges: &[Range<usize>],
        dest: TunnelDest,
        peers: &[IpAddr],
        port: u16,
    ) {
        let dgram = |r: &Range<usize>| r.start - VXLAN_HDR_LEN..r.end;
        let mut it = ranges.iter().map(dgram).peekable();
        while let Some(first) = it.next() {
            let size = first.len();
            let (start, mut end) = (first.start, first.end);
            let mut count = 1;
            while let Some(next) = it.peek() {
                let len = next.len();
                if len > size
                    || next.start != end
                    || count == sys_udpgso::MAX_SEGMENTS
                    || next.end - start > sys_udpgso::MAX_PAYLOAD
                {
                    break;
                }
                end = next.end;
                count += 1;
                it.next();
                if len < size {
                    break; // a shorter segment can only be a run's last
                }
            }
            let seg = if count > 1 {
                u16::try_from(size).unwrap_or(0)
            } else {
                0
            };
            self.queue_run(start..end, seg, dest, peers, port);
        }
    }
}

/// Datagrams a message of `len` bytes becomes when cut into `seg`-byte segments.
fn dgram_count(len: usize, seg: u16) -> usize {
    if seg == 0 {
        1
    } else {
        len.div_ceil(usize::from(seg)).max(1)
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
    /// Send GSO frames' segments as UDP_SEGMENT runs; cleared for good the first time the
    /// kernel refuses one (no checksum offload on the route's device, or a segment above the
    /// path MTU), after which segments go one datagram per message as before.
    udp_gso: AtomicBool,
    /// Messages read from the socket are not all handed on yet (see [`Port::rx_pending`]).
    pending: AtomicBool,
}

/// Receive buffers for one recvmmsg, the decapsulated frame, and the TCP segments being
/// merged back into one GSO frame.
#[derive(Default)]
struct RecvBufs {
    buf: Vec<u8>,
    /// What the last recvmmsg read, one message per slot of `buf`.
    msgs: Vec<GroMsg>,
    /// Next message of `msgs` to hand on, and the byte offset in it: where a full batch
    /// stopped.
    at: (usize, usize),
    /// The last recvmmsg found the queue empty: do not ask again until `msgs` is handed on.
    drained: bool,
    inner: Vec<u8>,
    gro: TcpGro,
}

/// Messages read per recvmmsg.
const RX_SLOTS: usize = 32;
/// Bytes per receive slot: the largest UDP payload (a UDP_GRO message is at most that too).
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
        // Runs of datagrams as one message each; without it (kernel < 5.0) one per message.
        sys_udpgro::enable(sock.as_raw_fd());
        Ok(TunnelPort {
            name: tunnel_port_name(udp_port),
            sock,
            local,
            fdb: RwLock::new(TunnelFdb::new(FDB_CAPACITY)),
            drops: Default::default(),
            last_age: AtomicU64::new(0),
            rx: Mutex::new(RecvBufs::default()),
            udp_gso: AtomicBool::new(true),
            pending: AtomicBool::new(false),
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

    /// Reads datagrams and hands each accepted one to `f(vnet, frame)` as the pipeline
    /// expects it from the tunnel port (inner frame tagged with its local VLAN), calling `f`
    /// at most `max` times. Consecutive TCP segments of one flow (a GSO frame the far switch
    /// cut up) are merged back into one GSO frame with its vnet header ([`TcpGro`]). With
    /// UDP_GRO a message holds a run of datagrams; what `max` leaves of the messages read is
    /// kept for the next call ([`Port::rx_pending`]). Refused datagrams are counted per
    /// reason and as rx errors. Returns the calls made.
    pub fn drain(
        &self,
        max: usize,
        snap: &Snapshot,
        now: u64,
        counters: &IoCounters,
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> usize {
        let Some(tn) = snap.tunnel() else {
            // No tunnel any more: nothing can be handed on, so nothing is pending either.
            self.pending.store(false, Ordering::Relaxed);
            return 0;
        };
        self.maybe_age(snap, now);
        let vnet = [0u8; VNET_HDR_LEN];
        let mut rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        let rx = &mut *rx;
        if rx.buf.is_empty() {
            rx.buf = vec![0u8; RX_SLOTS * RX_SLOT];
        }
        let mut calls = 0;
        // The segments of a run share their source: learn it once, not per datagram.
        let mut learned = None;
        let refuse = |r: TunnelDrop| {
            self.drops[r as usize].fetch_add(1, Ordering::Relaxed);
            counters.rx_errors.fetch_add(1, Ordering::Relaxed);
        };
        'read: loop {
            if rx.at.0 >= rx.msgs.len() {
                if rx.drained {
                    break;
                }
                rx.msgs.clear();
                rx.at = (0, 0);
                match sys_udpgro::recv_batch(self.raw_fd(), &mut rx.buf, RX_SLOT, &mut rx.msgs) {
                    Ok(0) => break,
                    // Fewer messages than slots: the queue is empty for now.
                    Ok(g) => rx.drained = g < RX_SLOTS,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            while let Some(&m) = rx.msgs.get(rx.at.0) {
                let slot = rx.at.0 * RX_SLOT;
                let len = m.len.min(RX_SLOT);
                let remote = match (m.from, m.truncated) {
                    (_, true) => Err(TunnelDrop::Truncated),
                    (None, _) => Err(TunnelDrop::UnknownPeer),
                    (Some(from), false) => Ok(canonical(from.ip())),
                };
                let remote = match remote {
                    Ok(r) => r,
                    Err(r) => {
                        refuse(r);
                        rx.at = (rx.at.0 + 1, 0);
                        continue;
                    }
                };
                let seg = if m.seg == 0 { len } else { m.seg };
                loop {
                    // Room for a pending merged frame and this datagram, both handed on.
                    if calls + 2 > max {
                        break 'read;
                    }
                    let at = rx.at.1;
                    let end = (at + seg.max(1)).min(len);
                    rx.at.1 = end.max(at + 1);
                    let datagram = &rx.buf[slot + at..slot + end];
                    let res = tunnel::accept(
                        datagram,
                        remote,
                        |ip| tn.is_peer(ip),
                        |vni| tn.vlan_of_vni(vni),
                    );
                    match res {
                        Ok((d, inner)) => {
                            let who = Some((d.vni, d.inner_src, remote));
                            if learned != who {
                                self.learn(d.vni, d.inner_src, remote, now);
                                learned = who;
                            }
                            // Into the GRO buffer straight from the datagram; tagged there.
                            let tag = Some(d.local_vlan);
                            if !rx.gro.offer_tagged(inner, tag) {
                                if let Some((h, merged)) = rx.gro.finish() {
                                    f(&crate::io::hdr_bytes(&h), merged);
                                    calls += 1;
                                }
                                if !rx.gro.offer_tagged(inner, tag) {
                                    tunnel::push_tagged(inner, d.local_vlan, &mut rx.inner);
                                    f(&vnet, &rx.inner);
                                    calls += 1;
                                }
                            }
                        }
                        Err(r) => refuse(r),
                    }
                    if rx.at.1 >= len {
                        break;
                    }
                }
                rx.at = (rx.at.0 + 1, 0);
            }
        }
        if let Some((h, merged)) = rx.gro.finish() {
            f(&crate::io::hdr_bytes(&h), merged);
            calls += 1;
        }
        let pending = rx.at.0 < rx.msgs.len();
        if !pending {
            // Everything read is handed on: the next call asks the kernel again.
            rx.drained = false;
        }
        self.pending.store(pending, Ordering::Relaxed);
        calls
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
            // The far end gets plain datagrams: finish what the guest left to offloads,
            // writing each segment straight behind its VXLAN header in the arena.
            let mut ranges = std::mem::take(&mut tx.ranges);
            ranges.clear();
            let prefix = tunnel::vxlan_header(vni);
            if segment_behind(frame, &hdr, &prefix, &mut tx.arena, &mut ranges).is_err() {
                tx.ranges = ranges;
                return dropped(1);
            }
            if self.udp_gso.load(Ordering::Relaxed) {
                tx.queue_runs(&ranges, dest, &tn.peers, tn.udp_port);
            } else {
                for r in &ranges {
                    tx.queue_run(
                        r.start - VXLAN_HDR_LEN..r.end,
                        0,
                        dest,
                        &tn.peers,
                        tn.udp_port,
                    );
                }
            }
            tx.ranges = ranges;
        }
        if tx.queue.len() >= TX_BATCH {
            self.flush(counters, tx);
        }
    }

    /// Sends everything queued in `tx` (one sendmmsg per batch).
    /// Counters count datagrams on the wire (a UDP_SEGMENT run as its segments) and inner
    /// bytes. A run the kernel refuses turns UDP_SEGMENT off for this endpoint and is resent
    /// as plain datagrams.
    pub(crate) fn flush(&self, counters: &IoCounters, tx: &mut TunnelTx) {
        if tx.queue.is_empty() {
            return;
        }
        let fd = self.sock.as_raw_fd();
        let r = sys_udpgso::send_segmented(fd, &tx.arena, &tx.queue);
        let (mut sent, mut bytes) = (0usize, r.bytes);
        let mut refused = r.refused.iter().peekable();
        for (i, d) in tx.queue.iter().enumerate().take(r.sent + r.refused.len()) {
            if refused.next_if_eq(&&i).is_some() {
                if d.seg != 0 {
                    split_run(d, &mut tx.retry);
                }
            } else {
                sent += dgram_count(d.range.len(), d.seg);
            }
        }
        if !tx.retry.is_empty() {
            if self.udp_gso.swap(false, Ordering::Relaxed) {
                tracing::warn!(
                    port = %self.name,
                    "UDP_SEGMENT refused by the kernel; sending VXLAN segments one by one"
                );
            }
            let again = sys_udpgso::send_segmented(fd, &tx.arena, &tx.retry);
            sent += again.sent;
            bytes += again.bytes;
            tx.retry.clear();
        }
        counters.tx_frames.fetch_add(sent as u64, Ordering::Relaxed);
        counters.tx_bytes.fetch_add(
            bytes.saturating_sub(sent * VXLAN_HDR_LEN) as u64,
            Ordering::Relaxed,
        );
        counters
            .tx_dropped
            .fetch_add(tx.dgrams.saturating_sub(sent) as u64, Ordering::Relaxed);
        tx.clear();
    }

    /// Whether GSO frames still go out as UDP_SEGMENT runs (for tests and `weft ctl`).
    pub fn udp_gso(&self) -> bool {
        self.udp_gso.load(Ordering::Relaxed)
    }

    /// Sends GSO frames' segments one datagram per message (what a kernel without
    /// UDP_SEGMENT forces; tests compare both ways).
    pub fn disable_udp_gso(&self) {
        self.udp_gso.store(false, Ordering::Relaxed);
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

    fn rx_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
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

/// Appends the datagrams of a UDP_SEGMENT run to `out`, one plain message each.
fn split_run(d: &GsoDgram, out: &mut Vec<GsoDgram>) {
    let seg = usize::from(d.seg);
    let mut at = d.range.start;
    while at < d.range.end {
        let end = (at + seg).min(d.range.end);
        out.push(GsoDgram {
            to: d.to,
            range: at..end,
            seg: 0,
        });
        at = end;
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
    use crate::{gso_segment, Segments};

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

    /// A 60 KB TCP frame from a tap (GSO, partial checksum) leaves as one UDP_SEGMENT run, or
    /// one datagram per segment without UDP_SEGMENT; the counters count datagrams either way.
    /// The far end merges the segments back into GSO frames (software GRO) that cut up again
    /// into exactly the segments sent.
    #[test]
    fn gso_frame_leaves_as_one_udp_segment_run() {
        use crate::build::SpecL4;
        use crate::offload::{VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4};
        let (sa, sb) = (
            snap("127.0.0.23", "127.0.0.24", false),
            snap("127.0.0.24", "127.0.0.23", true),
        );
        let a = TunnelPort::open("127.0.0.23".parse().unwrap(), 47891).unwrap();
        let b = TunnelPort::open("127.0.0.24".parse().unwrap(), 47891).unwrap();
        let vlan_a = sa.network("vx").unwrap().local_vlan;
        let frame = FrameBuilder::ip(
            MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]),
            MacAddr([0xfa, 0x16, 0x3e, 0, 0, 2]),
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            SpecL4::Tcp {
                sport: 40000,
                dport: 5201,
                flags: 0x18,
            },
        )
        .payload(60_000)
        .build();
        let hdr = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1398,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 0,
        };
        let vnet = crate::io::hdr_bytes(&hdr);
        let mut want = Segments::new();
        gso_segment(&frame, &hdr, &mut want).unwrap();
        let n = want.len();
        assert_eq!(n, 60_000usize.div_ceil(1398));

        let mut got_by_mode = Vec::new();
        for gso in [true, false] {
            if !gso {
                a.disable_udp_gso();
            }
            assert_eq!(a.udp_gso(), gso);
            let ca = IoCounters::default();
            let mut tx = TunnelTx::new();
            let edit = EgressEdit::PushTag(vlan_a);
            a.transmit(&ca, &sa, 1, &vnet, &frame, edit, &mut tx);
            // One message for the whole frame with UDP_SEGMENT, one per segment without.
            assert_eq!(tx.queue.len(), if gso { 1 } else { n });
            assert_eq!(tx.dgrams, n);
            a.flush(&ca, &mut tx);
            assert_eq!(ca.tx_frames.load(Ordering::Relaxed), n as u64);
            assert_eq!(ca.tx_dropped.load(Ordering::Relaxed), 0);
            let inner: usize = want.iter().map(|s| s.len()).sum();
            assert_eq!(ca.tx_bytes.load(Ordering::Relaxed), inner as u64);
            assert!(
                a.udp_gso() == gso,
                "the kernel refused UDP_SEGMENT on loopback"
            );

            let cb = IoCounters::default();
            let (mut got, mut delivered) = (Vec::new(), 0);
            assert!(
                (0..100).any(|_| {
                    b.drain(64, &sb, 2, &cb, |v, f| {
                        delivered += 1;
                        let h = VirtioNetHdr::parse(v, VNET_HDR_LEN).unwrap();
                        if h.is_gso() {
                            let mut segs = Segments::new();
                            gso_segment(f, &h, &mut segs).unwrap();
                            got.extend(segs.iter().map(<[u8]>::to_vec));
                        } else {
                            got.push(f.to_vec());
                        }
                    });
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    got.len() >= n
                }),
                "{} of {n} segments arrived",
                got.len()
            );
            assert_eq!(got.len(), n);
            assert!(delivered < n, "no segments merged: {delivered} frames");
            for (g, w) in got.iter().zip(want.iter()) {
                // B re-tags with its own local VLAN; the rest is the segment as cut.
                assert_eq!(&g[..12], &w[..12]);
                assert_eq!(&g[16..], &w[12..]);
            }
            got_by_mode.push(got);
        }
        assert_eq!(got_by_mode[0], got_by_mode[1]);
    }

    /// A UDP_SEGMENT run of 40 datagrams that cannot merge (UDP frames of one size) reaches
    /// the far socket as one UDP_GRO message; `drain` hands it on at most `max` frames a call,
    /// says so through `rx_pending` while some are left, and loses or reorders none.
    #[test]
    fn a_udp_gro_message_is_handed_on_across_calls_in_order() {
        let (sa, sb) = (
            snap("127.0.0.25", "127.0.0.26", false),
            snap("127.0.0.26", "127.0.0.25", true),
        );
        let a = TunnelPort::open("127.0.0.25".parse().unwrap(), 47891).unwrap();
        let b = TunnelPort::open("127.0.0.26".parse().unwrap(), 47891).unwrap();
        let frames: Vec<Vec<u8>> = (0..40u16)
            .map(|i| {
                FrameBuilder::udp4(
                    MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]),
                    MacAddr([0xfa, 0x16, 0x3e, 0, 0, 2]),
                    "10.0.0.1".parse().unwrap(),
                    "10.0.0.2".parse().unwrap(),
                    1000 + i,
                    2,
                )
                .payload(200)
                .build()
            })
            .collect();
        let ca = IoCounters::default();
        let mut tx = TunnelTx::new();
        tx.port = Some(sa.tunnel().unwrap().port);
        let peer = TunnelDest::Unicast("127.0.0.26".parse().unwrap());
        tx.push_runs(frames.iter().map(Vec::as_slice), 4242, peer, &[], 47891);
        assert_eq!(tx.queue.len(), 1);
        a.flush(&ca, &mut tx);
        assert_eq!(ca.tx_frames.load(Ordering::Relaxed), 40);

        let cb = IoCounters::default();
        let (mut got, mut calls) = (Vec::new(), 0);
        for _ in 0..200 {
            let n = b.drain(8, &sb, 2, &cb, |_, f| got.push(f.to_vec()));
            assert!(n <= 8, "{n} frames for a room of 8");
            if n > 0 {
                calls += 1;
                let rx = b.rx.lock().unwrap();
                assert_eq!(rx.msgs.len(), 1, "the run came as one message");
                assert_eq!(rx.msgs[0].seg, VXLAN_HDR_LEN + frames[0].len());
                assert_eq!(b.rx_pending(), got.len() < 40);
            }
            if got.len() == 40 {
                break;
            }
            if n == 0 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        assert_eq!(got.len(), 40);
        assert!(calls >= 40 / 8, "{calls} calls");
        assert!(!b.rx_pending());
        for (g, f) in got.iter().zip(&frames) {
            assert_eq!(&g[..12], &f[..12]);
            assert_eq!(&g[16..], &f[12..]);
        }
        assert_eq!(cb.rx_errors.load(Ordering::Relaxed), 0);
    }

    /// A TSO frame is cut straight into the arena: every datagram queued is the VXLAN header
    /// and exactly the segment `gso_segment` cuts, in order; a frame that cannot be cut
    /// leaves nothing behind.
    #[test]
    fn segments_are_written_behind_their_headers_in_the_arena() {
        use crate::build::SpecL4;
        use crate::offload::{VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4};
        let sa = snap("127.0.0.27", "127.0.0.28", false);
        let a = TunnelPort::open("127.0.0.27".parse().unwrap(), 47891).unwrap();
        let vlan = sa.network("vx").unwrap().local_vlan;
        let frame = FrameBuilder::ip(
            MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]),
            MacAddr([0xfa, 0x16, 0x3e, 0, 0, 2]),
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            SpecL4::Tcp {
                sport: 40000,
                dport: 5201,
                flags: 0x19, // ACK|PSH|FIN: PSH and FIN only on the last segment
            },
        )
        .payload(62_950)
        .build();
        let hdr = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 54,
            gso_size: 900,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 0,
        };
        let mut want = Segments::new();
        gso_segment(&frame, &hdr, &mut want).unwrap();
        let ca = IoCounters::default();
        let mut tx = TunnelTx::new();
        let vnet = crate::io::hdr_bytes(&hdr);
        a.transmit(
            &ca,
            &sa,
            1,
            &vnet,
            &frame,
            EgressEdit::PushTag(vlan),
            &mut tx,
        );
        // 70 segments: a run of 64 and one of 6 (the last shorter).
        assert_eq!(want.len(), 70);
        let runs: Vec<_> = tx.queue.iter().map(|d| (d.range.len(), d.seg)).collect();
        assert_eq!(runs, vec![(64 * 962, 962), (5 * 962 + 8 + 54 + 850, 962)]);
        let mut got = Vec::new();
        for d in &tx.queue {
            for c in tx.arena[d.range.clone()].chunks(usize::from(d.seg)) {
                assert_eq!(&c[..VXLAN_HDR_LEN], &tunnel::vxlan_header(4242));
                got.push(c[VXLAN_HDR_LEN..].to_vec());
            }
        }
        assert_eq!(got, want.iter().map(<[u8]>::to_vec).collect::<Vec<_>>());
        // A TSO frame cut short of its headers: dropped, the arena as it was.
        let before = tx.arena.len();
        a.transmit(
            &ca,
            &sa,
            1,
            &vnet,
            &frame[..40],
            EgressEdit::PushTag(vlan),
            &mut tx,
        );
        assert_eq!(tx.arena.len(), before);
        assert_eq!(tx.queue.len(), 2);
        assert_eq!(ca.tx_dropped.load(Ordering::Relaxed), 1);
    }

    /// Runs end at MAX_SEGMENTS, at MAX_PAYLOAD and after a shorter segment; a run of one is
    /// a plain datagram.
    #[test]
    fn segments_group_into_runs_within_kernel_limits() {
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let runs = |sizes: &[usize]| {
            let mut tx = TunnelTx::new();
            let segs: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &len)| vec![i as u8; len])
                .collect();
            let segs = segs.iter().map(Vec::as_slice);
            tx.push_runs(segs, 7, TunnelDest::Unicast(peer), &[], 4789);
            assert_eq!(tx.dgrams, sizes.len());
            tx.queue
                .iter()
                .map(|d| (d.range.len(), d.seg))
                .collect::<Vec<_>>()
        };
        // 10 x 1000 + 1 x 500: one run of 1008-byte segments, the last shorter.
        let mut sizes = vec![1000; 10];
        sizes.push(500);
        assert_eq!(runs(&sizes), vec![(10 * 1008 + 508, 1008)]);
        // A shorter segment in the middle ends its run.
        assert_eq!(
            runs(&[1000, 1000, 600, 1000, 1000]),
            vec![(2 * 1008 + 608, 1008), (2 * 1008, 1008)]
        );
        // 100 small segments: runs of at most 64.
        assert_eq!(runs(&[100; 100]), vec![(64 * 108, 108), (36 * 108, 108)]);
        // 1400-byte segments: at most 65507 bytes per run (46 x 1408 = 64768).
        let r = runs(&[1400; 50]);
        assert_eq!(r, vec![(46 * 1408, 1408), (4 * 1408, 1408)]);
        // A lone segment, and a lone last one, go plain.
        assert_eq!(runs(&[1000]), vec![(1008, 0)]);
        assert_eq!(runs(&[100; 65]), vec![(64 * 108, 108), (108, 0)]);
    }
}
