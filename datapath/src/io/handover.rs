//! Ports rebuilt from file descriptors another switch process handed over (see
//! `daemon::handover`): the tap, AF_PACKET socket or UDP socket is the same open file, so
//! the netdev, the frames queued on it and the ring the kernel fills all carry on.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{sys, sys_handover, PacketPort, TapPort, MAX_FRAME, VNET_HDR_LEN};

pub(crate) use sys_handover::{recv_with_fds, send_fds};

/// Where an AF_PACKET port's rx ring stands: what the next process needs to map it and to go
/// on reading at the slot the last one stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingPosition {
    /// Next slot to read.
    pub head: usize,
    /// Slot size in bytes.
    pub frame_size: usize,
    /// Number of slots.
    pub frame_nr: usize,
    /// Whether the socket has PACKET_VNET_HDR.
    pub vnet_hdr: bool,
    /// The netdev's MTU when the port was opened.
    pub mtu: u32,
    /// The netdev's index the socket is bound to.
    pub ifindex: u32,
}

impl TapPort {
    /// The tap `fd` (handed over by the previous switch process) as port `name`. Refused when
    /// the fd is not that tap: reading another port's frames as this one's would misdeliver.
    pub fn adopt(fd: OwnedFd, name: &str) -> io::Result<TapPort> {
        let got = sys_handover::tap_name(fd.as_raw_fd())?;
        if got != name {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("handed-over fd is tap {got:?}, not {name:?}"),
            ));
        }
        Ok(TapPort {
            fd,
            name: name.to_string(),
        })
    }
}

impl PacketPort {
    /// The AF_PACKET socket `fd` with its rx ring at `pos` (handed over by the previous switch
    /// process, which has stopped reading it) as port `name`.
    pub fn adopt(fd: OwnedFd, name: &str, pos: RingPosition) -> io::Result<PacketPort> {
        let ring =
            sys_handover::map_rx_ring(&fd, pos.frame_size, pos.frame_nr, pos.head, pos.vnet_hdr)?;
        Ok(PacketPort {
            fd,
            ifindex: pos.ifindex,
            ring: Mutex::new((
                ring,
                vec![0u8; MAX_FRAME + VNET_HDR_LEN + 64],
                Vec::with_capacity(MAX_FRAME),
            )),
            name: name.to_string(),
            vnet_hdr: pos.vnet_hdr,
            mtu: pos.mtu,
        })
    }

    /// Where its rx ring stands now (meaningful once no worker reads it any more).
    pub(crate) fn position(&self) -> RingPosition {
        let g = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let (head, frame_size, frame_nr) = g.0.position();
        RingPosition {
            head,
            frame_size,
            frame_nr,
            vnet_hdr: self.vnet_hdr,
            mtu: self.mtu,
            ifindex: self.ifindex,
        }
    }
}

/// Whether `ifindex` still names netdev `name` (a handed-over AF_PACKET socket stays bound
/// to the netdev it was opened on, even if that one was replaced meanwhile).
pub(crate) fn same_netdev(name: &str, ifindex: u32) -> bool {
    sys::if_index(name) == Some(ifindex)
}
