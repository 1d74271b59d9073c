//! The connections `weft serve` accepts: a TCP stream that sends the bytes
//! of image files with `sendfile(2)` and everything else as before.
//!
//! ```text
//!   hyper: poll_write_vectored([head, window, window, ...])
//!              │
//!   SendfileStream: leading slices that are not file-backed
//!              │      ├─ followed by a window: sendmsg(MSG_MORE)   (head and data share segments)
//!              │      └─ otherwise:            writev, as a plain TcpStream does
//!              └── a leading window (weft_compute::image::zerocopy::file_span):
//!                      sendfile(sock, file, offset, len)          page cache -> socket
//! ```
//!
//! hyper and axum keep the HTTP: they see an ordinary stream that reports
//! vectored writes, so hyper queues body `Bytes` as they are instead of
//! copying them into its buffer, and hands their memory to the write. A
//! call sends one kind of slice only, from the front, and returns what it
//! sent, so bytes never go out of order: hyper calls again for the rest.
//! A body that is not a file's (JSON, an error) never matches the registry
//! and goes out exactly as before; so do HTTP/2 connections, whose frames
//! hyper copies into its own buffer.

use prometheus_client::metrics::counter::Counter;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use weft_compute::image::zerocopy::file_span;

/// Accepts [`SendfileStream`]s; counts the bytes they sendfile in `sent`.
pub struct SendfileListener {
    inner: TcpListener,
    sent: Option<Counter>,
}

impl SendfileListener {
    /// Wraps a bound listener; `sent: None` turns sendfile off (every
    /// write is the plain stream's, as `weft serve --no-sendfile` asks).
    pub fn new(inner: TcpListener, sent: Option<Counter>) -> SendfileListener {
        SendfileListener { inner, sent }
    }
}

impl axum::serve::Listener for SendfileListener {
    type Io = SendfileStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's own TcpListener accept, so its handling of accept errors
        // (back off on EMFILE, skip a connection reset) stays.
        let (tcp, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let io = SendfileStream {
            tcp,
            sent: self.sent.clone(),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One accepted connection; see the module doc.
pub struct SendfileStream {
    tcp: TcpStream,
    /// Where sendfile's bytes are counted; `None`: sendfile is off.
    sent: Option<Counter>,
}

impl SendfileStream {
    /// Runs the nonblocking `send` when the socket is writable, waiting
    /// (registered with the reactor) while it says EAGAIN.
    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        mut send: impl FnMut() -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_io(Interest::WRITABLE, &mut send) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(sent) = &this.sent else {
            return Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        };
        let bufs = skip_empty(bufs);
        let Some(first) = bufs.first() else {
            return Poll::Ready(Ok(0));
        };
        if let Some(span) = file_span(first) {
            let len = first.len();
            let n = ready!(this.poll_send(cx, || {
                let mut offset = span.offset;
                Ok(rustix::fs::sendfile(
                    &this.tcp,
                    &*span.file,
                    Some(&mut offset),
                    len,
                )?)
            }))?;
            sent.inc_by(n as u64);
            return Poll::Ready(Ok(n));
        }
        let plain = bufs
            .iter()
            .position(|b| !b.is_empty() && file_span(b).is_some())
            .unwrap_or(bufs.len());
        if plain == bufs.len() {
            return Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        }
        // A response head before its file data: MSG_MORE holds it back to
        // leave with the first segment of the data, as one writev would.
        let head = &bufs[..plain];
        this.poll_send(cx, || {
            let flags = rustix::net::SendFlags::MORE | rustix::net::SendFlags::NOSIGNAL;
            let mut control = rustix::net::SendAncillaryBuffer::default();
            Ok(rustix::net::sendmsg(&this.tcp, head, &mut control, flags)?)
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// `bufs` without its leading empty slices.
fn skip_empty<'a, 'b>(bufs: &'a [IoSlice<'b>]) -> &'a [IoSlice<'b>] {
    let first = bufs
        .iter()
        .position(|b| !b.is_empty())
        .unwrap_or(bufs.len());
    &bufs[first..]
}
