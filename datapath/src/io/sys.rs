//! Every syscall the switch's I/O shells make; this file and its topic
//! siblings (`io/sys*.rs`) hold the only `unsafe` in the crate. Crate-private
//! but for the signal helpers `weft switch` uses. Each function hands back
//! safe owned types (`OwnedFd`, `RxRing`); callers above this module never
//! see a raw pointer.

use std::ffi::CString;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// Size of `struct virtio_net_hdr` (no mergeable-buffers field): what the
/// tap and AF_PACKET sockets prepend when vnet headers are on.
pub const VNET_HDR_LEN: usize = 10;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn ifreq_with_name(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?} (1-15 bytes)"),
        ));
    }
    // SAFETY: ifreq is a plain C struct/union for which all-zero bytes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(ifr)
}

/// Opens /dev/net/tun and attaches (creating if needed) tap `name` with
/// IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, a 10-byte vnet header and the given
/// TUN_F_* offloads. The fd is non-blocking and close-on-exec.
pub(crate) fn open_tap(name: &str, offloads: u32) -> io::Result<OwnedFd> {
    let path = CString::new("/dev/net/tun").expect("static path has no NUL");
    // SAFETY: path is a valid NUL-terminated string; open has no other preconditions.
    let fd = cvt(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ifr = ifreq_with_name(name)?;
    ifr.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF reads (and writes back the name into) the ifreq we own.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) })?;
    let hdr_len: libc::c_int = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one c_int from the pointer we pass.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len) })?;
    // SAFETY: TUNSETOFFLOAD takes the flags by value as an unsigned long.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            offloads as libc::c_ulong,
        )
    })?;
    Ok(fd)
}

/// The interface index of `name`, or None when no such netdev exists (in
/// this network namespace).
pub(crate) fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Answers "does this netdev exist?" over one socket kept open, so the
/// pending-port monitor can ask for thousands of names per scan without a
/// socket(2)/close(2) pair per name (what `if_nametoindex` does).
pub(crate) struct NetdevProbe(OwnedFd);

impl NetdevProbe {
    /// Opens the probe's socket.
    pub fn new() -> io::Result<NetdevProbe> {
        ctl_socket().map(NetdevProbe)
    }

    /// True when a netdev of that name exists in this network namespace.
    pub fn exists(&self, name: &str) -> bool {
        let Ok(mut ifr) = ifreq_with_name(name) else {
            return false;
        };
        // SAFETY: SIOCGIFINDEX fills ifru_ifindex of the ifreq we own.
        unsafe { libc::ioctl(self.0.as_raw_fd(), libc::SIOCGIFINDEX, &mut ifr) == 0 }
    }
}

/// Sets the niceness of the calling thread (Linux: per-thread, by tid).
pub(crate) fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: plain setpriority(2) on our own thread id.
    cvt(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) })?;
    Ok(())
}

/// Whether `name` has IFF_UP.
pub(crate) fn link_is_up(name: &str) -> io::Result<bool> {
    let sock = ctl_socket()?;
    let mut ifr = ifreq_with_name(name)?;
    // SAFETY: SIOCGIFFLAGS fills the flags of the ifreq we own.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) })?;
    // SAFETY: the kernel just wrote ifru_flags, the active union member.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    Ok(flags & libc::IFF_UP as libc::c_short != 0)
}

/// Sets IFF_UP on `name` (no-op if already up).
pub(crate) fn set_link_up(name: &str) -> io::Result<()> {
    let sock = ctl_socket()?;
    let mut ifr = ifreq_with_name(name)?;
    // SAFETY: SIOCGIFFLAGS fills the flags of the ifreq we own.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) })?;
    // SAFETY: the kernel just wrote ifru_flags, the active union member.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) })?;
    Ok(())
}

/// Sets the Ethernet address of `name` (SIOCSIFHWADDR).
pub(crate) fn set_link_mac(name: &str, mac: [u8; 6]) -> io::Result<()> {
    let sock = ctl_socket()?;
    let mut ifr = ifreq_with_name(name)?;
    // SAFETY: all-zero is a valid sockaddr; we only fill family and the first 6 data bytes.
    let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
    sa.sa_family = libc::ARPHRD_ETHER;
    for (d, s) in sa.sa_data.iter_mut().zip(mac) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_hwaddr = sa;
    // SAFETY: SIOCSIFHWADDR reads the ifreq we own.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFHWADDR, &ifr) })?;
    Ok(())
}

/// The MTU of `name`.
pub(crate) fn link_mtu(name: &str) -> io::Result<u32> {
    let sock = ctl_socket()?;
    let mut ifr = ifreq_with_name(name)?;
    // SAFETY: SIOCGIFMTU fills ifru_mtu of the ifreq we own.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut ifr) })?;
    // SAFETY: the kernel just wrote ifru_mtu, the active union member.
    Ok(unsafe { ifr.ifr_ifru.ifru_mtu } as u32)
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: val points to a live T of the size we pass.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Options for an AF_PACKET port.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacketOpts {
    /// Prepend a virtio_net_hdr on rx and expect one on tx (PACKET_VNET_HDR):
    /// GSO frames then cross the socket whole.
    pub vnet_hdr: bool,
    /// Bytes per rx ring slot (a power of two of at least 2048, so that
    /// slots never straddle a block).
    pub frame_size: u32,
    /// Number of rx ring slots.
    pub frame_nr: u32,
    /// Bytes per ring block (a page multiple and a multiple of `frame_size`).
    pub block_size: u32,
}

/// Opens an AF_PACKET socket bound to ifindex with a TPACKET_V2 rx ring,
/// promiscuous membership and PACKET_IGNORE_OUTGOING (so the switch does not
/// read back its own transmissions).
///
/// Slots are sized for one MTU-sized frame, not for 64 KiB GSO frames: a
/// ring of 64 KiB slots holds only a few dozen frames and overflows under a
/// burst of small ones. A frame larger than its slot (GSO, GRO) is put in
/// the slot truncated with TP_STATUS_COPY, and because PACKET_COPY_THRESH is
/// set the kernel also queues the whole frame on the socket, in ring order,
/// for [`recv`] to read. TPACKET_V3 packs variable-sized frames too, but
/// hands a block over only when it is full or its retire timer fires
/// (milliseconds), which would add that much latency at low rates.
pub(crate) fn open_packet(ifindex: u32, opts: PacketOpts) -> io::Result<(OwnedFd, RxRing)> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            proto as libc::c_int,
        )
    })?;
    // SAFETY: fd was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    if opts.vnet_hdr {
        setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_VNET_HDR,
            &1 as &libc::c_int,
        )?;
    }
    let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VERSION, &version)?;
    setsockopt(
        raw,
        libc::SOL_PACKET,
        libc::PACKET_IGNORE_OUTGOING,
        &1 as &libc::c_int,
    )?;
    // Any non-zero threshold turns on the copy of oversized frames to the
    // socket queue; the queue needs room for a few 64 KiB frames.
    setsockopt(
        raw,
        libc::SOL_PACKET,
        libc::PACKET_COPY_THRESH,
        &1 as &libc::c_int,
    )?;
    let rcvbuf: libc::c_int = 32 << 20;
    if setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf).is_err() {
        // Without CAP_NET_ADMIN: as much as net.core.rmem_max allows.
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf);
    }
    // No PACKET_QDISC_BYPASS: it would hide our transmissions from tcpdump on
    // the uplink, which operators rely on; the qdisc costs little next to a syscall.
    let req = libc::tpacket_req {
        tp_block_size: opts.block_size,
        tp_block_nr: opts.frame_nr / (opts.block_size / opts.frame_size),
        tp_frame_size: opts.frame_size,
        tp_frame_nr: opts.frame_nr,
    };
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
    let len = opts.frame_size as usize * opts.frame_nr as usize;
    // SAFETY: mapping the rx ring the kernel just allocated for this socket; length matches the request.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_LOCKED,
            raw,
            0,
        )
    };
    let map = if map == libc::MAP_FAILED {
        // MAP_LOCKED can fail under RLIMIT_MEMLOCK; the ring works unlocked too.
        // SAFETY: as above, without MAP_LOCKED.
        let m = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            )
        };
        if m == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        m
    } else {
        map
    };
    let ring = RxRing {
        base: map.cast(),
        len,
        frame_size: opts.frame_size as usize,
        frame_nr: opts.frame_nr as usize,
        head: 0,
        vnet_hdr: opts.vnet_hdr,
    };
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll of the size we pass.
    cvt(unsafe {
        libc::bind(
            raw,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    // SAFETY: packet_mreq is a plain C struct; all-zero is valid.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = ifindex as i32;
    mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
    setsockopt(raw, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)?;
    Ok((fd, ring))
}

/// One frame taken from the rx ring: its bytes (starting at the MAC header,
/// or at the vnet header when `vnet` is set), the VLAN tag the kernel moved
/// out of the frame, and whether it was truncated to the ring slot.
pub(crate) struct RingFrame<'a> {
    /// virtio_net_hdr bytes when the socket has PACKET_VNET_HDR.
    pub vnet: Option<&'a [u8]>,
    /// The frame from its destination MAC on (without the stripped tag).
    pub data: &'a [u8],
    /// The 802.1Q TCI the NIC/kernel stripped (TP_STATUS_VLAN_VALID).
    pub vlan_tci: Option<u16>,
    /// TPID of that tag (0x8100 unless TP_STATUS_VLAN_TPID_VALID says else).
    pub vlan_tpid: u16,
    /// tp_len > tp_snaplen: the slot was too small.
    pub truncated: bool,
    /// TP_STATUS_COPY: the slot was too small and the whole frame is queued
    /// on the socket (read it with [`recv`] now: the queue is in ring order).
    pub copied: bool,
    /// The frame's full length (tp_len), without the stripped tag.
    pub len: usize,
}

/// A TPACKET_V2 rx ring mapped into our memory.
pub(crate) struct RxRing {
    // pub(super): `sys_handover` maps a ring handed over by another process.
    pub(super) base: *mut u8,
    pub(super) len: usize,
    pub(super) frame_size: usize,
    pub(super) frame_nr: usize,
    pub(super) head: usize,
    pub(super) vnet_hdr: bool,
}

// SAFETY: the ring is plain shared memory; access is serialised by `&mut self`
// (one worker owns a port's ring at a time), and the kernel side is
// synchronised through tp_status with acquire/release ordering.
unsafe impl Send for RxRing {}

impl RxRing {
    fn status(&self, slot: usize) -> &AtomicU32 {
        // SAFETY: slot < frame_nr so the header lies inside the mapping; tp_status is
        // the first u32 of a 16-byte aligned tpacket2_hdr, valid for an AtomicU32.
        unsafe { &*(self.base.add(slot * self.frame_size) as *const AtomicU32) }
    }

    /// The next slot to read, and the ring's slot size and count (a handover passes them on).
    pub(crate) fn position(&self) -> (usize, usize, usize) {
        (self.head, self.frame_size, self.frame_nr)
    }

    /// Calls `f` with each frame the kernel has filled, up to `max`, handing
    /// each slot back right after. Returns the number of frames seen.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(RingFrame<'_>)) -> usize {
        let mut n = 0;
        while n < max {
            let slot = self.head;
            let st = self.status(slot).load(Ordering::Acquire);
            if st & libc::TP_STATUS_USER == 0 {
                break;
            }
            let off = slot * self.frame_size;
            // SAFETY: the slot is ours (TP_STATUS_USER) until we write TP_STATUS_KERNEL;
            // the header lies within the mapping and is 16-byte aligned.
            let hdr = unsafe { &*(self.base.add(off) as *const libc::tpacket2_hdr) };
            let mac = hdr.tp_mac as usize;
            let snap = hdr.tp_snaplen as usize;
            let valid = mac + snap <= self.frame_size && mac >= VNET_HDR_LEN;
            // SAFETY: [off, off+frame_size) is inside the mapping and owned by us now.
            let slot_bytes =
                unsafe { std::slice::from_raw_parts(self.base.add(off), self.frame_size) };
            let vlan_valid = st & libc::TP_STATUS_VLAN_VALID != 0;
            let tpid = if st & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                hdr.tp_vlan_tpid
            } else {
                0x8100
            };
            // A slot with offsets outside it is passed on as truncated (and
            // still with its COPY flag, so the queued copy is consumed).
            f(RingFrame {
                vnet: (self.vnet_hdr && valid).then(|| &slot_bytes[mac - VNET_HDR_LEN..mac]),
                data: if valid {
                    &slot_bytes[mac..mac + snap]
                } else {
                    &[]
                },
                vlan_tci: vlan_valid.then_some(hdr.tp_vlan_tci),
                vlan_tpid: tpid,
                truncated: !valid || hdr.tp_len as usize > snap,
                copied: st & libc::TP_STATUS_COPY != 0,
                len: hdr.tp_len as usize,
            });
            self.status(slot)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.head = (slot + 1) % self.frame_nr;
            n += 1;
        }
        n
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly what mmap returned; nothing borrows the ring now.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Most messages one sendmmsg/recvmmsg call takes: the mmsghdr and iovec arrays live on the
/// stack (about 5 KiB), so a batch costs no allocation.
pub(crate) const MMSG_MAX: usize = 64;

/// Sends frames on a bound AF_PACKET socket with sendmmsg, in calls of up to 64. Frame `i` is
/// `arena[vnet] ++ arena[body]` (`vnet` empty when the socket has no vnet header). A frame the
/// kernel refuses (too big, bad vnet header) is skipped, not retried.
/// Returns (frames sent, bytes sent).
pub(crate) fn send_batch(
    fd: RawFd,
    arena: &[u8],
    frames: &[(Range<usize>, Range<usize>)],
) -> (usize, usize) {
    let (mut sent, mut bytes) = (0, 0);
    for chunk in frames.chunks(MMSG_MAX) {
        let mut iovs = [[empty_iovec(); 2]; MMSG_MAX];
        // SAFETY: mmsghdr is a plain C struct; all-zero is valid.
        let mut msgs: [libc::mmsghdr; MMSG_MAX] = unsafe { std::mem::zeroed() };
        for ((iov, m), (vnet, body)) in iovs.iter_mut().zip(msgs.iter_mut()).zip(chunk) {
            *iov = [
                iovec_of(&arena[vnet.clone()]),
                iovec_of(&arena[body.clone()]),
            ];
            m.msg_hdr.msg_iov = iov.as_mut_ptr();
            m.msg_hdr.msg_iovlen = 2;
        }
        let (s, b) = sendmmsg_all(fd, &mut msgs[..chunk.len()]);
        sent += s;
        bytes += b;
    }
    (sent, bytes)
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

pub(crate) fn iovec_of(s: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: s.as_ptr() as *mut libc::c_void,
        iov_len: s.len(),
    }
}

/// sendmmsg until every message is sent or refused: EINTR retried, a full queue given three
/// chances (then the rest is dropped), a refused message skipped. Returns (sent, bytes).
fn sendmmsg_all(fd: RawFd, msgs: &mut [libc::mmsghdr]) -> (usize, usize) {
    let (mut at, mut sent, mut bytes) = (0usize, 0usize, 0usize);
    let mut retries = 0;
    while at < msgs.len() {
        // SAFETY: msgs[at..] are valid mmsghdrs whose iovecs (and names) point into buffers
        // the caller keeps alive for this call; the kernel only reads them.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                msgs[at..].as_mut_ptr(),
                (msgs.len() - at) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r > 0 {
            for m in &msgs[at..at + r as usize] {
                bytes += m.msg_len as usize;
            }
            at += r as usize;
            sent += r as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            // Device queue full: give it a moment, then drop the rest.
            io::ErrorKind::WouldBlock if retries < 3 => {
                retries += 1;
                std::thread::yield_now();
            }
            io::ErrorKind::WouldBlock => break,
            _ => at += 1,
        }
    }
    (sent, bytes)
}

/// Writes one frame given as up to 4 slices with writev (tap fds take one
/// frame per write). More than 4 slices is an InvalidInput error.
pub(crate) fn writev(fd: RawFd, parts: &[&[u8]]) -> io::Result<usize> {
    // On the stack: this runs once per frame sent to a tap.
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 4];
    if parts.len() > iov.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (v, s) in iov.iter_mut().zip(parts) {
        *v = libc::iovec {
            iov_base: s.as_ptr() as *mut libc::c_void,
            iov_len: s.len(),
        };
    }
    // SAFETY: the first parts.len() iovecs point into `parts`, alive for the call; the kernel
    // only reads them.
    let r = unsafe { libc::writev(fd, iov.as_ptr(), parts.len() as libc::c_int) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// recv(2) with MSG_DONTWAIT into `buf` (a datagram longer than `buf` is cut).
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable region of buf.len() bytes.
    let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// read(2) into `buf`.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable region of buf.len() bytes.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// An epoll instance.
pub(crate) struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// epoll_create1(EPOLL_CLOEXEC).
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fd was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    /// Watch `fd` for input (level-triggered), reporting `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: ev is a valid epoll_event; fd validity is checked by the kernel.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    /// Stop watching `fd`.
    pub fn del(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in add.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) })?;
        Ok(())
    }

    /// Waits up to `timeout_ms`; writes ready (token, error-or-hangup) pairs
    /// into `out`, returns their count.
    pub fn wait(&self, out: &mut [(u64, bool)], timeout_ms: i32) -> io::Result<usize> {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
        let max = out.len().min(evs.len());
        // SAFETY: evs has room for `max` events.
        let r = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                evs.as_mut_ptr(),
                max as libc::c_int,
                timeout_ms,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        for (o, e) in out.iter_mut().zip(&evs[..r as usize]) {
            let bad = e.events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            *o = (e.u64, bad);
        }
        Ok(r as usize)
    }
}

/// An eventfd used to wake a worker (new port set, shutdown).
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC).
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: fd was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd { fd })
    }

    /// Raw fd, for epoll.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Wake the reader.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Clear pending wakeups.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

/// Blocks SIGHUP, SIGINT and SIGTERM in the calling thread (and every thread
/// it spawns afterwards), so that [`wait_signal`] can take them synchronously.
pub fn block_control_signals() -> io::Result<()> {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t; signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    // SAFETY: set is initialised; a null old-set pointer is allowed.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Waits up to `timeout_ms` for one of the blocked control signals; returns
/// its number, or None on timeout.
pub fn wait_signal(timeout_ms: u64) -> Option<i32> {
    // SAFETY: as in block_control_signals.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t; signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    let ts = libc::timespec {
        tv_sec: (timeout_ms / 1000) as libc::time_t,
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: set and ts are valid; a null siginfo pointer is allowed.
    let r = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (r > 0).then_some(r)
}

/// SIGHUP: reload the config.
pub const SIGHUP: i32 = libc::SIGHUP;

/// `struct tpacket_stats` from <linux/if_packet.h>.
#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    tp_packets: u32,
    tp_drops: u32,
}

/// Frames the kernel dropped on this AF_PACKET socket because its rx ring was
/// full, since the last call (PACKET_STATISTICS reads and resets).
pub(crate) fn packet_ring_drops(fd: RawFd) -> u64 {
    let mut st = TpacketStats::default();
    let mut len = std::mem::size_of::<TpacketStats>() as libc::socklen_t;
    // SAFETY: st and len are live and sized for PACKET_STATISTICS's tpacket_stats.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut TpacketStats).cast(),
            &mut len,
        )
    };
    if r == 0 {
        u64::from(st.tp_drops)
    } else {
        0
    }
}

/// Reads and clears a socket's pending error (SO_ERROR).
pub(crate) fn take_socket_error(fd: RawFd) -> Option<io::Error> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are live and sized for SO_ERROR's c_int.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (r == 0 && v != 0).then(|| io::Error::from_raw_os_error(v))
}

/// A UDP destination as the kernel takes it (for `sys_udpgso::send_segmented`).
pub(crate) enum SockAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl SockAddr {
    /// A placeholder for the unused entries of a stack array.
    pub(crate) fn unset() -> SockAddr {
        // SAFETY: sockaddr_in is a plain C struct; all-zero is valid.
        SockAddr::V4(unsafe { std::mem::zeroed() })
    }

    pub(crate) fn new(a: std::net::SocketAddr) -> SockAddr {
        match a {
            std::net::SocketAddr::V4(a) => SockAddr::V4(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            }),
            std::net::SocketAddr::V6(a) => SockAddr::V6(libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            }),
        }
    }

    pub(crate) fn ptr_len(&mut self) -> (*mut libc::c_void, libc::socklen_t) {
        match self {
            SockAddr::V4(s) => (
                (s as *mut libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            SockAddr::V6(s) => (
                (s as *mut libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ),
        }
    }
}

/// Sets a socket's receive and send buffers to `bytes` each: with SO_RCVBUFFORCE /
/// SO_SNDBUFFORCE when we may (CAP_NET_ADMIN, past net.core.rmem_max), else as far as the
/// sysctl limit allows. A burst of 64 KiB TSO frames becomes ~45 datagrams per frame, which
/// overflows the default 208 KiB receive buffer of the tunnel socket.
pub(crate) fn set_socket_buffers(fd: RawFd, bytes: usize) {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        for opt in [force, plain] {
            // SAFETY: `v` is a c_int that lives for the call; the kernel reads size_of::<c_int>().
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&v as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
    }
}

/// A kernel-written source address as std's, None for a family the switch does not know.
pub(crate) fn sockaddr_to_std(a: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
    match libc::c_int::from(a.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (ss_family says so), which fits in and is
            // no more aligned than sockaddr_storage.
            let s: libc::sockaddr_in =
                unsafe { std::ptr::read((a as *const libc::sockaddr_storage).cast()) };
            Some(std::net::SocketAddr::new(
                std::net::Ipv4Addr::from(s.sin_addr.s_addr.to_ne_bytes()).into(),
                u16::from_be(s.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let s: libc::sockaddr_in6 =
                unsafe { std::ptr::read((a as *const libc::sockaddr_storage).cast()) };
            Some(std::net::SocketAddr::new(
                std::net::Ipv6Addr::from(s.sin6_addr.s6_addr).into(),
                u16::from_be(s.sin6_port),
            ))
        }
        _ => None,
    }
}

/// Sets the MTU of `name` (a tap the switch created: the network's MTU, e.g. 1450 on vxlan).
pub(crate) fn set_link_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let sock = ctl_socket()?;
    let mut ifr = ifreq_with_name(name)?;
    ifr.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU out of range"))?;
    // SAFETY: SIOCSIFMTU reads ifr_name and ifru_mtu of the ifreq we own.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFMTU, &ifr) })?;
    Ok(())
}
