//! An upload's data path: chunks from the HTTP body go, over bounded
//! channels, to three threads at once: the file writer, md5 and sha512.
//! md5 and sha512 each cost about a core at a few hundred MB/s, so on one
//! thread (as Glance does it) they cap the upload; here they run side by
//! side and the slowest of the three sets the pace. The bounded channels
//! keep memory constant: a slow disk or hash makes the sender wait, and the
//! sender stops reading the socket.
//!
//! ```text
//!  body ─► coalesce (1 MiB) ─┬─► writer thread ─► Staged (temp file)   + first bytes (qcow2 header)
//!                            ├─► md5 thread
//!                            └─► sha512 thread
//! ```

use super::error::{ImageError, ImageResult};
use super::store::Staged;
use axum::body::Bytes;
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

/// A running upload pipeline.
pub struct Pipeline {
    txs: Vec<mpsc::Sender<Bytes>>,
    writer: JoinHandle<Written>,
    md5: JoinHandle<String>,
    sha512: JoinHandle<String>,
    size: u64,
}

fn hasher<D: Default + Send + 'static>(
    mut rx: mpsc::Receiver<Bytes>,
    mut update: impl FnMut(&mut D, &[u8]) + Send + 'static,
    finish: impl FnOnce(D) -> String + Send + 'static,
) -> JoinHandle<String> {
    tokio::task::spawn_blocking(move || {
        let mut d = D::default();
        while let Some(c) = rx.blocking_recv() {
            update(&mut d, &c);
        }
        finish(d)
    })
}

impl Pipeline {
    /// Starts the writer and the two hashers.
    pub fn start(mut staged: Box<dyn Staged>) -> Pipeline {
        let (wtx, mut wrx) = mpsc::channel::<Bytes>(DEPTH);
        let (mtx, mrx) = mpsc::channel::<Bytes>(DEPTH);
        let (stx, srx) = mpsc::channel::<Bytes>(DEPTH);
        let writer = tokio::task::spawn_blocking(move || {
            let mut head = Vec::with_capacity(HEADER);
            while let Some(c) = wrx.blocking_recv() {
                if head.len() < HEADER {
                    let n = (HEADER - head.len()).min(c.len());
                    head.extend_from_slice(&c[..n]);
                }
                staged.write(&c)?;
            }
            Ok((staged, head))
        });
        let md5 = hasher::<md5::Md5>(
            mrx,
            |d, c| md5::Digest::update(d, c),
            |d| hex::encode(md5::Digest::finalize(d)),
        );
        let sha512 = hasher::<sha2::Sha512>(
            srx,
            |d, c| sha2::Digest::update(d, c),
            |d| hex::encode(sha2::Digest::finalize(d)),
        );
        Pipeline {
            txs: vec![wtx, mtx, stx],
            writer,
            md5,
            sha512,
            size: 0,
        }
    }

    /// Bytes handed over so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Hands one chunk to all three threads (waits while any is behind).
    pub async fn send(&mut self, chunk: Bytes) -> ImageResult<()> {
        self.size += chunk.len() as u64;
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
    pub async fn finish(self) -> ImageResult<(Box<dyn Staged>, Digests)> {
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
            p.send(Bytes::copy_from_slice(c)).await.unwrap();
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
