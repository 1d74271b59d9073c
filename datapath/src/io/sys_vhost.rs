//! The syscalls of the vhost-user socket shim ([`super::vhost`]): one message with the file
//! descriptors that ride along (SCM_RIGHTS: the guest's memory, kick/call eventfds) in and
//! out of a unix stream socket. Beside [`super::sys`], with the same rule: the `unsafe` is here,
//! callers get owned types.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Most descriptors one vhost-user message carries: a memory table of 8 regions
/// (VHOST_MEMORY_BASELINE_NREGIONS; more needs CONFIGURE_MEM_SLOTS, which is not offered).
pub(crate) const MAX_FDS: usize = 8;

/// Control buffer room for [`MAX_FDS`] descriptors, u64-aligned as cmsghdr wants.
const CMSG_WORDS: usize = 16;

/// Reads up to `buf.len()` bytes with one recvmsg, appending the descriptors that came with
/// them to `fds`. Ok(0) at end of stream.
pub(crate) fn recv_with_fds(
    sock: &UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut cmsg = [0u64; CMSG_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg) as _;
    let n = loop {
        // SAFETY: msg points at a live iovec over `buf` and a live control buffer of the
        // length it claims.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // SAFETY: the CMSG_* macros walk the control buffer the kernel just filled, within
    // msg_controllen; each SCM_RIGHTS payload is an array of fds the kernel installed for us,
    // which nobody else owns.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other(
            "too many descriptors in one vhost-user message",
        ));
    }
    Ok(n)
}

/// Writes all of `buf` with one sendmsg carrying `fds` (a short write is finished without
/// them: the kernel delivers them with the first byte).
pub(crate) fn send_with_fds(sock: &UnixStream, buf: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::other(
            "too many descriptors in one vhost-user message",
        ));
    }
    let mut cmsg = [0u64; CMSG_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: plain data, filled below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = fds.len() * std::mem::size_of::<RawFd>();
        msg.msg_control = cmsg.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is arithmetic; the result fits the buffer (8 fds need 48 bytes).
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(payload as u32) } as _;
        // SAFETY: the control buffer is live, zeroed and msg_controllen long, so the first
        // header and its payload of `payload` bytes lie inside it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
            let data = libc::CMSG_DATA(c).cast::<RawFd>();
            for (i, f) in fds.iter().enumerate() {
                data.add(i).write_unaligned(f.as_raw_fd());
            }
        }
    }
    let sent = loop {
        // SAFETY: msg points at a live iovec over `buf` and, with fds, a filled control buffer.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if sent < buf.len() {
        use std::io::Write;
        (&*sock).write_all(&buf[sent..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn descriptors_cross_with_their_message() {
        let (a, b) = UnixStream::pair().unwrap();
        let (p, mut q) = UnixStream::pair().unwrap();
        let fds = vec![OwnedFd::from(p.try_clone().unwrap()), OwnedFd::from(p)];
        send_with_fds(&a, b"hello", &fds).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        assert_eq!(recv_with_fds(&b, &mut buf, &mut got).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(got.len(), 2);
        // The descriptors received are the socket sent: writing to one reaches its peer.
        let mut s = UnixStream::from(got.pop().unwrap());
        s.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        q.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"x");
        // No descriptors: none appended.
        send_with_fds(&a, b"bye", &[]).unwrap();
        let mut none = Vec::new();
        assert_eq!(recv_with_fds(&b, &mut buf, &mut none).unwrap(), 3);
        assert!(none.is_empty());
        drop(a);
        assert_eq!(recv_with_fds(&b, &mut buf, &mut none).unwrap(), 0);
    }
}
