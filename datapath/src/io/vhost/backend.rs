//! The vhost-user device side of a `vhostuser` port: the features the switch offers QEMU, and
//! the hand-over of each connection's virtqueues and memory to the packet workers.
//!
//! vhost-user-backend runs the protocol (one thread reads QEMU's messages, maps the guest's
//! memory, sets up the rings) and one epoll thread that reads the guest's kicks. The switch
//! does not process frames on that thread: a kick on the TX queue only wakes the worker that
//! polls the port (its eventfd), so every frame goes through the same worker loop, pipeline and
//! batch as a tap's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_MRG_RXBUF,
};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
use vm_memory::GuestMemoryAtomic;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use super::ring::{guest_hdr_len, GuestMem};
use crate::io::sys::EventFd;

/// The guest's memory, swapped whole when QEMU sends a new memory table.
pub(crate) type Mem = GuestMemoryAtomic<GuestMem>;
/// One virtqueue with its kick/call eventfds, shared by the backend's threads and the workers.
pub(crate) type Vring = VringRwLock<Mem>;

/// virtio-net queue 0: the guest's receive queue (the switch writes it).
pub(crate) const RX_QUEUE: usize = 0;
/// virtio-net queue 1: the guest's transmit queue (the switch reads it).
pub(crate) const TX_QUEUE: usize = 1;
/// One queue pair: no VIRTIO_NET_F_MQ (one worker reads a port anyway).
const NUM_QUEUES: usize = 2;
/// The largest ring QEMU may ask for (its `rx_queue_size`/`tx_queue_size` go up to 1024).
const MAX_QUEUE_SIZE: usize = 1024;

/// Virtio features offered: modern virtio (12-byte header), mergeable receive buffers (a
/// Linux guest then posts page-sized buffers and any frame fits), indirect descriptors, and
/// the checksum/TSO offloads a tap has both ways (the guest sends and takes 64 KiB TCP
/// frames and partial checksums; the switch segments or checksums for ports that cannot
/// take them, and for a guest that did not take them).
/// No EVENT_IDX: every kick and every batch's interrupt goes through.
/// VHOST_USER_F_PROTOCOL_FEATURES: QEMU 7.2 crashes on a backend without it (and the
/// early SET_VRING_ENABLE it then sends is dealt with by the [`super::shim`]).
pub(crate) const VIRTIO_FEATURES: u64 = 1 << VIRTIO_F_VERSION_1
    | 1 << VIRTIO_NET_F_MRG_RXBUF
    | 1 << VIRTIO_RING_F_INDIRECT_DESC
    | OFFLOADS
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

/// The checksum and TCP segmentation offloads, guest to switch (CSUM, HOST_*) and switch to
/// guest (GUEST_*).
const OFFLOADS: u64 = 1 << VIRTIO_NET_F_CSUM
    | 1 << VIRTIO_NET_F_HOST_TSO4
    | 1 << VIRTIO_NET_F_HOST_TSO6
    | 1 << VIRTIO_NET_F_HOST_ECN
    | 1 << VIRTIO_NET_F_GUEST_CSUM
    | 1 << VIRTIO_NET_F_GUEST_TSO4
    | 1 << VIRTIO_NET_F_GUEST_TSO6
    | 1 << VIRTIO_NET_F_GUEST_ECN;

/// How frames are laid out and finished for the connected guest, from its acked features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Its virtio-net header length (10 or 12).
    pub(crate) hdr_len: usize,
    /// Mergeable receive buffers.
    pub(crate) mergeable: bool,
    /// The guest may send partial checksums and TSO frames: keep its header.
    pub(crate) from_guest_offloads: bool,
    /// It takes partial checksums.
    pub(crate) guest_csum: bool,
    /// It takes TSO frames over IPv4 / IPv6 / with ECN.
    pub(crate) guest_tso4: bool,
    pub(crate) guest_tso6: bool,
    pub(crate) guest_ecn: bool,
}

impl Layout {
    pub(crate) fn from_features(f: u64) -> Layout {
        let has = |bit: u32| f & (1u64 << bit) != 0;
        Layout {
            hdr_len: guest_hdr_len(f),
            mergeable: has(VIRTIO_NET_F_MRG_RXBUF),
            from_guest_offloads: has(VIRTIO_NET_F_CSUM),
            guest_csum: has(VIRTIO_NET_F_GUEST_CSUM),
            guest_tso4: has(VIRTIO_NET_F_GUEST_TSO4),
            guest_tso6: has(VIRTIO_NET_F_GUEST_TSO6),
            guest_ecn: has(VIRTIO_NET_F_GUEST_ECN),
        }
    }
}

/// A connected guest's rings and memory, as the workers use them.
pub(crate) struct Active {
    /// Indexed by [`RX_QUEUE`] and [`TX_QUEUE`].
    pub(crate) vrings: Vec<Vring>,
    /// The same memory the backend maps the rings into.
    pub(crate) mem: Mem,
    /// Which connection they belong to ([`NetBackend::conn`]).
    conn: u64,
}

/// What a port and its backend share.
pub(crate) struct Link {
    /// The fd the worker polls: signalled on every TX kick, and by the worker itself when it
    /// left frames in the TX queue (the batch was full).
    pub(crate) wake: EventFd,
    /// The connected guest's rings; None while no guest is connected (frames to it are
    /// dropped and counted).
    pub(crate) active: ArcSwapOption<Active>,
    /// Virtio features the guest acknowledged.
    pub(crate) acked: AtomicU64,
    /// The memory of the connection being served (the daemon maps into it).
    pub(crate) conn_mem: Mutex<Option<Mem>>,
    /// The port is being closed: the server thread stops.
    pub(crate) stop: AtomicBool,
    /// Ends the connection being served (when the port closes).
    pub(crate) shutdown: Mutex<Option<vhost_user_backend::ShutdownHandle>>,
}

impl Link {
    pub(crate) fn new() -> std::io::Result<Link> {
        Ok(Link {
            wake: EventFd::new()?,
            active: ArcSwapOption::empty(),
            acked: AtomicU64::new(0),
            conn_mem: Mutex::new(None),
            stop: AtomicBool::new(false),
            shutdown: Mutex::new(None),
        })
    }

    /// The layout the guest negotiated.
    pub(crate) fn layout(&self) -> Layout {
        Layout::from_features(self.acked.load(Ordering::Acquire))
    }
}

/// The vhost-user backend of one `vhostuser` port, for one connection (clones share the link).
#[derive(Clone)]
pub(crate) struct NetBackend {
    pub(crate) link: Arc<Link>,
    /// A number of its own per connection, so that the first event of a new connection
    /// replaces the rings of the last.
    pub(crate) conn: u64,
}

impl VhostUserBackend for NetBackend {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        VIRTIO_FEATURES
    }

    fn acked_features(&self, features: u64) {
        self.link.acked.store(features, Ordering::Release);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        // REPLY_ACK lets QEMU wait for the memory table to be mapped before it starts the
        // rings; nothing else (no MQ, no config space: QEMU keeps the MAC and link status).
        VhostUserProtocolFeatures::REPLY_ACK
    }

    fn reset_device(&self) {
        self.link.active.store(None);
    }

    fn set_event_idx(&self, _enabled: bool) {}

    fn update_memory(&self, _mem: Mem) -> std::io::Result<()> {
        // The handler already swapped the new table into the GuestMemoryAtomic that `Active`
        // holds a clone of.
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // Without one the ring thread never ends; the server loop fires it on disconnect.
        new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[Vring],
        _thread_id: usize,
    ) -> std::io::Result<()> {
        // The first event of a connection (each queue gets one as it is enabled) publishes
        // its rings to the workers.
        let stale = self
            .link
            .active
            .load()
            .as_ref()
            .is_none_or(|a| a.conn != self.conn);
        if stale && vrings.len() == NUM_QUEUES {
            let mem = self.link.conn_mem.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(mem) = mem.as_ref() {
                self.link.active.store(Some(Arc::new(Active {
                    vrings: vrings.to_vec(),
                    mem: mem.clone(),
                    conn: self.conn,
                })));
            }
        }
        if usize::from(device_event) == TX_QUEUE || stale {
            self.link.wake.notify();
        }
        Ok(())
    }
}
