//! Per-port I/O counters, written by the port shells (taps, AF_PACKET, the tunnel endpoint)
//! and read by the daemon for `weft ctl counters`.

use std::sync::atomic::AtomicU64;

/// Per-port I/O counters kept by the shell (the core counts pipeline drops).
#[derive(Default, Debug)]
pub struct IoCounters {
    /// Frames read from the port.
    pub rx_frames: AtomicU64,
    /// Bytes read.
    pub rx_bytes: AtomicU64,
    /// Reads that failed or were truncated/too short.
    pub rx_errors: AtomicU64,
    /// Frames the kernel dropped before the switch saw them (AF_PACKET rx
    /// ring full), collected from PACKET_STATISTICS when states are read.
    pub rx_ring_drops: AtomicU64,
    /// Frames written.
    pub tx_frames: AtomicU64,
    /// Bytes written.
    pub tx_bytes: AtomicU64,
    /// Frames that could not be written (port down, pending, queue full, offload failure).
    pub tx_dropped: AtomicU64,
}
