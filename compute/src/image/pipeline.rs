//! An upload's data path: chunks from the HTTP body go, over bounded
//! channels, to three threads at once: the file writer, md5 and sha512.
//! md5 and sha512 each cost about a core at a few hundred MB/s, so on one
//! thread (as Glance does it) they cap the upload; here they run side by
//! side and the slowest of the three sets the pace. The bounded channels
//! keep memory constant: a slow disk or hash makes the sender wait, and the
//! sender stops reading the socket. The chunks themselves are a fixed set
//! of buffers that come back to the sender once all three threads are done
//! with them, so the upload's memory does not depend on how the allocator
//! treats 1 MiB blocks freed on other threads (mimalloc kept tens of MiB
//! of them resident during a 4 GiB upload).
//!
//! ```text
//!  body ─► coalesce (1 MiB) ─┬─► writer thread ─► Staged (temp file)   + first bytes (qcow2 header)
//!                            ├─► md5 thread
//!                            └─► sha512 thread
//! ```

use super::error::{ImageError, ImageResult};
use super::store::Staged;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Chunks in flight per consumer: at most `DEPTH` x [`CHUNK`] bytes each.
const DEPTH: usize = 8;
/// Chunks are coalesced to this size before they are handed over, so
/// channel traffic stays small whatever frame sizes the client sends.
pub const CHUNK: usize = 1 << 20;
/// How much of the start of the data is kept to read format headers from.
const HEADER: usize = 512;

/// What the three threads produced.
pub struct Digests {
    /// Bytes received.
    pub size: u64,
    /// md5, hex.
    pub md5: String,
    /// sha512, hex.
    pub sha512: String,
    /// The first bytes of the data (for the qcow2 header).
    pub head: Vec<u8>,
}

/// What the writer thread hands back: the staged data and its first bytes.
type Written = std::io::Result<(Box<dyn Staged>, Vec<u8>)>;

/// Buffers the threads are done with, the most recently used (still in
/// cache) on top.
type Pool = Arc<Mutex<Vec<Vec<u8>>>>;

/// One chunk, shared by the three threads; the last one to drop it hands
/// the buffer back.
type Chunk = Arc<Vec<u8>>;

/// Hands a chunk's buffer back to the sender if this was its last holder.
fn give_back(c: Chunk, pool: &Pool) {
    if let Some(buf) = Arc::into_inner(c) {
        pool.lock().unwrap().push(buf);
    }
}

/// A running upload pipeline.
pub struct Pipeline {
    txs: Vec<mpsc::Sender<Chunk>>,
    /// Buffers the threads are done with.
    returned: Pool,
    /// The chunk being filled.
    filling: Vec<u8>,
    writer: JoinHandle<Written>,
    md5: JoinHandle<String>,
    sha512: JoinHandle<String>,
    size: u64,
}

fn hasher<D: Default + Send + 'static>(
    mut rx: mpsc::Receiver<Chunk>,
    pool: Pool,
    mut update: impl FnMut(&mut D, &[u8]) + Send + 'static,
    finish: impl FnOnce(D) -> String + Send + 'static,
) -> JoinHandle<String> {
    tokio::task::spawn_blocking(move || {
        let mut d = D::default();
        while let Some(c) = rx.blocking_recv() {
            update(&mut d, &c);
            give_back(c, &pool);
        }
        finish(d)
    })
}

impl Pipeline {
    /// Starts the writer and the two hashers.
    pub fn start(mut staged: Box<dyn Staged>) -> Pipeline {
        let (wtx, mut wrx) = mpsc::channel::<Chunk>(DEPTH);
        let (mtx, mrx) = mpsc::channel::<Chunk>(DEPTH);
        let (stx, srx) = mpsc::channel::<Chunk>(DEPTH);
        let pool = Pool::default();
        let returned = pool.clone();
        let writer_pool = pool.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let mut head = Vec::with_capacity(HEADER);
            while let Some(c) = wrx.blocking_recv() {
                if head.len() < HEADER {
                    let n = (HEADER - head.len()).min(c.len());
                    head.extend_from_slice(&c[..n]);
                }
                staged.write(&c)?;
                give_back(c, &writer_pool);
            }
            Ok((staged, head))
        });
        let md5 = hasher::<md5::Md5>(
            mrx,
            pool.clone(),
            |d, c| md5::Digest::update(d, c),
            |d| hex::encode(md5::Digest::finalize(d)),
        );
        let sha512 = hasher::<sha2::Sha512>(
            srx,
            pool,
            |d, c| sha2::Digest::update(d, c),
            |d| hex::encode(sha2::Digest::finalize(d)),
        );
        Pipeline {
            txs: vec![wtx, mtx, stx],
            returned,
            filling: Vec::with_capacity(CHUNK),
            writer,
            md5,
            sha512,
            size: 0,
        }
    }

    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Takes bytes as they come from the client, and hands each full
    /// [`CHUNK`] to the threads (waiting while any is behind).
    pub async fn push(&mut self, mut data: &[u8]) -> ImageResult<()> {
        self.size += data.len() as u64;
        while !data.is_empty() {
            let n = (CHUNK - self.filling.len()).min(data.len());
            self.filling.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.filling.len() == CHUNK {
                let next = self.spare();
                self.hand_over(next).await?;
            }
        }
        Ok(())
    }

    /// A returned buffer, or a new one while all are in flight (at most
    /// what the slowest thread's channel holds, plus the one it works on).
    fn spare(&self) -> Vec<u8> {
        match self.returned.lock().unwrap().pop() {
            Some(mut buf) => {
                buf.clear();
                buf
            }
            None => Vec::with_capacity(CHUNK),
        }
    }

    /// Sends the chunk being filled to all three threads; `next` is filled
    /// from now on.
    async fn hand_over(&mut self, next: Vec<u8>) -> ImageResult<()> {
        let chunk = Arc::new(std::mem::replace(&mut self.filling, next));
        for tx in &self.txs {
            if tx.send(chunk.clone()).await.is_err() {
                // Only the writer stops early: on an I/O error, which
                // `finish` reports.
                return Err(ImageError::Io("the image writer stopped".into()));
            }
        }
        Ok(())
    }

    /// Stops the threads and waits for them, so the staged data is gone
    /// (dropped by the writer) before the caller answers.
    pub async fn abort(self) {
        drop(self.txs);
        if let Ok(Ok((staged, _))) = self.writer.await {
            drop(staged);
        }
        let _ = self.md5.await;
        let _ = self.sha512.await;
    }

    /// Waits for the threads to drain; the staged data (not yet committed)
    /// and the digests.
    pub async fn finish(mut self) -> ImageResult<(Box<dyn Staged>, Digests)> {
        if !self.filling.is_empty() {
            self.hand_over(Vec::new()).await?;
        }
        drop(self.txs);
        let join = |e: tokio::task::JoinError| ImageError::Internal(format!("upload thread: {e}"));
        let (staged, head) = self
            .writer
            .await
            .map_err(join)?
            .map_err(|e| ImageError::Io(e.to_string()))?;
        let md5 = self.md5.await.map_err(join)?;
        let sha512 = self.sha512.await.map_err(join)?;
        Ok((
            staged,
            Digests {
                size: self.size,
                md5,
                sha512,
                head,
            },
        ))
    }
}

/// The virtual size a qcow2 header states (magic `QFI\xfb`, size at byte
/// 24, big-endian), or `None` if `head` is not a qcow2 header.
pub fn qcow2_virtual_size(head: &[u8]) -> Option<u64> {
    if head.len() < 32 || &head[..4] != b"QFI\xfb" {
        return None;
    }
    let version = u32::from_be_bytes(head[4..8].try_into().ok()?);
    if !(2..=3).contains(&version) {
        return None;
    }
    Some(u64::from_be_bytes(head[24..32].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::store::{FileStore, ImageStore};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_and_writes_what_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path(), "r1").unwrap();
        let mut p = Pipeline::start(store.stage("x").unwrap());
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        for c in data.chunks(70_000) {
            p.push(c).await.unwrap();
        }
        let (staged, d) = p.finish().await.unwrap();
        staged.commit().unwrap();
        assert_eq!(d.size, data.len() as u64);
        assert_eq!(d.md5, hex::encode(<md5::Md5 as md5::Digest>::digest(&data)));
        assert_eq!(
            d.sha512,
            hex::encode(<sha2::Sha512 as sha2::Digest>::digest(&data))
        );
        let back = store
            .open("x")
            .unwrap()
            .unwrap()
            .chunk(0, usize::MAX)
            .unwrap();
        assert_eq!(back.as_ref(), data.as_slice());
        assert_eq!(d.head, data[..HEADER]);
    }

    #[test]
    fn reads_the_qcow2_virtual_size() {
        let mut h = vec![0u8; 72];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        assert_eq!(qcow2_virtual_size(&h), Some(1 << 30));
        h[0] = b'X';
        assert_eq!(qcow2_virtual_size(&h), None);
        assert_eq!(qcow2_virtual_size(b"QFI\xfb"), None);
    }
}
