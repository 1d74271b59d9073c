//! UDP segmentation offload (UDP_SEGMENT, Linux 4.18) for the VXLAN endpoint's socket: one
//! sendmsg carries a run of equal-sized datagrams back to back, and the kernel cuts it into
//! datagrams only where it must (in the NIC, or at the far end's UDP socket for a veth
//! underlay). A 64 KiB TCP frame from a tap becomes ~45 VXLAN datagrams; with this, one skb
//! crosses the sender's UDP/IP stack and the underlay instead of 45.
//!
//! Syscalls and `unsafe` only, as in [`super::sys`]; the grouping of segments into runs is
//! plain code in the tunnel shell.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::RawFd;

use super::sys::{iovec_of, SockAddr, MMSG_MAX};

/// Most datagrams one UDP_SEGMENT send may carry (the kernel's UDP_MAX_SEGMENTS).
pub(crate) const MAX_SEGMENTS: usize = 64;

/// Largest payload one UDP_SEGMENT send may carry: an IPv4 datagram's 65535 bytes less the
/// IP and UDP headers (the limit for IPv6 is higher; this one serves both).
pub(crate) const MAX_PAYLOAD: usize = 65535 - 20 - 8;

/// One message for [`send_segmented`]: `arena[range]` to `to`, cut by the kernel into
/// datagrams of `seg` bytes (the last may be shorter); `seg == 0` sends one plain datagram.
pub(crate) struct GsoDgram {
    /// Destination.
    pub to: SocketAddr,
    /// Bytes in the arena.
    pub range: Range<usize>,
    /// Segment size (0: not segmented).
    pub seg: u16,
}

/// What [`send_segmented`] did: messages and bytes accepted, and the indices of the messages
/// the kernel refused (a UDP_SEGMENT message is refused with EIO when the route's device
/// cannot checksum, EINVAL when a segment exceeds the path MTU; the caller resends those as
/// plain datagrams).
#[derive(Debug, Default)]
pub(crate) struct GsoSent {
    /// Messages accepted.
    pub sent: usize,
    /// Payload bytes accepted.
    pub bytes: usize,
    /// Indices (into the input) of refused messages.
    pub refused: Vec<usize>,
}

/// Room for one cmsghdr carrying a u16, 8-byte aligned (CMSG_SPACE(2) is 24 on 64-bit).
type CmsgBuf = [u64; 4];

/// Sends `dgrams` with sendmmsg (64 per call), each message with a UDP_SEGMENT control
/// message when its `seg` is non-zero. A full socket buffer is given three chances, then the
/// rest is dropped (counted as neither sent nor refused).
pub(crate) fn send_segmented(fd: RawFd, arena: &[u8], dgrams: &[GsoDgram]) -> GsoSent {
    let mut out = GsoSent::default();
    for (c, chunk) in dgrams.chunks(MMSG_MAX).enumerate() {
        let mut iovs = [iovec_of(&[]); MMSG_MAX];
        let mut addrs: [SockAddr; MMSG_MAX] = std::array::from_fn(|_| SockAddr::unset());
        let mut ctrl: [CmsgBuf; MMSG_MAX] = [[0; 4]; MMSG_MAX];
        // SAFETY: mmsghdr is a plain C struct; all-zero is valid.
        let mut msgs: [libc::mmsghdr; MMSG_MAX] = unsafe { std::mem::zeroed() };
        for (i, d) in chunk.iter().enumerate() {
            iovs[i] = iovec_of(&arena[d.range.clone()]);
            addrs[i] = SockAddr::new(d.to);
            let (name, namelen) = addrs[i].ptr_len();
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = name;
            h.msg_namelen = namelen;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            if d.seg != 0 {
                put_segment_cmsg(h, &mut ctrl[i], d.seg);
            }
        }
        send_all(fd, &mut msgs[..chunk.len()], c * MMSG_MAX, &mut out);
    }
    out
}

/// Fills `buf` with one SOL_UDP/UDP_SEGMENT control message and points `h` at it.
fn put_segment_cmsg(h: &mut libc::msghdr, buf: &mut CmsgBuf, seg: u16) {
    h.msg_control = buf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    h.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
    // SAFETY: msg_control points at `buf` (24 <= 32 bytes, 8-byte aligned) of msg_controllen
    // bytes, so CMSG_FIRSTHDR returns a header inside it and CMSG_DATA(c) + 2 stays inside.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
    }
}

/// sendmmsg until every message is sent, refused or the buffer stays full; `base` is the
/// index of `msgs[0]` in the caller's input (for [`GsoSent::refused`]).
fn send_all(fd: RawFd, msgs: &mut [libc::mmsghdr], base: usize, out: &mut GsoSent) {
    let (mut at, mut retries) = (0usize, 0);
    while at < msgs.len() {
        // SAFETY: msgs[at..] are valid mmsghdrs whose names, iovecs and control buffers live
        // in the caller's stack arrays and arena for this call; the kernel only reads them.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                msgs[at..].as_mut_ptr(),
                (msgs.len() - at) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r > 0 {
            let r = r as usize;
            out.bytes += msgs[at..at + r]
                .iter()
                .map(|m| m.msg_len as usize)
                .sum::<usize>();
            out.sent += r;
            at += r;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock if retries < 3 => {
                retries += 1;
                std::thread::yield_now();
            }
            io::ErrorKind::WouldBlock => break,
            _ => {
                out.refused.push(base + at);
                at += 1;
            }
        }
    }
}
