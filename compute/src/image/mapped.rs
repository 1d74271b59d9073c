//! The one unsafe call of the crate: mapping a window of an image file
//! read-only, so a download hands the page cache itself to the socket
//! writer instead of a `read()` copy of it.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// `len` bytes of `file` from `offset` (any offset: memmap2 aligns it to a
/// page and hides the difference), mapped read-only with MAP_POPULATE: the
/// (usually cached) pages are mapped in one go, not one fault per page.
pub(super) fn window(file: &File, offset: u64, len: usize) -> io::Result<memmap2::Mmap> {
    // SAFETY: a mapping is unsound if the file shrinks or changes under it.
    // Image files are never written in place: data is staged under another
    // name and renamed over (a new inode), and a delete only unlinks, which
    // leaves an open file's pages alone. Nothing in weft truncates them.
    unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .populate()
            .map(file)
    }
}
