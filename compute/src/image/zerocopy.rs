//! Download windows that remember which file they map, so the connection
//! writing them can hand the socket the file instead of the memory.
//!
//! ```text
//!   Stored::chunk ──> FileWindow (mmap of file[off..off+len], registered)
//!        │                 │ Bytes::from_owner
//!        ▼                 ▼
//!   hyper queues the Bytes, calls writev(&[head, window, ...])
//!        │
//!        ▼
//!   the server's connection (weft-ctrl) asks file_span(slice):
//!     Some(file, off) -> sendfile(sock, file, off, len)   page cache -> socket
//!     None            -> write/writev as before
//! ```
//!
//! hyper and axum only ever see `Bytes`; the registry, keyed by the address
//! range each live mapping occupies, is how the write side learns that a
//! slice is a file's bytes. A window is registered while its mapping
//! exists (from [`FileWindow::new`] until its drop, which unregisters before
//! the unmap), so an address found in the registry is always that file's
//! data: the range cannot be reused by another mapping while registered.
//! The mapping still earns its keep: it is made with MAP_POPULATE on a
//! blocking thread, so the pages are in the page cache before the async
//! thread calls sendfile, which then never waits for the disk.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// One live window: `len` bytes of `file` from `offset`.
struct Region {
    len: usize,
    file: Arc<File>,
    offset: u64,
}

/// Live windows by the address of their first byte.
static REGIONS: RwLock<BTreeMap<usize, Region>> = RwLock::new(BTreeMap::new());
/// How many windows are live: lets every write of a response that is not
/// a download (JSON, headers) skip the lock.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// A mapped window of an image file, registered as file-backed while alive.
pub struct FileWindow {
    map: memmap2::Mmap,
}

impl FileWindow {
    /// Registers `map`, which holds `file`'s bytes from `offset`.
    pub(super) fn new(map: memmap2::Mmap, file: Arc<File>, offset: u64) -> FileWindow {
        let region = Region {
            len: map.len(),
            file,
            offset,
        };
        let mut regions = REGIONS.write().unwrap_or_else(|p| p.into_inner());
        regions.insert(map.as_ptr() as usize, region);
        LIVE.fetch_add(1, Ordering::Release);
        FileWindow { map }
    }
}

impl AsRef<[u8]> for FileWindow {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for FileWindow {
    fn drop(&mut self) {
        // Before `map` unmaps (fields drop after this body): the range is
        // never registered while something else may be mapped there.
        let mut regions = REGIONS.write().unwrap_or_else(|p| p.into_inner());
        if regions.remove(&(self.map.as_ptr() as usize)).is_some() {
            LIVE.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Where the bytes of a slice live in a file.
#[derive(Debug, Clone)]
pub struct FileSpan {
    /// The file (kept open while the span is held).
    pub file: Arc<File>,
    /// The offset in the file of the slice's first byte.
    pub offset: u64,
}

/// The file and offset `slice` is a window of, when it lies wholly inside
/// a live [`FileWindow`]; `None` for any other memory.
pub fn file_span(slice: &[u8]) -> Option<FileSpan> {
    if slice.is_empty() || LIVE.load(Ordering::Acquire) == 0 {
        return None;
    }
    let start = slice.as_ptr() as usize;
    let regions = REGIONS.read().unwrap_or_else(|p| p.into_inner());
    let (&base, r) = regions.range(..=start).next_back()?;
    let inside = start - base;
    (inside.checked_add(slice.len())? <= r.len).then(|| FileSpan {
        file: r.file.clone(),
        offset: r.offset + inside as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};

    #[test]
    fn slices_of_a_live_window_map_back_to_their_file_offset() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3 * 4096 + 7).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let file = Arc::new(f);
        let map = crate::image::mapped::window(&file, 4100, 5000).unwrap();
        let w = FileWindow::new(map, file.clone(), 4100);
        let bytes = w.as_ref();
        assert_eq!(bytes, &data[4100..9100]);

        // A slice inside the window: its own offset, and it reads the same
        // bytes from the file as the memory holds.
        let span = file_span(&bytes[10..200]).expect("file-backed");
        assert_eq!(span.offset, 4110);
        let mut got = vec![0u8; 190];
        let mut fh = span.file.as_ref();
        fh.seek(SeekFrom::Start(span.offset)).unwrap();
        fh.read_exact(&mut got).unwrap();
        assert_eq!(got, &bytes[10..200]);
        assert_eq!(file_span(bytes).unwrap().offset, 4100, "the whole window");

        // Memory that is not a window, and an empty slice, are not file-backed.
        let heap = data.clone();
        assert!(file_span(&heap[..]).is_none());
        assert!(file_span(&bytes[..0]).is_none());

        // Dropped: the address range is no longer claimed.
        let addr = bytes.as_ptr() as usize;
        drop(w);
        let regions = REGIONS.read().unwrap();
        assert!(!regions.contains_key(&addr));
    }
}
