//! A request body read from a file as hyper sends it: one buffer of
//! [`CHUNK`] bytes at a time, with the file's length as `Content-Length`.
//! A snapshot's upload goes this way, so the agent holds one chunk of the
//! qcow2 in memory, not the whole file (which can be the guest's whole
//! disk).

use hyper::body::{Body, Bytes, Frame, SizeHint};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read per frame.
pub const CHUNK: usize = 256 * 1024;

/// A file's bytes as an HTTP body of exactly its length at open time.
pub struct FileBody {
    file: tokio::fs::File,
    buf: Box<[u8]>,
    left: u64,
}

impl FileBody {
    /// Opens `path` for sending.
    pub async fn open(path: &Path) -> io::Result<FileBody> {
        let file = tokio::fs::File::open(path).await?;
        let left = file.metadata().await?.len();
        Ok(FileBody {
            file,
            buf: vec![0u8; CHUNK].into_boxed_slice(),
            left,
        })
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.left).unwrap_or(CHUNK).min(CHUNK);
        let mut rb = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            // Shorter than it was at open: the length sent would be a lie.
            Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(Some(Err(
                io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while sent"),
            ))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                this.left -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(rb.filled())))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_file_goes_in_chunks_of_at_most_chunk_bytes_with_its_length() {
        let dir = tempfile_dir();
        let path = dir.join("f");
        let data: Vec<u8> = (0..(2 * CHUNK + 1000)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut body = FileBody::open(&path).await.unwrap();
        assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(f) = body.frame().await {
            let d = f.unwrap().into_data().unwrap();
            assert!(d.len() <= CHUNK);
            got.extend_from_slice(&d);
            frames += 1;
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(frames >= 3, "{frames} frames");
        assert!(got == data, "the same bytes");
        assert!(body.is_end_stream());
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("cop-file-body-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
