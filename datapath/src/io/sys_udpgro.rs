//! UDP receive offload (UDP_GRO, Linux 5.0) for the VXLAN endpoint's socket: a run of
//! equal-sized datagrams of one 4-tuple reaches userspace as one message, with the datagram
//! size in a control message, instead of one message per datagram. A UDP_SEGMENT run from the
//! far switch (a whole 64 KiB TCP frame cut into ~45 VXLAN datagrams) crosses a veth underlay
//! as one skb; without UDP_GRO the receiving socket cuts it back into ~45 skbs and recvmmsg
//! copies them out one by one, with it the skb is queued and read whole. On a NIC underlay
//! the kernel's GRO builds such runs from the wire's datagrams.
//!
//! Syscalls and `unsafe` only, as in [`super::sys`]; cutting a message back into datagrams
//! is plain code in the tunnel shell.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use super::sys::{sockaddr_to_std, MMSG_MAX};

/// One message [`recv_batch`] read: `len` bytes from `from`, made of datagrams of `seg` bytes
/// back to back (the last may be shorter; 0: one plain datagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroMsg {
    /// Bytes of the message.
    pub len: usize,
    /// Source address (None for an address family the switch does not know).
    pub from: Option<SocketAddr>,
    /// The message was larger than its slot (the rest is lost).
    pub truncated: bool,
    /// Datagram size within the message (0: not coalesced).
    pub seg: usize,
}

/// Room for one cmsghdr carrying an int, 8-byte aligned (CMSG_SPACE(4) is 24 on 64-bit).
type CmsgBuf = [u64; 4];

/// Asks the kernel to hand runs of datagrams over as one message (UDP_GRO). False when it
/// cannot (a kernel before 5.0): datagrams then come one per message, as before.
pub(crate) fn enable(fd: RawFd) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a live c_int and the length says so; the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Receives up to `buf.len() / slot` messages (at most 64) with one recvmmsg, message i into
/// `buf[i * slot..]`, and appends what each was to `out`; Ok(0) when nothing is queued.
pub(crate) fn recv_batch(
    fd: RawFd,
    buf: &mut [u8],
    slot: usize,
    out: &mut Vec<GroMsg>,
) -> io::Result<usize> {
    let n = buf.len().checked_div(slot).unwrap_or(0).min(MMSG_MAX);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: sockaddr_storage is a plain C struct; all-zero is valid.
    let mut addrs: [libc::sockaddr_storage; MMSG_MAX] = unsafe { std::mem::zeroed() };
    let mut ctrl: [CmsgBuf; MMSG_MAX] = [[0; 4]; MMSG_MAX];
    let mut iovs: [libc::iovec; MMSG_MAX] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MMSG_MAX];
    // SAFETY: mmsghdr is a plain C struct; all-zero is valid.
    let mut msgs: [libc::mmsghdr; MMSG_MAX] = unsafe { std::mem::zeroed() };
    for (((a, iov), (m, c)), cb) in addrs
        .iter_mut()
        .zip(iovs.iter_mut())
        .zip(msgs.iter_mut().zip(buf.chunks_exact_mut(slot)))
        .zip(ctrl.iter_mut())
    {
        *iov = libc::iovec {
            iov_base: c.as_mut_ptr().cast(),
            iov_len: c.len(),
        };
        let h = &mut m.msg_hdr;
        h.msg_name = (a as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = iov as *mut libc::iovec;
        h.msg_iovlen = 1;
        h.msg_control = cb.as_mut_ptr().cast();
        h.msg_controllen = std::mem::size_of::<CmsgBuf>();
    }
    // SAFETY: the first n mmsghdrs point at their own sockaddr_storage, control buffer and
    // slot of `buf` (through `iovs`), all alive and exclusively borrowed for the call.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(0)
        } else {
            Err(e)
        };
    }
    let got = r as usize;
    for (m, a) in msgs.iter().zip(&addrs).take(got) {
        out.push(GroMsg {
            len: m.msg_len as usize,
            from: sockaddr_to_std(a),
            truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            seg: gro_size(&m.msg_hdr),
        });
    }
    Ok(got)
}

/// The UDP_GRO control message's datagram size, 0 when there is none.
fn gro_size(h: &libc::msghdr) -> usize {
    // SAFETY: `h` is a msghdr the kernel filled: msg_control/msg_controllen describe the
    // control buffer it wrote (still alive in the caller's frame), so walking it with
    // CMSG_FIRSTHDR/CMSG_NXTHDR stays inside it, and each header's CMSG_DATA holds at least
    // the int the kernel put there for UDP_GRO (cmsg_len is checked first).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP
                && (*c).cmsg_type == libc::UDP_GRO
                && (*c).cmsg_len as usize >= libc::CMSG_LEN(4) as usize
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    0
}
