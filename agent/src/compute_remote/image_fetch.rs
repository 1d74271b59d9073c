//! A remote host's image downloads, streamed into its cache.
//!
//! ```text
//!  GET /image/v2/images/{id}/file ──frames──► BodyReader ──read()──► ImageCache::install
//!      (image step token)                      md5 + length            tmp file, fsync, rename
//! ```
//!
//! The body is never collected: the cache copies it to its temporary file a
//! buffer at a time, so an image of any size costs the agent a few frames of
//! memory. The md5 and length are computed on the way and checked against
//! what ctrl sent (`Content-MD5`, Glance's checksum, and `Content-Length`)
//! when the body ends: a short or corrupted download fails the read, so the
//! cache drops its temporary file and never installs it.

use super::RemoteCompute;
use crate::compute::ImageSource;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use md5::{Digest, Md5};
use std::io::Read;
use tokio::runtime::Handle;

/// The image service over HTTP, with the server's image token.
pub(crate) struct HttpImages<'a> {
    pub(crate) agent: &'a RemoteCompute,
    pub(crate) rt: &'a Handle,
    pub(crate) server: &'a str,
}

impl ImageSource for HttpImages<'_> {
    fn open(&self, id: &str) -> Result<Box<dyn Read + Send>, String> {
        let resp = self
            .rt
            .block_on(async {
                let t = self.agent.token(self.server, "image", true).await?;
                self.agent
                    .ctrl
                    .get_streamed_as(&t, &format!("/image/v2/images/{id}/file"), "image download")
                    .await
            })
            .map_err(|e| format!("image {id}: {e}"))?;
        let header = |k: &str| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let expect = Expect {
            len: header("content-length").and_then(|v| v.parse().ok()),
            md5: header("content-md5").map(|v| v.to_ascii_lowercase()),
        };
        Ok(Box::new(BodyReader::new(
            self.rt.clone(),
            resp.into_body(),
            id,
            expect,
        )))
    }
}

/// What the download must come to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expect {
    /// Bytes (`Content-Length`).
    pub(crate) len: Option<u64>,
    /// Hex md5 (`Content-MD5`).
    pub(crate) md5: Option<String>,
}

/// A blocking reader over a response body that arrives frame by frame,
/// hashing as it goes. Read on a blocking thread: each frame is awaited on
/// the runtime through `rt`.
pub(crate) struct BodyReader<B> {
    rt: Handle,
    body: B,
    image: String,
    chunk: Bytes,
    md5: Md5,
    read: u64,
    expect: Expect,
    ended: bool,
}

impl<B> BodyReader<B> {
    pub(crate) fn new(rt: Handle, body: B, image: &str, expect: Expect) -> BodyReader<B> {
        BodyReader {
            rt,
            body,
            image: image.to_string(),
            chunk: Bytes::new(),
            md5: Md5::new(),
            read: 0,
            expect,
            ended: false,
        }
    }

    /// At the body's end: the length and md5 are what ctrl said.
    fn verify(&mut self) -> std::io::Result<()> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        if let Some(len) = self.expect.len {
            if len != self.read {
                return Err(bad(format!(
                    "image {}: download ended after {} of {len} bytes",
                    self.image, self.read
                )));
            }
        }
        let got = hex::encode(std::mem::take(&mut self.md5).finalize());
        match &self.expect.md5 {
            Some(want) if *want != got => Err(bad(format!(
                "image {}: checksum {got} of the download is not the image's {want}",
                self.image
            ))),
            _ => Ok(()),
        }
    }
}

/// A body whose frames the reader awaits (hyper's `Incoming`; a test's own).
pub(crate) trait Frames: Unpin {
    /// The next data bytes, None at the end.
    fn next_data(&mut self) -> impl std::future::Future<Output = Option<Result<Bytes, String>>>;
}

impl Frames for Incoming {
    async fn next_data(&mut self) -> Option<Result<Bytes, String>> {
        loop {
            match self.frame().await? {
                Ok(f) => match f.into_data() {
                    Ok(d) => return Some(Ok(d)),
                    // Trailers: nothing to cache.
                    Err(_) => continue,
                },
                Err(e) => return Some(Err(e.to_string())),
            }
        }
    }
}

impl<B: Frames> Read for BodyReader<B> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rt.block_on(self.body.next_data()) {
                Some(Ok(d)) => {
                    self.md5.update(&d);
                    self.read += d.len() as u64;
                    self.chunk = d;
                }
                Some(Err(e)) => {
                    return Err(std::io::Error::other(format!(
                        "image {}: download cut off: {e}",
                        self.image
                    )))
                }
                None => {
                    self.ended = true;
                    self.verify()?;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of fixed frames, then an optional error.
    struct Canned(Vec<Bytes>, Option<String>);
    impl Frames for Canned {
        async fn next_data(&mut self) -> Option<Result<Bytes, String>> {
            if self.0.is_empty() {
                return self.1.take().map(Err);
            }
            Some(Ok(self.0.remove(0)))
        }
    }

    fn read_all(
        frames: Vec<&'static [u8]>,
        err: Option<&str>,
        expect: Expect,
    ) -> Result<Vec<u8>, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let body = Canned(
            frames.into_iter().map(Bytes::from_static).collect(),
            err.map(String::from),
        );
        let mut r = BodyReader::new(rt.handle().clone(), body, "img", expect);
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn md5_of(b: &[u8]) -> String {
        hex::encode(Md5::digest(b))
    }

    #[test]
    fn frames_come_through_in_order_and_checked() {
        let expect = Expect {
            len: Some(11),
            md5: Some(md5_of(b"hello world")),
        };
        assert_eq!(
            read_all(vec![b"hello", b" ", b"world"], None, expect).unwrap(),
            b"hello world"
        );
        // Nothing to check against: the bytes alone.
        assert_eq!(
            read_all(vec![b"ab"], None, Expect::default()).unwrap(),
            b"ab"
        );
    }

    #[test]
    fn a_wrong_checksum_or_length_or_a_cut_fails_the_read() {
        let e = read_all(
            vec![b"hello"],
            None,
            Expect {
                len: Some(5),
                md5: Some(md5_of(b"hellO")),
            },
        )
        .unwrap_err();
        assert!(e.contains("checksum"), "{e}");
        let e = read_all(
            vec![b"hel"],
            None,
            Expect {
                len: Some(5),
                md5: None,
            },
        )
        .unwrap_err();
        assert!(e.contains("after 3 of 5 bytes"), "{e}");
        let e = read_all(vec![b"hel"], Some("reset"), Expect::default()).unwrap_err();
        assert!(e.contains("cut off: reset"), "{e}");
    }
}
