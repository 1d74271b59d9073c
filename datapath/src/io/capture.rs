//! [`Capture`]: a [`Port`] wrapper that writes every frame the port hands the switch, and every
//! frame the switch hands the port, to a pcap file that `tcpdump -r` and Wireshark read. An
//! operator turns it on per port with `capture = "/path/file.pcap"` in the port's config; a
//! reload that sets, changes or removes the field starts, moves or stops the capture without
//! touching the port.
//!
//! What it records is what crosses the switch's side of the port: frames as read (after any
//! fault injection, before the pipeline) and frames as sent (the egress edit applied, before
//! GSO segmentation or checksum completion, so a 64 KiB TSO frame appears once, as `tcpdump`
//! on a tap shows it). Frames are cut at 65535 bytes (the snap length); the record keeps the
//! real length.
//!
//! The pcap format is 24 bytes of file header and 16 bytes per record: written here rather
//! than with a crate, since the writer is a few lines and needs no parsing.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Port, PortCtx, RxBatch, TxFrame, TxScratch};
use crate::apply_edit;

/// Snap length: the most bytes of a frame a record holds.
pub const SNAPLEN: u32 = 65535;

/// Nanosecond-resolution pcap magic (libpcap reads it since 1.5).
const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;

/// Writes pcap records to any `Write`: the file header once, then one record per frame.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header (nanosecond timestamps, Ethernet frames).
    pub fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_NS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0.
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out })
    }

    /// Writes one frame seen at `unix_ns` nanoseconds since the epoch.
    pub fn write(&mut self, unix_ns: u64, frame: &[u8]) -> io::Result<()> {
        let kept = frame.len().min(SNAPLEN as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((unix_ns / 1_000_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((unix_ns % 1_000_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(kept as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&frame[..kept])
    }

    /// Pushes buffered records out.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A port whose traffic is also written to a pcap file.
pub struct Capture {
    inner: Arc<dyn Port>,
    path: PathBuf,
    /// The writer, and a buffer for edited egress frames. Shared by the worker reading the
    /// port and every worker sending to it.
    out: Mutex<(PcapWriter<BufWriter<File>>, Vec<u8>)>,
}

impl Capture {
    /// Wraps `inner`, creating (truncating) the pcap file at `path`.
    pub fn create(inner: Arc<dyn Port>, path: &Path) -> io::Result<Capture> {
        let file = File::create(path)?;
        let w = PcapWriter::new(BufWriter::with_capacity(256 * 1024, file))?;
        Ok(Capture {
            inner,
            path: path.to_path_buf(),
            out: Mutex::new((w, Vec::new())),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The wrapped port.
    pub fn inner(&self) -> &Arc<dyn Port> {
        &self.inner
    }

    fn record(&self, what: impl FnOnce(&mut PcapWriter<BufWriter<File>>, &mut Vec<u8>, u64)) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut g = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let (w, buf) = &mut *g;
        what(w, buf, now);
        // Flushed per batch so that `tcpdump -r` sees frames while the switch runs.
        if let Err(e) = w.flush() {
            tracing::warn!(port = %self.inner.name(), path = %self.path.display(), "capture: {e}");
        }
    }
}

impl Port for Capture {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn raw_fd(&self) -> RawFd {
        self.inner.raw_fd()
    }

    fn recv(&self, ctx: &PortCtx<'_>, batch: &mut RxBatch) -> io::Result<()> {
        let before = batch.len();
        let res = self.inner.recv(ctx, batch);
        if batch.len() > before {
            self.record(|w, _, now| {
                for i in before..batch.len() {
                    let _ = w.write(now, batch.frame(i).1);
                }
            });
        }
        res
    }

    fn send(&self, ctx: &PortCtx<'_>, batch: &RxBatch, frames: &[TxFrame], s: &mut TxScratch) {
        self.inner.send(ctx, batch, frames, s);
        self.record(|w, buf, now| {
            for t in frames {
                buf.clear();
                if apply_edit(t.edit, batch.frame(t.index).1, None, buf).is_ok() {
                    let _ = w.write(now, buf);
                }
            }
        });
    }

    fn rx_pending(&self) -> bool {
        self.inner.rx_pending()
    }

    fn still_usable(&self) -> bool {
        self.inner.still_usable()
    }

    fn take_kernel_drops(&self) -> u64 {
        self.inner.take_kernel_drops()
    }

    fn drop_counts(&self) -> Vec<(&'static str, u64)> {
        self.inner.drop_counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_pcap_headers_and_cut_at_the_snap_length() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(3_000_000_007, &[0xab; 60]).unwrap();
        w.write(4_000_000_000, &vec![1u8; 70000]).unwrap();
        let b = w.out;
        assert_eq!(&b[0..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 65535);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1);
        let r = &b[24..];
        assert_eq!(u32::from_le_bytes(r[0..4].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(r[4..8].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(r[8..12].try_into().unwrap()), 60);
        assert_eq!(u32::from_le_bytes(r[12..16].try_into().unwrap()), 60);
        assert_eq!(&r[16..76], &[0xab; 60][..]);
        let r = &r[76..];
        assert_eq!(u32::from_le_bytes(r[8..12].try_into().unwrap()), 65535);
        assert_eq!(u32::from_le_bytes(r[12..16].try_into().unwrap()), 70000);
        assert_eq!(r.len(), 16 + 65535);
    }
}
