//! Tap reads and writes through io_uring (`[switch] io = "uring"`): one `io_uring_enter` reads
//! a burst from a tap into the worker's [`RxBatch`] (registered once as a fixed buffer, so the
//! kernel does not pin and map its pages per read), one more sends all of a round's unedited
//! tap-bound frames. The epoll path spends a `read` per frame (plus one that finds the queue
//! empty) and a `writev` per frame copy.
//!
//! Why the safety holds without lifetimes the kernel could see: every call that submits
//! entries waits, in that same call, for all of their completions, so no entry outlives the
//! borrow of the memory it points into. Every read and write carries RWF_NOWAIT: a read of an
//! empty tap completes at once with EAGAIN (O_NONBLOCK on the fd is not enough: for a file
//! that supports non-blocking I/O, io_uring arms a poll and retries when data comes, and
//! the worker would wait in the ring for the next frame). [`WriteQueue`] finishes its
//! writes on drop too.

use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring};

use super::{RxBatch, RX_BATCH, RX_SLOT};

/// Submission queue size: a whole read burst, or many writes before an early submit.
const ENTRIES: u32 = 256;

/// Why io_uring cannot be used here, or Ok: a ring can be made and does reads and writes
/// (kernel.io_uring_disabled, a container's seccomp filter and pre-5.6 kernels all say no).
pub fn probe() -> io::Result<()> {
    let ring = IoUring::new(4)?;
    let mut p = io_uring::Probe::new();
    ring.submitter().register_probe(&mut p)?;
    for code in [
        opcode::Read::CODE,
        opcode::ReadFixed::CODE,
        opcode::WriteFixed::CODE,
    ] {
        if !p.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring opcode {code} not supported by this kernel"),
            ));
        }
    }
    Ok(())
}

/// What one read of a burst gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// A frame of this many bytes (vnet header included) in its slot.
    Frame(usize),
    /// The queue was empty (EAGAIN) or the read was interrupted.
    Empty,
    /// Failed with this errno.
    Failed(i32),
}

/// One worker's ring.
pub struct TapRing {
    ring: IoUring,
    /// (address, length) of the batch buffer registered as fixed buffer 0, if any.
    fixed: Option<(usize, usize)>,
    /// Completions of the last submit, by entry tag.
    done: Vec<(u64, i32)>,
    /// `io_uring_enter` calls made (the `weft ctl counters` figure).
    pub enters: u64,
}

impl TapRing {
    /// A ring with single-issuer task running where the kernel has it (only this worker
    /// submits), a plain one otherwise.
    pub fn new() -> io::Result<TapRing> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(ENTRIES)
            .or_else(|_| IoUring::new(ENTRIES))?;
        Ok(TapRing {
            ring,
            fixed: None,
            done: Vec::with_capacity(ENTRIES as usize * 2),
            enters: 0,
        })
    }

    /// Registers `batch`'s buffer as fixed buffer 0 (pinned once; reads into it and writes out
    /// of it then skip the per-call page pinning). Needs RLIMIT_MEMLOCK room for ~2 MiB on
    /// kernels that charge it; without it reads and writes go unregistered.
    pub fn register(&mut self, batch: &mut RxBatch) -> io::Result<()> {
        let buf = batch.raw_buf();
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: the kernel keeps a pin on these pages until unregistered or the ring closes,
        // so it never writes to freed memory even if the batch goes first; it writes into
        // them only for the reads `read_burst` submits, which borrow the batch mutably.
        unsafe { self.ring.submitter().register_buffers(&[iov])? };
        self.fixed = Some((iov.iov_base as usize, iov.iov_len));
        Ok(())
    }

    /// Reads up to `want` frames from tap `fd` into `batch`'s slots from `first` on with one
    /// `io_uring_enter`, and returns what each read gave, in queue order (the reads run one
    /// after the other, so slot order is the tap's queue order).
    pub fn read_burst(
        &mut self,
        fd: RawFd,
        batch: &mut RxBatch,
        first: usize,
        want: usize,
        out: &mut Vec<ReadOutcome>,
    ) -> io::Result<()> {
        out.clear();
        let want = want.min(RX_BATCH.saturating_sub(first));
        let buf = batch.raw_buf();
        let base = buf.as_mut_ptr();
        let fixed = self.fixed == Some((base as usize, buf.len()));
        debug_assert!(buf.len() >= (first + want) * RX_SLOT);
        for i in 0..want {
            // In bounds: the batch holds RX_BATCH slots of RX_SLOT bytes.
            let at = base.wrapping_add((first + i) * RX_SLOT);
            let e = if fixed {
                opcode::ReadFixed::new(types::Fd(fd), at, RX_SLOT as u32, 0)
                    .rw_flags(libc::RWF_NOWAIT)
                    .build()
            } else {
                opcode::Read::new(types::Fd(fd), at, RX_SLOT as u32)
                    .rw_flags(libc::RWF_NOWAIT)
                    .build()
            };
            // SAFETY: the slot is inside `batch`, borrowed mutably until this call returns,
            // and `submit_all` waits for every entry pushed here before it does.
            unsafe { self.push(&e.user_data(i as u64))? };
        }
        self.done.clear();
        self.submit_all(want, 0)?;
        out.resize(want, ReadOutcome::Empty);
        for &(tag, res) in &self.done {
            out[tag as usize] = match res {
                n if n >= 0 => ReadOutcome::Frame(n as usize),
                e if -e == libc::EAGAIN || -e == libc::EINTR => ReadOutcome::Empty,
                e => ReadOutcome::Failed(-e),
            };
        }
        Ok(())
    }

    /// A queue of writes whose bytes borrow `'a` memory; submitted by
    /// [`WriteQueue::finish`] (or on drop).
    pub fn writes<'a>(&'a mut self) -> WriteQueue<'a> {
        self.done.clear();
        WriteQueue {
            ring: self,
            queued: 0,
            _bytes: PhantomData,
        }
    }

    /// # Safety
    /// The memory `e` points into must stay valid until its completion is reaped.
    unsafe fn push(&mut self, e: &io_uring::squeue::Entry) -> io::Result<()> {
        // SAFETY: passed on to the caller.
        if unsafe { self.ring.submission().push(e) }.is_ok() {
            return Ok(());
        }
        Err(io::Error::other("io_uring submission queue full"))
    }

    /// Submits what is queued and waits until `done` holds `n` completions, starting from its
    /// first `keep` (the rest is cleared).
    fn submit_all(&mut self, n: usize, keep: usize) -> io::Result<()> {
        self.done.truncate(keep);
        loop {
            // Completions posted already are reaped first, so that `n` counts down.
            let pending = n - self.done.len();
            if pending == 0 {
                return Ok(());
            }
            self.enters += 1;
            match self.ring.submit_and_wait(pending) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
            self.done
                .extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
        }
    }
}

/// Writes queued for one `io_uring_enter`; the frames they send must outlive it (`'a`).
pub struct WriteQueue<'a> {
    ring: &'a mut TapRing,
    queued: usize,
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> WriteQueue<'a> {
    /// Queues `bytes` (vnet header and frame, contiguous) for tap `fd`, tagged `tag`. A full
    /// submission queue is submitted first; its results wait in the ring until [`finish`].
    ///
    /// [`finish`]: WriteQueue::finish
    pub fn push(&mut self, fd: RawFd, bytes: &'a [u8], tag: u64) -> io::Result<()> {
        let len = bytes.len() as u32;
        let fixed = self.ring.fixed.is_some_and(|(a, l)| {
            let p = bytes.as_ptr() as usize;
            p >= a && p + bytes.len() <= a + l
        });
        let e = if fixed {
            opcode::WriteFixed::new(types::Fd(fd), bytes.as_ptr(), len, 0)
                .rw_flags(libc::RWF_NOWAIT)
                .build()
        } else {
            opcode::Write::new(types::Fd(fd), bytes.as_ptr(), len)
                .rw_flags(libc::RWF_NOWAIT)
                .build()
        };
        if self.ring.ring.submission().is_full() {
            self.complete()?;
        }
        // SAFETY: `bytes` lives for 'a, and this queue (which borrows the ring for 'a) waits for
        // every write it pushed in `finish` or on drop.
        unsafe { self.ring.push(&e.user_data(tag)) }?;
        self.queued += 1;
        Ok(())
    }

    /// Submits the queued writes with one `io_uring_enter`, waits for them all and hands
    /// `each` the (tag, result: bytes written or -errno) of every write pushed.
    pub fn finish(mut self, mut each: impl FnMut(u64, i32)) -> io::Result<()> {
        let r = self.complete();
        for &(tag, res) in &self.ring.done {
            each(tag, res);
        }
        self.ring.done.clear();
        r
    }

    /// Submits what is queued and waits for it, keeping the results of earlier early
    /// submits in `done`.
    fn complete(&mut self) -> io::Result<()> {
        if self.queued == 0 {
            return Ok(());
        }
        let before = self.ring.done.len();
        let n = self.queued;
        self.queued = 0;
        self.ring.submit_all(before + n, before)
    }
}

impl Drop for WriteQueue<'_> {
    /// Waits for writes still in the kernel's hands (a queue dropped without `finish`), so
    /// that none outlives the frames it borrows.
    fn drop(&mut self) {
        let _ = self.complete();
        self.ring.done.clear();
    }
}
