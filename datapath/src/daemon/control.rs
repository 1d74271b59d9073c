//! The control socket: a unix stream socket speaking JSON lines. Each
//! request is one JSON object on one line (`{"cmd":"ports"}`), each reply one
//! JSON object on one line: `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
//!
//! Commands: `ports`, `macs`, `counters`, `metrics` (the counters in
//! Prometheus' text format, see [`crate::metrics`]), `conntrack` (optional `"port"` name,
//! `"zone"` local VLAN, `"flush": true`), `reload`, `apply` (with `"config"`: a whole
//! [`crate::SwitchConfig`] as JSON, what an agent in another process sends), `trace` (with
//! `"frame"`: a frame description such as `in_port=tap1 dl_src=... dl_dst=...`), and
//! `handover` (a new switch process takes the ports over: [`super::handover`]).

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

/// Answers one control request (a parsed JSON object) with a JSON reply.
pub type Handler = dyn Fn(&Value) -> Value + Send + Sync;

/// Serves `{"cmd":"handover"}` (see [`super::handover`]): gets the client's line reader, its
/// stream and the listener's fd (handed over too; this server has stopped accepting on it);
/// returns whether the switch was handed over (else this server accepts again).
pub type HandoverHook = dyn Fn(&mut dyn BufRead, &UnixStream, RawFd) -> bool + Send + Sync;

/// A running control socket server; stops and removes the socket on drop, unless the socket
/// was handed over to a new switch process (which serves it from then on).
pub struct ControlServer {
    path: PathBuf,
    flags: Arc<Flags>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Flags {
    /// Stop accepting.
    stop: AtomicBool,
    /// The accept loop has returned.
    stopped: AtomicBool,
    /// Leave the socket file: another process serves it.
    handed_over: AtomicBool,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket file, creating the parent
    /// directory) and serves requests with `handler`, one thread per client.
    pub fn bind(path: &Path, handler: Arc<Handler>) -> io::Result<ControlServer> {
        ControlServer::bind_with(path, handler, None)
    }

    /// [`ControlServer::bind`], with `handover` answering `{"cmd":"handover"}`.
    pub fn bind_with(
        path: &Path,
        handler: Arc<Handler>,
        handover: Option<Arc<HandoverHook>>,
    ) -> io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        if path.exists() {
            // A live switch on this path answers; only a stale file is replaced.
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "control socket {} is in use by a running switch",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
        }
        ControlServer::serve(UnixListener::bind(path)?, path, handler, handover)
    }

    /// Serves an already bound `listener` (one a previous switch process handed over) whose
    /// socket file is `path`.
    pub fn serve(
        listener: UnixListener,
        path: &Path,
        handler: Arc<Handler>,
        handover: Option<Arc<HandoverHook>>,
    ) -> io::Result<ControlServer> {
        listener.set_nonblocking(true)?;
        let flags = Arc::new(Flags::default());
        let f2 = flags.clone();
        let thread = std::thread::Builder::new()
            .name("weft-control".into())
            .spawn(move || accept_loop(Arc::new(listener), handler, handover, f2))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            flags,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.flags.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if !self.flags.handed_over.load(Ordering::Acquire) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn accept_loop(
    listener: Arc<UnixListener>,
    handler: Arc<Handler>,
    handover: Option<Arc<HandoverHook>>,
    flags: Arc<Flags>,
) {
    while !flags.stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                let c = Client {
                    handler: handler.clone(),
                    handover: handover.clone(),
                    listener: listener.clone(),
                    flags: flags.clone(),
                };
                let _ = std::thread::Builder::new()
                    .name("weft-control-client".into())
                    .spawn(move || c.serve(stream));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    flags.stopped.store(true, Ordering::Release);
}

struct Client {
    handler: Arc<Handler>,
    handover: Option<Arc<HandoverHook>>,
    listener: Arc<UnixListener>,
    flags: Arc<Flags>,
}

impl Client {
    fn serve(self, stream: UnixStream) {
        let _ = stream.set_nonblocking(false);
        let Ok(mut out) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.trim().is_empty() {
                continue;
            }
            let reply = match serde_json::from_str::<Value>(&line) {
                Ok(req) if req["cmd"] == "handover" && self.handover.is_some() => {
                    self.hand_over(&mut reader, &out);
                    return;
                }
                Ok(req) if req.is_object() => (self.handler)(&req),
                Ok(_) => error_reply("request must be a JSON object"),
                Err(e) => error_reply(&format!("bad JSON: {e}")),
            };
            let mut text = reply.to_string();
            text.push('\n');
            if out.write_all(text.as_bytes()).is_err() {
                return;
            }
        }
    }

    fn hand_over(&self, reader: &mut BufReader<UnixStream>, out: &UnixStream) {
        let Some(hook) = &self.handover else { return };
        let flags = &self.flags;
        // Stop accepting for the whole handover, before the new process may serve the
        // listener: requests meanwhile wait in the listen backlog for whichever process serves
        // the socket next (the new one, or this one again if the handover is abandoned).
        flags.stop.store(true, Ordering::Release);
        let t = std::time::Instant::now();
        while !flags.stopped.load(Ordering::Acquire) && t.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if hook(reader, out, self.listener.as_raw_fd()) {
            flags.handed_over.store(true, Ordering::Release);
            return;
        }
        flags.stopped.store(false, Ordering::Release);
        flags.stop.store(false, Ordering::Release);
        let (l, h, o, f) = (
            self.listener.clone(),
            self.handler.clone(),
            self.handover.clone(),
            flags.clone(),
        );
        let _ = std::thread::Builder::new()
            .name("weft-control".into())
            .spawn(move || accept_loop(l, h, o, f));
    }
}

/// `{"ok":false,"error":msg}`.
pub fn error_reply(msg: &str) -> Value {
    json!({"ok": false, "error": msg})
}

/// Sends one request to the switch at `path` and returns its reply.
pub fn request(path: &Path, req: &Value) -> io::Result<Value> {
    let mut s = UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot connect to {}: {e}", path.display()),
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut text = req.to_string();
    text.push('\n');
    s.write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    serde_json::from_str(&line)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad reply: {e}")))
}
