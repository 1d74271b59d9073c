//! A message-level relay between QEMU and vhost-user-backend, for one connection.
//!
//! QEMU 7.2's virtio-net sends VHOST_USER_SET_VRING_ENABLE when it attaches its queue pair
//! (at device realize), before VHOST_USER_SET_FEATURES. The vhost crate (0.18) refuses that
//! message until VHOST_USER_F_PROTOCOL_FEATURES has been acknowledged by SET_FEATURES, and
//! drops the connection; and QEMU 7.2 crashes outright on a backend that does not offer
//! PROTOCOL_FEATURES. So the switch listens itself, relays every message (with the descriptors
//! it carries) to the backend over a second socket, and holds back the SET_VRING_ENABLE that
//! come before SET_FEATURES (answering them at once when QEMU asks for an answer), to pass
//! them on right after SET_FEATURES. QEMU sends no other: its last early one is what enables
//! the rings. Frames never pass here, only the control messages of the setup.
//!
//! ```text
//!   QEMU ──socket──> relay (QEMU -> backend: early SET_VRING_ENABLE held back) ──> backend
//!        <────────── relay (backend -> QEMU: replies as they are)             <──
//! ```

use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use crate::io::sys_vhost::{recv_with_fds, send_with_fds};

/// vhost-user message header: request, flags, payload size (u32 each, little endian).
const HDR_LEN: usize = 12;
/// Largest payload accepted (the biggest message here, a memory table, takes 264 bytes).
const MAX_PAYLOAD: usize = 4096;
const SET_FEATURES: u32 = 2;
const SET_VRING_ENABLE: u32 = 18;
/// Flags: protocol version 1, "this is a reply", "the sender wants a reply".
const VERSION_1: u32 = 0x1;
const REPLY: u32 = 0x4;
const NEED_REPLY: u32 = 0x8;

/// One message: header and payload, and the descriptors that came with it.
struct Msg {
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Msg {
    fn field(&self, i: usize) -> u32 {
        let b = &self.buf[i * 4..i * 4 + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// Reads one message; None when the peer closed between messages.
fn read_msg(sock: &UnixStream) -> io::Result<Option<Msg>> {
    let mut buf = vec![0u8; HDR_LEN];
    let mut fds = Vec::new();
    let mut got = 0;
    while got < HDR_LEN {
        let n = recv_with_fds(sock, &mut buf[got..], &mut fds)?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let msg = Msg { buf, fds };
    let size = msg.field(2) as usize;
    if size > MAX_PAYLOAD {
        return Err(io::Error::other(format!(
            "vhost-user message of {size} bytes"
        )));
    }
    let mut msg = msg;
    msg.buf.resize(HDR_LEN + size, 0);
    (&*sock).read_exact(&mut msg.buf[HDR_LEN..])?;
    Ok(Some(msg))
}

/// What the relay does with the messages from QEMU, in order.
#[derive(Default)]
struct Upstream {
    features_set: bool,
    /// SET_VRING_ENABLE received before SET_FEATURES, already answered.
    held: Vec<Msg>,
}

impl Upstream {
    /// The messages to pass to the backend now for `m` (none while it is held back), and
    /// whether QEMU waits for an answer from the relay itself.
    fn take(&mut self, mut m: Msg) -> (Vec<Msg>, bool) {
        let req = m.field(0);
        if req == SET_VRING_ENABLE && !self.features_set {
            let wants_reply = m.field(1) & NEED_REPLY != 0;
            // Answered here: the backend must not answer it again.
            let flags = m.field(1) & !NEED_REPLY;
            m.buf[4..8].copy_from_slice(&flags.to_le_bytes());
            self.held.push(m);
            return (Vec::new(), wants_reply);
        }
        let mut out = vec![m];
        if req == SET_FEATURES {
            self.features_set = true;
            out.append(&mut self.held);
        }
        (out, false)
    }
}

/// The reply QEMU waits for when it asked for one (REPLY_ACK): success.
fn ack(req: u32) -> [u8; HDR_LEN + 8] {
    let mut b = [0u8; HDR_LEN + 8];
    b[0..4].copy_from_slice(&req.to_le_bytes());
    b[4..8].copy_from_slice(&(VERSION_1 | REPLY).to_le_bytes());
    b[8..12].copy_from_slice(&8u32.to_le_bytes());
    b
}

/// Relays between `qemu` and `backend` on two threads until either side closes; then closes
/// both.
pub(crate) fn relay(label: &str, qemu: UnixStream, backend: UnixStream) -> io::Result<()> {
    let to_qemu = Arc::new(Mutex::new(qemu.try_clone()?));
    let (q2, b2, t2) = (qemu.try_clone()?, backend.try_clone()?, to_qemu.clone());
    std::thread::Builder::new()
        .name(format!("{label}-up"))
        .spawn(move || {
            let mut up = Upstream::default();
            let r = (|| -> io::Result<()> {
                while let Some(m) = read_msg(&qemu)? {
                    let req = m.field(0);
                    let (pass, answer) = up.take(m);
                    if answer {
                        let q = t2.lock().unwrap_or_else(|p| p.into_inner());
                        send_with_fds(&q, &ack(req), &[])?;
                    }
                    for m in pass {
                        send_with_fds(&backend, &m.buf, &m.fds)?;
                    }
                }
                Ok(())
            })();
            if let Err(e) = r {
                tracing::debug!("vhost-user relay (from QEMU) ended: {e}");
            }
            let _ = qemu.shutdown(Shutdown::Both);
            let _ = backend.shutdown(Shutdown::Both);
        })?;
    std::thread::Builder::new()
        .name(format!("{label}-down"))
        .spawn(move || {
            let r = (|| -> io::Result<()> {
                while let Some(m) = read_msg(&b2)? {
                    let q = to_qemu.lock().unwrap_or_else(|p| p.into_inner());
                    send_with_fds(&q, &m.buf, &m.fds)?;
                }
                Ok(())
            })();
            if let Err(e) = r {
                tracing::debug!("vhost-user relay (to QEMU) ended: {e}");
            }
            let _ = q2.shutdown(Shutdown::Both);
            let _ = b2.shutdown(Shutdown::Both);
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(req: u32, flags: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&req.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn early_vring_enables_are_answered_then_held_until_set_features() {
        let (qemu, qemu_side) = UnixStream::pair().unwrap();
        let (backend, backend_side) = UnixStream::pair().unwrap();
        relay("t", qemu_side, backend_side).unwrap();
        let send = |b: &[u8], fds: &[OwnedFd]| send_with_fds(&qemu, b, fds).unwrap();
        // Before SET_FEATURES: held; with NEED_REPLY, answered by the relay.
        send(
            &msg(SET_VRING_ENABLE, VERSION_1, &[0, 0, 0, 0, 1, 0, 0, 0]),
            &[],
        );
        send(
            &msg(
                SET_VRING_ENABLE,
                VERSION_1 | NEED_REPLY,
                &[1, 0, 0, 0, 1, 0, 0, 0],
            ),
            &[],
        );
        let reply = read_msg(&qemu).unwrap().unwrap();
        assert_eq!((reply.field(0), reply.field(1), reply.field(2)), (18, 5, 8));
        assert_eq!(&reply.buf[HDR_LEN..], &[0; 8]);
        // A message with a descriptor passes whole, descriptor included.
        let (e1, _e2) = UnixStream::pair().unwrap();
        send(
            &msg(12, VERSION_1, &[1, 0, 0, 0, 0, 0, 0, 0]),
            &[OwnedFd::from(e1)],
        );
        let m = read_msg(&backend).unwrap().unwrap();
        assert_eq!((m.field(0), m.fds.len()), (12, 1));
        // SET_FEATURES passes, then the held ones in order (no longer asking for a reply),
        // then what follows.
        send(&msg(SET_FEATURES, VERSION_1, &[0; 8]), &[]);
        send(
            &msg(SET_VRING_ENABLE, VERSION_1, &[1, 0, 0, 0, 0, 0, 0, 0]),
            &[],
        );
        assert_eq!(read_msg(&backend).unwrap().unwrap().field(0), SET_FEATURES);
        for (ring, flags) in [(0u8, VERSION_1), (1, VERSION_1)] {
            let m = read_msg(&backend).unwrap().unwrap();
            assert_eq!(
                (m.field(0), m.field(1), m.buf[HDR_LEN]),
                (SET_VRING_ENABLE, flags, ring)
            );
        }
        let m = read_msg(&backend).unwrap().unwrap();
        assert_eq!((m.field(0), m.buf[HDR_LEN + 4]), (SET_VRING_ENABLE, 0));
        // Replies go back to QEMU as they are.
        send_with_fds(&backend, &msg(1, VERSION_1 | REPLY, &[7; 8]), &[]).unwrap();
        let r = read_msg(&qemu).unwrap().unwrap();
        assert_eq!((r.field(0), &r.buf[HDR_LEN..]), (1, &[7u8; 8][..]));
        // QEMU goes away: the backend's side is closed too.
        drop(qemu);
        assert!(read_msg(&backend).unwrap().is_none());
    }

    #[test]
    fn oversized_messages_end_the_relay() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut hdr = msg(5, VERSION_1, &[]);
        hdr[8..12].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        send_with_fds(&a, &hdr, &[]).unwrap();
        assert!(read_msg(&b).is_err());
    }
}
