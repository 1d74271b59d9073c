//! The syscalls of a switch restart with fd handover (see `daemon::handover`): passing file
//! descriptors over the control socket (SCM_RIGHTS), naming the tap behind a received fd
//! (TUNGETIFF), and mapping an AF_PACKET rx ring another process set up. Kept apart from
//! [`super::sys`] so that the two grow without touching each other; the `unsafe` rules are
//! the same (one `// SAFETY:` line per block, safe owned types out).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::sys::RxRing;

/// Most fds one message carries (the kernel's SCM_MAX_FD is 253).
pub(crate) const FDS_PER_MESSAGE: usize = 250;

fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Sends `fds` over the unix stream socket `sock`, at most [`FDS_PER_MESSAGE`] per message,
/// each message carrying one byte (`.`) so that the receiver's `recvmsg` has data to return
/// the rights with. The fds stay open here: the receiver gets new references to the same
/// open files (a tap handed this way is never closed, so its netdev never goes away).
pub(crate) fn send_fds(sock: RawFd, fds: &[RawFd]) -> io::Result<()> {
    for chunk in fds.chunks(FDS_PER_MESSAGE) {
        let payload = [b'.'];
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: 1,
        };
        let bytes = std::mem::size_of_val(chunk);
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(bytes as u32) } as usize;
        // u64 elements keep the control buffer aligned for cmsghdr.
        let mut control = vec![0u64; space.div_ceil(8)];
        // SAFETY: msghdr is a plain C struct; all-zero is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` bytes we own, so the first header fits.
        let cmsg = unsafe { &mut *libc::CMSG_FIRSTHDR(&msg) };
        cmsg.cmsg_level = libc::SOL_SOCKET;
        cmsg.cmsg_type = libc::SCM_RIGHTS;
        // SAFETY: CMSG_LEN only computes a size.
        cmsg.cmsg_len = unsafe { libc::CMSG_LEN(bytes as u32) } as _;
        // SAFETY: CMSG_DATA points inside `control`, which has room for `bytes` after the
        // header (CMSG_SPACE above); the source is `chunk`, exactly `bytes` long.
        unsafe {
            std::ptr::copy_nonoverlapping(chunk.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), bytes)
        };
        loop {
            // SAFETY: msg points at the iovec and control buffer above, alive for the call.
            match cvt(unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) }) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Reads bytes from the unix stream socket `sock` into `buf` with `recvmsg`, taking the fds
/// any message carries (close-on-exec) into `fds`. Returns the bytes read (0: peer closed).
pub(crate) fn recv_with_fds(
    sock: RawFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: CMSG_SPACE only computes a size.
    let space =
        unsafe { libc::CMSG_SPACE((std::mem::size_of::<RawFd>() * (FDS_PER_MESSAGE + 3)) as u32) }
            as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is a plain C struct; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: msg points at `buf` and `control`, both alive and writable for the call.
        match cvt(unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) }) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_FIRSTHDR/NXTHDR walk it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/NXTHDR lies inside `control`.
        let c = unsafe { &*cmsg };
        if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) only computes the header size.
            let head = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = (c.cmsg_len as usize - head) / std::mem::size_of::<RawFd>();
            // SAFETY: the data holds `count` fds right after the header, inside `control`.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
            for i in 0..count {
                // SAFETY: in bounds (above); read_unaligned since CMSG_DATA need not be aligned.
                let fd = unsafe { data.add(i).read_unaligned() };
                // SAFETY: the kernel just installed this fd for us; nobody else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: msg and cmsg are the buffer the kernel filled, as CMSG_NXTHDR expects.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other(
            "handover: file descriptors were truncated",
        ));
    }
    Ok(n)
}

/// The name of the tap `fd` is attached to (TUNGETIFF): a received fd is checked against the
/// port it is said to be before the switch reads from it.
pub(crate) fn tap_name(fd: RawFd) -> io::Result<String> {
    // SAFETY: ifreq is a plain C struct/union for which all-zero bytes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes the name and flags into the ifreq we own.
    if unsafe { libc::ioctl(fd, libc::TUNGETIFF, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let name: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&name).into_owned())
}

/// Maps the TPACKET_V2 rx ring another process set up on the AF_PACKET socket `fd`
/// (`frame_nr` slots of `frame_size` bytes), to be read from slot `head` on: where that
/// process stopped. The ring's memory and the kernel's own position belong to the socket,
/// not to a mapping, so nothing queued in it is lost.
pub(crate) fn map_rx_ring(
    fd: &OwnedFd,
    frame_size: usize,
    frame_nr: usize,
    head: usize,
    vnet_hdr: bool,
) -> io::Result<RxRing> {
    if frame_size == 0 || frame_nr == 0 || head >= frame_nr || !frame_size.is_multiple_of(16) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "handover: bad rx ring geometry",
        ));
    }
    let len = frame_size * frame_nr;
    // SAFETY: mapping the socket's existing rx ring; the kernel checks that `len` matches it.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(RxRing {
        base: map.cast(),
        len,
        frame_size,
        frame_nr,
        head,
        vnet_hdr,
    })
}
